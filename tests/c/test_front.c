/*
** The Host's front (src/http/front.c) on real sockets: the Host's server (on the loop,
** with the front and a route table) before a program-like server on loopback, and raw
** clients. What the front serves itself it holds (hersh_front_connections counts it);
** what it hands to libmicrohttpd leaves it. Every wait is bounded; no test asserts how
** long something took.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "hersh.h"
#include "base/buf.h"
#include "http/front.h"
#include "http/proxy_route.h"
#include "http/route_table.h"
#include "http/server.h"
#include "net.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */
#define TOKEN "front-secret"
#define BIG ((size_t)32 << 20) /* GET /big: this many bytes, a pattern */
enum { MAX_CONNS = 32 };

/* ---- the program: a thread per connection, answering by path ----------------------------------- */

typedef struct program {
  int fd, port;
  pthread_t thread;
  pthread_t conns[MAX_CONNS];
  int n_conns;
  atomic_bool stop;
  atomic_int accepted, cut; /* cut: a write failed (the proxy closed it) */
  atomic_int hung;          /* requests for /hang, never answered */
  atomic_size_t big_sent;
} program;

typedef struct served {
  program *p;
  int fd;
} served;

static bool wait_readable(program *p, int fd) {
  while (!atomic_load(&p->stop)) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 20) > 0) return true;
  }
  return false;
}

static bool send_all(int fd, const char *data, size_t n) {
  while (n) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= (size_t)w;
  }
  return true;
}

static char pattern(size_t i) { return (char)('a' + i % 23); }

/* GET /big: BIG bytes chunked, in 64 KiB chunks; /forever: chunks until a write fails. */
static void send_big(program *p, int c, bool forever) {
  static char chunk[65536];
  const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
  if (!send_all(c, head, strlen(head))) return (void)atomic_fetch_add(&p->cut, 1);
  for (size_t at = 0; forever || at < BIG; at += sizeof chunk) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pattern(at + i);
    char size[32];
    int n = snprintf(size, sizeof size, "%zx\r\n", sizeof chunk);
    if (atomic_load(&p->stop) || !send_all(c, size, (size_t)n) || !send_all(c, chunk, sizeof chunk) ||
        !send_all(c, "\r\n", 2))
      return (void)atomic_fetch_add(&p->cut, 1);
    atomic_fetch_add(&p->big_sent, sizeof chunk);
  }
  send_all(c, "0\r\n\r\n", 5);
}

static void *serve_conn(void *ud) {
  served *sv = ud;
  program *p = sv->p;
  int c = sv->fd;
  free(sv);
  char buf[16384];
  size_t n = 0;
  for (;;) {
    char *end;
    while (!(end = memmem(buf, n, "\r\n\r\n", 4))) {
      if (n == sizeof buf || !wait_readable(p, c)) goto done;
      ssize_t got = recv(c, buf + n, sizeof buf - n, 0);
      if (got <= 0) goto done;
      n += (size_t)got;
    }
    size_t head = (size_t)(end + 4 - buf);
    const char *cl = memmem(buf, head, "\ncontent-length: ", 17);
    if (!cl) cl = memmem(buf, head, "\nContent-Length: ", 17);
    size_t len = cl ? strtoul(cl + 17, NULL, 10) : 0;
    while (n < head + len) {
      if (n == sizeof buf || !wait_readable(p, c)) goto done;
      ssize_t got = recv(c, buf + n, sizeof buf - n, 0);
      if (got <= 0) goto done;
      n += (size_t)got;
    }
    char reply[20000];
    int m = 0;
    if (strncmp(buf, "GET /big ", 9) == 0 || strncmp(buf, "GET /forever ", 13) == 0) {
      send_big(p, c, buf[5] == 'f');
    } else if (strncmp(buf, "GET /fixed ", 11) == 0 || strncmp(buf, "HEAD /fixed ", 12) == 0) {
      m = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Empty:\r\nContent-Length: 5\r\n\r\n%s",
                   buf[0] == 'H' ? "" : "fixed");
    } else if (strncmp(buf, "GET /hang ", 10) == 0) {
      atomic_fetch_add(&p->hung, 1); /* no answer: m stays 0 */
    } else if (strncmp(buf, "GET /none ", 10) == 0) {
      m = snprintf(reply, sizeof reply, "HTTP/1.1 204 No Content\r\nX-Program: yes\r\n\r\n");
    } else if (strncmp(buf, "POST /echo ", 11) == 0) {
      m = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%.*s",
                   len, (int)len, buf + head);
    } else { /* the request's head, as the program got it */
      m = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Program: yes\r\nContent-Length: %zu\r\n\r\n%.*s",
                   head, (int)head, buf);
    }
    if (m > 0 && !send_all(c, reply, (size_t)m)) break;
    memmove(buf, buf + head + len, n - head - len);
    n -= head + len;
  }
