/*
** proxy_route.c -- the C twin of api.lua's proxy route for the requests it would forward
** unchanged: the same checks (Host, Origin, Content-Type; a method, path or header that
** cannot be forwarded), the same URL (the path and query encoded again as api.lua
** does), the same headers (names lower-cased, repeats joined with ", "), the program's
** timeouts. What it is not sure of falls back to Lua.
*/
#include <ctype.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/buf.h"
#include "http/proxy_route.h"
#include "http/proxy.h"
/* client.h's request function has the name of server.h's request type: renamed here. */
#define hersh_http_request hersh_http_client_request
#include "http/client.h"
#undef hersh_http_request

static const char PREFIX[] = "/programs/";

typedef hersh_proxy_pairs pairs;

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  pairs *ps = cls;
  if (ps->n == HERSH_PROXY_MAX_PAIRS) {
    ps->over = true;
    return MHD_NO;
  }
  ps->at[ps->n++] = (hersh_proxy_pair){key, value ? value : ""}; /* "?flag": an empty value, as in Lua */
  return MHD_YES;
}

/* The index of the first pair named as ps->at[i] (without case when `fold`). */
static size_t first_of(const pairs *ps, size_t i, bool fold) {
  for (size_t j = 0; j < i; j++)
    if (fold ? strcasecmp(ps->at[j].key, ps->at[i].key) == 0 : strcmp(ps->at[j].key, ps->at[i].key) == 0) return j;
  return i;
}

/* The headers as "name: value" lines in one buffer (lower-case names, repeats joined
** as the Lua request table joins them); false when one cannot be forwarded. */
static bool header_lines(const pairs *hs, hersh_buf *b, size_t *starts, size_t *count) {
  *count = 0;
  for (size_t i = 0; i < hs->n; i++) {
    if (first_of(hs, i, true) != i) continue;
    const char *name = hs->at[i].key;
    if (!hersh_http_is_token(name, strlen(name))) return false;
    starts[(*count)++] = b->len;
    for (const char *c = name; *c; c++) {
      char low = (char)tolower((unsigned char)*c);
      hersh_buf_put(b, &low, 1);
    }
    hersh_buf_puts(b, ": ");
    bool more = false;
    for (size_t k = i; k < hs->n; k++) {
      if (k != i && strcasecmp(hs->at[k].key, name) != 0) continue;
      if (strpbrk(hs->at[k].value, "\r\n")) return false;
      if (more) hersh_buf_puts(b, ", ");
      hersh_buf_puts(b, hs->at[k].value);
      more = true;
    }
    hersh_buf_put(b, "", 1);
  }
  return !b->oom;
}

/* The joined value of header `name` among the lines, or NULL. */
static const char *line_value(const char *text, const size_t *starts, size_t count, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < count; i++) {
    const char *line = text + starts[i];
    if (strncmp(line, name, n) == 0 && line[n] == ':') return line + n + 2;
  }
  return NULL;
}

/* api.lua's is_json: "application/json", alone or before ';', spaces around it. */
static bool is_json(const char *ctype) {
  while (isspace((unsigned char)*ctype)) ctype++;
  static const char JSON[] = "application/json";
  if (strncasecmp(ctype, JSON, sizeof JSON - 1) != 0) return false;
  ctype += sizeof JSON - 1;
  while (isspace((unsigned char)*ctype)) ctype++;
  return *ctype == '\0' || *ctype == ';';
}

/* What api.lua's refuse_foreign lets through: a Host header this Host answers to, no
** cross-origin write (any Origin on a write goes to Lua, which judges it), a body only
** with a JSON Content-Type. */
static bool own_request(const hersh_route_table *t, const char *method, const char *text, const size_t *starts,
                        size_t count) {
  const char *host = line_value(text, starts, count, "host");
  if (host && !hersh_route_table_host_allowed(t, host)) return false;
  bool read_only = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  if (!read_only && line_value(text, starts, count, "origin")) return false;
  const char *length = line_value(text, starts, count, "content-length");
  bool body = line_value(text, starts, count, "transfer-encoding") || (length && strcmp(length, "0") != 0);
  const char *ctype = line_value(text, starts, count, "content-type");
  return !(body || ctype) || (ctype && is_json(ctype));
}

/* api.lua's escape (the query) and encode_path: every byte but these as %XX. */
static void put_encoded(hersh_buf *b, const char *s, const char *keep) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (isalnum(c) || (c < 128 && strchr(keep, c))) hersh_buf_put(b, (const char *)s, 1);
    else hersh_buf_printf(b, "%%%02X", c);
  }
}

