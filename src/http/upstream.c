/*
** upstream.c -- the proxy's client to the programs (upstream.h): libuv TCP handles, a
** pool of idle keep-alive connections, one request at a time on each.
**
** A request owns a timer (its deadlines, and the deferred end of a cancel) and, while
** it runs, a connection. Writes are tried at once (uv_try_write) and only what the
** socket did not take is queued. An idle connection stays read-watched: anything it
** reads (the program closing it, or bytes nobody asked for) closes it. Handles free
** only their own memory when closed, so the client can go before they finish closing.
*/
#include "http/upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "base/buf.h"
#include "engine/binding.h"
#include "http/client.h"
#include "http/list.h"
#include "http/upstream_head.h"

enum {
  MAX_IDLE = 64, /* idle connections kept, over all programs */
  /* Milliseconds an idle connection may be reused: below the WatcherAPI's idle timeout
  ** (10 s), so a request is rarely sent on a connection the program is closing. */
  MAX_IDLE_MS = 5000,
  READ_SIZE = 64 << 10,
};
#define MAX_TIMEOUT_S 1e6 /* longer is "forever", and still fits the timer's milliseconds */

typedef struct conn conn;
typedef struct hersh_upstream_req req;

struct hersh_upstream {
  uv_loop_t *uv;
  conn *idle; /* newest first */
  size_t n_idle;
  req *active;
  bool closing;
  char rbuf[READ_SIZE]; /* every read lands here and is handled before the next */
};

struct conn {
  uv_tcp_t tcp;
  uv_connect_t connecting;
  hersh_upstream *u;
  conn *prev, *next; /* in u->idle */
  struct sockaddr_in addr;
  uint64_t epoch, idle_since;
  req *r;        /* the request it serves; NULL when idle */
  size_t writes; /* queued, not yet written */
  bool connected, reading, idle, closing;
};

struct hersh_upstream_req {
  hersh_upstream *u;
  req *prev, *next; /* in u->active */
  conn *c;
  uv_timer_t timer;
  const hersh_upstream_fns *fns;
  void *ud;
  struct sockaddr_in addr;
  char *head; /* the request's head, and its body given whole: kept to send it again */
  size_t head_len;
  hersh_buf early; /* a streamed body's bytes given before the connection is there */
  size_t unsent;
  bool stream_body, chunked, body_ended, head_sent;
  bool idempotent, is_head, reused, retried, got_any, paused;
  bool ended;    /* done was called, or is due from the timer */
  bool finished; /* done was called */
  uint64_t deadline, connect_deadline; /* uv_now milliseconds; 0: none */
  hersh_buf in; /* bytes of the answer's head, until it is whole */
  bool headed;
  hersh_upstream_head h;
  hersh_upstream_chunks chunks;
  uint64_t left;
  const char *error, *code; /* of a deferred end */
  char text[160];
};

typedef struct queued {
  uv_write_t w;
  conn *c;
  size_t len;
  char data[];
} queued;

static _Atomic uint64_t epoch_counter;

uint64_t hersh_upstream_epoch(void) { return atomic_fetch_add(&epoch_counter, 1) + 1; }

/* ---- connections ------------------------------------------------------------------------------ */

static void conn_closed(uv_handle_t *h) { free(h->data); }

/* Closes c: its request (if any) loses it; queued writes are cancelled. */
static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = true;
  if (c->idle) {
    LIST_UNLINK(c->u->idle, c);
    c->u->n_idle--;
    c->idle = false;
  }
  if (c->r) c->r->c = NULL;
  c->r = NULL;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  *buf = uv_buf_init(c->u->rbuf, READ_SIZE);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static int conn_read(conn *c, bool on) {
  if (on == c->reading || !c->connected) return 0;
  c->reading = on;
  return on ? uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) : uv_read_stop((uv_stream_t *)&c->tcp);
}

/* Back into the pool, the oldest one leaving when it is full. */
static void pool_put(conn *c) {
  hersh_upstream *u = c->u;
  c->r = NULL;
  if (conn_read(c, true) != 0) return conn_close(c);
  c->idle = true;
  c->idle_since = uv_now(u->uv);
  LIST_LINK(u->idle, c);
  if (++u->n_idle <= MAX_IDLE) return;
  conn *oldest = u->idle;
  while (oldest->next) oldest = oldest->next;
  conn_close(oldest);
}