done:
  close(c);
  return NULL;
}

static void *program_main(void *ud) {
  program *p = ud;
  while (wait_readable(p, p->fd)) {
    int c = accept(p->fd, NULL, NULL);
    if (c < 0) continue;
    atomic_fetch_add(&p->accepted, 1);
    served *sv = malloc(sizeof *sv);
    if (!sv || p->n_conns == MAX_CONNS) {
      free(sv);
      close(c);
      continue;
    }
    *sv = (served){p, c};
    if (pthread_create(&p->conns[p->n_conns], NULL, serve_conn, sv) != 0) {
      free(sv);
      close(c);
      continue;
    }
    p->n_conns++;
  }
  for (int i = 0; i < p->n_conns; i++) pthread_join(p->conns[i], NULL);
  return NULL;
}

static bool program_start(program *p) {
  memset(p, 0, sizeof *p);
  p->fd = net_listener(&p->port);
  if (p->fd < 0) return false;
  if (pthread_create(&p->thread, NULL, program_main, p) != 0) {
    close(p->fd);
    return false;
  }
  return true;
}

static void program_stop(program *p) {
  atomic_store(&p->stop, true);
  pthread_join(p->thread, NULL);
  close(p->fd);
}

/* ---- the Host's server with its front, driven by the loop ---------------------------------- */

typedef struct host {
  hersh_loop *loop;
  hersh_http_server *http;
  hersh_front *front;
  hersh_route_table *routes;
  uv_poll_t poll;
  uv_timer_t tick;  /* the server's next run */
  uv_timer_t pace;  /* wakes the loop so that the tests' predicates look again */
  int port;
  int mhd_answers; /* answered by the handler: libmicrohttpd's side */
} host;

static void run(host *h);
static void on_tick(uv_timer_t *t) { run(t->data); }
static void on_pace(uv_timer_t *t) { (void)t; }
static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  run(p->data);
}

static void run(host *h) {
  int ms = hersh_http_server_run(h->http);
  if (ms >= 0) uv_timer_start(&h->tick, on_tick, (uint64_t)ms, 0);
}

static void on_wake(void *ud) {
  host *h = ud;
  uv_timer_start(&h->tick, on_tick, 0, 0);
}

static void on_headers(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  (void)res;
  host *h = ud;
  (void)hersh_proxy_route_try(h->loop, h->routes, req); /* as lhttpd.c does */
}

static void on_request(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  host *h = ud;
  h->mhd_answers++;
  hersh_http_error(res, 404, "no route for %s", req->path);
}

static bool host_start(host *h, int program_port, unsigned max_conn, unsigned per_client) {
  memset(h, 0, sizeof *h);
  h->loop = hersh_loop_new();
  double bounds[] = {0.1, 1};
  h->routes = hersh_route_table_new(bounds, 2);
  if (!h->loop || !h->routes) return false;
  hersh_route r = {.port = program_port, .ready = true, .timeout = 20, .connect_timeout = 5};
  if (hersh_route_table_set(h->routes, "app", &r) != HERSH_OK) return false;
  hersh_http_options o = {.listen_fd = -1, .max_body = 1 << 20, .token = TOKEN, .max_connections = max_conn,
                          .max_per_client = per_client, .idle_timeout = 2, .request_timeout = 1, .on_loop = true,
                          .front = true, .wake = on_wake, .on_headers = on_headers};
  if (hersh_http_server_start(&o, on_request, h, &h->http) != HERSH_OK) return false;
  h->port = hersh_http_server_port(h->http);
  char name[64];
  snprintf(name, sizeof name, "127.0.0.1:%d", h->port);
  const char *names[] = {name};
  uv_loop_t *uv = hersh_loop_uv(h->loop);
  uv_timer_init(uv, &h->tick);
  uv_timer_init(uv, &h->pace);
  h->tick.data = h;
  uv_poll_init(uv, &h->poll, hersh_http_server_fd(h->http));
  h->poll.data = h;
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  uv_timer_start(&h->pace, on_pace, 5, 5);
  return hersh_route_table_set_hosts(h->routes, names, 1) == HERSH_OK &&
         hersh_front_start(h->loop, h->http, h->routes, &o, &h->front) == HERSH_OK;
}

