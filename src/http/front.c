/*
** front.c -- the Host's listening socket and the proxied requests it serves itself
** (front.h). A connection is watched for reading and for its peer's end; at a request
** boundary a readable connection is peeked at, and either its head is consumed and the
** request forwarded, or it goes to libmicrohttpd. While an exchange runs, bytes of a
** next (pipelined) request stop the reading watch (level-triggered, it would spin) until
** the answer is out; the peer's end still cancels the exchange.
**
** The answer is written as libmicrohttpd writes it (status line with its reason phrase,
** the kept headers, Date, Content-Length or chunked, Connection: close when closing):
** tried at once with one writev, and what the socket does not take waits in the
** connection's buffer until it is writable. A request body is peeked and consumed as
** its taker takes it: what it leaves stays in the socket, and reading pauses.
**
** A connection is shared by the front's list (until it closes or is handed over) and
** the proxy's hold (until the answer is complete or its stream ends): the last frees it.
*/
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"
#include "http/front.h"
#include "http/front_head.h"
#include "http/proxy.h"
#include "http/proxy_route.h"

enum { ACCEPT_BATCH = 16, BODY_PIECE = 16 * 1024, SWEEP_MAX_MS = 1000 };

typedef struct conn conn;

struct hersh_front {
  hersh_loop *loop;
  hersh_http_server *server;
  hersh_route_table *routes; /* a hold */
  int listen_fd;             /* the server's */
  uv_poll_t accept;
  uv_timer_t sweep;          /* idle and slow connections, while any is open */
  int open_handles;          /* accept and sweep until their close callbacks */
  bool stopped;
  conn *conns;
  unsigned count;
  uint64_t idle_ms, request_ms;
  hersh_front_head head; /* the head read last (scratch: one at a time on the loop) */
};

struct conn {
  conn *prev, *next;
  hersh_front *f; /* NULL once the front let go of it (closed or handed over) */
  int fd;         /* -1 once closed or handed over */
  uv_poll_t poll;
  int refs;   /* the front's (until the poll handle's close callback) and the proxy's hold */
  int events; /* watched now */
  struct sockaddr_storage addr;
  socklen_t addr_len;
  uint64_t since_ms;   /* idle since, or the last progress of the answer's writes */
  uint64_t request_at; /* the request's head came: its body must be in request_timeout later */
  bool exchange;     /* a request is being answered */
  bool head_method, close_after;
  bool answered; /* complete came, or stream_start */
  bool chunked;  /* the stream's body is chunked (none for HEAD, 1xx, 204, 304) */
  bool no_body;
  bool ended; /* complete, or stream end: the answer is all in out */
  bool gone;  /* the client left or was cut */
  char *out;  /* what waits for the client: out[off, len) */
  size_t off, len, cap;
  unsigned long long body_left; /* of the request's Content-Length, still in the socket */
  hersh_http_body_fn on_body;
  void *on_body_ud;
  bool body_paused;
  hersh_http_close_fn on_close, on_drain;
  void *on_close_ud, *on_drain_ud;
};

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void conn_release(conn *c) {
  if (--c->refs > 0) return;
  free(c->out);
  free(c);
}

static void on_poll_closed(uv_handle_t *h) { conn_release(h->data); }

static void on_conn_poll(uv_poll_t *h, int status, int events);
static void conn_close(conn *c);

/* Watches `events` on c's socket (the peer's end always). */
static void set_watch(conn *c, int events) {
  events |= UV_DISCONNECT;
  if (c->fd < 0 || events == c->events) return;
  c->events = events;
  if (uv_poll_start(&c->poll, events, on_conn_poll) != 0) conn_close(c); /* not watched: not kept */
}

