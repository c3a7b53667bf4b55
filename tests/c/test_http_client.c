/*
** The HTTP client (src/http/client.c) against a real server on loopback: the project's
** own libmicrohttpd server, with a handler that echoes what it got, and for streams an
** endless SSE answer written by a thread on a plain socket. Every wait is
** bounded; no test asserts how long something took.
*/
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "net.h"
#include "hersh.h"
/* Relative, so it builds whether or not the test target has src/ on its include path.
** The server's request type and the client's request function share a name: the
** type is renamed here (a type name never reaches the linker). */
#define hersh_http_request hersh_http_server_request
#include "../../src/http/server.h"
#undef hersh_http_request
#include "../../src/http/client.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */
#define BIG_BODY 100000

/* ---- the server --------------------------------------------------------------------------- */

/* What the handler saw (it runs on the server's thread). */
static struct {
  pthread_mutex_t mu;
  int ports[256]; /* distinct client ports: one per TCP connection */
  int n_ports;
  int requests;
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool release_sleepers;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void note_client(const hersh_http_server_request *req) {
  const union MHD_ConnectionInfo *info = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  int port = -1;
  if (info && info->client_addr && info->client_addr->sa_family == AF_INET)
    port = ntohs(((const struct sockaddr_in *)info->client_addr)->sin_port);
  pthread_mutex_lock(&seen.mu);
  seen.requests++;
  bool known = false;
  for (int i = 0; i < seen.n_ports; i++) known = known || seen.ports[i] == port;
  if (!known && seen.n_ports < 256) seen.ports[seen.n_ports++] = port;
  pthread_mutex_unlock(&seen.mu);
}

static void reset_seen(void) {
  pthread_mutex_lock(&seen.mu);
  seen.n_ports = 0;
  seen.requests = 0;
  pthread_mutex_unlock(&seen.mu);
}

/* "METHOD PATH\nq=QUERY\nx-test=HEADER\nBODY"; /big sends BIG_BODY bytes, /sleep waits
** up to 2 s (less once the test releases it), /missing answers 404. */
static void echo_handler(const hersh_http_server_request *req, hersh_http_response *res, void *ud) {
  (void)ud;
  note_client(req);
  res->content_type = "text/plain";
  if (strcmp(req->path, "/sleep") == 0) {
    for (int i = 0; i < 200 && !atomic_load(&release_sleepers); i++) sleep_ms(10);
  }
  if (strcmp(req->path, "/big") == 0) {
    res->body = malloc(BIG_BODY);
    if (res->body) memset(res->body, 'x', BIG_BODY);
    res->body_len = res->body ? BIG_BODY : 0;
    res->status = 200;
    return;
  }
  const char *q = hersh_http_query(req, "q");
  const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Test");
  size_t cap = strlen(req->method) + strlen(req->path) + (q ? strlen(q) : 0) + (h ? strlen(h) : 0) + req->body_len + 64;
  res->body = malloc(cap);
  if (!res->body) return;
  int n = snprintf(res->body, cap, "%s %s\nq=%s\nx-test=%s\n", req->method, req->path, q ? q : "", h ? h : "");
  memcpy(res->body + n, req->body ? req->body : "", req->body_len);
  res->body_len = (size_t)n + req->body_len;
  res->status = strcmp(req->path, "/missing") == 0 ? 404 : 200;
}

static hersh_http_server *start_server(void) {
  hersh_http_options o = {.port = 0, .listen_fd = -1, .max_body = 1 << 20};
  hersh_http_server *s = NULL;
  if (hersh_http_server_start(&o, echo_handler, NULL, &s) != HERSH_OK) printf("server: %s\n", hersh_errmsg());
  return s;
}

static hersh_http_server *server;

static char *url_of(int port, const char *path) {
  static char buf[8][256];
  static int next;
  char *u = buf[next++ % 8];
  snprintf(u, sizeof buf[0], "http://127.0.0.1:%d%s", port, path);
  return u;
}

static char *url(const char *path) { return url_of(hersh_http_server_port(server), path); }

/* A new loop (in *loop) and its client; NULL, with nothing left allocated, if either fails. */
static hersh_http_client *new_client(hersh_loop **loop) {
  *loop = hersh_loop_new();
  if (!*loop) return NULL;
  hersh_http_client *c = hersh_http_client_get(*loop);
  if (!c) {
    hersh_loop_free(*loop);
    *loop = NULL;
  }
  return c;
}

/* ---- collecting results ------------------------------------------------------------------------ */

typedef struct got {
  int calls;
  int status;
  char *error, *code, *headers, *body;
  size_t body_len;
} got;

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static void on_got(const hersh_http_result *r, void *ud) {
  got *g = ud;
  g->calls++;
  if (g->calls > 1) return; /* counted: a second call is a failure the test sees */
  g->status = r->status;
  g->error = r->error ? dup_n(r->error, strlen(r->error)) : NULL;
  g->code = r->code ? dup_n(r->code, strlen(r->code)) : NULL;
  g->headers = dup_n(r->headers, r->headers_len);
  g->body = dup_n(r->body, r->body_len);
  g->body_len = r->body_len;
}

static void got_free(got *g) {
  free(g->error);
  free(g->code);
  free(g->headers);
  free(g->body);
  memset(g, 0, sizeof *g);
}

/* g tells of one call, failed (status 0) with code and error. Prints what it tells otherwise. */
static bool failed_with(const got *g, const char *code, const char *error) {
  bool ok = g->calls == 1 && g->status == 0 && g->code && strcmp(g->code, code) == 0 && g->error &&
            strcmp(g->error, error) == 0;
  if (!ok)
    printf("  %d call(s), status %d, %s: %s\n", g->calls, g->status, g->code ? g->code : "(no code)",
           g->error ? g->error : "(no error)");
  return ok;
}

typedef struct all_done {
  got *gs;
  int n;
} all_done;

static bool all_called(void *ud) {
  all_done *a = ud;
  for (int i = 0; i < a->n; i++)
    if (a->gs[i].calls == 0) return false;
  return true;
}

/* Makes one request on a loop and waits for it. */
static void fetch(hersh_loop *loop, const hersh_http_call *call, got *g) {
  memset(g, 0, sizeof *g);
  hersh_http_client *c = hersh_http_client_get(loop);
  if (!c || hersh_http_request(c, call, on_got, g) != HERSH_OK) {
    printf("request: %s\n", hersh_errmsg());
    return;
  }
  all_done a = {g, 1};
  hersh_loop_run_until(loop, all_called, &a, WAIT_S);
}

/* ---- tests ------------------------------------------------------------------------------------ */

TEST(methods_with_bodies_and_headers) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  const char *hdrs[] = {"X-Test: hello there", "Content-Type: text/plain", NULL};
  struct {
    const char *method, *path, *body, *want;
  } cases[] = {
      {"GET", "/get?q=1", NULL, "GET /get\nq=1\nx-test=hello there\n"},
      {"POST", "/post", "a posted body", "POST /post\nq=\nx-test=hello there\na posted body"},
      {"PUT", "/put", "put this", "PUT /put\nq=\nx-test=hello there\nput this"},
      {"DELETE", "/del", "gone", "DELETE /del\nq=\nx-test=hello there\ngone"},
      {"DELETE", "/del2", NULL, "DELETE /del2\nq=\nx-test=hello there\n"},
      {"PATCH", "/patch", NULL, "PATCH /patch\nq=\nx-test=hello there\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    hersh_http_call call = {.method = cases[i].method, .url = url(cases[i].path), .headers = hdrs,
                            .body = cases[i].body, .body_len = cases[i].body ? strlen(cases[i].body) : 0};
    got g;
    fetch(loop, &call, &g);
    CHECK_EQ_INT(g.calls, 1);
    CHECK_EQ_INT(g.status, 200);
    CHECK_EQ_STR(g.error, NULL);
    CHECK_EQ_STR(g.body, cases[i].want);
    CHECK(g.headers && strncmp(g.headers, "HTTP/1.1 200", 12) == 0);
    CHECK(g.headers && strcasestr(g.headers, "\r\nContent-Type: text/plain\r\n"));
    got_free(&g);
  }
  /* A large body goes in one go (no Expect: 100-continue wait) and comes back whole. */
  size_t n = 300000;
  char *big = malloc(n);
  REQUIRE(big);
  for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
  hersh_http_call call = {.method = "POST", .url = url("/echo"), .body = big, .body_len = n};
  got g;
  fetch(loop, &call, &g);
  CHECK_EQ_INT(g.status, 200);
  const char *prefix = "POST /echo\nq=\nx-test=\n";
  CHECK_EQ_INT(g.body_len, strlen(prefix) + n);
  CHECK(g.body && g.body_len == strlen(prefix) + n && memcmp(g.body + strlen(prefix), big, n) == 0);
  got_free(&g);
  free(big);
  /* Idle, the client keeps nothing active: a plain uv_run would return. */
  for (int i = 0; i < 3; i++) uv_run(hersh_loop_uv(loop), UV_RUN_NOWAIT);
  CHECK(!uv_loop_alive(hersh_loop_uv(loop)));
  /* An HTTP error status is an answer, not a transport error. */
  hersh_http_call missing = {.url = url("/missing")};
  fetch(loop, &missing, &g);
  CHECK_EQ_INT(g.status, 404);
  CHECK_EQ_STR(g.error, NULL);
  CHECK_EQ_STR(g.code, NULL);
  got_free(&g);
  hersh_loop_free(loop);
}

