/*
** server.c -- libmicrohttpd behind one handler call per request. The response is
** queued on a later call than the first for each request: queued on the first, MHD
** answers with "Connection: close" and keep-alive clients slow down about sevenfold.
**
** Deferred requests suspend their connection and resume it when the answer is in; the
** access handler (or, for a stream, the content reader) then hands it to MHD on the
** server's thread, the only place MHD allows that. A pending request is shared by the
** connection, its owner and (streaming) the MHD response: each holds a reference, and
** the last one frees it. Its fields are under its own mutex. MHD_suspend_connection is
** called with that mutex held (from MHD's callbacks) and so is MHD_resume_connection
** (from any thread): whoever clears `suspended` has resumed by the time it unlocks,
** which lets stop resume every connection before MHD_stop_daemon, as MHD requires.
**
** On the loop (on_loop), MHD has no thread: hersh_http_server_run is MHD_run, so the
** handler runs in the same call that read the request and its answer is queued
** without a thread hand-off; the mutexes are then uncontended.
**
** What a client may take is bounded: connections (in all and per address), a silent
** connection's life, the time its request may take to come in (a sweeper thread, or
** each run on the loop, cuts the slow ones: libmicrohttpd's timeout counts silence
** only, and a client trickling a byte now and then is never silent), and the bodies
** held at once. A bearer token is
** checked on the headers, before any body is read.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/error.h"
#include "http/server.h"

enum { STREAM_BLOCK = 16 * 1024, STOP_DRAIN_MS = 1000, SWEEP_MAX_MS = 1000, SPARE_FDS = 64 };

/* One open connection, for the sweeper: whether a request is coming in, since when. */
typedef struct conn_clock {
  struct conn_clock *prev, *next;
  int fd;
  struct sockaddr_storage addr; /* the client's, for the front's per-client count */
  bool reading;
  bool cut; /* shut down by the sweeper */
  uint64_t since_ms;
} conn_clock;

struct hersh_http_server {
  struct MHD_Daemon *daemon;
  hersh_http_handler handler;
  void *ud;
  hersh_http_handler on_headers;
  void (*wake)(void *ud);
  size_t max_body;
  size_t max_buffered;
  atomic_size_t buffered; /* bytes allocated for bodies, over all connections */
  bool has_token;
  unsigned char token[HERSH_HTTP_TOKEN_MAX]; /* zero-padded */
  size_t token_len;
  char *public_path;
  char *public_prefix;
  int port;
  pthread_mutex_t mu; /* stopping, quiesced and the list below */
  bool stopping;
  bool quiesced;          /* it accepts no more: listen_fd is ours to close at stop */
  MHD_socket listen_fd;
  hersh_http_pending *pending; /* deferred requests whose connection is still open */
  /* The sweeper: it closes connections whose request takes over request_timeout_ms.
  ** The list is under clocks_mu; a connection leaves it (on MHD's thread) before MHD
  ** closes its socket, so a shutdown under the lock never hits a reused descriptor. */
  pthread_mutex_t clocks_mu;
  pthread_cond_t clocks_cond;
  conn_clock *clocks;
  bool sweeper_stop, has_sweeper;
  pthread_t sweeper;
  uint64_t request_timeout_ms;
  bool on_loop;           /* no thread: its owner runs it (hersh_http_server_run) */
  uint64_t next_sweep_ms; /* on the loop: when run sweeps next */
  bool front;              /* the listening socket is the front's: connections come by add */
  unsigned max_conn, per_client;
};

struct hersh_http_pending {
  pthread_mutex_t mu;
  atomic_int refs;
  hersh_http_server *server;
  struct MHD_Connection *conn;
  int fd;                                /* the client socket, looked at while suspended */
  hersh_http_pending *prev, *next;       /* in the server's list (server->mu) */
  bool listed;                           /* (server->mu) */
  bool answered;                         /* complete or stream_start came (or stop answered) */
  bool streaming;
  bool queued;                           /* handed to MHD */
  bool suspended;                        /* by us, and not resumed yet */
  bool gone;                             /* the connection ended */
  bool cut;                              /* the client left or the server stops: no more data */
  bool ended;                            /* stream_end came */
  int status;
  char *body, *headers;
  size_t body_len;
  char *buf; /* the stream's chunks not sent yet: buf[off, len) */
  size_t off, len, cap;
  hersh_http_close_fn on_close;
  void *on_close_ud;
  hersh_http_close_fn on_drain;
  void *on_drain_ud;
  hersh_http_body_fn on_body; /* the taker of a body deferred on its headers */
  void *on_body_ud;
};

/* Per request: the body as it arrives, and the pending request once deferred. */
typedef struct request_state {
  hersh_http_server *server;
  conn_clock *clock; /* the connection's; NULL if it could not be made */
  char *body;
  size_t len, cap;
  size_t reserved; /* counted in server->buffered: the Content-Length, or cap */
  bool too_large;
  bool refused; /* answered from the headers (401) */
  bool over_cap; /* the server holds max_buffered already: refused, the rest discarded */
  bool body_done; /* deferred on its headers: its taker was told the body is all in */
  hersh_http_pending *pending; /* the connection's reference */
} request_state;

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

void hersh_http_error(hersh_http_response *res, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, "error");
  hersh_json_cstr(&j, text ? text : "error");
  hersh_json_end(&j);
  hersh_buf_put(&b, "\n", 1);
  free(text);
  free(res->body);
  res->status = status;
  res->body = hersh_buf_take(&b);
  res->body_len = res->body ? strlen(res->body) : 0;
}