static int by_text(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The query as api.lua's encode_query writes it: the first value of each name, each
** "name=value" encoded, sorted, joined with '&'. */
static bool put_query(hersh_buf *b, const pairs *qs) {
  if (qs->over) return false;
  hersh_buf parts = {0};
  size_t starts[HERSH_PROXY_MAX_PAIRS], n = 0;
  for (size_t i = 0; i < qs->n; i++) {
    if (first_of(qs, i, false) != i) continue;
    starts[n++] = parts.len;
    put_encoded(&parts, qs->at[i].key, "-._~");
    hersh_buf_put(&parts, "=", 1);
    put_encoded(&parts, qs->at[i].value, "-._~");
    hersh_buf_put(&parts, "", 1);
  }
  if (parts.oom) {
    hersh_buf_free(&parts);
    return false;
  }
  const char *sorted[HERSH_PROXY_MAX_PAIRS];
  for (size_t i = 0; i < n; i++) sorted[i] = parts.p + starts[i];
  qsort(sorted, n, sizeof *sorted, by_text);
  for (size_t i = 0; i < n; i++) {
    hersh_buf_put(b, i ? "&" : "?", 1);
    hersh_buf_puts(b, sorted[i]);
  }
  hersh_buf_free(&parts);
  return true;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct exchange {
  hersh_route_table *t; /* a hold */
  double started;
} exchange;

static void on_done(int status, void *ud) {
  exchange *x = ud;
  hersh_route_table_count(x->t, status, now() - x->started);
  hersh_route_table_release(x->t);
  free(x);
}

/* The program's id or name and the rest of a proxy path, or false. */
static bool split_path(const char *path, const char **id, size_t *id_len, const char **rest) {
  if (strncmp(path, PREFIX, sizeof PREFIX - 1) != 0) return false;
  *id = path + sizeof PREFIX - 1;
  *id_len = strcspn(*id, "/");
  const char *tail = *id + *id_len;
  if (*id_len == 0 || strncmp(tail, "/proxy", 6) != 0 || (tail[6] != '\0' && tail[6] != '/')) return false;
  *rest = tail[6] ? tail + 7 : tail + 6;
  return true;
}

bool hersh_proxy_route_match(const char *path) {
  const char *id, *rest;
  size_t id_len;
  return split_path(path, &id, &id_len, &rest);
}

bool hersh_proxy_route_plan(const hersh_route_table *t, const hersh_proxy_request *req, hersh_proxy_plan *plan) {
  const char *id, *rest;
  size_t id_len;
  if (!split_path(req->path, &id, &id_len, &rest)) return false;
  for (const char *c = rest; *c; c++)
    if (iscntrl((unsigned char)*c)) return false; /* api.lua's 400 */
  if (!hersh_http_is_token(req->method, strlen(req->method))) return false;
  const hersh_route *r = hersh_route_table_get(t, id, id_len);
  if (!r || !r->ready || id_len >= sizeof plan->program) return false; /* Lua's 404 or 503 */
  *plan = (hersh_proxy_plan){.method = req->method, .route = *r};
  memcpy(plan->program, id, id_len);
  plan->program[id_len] = '\0';
  size_t starts[HERSH_PROXY_MAX_PAIRS], count;
  bool ok = !req->headers.over && header_lines(&req->headers, &plan->lines, starts, &count) &&
            own_request(t, req->method, plan->lines.p, starts, count);
  if (ok) {
    hersh_buf_printf(&plan->url, "http://127.0.0.1:%d/", r->port);
    put_encoded(&plan->url, rest, "-._~!$&'()*+,;=:@/");
    ok = put_query(&plan->url, &req->query) && !plan->url.oom;
  }
  if (!ok) {
    hersh_proxy_route_plan_free(plan);
    return false;
  }
  for (size_t i = 0; i < count; i++) plan->headers[i] = plan->lines.p + starts[i];
  plan->headers[count] = NULL;
  return true;
}

void hersh_proxy_route_plan_free(hersh_proxy_plan *plan) {
  hersh_buf_free(&plan->lines);
  hersh_buf_free(&plan->url);
}

void hersh_proxy_route_forward(hersh_loop *loop, hersh_route_table *t, hersh_proxy_plan *plan,
                               const hersh_proxy_client *cl, void *c) {
  exchange *x = malloc(sizeof *x);
  if (x) {
    *x = (exchange){t, now()};
    hersh_route_table_retain(t);
  }
  const hersh_route *r = &plan->route;
  hersh_proxy_call call = {.method = plan->method, .url = plan->url.p, .headers = plan->headers,
                           .stream_body = true, .timeout = r->timeout, .connect_timeout = r->connect_timeout,
                           .program = plan->program, .fresh_after = r->changed};
  /* without memory for the tally, forwarded all the same, uncounted */
  int rc = hersh_proxy_forward_to(loop, cl, c, &call, x ? on_done : NULL, x);
  if (rc != HERSH_OK) { /* answered by the proxy: counted as the Lua route counts it */
    hersh_route_table_count(t, rc == HERSH_E_INVAL ? 400 : 502, -1);
    if (x) hersh_route_table_release(t);
    free(x);
  }
  hersh_proxy_route_plan_free(plan);
}

bool hersh_proxy_route_try(hersh_loop *loop, hersh_route_table *t, const hersh_http_request *req) {
  hersh_proxy_request pr = {.method = req->method, .path = req->path};
  MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect, &pr.headers);
  MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect, &pr.query);
  hersh_proxy_plan plan;
  if (!hersh_proxy_route_plan(t, &pr, &plan)) return false;
  hersh_http_pending *p = hersh_http_defer(req);
  if (!p) { /* stopping: Lua answers it */
    hersh_proxy_route_plan_free(&plan);
    return false;
  }
  hersh_proxy_route_forward(loop, t, &plan, &hersh_proxy_server_client, p);
  return true;
}
