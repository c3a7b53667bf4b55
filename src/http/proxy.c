/*
** proxy.c -- forwards a Host request to a program and streams its answer back.
**
** Upstream is the loop's client to the programs (upstream.c: plain keep-alive TCP
** connections pooled per port, no libcurl transfer per request); downstream is the
** server's stream of the deferred request. An answer read whole in one go goes out
** whole (with its length: no chunking, no suspend and resume); otherwise the head
** starts a stream after the first read that did not end it, and each piece of the body
** is written on as it comes. When the client has HERSH_PROXY_HIGH_WATER bytes still to
** take, reading from the program stops (TCP pushes back on it) until the server says
** the client took it all (on_drain). A client that leaves ends the exchange (on_close).
** The Host's server runs on the loop, so its callbacks come on the loop thread, as the
** upstream's do.
*/
#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/json.h"
#include "engine/binding.h"
#include "http/proxy.h"
/* server.h's request type and client.h's request function share a name: the type,
** unused here, is renamed (a type name never reaches the linker). */
#define hersh_http_request hersh_http_server_request
#include "http/server.h"
#undef hersh_http_request
#include "http/client.h"
#include "http/upstream.h"

/* ---- header rules ------------------------------------------------------------------------ */

/* RFC 9110 7.6.1's hop-by-hop fields, and those the proxy sets itself. */
static const char *const HOP[] = {"connection", "keep-alive",     "te",   "trailer",        "transfer-encoding",
                                  "upgrade",    "proxy-connection", "host", "content-length", "authorization",
                                  "expect",     NULL};

/* Whether the comma-separated token list `list` holds the n bytes of name. */
static bool listed(const char *list, const char *name, size_t n) {
  while (list && *list) {
    list += strspn(list, " \t,");
    size_t len = strcspn(list, ",");
    size_t end = len;
    while (end > 0 && (list[end - 1] == ' ' || list[end - 1] == '\t')) end--;
    if (end == n && strncasecmp(list, name, n) == 0) return true;
    list += len;
  }
  return false;
}

bool hersh_proxy_hop_header(const char *name, size_t n, const char *connection) {
  for (const char *const *h = HOP; *h; h++)
    if (strlen(*h) == n && strncasecmp(*h, name, n) == 0) return true;
  if (n > 6 && strncasecmp(name, "proxy-", 6) == 0) return true; /* Proxy-Authorization, -Authenticate */
  return listed(connection, name, n);
}

/* The value of header `name` among "name: value" lines, or NULL. */
static const char *find_value(const char *const *in, const char *name) {
  size_t n = strlen(name);
  for (const char *const *h = in; h && *h; h++) {
    if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':') return *h + n + 1 + strspn(*h + n + 1, " \t");
  }
  return NULL;
}

static bool is_forwarded(const char *name, size_t n) {
  return n > 12 && strncasecmp(name, "x-forwarded-", 12) == 0 &&
         ((n == 15 && strncasecmp(name + 12, "for", 3) == 0) || (n == 16 && strncasecmp(name + 12, "host", 4) == 0) ||
          (n == 17 && strncasecmp(name + 12, "proto", 5) == 0));
}

char **hersh_proxy_request_headers(const char *const *in, const char *client_ip) {
  const char *connection = find_value(in, "connection");
  hersh_buf b = {0}; /* the lines, each NUL-terminated */
  size_t count = 0;
  for (const char *const *h = in; h && *h; h++) {
    const char *colon = strchr(*h, ':');
    size_t n = colon ? (size_t)(colon - *h) : 0;
    /* A name that is no token ("connection; p") is dropped: it could be read as another. */
    if (!colon || !hersh_http_is_token(*h, n) || hersh_proxy_hop_header(*h, n, connection) || is_forwarded(*h, n))
      continue;
    if (colon[1 + strspn(colon + 1, " \t")] == '\0') { /* empty: "Name;", the clients' form of it */
      hersh_buf_put(&b, *h, n);
      hersh_buf_put(&b, ";", 2);
    } else {
      hersh_buf_put(&b, *h, strlen(*h) + 1);
    }
    count++;
  }
  const char *xff = find_value(in, "x-forwarded-for");
  if (xff && *xff && client_ip) hersh_buf_printf(&b, "X-Forwarded-For: %s, %s", xff, client_ip);
  else if (client_ip) hersh_buf_printf(&b, "X-Forwarded-For: %s", client_ip);
  else if (xff) hersh_buf_printf(&b, "X-Forwarded-For: %s", xff);
  if (client_ip || xff) {
    hersh_buf_put(&b, "", 1);
    count++;
  }
  hersh_buf_puts(&b, "X-Forwarded-Proto: http");
  hersh_buf_put(&b, "", 1);
  count++;
  const char *host = find_value(in, "host");
  if (host) {
    hersh_buf_printf(&b, "X-Forwarded-Host: %s", host);
    hersh_buf_put(&b, "", 1);
    count++;
  }
  char **out = b.oom ? NULL : malloc((count + 1) * sizeof *out + b.len);
  if (out) {
    char *text = (char *)(out + count + 1);
    memcpy(text, b.p, b.len);
    for (size_t i = 0; i < count; i++) {
      out[i] = text;
      text += strlen(text) + 1;
    }
    out[count] = NULL;
  }
  hersh_buf_free(&b);
  return out;
}