/* An error in the shape of the WatcherAPI's {"error"} and of the Host's {"error",
** "code", "message"} alike, for the answers given before any handler runs. */
static void early_error(hersh_http_response *res, int status, const char *title, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void early_error(hersh_http_response *res, int status, const char *title, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  const char *message = text ? text : title;
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, "error");
  hersh_json_cstr(&j, title);
  hersh_json_key(&j, "code");
  hersh_json_int(&j, status);
  hersh_json_key(&j, "message");
  hersh_json_cstr(&j, message);
  hersh_json_end(&j);
  hersh_buf_put(&b, "\n", 1);
  free(text);
  res->status = status;
  res->body = hersh_buf_take(&b);
  res->body_len = res->body ? strlen(res->body) : 0;
}

static void over_cap_error(hersh_http_response *res, const hersh_http_server *s) {
  early_error(res, 503, "Service Unavailable",
              "the server already holds %zu bytes of request bodies, its limit: try again later", s->max_buffered);
}

/* Counts `total` bytes of bodies for the request (it had st->reserved); false, and
** nothing counted, when that would take the server over max_buffered. */
static bool reserve(request_state *st, size_t total) {
  hersh_http_server *s = st->server;
  if (total <= st->reserved) return true;
  size_t more = total - st->reserved;
  size_t before = atomic_fetch_add_explicit(&s->buffered, more, memory_order_relaxed);
  if (before + more > s->max_buffered) {
    atomic_fetch_sub_explicit(&s->buffered, more, memory_order_relaxed);
    return false;
  }
  st->reserved = total;
  return true;
}

/* Gives the body's memory (and its count) back. */
static void drop_body(request_state *st) {
  atomic_fetch_sub_explicit(&st->server->buffered, st->reserved, memory_order_relaxed);
  free(st->body);
  st->body = NULL;
  st->len = st->cap = st->reserved = 0;
}

static bool append_body(request_state *st, const char *data, size_t n) {
  hersh_http_server *s = st->server;
  if (st->too_large || st->over_cap) return true; /* keep reading, so the client gets its answer */
  if (st->len + n > s->max_body) {
    st->too_large = true;
    drop_body(st);
    return true;
  }
  if (st->len + n + 1 > st->cap) {
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->len + n + 1) cap *= 2;
    if (st->reserved >= st->len + n + 1) cap = st->reserved; /* its Content-Length: exactly that */
    if (!reserve(st, cap)) {
      st->over_cap = true;
      drop_body(st);
      return true;
    }
    char *p = realloc(st->body, cap);
    if (!p) return false;
    st->body = p;
    st->cap = cap;
  }
  memcpy(st->body + st->len, data, n);
  st->len += n;
  st->body[st->len] = '\0';
  return true;
}

/* Adds "Name: value" lines, the first Content-Type only; true if there was one. The
** lines are cut where they lie (the caller frees them after): no copy per header. */
static bool add_headers(struct MHD_Response *r, char *lines) {
  bool has_type = false;
  for (char *line = lines; line && *line;) {
    char *eol = strchr(line, '\n');
    char *next = eol ? eol + 1 : line + strlen(line);
    size_t n = (size_t)((eol ? eol : next) - line);
    if (n && line[n - 1] == '\r') n--;
    char *colon = memchr(line, ':', n);
    if (colon && colon > line) {
      line[n] = '\0';
      *colon = '\0';
      const char *value = colon + 1;
      while (*value == ' ' || *value == '\t') value++;
      bool is_type = strcasecmp(line, MHD_HTTP_HEADER_CONTENT_TYPE) == 0;
      if (!(is_type && has_type)) {
        MHD_add_response_header(r, line, value); /* refuses CR, LF and tabs in either */
        has_type = has_type || is_type;
      }
    }
    line = next;
  }
  return has_type;
}

/* Queues a whole answer; takes body and headers. */
static enum MHD_Result queue_answer(struct MHD_Connection *conn, int status, char *body, size_t len,
                                   const char *content_type, const char *allow, char *headers) {
  hersh_http_response res = {.status = status, .body = body, .body_len = len};
  if (!res.body) { /* never an empty body: an error says what happened */
    hersh_http_error(&res, status >= 400 ? status : 500, "no response");
    content_type = NULL;
  }
  struct MHD_Response *r = MHD_create_response_from_buffer(res.body_len, res.body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(res.body);
    free(headers);
    return MHD_NO;
  }
  bool has_type = add_headers(r, headers); /* a Content-Type among them wins */
  free(headers);
  if (!has_type)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type ? content_type : "application/json");
  if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result ok = MHD_queue_response(conn, (unsigned)res.status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, hersh_http_response *res) {
  return queue_answer(conn, res->status, res->body, res->body_len, res->content_type, res->allow, res->headers);
}

/* ---- pending requests ------------------------------------------------------------------ */

static void pending_release(hersh_http_pending *p) {
  if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1) return;
  pthread_mutex_destroy(&p->mu);
  free(p->body);
  free(p->headers);
  free(p->buf);
  free(p);
}

void hersh_http_stream_retain(hersh_http_stream *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }
void hersh_http_stream_release(hersh_http_stream *s) { pending_release(s); }

/* With p->mu held. Without a thread of its own, MHD does not wake itself for a resumed
** connection: its owner is asked to run it. */
static void resume_locked(hersh_http_pending *p) {
  if (!p->suspended) return;
  p->suspended = false;
  MHD_resume_connection(p->conn);
  hersh_http_server *s = p->server;
  if (s->on_loop && s->wake) s->wake(s->ud);
}

