/*
** watcher_api.c -- the WatcherAPI: a watcher's state, queues, logs, context and
** watches over HTTP, and a route to send it messages.
**
** Requests are answered on the HTTP thread and never wait for the loop: the loop
** publishes JSON of the sections that changed after every signal it handles (the
** observer below), so a monitoring request during a long run gets the values of the
** last completed reduce. Queues and logs are read under their own locks.
** GET /watcher/metrics answers the same values in Prometheus text (http/prom.h).
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "engine/binding.h"
#include "http/prom.h"
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
  hersh_run_stats runs;
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
  hersh_snapshot snap;
  hersh_watcher_snapshot(w, &snap); /* the loop thread: every field is filled */
  char *context = dirty & DIRTY_CONTEXT ? hersh_watcher_json_store(w, false) : NULL;
  char *memo = dirty & DIRTY_MEMO ? hersh_watcher_json_store(w, true) : NULL;
  char *vars = dirty & DIRTY_VARS ? hersh_watcher_json_vars(w) : NULL;
  char *watching = dirty & DIRTY_WATCHES ? hersh_watcher_json_watching(w) : NULL;
  char *trigger = NULL;
  if (snap.last_trigger) {
    hersh_buf b = {0};
    hersh_json j;
    hersh_json_init(&j, &b);
    hersh_json_trigger(&j, snap.last_trigger);
    trigger = hersh_json_take(&j);
  }
  pthread_mutex_lock(&api->mu);
  swap(&api->context, context);
  swap(&api->memo, memo);
  swap(&api->vars, vars);
  swap(&api->watching, watching);
  swap(&api->trigger, trigger);
  api->n_context = snap.n_context;
  api->n_memo = snap.n_memo;
  api->n_watches = snap.n_watches;
  api->runs = snap.runs;
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

/* An answer under construction: the writer and the text it fills. */
typedef struct reply {
  hersh_buf text;
  hersh_json j;
} reply;

/* Starts the answer's top-level object. */
static hersh_json *reply_begin(reply *r) {
  r->text = (hersh_buf){0};
  hersh_json_init(&r->j, &r->text);
  hersh_json_object(&r->j);
  return &r->j;
}

/* Closes the top-level object and hands the text over, one line. */
static void reply_send(reply *r, hersh_http_response *res) {
  hersh_json_end(&r->j);
  int rc = hersh_json_finish(&r->j);
  hersh_buf_put(&r->text, "\n", 1);
  size_t len = r->text.len;
  char *body = rc == HERSH_OK ? hersh_buf_take(&r->text) : NULL;
  hersh_buf_free(&r->text);
  if (!body && rc == HERSH_E_INVAL) return hersh_http_error(res, 500, "cannot encode the answer: %s", hersh_json_error(&r->j));
  if (!body) return hersh_http_error(res, 500, "out of memory");
  res->body = body;
  res->body_len = len;
}

/* RFC 3339 in UTC with nanoseconds, as the Go original writes times. */
static void json_time(hersh_json *j, double t) {
  time_t secs = (time_t)t;
  long nanos = (long)((t - (double)secs) * 1e9);
  if (nanos < 0) nanos = 0;
  struct tm tm;
  char text[48] = "";
  if (gmtime_r(&secs, &tm)) {
    size_t n = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(text + n, sizeof text - n, ".%09ldZ", nanos);
  }
  hersh_json_cstr(j, text);
}

/* "1h2m3.5s", as the Go original writes durations. */
static void json_duration(hersh_json *j, double secs) {
  long long ms = (long long)(secs * 1000.0 + 0.5); /* round once, then split */
  if (ms < 0) ms = 0;
  long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
  hersh_buf text = {0};
  if (h) hersh_buf_printf(&text, "%lldh", h);
  if (h || m) hersh_buf_printf(&text, "%lldm", m);
  hersh_buf_printf(&text, "%lld.%03llds", s, frac);
  char *t = hersh_buf_take(&text);
  hersh_json_cstr(j, t ? t : "");
  free(t);
}

/* ---- routes --------------------------------------------------------------------------- */

static void route_status(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  hersh_snapshot snap;
  hersh_watcher_snapshot(w, &snap);
  hersh_state st = snap.state;
  double now = hersh_wall_now();
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, "watcherID");
  hersh_json_cstr(j, hersh_watcher_id(w));
  hersh_json_key(j, "state");
  hersh_json_cstr(j, hersh_state_name(st));
  hersh_json_key(j, "isRunning");
  hersh_json_bool(j, snap.started && !hersh_state_terminal(st));
  hersh_json_key(j, "uptime");
  json_duration(j, now - api->started_at);
  hersh_json_key(j, "lastUpdate");
  json_time(j, now);
  reply_send(&r, res);
}