/* Each answer starts the next request from inside done, until 100. */
typedef struct chain {
  hersh_http_client *c;
  int done, failed;
} chain;

static void chain_next(const hersh_http_result *r, void *ud) {
  chain *ch = ud;
  if (r->status != 200) ch->failed++;
  if (++ch->done >= 100) return;
  hersh_http_call call = {.method = "POST", .url = url("/seq"), .body = "x", .body_len = 1};
  if (hersh_http_request(ch->c, &call, chain_next, ch) != HERSH_OK) {
    ch->failed++;
    ch->done = 100;
  }
}

static bool chain_finished(void *ud) { return ((chain *)ud)->done >= 100; }

TEST(sequential_requests_reuse_one_connection) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  reset_seen();
  chain ch = {.c = hersh_http_client_get(loop)};
  REQUIRE(ch.c);
  CHECK(hersh_http_client_get(loop) == ch.c); /* one client per loop */
  hersh_http_call call = {.url = url("/seq")};
  REQUIRE(hersh_http_request(ch.c, &call, chain_next, &ch) == HERSH_OK);
  CHECK_EQ_INT(hersh_loop_run_until(loop, chain_finished, &ch, WAIT_S), 1);
  CHECK_EQ_INT(ch.done, 100);
  CHECK_EQ_INT(ch.failed, 0);
  pthread_mutex_lock(&seen.mu);
  int requests = seen.requests, connections = seen.n_ports;
  pthread_mutex_unlock(&seen.mu);
  CHECK_EQ_INT(requests, 100);
  CHECK_EQ_INT(connections, 1); /* every request after the first rode the same connection */
  hersh_loop_free(loop);
}