/* Whether the client of a suspended connection has closed its end (or reset it). A
** client that only shut down its sending side looks gone too: HTTP clients do not. */
static bool peer_left(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

hersh_http_pending *hersh_http_defer(const hersh_http_request *req) {
  request_state *st = req->state;
  if (!st || st->pending) {
    hersh_fail_with(HERSH_E_INVAL, "hersh_http_defer: not in a handler, or deferred twice");
    return NULL;
  }
  hersh_http_server *s = st->server;
  hersh_http_pending *p = calloc(1, sizeof *p);
  if (!p) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory deferring a request");
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  atomic_init(&p->refs, 2); /* the connection's and the owner's */
  p->server = s;
  p->conn = req->conn;
  const union MHD_ConnectionInfo *info = MHD_get_connection_info(p->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  p->fd = info ? info->connect_fd : -1;
  pthread_mutex_lock(&s->mu);
  bool stopping = s->stopping;
  if (!stopping) {
    p->next = s->pending;
    if (s->pending) s->pending->prev = p;
    s->pending = p;
    p->listed = true;
  }
  pthread_mutex_unlock(&s->mu);
  if (stopping) {
    pthread_mutex_destroy(&p->mu);
    free(p);
    hersh_fail_with(HERSH_E_STOPPED, "the server is stopping");
    return NULL;
  }
  st->pending = p;
  return p;
}

/* The caller's header lines, then Content-Type and Allow (malloc'd; NULL when none).
** The first Content-Type wins (add_headers): the caller's over the field. */
static char *header_lines(const char *more, const char *content_type, const char *allow) {
  if (!content_type && !allow) return more ? hersh_strdup(more) : NULL;
  hersh_buf b = {0};
  if (more) hersh_buf_puts(&b, more);
  if (content_type) hersh_buf_printf(&b, "Content-Type: %s\r\n", content_type);
  if (allow) hersh_buf_printf(&b, "Allow: %s\r\n", allow);
  return hersh_buf_take(&b);
}

int hersh_http_complete(hersh_http_pending *p, hersh_http_response *res) {
  /* the caller's lines are kept as they are when nothing joins them (a proxied answer) */
  char *headers = res->content_type || res->allow ? header_lines(res->headers, res->content_type, res->allow)
                                                  : res->headers;
  if (headers != res->headers) free(res->headers);
  res->headers = NULL;
  pthread_mutex_lock(&p->mu);
  bool late = p->answered || p->gone;
  if (!late) {
    p->answered = true;
    p->status = res->status;
    p->body = res->body;
    p->body_len = res->body_len;
    p->headers = headers;
    resume_locked(p);
  }
  pthread_mutex_unlock(&p->mu);
  if (late) {
    free(res->body);
    free(headers);
  }
  res->body = NULL;
  pending_release(p);
  return late ? hersh_fail_with(HERSH_E_STATE, "the request has already ended") : HERSH_OK;
}

hersh_http_stream *hersh_http_stream_start(hersh_http_pending *p, int status, const char *content_type,
                                           const char *headers) {
  char *lines = header_lines(headers, content_type, NULL);
  if ((headers || content_type) && !lines) {
    hersh_http_response res = {0};
    hersh_http_error(&res, 500, "out of memory");
    hersh_http_complete(p, &res);
    hersh_fail_with(HERSH_E_NOMEM, "out of memory starting a stream");
    return NULL;
  }
  pthread_mutex_lock(&p->mu);
  bool late = p->answered || p->gone;
  if (!late) {
    p->answered = true;
    p->streaming = true;
    p->status = status;
    p->headers = lines;
    resume_locked(p);
  } else {
    p->cut = true; /* writes fail at once */
  }
  pthread_mutex_unlock(&p->mu);
  if (late) free(lines);
  return p;
}

int hersh_http_stream_write(hersh_http_stream *s, const void *data, size_t len) {
  int rc = HERSH_OK;
  pthread_mutex_lock(&s->mu);
  size_t waiting = s->len - s->off;
  if (s->gone || s->cut) {
    rc = hersh_fail_with(HERSH_E_STATE, "the client is gone");
  } else if (s->ended) {
    rc = hersh_fail_with(HERSH_E_STATE, "the stream has ended");
  } else if (waiting && waiting + len > HERSH_HTTP_STREAM_MAX_BUFFER) {
    rc = hersh_fail_with(HERSH_E_LIMIT, "the client is slower than the stream: %zu bytes wait to be sent", waiting);
  } else if (len) {
    if (s->off && s->len + len > s->cap) { /* make room at the front first */
      memmove(s->buf, s->buf + s->off, waiting);
      s->off = 0;
      s->len = waiting;
    }
    if (s->len + len > s->cap) {
      size_t cap = s->cap ? s->cap : 4096;
      while (cap < s->len + len) cap *= 2;
      char *b = realloc(s->buf, cap);
      if (!b) rc = hersh_fail_with(HERSH_E_NOMEM, "out of memory buffering a stream");
      else {
        s->buf = b;
        s->cap = cap;
      }
    }
    if (rc == HERSH_OK) {
      memcpy(s->buf + s->len, data, len);
      s->len += len;
      if (s->queued) resume_locked(s); /* before it is queued, the access handler resumes */
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

void hersh_http_stream_end(hersh_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  s->ended = true;
  if (s->queued) resume_locked(s);
  pthread_mutex_unlock(&s->mu);
  pending_release(s);
}

void hersh_http_stream_cut(hersh_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  if (!s->gone && !s->cut) {
    s->cut = true;
    /* MHD may be blocked sending to it, never asking the reader: its send fails now.
    ** A client that reads nothing would keep a FIN queued behind the unsent bytes for
    ** ever: closed with linger 0, the connection is reset instead. */
    if (s->fd >= 0) {
      struct linger now = {.l_onoff = 1, .l_linger = 0};
      (void)setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &now, sizeof now); /* best effort: shutdown still cuts */
      shutdown(s->fd, SHUT_RDWR);
    }
    resume_locked(s);
  }
  pthread_mutex_unlock(&s->mu);
}

size_t hersh_http_stream_waiting(hersh_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  size_t waiting = s->len - s->off;
  pthread_mutex_unlock(&s->mu);
  return waiting;
}

bool hersh_http_stream_closed(hersh_http_stream *s) {
  pthread_mutex_lock(&s->mu);
  if (!s->gone && !s->cut && s->suspended && s->fd >= 0 && peer_left(s->fd)) {
    s->cut = true; /* the content reader ends the response with an error: MHD closes it */
    resume_locked(s);
  }
  bool closed = s->gone || s->cut;
  pthread_mutex_unlock(&s->mu);
  return closed;
}

void hersh_http_stream_on_close(hersh_http_stream *s, hersh_http_close_fn fn, void *ud) {
  pthread_mutex_lock(&s->mu);
  bool now = s->gone;
  if (!now) {
    s->on_close = fn;
    s->on_close_ud = ud;
  }
  pthread_mutex_unlock(&s->mu);
  if (now && fn) fn(s, ud);
}

void hersh_http_body_take(hersh_http_pending *p, hersh_http_body_fn fn, void *ud) {
  pthread_mutex_lock(&p->mu);
  p->on_body = fn;
  p->on_body_ud = ud;
  pthread_mutex_unlock(&p->mu);
}

void hersh_http_body_resume(hersh_http_pending *p) {
  pthread_mutex_lock(&p->mu);
  resume_locked(p);
  pthread_mutex_unlock(&p->mu);
}

void hersh_http_stream_on_drain(hersh_http_stream *s, hersh_http_close_fn fn, void *ud) {
  pthread_mutex_lock(&s->mu);
  s->on_drain = fn;
  s->on_drain_ud = ud;
  pthread_mutex_unlock(&s->mu);
}

struct MHD_Connection *hersh_http_pending_conn(hersh_http_pending *p) {
  pthread_mutex_lock(&p->mu);
  struct MHD_Connection *conn = p->gone ? NULL : p->conn;
  pthread_mutex_unlock(&p->mu);
  return conn;
}

/* The content reader of a stream (server thread; MHD holds the response's lock). */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  hersh_http_pending *s = cls;
  ssize_t n;
  hersh_http_close_fn drained = NULL;
  pthread_mutex_lock(&s->mu);
  if (s->cut) {
    n = MHD_CONTENT_READER_END_WITH_ERROR;
  } else if (s->len > s->off) {
    size_t k = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, k);
    s->off += k;
    if (s->off == s->len) {
      s->off = s->len = 0;
      drained = s->ended ? NULL : s->on_drain;
    }
    n = (ssize_t)k;
  } else if (s->ended) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else { /* nothing yet: 0 with the connection suspended, as MHD asks (no busy loop) */
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    n = 0;
  }
  void *drained_ud = s->on_drain_ud;
  pthread_mutex_unlock(&s->mu);
  if (drained) drained(s, drained_ud); /* unlocked: it may write at once */
  return n;
}

static void stream_free(void *cls) { pending_release(cls); }

/* A piece of the body of a request deferred on its headers, to its taker (len 0: the
** end); what it leaves waits, suspended, for hersh_http_body_resume. */
static enum MHD_Result body_piece(hersh_http_pending *p, struct MHD_Connection *conn, const char *data, size_t *len) {
  pthread_mutex_lock(&p->mu);
  hersh_http_body_fn fn = p->on_body;
  void *ud = p->on_body_ud;
  pthread_mutex_unlock(&p->mu);
  size_t took = fn ? fn(ud, data, *len) : *len; /* no taker: dropped */
  *len -= took < *len ? took : *len;
  if (*len) {
    pthread_mutex_lock(&p->mu);
    p->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&p->mu);
  }
  return MHD_YES;
}

/* A later call for a deferred request: queue its answer, or wait for it suspended. */
static enum MHD_Result answer_pending(struct MHD_Connection *conn, hersh_http_pending *p) {
  pthread_mutex_lock(&p->mu);
  if (!p->answered) {
    p->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&p->mu);
    return MHD_YES;
  }
  if (p->queued) { /* not expected: MHD asks no more once a response is queued */
    pthread_mutex_unlock(&p->mu);
    return MHD_YES;
  }
  p->queued = true;
  int status = p->status;
  char *headers = p->headers, *body = p->body;
  size_t body_len = p->body_len;
  bool streaming = p->streaming;
  p->headers = p->body = NULL;
  pthread_mutex_unlock(&p->mu);
  if (!streaming) return queue_answer(conn, status, body, body_len, NULL, NULL, headers);
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, p, stream_free);
  if (!r) {
    free(headers);
    return MHD_NO;
  }
  atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed); /* the response's: stream_free gives it up */
  if (!add_headers(r, headers)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
  free(headers);
  enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
  MHD_destroy_response(r);
  return ok;
}

