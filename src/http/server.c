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
*/
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "http/server.h"

enum { STREAM_BLOCK = 16 * 1024, STOP_DRAIN_MS = 1000 };

struct hersh_http_server {
  struct MHD_Daemon *daemon;
  hersh_http_handler handler;
  void *ud;
  size_t max_body;
  int port;
  pthread_mutex_t mu; /* stopping and the list below */
  bool stopping;
  hersh_http_pending *pending; /* deferred requests whose connection is still open */
};

struct hersh_http_pending {
  pthread_mutex_t mu;
  atomic_int refs;
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
};

/* Per request: the body as it arrives, and the pending request once deferred. */
typedef struct request_state {
  hersh_http_server *server;
  char *body;
  size_t len, cap;
  bool too_large;
  hersh_http_pending *pending; /* the connection's reference */
} request_state;

void hersh_http_error(hersh_http_response *res, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  hersh_buf b = {0};
  hersh_buf_puts(&b, "{\"error\":");
  hersh_buf_json_string(&b, text ? text : "error", text ? strlen(text) : 5);
  hersh_buf_puts(&b, "}\n");
  free(text);
  free(res->body);
  res->status = status;
  res->body = hersh_buf_take(&b);
  res->body_len = res->body ? strlen(res->body) : 0;
}