TEST(concurrent_requests_all_complete) {
  enum { N = 50 };
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  got gs[N];
  memset(gs, 0, sizeof gs);
  char bodies[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "n=%d", i);
    hersh_http_call call = {.method = "POST", .url = url("/many"), .body = bodies[i], .body_len = strlen(bodies[i])};
    CHECK_EQ_INT(hersh_http_request(c, &call, on_got, &gs[i]), HERSH_OK);
  }
  all_done a = {gs, N};
  CHECK_EQ_INT(hersh_loop_run_until(loop, all_called, &a, WAIT_S), 1);
  for (int i = 0; i < N; i++) {
    char want[64];
    snprintf(want, sizeof want, "POST /many\nq=\nx-test=\nn=%d", i);
    CHECK_EQ_INT(gs[i].calls, 1);
    CHECK_EQ_INT(gs[i].status, 200);
    CHECK_EQ_STR(gs[i].body, want);
    got_free(&gs[i]);
  }
  hersh_loop_free(loop);
}

TEST(connection_refused) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  int port = net_dead_port();
  REQUIRE(port > 0);
  hersh_http_call call = {.url = url_of(port, "/")};
  got g;
  fetch(loop, &call, &g);
  CHECK(failed_with(&g, "ECONNREFUSED", "connection refused"));
  CHECK_EQ_INT(g.body_len, 0);
  got_free(&g);
  hersh_loop_free(loop);
}