/* ---- connection clocks ----------------------------------------------------------------- */

/* A request starts (reading) or is all in (server thread). */
static void clock_set(hersh_http_server *s, conn_clock *c, bool reading) {
  if (!c) return;
  pthread_mutex_lock(&s->clocks_mu);
  c->reading = reading;
  c->since_ms = now_ms();
  pthread_mutex_unlock(&s->clocks_mu);
}

/* Shuts down the connections whose request has been coming in for too long: MHD then
** sees their end and closes them. */
static uint64_t sweep_step(const hersh_http_server *s) {
  return s->request_timeout_ms / 4 < SWEEP_MAX_MS ? s->request_timeout_ms / 4 : SWEEP_MAX_MS;
}

/* With clocks_mu held. */
static void sweep_locked(hersh_http_server *s) {
  uint64_t now = now_ms();
  for (conn_clock *c = s->clocks; c; c = c->next) {
    if (!c->reading || c->cut || now - c->since_ms < s->request_timeout_ms) continue;
    c->cut = true;
    shutdown(c->fd, SHUT_RDWR); /* it may have gone already: then there is nothing to do */
  }
}

/* The sweeper thread of a server with its own thread (on the loop, run sweeps). */
static void *sweep(void *arg) {
  hersh_http_server *s = arg;
  uint64_t step = sweep_step(s);
  pthread_mutex_lock(&s->clocks_mu);
  while (!s->sweeper_stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)(step % 1000) * 1000000L;
    until.tv_sec += (time_t)(step / 1000) + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&s->clocks_cond, &s->clocks_mu, &until);
    sweep_locked(s);
  }
  pthread_mutex_unlock(&s->clocks_mu);
  return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  hersh_http_server *s = cls;
  conn_clock *c = *socket_context;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    c = info ? calloc(1, sizeof *c) : NULL;
    *socket_context = c;
    if (!c) return; /* out of memory: only this connection goes unwatched */
    c->fd = info->connect_fd;
    const union MHD_ConnectionInfo *a = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    /* MHD keeps the address at the length accept gave: a unix socket's can be its
    ** family alone (a WatcherAPI behind a socket proxy). Only IP addresses are compared. */
    sa_family_t family = a && a->client_addr ? a->client_addr->sa_family : AF_UNSPEC;
    if (family == AF_INET) memcpy(&c->addr, a->client_addr, sizeof(struct sockaddr_in));
    else if (family == AF_INET6) memcpy(&c->addr, a->client_addr, sizeof(struct sockaddr_in6));
    c->reading = true;
    c->since_ms = now_ms();
    pthread_mutex_lock(&s->clocks_mu);
    c->next = s->clocks;
    if (s->clocks) s->clocks->prev = c;
    s->clocks = c;
    pthread_mutex_unlock(&s->clocks_mu);
    return;
  }
  if (!c) return;
  pthread_mutex_lock(&s->clocks_mu); /* MHD closes the socket after this returns */
  if (c->prev) c->prev->next = c->next;
  else s->clocks = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&s->clocks_mu);
  free(c);
  *socket_context = NULL;
}