static void route_state(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, "watcherID");
  hersh_json_cstr(j, hersh_watcher_id(w));
  hersh_json_key(j, "state");
  hersh_json_cstr(j, hersh_state_name(hersh_watcher_state(w)));
  hersh_json_key(j, "failures");
  hersh_json_int(j, hersh_watcher_failures(w));
  hersh_snapshot snap;
  hersh_watcher_snapshot(w, &snap);
  hersh_json_key(j, "waiting"); /* the run in progress waits on the loop (hersh.sleep, hersh.http) */
  hersh_json_bool(j, snap.waiting);
  hersh_json_key(j, "nextRetryAt");
  double next = hersh_watcher_next_retry(w);
  if (next > 0) json_time(j, next);
  else hersh_json_null(j);
  pthread_mutex_lock(&api->mu);
  hersh_json_key(j, "lastTrigger");
  if (api->trigger) hersh_json_raw(j, api->trigger, strlen(api->trigger));
  else hersh_json_null(j);
  hersh_json_key(j, "lastUpdate");
  json_time(j, api->last_update);
  pthread_mutex_unlock(&api->mu);
  hersh_json_key(j, "timestamp");
  json_time(j, hersh_wall_now());
  reply_send(&r, res);
}

static void route_config(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  const hersh_config *c = hersh_watcher_config(api->w);
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, "config");
  hersh_json_object(j);
  hersh_json_key(j, "serverPort");
  hersh_json_int(j, hersh_http_server_port(api->http));
  hersh_json_key(j, "signalChanCapacity");
  hersh_json_uint(j, c->signal_capacity);
  hersh_json_key(j, "maxLogEntries");
  hersh_json_uint(j, c->max_log_entries);
  hersh_json_key(j, "maxMemoEntries");
  hersh_json_uint(j, c->max_memo);
  hersh_json_key(j, "maxWatches");
  hersh_json_uint(j, c->max_watches);
  hersh_json_key(j, "timeout");
  hersh_json_number(j, c->timeout);
  hersh_json_key(j, "cleanupTimeout");
  hersh_json_number(j, c->cleanup_timeout);
  hersh_json_key(j, "recovery");
  hersh_json_object(j);
  hersh_json_key(j, "minFailures");
  hersh_json_int(j, c->recovery.min_failures);
  hersh_json_key(j, "maxFailures");
  hersh_json_int(j, c->recovery.max_failures);
  hersh_json_key(j, "baseDelay");
  hersh_json_number(j, c->recovery.base_delay);
  hersh_json_key(j, "maxDelay");
  hersh_json_number(j, c->recovery.max_delay);
  hersh_json_end(j);
  hersh_json_end(j);
  hersh_json_key(j, "timestamp");
  json_time(j, hersh_wall_now());
  reply_send(&r, res);
}

/* A published section: {"<key>": <json>, "count": n, "timestamp": ...}; `empty` stands
** in when publishing it ran out of memory. */
static void route_section(hersh_api *api, hersh_http_response *res, const char *key, const char *empty,
                          char *const *json, const size_t *count) {
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, key);
  pthread_mutex_lock(&api->mu);
  const char *section = *json ? *json : empty;
  hersh_json_raw(j, section, strlen(section));
  hersh_json_key(j, "count");
  hersh_json_uint(j, *count);
  pthread_mutex_unlock(&api->mu);
  hersh_json_key(j, "timestamp");
  json_time(j, hersh_wall_now());
  reply_send(&r, res);
}

static void route_watching(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "watchedVars", "[]", &api->watching, &api->n_watches);
}

static void route_memo(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "entries", "{}", &api->memo, &api->n_memo);
}

static void route_var_state(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "variables", "{}", &api->vars, &api->n_watches);
}

static void route_context(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  route_section(api, res, "context", "{}", &api->context, &api->n_context);
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
  hersh_snapshot snap;
  hersh_watcher_snapshot(api->w, &snap);
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, "vars");
  hersh_json_object(j);
  for (size_t i = 0; i < snap.n_env; i++) {
    const char *eq = strchr(snap.env[i], '=');
    size_t klen = (size_t)(eq - snap.env[i]);
    hersh_json_keyn(j, snap.env[i], klen);
    hersh_json_cstr(j, is_secret(snap.env[i], klen) ? "****" : eq + 1);
  }
  hersh_json_end(j);
  hersh_json_key(j, "count");
  hersh_json_uint(j, snap.n_env);
  hersh_json_key(j, "timestamp");
  json_time(j, hersh_wall_now());
  reply_send(&r, res);
}