/* The front lets go of c: out of its list, its watch closed. */
static void detach(conn *c) {
  hersh_front *f = c->f;
  if (!f) return;
  if (c->prev) c->prev->next = c->next;
  else f->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->f = NULL;
  f->count--;
  if (!f->conns) uv_timer_stop(&f->sweep);
  uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

/* The connection ends (the client left, was cut, or the answer closes it). */
static void conn_close(conn *c) {
  if (c->fd < 0) return;
  detach(c);
  close(c->fd);
  c->fd = -1;
  c->gone = true;
  hersh_http_close_fn fn = c->on_close;
  c->on_close = NULL;
  if (fn && c->exchange) fn(NULL, c->on_close_ud);
}

/* To libmicrohttpd, with the request still unread. */
static void hand_over(conn *c) {
  hersh_front *f = c->f;
  int fd = c->fd;
  detach(c);
  c->fd = -1;
  if (hersh_http_server_add(f->server, fd, (struct sockaddr *)&c->addr, c->addr_len) != HERSH_OK)
    fprintf(stderr, "hersh: front: %s\n", hersh_errmsg());
}

/* ---- writing ------------------------------------------------------------------------------ */

static bool out_put(conn *c, const void *data, size_t n) {
  if (c->off && c->len + n > c->cap) { /* make room at the front first */
    memmove(c->out, c->out + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  if (c->len + n > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n) cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) return false;
    c->out = p;
    c->cap = cap;
  }
  memcpy(c->out + c->len, data, n);
  c->len += n;
  return true;
}

static void exchange_over(conn *c);

/* Tries what waits; false when the client is gone. */
static bool flush(conn *c) {
  while (c->off < c->len) {
    ssize_t n = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_watch(c, c->events | UV_WRITABLE);
      return true;
    }
    if (n <= 0) {
      conn_close(c);
      return false;
    }
    c->off += (size_t)n;
    c->since_ms = now_ms();
  }
  c->off = c->len = 0;
  set_watch(c, c->events & ~UV_WRITABLE);
  if (c->ended) {
    exchange_over(c);
  } else if (c->on_drain) {
    c->on_drain(NULL, c->on_drain_ud);
  }
  return true;
}

/* Sends the parts: written at once when nothing waits, the rest kept; false when the
** client is gone (or out of memory: then it is cut). */
static bool send_parts(conn *c, struct iovec *iov, int n) {
  if (c->fd < 0) return false;
  size_t sent = 0;
  if (c->off == c->len) {
    ssize_t w;
    do w = writev(c->fd, iov, n);
    while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      conn_close(c);
      return false;
    }
    sent = w > 0 ? (size_t)w : 0;
    if (sent) c->since_ms = now_ms();
  }
  for (int i = 0; i < n; i++) {
    size_t skip = sent < iov[i].iov_len ? sent : iov[i].iov_len;
    sent -= skip;
    if (iov[i].iov_len > skip && !out_put(c, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip)) {
      conn_close(c);
      return false;
    }
  }
  return flush(c);
}

/* The Date header as libmicrohttpd writes it, made once a second. */
static const char *date_line(void) {
  static char line[64];
  static time_t made = -1;
  time_t now = time(NULL);
  if (now != made) {
    struct tm tm;
    made = now;
    if (!gmtime_r(&now, &tm) || !strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm)) line[0] = 0;
  }
  return line;
}

/* Whether the lines have a header `name:` (n bytes, with its colon). */
static bool has_header(const char *lines, const char *name, size_t n) {
  for (const char *l = lines; l && *l;) {
    if (strncasecmp(l, name, n) == 0) return true;
    const char *nl = strchr(l, '\n');
    l = nl ? nl + 1 : NULL;
  }
  return false;
}

