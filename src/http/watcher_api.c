/*
** watcher_api.c -- the WatcherAPI: a watcher's state, queues, logs, context and
** watches over HTTP, and a route to send it messages.
**
** Requests are answered on the HTTP thread and never wait for the loop: the loop
** publishes JSON of the sections that changed after every signal it handles (the
** observer below), so a monitoring request during a long run gets the values of the
** last completed reduce. Queues and logs are read under their own locks.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "http/json.h"
#include "http/server.h"

enum { MAX_BODY = 64 * 1024, PEEK_PER_KIND = 10, DEFAULT_LOG_LIMIT = 100 };
/* A program's API has few clients (the Host's proxy, a monitor): smaller limits than a
** Host's, the per-address one well below the total so that one address cannot fill it. */
enum { MAX_CONNECTIONS = 256, MAX_PER_CLIENT = 64, IDLE_TIMEOUT = 10, REQUEST_TIMEOUT = 15 };

typedef struct hersh_api {
  hersh_watcher *w;
  hersh_http_server *http;
  pthread_mutex_t mu; /* the snapshot below */
  char *context, *memo, *vars, *watching, *trigger;
  size_t n_context, n_memo, n_watches;
  double started_at, last_update;
} hersh_api;

/* ---- publishing (loop thread) --------------------------------------------------------- */

static void swap(char **slot, char *fresh) {
  if (!fresh) return; /* out of memory: keep the previous snapshot */
  free(*slot);
  *slot = fresh;
}

static void api_reduced(hersh_watcher *w, unsigned dirty, void *ud) {
  hersh_api *api = ud;
  char *context = dirty & DIRTY_CONTEXT ? hersh_watcher_json_store(w, false) : NULL;
  char *memo = dirty & DIRTY_MEMO ? hersh_watcher_json_store(w, true) : NULL;
  char *vars = dirty & DIRTY_VARS ? hersh_watcher_json_vars(w) : NULL;
  char *watching = dirty & DIRTY_WATCHES ? hersh_watcher_json_watching(w) : NULL;
  char *trigger = NULL;
  if (w->ctx.trigger.reason) {
    hersh_buf b = {0};
    hersh_buf_json_trigger(&b, &w->ctx.trigger);
    trigger = hersh_buf_take(&b);
  }
  pthread_mutex_lock(&api->mu);
  swap(&api->context, context);
  swap(&api->memo, memo);
  swap(&api->vars, vars);
  swap(&api->watching, watching);
  swap(&api->trigger, trigger);
  api->n_context = w->context.count;
  api->n_memo = w->memo.count;
  api->n_watches = w->watches.count;
  api->last_update = hersh_wall_now();
  pthread_mutex_unlock(&api->mu);
}

static void api_terminal(hersh_watcher *w, void *ud) {
  (void)w;
  hersh_api *api = ud;
  hersh_http_server_stop(api->http); /* handlers never wait for the loop: this cannot hang */
  api->http = NULL;
}

static void api_freed(void *ud) {
  hersh_api *api = ud;
  hersh_http_server_stop(api->http);
  free(api->context);
  free(api->memo);
  free(api->vars);
  free(api->watching);
  free(api->trigger);
  pthread_mutex_destroy(&api->mu);
  free(api);
}

static const hersh_observer api_observer = {api_reduced, api_terminal, api_freed};

/* ---- JSON helpers ------------------------------------------------------------------ */

static void json_time(hersh_buf *b, double t) {
  time_t secs = (time_t)t;
  long nanos = (long)((t - (double)secs) * 1e9);
  if (nanos < 0) nanos = 0;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char text[40];
  size_t n = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(text + n, sizeof text - n, ".%09ldZ", nanos);
  hersh_buf_printf(b, "\"%s\"", text);
}

static void json_str(hersh_buf *b, const char *s) {
  if (s) hersh_buf_json_string(b, s, strlen(s));
  else hersh_buf_puts(b, "null");
}

/* "1h2m3.5s", as the Go original writes durations. */
static void json_duration(hersh_buf *b, double secs) {
  long long ms = (long long)(secs * 1000.0 + 0.5); /* round once, then split */
  if (ms < 0) ms = 0;
  long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
  hersh_buf_put(b, "\"", 1);
  if (h) hersh_buf_printf(b, "%lldh", h);
  if (h || m) hersh_buf_printf(b, "%lldm", m);
  hersh_buf_printf(b, "%lld.%03llds\"", s, frac);
}