static void peek_one(const hersh_signal *s, void *ud) {
  hersh_json *j = ud;
  hersh_json_object(j);
  hersh_json_key(j, "type");
  hersh_json_cstr(j, hersh_signal_type(s));
  hersh_json_key(j, "content");
  hersh_buf text = {0};
  hersh_buf_signal(&text, s);
  hersh_json_string(j, text.p ? text.p : "", text.oom ? 0 : text.len);
  hersh_buf_free(&text);
  hersh_json_key(j, "createdAt");
  json_time(j, hersh_signal_at(s));
  hersh_json_end(j);
}

static void route_signals(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_queue_counts c = hersh_watcher_pending(api->w);
  reply r;
  hersh_json *j = reply_begin(&r);
  hersh_json_key(j, "varSigCount");
  hersh_json_uint(j, c.var);
  hersh_json_key(j, "userSigCount");
  hersh_json_uint(j, c.user);
  hersh_json_key(j, "managerSigCount");
  hersh_json_uint(j, c.watcher);
  hersh_json_key(j, "totalPending");
  hersh_json_uint(j, c.var + c.user + c.watcher);
  hersh_json_key(j, "recentSignals");
  hersh_json_array(j);
  hersh_watcher_peek(api->w, PEEK_PER_KIND, peek_one, j);
  hersh_json_end(j);
  hersh_json_key(j, "timestamp");
  json_time(j, hersh_wall_now());
  reply_send(&r, res);
}

/* ---- logs ---------------------------------------------------------------------------- */

typedef struct log_json {
  hersh_json *j;
  hersh_log_kind kind;
} log_json;

/* A field that holds JSON text already (a context log's values), or null. */
static void raw_or_null(hersh_json *j, const char *json) {
  if (json) hersh_json_raw(j, json, strlen(json));
  else hersh_json_null(j);
}

static void field(hersh_json *j, const char *key, const char *value) {
  hersh_json_key(j, key);
  hersh_json_cstr(j, value);
}

static bool log_entry_json(const hersh_log_entry *e, void *ud) {
  log_json *lj = ud;
  hersh_json *j = lj->j;
  hersh_json_object(j);
  hersh_json_key(j, "LogID");
  hersh_json_uint(j, e->id);
  hersh_json_key(j, "Timestamp");
  json_time(j, e->time);
  switch (lj->kind) {
  case HERSH_LOG_REDUCE:
    field(j, "Signal", e->u.reduce.signal);
    field(j, "Reason", e->u.reduce.reason);
    field(j, "Detail", e->u.reduce.detail);
    field(j, "PrevState", hersh_state_name(e->u.reduce.prev));
    field(j, "NextState", hersh_state_name(e->u.reduce.next));
    break;
  case HERSH_LOG_EFFECT: field(j, "Message", e->u.effect.text); break;
  case HERSH_LOG_RESULT:
    field(j, "Effect", e->u.result.effect);
    hersh_json_key(j, "Success");
    hersh_json_bool(j, e->u.result.ok);
    field(j, "Error", e->u.result.error);
    break;
  case HERSH_LOG_WATCH_ERROR:
    field(j, "VarName", e->u.watch_error.name);
    field(j, "ErrorPhase", e->u.watch_error.phase);
    field(j, "Error", e->u.watch_error.error);
    break;
  case HERSH_LOG_CONTEXT:
    field(j, "Key", e->u.context.key);
    field(j, "Operation", e->u.context.op);
    hersh_json_key(j, "OldValue");
    raw_or_null(j, e->u.context.old_json);
    hersh_json_key(j, "NewValue");
    raw_or_null(j, e->u.context.new_json);
    break;
  case HERSH_LOG_FAULT:
    field(j, "FromState", hersh_state_name(e->u.fault.from));
    field(j, "ToState", hersh_state_name(e->u.fault.to));
    field(j, "Reason", e->u.fault.reason);
    break;
  default: break;
  }
  hersh_json_end(j);
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
  reply r;
  hersh_json *j = reply_begin(&r);
  for (int i = 0; i < N_LOG_TYPES; i++) {
    if (only >= 0 && i != only) continue;
    if (hersh_watcher_log_count(api->w, log_types[i].kind) == 0) continue; /* only non-empty lists */
    hersh_json_key(j, log_types[i].key);
    hersh_json_array(j);
    log_json lj = {j, log_types[i].kind};
    hersh_watcher_logs(api->w, log_types[i].kind, (size_t)limit, log_entry_json, &lj);
    hersh_json_end(j);
  }
  reply_send(&r, res);
}