static bool append_body(request_state *st, const char *data, size_t n, size_t max) {
  if (st->too_large || st->len + n > max) {
    st->too_large = true; /* keep reading, so the client gets its 413 */
    return true;
  }
  if (st->len + n + 1 > st->cap) {
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->len + n + 1) cap *= 2;
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

/* Adds "Name: value" lines, the first Content-Type only; true if there was one. */
static bool add_headers(struct MHD_Response *r, const char *lines) {
  bool has_type = false;
  for (const char *line = lines; line && *line;) {
    const char *eol = strchr(line, '\n');
    size_t n = eol ? (size_t)(eol - line) : strlen(line);
    if (n && line[n - 1] == '\r') n--;
    const char *colon = memchr(line, ':', n);
    if (colon && colon > line) {
      char *name = strndup(line, (size_t)(colon - line));
      const char *v = colon + 1;
      while (v < line + n && (*v == ' ' || *v == '\t')) v++;
      char *value = strndup(v, (size_t)(line + n - v));
      bool is_type = name && strcasecmp(name, MHD_HTTP_HEADER_CONTENT_TYPE) == 0;
      if (name && value && !(is_type && has_type)) {
        MHD_add_response_header(r, name, value); /* refuses CR, LF and tabs in either */
        has_type = has_type || is_type;
      }
      free(name);
      free(value);
    }
    line = eol ? eol + 1 : line + n;
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

/* With p->mu held. */
static void resume_locked(hersh_http_pending *p) {
  if (!p->suspended) return;
  p->suspended = false;
  MHD_resume_connection(p->conn);
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
  char *headers = header_lines(res->headers, res->content_type, res->allow);
  free(res->headers);
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

/* The content reader of a stream (server thread; MHD holds the response's lock). */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  hersh_http_pending *s = cls;
  ssize_t n;
  pthread_mutex_lock(&s->mu);
  if (s->cut) {
    n = MHD_CONTENT_READER_END_WITH_ERROR;
  } else if (s->len > s->off) {
    size_t k = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, k);
    s->off += k;
    if (s->off == s->len) s->off = s->len = 0;
    n = (ssize_t)k;
  } else if (s->ended) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else { /* nothing yet: 0 with the connection suspended, as MHD asks (no busy loop) */
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    n = 0;
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}

static void stream_free(void *cls) { pending_release(cls); }

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

/* ---- the MHD callbacks ----------------------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
  (void)version;
  hersh_http_server *s = cls;
  request_state *st = *con_cls;
  if (!st) { /* the first call: only remember the request */
    st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    st->server = s;
    *con_cls = st;
    return MHD_YES;
  }
  if (*upload_size) {
    bool ok = append_body(st, upload_data, *upload_size, s->max_body);
    *upload_size = 0;
    return ok ? MHD_YES : MHD_NO;
  }
  if (st->pending) return answer_pending(conn, st->pending);
  hersh_http_response res = {.status = 200};
  if (st->too_large) {
    /* Said before any handler runs: in a shape that fits the WatcherAPI's {"error"}
    ** and the Host's {"error", "code", "message"} alike. */
    hersh_buf b = {0};
    hersh_buf_printf(&b, "{\"error\":\"Payload Too Large\",\"code\":413,"
                         "\"message\":\"request body over %zu bytes\"}\n", s->max_body);
    res.status = 413;
    res.body = hersh_buf_take(&b);
    res.body_len = res.body ? strlen(res.body) : 0;
  } else {
    hersh_http_request req = {conn, method, url, st->body, st->len, st};
    s->handler(&req, &res, s->ud);
    if (st->pending) { /* deferred: whatever it put in res is not the answer */
      free(res.body);
      free(res.headers);
      return answer_pending(conn, st->pending);
    }
  }
  return send_response(conn, &res);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode code) {
  (void)conn, (void)code;
  hersh_http_server *s = cls;
  request_state *st = *con_cls;
  *con_cls = NULL;
  if (!st) return;
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
  free(st->body);
  free(st);
}

const char *hersh_http_query(const hersh_http_request *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int hersh_http_server_start(const hersh_http_options *opts, hersh_http_handler handler, void *ud,
                            hersh_http_server **out) {
  *out = NULL;
  hersh_http_server *s = calloc(1, sizeof *s);
  if (!s) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP server");
  s->handler = handler;
  s->ud = ud;
  s->max_body = opts->max_body;
  pthread_mutex_init(&s->mu, NULL);
  /* ITC lets stop quiesce the daemon (see hersh_http_server_stop) and wakes the
  ** server's thread when a deferred request is resumed; suspend/resume implies it. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  const char *bind = opts->bind && *opts->bind ? opts->bind : "127.0.0.1";
  int rc = HERSH_OK;
  if (opts->listen_fd < 0) {
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
  if (!rc && opts->listen_fd >= 0) {
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, opts->listen_fd,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)10, MHD_OPTION_END);
    if (!s->daemon) rc = hersh_fail_with(HERSH_E_SYS, "cannot serve the listening socket fd %d", opts->listen_fd);
  } else if (!rc) {
    s->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!s->daemon) rc = hersh_fail_with(HERSH_E_SYS, "cannot listen on %s:%d (in use, or not allowed)", bind, opts->port);
  }
  if (rc) {
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : opts->port;
  *out = s;
  return 0;
}

int hersh_http_server_port(const hersh_http_server *s) { return s ? s->port : 0; }

/* MHD_stop_daemon would shutdown() the listening socket, which also breaks it for the
** process that handed it over (and for the next program it hands it to). Quiesced,
** the daemon gives the socket back, and closing our descriptor leaves theirs alone.
** MHD_stop_daemon must not find a suspended connection: every deferred request is
** answered (503) or cut and resumed first, and none can be deferred after `stopping`.
** The answers then get a moment (bounded) to go out; so do finished streams. */
void hersh_http_server_stop(hersh_http_server *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_mutex_unlock(&s->mu);
  MHD_socket fd = MHD_quiesce_daemon(s->daemon);
  pthread_mutex_lock(&s->mu);
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
  for (int waited = 0; waited < STOP_DRAIN_MS; waited += 2) { /* each leaves the list when done */
    pthread_mutex_lock(&s->mu);
    bool done = s->pending == NULL;
    pthread_mutex_unlock(&s->mu);
    if (done) break;
    nanosleep(&(struct timespec){0, 2000000L}, NULL);
  }
  MHD_stop_daemon(s->daemon); /* no lock held: its last callbacks take them */
  if (fd != MHD_INVALID_SOCKET) close(fd);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