/* The head of an answer into b: the status line, the lines libmicrohttpd would keep
** (no empty value, the first Content-Type), its Content-Type default, Date, the framing
** and Connection: close when the connection closes after it. */
static void put_head(conn *c, hersh_buf *b, int status, const char *lines, const char *type, const char *framing) {
  hersh_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, MHD_get_reason_phrase_for((unsigned)status));
  bool typed = false;
  for (const char *l = lines; l && *l;) {
    const char *nl = strchr(l, '\n');
    size_t n = nl ? (size_t)(nl - l) + 1 : strlen(l);
    const char *colon = memchr(l, ':', n);
    const char *v = colon ? colon + 1 + strspn(colon + 1, " \t") : NULL;
    bool is_type = colon && (size_t)(colon - l) == 12 && strncasecmp(l, "content-type", 12) == 0;
    if (v && *v != '\r' && *v != '\n' && !(is_type && typed)) {
      hersh_buf_put(b, l, n);
      typed = typed || is_type;
    }
    l += n;
  }
  if (!typed) hersh_buf_printf(b, "Content-Type: %s\r\n", type);
  if (!has_header(lines, "date:", 5)) hersh_buf_puts(b, date_line());
  if (framing) hersh_buf_puts(b, framing);
  if (c->close_after) hersh_buf_puts(b, "Connection: close\r\n");
  hersh_buf_puts(b, "\r\n");
}

static bool bodiless(const conn *c, int status) {
  return c->head_method || status < 200 || status == 204 || status == 304;
}

/* The answer is out: the next request, or the end. */
static void exchange_over(conn *c) {
  c->exchange = c->answered = c->ended = c->chunked = c->no_body = false;
  c->on_close = c->on_drain = NULL;
  c->on_body = NULL;
  c->since_ms = now_ms();
  if (c->close_after || c->body_left || !c->f || c->f->stopped || hersh_http_server_stopping(c->f->server)) {
    conn_close(c);
    return;
  }
  set_watch(c, UV_READABLE); /* a pipelined request waiting makes it fire at once */
}

/* The client's end of the answer: it leaves when its connection is to close. */
static void mark_closing(conn *c) {
  if (c->body_left || !c->f || c->f->stopped || hersh_http_server_stopping(c->f->server)) c->close_after = true;
}

/* ---- the client side of the proxy (proxy.h) ---------------------------------------------- */

static void fc_complete(void *cv, int status, char *body, size_t len, char *headers) {
  conn *c = cv;
  if (!c->gone && !c->answered) {
    c->answered = c->ended = true;
    mark_closing(c);
    hersh_buf head = {0};
    char length[48];
    bool none = status < 200 || status == 204 || status == 304;
    snprintf(length, sizeof length, "Content-Length: %zu\r\n", len);
    put_head(c, &head, status, headers, "application/json", none ? NULL : length);
    struct iovec iov[2] = {{head.p, head.len}, {body, c->head_method || none ? 0 : len}};
    if (head.oom) conn_close(c);
    else send_parts(c, iov, 2);
    hersh_buf_free(&head);
  }
  free(body);
  free(headers);
  conn_release(c);
}

static bool fc_stream_start(void *cv, int status, const char *headers) {
  conn *c = cv;
  if (c->gone || c->answered) return true; /* writes fail: the exchange ends */
  c->answered = true;
  mark_closing(c);
  c->no_body = bodiless(c, status);
  c->chunked = !c->no_body;
  hersh_buf head = {0};
  put_head(c, &head, status, headers, "text/plain; charset=utf-8", c->chunked ? "Transfer-Encoding: chunked\r\n" : NULL);
  struct iovec iov[1] = {{head.p, head.len}};
  if (head.oom) conn_close(c);
  else send_parts(c, iov, 1);
  hersh_buf_free(&head);
  return true;
}

static int fc_write(void *cv, const void *data, size_t len) {
  conn *c = cv;
  size_t waiting = c->len - c->off;
  if (c->gone) return hersh_fail_with(HERSH_E_STATE, "the client is gone");
  if (c->ended) return hersh_fail_with(HERSH_E_STATE, "the stream has ended");
  if (waiting && waiting + len > HERSH_HTTP_STREAM_MAX_BUFFER)
    return hersh_fail_with(HERSH_E_LIMIT, "the client is slower than the stream: %zu bytes wait to be sent", waiting);
  if (!len || c->no_body) return HERSH_OK;
  char size[24];
  int n = snprintf(size, sizeof size, "%zx\r\n", len);
  struct iovec iov[3] = {{size, (size_t)n}, {(void *)data, len}, {"\r\n", 2}};
  return send_parts(c, iov, 3) ? HERSH_OK : hersh_fail_with(HERSH_E_STATE, "the client is gone");
}