TEST(timeout) {
  hersh_http_server *slow = start_server(); /* its own: the sleep holds its thread */
  REQUIRE(slow);
  atomic_store(&release_sleepers, false);
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_http_call call = {.url = url_of(hersh_http_server_port(slow), "/sleep"), .timeout = 0.3};
  got g;
  fetch(loop, &call, &g);
  CHECK(failed_with(&g, "ETIMEOUT", "timeout"));
  got_free(&g);
  hersh_loop_free(loop);
  atomic_store(&release_sleepers, true);
  hersh_http_server_stop(slow);
}

TEST(response_too_large) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_http_call call = {.url = url("/big"), .max_response = 1000};
  got g;
  fetch(loop, &call, &g);
  CHECK(failed_with(&g, "ETOOLARGE", "response too large"));
  got_free(&g);
  hersh_http_call small = {.url = url("/get"), .max_response = 10}; /* the headers alone are over */
  fetch(loop, &small, &g);
  CHECK_EQ_INT(g.status, 0);
  CHECK_EQ_STR(g.code, "ETOOLARGE");
  got_free(&g);
  call.max_response = BIG_BODY; /* exactly the limit is fine */
  fetch(loop, &call, &g);
  CHECK_EQ_INT(g.status, 200);
  CHECK_EQ_INT(g.body_len, BIG_BODY);
  got_free(&g);
  hersh_loop_free(loop);
}

TEST(bad_requests_are_refused_at_once) {
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  got g = {0};
  const char *no_colon[] = {"NoColonHere", NULL};
  const char *crlf[] = {"X-A: b\r\nX-Injected: yes", NULL};
  hersh_http_call calls[] = {
      {.url = "not a url"},
      {.url = "ftp://127.0.0.1/file"},
      {.url = NULL},
      {.method = "GE T", .url = url("/")},
      {.url = url("/"), .headers = no_colon},
      {.url = url("/"), .headers = crlf},
  };
  for (size_t i = 0; i < sizeof calls / sizeof *calls; i++)
    CHECK_EQ_INT(hersh_http_request(c, &calls[i], on_got, &g), HERSH_E_INVAL);
  hersh_loop_run_for(loop, 0.05);
  CHECK_EQ_INT(g.calls, 0);
  /* Still usable afterwards. */
  hersh_http_call ok = {.url = url("/after")};
  fetch(loop, &ok, &g);
  CHECK_EQ_INT(g.status, 200);
  got_free(&g);
  hersh_loop_free(loop);
}

static void cancelled_requests(double run_first) {
  enum { N = 5 };
  int port = 0;
  int lfd = net_listener(&port); /* never accepts */
  REQUIRE(lfd >= 0);
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  got gs[N];
  memset(gs, 0, sizeof gs);
  for (int i = 0; i < N; i++) {
    hersh_http_call call = {.method = "POST", .url = url_of(port, "/never"), .body = "b", .body_len = 1};
    CHECK_EQ_INT(hersh_http_request(c, &call, on_got, &gs[i]), HERSH_OK);
  }
  if (run_first > 0) hersh_loop_run_for(loop, run_first); /* connected and sent: waiting */
  for (int i = 0; i < N; i++) CHECK_EQ_INT(gs[i].calls, 0);
  hersh_loop_free(loop);
  for (int i = 0; i < N; i++) {
    CHECK(failed_with(&gs[i], "ECANCELLED", "cancelled"));
    got_free(&gs[i]);
  }
  close(lfd);
}