/* An idle connection to addr opened after fresh_after, or NULL; stale ones close. */
static conn *pool_take(hersh_upstream *u, const struct sockaddr_in *addr, uint64_t fresh_after) {
  uint64_t now = uv_now(u->uv);
  for (conn *c = u->idle, *next; c; c = next) {
    next = c->next;
    if (c->addr.sin_port != addr->sin_port || c->addr.sin_addr.s_addr != addr->sin_addr.s_addr) continue;
    if (now - c->idle_since > MAX_IDLE_MS || c->epoch <= fresh_after) {
      conn_close(c);
      continue;
    }
    LIST_UNLINK(u->idle, c);
    u->n_idle--;
    c->idle = false;
    return c;
  }
  return NULL;
}

void hersh_upstream_retire(hersh_upstream *u, int port) {
  if (!u) return;
  for (conn *c = u->idle, *next; c; c = next) {
    next = c->next;
    if (ntohs(c->addr.sin_port) == port) conn_close(c);
  }
}

/* ---- the end of a request -------------------------------------------------------------------- */

static void req_closed(uv_handle_t *h) {
  req *r = h->data;
  free(r->head);
  hersh_buf_free(&r->early);
  hersh_buf_free(&r->in);
  free(r);
}

/* done, then the request goes (its connection was closed or pooled before). */
static void finish(req *r, const char *error, const char *code) {
  if (r->finished) return;
  r->finished = r->ended = true;
  if (r->c) conn_close(r->c);
  LIST_UNLINK(r->u->active, r);
  (void)uv_timer_stop(&r->timer);
  hersh_upstream_result res = {.status = error ? 0 : r->h.status, .error = error, .code = code};
  r->fns->done(&res, r->ud);
  uv_close((uv_handle_t *)&r->timer, req_closed);
}

static void on_deferred(uv_timer_t *t) {
  req *r = t->data;
  finish(r, r->error, r->code);
}

/* Ends the request from the loop, not from the caller's stack. */
static void finish_later(req *r, const char *error, const char *code) {
  if (r->ended) return;
  r->ended = true;
  r->error = error;
  r->code = code;
  if (r->c) conn_close(r->c);
  if (uv_timer_start(&r->timer, on_deferred, 0, 0) != 0) finish(r, error, code); /* cannot fail when started */
}

/* The answer is whole: the connection goes back to the pool when it can serve another. */
static void complete(req *r, bool nothing_more) {
  conn *c = r->c;
  bool sent = c->writes == 0 && r->early.len == 0 && (!r->stream_body || r->body_ended);
  r->c = NULL;
  if (nothing_more && sent && r->h.reusable && !r->u->closing) pool_put(c);
  else conn_close(c);
  finish(r, NULL, NULL);
}

/* ---- writing --------------------------------------------------------------------------------- */

static int connect_fresh(req *r);

static void fail_text(req *r, const char *code, const char *fmt, const char *what) {
  snprintf(r->text, sizeof r->text, fmt, what);
  finish(r, r->text, code);
}

/* The connection broke before an answer came: an idempotent request sent whole on a
** pooled connection (the program closed it while idle) goes again on a fresh one. */
static void broken(req *r, int status) {
  if (r->reused && !r->got_any && r->idempotent && !r->stream_body && !r->retried && !r->u->closing) {
    r->retried = true;
    conn_close(r->c);
    int rc = connect_fresh(r);
    if (rc == 0) return;
    status = rc;
  }
  if (r->got_any) fail_text(r, "ECLOSED", "the connection closed before the end of the answer (%s)", uv_strerror(status));
  else fail_text(r, "ECLOSED", "the connection closed without an answer (%s)", uv_strerror(status));
}

static void on_written(uv_write_t *w, int status) {
  queued *o = (queued *)w;
  conn *c = o->c;
  req *r = c->r;
  size_t len = o->len;
  free(o);
  c->writes--;
  if (!r || c->closing) return;
  if (status < 0) return broken(r, status);
  r->unsent -= len < r->unsent ? len : r->unsent;
  if (c->writes == 0 && r->fns->sent && r->stream_body) r->fns->sent(r->ud);
}