static void finish(hersh_http_response *res, hersh_buf *b) {
  hersh_buf_put(b, "\n", 1);
  res->body = hersh_buf_take(b);
  if (!res->body) return hersh_http_error(res, 500, "out of memory");
  res->body_len = strlen(res->body);
}

/* ---- routes --------------------------------------------------------------------------- */

static void route_status(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  hersh_state st = hersh_watcher_state(w);
  double now = hersh_wall_now();
  hersh_buf b = {0};
  hersh_buf_puts(&b, "{\"watcherID\":");
  json_str(&b, hersh_watcher_id(w));
  hersh_buf_printf(&b, ",\"state\":\"%s\",\"isRunning\":%s,\"uptime\":", hersh_state_name(st),
                   atomic_load(&w->started) && !hersh_state_terminal(st) ? "true" : "false");
  json_duration(&b, now - api->started_at);
  hersh_buf_puts(&b, ",\"lastUpdate\":");
  json_time(&b, now);
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

static void route_state(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  hersh_buf b = {0};
  hersh_buf_puts(&b, "{\"watcherID\":");
  json_str(&b, hersh_watcher_id(w));
  hersh_buf_printf(&b, ",\"state\":\"%s\",\"failures\":%d,\"nextRetryAt\":",
                   hersh_state_name(hersh_watcher_state(w)), hersh_watcher_failures(w));
  double next = hersh_watcher_next_retry(w);
  if (next > 0) json_time(&b, next);
  else hersh_buf_puts(&b, "null");
  pthread_mutex_lock(&api->mu);
  hersh_buf_puts(&b, ",\"lastTrigger\":");
  hersh_buf_puts(&b, api->trigger ? api->trigger : "null");
  hersh_buf_puts(&b, ",\"lastUpdate\":");
  json_time(&b, api->last_update);
  pthread_mutex_unlock(&api->mu);
  hersh_buf_puts(&b, ",\"timestamp\":");
  json_time(&b, hersh_wall_now());
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

static void route_config(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  const hersh_config *c = hersh_watcher_config(api->w);
  hersh_buf b = {0};
  hersh_buf_printf(&b,
                   "{\"config\":{\"serverPort\":%d,\"signalChanCapacity\":%zu,\"maxLogEntries\":%zu,"
                   "\"maxMemoEntries\":%zu,\"maxWatches\":%zu,\"timeout\":%g,\"cleanupTimeout\":%g,"
                   "\"recovery\":{\"minFailures\":%d,\"maxFailures\":%d,\"baseDelay\":%g,\"maxDelay\":%g}},"
                   "\"timestamp\":",
                   hersh_http_server_port(api->http), c->signal_capacity, c->max_log_entries, c->max_memo,
                   c->max_watches, c->timeout, c->cleanup_timeout, c->recovery.min_failures,
                   c->recovery.max_failures, c->recovery.base_delay, c->recovery.max_delay);
  json_time(&b, hersh_wall_now());
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

/* A published section: {"<key>": <json>, "count": n, "timestamp": ...}. */
static void route_section(hersh_api *api, hersh_http_response *res, const char *key, char *const *json,
                          const size_t *count) {
  hersh_buf b = {0};
  hersh_buf_printf(&b, "{\"%s\":", key);
  pthread_mutex_lock(&api->mu);
  hersh_buf_puts(&b, *json ? *json : (strcmp(key, "watchedVars") == 0 ? "[]" : "{}"));
  hersh_buf_printf(&b, ",\"count\":%zu", *count);
  pthread_mutex_unlock(&api->mu);
  hersh_buf_puts(&b, ",\"timestamp\":");
  json_time(&b, hersh_wall_now());
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

static void route_watching(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "watchedVars", &api->watching, &api->n_watches);
}

static void route_memo(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "entries", &api->memo, &api->n_memo);
}

static void route_var_state(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "variables", &api->vars, &api->n_watches);
}

static void route_context(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "context", &api->context, &api->n_context);
}

/* Names that look like credentials have their values masked. */
static bool is_secret(const char *name, size_t len) {
  static const char *const marks[] = {"KEY", "SECRET", "TOKEN", "PASS"};
  for (size_t m = 0; m < sizeof marks / sizeof *marks; m++) {
    size_t ml = strlen(marks[m]);
    for (size_t i = 0; i + ml <= len; i++)
      if (strncasecmp(name + i, marks[m], ml) == 0) return true;
  }
  return false;
}