TEST(loop_freed_with_requests_in_flight) { cancelled_requests(0.2); }
TEST(loop_freed_before_requests_ran) { cancelled_requests(0); }

/* ---- streams ---------------------------------------------------------------------------------- */

/* An SSE endpoint that never ends, on a thread of its own: it answers one connection with
** the head and one event, then reads until the client goes, and records that it went. */
typedef struct endless {
  int lfd, port;
  pthread_t thread;
  atomic_bool client_left;
} endless;

static void *endless_serve(void *ud) {
  endless *e = ud;
  int fd = accept(e->lfd, NULL, NULL);
  if (fd < 0) return NULL;
  char buf[4096];
  size_t have = 0;
  ssize_t n;
  while (have < sizeof buf - 1 && (n = read(fd, buf + have, sizeof buf - 1 - have)) > 0) { /* the request */
    have += (size_t)n;
    buf[have] = '\0';
    if (strstr(buf, "\r\n\r\n")) break;
  }
  static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n"
                             "f\r\nid: 1\ndata: a\n\n\r\n";
  if (write(fd, head, sizeof head - 1) == (ssize_t)(sizeof head - 1)) {
    while ((n = read(fd, buf, sizeof buf)) > 0) {
    }
    atomic_store(&e->client_left, n == 0);
  }
  close(fd);
  return NULL;
}

static bool endless_start(endless *e) {
  memset(e, 0, sizeof *e);
  e->lfd = net_listener(&e->port);
  if (e->lfd < 0) return false;
  if (pthread_create(&e->thread, NULL, endless_serve, e) != 0) {
    close(e->lfd);
    return false;
  }
  return true;
}

static void endless_stop(endless *e) {
  shutdown(e->lfd, SHUT_RDWR); /* ends an accept still waiting */
  pthread_join(e->thread, NULL);
  close(e->lfd);
}

/* What a stream's callbacks saw. */
typedef struct streamed {
  int heads, head_status, chunks_before_head;
  char text[256];
  size_t len;
  got end;
  hersh_http_req *req;
  bool cancel_in_chunk;
  struct streamed *cancel_other; /* cancelled from this one's chunk callback */
} streamed;

static hersh_http_take on_stream_head(int status, const char *headers, size_t len, void *ud) {
  (void)headers, (void)len;
  streamed *s = ud;
  s->heads++;
  s->head_status = status;
  return HERSH_HTTP_TAKEN;
}

static hersh_http_take on_stream_chunk(const char *data, size_t len, void *ud) {
  streamed *s = ud;
  if (s->heads == 0) s->chunks_before_head++;
  if (len > sizeof s->text - 1 - s->len) len = sizeof s->text - 1 - s->len;
  memcpy(s->text + s->len, data, len);
  s->len += len;
  s->text[s->len] = '\0';
  if (s->cancel_in_chunk) hersh_http_cancel(s->req);
  if (s->cancel_other) hersh_http_cancel(s->cancel_other->req);
  return HERSH_HTTP_TAKEN;
}

static void on_stream_done(const hersh_http_result *r, void *ud) { on_got(r, &((streamed *)ud)->end); }

static bool first_event(void *ud) { return strstr(((streamed *)ud)->text, "\n\n") != NULL; }
static bool stream_ended(void *ud) { return ((streamed *)ud)->end.calls > 0; }
/* Whether the client left the endless server, within WAIT_S. The server's thread says so,
** which does not wake the loop: the loop turns in short slices meanwhile. */
static bool client_left_within_bound(hersh_loop *loop, endless *e) {
  for (double waited = 0; waited < WAIT_S && !atomic_load(&e->client_left); waited += 0.01)
    hersh_loop_run_for(loop, 0.01);
  return atomic_load(&e->client_left);
}