/* Writes bufs on c, queuing what the socket does not take now; 0 or a libuv error. The
** queued bytes count as unsent when `body`. */
static int conn_write(conn *c, uv_buf_t *bufs, unsigned n, bool body) {
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  int done = c->writes ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
  if (done < 0 && done != UV_EAGAIN) return done;
  size_t skip = done < 0 ? 0 : (size_t)done;
  if (skip == total) return 0;
  queued *o = malloc(sizeof *o + total - skip);
  if (!o) return UV_ENOMEM;
  o->c = c;
  o->len = total - skip;
  size_t at = 0;
  for (unsigned i = 0; i < n; i++) {
    size_t from = skip > bufs[i].len ? bufs[i].len : skip;
    skip -= from;
    memcpy(o->data + at, bufs[i].base + from, bufs[i].len - from);
    at += bufs[i].len - from;
  }
  uv_buf_t rest = uv_buf_init(o->data, (unsigned)o->len);
  int rc = uv_write(&o->w, (uv_stream_t *)&c->tcp, &rest, 1, on_written);
  if (rc != 0) {
    free(o);
    return rc;
  }
  c->writes++;
  if (body && c->r) c->r->unsent += o->len;
  return 0;
}

/* The head (and a body given whole), then what came of a streamed body meanwhile. */
static int send_head(req *r) {
  conn *c = r->c;
  uv_buf_t bufs[2] = {uv_buf_init(r->head, (unsigned)r->head_len), uv_buf_init(r->early.p, (unsigned)r->early.len)};
  size_t early = r->early.len;
  r->unsent -= early;
  int rc = conn_write(c, bufs, early ? 2 : 1, true);
  if (rc != 0) return rc;
  r->head_sent = true;
  hersh_buf_free(&r->early);
  if (early && r->unsent == 0 && r->fns->sent) r->fns->sent(r->ud); /* may be called back: r still runs */
  return 0;
}

/* ---- reading --------------------------------------------------------------------------------- */

/* Hands a piece of the body on; false when the request ended meanwhile. */
static bool give(req *r, const char *p, size_t n) {
  if (n == 0) return true;
  if (!r->fns->data(p, n, r->ud)) finish(r, "aborted", "ECANCELLED");
  return !r->ended;
}

/* Body bytes; whether the request goes on. */
static bool body(req *r, const char *p, size_t n) {
  const char *why = NULL;
  switch (r->h.body) {
  case HERSH_UPSTREAM_BODY_NONE:
    complete(r, n == 0);
    return false;
  case HERSH_UPSTREAM_BODY_LENGTH: {
    size_t take = r->left < n ? (size_t)r->left : n;
    if (!give(r, p, take)) return false;
    r->left -= take;
    if (r->left > 0) return true;
    complete(r, take == n);
    return false;
  }
  case HERSH_UPSTREAM_BODY_CHUNKED:
    while (n > 0) {
      size_t used, len;
      const char *data;
      int rc = hersh_upstream_chunks_next(&r->chunks, p, n, &used, &data, &len, &why);
      if (rc < 0) {
        fail_text(r, "EPROTO", "the program's chunked body is invalid: %s", why);
        return false;
      }
      if (!give(r, data, len)) return false;
      p += used;
      n -= used;
      if (rc == 1) {
        complete(r, n == 0);
        return false;
      }
    }
    return true;
  case HERSH_UPSTREAM_BODY_CLOSE:
    return give(r, p, n);
  }
  return true;
}

/* The start of a head as r->in, from a read or from r->in itself. */
static void keep(req *r, const char *p, size_t n) {
  if (r->in.len && p >= r->in.p && p <= r->in.p + r->in.len) {
    memmove(r->in.p, p, n);
    r->in.len = n;
  } else {
    hersh_buf_put(&r->in, p, n);
  }
}