static void host_stop(host *h) {
  hersh_front_stop(h->front);
  uv_close((uv_handle_t *)&h->poll, NULL);
  hersh_http_server_stop(h->http);
  uv_close((uv_handle_t *)&h->tick, NULL);
  uv_close((uv_handle_t *)&h->pace, NULL);
  hersh_loop_run_for(h->loop, 0.05); /* the close callbacks */
  hersh_route_table_release(h->routes);
  hersh_loop_free(h->loop);
}

/* ---- clients ---------------------------------------------------------------------------------- */

static int client(const host *h, const char *from) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (from) {
    struct sockaddr_in b = {.sin_family = AF_INET};
    inet_pton(AF_INET, from, &b.sin_addr);
    if (bind(fd, (struct sockaddr *)&b, sizeof b) != 0) {
      close(fd);
      return -1;
    }
  }
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* What a client read, answers parsed in order. */
typedef struct reader {
  int fd;
  hersh_buf in;
  bool closed;
  size_t want; /* answers to wait for */
  size_t got;  /* answers complete */
  size_t limit; /* stop reading at this many bytes (0: no limit) */
} reader;

/* The end of the answer at in[at, n): its length, or 0 while incomplete. */
static size_t answer_end(const char *in, size_t n) {
  const char *end = memmem(in, n, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end + 4 - in);
  const char *cl = memmem(in, head, "Content-Length: ", 16);
  if (cl) {
    size_t len = strtoul(cl + 16, NULL, 10);
    return n >= head + len ? head + len : 0;
  }
  if (memmem(in, head, "Transfer-Encoding: chunked", 26)) {
    size_t at = head;
    for (;;) {
      const char *crlf = memmem(in + at, n - at, "\r\n", 2);
      if (!crlf) return 0;
      size_t size = strtoul(in + at, NULL, 16);
      size_t next = (size_t)(crlf + 2 - in) + size + 2;
      if (next > n) return 0;
      if (size == 0) return next;
      at = next;
    }
  }
  return head;
}

static size_t count_answers(const reader *r) {
  size_t at = 0, k = 0;
  for (size_t e; at < r->in.len && (e = answer_end(r->in.p + at, r->in.len - at)); at += e) k++;
  return k;
}

static bool read_some(void *ud) {
  reader *r = ud;
  char buf[65536];
  while (!r->closed && (!r->limit || r->in.len < r->limit)) {
    ssize_t n = recv(r->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) r->closed = true;
    if (n <= 0) break;
    hersh_buf_put(&r->in, buf, (size_t)n);
  }
  r->got = count_answers(r);
  return r->closed || r->got >= r->want || (r->limit && r->in.len >= r->limit);
}

static bool read_answers(host *h, reader *r, size_t want) {
  r->want = want;
  return hersh_loop_run_until(h->loop, read_some, r, WAIT_S) == 1 && r->got >= want;
}

static char *request(const host *h, const char *method, const char *target, const char *more) {
  hersh_buf b = {0};
  hersh_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer " TOKEN "\r\n%s\r\n", method,
                   target, h->port, more ? more : "");
  return hersh_buf_take(&b);
}

static bool send_text(int fd, const char *text) { return text && send_all(fd, text, strlen(text)); }

/* The nth answer's start in r (0-based), or NULL. */
static const char *answer_at(const reader *r, size_t nth) {
  size_t at = 0;
  for (size_t k = 0; at < r->in.len; k++) {
    size_t e = answer_end(r->in.p + at, r->in.len - at);
    if (!e) return NULL;
    if (k == nth) return r->in.p + at;
    at += e;
  }
  return NULL;
}