static const hersh_http_stream_fns stream_fns = {.head = on_stream_head, .data = on_stream_chunk};

/* Opens a stream of e's endless /events into s (the callbacks above). */
static int endless_stream(hersh_http_client *c, endless *e, streamed *s) {
  hersh_http_call call = {.url = url_of(e->port, "/events")};
  return hersh_http_request_stream(c, &call, &stream_fns, on_stream_done, s, &s->req);
}

/* The first event arrives while the answer is still open; cancel ends it once, with
** ECANCELLED, and closes the connection (from outside the callbacks, or inside one). */
static void endless_then_cancel(bool in_chunk) {
  endless e;
  REQUIRE(endless_start(&e));
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  streamed s = {.cancel_in_chunk = in_chunk};
  CHECK_EQ_INT(endless_stream(c, &e, &s), HERSH_OK);
  hersh_loop_run_until(loop, first_event, &s, WAIT_S);
  CHECK_EQ_STR(s.text, "id: 1\ndata: a\n\n");
  CHECK_EQ_INT(s.heads, 1);
  CHECK_EQ_INT(s.head_status, 200);
  CHECK_EQ_INT(s.chunks_before_head, 0);
  if (!in_chunk) {
    CHECK_EQ_INT(s.end.calls, 0); /* the answer has not ended: the event came as it was sent */
    hersh_http_cancel(s.req);
    hersh_http_cancel(s.req); /* again: harmless */
    CHECK_EQ_INT(s.end.calls, 0); /* never from inside cancel */
  }
  hersh_loop_run_until(loop, stream_ended, &s, WAIT_S);
  CHECK_EQ_INT(s.end.calls, 1);
  CHECK_EQ_STR(s.end.code, "ECANCELLED");
  CHECK(client_left_within_bound(loop, &e)); /* the connection is closed, not kept alive */
  hersh_loop_free(loop);
  CHECK_EQ_INT(s.end.calls, 1);
  got_free(&s.end);
  endless_stop(&e);
}

TEST(stream_delivers_before_the_end_and_cancels) { endless_then_cancel(false); }
TEST(stream_cancelled_from_its_chunk_callback) { endless_then_cancel(true); }

/* A stream still open when the loop is freed: done once, ECANCELLED, nothing left (ASan). */
TEST(stream_open_when_the_loop_is_freed) {
  endless e;
  REQUIRE(endless_start(&e));
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  streamed s = {0};
  CHECK_EQ_INT(endless_stream(c, &e, &s), HERSH_OK);
  hersh_loop_run_until(loop, first_event, &s, WAIT_S);
  CHECK_EQ_INT(s.end.calls, 0);
  hersh_http_cancel(s.req); /* its sweep never runs: the loop goes first */
  hersh_loop_free(loop);
  CHECK_EQ_INT(s.end.calls, 1);
  CHECK_EQ_STR(s.end.code, "ECANCELLED");
  got_free(&s.end);
  endless_stop(&e);
}

static bool both_ended(void *ud) {
  streamed *s = ud;
  return s[0].end.calls > 0 && s[1].end.calls > 0;
}