/* Bytes of the answer, the head first; whether the request goes on. */
static bool answer(req *r, const char *p, size_t n) {
  if (r->headed) return body(r, p, n);
  if (r->in.len) {
    hersh_buf_put(&r->in, p, n);
    if (r->in.oom) {
      finish(r, "out of memory", "ENOMEM");
      return false;
    }
    p = r->in.p;
    n = r->in.len;
  }
  const char *why = NULL;
  for (;;) {
    int rc = hersh_upstream_parse_head(p, n < HERSH_UPSTREAM_MAX_HEAD ? n : HERSH_UPSTREAM_MAX_HEAD, r->is_head,
                                       &r->h, &why);
    if (rc < 0) {
      fail_text(r, "EPROTO", "the program's answer is invalid: %s", why);
      return false;
    }
    if (rc == 0 && n >= HERSH_UPSTREAM_MAX_HEAD) {
      finish(r, "the answer's head is too large", "ETOOLARGE");
      return false;
    }
    if (rc == 0) { /* the rest of the head comes later */
      keep(r, p, n);
      if (!r->in.oom) return true;
      finish(r, "out of memory", "ENOMEM");
      return false;
    }
    if (r->h.status >= 200) break;
    p += r->h.len; /* an interim answer (100 Continue...): the final one follows */
    n -= r->h.len;
  }
  r->headed = true;
  r->left = r->h.length;
  if (!r->fns->head(r->h.status, p, r->h.len, r->ud)) finish(r, "aborted", "ECANCELLED");
  if (r->ended) return false;
  bool on = body(r, p + r->h.len, n - r->h.len);
  hersh_buf_free(&r->in); /* p may point into it until here */
  return on;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  req *r = c->r;
  if (c->closing || nread == 0) return;
  if (!r) return conn_close(c); /* idle: the program closed it, or spoke unasked */
  if (nread < 0) {
    if (nread == UV_EOF && r->headed && r->h.body == HERSH_UPSTREAM_BODY_CLOSE) return complete(r, false);
    return broken(r, (int)nread);
  }
  r->got_any = true;
  if (answer(r, buf->base, (size_t)nread) && r->headed && r->fns->settled) r->fns->settled(r->ud);
}

/* ---- connecting and deadlines ----------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
  req *r = t->data;
  bool connecting = r->c && !r->c->connected;
  finish(r, connecting ? "connect timeout" : "timeout", "ETIMEOUT");
}

/* The timer at the next deadline: connecting, or the whole exchange. */
static void arm(req *r) {
  uint64_t at = r->deadline;
  if (r->c && !r->c->connected && r->connect_deadline && (!at || r->connect_deadline < at)) at = r->connect_deadline;
  uint64_t now = uv_now(r->u->uv);
  int rc = at ? uv_timer_start(&r->timer, on_timeout, at > now ? at - now : 0, 0) : uv_timer_stop(&r->timer);
  if (rc != 0) fprintf(stderr, "hersh: upstream: cannot arm a deadline: %s\n", uv_strerror(rc));
}

static void on_connect(uv_connect_t *cr, int status) {
  conn *c = cr->data;
  req *r = c->r;
  if (c->closing || !r) return; /* cancelled meanwhile */
  if (status == UV_ECONNREFUSED) return finish(r, "connection refused", "ECONNREFUSED");
  if (status < 0) return fail_text(r, "ECONNECT", "cannot connect: %s", uv_strerror(status));
  c->connected = true;
  int rc = uv_tcp_nodelay(&c->tcp, 1);
  if (rc == 0 && !r->paused) rc = conn_read(c, true);
  if (rc == 0) rc = send_head(r);
  if (r->ended) return; /* sent may have cancelled it */
  if (rc != 0) return fail_text(r, "ECONNECT", "cannot send the request: %s", uv_strerror(rc));
  arm(r);
}

/* A new connection for r; 0 or a libuv error. */
static int connect_fresh(req *r) {
  conn *c = calloc(1, sizeof *c);
  if (!c) return UV_ENOMEM;
  c->u = r->u;
  c->addr = r->addr;
  int rc = uv_tcp_init(r->u->uv, &c->tcp);
  if (rc != 0) {
    free(c);
    return rc;
  }
  c->tcp.data = c;
  c->connecting.data = c;
  c->epoch = hersh_upstream_epoch();
  rc = uv_tcp_connect(&c->connecting, &c->tcp, (const struct sockaddr *)&r->addr, on_connect);
  if (rc != 0) {
    conn_close(c);
    return rc;
  }
  c->r = r;
  r->c = c;
  r->reused = false;
  r->head_sent = false;
  arm(r);
  return 0;
}

/* ---- starting -------------------------------------------------------------------------------- */