static bool starts(const char *s, const char *prefix) { return s && strncmp(s, prefix, strlen(prefix)) == 0; }

typedef struct fixture {
  program p;
  host h;
} fixture;

static bool setup(fixture *x, unsigned max_conn, unsigned per_client) {
  return program_start(&x->p) && host_start(&x->h, x->p.port, max_conn, per_client);
}

static void teardown(fixture *x) {
  host_stop(&x->h);
  program_stop(&x->p);
}

static bool front_holds(host *h, unsigned n) {
  hersh_loop_run_for(h->loop, 0.01);
  return hersh_front_connections(h->front) == n;
}

/* ---- tests ----------------------------------------------------------------------------------- */

TEST(proxied_get_and_keep_alive) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  reader r = {.fd = fd};
  char *req = request(&x.h, "GET", "/programs/app/proxy/hello?b=2&a=1", NULL);
  CHECK(send_text(fd, req));
  CHECK(read_answers(&x.h, &r, 1));
  const char *a = answer_at(&r, 0);
  CHECK(starts(a, "HTTP/1.1 200 OK\r\n"));
  CHECK(a && strstr(a, "\r\nX-Program: yes\r\n"));
  CHECK(a && strstr(a, "\r\nDate: "));
  CHECK(a && strstr(a, "GET /hello?a=1&b=2 HTTP/1.1\r\n")); /* the query encoded as api.lua does */
  CHECK(a && strstr(a, "X-Forwarded-For: 127.0.0.1\r\n"));
  CHECK(a && !strstr(a, TOKEN)); /* the Host's token stays with the Host */
  CHECK(front_holds(&x.h, 1)); /* served by the front, kept alive */
  CHECK(send_text(fd, req)); /* the same connection, again */
  CHECK(read_answers(&x.h, &r, 2));
  CHECK(starts(answer_at(&r, 1), "HTTP/1.1 200 OK\r\n"));
  CHECK(front_holds(&x.h, 1));
  CHECK_EQ_INT(x.h.mhd_answers, 0);
  CHECK_EQ_INT(atomic_load(&x.p.accepted), 1); /* the proxy's connection was reused */
  free(req);
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

TEST(post_with_a_body) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  reader r = {.fd = fd};
  char *req = request(&x.h, "POST", "/programs/app/proxy/echo",
                      "Content-Type: application/json\r\nContent-Length: 13\r\n");
  CHECK(send_text(fd, req));
  CHECK(send_text(fd, "{\"ping\":true}"));
  CHECK(read_answers(&x.h, &r, 1));
  const char *a = answer_at(&r, 0);
  CHECK(starts(a, "HTTP/1.1 200 OK\r\n"));
  CHECK(a && strstr(a, "\r\n\r\n{\"ping\":true}"));
  CHECK(front_holds(&x.h, 1));
  free(req);
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

TEST(pipelined_answers_in_order) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  reader r = {.fd = fd};
  char *one = request(&x.h, "GET", "/programs/app/proxy/one", NULL);
  char *other = request(&x.h, "GET", "/elsewhere", NULL);
  char *two = request(&x.h, "GET", "/programs/app/proxy/two", NULL);
  hersh_buf all = {0};
  hersh_buf_printf(&all, "%s%s%s", one, other, two);
  CHECK(send_text(fd, all.p)); /* in one write: the front must not read past the first */
  CHECK(read_answers(&x.h, &r, 3));
  const char *a = answer_at(&r, 0), *b = answer_at(&r, 1), *c = answer_at(&r, 2);
  CHECK(starts(a, "HTTP/1.1 200 OK\r\n") && strstr(a, "GET /one HTTP/1.1"));
  CHECK(starts(b, "HTTP/1.1 404 "));
  CHECK(starts(c, "HTTP/1.1 200 OK\r\n") && strstr(c, "GET /two HTTP/1.1"));
  CHECK_EQ_INT(x.h.mhd_answers, 1);
  CHECK(front_holds(&x.h, 0)); /* handed over at the second request, it stays there */
  free(one);
  free(other);
  free(two);
  hersh_buf_free(&all);
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