/* Cancel is safe from inside another request's callback (curl is driving then): the
** other one ends once, ECANCELLED, its connection closed; the caller's goes on. */
TEST(stream_cancelled_from_another_streams_callback) {
  endless ea, eb;
  REQUIRE(endless_start(&ea));
  REQUIRE(endless_start(&eb));
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  streamed s[2] = {{0}, {0}};
  s[0].cancel_other = &s[1];
  CHECK_EQ_INT(endless_stream(c, &eb, &s[1]), HERSH_OK);
  /* The victim is open and read before the canceller starts: else, on a slow machine, the
  ** cancel can close it before its server has even answered, and "left" means nothing. */
  CHECK_EQ_INT(hersh_loop_run_until(loop, first_event, &s[1], WAIT_S), 1);
  CHECK_EQ_INT(endless_stream(c, &ea, &s[0]), HERSH_OK);
  CHECK(client_left_within_bound(loop, &eb));
  CHECK_EQ_INT(s[1].end.calls, 1);
  CHECK_EQ_STR(s[1].end.code, "ECANCELLED");
  CHECK_EQ_INT(s[0].end.calls, 0); /* the canceller's own stream is still open */
  hersh_http_cancel(s[0].req);
  hersh_loop_run_until(loop, both_ended, s, WAIT_S);
  CHECK_EQ_INT(s[0].end.calls, 1);
  CHECK_EQ_STR(s[0].end.code, "ECANCELLED");
  hersh_loop_free(loop);
  CHECK_EQ_INT(s[0].end.calls + s[1].end.calls, 2);
  got_free(&s[0].end);
  got_free(&s[1].end);
  endless_stop(&ea);
  endless_stop(&eb);
}

/* A streamed answer is the first response: following redirects is refused at once. */
TEST(stream_refuses_redirects) {
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  streamed s = {0};
  hersh_http_call call = {.url = url("/x"), .max_redirects = 3};
  CHECK_EQ_INT(hersh_http_request_stream(c, &call, &stream_fns, on_stream_done, &s, &s.req), HERSH_E_INVAL);
  CHECK(strstr(hersh_errmsg(), "redirects") != NULL);
  hersh_loop_free(loop);
  CHECK_EQ_INT(s.end.calls, 0);
}

/* A finished stream: head, every chunk, then done with no error; an empty body gets its head too. */
TEST(stream_of_a_whole_answer) {
  hersh_loop *loop = NULL;
  hersh_http_client *c = new_client(&loop);
  REQUIRE(c);
  streamed s = {0};
  hersh_http_call call = {.url = url("/missing?q=1")};
  CHECK_EQ_INT(hersh_http_request_stream(c, &call, &stream_fns, on_stream_done, &s, &s.req), HERSH_OK);
  hersh_loop_run_until(loop, stream_ended, &s, WAIT_S);
  CHECK_EQ_INT(s.heads, 1);
  CHECK_EQ_INT(s.head_status, 404);
  CHECK_EQ_STR(s.text, "GET /missing\nq=1\nx-test=\n");
  CHECK_EQ_INT(s.end.calls, 1);
  CHECK(s.end.error == NULL);
  CHECK_EQ_INT((int)s.end.body_len, 0);
  got_free(&s.end);
  streamed h = {0};
  hersh_http_call head = {.method = "HEAD", .url = url("/x")};
  CHECK_EQ_INT(hersh_http_request_stream(c, &head, &stream_fns, on_stream_done, &h, &h.req), HERSH_OK);
  hersh_loop_run_until(loop, stream_ended, &h, WAIT_S);
  CHECK_EQ_INT(h.heads, 1);
  CHECK_EQ_INT(h.head_status, 200);
  CHECK_EQ_INT((int)h.len, 0);
  CHECK(h.end.error == NULL);
  got_free(&h.end);
  hersh_loop_free(loop);
}

int main(void) {
  server = start_server();
  if (!server) return printf("0 passed, 1 failed\n"), 1;
  RUN(methods_with_bodies_and_headers);
  RUN(sequential_requests_reuse_one_connection);
  RUN(concurrent_requests_all_complete);
  RUN(connection_refused);
  RUN(timeout);
  RUN(response_too_large);
  RUN(bad_requests_are_refused_at_once);
  RUN(loop_freed_with_requests_in_flight);
  RUN(loop_freed_before_requests_ran);
  RUN(stream_delivers_before_the_end_and_cancels);
  RUN(stream_cancelled_from_its_chunk_callback);
  RUN(stream_open_when_the_loop_is_freed);
  RUN(stream_of_a_whole_answer);
  RUN(stream_cancelled_from_another_streams_callback);
  RUN(stream_refuses_redirects);
  hersh_http_server_stop(server);
  return check_summary();
}