static bool idempotent(const char *m) {
  static const char *const SAFE[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL};
  for (const char *const *s = SAFE; *s; s++)
    if (strcmp(m, *s) == 0) return true;
  return false;
}

static uint64_t deadline(hersh_upstream *u, double seconds) {
  if (seconds <= 0 || seconds >= MAX_TIMEOUT_S) return 0;
  uint64_t ms = (uint64_t)(seconds * 1000.0 + 0.5);
  return uv_now(u->uv) + (ms ? ms : 1);
}

/* The request head in r->head: request line, Host, the headers, the framing, the body
** given whole. */
static int build_head(req *r, const hersh_upstream_call *call, const char *method) {
  hersh_buf b = {0};
  hersh_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", method, call->target, call->host, call->port);
  for (const char *const *h = call->headers; h && *h; h++) {
    size_t name = strcspn(*h, ":;");
    bool empty = (*h)[name] == ';';
    if (!(*h)[name] || (empty && (*h)[name + 1]) || !hersh_http_is_token(*h, name) || strpbrk(*h, "\r\n")) {
      hersh_buf_free(&b);
      return hersh_fail_with(HERSH_E_INVAL, "bad request header '%s': expected \"Name: value\"", *h);
    }
    if (empty) { /* "Name;": sent empty */
      hersh_buf_put(&b, *h, name);
      hersh_buf_puts(&b, ":\r\n");
    } else {
      hersh_buf_puts(&b, *h);
      hersh_buf_puts(&b, "\r\n");
    }
  }
  bool body_method = strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
  if (call->stream_body && call->stream_len < 0) hersh_buf_puts(&b, "Transfer-Encoding: chunked\r\n");
  else if (call->stream_body) hersh_buf_printf(&b, "Content-Length: %lld\r\n", call->stream_len);
  else if (call->body_len || body_method) hersh_buf_printf(&b, "Content-Length: %zu\r\n", call->body_len);
  hersh_buf_puts(&b, "\r\n");
  if (!call->stream_body && call->body_len) hersh_buf_put(&b, call->body, call->body_len);
  if (b.oom) {
    hersh_buf_free(&b);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory for a request head");
  }
  r->head_len = b.len;
  r->head = hersh_buf_take(&b);
  return HERSH_OK;
}

static int check_call(const hersh_upstream_call *call, const char *method, struct sockaddr_in *addr) {
  if (!hersh_http_is_token(method, strlen(method))) return hersh_fail_with(HERSH_E_INVAL, "bad HTTP method '%s'", method);
  if (!call->host || uv_ip4_addr(call->host, call->port, addr) != 0 || call->port <= 0 || call->port > 65535)
    return hersh_fail_with(HERSH_E_INVAL, "bad program address %s:%d", call->host ? call->host : "?", call->port);
  if (!call->target || call->target[0] != '/')
    return hersh_fail_with(HERSH_E_INVAL, "bad request target '%s'", call->target ? call->target : "");
  for (const unsigned char *t = (const unsigned char *)call->target; *t; t++)
    if (*t < 33 || *t > 126) return hersh_fail_with(HERSH_E_INVAL, "bad request target '%s'", call->target);
  if (call->body_len && !call->body) return hersh_fail_with(HERSH_E_INVAL, "a body of %zu bytes at NULL", call->body_len);
  return HERSH_OK;
}