static void route_vars(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  hersh_buf b = {0};
  hersh_buf_puts(&b, "{\"vars\":{");
  for (size_t i = 0; i < w->n_env; i++) {
    const char *eq = strchr(w->env[i], '=');
    size_t klen = (size_t)(eq - w->env[i]);
    if (i) hersh_buf_put(&b, ",", 1);
    hersh_buf_json_string(&b, w->env[i], klen);
    hersh_buf_put(&b, ":", 1);
    if (is_secret(w->env[i], klen)) hersh_buf_puts(&b, "\"****\"");
    else json_str(&b, eq + 1);
  }
  hersh_buf_printf(&b, "},\"count\":%zu,\"timestamp\":", w->n_env);
  json_time(&b, hersh_wall_now());
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

typedef struct peek_state {
  hersh_buf *b;
  bool first;
} peek_state;

static void peek_one(const hersh_signal *s, void *ud) {
  static const char *const types[] = {"watcher", "user", "var"};
  peek_state *p = ud;
  if (!p->first) hersh_buf_put(p->b, ",", 1);
  p->first = false;
  hersh_buf_printf(p->b, "{\"type\":\"%s\",\"content\":", types[s->kind]);
  hersh_buf text = {0};
  hersh_buf_signal(&text, s);
  char *t = hersh_buf_take(&text);
  json_str(p->b, t ? t : "");
  free(t);
  hersh_buf_puts(p->b, ",\"createdAt\":");
  json_time(p->b, s->at);
  hersh_buf_put(p->b, "}", 1);
}

static void route_signals(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_queue_counts c = hersh_watcher_pending(api->w);
  hersh_buf b = {0};
  hersh_buf_printf(&b, "{\"varSigCount\":%zu,\"userSigCount\":%zu,\"managerSigCount\":%zu,\"totalPending\":%zu,"
                       "\"recentSignals\":[",
                   c.var, c.user, c.watcher, c.var + c.user + c.watcher);
  peek_state p = {&b, true};
  hersh_watcher_peek(api->w, PEEK_PER_KIND, peek_one, &p);
  hersh_buf_puts(&b, "],\"timestamp\":");
  json_time(&b, hersh_wall_now());
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

/* ---- logs ---------------------------------------------------------------------------- */

typedef struct log_json {
  hersh_buf *b;
  hersh_log_kind kind;
  bool first;
} log_json;

static bool log_entry_json(const hersh_log_entry *e, void *ud) {
  log_json *lj = ud;
  hersh_buf *b = lj->b;
  if (!lj->first) hersh_buf_put(b, ",", 1);
  lj->first = false;
  hersh_buf_printf(b, "{\"LogID\":%llu,\"Timestamp\":", (unsigned long long)e->id);
  json_time(b, e->time);
  switch (lj->kind) {
  case HERSH_LOG_REDUCE:
    hersh_buf_puts(b, ",\"Signal\":");
    json_str(b, e->u.reduce.signal);
    hersh_buf_puts(b, ",\"Reason\":");
    json_str(b, e->u.reduce.reason);
    hersh_buf_puts(b, ",\"Detail\":");
    json_str(b, e->u.reduce.detail);
    hersh_buf_printf(b, ",\"PrevState\":\"%s\",\"NextState\":\"%s\"", hersh_state_name(e->u.reduce.prev),
                     hersh_state_name(e->u.reduce.next));
    break;
  case HERSH_LOG_EFFECT:
    hersh_buf_puts(b, ",\"Message\":");
    json_str(b, e->u.effect.text);
    break;
  case HERSH_LOG_RESULT:
    hersh_buf_puts(b, ",\"Effect\":");
    json_str(b, e->u.result.effect);
    hersh_buf_printf(b, ",\"Success\":%s,\"Error\":", e->u.result.ok ? "true" : "false");
    json_str(b, e->u.result.error);
    break;
  case HERSH_LOG_WATCH_ERROR:
    hersh_buf_puts(b, ",\"VarName\":");
    json_str(b, e->u.watch_error.name);
    hersh_buf_puts(b, ",\"ErrorPhase\":");
    json_str(b, e->u.watch_error.phase);
    hersh_buf_puts(b, ",\"Error\":");
    json_str(b, e->u.watch_error.error);
    break;
  case HERSH_LOG_CONTEXT:
    hersh_buf_puts(b, ",\"Key\":");
    json_str(b, e->u.context.key);
    hersh_buf_puts(b, ",\"Operation\":");
    json_str(b, e->u.context.op);
    hersh_buf_puts(b, ",\"OldValue\":"); /* already JSON */
    hersh_buf_puts(b, e->u.context.old_json ? e->u.context.old_json : "null");
    hersh_buf_puts(b, ",\"NewValue\":");
    hersh_buf_puts(b, e->u.context.new_json ? e->u.context.new_json : "null");
    break;
  case HERSH_LOG_FAULT:
    hersh_buf_printf(b, ",\"FromState\":\"%s\",\"ToState\":\"%s\",\"Reason\":", hersh_state_name(e->u.fault.from),
                     hersh_state_name(e->u.fault.to));
    json_str(b, e->u.fault.reason);
    break;
  default: break;
  }
  hersh_buf_put(b, "}", 1);
  return true;
}

/* The original's response keys, in its order; the query names are hersh_log_kind_name. */
static const struct {
  const char *key;
  hersh_log_kind kind;
} log_types[] = {
    {"effectLogs", HERSH_LOG_EFFECT},         {"reduceLogs", HERSH_LOG_REDUCE},   {"watchErrorLogs", HERSH_LOG_WATCH_ERROR},
    {"contextLogs", HERSH_LOG_CONTEXT},       {"stateFaultLogs", HERSH_LOG_FAULT}, {"effectResults", HERSH_LOG_RESULT},
};

enum { N_LOG_TYPES = sizeof log_types / sizeof *log_types };

static void route_logs(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  const char *type = hersh_http_query(req, "type");
  const char *limit_text = hersh_http_query(req, "limit");
  long limit = DEFAULT_LOG_LIMIT;
  if (limit_text) {
    char *end;
    limit = strtol(limit_text, &end, 10);
    if (!*limit_text || *end || limit <= 0)
      return hersh_http_error(res, 400, "invalid limit: %s (a positive integer)", limit_text);
  }
  int only = -1;
  if (type && *type && strcmp(type, "all") != 0) {
    hersh_log_kind kind;
    if (hersh_log_kind_parse(type, &kind))
      for (int i = 0; i < N_LOG_TYPES; i++)
        if (log_types[i].kind == kind) only = i;
    if (only < 0) return hersh_http_error(res, 400, "invalid log type: %s (" HERSH_LOG_KIND_NAMES " or all)", type);
  }
  hersh_buf b = {0};
  hersh_buf_put(&b, "{", 1);
  bool first = true;
  for (int i = 0; i < N_LOG_TYPES; i++) {
    if (only >= 0 && i != only) continue;
    if (hersh_watcher_log_count(api->w, log_types[i].kind) == 0) continue; /* only non-empty lists */
    if (!first) hersh_buf_put(&b, ",", 1);
    first = false;
    hersh_buf_printf(&b, "\"%s\":[", log_types[i].key);
    log_json lj = {&b, log_types[i].kind, true};
    hersh_watcher_logs(api->w, log_types[i].kind, (size_t)limit, log_entry_json, &lj);
    hersh_buf_put(&b, "]", 1);
  }
  hersh_buf_put(&b, "}", 1);
  finish(res, &b);
}

/* ---- messages ------------------------------------------------------------------------ */

static void route_message(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  char err[160];
  hersh_value doc;
  if (!req->body || !req->body_len) return hersh_http_error(res, 400, "invalid request body: empty");
  if (hersh_json_parse(req->body, req->body_len, &doc, err, sizeof err) != HERSH_OK)
    return hersh_http_error(res, 400, "invalid request body: %s", err);
  const hersh_value *content = doc.type == HERSH_T_MAP ? hersh_map_get(&doc, "content") : NULL;
  if (doc.type != HERSH_T_MAP) {
    hersh_http_error(res, 400, "invalid request body: expected a JSON object {\"content\": \"...\"}");
  } else if (!content || content->type == HERSH_T_NIL || (content->type == HERSH_T_STR && content->as.s.len == 0)) {
    hersh_http_error(res, 400, "message content cannot be empty");
  } else if (content->type != HERSH_T_STR) {
    hersh_http_error(res, 400, "message content must be a string");
  } else {
    int rc = hersh_watcher_send(api->w, content->as.s.ptr, content->as.s.len);
    if (rc == HERSH_OK) {
      res->status = 200;
      res->body = hersh_strdup("{\"status\":\"message sent\"}\n");
      res->body_len = res->body ? strlen(res->body) : 0;
    } else if (rc == HERSH_E_QUEUE_FULL) {
      hersh_http_error(res, 503, "queue full: try again later");
    } else if (rc == HERSH_E_STOPPED) {
      hersh_http_error(res, 409, "watcher stopped");
    } else {
      hersh_http_error(res, 500, "failed to send message: %s", hersh_errmsg());
    }
  }
  hersh_value_free(&doc);
}

/* ---- dispatch ---------------------------------------------------------------------- */

typedef void (*route_fn)(hersh_api *api, const hersh_http_request *req, hersh_http_response *res);

static const struct {
  const char *path, *method;
  route_fn fn;
} routes[] = {
    {"/watcher/status", "GET", route_status},     {"/watcher/state", "GET", route_state},
    {"/watcher/config", "GET", route_config},     {"/watcher/watching", "GET", route_watching},
    {"/watcher/memoCache", "GET", route_memo},    {"/watcher/varState", "GET", route_var_state},
    {"/watcher/context", "GET", route_context},   {"/watcher/vars", "GET", route_vars},
    {"/watcher/signals", "GET", route_signals},   {"/watcher/logs", "GET", route_logs},
    {"/watcher/message", "POST", route_message},
};

static void api_handle(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  hersh_api *api = ud;
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    if (strcmp(req->path, routes[i].path) != 0) continue;
    bool get = strcmp(routes[i].method, "GET") == 0;
    if (strcmp(req->method, routes[i].method) == 0 || (get && strcmp(req->method, "HEAD") == 0))
      return routes[i].fn(api, req, res);
    res->allow = get ? "GET, HEAD" : routes[i].method;
    return hersh_http_error(res, 405, "method %s not allowed on %s (use %s)", req->method, req->path,
                            routes[i].method);
  }
  hersh_http_error(res, 404, "not found: %s", req->path);
}

/* ---- the public part ------------------------------------------------------------------- */

void hersh_api_options_init(hersh_api_options *o) {
  o->bind = "127.0.0.1";
  o->port = 8080;
  o->listen_fd = -1;
}

int hersh_watcher_serve(hersh_watcher *w, const hersh_api_options *opts) {
  if (!w || !opts) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_serve: NULL argument");
  if (!hersh_loop_on_thread(w->loop)) return hersh_fail_with(HERSH_E_INVAL, "serve a watcher from its loop's thread");
  if (w->observer) return hersh_fail_with(HERSH_E_STATE, "the watcher already serves its WatcherAPI");
  if (hersh_state_terminal(hersh_watcher_state(w))) return hersh_fail_with(HERSH_E_STOPPED, "watcher stopped");
  hersh_api *api = calloc(1, sizeof *api);
  if (!api) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the WatcherAPI");
  if (pthread_mutex_init(&api->mu, NULL) != 0) {
    free(api);
    return hersh_fail_with(HERSH_E_SYS, "pthread_mutex_init failed");
  }
  api->w = w;
  api->started_at = api->last_update = hersh_wall_now();
  api_reduced(w, DIRTY_ALL, api); /* the first snapshot, before any request */
  hersh_http_options http = {.bind = opts->bind, .port = opts->port, .listen_fd = opts->listen_fd,
                             .max_body = MAX_BODY, .max_connections = MAX_CONNECTIONS,
                             .max_per_client = MAX_PER_CLIENT, .idle_timeout = IDLE_TIMEOUT,
                             .request_timeout = REQUEST_TIMEOUT};
  int rc = hersh_http_server_start(&http, api_handle, api, &api->http);
  if (rc) {
    api_freed(api);
    return rc;
  }
  hersh_watcher_observe(w, &api_observer, api);
  w->dirty = 0;
  return HERSH_OK;
}

int hersh_watcher_api_port(const hersh_watcher *w) {
  if (!w || w->observer != &api_observer) return 0;
  return hersh_http_server_port(((hersh_api *)w->observer_ud)->http);
}