/* The next line of [*at, end) without its CR LF; advances *at. */
static const char *next_line(const char **at, const char *end, size_t *n) {
  const char *line = *at;
  const char *lf = memchr(line, '\n', (size_t)(end - line));
  const char *stop = lf ? lf : end;
  *at = lf ? lf + 1 : end;
  *n = (size_t)(stop - line);
  if (*n > 0 && line[*n - 1] == '\r') (*n)--;
  return line;
}

char *hersh_proxy_response_headers(const char *block, size_t len) {
  const char *end = block + len;
  hersh_buf connection = {0}; /* the values of every Connection line, comma-joined */
  hersh_buf_put(&connection, "", 0);
  size_t n;
  for (const char *at = block; at < end;) {
    const char *line = next_line(&at, end, &n);
    if (n > 11 && strncasecmp(line, "connection:", 11) == 0) {
      hersh_buf_put(&connection, ",", 1);
      hersh_buf_put(&connection, line + 11, n - 11);
    }
  }
  hersh_buf_put(&connection, "", 1);
  hersh_buf out = {0};
  hersh_buf_put(&out, "", 0);
  const char *at = block;
  (void)next_line(&at, end, &n); /* the status line */
  while (at < end) {
    const char *line = next_line(&at, end, &n);
    const char *colon = memchr(line, ':', n);
    /* An empty line ends the block; an obsolete folded line (SP or HT first) is dropped
    ** as RFC 9112 5.2 allows, and so is a line that is no field or holds a CR or NUL
    ** (it would split or cut the line it becomes). */
    if (n == 0 || line[0] == ' ' || line[0] == '\t' || !colon || !hersh_http_is_token(line, (size_t)(colon - line)) ||
        memchr(line, '\r', n) || memchr(line, '\0', n))
      continue;
    if (connection.oom || hersh_proxy_hop_header(line, (size_t)(colon - line), connection.p)) continue;
    hersh_buf_put(&out, line, n);
    hersh_buf_put(&out, "\r\n", 2);
  }
  bool oom = connection.oom;
  hersh_buf_free(&connection);
  if (oom) {
    hersh_buf_free(&out);
    return NULL;
  }
  return hersh_buf_take(&out);
}

/* ---- the server's deferred request as a client ----------------------------------------- */

static void srv_complete(void *c, int status, char *body, size_t len, char *headers) {
  hersh_http_response res = {.status = status, .body = body, .body_len = len, .headers = headers};
  (void)hersh_http_complete(c, &res); /* a client already gone is no error here */
}

static bool srv_stream_start(void *c, int status, const char *headers) {
  return hersh_http_stream_start(c, status, NULL, headers) != NULL; /* answers 500 if it fails */
}

static int srv_write(void *c, const void *data, size_t len) { return hersh_http_stream_write(c, data, len); }
static void srv_end(void *c) { hersh_http_stream_end(c); }
static void srv_cut(void *c) { hersh_http_stream_cut(c); }
static size_t srv_waiting(void *c) { return hersh_http_stream_waiting(c); }
static void srv_on_drain(void *c, hersh_http_close_fn fn, void *ud) { hersh_http_stream_on_drain(c, fn, ud); }
static void srv_on_close(void *c, hersh_http_close_fn fn, void *ud) { hersh_http_stream_on_close(c, fn, ud); }
static void srv_body_take(void *c, hersh_http_body_fn fn, void *ud) { hersh_http_body_take(c, fn, ud); }
static void srv_body_resume(void *c) { hersh_http_body_resume(c); }