TEST(handed_over_unread) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  /* a wrong token: libmicrohttpd's 401 */
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  reader r = {.fd = fd};
  char text[512];
  snprintf(text, sizeof text, "GET /programs/app/proxy/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer front-secreT\r\n\r\n", x.h.port);
  CHECK(send_text(fd, text));
  CHECK(read_answers(&x.h, &r, 1));
  const char *a = answer_at(&r, 0);
  CHECK(starts(a, "HTTP/1.1 401 "));
  CHECK(a && strstr(a, "WWW-Authenticate: Bearer"));
  close(fd);
  hersh_buf_free(&r.in);
  /* bare LF line ends and a '%' to decode: not the front's, libmicrohttpd forwards them */
  const char *odd[] = {"GET /programs/app/proxy/lf HTTP/1.1\nHost: 127.0.0.1:%d\nAuthorization: Bearer " TOKEN "\n\n",
                       "GET /programs/app/proxy/p%%41th HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer " TOKEN
                       "\r\n\r\n"};
  for (int i = 0; i < 2; i++) {
    fd = client(&x.h, NULL);
    REQUIRE(fd >= 0);
    reader s = {.fd = fd};
    snprintf(text, sizeof text, odd[i], x.h.port);
    CHECK(send_text(fd, text));
    CHECK(read_answers(&x.h, &s, 1));
    a = answer_at(&s, 0);
    CHECK(starts(a, "HTTP/1.1 200 OK\r\n"));
    CHECK(a && strstr(a, i == 0 ? "GET /lf HTTP/1.1" : "GET /pAth HTTP/1.1"));
    CHECK(front_holds(&x.h, 0));
    close(fd);
    hersh_buf_free(&s.in);
  }
  teardown(&x);
}

/* The answer without its Date line (the second may differ). */
static char *undated(const char *a) {
  hersh_buf b = {0};
  const char *d = strstr(a, "\r\nDate: ");
  const char *e = d ? strstr(d + 2, "\r\n") : NULL;
  hersh_buf_put(&b, a, d && e ? (size_t)(d - a) : strlen(a));
  if (d && e) hersh_buf_puts(&b, e);
  return hersh_buf_take(&b);
}

TEST(same_answer_as_libmicrohttpd) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  const char *asks[][2] = {{"GET", "/programs/app/proxy/fixed"}, {"HEAD", "/programs/app/proxy/fixed"},
                           {"GET", "/programs/app/proxy/none"}};
  for (int i = 0; i < 3; i++) {
    char *answers[2] = {NULL, NULL};
    for (int via_mhd = 0; via_mhd < 2; via_mhd++) {
      int fd = client(&x.h, NULL);
      REQUIRE(fd >= 0);
      reader r = {.fd = fd};
      char *req = request(&x.h, asks[i][0], asks[i][1], NULL);
      /* a bare LF ending the head: only libmicrohttpd takes it; the answers must match */
      if (via_mhd) req[strlen(req) - 2] = '\n', req[strlen(req) - 1] = '\0';
      CHECK(send_text(fd, req));
      CHECK(read_answers(&x.h, &r, 1));
      CHECK(front_holds(&x.h, via_mhd ? 0 : 1));
      hersh_buf_put(&r.in, "", 1);
      answers[via_mhd] = undated(r.in.p);
      free(req);
      close(fd);
      hersh_buf_free(&r.in);
    }
    CHECK(answers[0] && answers[1] && strcmp(answers[0], answers[1]) == 0);
    if (answers[0] && answers[1] && strcmp(answers[0], answers[1]) != 0)
      printf("  front:\n%s\n  libmicrohttpd:\n%s\n", answers[0], answers[1]);
    free(answers[0]);
    free(answers[1]);
  }
  teardown(&x);
}

/* Sends the n bytes of text one at a time, 20 ms apart, until the server closes; then
** waits (bounded) for its end. The bytes sent before it closed. */
static size_t trickle(host *h, reader *r, const char *text, size_t n) {
  size_t sent = 0;
  for (; sent < n && !r->closed; sent++) {
    if (send(r->fd, text + sent, 1, MSG_NOSIGNAL) != 1) break;
    hersh_loop_run_for(h->loop, 0.02);
    read_some(r);
  }
  if (!r->closed) hersh_loop_run_until(h->loop, read_some, r, WAIT_S);
  return sent;
}