static void fc_end(void *cv) {
  conn *c = cv;
  if (!c->gone && !c->ended) {
    c->ended = true;
    struct iovec iov[1] = {{"0\r\n\r\n", c->chunked ? 5 : 0}};
    send_parts(c, iov, 1);
  }
  conn_release(c);
}

static void fc_cut(void *cv) {
  conn *c = cv;
  if (c->fd < 0) return;
  /* a client that reads nothing would keep a FIN queued behind what waits: reset */
  struct linger now = {.l_onoff = 1, .l_linger = 0};
  (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &now, sizeof now); /* best effort: close still cuts */
  conn_close(c);
}

static size_t fc_waiting(void *cv) {
  conn *c = cv;
  return c->len - c->off;
}

static void fc_on_drain(void *cv, hersh_http_close_fn fn, void *ud) {
  conn *c = cv;
  c->on_drain = fn;
  c->on_drain_ud = ud;
}

static void fc_on_close(void *cv, hersh_http_close_fn fn, void *ud) {
  conn *c = cv;
  if (c->gone) {
    if (fn) fn(NULL, ud);
    return;
  }
  c->on_close = fn;
  c->on_close_ud = ud;
}

static void fc_body_take(void *cv, hersh_http_body_fn fn, void *ud) {
  conn *c = cv;
  c->on_body = fn;
  c->on_body_ud = ud;
  if (!fn && c->body_left) c->close_after = true; /* the rest is not read: the connection ends */
}

static void fc_body_resume(void *cv) {
  conn *c = cv;
  if (!c->body_paused) return;
  c->body_paused = false;
  set_watch(c, c->events | UV_READABLE); /* what waits is still in the socket */
}

static const char *fc_client_ip(void *cv, char *buf, size_t n) {
  conn *c = cv;
  return hersh_proxy_address_text((struct sockaddr *)&c->addr, buf, n);
}

static const hersh_proxy_client FRONT_CLIENT = {
    .complete = fc_complete, .stream_start = fc_stream_start, .write = fc_write, .end = fc_end,
    .cut = fc_cut, .waiting = fc_waiting, .on_drain = fc_on_drain, .on_close = fc_on_close,
    .body_take = fc_body_take, .body_resume = fc_body_resume, .client_ip = fc_client_ip};

/* ---- reading ------------------------------------------------------------------------------ */

/* The next piece of the body to its taker: peeked, and consumed as far as it took. */
static void read_body(conn *c) {
  char piece[BODY_PIECE];
  size_t want = c->body_left < sizeof piece ? (size_t)c->body_left : sizeof piece;
  ssize_t n = recv(c->fd, piece, want, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return conn_close(c);
  size_t took = c->on_body ? c->on_body(c->on_body_ud, piece, (size_t)n) : (size_t)n; /* no taker: dropped */
  if (c->fd < 0) return;
  if (took && recv(c->fd, piece, took, 0) != (ssize_t)took) return conn_close(c);
  c->body_left -= took; /* no clock reset: a body trickled in is cut all the same */
  if (took < (size_t)n) { /* held: the rest waits in the socket until body_resume */
    c->body_paused = true;
    set_watch(c, c->events & ~UV_READABLE);
    return;
  }
  if (c->body_left) return;
  if (c->on_body) c->on_body(c->on_body_ud, NULL, 0);
  if (c->fd >= 0 && !c->ended) set_watch(c, c->events & ~UV_READABLE); /* now only the peer's end */
}

/* At a request boundary: the head, taken and forwarded, or the connection handed over. */
static void read_head(conn *c) {
  hersh_front *f = c->f;
  char peek[HERSH_FRONT_HEAD_MAX];
  ssize_t n = recv(c->fd, peek, sizeof peek, MSG_PEEK);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) return conn_close(c);
  hersh_front_head *h = &f->head;
  /* a head not whole in the first read is libmicrohttpd's (with its request timeout) */
  if (hersh_front_head_parse(peek, (size_t)n, h) != HERSH_FRONT_HEAD_WHOLE) return hand_over(c);
  hersh_proxy_plan plan;
  if (!hersh_http_server_authorized(f->server, h->req.method, h->req.path, h->authorization) ||
      (h->content_length && !hersh_http_server_body_fits(f->server, h->content_length)) ||
      hersh_http_server_stopping(f->server) || !hersh_proxy_route_plan(f->routes, &h->req, &plan))
    return hand_over(c);
  if (recv(c->fd, peek, h->len, 0) != (ssize_t)h->len) { /* peeked, so there: never short */
    hersh_proxy_route_plan_free(&plan);
    return conn_close(c);
  }
  c->exchange = true;
  c->head_method = h->head_method;
  c->close_after = h->close;
  c->body_left = h->content_length;
  c->body_paused = false;
  c->since_ms = c->request_at = now_ms();
  c->refs++; /* the proxy's hold */
  hersh_proxy_route_forward(f->loop, f->routes, &plan, &FRONT_CLIENT, c);
}