static const char *srv_client_ip(void *c, char *buf, size_t n) {
  struct MHD_Connection *conn = hersh_http_pending_conn(c);
  const union MHD_ConnectionInfo *info =
      conn ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
  return info ? hersh_proxy_address_text(info->client_addr, buf, n) : NULL;
}

const hersh_proxy_client hersh_proxy_server_client = {
    .complete = srv_complete, .stream_start = srv_stream_start, .write = srv_write, .end = srv_end,
    .cut = srv_cut, .waiting = srv_waiting, .on_drain = srv_on_drain, .on_close = srv_on_close,
    .body_take = srv_body_take, .body_resume = srv_body_resume, .client_ip = srv_client_ip};

const char *hersh_proxy_address_text(const struct sockaddr *sa, char *buf, size_t n) {
  if (sa && sa->sa_family == AF_INET)
    return inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, buf, (socklen_t)n);
  if (sa && sa->sa_family == AF_INET6)
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, buf, (socklen_t)n);
  return NULL;
}

/* ---- one exchange ---------------------------------------------------------------------- */

typedef struct fwd {
  const hersh_proxy_client *cl;
  void *c;        /* the client, held until the answer goes out whole or its stream ends */
  bool streaming; /* the answer started as a stream */
  /* The program's head and the body that came with it, until the answer starts: an
  ** answer that comes in one read goes out whole (with its length), not as a stream. */
  bool headed;
  char *head_lines;
  hersh_buf held;
  hersh_upstream_req *req; /* until the exchange is over */
  bool paused;             /* reading from the program waits until the client drains */
  bool client_gone;
  bool body_taken;  /* a streamed request body: its taker is set until the exchange ends */
  bool client_held; /* the client waits (suspended) until the program took what waits */
  int status;
  char *program;
  double timeout, connect_timeout;
  hersh_proxy_done done;
  void *ud;
} fwd;

static void fwd_free(fwd *f) {
  free(f->head_lines);
  hersh_buf_free(&f->held);
  free(f->program);
  free(f);
}

/* The proxy's own answer, in the Host's error shape {"code", "error", "message"}; gives
** up the hold. The status sent. */
static int answer_error(const hersh_proxy_client *cl, void *c, int status, const char *title, const char *message) {
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, "code");
  hersh_json_int(&j, status);
  hersh_json_key(&j, "error");
  hersh_json_cstr(&j, title);
  hersh_json_key(&j, "message");
  hersh_json_cstr(&j, message);
  hersh_json_end(&j);
  char *body = hersh_json_take(&j);
  size_t len = body ? strlen(body) : 0;
  hersh_http_response res = {.status = status, .body = body, .body_len = len};
  if (!body) hersh_http_error(&res, 500, "out of memory");
  cl->complete(c, res.status, res.body, res.body_len, NULL);
  return res.status;
}

/* The rest of the client's body, if any, is dropped by the client side: before the
** hold is given up. */
static void release_body(fwd *f) {
  if (!f->body_taken) return;
  f->cl->body_take(f->c, NULL, NULL);
  if (f->client_held) f->cl->body_resume(f->c);
  f->body_taken = false;
}

static void on_done(const hersh_upstream_result *r, void *ud) {
  fwd *f = ud;
  f->req = NULL;
  release_body(f);
  char message[512];
  if (f->streaming) { /* the head went out: the end of the body, or a cut the client sees */
    f->cl->on_close(f->c, NULL, NULL);
    f->cl->on_drain(f->c, NULL, NULL);
    if (r->error) f->cl->cut(f->c);
    f->cl->end(f->c);
  } else if (!f->c) { /* the head could not start a stream: answered already */
  } else if (f->headed && !r->error) { /* all of it came at once */
    size_t len = f->held.len;
    char *body = hersh_buf_take(&f->held);
    f->cl->complete(f->c, f->status, body, len, f->head_lines);
    f->head_lines = NULL;
  } else if (r->code && strcmp(r->code, "ETIMEOUT") == 0 && strcmp(r->error, "connect timeout") == 0) {
    snprintf(message, sizeof message,
             "program %s did not accept the connection within %g s (its proxy.connect_timeout)", f->program,
             f->connect_timeout);
    f->status = answer_error(f->cl, f->c, 504, "Gateway Timeout", message);
  } else if (r->code && strcmp(r->code, "ETIMEOUT") == 0) {
    snprintf(message, sizeof message, "program %s did not answer within %g s (its proxy.timeout)", f->program,
             f->timeout);
    f->status = answer_error(f->cl, f->c, 504, "Gateway Timeout", message);
  } else {
    snprintf(message, sizeof message, "program %s did not answer: %s", f->program, r->error ? r->error : "no answer");
    f->status = answer_error(f->cl, f->c, 502, "Bad Gateway", message);
  }
  f->c = NULL;
  if (f->done) f->done(f->status, f->ud);
  fwd_free(f);
}