int hersh_upstream_start(hersh_upstream *u, const hersh_upstream_call *call, const hersh_upstream_fns *fns, void *ud,
                         hersh_upstream_req **out) {
  if (!u || !call || !fns || !fns->head || !fns->data || !fns->done)
    return hersh_fail_with(HERSH_E_INVAL, "hersh_upstream_start: NULL argument");
  if (u->closing) return hersh_fail_with(HERSH_E_STATE, "the proxy's client is closing");
  const char *method = call->method ? call->method : "GET";
  struct sockaddr_in addr;
  int rc = check_call(call, method, &addr);
  if (rc) return rc;
  req *r = calloc(1, sizeof *r);
  if (!r) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting a proxied request");
  *r = (req){.u = u, .fns = fns, .ud = ud, .addr = addr, .stream_body = call->stream_body,
             .chunked = call->stream_body && call->stream_len < 0, .idempotent = idempotent(method),
             .is_head = strcmp(method, "HEAD") == 0,
             .deadline = deadline(u, call->timeout), .connect_deadline = deadline(u, call->connect_timeout)};
  rc = build_head(r, call, method);
  if (rc) {
    free(r);
    return rc;
  }
  int uv_rc = uv_timer_init(u->uv, &r->timer);
  if (uv_rc != 0) {
    free(r->head);
    free(r);
    return hersh_fail_with(HERSH_E_SYS, "uv_timer_init: %s", uv_strerror(uv_rc));
  }
  r->timer.data = r;
  LIST_LINK(u->active, r);
  conn *c;
  while ((c = pool_take(u, &addr, call->fresh_after))) {
    c->r = r;
    r->c = c;
    r->reused = true;
    if (send_head(r) == 0) break;
    conn_close(c); /* found broken: the next, or a fresh one */
  }
  uv_rc = r->c ? 0 : connect_fresh(r);
  if (uv_rc != 0) {
    r->ended = true;
    LIST_UNLINK(u->active, r);
    uv_close((uv_handle_t *)&r->timer, req_closed);
    return hersh_fail_with(uv_rc == UV_ENOMEM ? HERSH_E_NOMEM : HERSH_E_SYS, "cannot connect to %s:%d: %s",
                           call->host, call->port, uv_strerror(uv_rc));
  }
  if (r->reused) arm(r);
  if (out) *out = r;
  return HERSH_OK;
}

void hersh_upstream_send(req *r, const char *data, size_t len) {
  if (r->ended || r->body_ended || !r->stream_body) return;
  char size[24];
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (len == 0) {
    r->body_ended = true;
    if (r->chunked) bufs[n++] = uv_buf_init((char *)"0\r\n\r\n", 5);
  } else if (r->chunked) {
    int w = snprintf(size, sizeof size, "%zx\r\n", len);
    bufs[n++] = uv_buf_init(size, (unsigned)w);
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    bufs[n++] = uv_buf_init((char *)"\r\n", 2);
  } else {
    bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
  }
  if (n == 0) return;
  if (!r->c || !r->head_sent) { /* written once connected */
    for (unsigned i = 0; i < n; i++) {
      hersh_buf_put(&r->early, bufs[i].base, bufs[i].len);
      r->unsent += bufs[i].len;
    }
    if (r->early.oom) finish_later(r, "out of memory", "ENOMEM");
    return;
  }
  int rc = conn_write(r->c, bufs, n, true);
  if (rc != 0) {
    snprintf(r->text, sizeof r->text, "cannot send the body: %s", uv_strerror(rc));
    finish_later(r, r->text, rc == UV_ENOMEM ? "ENOMEM" : "ECLOSED");
  }
}

size_t hersh_upstream_unsent(const req *r) { return r->unsent; }

void hersh_upstream_pause(req *r) {
  if (r->ended || r->paused) return;
  r->paused = true;
  if (r->c) (void)conn_read(r->c, false);
}

void hersh_upstream_resume(req *r) {
  if (r->ended || !r->paused) return;
  r->paused = false;
  if (r->c && conn_read(r->c, true) != 0) finish_later(r, "cannot read from the program", "ECLOSED");
}

void hersh_upstream_cancel(req *r) {
  if (r) finish_later(r, "cancelled", "ECANCELLED");
}

/* ---- the client -------------------------------------------------------------------------------- */

static void upstream_free(void *ud) {
  hersh_upstream *u = ud;
  u->closing = true;
  while (u->active) finish(u->active, "cancelled", "ECANCELLED");
  while (u->idle) conn_close(u->idle);
  free(u);
}

hersh_upstream *hersh_upstream_get(hersh_loop *loop) {
  if (!loop) {
    hersh_fail_with(HERSH_E_INVAL, "hersh_upstream_get: NULL loop");
    return NULL;
  }
  hersh_upstream *u = hersh_loop_on_free_find(loop, upstream_free);
  if (u) return u;
  u = calloc(1, sizeof *u);
  if (!u) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory making the proxy's client");
    return NULL;
  }
  u->uv = hersh_loop_uv(loop);
  if (hersh_loop_on_free(loop, upstream_free, u) != HERSH_OK) {
    free(u);
    return NULL;
  }
  return u;
}