/* ---- the MHD callbacks ----------------------------------------------------------------- */

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* MHD's own decoding of the path and query, but "%00" stays as it is: a decoded NUL
** would end the C string there, and "/ui/a.js%00.html" would be read as "/ui/a.js". */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
  (void)cls;
  (void)conn;
  char *w = s;
  for (const char *r = s; *r;) {
    int hi = r[0] == '%' ? hex_value(r[1]) : -1, lo = hi >= 0 ? hex_value(r[2]) : -1;
    if (lo >= 0 && (hi | lo) != 0) {
      *w++ = (char)(hi * 16 + lo);
      r += 3;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
  return (size_t)(w - s);
}

/* Whether the request may go on without the token, or carries it. The token is
** compared over HERSH_HTTP_TOKEN_MAX bytes whatever its length, so the time taken
** tells nothing about it (not even its length). */
/* Whether the request reads the public prefix or a path under it ("/ui", "/ui/x"; not
** "/uix"): GET and HEAD only, so no one without the token can make the server hold a body. */
static bool reads_public_prefix(const hersh_http_server *s, const char *method, const char *url) {
  if (!s->public_prefix || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) return false;
  size_t n = strlen(s->public_prefix);
  return strncmp(url, s->public_prefix, n) == 0 && (url[n] == '\0' || url[n] == '/');
}

bool hersh_http_server_authorized(const hersh_http_server *s, const char *method, const char *url, const char *v) {
  if (!s->has_token || (s->public_path && strcmp(url, s->public_path) == 0) || reads_public_prefix(s, method, url))
    return true;
  if (!v || strncmp(v, "Bearer ", 7) != 0) return false;
  size_t n = strlen(v + 7);
  if (n > HERSH_HTTP_TOKEN_MAX) return false;
  unsigned char given[HERSH_HTTP_TOKEN_MAX] = {0};
  memcpy(given, v + 7, n);
  unsigned diff = n != s->token_len;
  for (size_t i = 0; i < HERSH_HTTP_TOKEN_MAX; i++) diff |= (unsigned)(given[i] ^ s->token[i]);
  return diff == 0;
}

/* What can be refused from the headers alone, into res (status 0 when nothing): a
** missing or wrong token, a Content-Length over max_body, or over what the server may
** still hold (counted for the request from here on). */
static void refuse_early(request_state *st, struct MHD_Connection *conn, const char *method, const char *url,
                         hersh_http_response *res) {
  hersh_http_server *s = st->server;
  if (!hersh_http_server_authorized(
          s, method, url, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))) {
    res->headers = hersh_strdup("WWW-Authenticate: Bearer\r\n");
    return early_error(res, 401, "Unauthorized", "missing or wrong bearer token");
  }
  const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (!cl) return; /* none, or chunked: counted as it comes */
  char *end;
  errno = 0;
  unsigned long long len = strtoull(cl, &end, 10);
  if (errno || end == cl || *end || len > s->max_body) /* MHD has refused what does not parse */
    return early_error(res, 413, "Payload Too Large", "request body over %zu bytes", s->max_body);
  if (len && !reserve(st, (size_t)len + 1)) over_cap_error(res, s);
}