static void on_conn_poll(uv_poll_t *h, int status, int events) {
  conn *c = h->data;
  if (c->fd < 0) return;
  if (status < 0) return conn_close(c);
  c->refs++; /* what runs below may give up every other hold */
  if ((events & UV_WRITABLE) && c->off < c->len) flush(c);
  if (c->fd >= 0 && !c->exchange && (events & (UV_READABLE | UV_DISCONNECT))) {
    read_head(c);
  } else if (c->fd >= 0 && c->exchange && (events & UV_READABLE) && c->body_left && !c->body_paused) {
    read_body(c);
  } else if (c->fd >= 0 && c->exchange && (events & UV_DISCONNECT)) {
    conn_close(c); /* the client left mid-exchange: the proxy cancels it */
  } else if (c->fd >= 0 && c->exchange && (events & UV_READABLE)) {
    char byte;
    ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(c);
    else if (n > 0) set_watch(c, c->events & ~UV_READABLE); /* a pipelined request: after this answer */
  }
  conn_release(c);
}

/* ---- accepting ---------------------------------------------------------------------------- */

/* Whether another connection from addr fits the server's limits, counting both sides. */
static bool fits(hersh_front *f, const struct sockaddr *addr) {
  unsigned max, per_client;
  hersh_http_server_limits(f->server, &max, &per_client);
  if (f->count + hersh_http_server_connections(f->server) >= max) return false;
  unsigned same = hersh_http_server_client_connections(f->server, addr);
  for (const conn *c = f->conns; c && same < per_client; c = c->next)
    same += hersh_http_same_address((const struct sockaddr *)&c->addr, addr);
  return same < per_client;
}

static void on_sweep(uv_timer_t *t);

static void add_conn(hersh_front *f, int fd, const struct sockaddr_storage *addr, socklen_t len) {
  conn *c = calloc(1, sizeof *c);
  if (!c || uv_poll_init_socket(f->accept.loop, &c->poll, fd) != 0) {
    free(c);
    close(fd);
    return;
  }
  c->poll.data = c;
  c->f = f;
  c->fd = fd;
  c->refs = 1;
  c->addr = *addr;
  c->addr_len = len;
  c->since_ms = now_ms();
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as MHD: answers go at once */
  c->next = f->conns;
  if (f->conns) f->conns->prev = c;
  f->conns = c;
  f->count++;
  if (!uv_is_active((uv_handle_t *)&f->sweep)) {
    uint64_t step = f->idle_ms / 4 < SWEEP_MAX_MS ? f->idle_ms / 4 : SWEEP_MAX_MS;
    uv_timer_start(&f->sweep, on_sweep, step ? step : 1, step ? step : 1);
  }
  set_watch(c, UV_READABLE);
}