TEST(trickled_head_is_cut) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  char *req = request(&x.h, "GET", "/programs/app/proxy/slow", "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
  reader r = {.fd = fd};
  /* the whole head would take over 10 s, the limit is 1 s */
  CHECK(trickle(&x.h, &r, req, strlen(req)) < strlen(req)); /* cut before it was all in */
  CHECK(r.in.len == 0 || !starts(r.in.p, "HTTP/1.1 200"));
  free(req);
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

TEST(trickled_body_is_cut) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  char *req = request(&x.h, "POST", "/programs/app/proxy/echo",
                      "Content-Type: application/json\r\nContent-Length: 500\r\n");
  CHECK(send_text(fd, req)); /* the head whole: the front takes it */
  reader r = {.fd = fd};
  /* then the body: over 10 s in all, the limit is 1 s */
  char body[501];
  memset(body, '1', 500);
  body[500] = '\0';
  CHECK(trickle(&x.h, &r, body, 500) < 500); /* cut before it was all in */
  CHECK(r.in.len == 0 || !starts(r.in.p, "HTTP/1.1 200"));
  free(req);
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

TEST(idle_connection_closes) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  reader r = {.fd = fd, .want = 1};
  CHECK(front_holds(&x.h, 1));
  CHECK(hersh_loop_run_until(x.h.loop, read_some, &r, WAIT_S) == 1 && r.closed); /* idle_timeout 2 s */
  CHECK(front_holds(&x.h, 0));
  close(fd);
  hersh_buf_free(&r.in);
  teardown(&x);
}

/* Whether the server ends fd without an answer (it refused the connection). */
static bool refused(host *h, int fd) {
  reader r = {.fd = fd, .want = 1};
  hersh_loop_run_until(h->loop, read_some, &r, WAIT_S);
  bool ok = r.closed && r.in.len == 0;
  hersh_buf_free(&r.in);
  return ok;
}

TEST(connection_limits_count_the_front) {
  fixture x;
  REQUIRE(setup(&x, 5, 3)); /* 5 in all, 3 per client address */
  int fds[8];
  for (int i = 0; i < 3; i++) fds[i] = client(&x.h, "127.0.0.1");
  CHECK(front_holds(&x.h, 3));
  fds[3] = client(&x.h, "127.0.0.1"); /* a fourth from the same address */
  REQUIRE(fds[3] >= 0);
  CHECK(refused(&x.h, fds[3]));
  fds[4] = client(&x.h, "127.0.0.2");
  /* one handed to libmicrohttpd counts too: an unfinished head goes there */
  CHECK(fds[4] >= 0 && send_text(fds[4], "GET /elsewhere HTTP/1.1\r\n"));
  hersh_loop_run_for(x.h.loop, 0.05);
  fds[5] = client(&x.h, "127.0.0.2");
  CHECK(front_holds(&x.h, 4));
  CHECK_EQ_INT((int)hersh_http_server_connections(x.h.http), 1);
  fds[6] = client(&x.h, "127.0.0.3"); /* a sixth in all */
  REQUIRE(fds[6] >= 0);
  CHECK(refused(&x.h, fds[6]));
  close(fds[0]);
  CHECK(front_holds(&x.h, 3));
  fds[7] = client(&x.h, "127.0.0.3"); /* room again */
  reader r = {.fd = fds[7]};
  char *req = request(&x.h, "GET", "/programs/app/proxy/room", NULL);
  CHECK(send_text(fds[7], req));
  CHECK(read_answers(&x.h, &r, 1));
  CHECK(starts(answer_at(&r, 0), "HTTP/1.1 200 OK\r\n"));
  free(req);
  hersh_buf_free(&r.in);
  for (int i = 1; i < 8; i++)
    if (fds[i] >= 0) close(fds[i]);
  teardown(&x);
}

static bool program_cut(void *ud) { return atomic_load(&((program *)ud)->cut) > 0; }