/* Once the server is stopping, an answer closes its connection: a kept-alive client
** goes on with the process that serves the same socket next (an update in place),
** not with this one, about to exit. */
static char *close_if_stopping(hersh_http_server *s, char *headers) {
  pthread_mutex_lock(&s->mu);
  bool stopping = s->stopping;
  pthread_mutex_unlock(&s->mu);
  if (!stopping) return headers;
  hersh_buf b = {0};
  if (headers) hersh_buf_puts(&b, headers);
  hersh_buf_puts(&b, "Connection: close\r\n");
  free(headers);
  return hersh_buf_take(&b); /* NULL when out of memory: the answer goes without it */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
  (void)version;
  hersh_http_server *s = cls;
  request_state *st = *con_cls;
  if (!st) { /* the first call, on the headers: only remember the request, or refuse it */
    st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    st->server = s;
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    st->clock = info ? info->socket_context : NULL;
    *con_cls = st;
    hersh_http_response res = {0};
    refuse_early(st, conn, method, url, &res);
    if (!res.status && s->on_headers) {
      hersh_http_request req = {conn, method, url, NULL, 0, st};
      s->on_headers(&req, &res, s->ud);
      if (st->pending) { /* deferred: its body goes to its taker, not held here */
        drop_body(st);
        free(res.body);
        free(res.headers);
        return MHD_YES;
      }
    }
    if (!res.status) return MHD_YES;
    /* Answered now, the body unread: MHD sends this and closes the connection. */
    st->refused = true;
    clock_set(s, st->clock, false);
    return send_response(conn, &res);
  }
  if (*upload_size && st->pending) return body_piece(st->pending, conn, upload_data, upload_size);
  if (*upload_size) {
    bool ok = st->refused || append_body(st, upload_data, *upload_size);
    *upload_size = 0;
    return ok ? MHD_YES : MHD_NO;
  }
  if (st->refused) return MHD_YES; /* its answer is queued already */
  if (st->pending && !st->body_done) { /* deferred on its headers: its body is all in */
    st->body_done = true;
    clock_set(s, st->clock, false);
    body_piece(st->pending, conn, NULL, &(size_t){0});
  }
  if (st->pending) return answer_pending(conn, st->pending);
  clock_set(s, st->clock, false); /* all in: what follows is the server's time */
  hersh_http_response res = {.status = 200};
  if (st->too_large) {
    early_error(&res, 413, "Payload Too Large", "request body over %zu bytes", s->max_body);
  } else if (st->over_cap) {
    over_cap_error(&res, s);
  } else {
    hersh_http_request req = {conn, method, url, st->body, st->len, st};
    st->body_done = true; /* read whole: a deferral here takes no body */
    s->handler(&req, &res, s->ud);
    drop_body(st); /* the handler copied what it keeps */
    if (st->pending) { /* deferred: whatever it put in res is not the answer */
      free(res.body);
      free(res.headers);
      return answer_pending(conn, st->pending);
    }
  }
  res.headers = close_if_stopping(s, res.headers);
  return send_response(conn, &res);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode code) {
  (void)conn, (void)code;
  hersh_http_server *s = cls;
  request_state *st = *con_cls;
  *con_cls = NULL;
  if (!st) return;
  clock_set(s, st->clock, true); /* a kept-alive connection waits for its next request */
  hersh_http_pending *p = st->pending;
  if (p) {
    pthread_mutex_lock(&s->mu);
    if (p->listed) {
      if (p->prev) p->prev->next = p->next;
      else s->pending = p->next;
      if (p->next) p->next->prev = p->prev;
      p->listed = false;
    }
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&p->mu);
    p->gone = true;
    p->suspended = false;
    hersh_http_close_fn fn = p->on_close;
    void *ud = p->on_close_ud;
    p->on_close = NULL;
    pthread_mutex_unlock(&p->mu);
    if (fn) fn(p, ud);
    pending_release(p);
  }
  drop_body(st);
  free(st);
}

const char *hersh_http_query(const hersh_http_request *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Each connection takes a descriptor: raises the soft limit (up to the hard one) when it
** is below the connection limit and some spare; returns the limit that fits then. */
static unsigned fit_descriptors(unsigned connections) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return connections;
  rlim_t want = (rlim_t)connections + SPARE_FDS;
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
    struct rlimit raised = {.rlim_cur = r.rlim_max, .rlim_max = r.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) r = raised;
  }
  if (r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= want) return connections;
  return r.rlim_cur > 2 * SPARE_FDS ? (unsigned)(r.rlim_cur - SPARE_FDS) : (unsigned)(r.rlim_cur / 2);
}

static void server_free(hersh_http_server *s) {
  pthread_cond_destroy(&s->clocks_cond);
  pthread_mutex_destroy(&s->clocks_mu);
  pthread_mutex_destroy(&s->mu);
  free(s->public_path);
  free(s->public_prefix);
  free(s);
}

static void stop_sweeper(hersh_http_server *s) {
  if (!s->has_sweeper) return;
  pthread_mutex_lock(&s->clocks_mu);
  s->sweeper_stop = true;
  pthread_cond_signal(&s->clocks_cond);
  pthread_mutex_unlock(&s->clocks_mu);
  pthread_join(s->sweeper, NULL);
  s->has_sweeper = false;
}

/* The limits and the token of the options (defaults for 0s), into s. */
static int take_options(hersh_http_server *s, const hersh_http_options *opts) {
  s->max_body = opts->max_body;
  s->max_buffered = opts->max_buffered ? opts->max_buffered : 4 * opts->max_body;
  s->request_timeout_ms = 1000ull * (opts->request_timeout ? opts->request_timeout : HERSH_HTTP_REQUEST_TIMEOUT);
  if (opts->token) {
    size_t n = strlen(opts->token);
    if (n == 0 || n > HERSH_HTTP_TOKEN_MAX)
      return hersh_fail_with(HERSH_E_INVAL, "the token must have 1 to %d bytes, not %zu", HERSH_HTTP_TOKEN_MAX, n);
    memcpy(s->token, opts->token, n);
    s->token_len = n;
    s->has_token = true;
  }
  if ((opts->public_path && !(s->public_path = hersh_strdup(opts->public_path))) ||
      (opts->public_prefix && !(s->public_prefix = hersh_strdup(opts->public_prefix))))
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP server");
  return HERSH_OK;
}

/* The front's listening socket, bound as MHD would bind it (non-blocking). */
static int listen_on(const struct sockaddr_storage *addr, const char *bind_text, int port, int *out) {
  bool v6 = addr->ss_family == AF_INET6;
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            (!v6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0) &&
            bind(fd, (const struct sockaddr *)addr, v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) == 0 &&
            listen(fd, SOMAXCONN) == 0;
  if (!ok) {
    int err = errno;
    if (fd >= 0) close(fd);
    return hersh_fail_with(HERSH_E_SYS, "cannot listen on %s:%d (%s)", bind_text, port, strerror(err));
  }
  *out = fd;
  return HERSH_OK;
}