/* ---- metrics ------------------------------------------------------------------------ */

/* The published values a scrape reads, copied under the lock so that it is not held
** while the text is written. */
typedef struct metrics_view {
  hersh_run_stats runs;
  size_t n_context, n_memo, n_watches, context_bytes, memo_bytes;
} metrics_view;

static void gauge(hersh_buf *b, const char *name, const char *help, const hersh_prom_label *id, double value) {
  hersh_prom_family(b, name, "gauge", help);
  hersh_prom_sample(b, name, id, 1, value);
}

static void metrics_runs(hersh_buf *b, const hersh_prom_label *id, const hersh_run_stats *runs) {
  hersh_prom_family(b, "hersh_watcher_runs_total", "counter", "Reducer runs that ended, by trigger and outcome.");
  uint64_t failed = 0;
  for (int t = 0; t < HERSH_RUN_TRIGGERS; t++) {
    for (int o = 0; o < HERSH_RUN_OUTCOMES; o++) {
      hersh_prom_label labels[] = {id[0],
                                   {"trigger", hersh_run_trigger_name((hersh_run_trigger)t)},
                                   {"outcome", hersh_run_outcome_name((hersh_run_outcome)o)}};
      hersh_prom_sample(b, "hersh_watcher_runs_total", labels, 3, (double)runs->runs[t][o]);
      bool failure = o == HERSH_RUN_FAILED || o == HERSH_RUN_TIMEOUT || o == HERSH_RUN_CRASHED || o == HERSH_RUN_LIMIT;
      if (failure) failed += runs->runs[t][o];
    }
  }
  hersh_prom_family(b, "hersh_watcher_failed_runs_total", "counter",
                    "Runs that failed, timed out, crashed or broke an engine limit.");
  hersh_prom_sample(b, "hersh_watcher_failed_runs_total", id, 1, (double)failed);
  hersh_prom_family(b, "hersh_watcher_run_duration_seconds", "histogram", "How long reducer runs took.");
  hersh_prom_histogram(b, "hersh_watcher_run_duration_seconds", id, 1, hersh_run_bucket_bounds,
                       runs->duration_buckets, HERSH_RUN_BUCKETS, runs->duration_sum);
}

static void route_metrics(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  hersh_watcher *w = api->w;
  metrics_view v;
  pthread_mutex_lock(&api->mu);
  v = (metrics_view){api->runs, api->n_context, api->n_memo, api->n_watches,
                     api->context ? strlen(api->context) : 0, api->memo ? strlen(api->memo) : 0};
  pthread_mutex_unlock(&api->mu);
  hersh_snapshot snap;
  hersh_watcher_snapshot(w, &snap);
  const hersh_prom_label id[] = {{"watcher", hersh_watcher_id(w)}};
  hersh_buf b = {0};

  hersh_prom_family(&b, "hersh_watcher_state", "gauge", "1 for the state the watcher is in, 0 for the others.");
  for (int st = HERSH_NOT_RUN; st <= HERSH_CRASHED; st++) {
    hersh_prom_label labels[] = {id[0], {"state", hersh_state_name((hersh_state)st)}};
    hersh_prom_sample(&b, "hersh_watcher_state", labels, 2, st == (int)snap.state);
  }
  gauge(&b, "hersh_watcher_start_time_seconds", "When the WatcherAPI started, in seconds since the epoch.", id,
        api->started_at);
  metrics_runs(&b, id, &v.runs);
  gauge(&b, "hersh_watcher_consecutive_failures", "Failed runs since the last successful one.", id, snap.failures);

  hersh_prom_family(&b, "hersh_watcher_queue_depth", "gauge", "Signals waiting in each queue.");
  const struct {
    const char *name;
    size_t n;
  } queues[] = {{"watcher", snap.pending.watcher}, {"user", snap.pending.user}, {"var", snap.pending.var}};
  for (size_t q = 0; q < sizeof queues / sizeof *queues; q++) {
    hersh_prom_label labels[] = {id[0], {"queue", queues[q].name}};
    hersh_prom_sample(&b, "hersh_watcher_queue_depth", labels, 2, (double)queues[q].n);
  }
  gauge(&b, "hersh_watcher_queue_capacity", "The capacity of each queue.", id,
        (double)hersh_watcher_config(w)->signal_capacity);

  gauge(&b, "hersh_watcher_context_entries", "Keys in the context store.", id, (double)v.n_context);
  gauge(&b, "hersh_watcher_context_bytes", "Size of the context store as JSON (GET /watcher/context).", id,
        (double)v.context_bytes);
  gauge(&b, "hersh_watcher_memo_entries", "Entries in the memo cache.", id, (double)v.n_memo);
  gauge(&b, "hersh_watcher_memo_bytes", "Size of the memo cache as JSON (GET /watcher/memoCache).", id,
        (double)v.memo_bytes);
  gauge(&b, "hersh_watcher_watches", "Watched variables.", id, (double)v.n_watches);

  size_t len = b.len;
  char *body = hersh_buf_take(&b);
  if (!body) return hersh_http_error(res, 500, "out of memory");
  res->body = body;
  res->body_len = len;
  res->content_type = HERSH_PROM_CONTENT_TYPE;
}