static void on_accept(uv_poll_t *h, int status, int events) {
  (void)events;
  hersh_front *f = h->data;
  if (status < 0) return;
  if (hersh_http_server_stopping(f->server)) { /* quiesced: another process may take them */
    uv_poll_stop(&f->accept);
    return;
  }
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int fd = accept4(f->listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; /* EAGAIN, or an error the next accept may not have */
    if (!fits(f, (struct sockaddr *)&addr)) close(fd); /* as libmicrohttpd does at its limits */
    else add_conn(f, fd, &addr, len);
  }
}

/* Closes the connections silent for idle_timeout, cuts those whose body is not all in
** request_timeout after their head, and those whose reader took nothing for idle_timeout. */
static void on_sweep(uv_timer_t *t) {
  hersh_front *f = t->data;
  uint64_t now = now_ms();
  for (conn *c = f->conns, *next; c; c = next) {
    next = c->next;
    if (!c->exchange && now - c->since_ms >= f->idle_ms) conn_close(c);
    else if (c->exchange && ((c->body_left && now - c->request_at >= f->request_ms) ||
                             (c->off < c->len && now - c->since_ms >= f->idle_ms)))
      fc_cut(c);
  }
}

/* ---- the front ---------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  hersh_front *f = h->data;
  if (--f->open_handles == 0) free(f);
}

int hersh_front_start(hersh_loop *loop, hersh_http_server *server, hersh_route_table *routes,
                      const hersh_http_options *o, hersh_front **out) {
  *out = NULL;
  int fd = hersh_http_server_listen_fd(server);
  if (fd < 0) return hersh_fail_with(HERSH_E_INVAL, "hersh_front_start: the server has no front option");
  hersh_front *f = calloc(1, sizeof *f);
  if (!f) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP front");
  uv_loop_t *uv = hersh_loop_uv(loop);
  f->loop = loop;
  f->server = server;
  f->listen_fd = fd;
  f->idle_ms = 1000ull * (o->idle_timeout ? o->idle_timeout : HERSH_HTTP_IDLE_TIMEOUT);
  f->request_ms = 1000ull * (o->request_timeout ? o->request_timeout : HERSH_HTTP_REQUEST_TIMEOUT);
  if (uv_timer_init(uv, &f->sweep) != 0) {
    free(f);
    return hersh_fail_with(HERSH_E_SYS, "cannot make the HTTP front's timer");
  }
  f->sweep.data = f;
  f->open_handles = 1;
  uv_unref((uv_handle_t *)&f->sweep); /* the connections keep the loop, not the sweep */
  int rc = uv_poll_init_socket(uv, &f->accept, fd);
  if (rc == 0) {
    f->accept.data = f;
    f->open_handles++;
    rc = uv_poll_start(&f->accept, UV_READABLE, on_accept);
  }
  f->routes = routes;
  hersh_route_table_retain(routes);
  if (rc != 0) {
    hersh_front_stop(f);
    return hersh_fail_with(HERSH_E_SYS, "cannot watch the listening socket: %s", uv_strerror(rc));
  }
  *out = f;
  return HERSH_OK;
}

void hersh_front_stop(hersh_front *f) {
  if (!f) return;
  f->stopped = true;
  while (f->conns) {
    conn *c = f->conns;
    if (c->exchange && !c->answered) { /* as the server answers its deferred requests */
      c->refs++; /* fc_complete gives up a hold: the proxy keeps its own */
      c->close_after = true;
      hersh_http_response res = {0};
      hersh_http_error(&res, 503, "the server is stopping");
      fc_complete(c, res.status, res.body, res.body_len, NULL); /* the proxy's answer, later, is dropped */
    }
    if (c->exchange && !c->ended) fc_cut(c);
    else conn_close(c);
  }
  hersh_route_table_release(f->routes);
  f->routes = NULL;
  if (f->accept.data) uv_close((uv_handle_t *)&f->accept, on_handle_closed); /* NULL: never made */
  uv_close((uv_handle_t *)&f->sweep, on_handle_closed);
}

unsigned hersh_front_connections(const hersh_front *f) { return f ? f->count : 0; }