int hersh_http_server_start(const hersh_http_options *opts, hersh_http_handler handler, void *ud,
                            hersh_http_server **out) {
  *out = NULL;
  hersh_http_server *s = calloc(1, sizeof *s);
  if (!s) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP server");
  s->handler = handler;
  s->on_headers = opts->on_headers;
  s->wake = opts->wake;
  s->ud = ud;
  atomic_init(&s->buffered, 0);
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->clocks_mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->clocks_cond, &ca);
  pthread_condattr_destroy(&ca);
  int rc = take_options(s, opts);
  unsigned max_conn = fit_descriptors(opts->max_connections ? opts->max_connections : HERSH_HTTP_MAX_CONNECTIONS);
  unsigned per_client = opts->max_per_client ? opts->max_per_client : HERSH_HTTP_MAX_PER_CLIENT;
  s->max_conn = max_conn;
  s->per_client = per_client < max_conn ? per_client : max_conn;
  struct MHD_OptionItem limits[] = {
      {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
      {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
      {MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape, NULL},
      {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)max_conn, NULL},
      {MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)(per_client < max_conn ? per_client : max_conn), NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)(opts->idle_timeout ? opts->idle_timeout : HERSH_HTTP_IDLE_TIMEOUT),
       NULL},
      {MHD_OPTION_END, 0, NULL},
  };
  /* ITC lets stop quiesce the daemon (see hersh_http_server_stop) and wakes the
  ** server's thread (on the loop: its epoll fd) when a deferred request is resumed;
  ** suspend/resume implies it. */
  s->on_loop = opts->on_loop;
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
  if (!s->on_loop) flags |= MHD_USE_INTERNAL_POLLING_THREAD;
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  const char *bind = opts->bind && *opts->bind ? opts->bind : "127.0.0.1";
  if (!rc && opts->listen_fd < 0) {
    struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, bind, &in4->sin_addr) == 1) {
      in4->sin_family = AF_INET;
      in4->sin_port = htons((uint16_t)opts->port);
    } else if (inet_pton(AF_INET6, bind, &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons((uint16_t)opts->port);
      flags |= MHD_USE_IPv6;
    } else {
      rc = hersh_fail_with(HERSH_E_INVAL, "bind address '%s' is not an IPv4 or IPv6 address", bind);
    }
  }
  if (!rc && (opts->port < 0 || opts->port > 65535))
    rc = hersh_fail_with(HERSH_E_INVAL, "port %d is out of range", opts->port);
  s->front = opts->front && s->on_loop;
  s->listen_fd = MHD_INVALID_SOCKET;
  if (!rc && s->front) { /* the front accepts; MHD gets what the front hands it */
    if (opts->listen_fd >= 0) s->listen_fd = opts->listen_fd;
    else rc = listen_on(&addr, bind, opts->port, &s->listen_fd);
    int flags_now = !rc && opts->listen_fd >= 0 ? fcntl(s->listen_fd, F_GETFL) : 0;
    if (flags_now < 0 || (!rc && opts->listen_fd >= 0 && fcntl(s->listen_fd, F_SETFL, flags_now | O_NONBLOCK) != 0))
      rc = hersh_fail_with(HERSH_E_SYS, "cannot serve the listening socket fd %d", opts->listen_fd);
    if (!rc) s->daemon = MHD_start_daemon(flags | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, s,
                                          MHD_OPTION_ARRAY, limits, MHD_OPTION_END);
    if (!rc && !s->daemon) rc = hersh_fail_with(HERSH_E_SYS, "cannot start the HTTP server");
    if (rc && opts->listen_fd < 0 && s->listen_fd != MHD_INVALID_SOCKET) close(s->listen_fd);
  } else if (!rc && opts->listen_fd >= 0) {
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, opts->listen_fd,
                                 MHD_OPTION_ARRAY, limits, MHD_OPTION_END);
    if (!s->daemon) rc = hersh_fail_with(HERSH_E_SYS, "cannot serve the listening socket fd %d", opts->listen_fd);
  } else if (!rc) {
    s->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_ARRAY, limits, MHD_OPTION_END);
    if (!s->daemon) rc = hersh_fail_with(HERSH_E_SYS, "cannot listen on %s:%d (in use, or not allowed)", bind, opts->port);
  }
  s->next_sweep_ms = now_ms() + sweep_step(s);
  if (!rc && !s->on_loop) {
    int err = pthread_create(&s->sweeper, NULL, sweep, s);
    s->has_sweeper = err == 0;
    if (err) {
      hersh_http_server_stop(s);
      return hersh_fail_with(HERSH_E_SYS, "cannot start the HTTP server's sweeper thread: %s", strerror(err));
    }
  }
  if (rc) {
    server_free(s);
    return rc;
  }
  if (s->front) {
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    s->port = getsockname(s->listen_fd, (struct sockaddr *)&bound, &len) != 0 ? opts->port
              : bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  } else {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : opts->port;
  }
  *out = s;
  return 0;
}

int hersh_http_server_port(const hersh_http_server *s) { return s ? s->port : 0; }

int hersh_http_server_fd(const hersh_http_server *s) {
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  return info ? info->epoll_fd : -1;
}