/* ---- the trace (docs/replay.md) --------------------------------------------------------- */

/* A ring holds 1,000 runs by default; a whole recording may be far larger: a body is
** bounded, past it the route says where the whole trace is to be had. */
#define TRACE_MAX_BODY ((size_t)64 << 20)

typedef struct trace_sink {
  hersh_buf b;
  bool too_large;
} trace_sink;

static bool trace_line(const char *line, size_t len, void *ud) {
  trace_sink *s = ud;
  if (s->b.len + len > TRACE_MAX_BODY) {
    s->too_large = true;
    return false;
  }
  hersh_buf_put(&s->b, line, len);
  return !s->b.oom;
}

static void route_trace(hersh_api *api, const hersh_http_request *req, hersh_http_response *res) {
  (void)req;
  trace_sink s = {{0}, false};
  int rc = hersh_watcher_trace(api->w, trace_line, &s);
  size_t len = s.b.len;
  char *body = rc == HERSH_OK && !s.too_large ? hersh_buf_take(&s.b) : NULL;
  if (!body) {
    hersh_buf_free(&s.b);
    if (s.too_large)
      return hersh_http_error(res, 503, "the trace is larger than %zu MiB: record it whole with hersh run --record FILE",
                              TRACE_MAX_BODY >> 20);
    return hersh_http_error(res, 500, "out of memory encoding the trace");
  }
  res->body = body;
  res->body_len = len;
  res->content_type = "application/x-ndjson";
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
    hersh_http_error(res, 400, "invalid request body: expected a JSON object with a \"content\" string");
  } else if (!content || content->type == HERSH_T_NIL || (content->type == HERSH_T_STR && content->as.s.len == 0)) {
    hersh_http_error(res, 400, "message content cannot be empty");
  } else if (content->type != HERSH_T_STR) {
    hersh_http_error(res, 400, "message content must be a string");
  } else {
    int rc = hersh_watcher_send(api->w, content->as.s.ptr, content->as.s.len);
    if (rc == HERSH_OK) {
      reply r;
      hersh_json *j = reply_begin(&r);
      field(j, "status", "message sent");
      res->status = 200;
      reply_send(&r, res);
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
    {"/watcher/metrics", "GET", route_metrics},
    {"/watcher/trace", "GET", route_trace},   {"/watcher/message", "POST", route_message},
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
  if (!hersh_loop_on_thread(hersh_watcher_loop(w))) return hersh_fail_with(HERSH_E_INVAL, "serve a watcher from its loop's thread");
  if (hersh_watcher_observer(w, NULL)) return hersh_fail_with(HERSH_E_STATE, "the watcher already serves its WatcherAPI");
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
  return HERSH_OK;
}

unsigned hersh_watcher_api_quiesce(hersh_watcher *w) {
  void *ud;
  if (!w || hersh_watcher_observer(w, &ud) != &api_observer) return 0;
  hersh_api *api = ud;
  if (!api->http) return 0; /* stopped already: the watcher is terminal */
  hersh_http_server_quiesce(api->http);
  return hersh_http_server_connections(api->http);
}

int hersh_watcher_api_port(const hersh_watcher *w) {
  void *api;
  if (!w || hersh_watcher_observer(w, &api) != &api_observer) return 0;
  return hersh_http_server_port(((hersh_api *)api)->http);
}