/* The client left mid-answer: nobody to read from the program for. */
static void on_client_closed(hersh_http_stream *s, void *ud) {
  (void)s;
  fwd *f = ud;
  f->client_gone = true;
  if (f->req) hersh_upstream_cancel(f->req); /* on_done follows */
}

/* The client took all that waited: read from the program again. */
static void on_client_drained(hersh_http_stream *s, void *ud) {
  (void)s;
  fwd *f = ud;
  if (!f->paused || !f->req) return;
  f->paused = false;
  hersh_upstream_resume(f->req);
}

static bool on_head(int status, const char *headers, size_t len, void *ud) {
  fwd *f = ud;
  f->head_lines = hersh_proxy_response_headers(headers, len);
  f->status = status;
  f->headed = true;
  if (f->head_lines) return true;
  hersh_http_response res = {0};
  hersh_http_error(&res, 500, "out of memory");
  f->status = res.status;
  release_body(f);
  f->cl->complete(f->c, res.status, res.body, res.body_len, NULL);
  f->c = NULL;
  return false;
}

/* The answer starts as a stream: the head, then what came so far. false when it could
** not (answered 500) or the client has left; the caller ends the exchange. */
static bool start_stream(fwd *f) {
  bool ok = f->cl->stream_start(f->c, f->status, f->head_lines); /* answers 500 if it fails */
  free(f->head_lines);
  f->head_lines = NULL;
  if (!ok) {
    f->c = NULL;
    f->status = 500;
    return false;
  }
  f->streaming = true;
  f->cl->on_drain(f->c, on_client_drained, f);
  f->cl->on_close(f->c, on_client_closed, f); /* runs at once if the client left */
  int rc = f->held.len ? f->cl->write(f->c, f->held.p, f->held.len) : HERSH_OK;
  hersh_buf_free(&f->held);
  return rc == HERSH_OK && !f->client_gone;
}

/* A read from the program did not end the answer: it goes on as a stream. */
static void on_settled(void *ud) {
  fwd *f = ud;
  if (f->streaming || !f->headed || !f->c || !f->req) return;
  if (!start_stream(f)) hersh_upstream_cancel(f->req); /* on_done follows */
}

/* A piece of the program's body: held until the answer starts, else written on; reading
** pauses while the client has HERSH_PROXY_HIGH_WATER bytes to take (one read more may
** come: the client side's buffer bounds it, HERSH_HTTP_STREAM_MAX_BUFFER). */
static bool on_data(const char *piece, size_t len, void *ud) {
  fwd *f = ud;
  if (f->client_gone) return false;
  if (!f->streaming) {
    hersh_buf_put(&f->held, piece, len);
    if (f->held.oom) return false;
    if (f->held.len < HERSH_PROXY_HIGH_WATER) return true;
    if (!start_stream(f)) return false;
  } else if (f->cl->write(f->c, piece, len) != HERSH_OK) {
    return false;
  }
  if (f->cl->waiting(f->c) >= HERSH_PROXY_HIGH_WATER) {
    f->paused = true;
    hersh_upstream_pause(f->req);
  }
  return true;
}

/* A piece of the client's body (len 0: its end), from the client side: sent on while
** less than HERSH_PROXY_BODY_BUFFER waits for the program; else the client is held
** until the program took it (on_sent). */
static size_t on_body_piece(void *ud, const char *data, size_t len) {
  fwd *f = ud;
  if (!f->req) return len;
  if (len > 0 && hersh_upstream_unsent(f->req) >= HERSH_PROXY_BODY_BUFFER) {
    f->client_held = true;
    return 0;
  }
  hersh_upstream_send(f->req, data, len);
  return len;
}

static void on_sent(void *ud) {
  fwd *f = ud;
  if (!f->client_held || !f->body_taken) return;
  f->client_held = false;
  f->cl->body_resume(f->c);
}

static const hersh_upstream_fns FNS = {
    .head = on_head, .data = on_data, .settled = on_settled, .sent = on_sent, .done = on_done};