int hersh_http_server_run(hersh_http_server *s) {
  uint64_t now = now_ms();
  if (now >= s->next_sweep_ms) {
    pthread_mutex_lock(&s->clocks_mu);
    sweep_locked(s);
    pthread_mutex_unlock(&s->clocks_mu);
    s->next_sweep_ms = now + sweep_step(s);
  }
  (void)MHD_run(s->daemon); /* MHD_NO only for a daemon not started for it: never here */
  pthread_mutex_lock(&s->clocks_mu);
  bool open = s->clocks != NULL; /* without connections, nothing to sweep: no wake-up */
  pthread_mutex_unlock(&s->clocks_mu);
  uint64_t after = now_ms();
  int64_t wait = !open ? -1 : s->next_sweep_ms > after ? (int64_t)(s->next_sweep_ms - after) : 0;
  MHD_UNSIGNED_LONG_LONG mhd;
  if (MHD_get_timeout(s->daemon, &mhd) == MHD_YES && (wait < 0 || mhd < (uint64_t)wait)) wait = (int64_t)mhd;
  return wait > SWEEP_MAX_MS ? SWEEP_MAX_MS : (int)wait;
}

/* MHD_stop_daemon would shutdown() the listening socket, which also breaks it for the
** process that handed it over (and for the next program it hands it to). Quiesced,
** the daemon gives the socket back, and closing our descriptor leaves theirs alone.
** MHD_stop_daemon must not find a suspended connection: every deferred request is
** answered (503) or cut and resumed first, and none can be deferred after `stopping`.
** The answers then get a moment (bounded) to go out; so do finished streams. */
void hersh_http_server_stop(hersh_http_server *s) {
  if (!s) return;
  stop_sweeper(s);
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  MHD_socket fd = s->quiesced || s->front ? s->listen_fd : MHD_quiesce_daemon(s->daemon);
  s->quiesced = true;
  for (hersh_http_pending *p = s->pending; p; p = p->next) {
    pthread_mutex_lock(&p->mu);
    if (!p->ended) p->cut = true;
    if (!p->answered) {
      hersh_http_response res = {0};
      hersh_http_error(&res, 503, "the server is stopping");
      p->answered = true;
      p->status = res.status;
      p->body = res.body;
      p->body_len = res.body_len;
    }
    resume_locked(p);
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&s->mu);
  /* The connections it took go on to their answer too: another process may serve the
  ** same socket (an update in place), and a client must not lose what it sent here. */
  for (uint64_t until = now_ms() + STOP_DRAIN_MS; now_ms() < until;) { /* each leaves the list when done */
    pthread_mutex_lock(&s->mu);
    bool done = s->pending == NULL;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->clocks_mu);
    done = done && s->clocks == NULL;
    pthread_mutex_unlock(&s->clocks_mu);
    if (done) break;
    if (s->on_loop) { /* nobody else runs it: wait for its sockets here */
      struct pollfd pfd = {.fd = hersh_http_server_fd(s), .events = POLLIN};
      (void)poll(&pfd, 1, 2); /* a wait only: what is ready, MHD_run finds */
      hersh_http_server_run(s);
    } else {
      nanosleep(&(struct timespec){0, 2000000L}, NULL);
    }
  }
  MHD_stop_daemon(s->daemon); /* no lock held: its last callbacks take them */
  if (fd != MHD_INVALID_SOCKET) close(fd);
  server_free(s);
}

/* The first step of a stop, alone: the server takes no new connection (another
** process serving the same socket gets them) and every answer from now on closes its
** connection (a kept-alive client moves on); those it took are still answered. A
** handler can no longer defer. Any thread; once is enough, stop still follows. */
void hersh_http_server_quiesce(hersh_http_server *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  if (!s->quiesced && !s->front) s->listen_fd = MHD_quiesce_daemon(s->daemon);
  s->quiesced = true;
  pthread_mutex_unlock(&s->mu);
}

/* The connections open now, from any thread (an owner that quiesced it waits for 0). */
unsigned hersh_http_server_connections(hersh_http_server *s) {
  if (!s) return 0;
  unsigned n = 0;
  pthread_mutex_lock(&s->clocks_mu);
  for (const conn_clock *c = s->clocks; c; c = c->next) n++;
  pthread_mutex_unlock(&s->clocks_mu);
  return n;
}

/* ---- the front's side (front.h) ------------------------------------------------------ */

int hersh_http_server_listen_fd(const hersh_http_server *s) { return s->front ? s->listen_fd : -1; }

bool hersh_http_server_stopping(hersh_http_server *s) {
  pthread_mutex_lock(&s->mu);
  bool stopping = s->stopping;
  pthread_mutex_unlock(&s->mu);
  return stopping;
}

int hersh_http_server_add(hersh_http_server *s, int fd, const struct sockaddr *addr, socklen_t len) {
  if (MHD_add_connection(s->daemon, fd, addr, len) != MHD_YES) /* it closed fd */
    return hersh_fail_with(HERSH_E_SYS, "libmicrohttpd refused a connection: %s", strerror(errno));
  return HERSH_OK;
}

bool hersh_http_server_body_fits(hersh_http_server *s, unsigned long long len) {
  return len <= s->max_body &&
         atomic_load_explicit(&s->buffered, memory_order_relaxed) + len + 1 <= s->max_buffered;
}

void hersh_http_server_limits(const hersh_http_server *s, unsigned *max_connections, unsigned *max_per_client) {
  *max_connections = s->max_conn;
  *max_per_client = s->per_client;
}

bool hersh_http_same_address(const struct sockaddr *a, const struct sockaddr *b) {
  if (a->sa_family != b->sa_family) return false;
  if (b->sa_family == AF_INET)
    return ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)(const void *)b)->sin_addr.s_addr;
  return b->sa_family == AF_INET6 && memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                                            &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr, 16) == 0;
}

unsigned hersh_http_server_client_connections(hersh_http_server *s, const struct sockaddr *addr) {
  unsigned n = 0;
  pthread_mutex_lock(&s->clocks_mu);
  for (const conn_clock *c = s->clocks; c; c = c->next) n += hersh_http_same_address((const struct sockaddr *)&c->addr, addr);
  pthread_mutex_unlock(&s->clocks_mu);
  return n;
}