TEST(client_leaving_mid_answer_cancels) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  char *req = request(&x.h, "GET", "/programs/app/proxy/forever", NULL);
  CHECK(send_text(fd, req));
  reader r = {.fd = fd, .want = 1, .limit = 100000};
  hersh_loop_run_until(x.h.loop, read_some, &r, WAIT_S);
  CHECK(starts(r.in.p, "HTTP/1.1 200 OK\r\n"));
  CHECK(r.in.p && strstr(r.in.p, "Transfer-Encoding: chunked\r\n"));
  close(fd); /* mid-answer: the program's endless answer must stop */
  CHECK(hersh_loop_run_until(x.h.loop, program_cut, &x.p, WAIT_S) == 1);
  CHECK(front_holds(&x.h, 0));
  free(req);
  hersh_buf_free(&r.in);
  teardown(&x);
}

static bool program_hung(void *ud) { return atomic_load(&((program *)ud)->hung) > 0; }

TEST(stop_answers_a_waiting_exchange_503_and_closes) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int fd = client(&x.h, NULL);
  REQUIRE(fd >= 0);
  char *req = request(&x.h, "GET", "/programs/app/proxy/hang", NULL);
  CHECK(send_text(fd, req));
  CHECK(hersh_loop_run_until(x.h.loop, program_hung, &x.p, WAIT_S) == 1); /* forwarded, unanswered */
  host_stop(&x.h);
  reader r = {.fd = fd};
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  while (!r.closed && poll(&pfd, 1, WAIT_S * 1000) == 1) read_some(&r);
  CHECK(r.closed);
  CHECK(starts(r.in.p, "HTTP/1.1 503 "));
  CHECK(r.in.p && strstr(r.in.p, "Connection: close\r\n"));
  free(req);
  close(fd);
  hersh_buf_free(&r.in);
  program_stop(&x.p);
}

TEST(slow_reader_blocks_nobody) {
  fixture x;
  REQUIRE(setup(&x, 0, 0));
  int slow = client(&x.h, NULL), quick = client(&x.h, NULL);
  REQUIRE(slow >= 0 && quick >= 0);
  char *big = request(&x.h, "GET", "/programs/app/proxy/big", NULL);
  char *hello = request(&x.h, "GET", "/programs/app/proxy/hello", NULL);
  CHECK(send_text(slow, big));
  hersh_loop_run_for(x.h.loop, 0.2); /* the program writes until the proxy stops reading */
  reader q = {.fd = quick};
  CHECK(send_text(quick, hello));
  CHECK(read_answers(&x.h, &q, 1)); /* answered while the slow one reads nothing */
  CHECK(starts(answer_at(&q, 0), "HTTP/1.1 200 OK\r\n"));
  CHECK(atomic_load(&x.p.big_sent) < BIG); /* paused: not all of it was read from the program */
  reader s = {.fd = slow};
  CHECK(read_answers(&x.h, &s, 1)); /* now it reads: all of it, intact */
  const char *a = answer_at(&s, 0);
  REQUIRE(a);
  const char *body = strstr(a, "\r\n\r\n") + 4;
  size_t at = 0;
  bool intact = true;
  while (intact) {
    size_t size = strtoul(body, NULL, 16);
    const char *data = strstr(body, "\r\n") + 2;
    if (size == 0) break;
    for (size_t i = 0; i < size && intact; i++) intact = data[i] == pattern(at + i);
    at += size;
    body = data + size + 2;
  }
  CHECK(intact);
  CHECK(at == BIG);
  free(big);
  free(hello);
  close(slow);
  close(quick);
  hersh_buf_free(&s.in);
  hersh_buf_free(&q.in);
  teardown(&x);
}

int main(void) {
  RUN(proxied_get_and_keep_alive);
  RUN(post_with_a_body);
  RUN(pipelined_answers_in_order);
  RUN(handed_over_unread);
  RUN(same_answer_as_libmicrohttpd);
  RUN(trickled_head_is_cut);
  RUN(trickled_body_is_cut);
  RUN(idle_connection_closes);
  RUN(connection_limits_count_the_front);
  RUN(client_leaving_mid_answer_cancels);
  RUN(slow_reader_blocks_nobody);
  RUN(stop_answers_a_waiting_exchange_503_and_closes);
  return check_summary();
}