/* The length of a body the client is still to send, from its headers: -1 unknown
** (chunked), 0 none. */
static long long body_length(const char *const *headers) {
  const char *te = find_value(headers, "transfer-encoding");
  if (te) return -1;
  const char *cl = find_value(headers, "content-length");
  char *end = NULL;
  long long n = cl ? strtoll(cl, &end, 10) : 0;
  return cl && end != cl && n > 0 ? n : 0;
}

/* "http://A.B.C.D:PORT/target": the address (in host, n bytes), the port and the target. */
static int split_url(const char *url, char *host, size_t n, int *port, const char **target) {
  static const char SCHEME[] = "http://";
  const char *at = url + sizeof SCHEME - 1;
  size_t host_len = strncmp(url, SCHEME, sizeof SCHEME - 1) == 0 ? strcspn(at, ":/") : 0;
  char *end = NULL;
  long p = host_len && at[host_len] == ':' ? strtol(at + host_len + 1, &end, 10) : 0;
  if (host_len == 0 || host_len >= n || !end || end == at + host_len + 1 || *end != '/' || p <= 0 || p > 65535)
    return hersh_fail_with(HERSH_E_INVAL, "the proxy forwards to http://ADDRESS:PORT/ only, not '%s'", url);
  memcpy(host, at, host_len);
  host[host_len] = '\0';
  *port = (int)p;
  *target = end;
  return HERSH_OK;
}

/* Starts the exchange; on an error, the hold is still the caller's. */
static int start(hersh_loop *loop, const hersh_proxy_client *cl, void *c, const hersh_proxy_call *call,
                 hersh_proxy_done done, void *ud) {
  char host[64];
  hersh_upstream_call uc = {.method = call->method, .body = call->body, .body_len = call->body_len,
                            .timeout = call->timeout, .connect_timeout = call->connect_timeout,
                            .fresh_after = call->fresh_after};
  int rc = split_url(call->url, host, sizeof host, &uc.port, &uc.target);
  if (rc) return rc;
  uc.host = host;
  hersh_upstream *u = hersh_upstream_get(loop);
  if (!u) return HERSH_E_SYS; /* hersh_errmsg says why */
  fwd *f = calloc(1, sizeof *f);
  char ip[INET6_ADDRSTRLEN];
  char **headers = hersh_proxy_request_headers(call->headers, cl->client_ip(c, ip, sizeof ip));
  char *program = hersh_strdup(call->program ? call->program : "?");
  if (!f || !headers || !program) {
    free(f);
    free(headers);
    free(program);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory forwarding a request");
  }
  f->cl = cl;
  f->c = c;
  f->program = program;
  f->timeout = call->timeout;
  f->connect_timeout = call->connect_timeout;
  f->done = done;
  f->ud = ud;
  uc.headers = (const char *const *)headers;
  uc.stream_body = call->stream_body && (uc.stream_len = body_length(call->headers)) != 0;
  rc = hersh_upstream_start(u, &uc, &FNS, f, &f->req);
  free(headers); /* the head is written */
  if (rc) {
    fwd_free(f); /* the caller keeps the hold */
    return rc;
  }
  if (uc.stream_body) {
    f->body_taken = true;
    cl->body_take(c, on_body_piece, f);
  }
  return rc;
}

int hersh_proxy_forward_to(hersh_loop *loop, const hersh_proxy_client *cl, void *c, const hersh_proxy_call *call,
                           hersh_proxy_done done, void *ud) {
  if (!c) return hersh_fail_with(HERSH_E_INVAL, "hersh_proxy_forward: no request");
  int rc = loop && call && call->url ? start(loop, cl, c, call, done, ud)
                                     : hersh_fail_with(HERSH_E_INVAL, "hersh_proxy_forward: NULL argument");
  if (rc == HERSH_OK) return rc;
  char message[512];
  snprintf(message, sizeof message, "cannot forward this request: %s", hersh_errmsg());
  if (rc == HERSH_E_INVAL) answer_error(cl, c, 400, "Bad Request", message);
  else answer_error(cl, c, 502, "Bad Gateway", message);
  return rc;
}

int hersh_proxy_forward(hersh_loop *loop, hersh_http_pending *p, const hersh_proxy_call *call, hersh_proxy_done done,
                        void *ud) {
  return hersh_proxy_forward_to(loop, &hersh_proxy_server_client, p, call, done, ud);
}
