/*
** The proxy's client to the programs (src/http/upstream.c) against real servers on
** loopback: a thread with a plain socket answers each request with a scripted reply,
** then keeps the connection, closes it, or never answers. And the response head
** parser and chunked decoder (upstream_head.c) on their own. Every wait is bounded;
** no test asserts how long something took.
*/
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "hersh.h"
#include "base/buf.h"
#include "http/upstream.h"
#include "http/upstream_head.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */

/* ---- the scripted server ------------------------------------------------------------------- */

typedef enum { KEEP, CLOSE, HANG } after;

typedef struct step {
  const char *reply; /* NULL: none */
  size_t reply_len;  /* 0: strlen(reply) */
  after then;
} step;

typedef struct server {
  int fd, port;
  pthread_t thread;
  const step *steps; /* one per request, in order; the last repeats */
  size_t n_steps;
  atomic_int accepted, requests, client_closed;
  atomic_bool stop;
  pthread_mutex_t mu;
  char last[8192]; /* the last request, head and body */
} server;

/* Waits for fd to be readable, or the server to stop: false then. */
static bool readable(server *s, int fd) {
  while (!atomic_load(&s->stop)) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc = poll(&p, 1, 20);
    if (rc > 0) return true;
  }
  return false;
}

/* The end of a request in buf[0, n), or 0: its head, then a Content-Length or chunked body. */
static size_t request_end(const char *buf, size_t n) {
  const char *end = memmem(buf, n, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t head = (size_t)(end + 4 - buf);
  const char *cl = strcasestr(buf, "\ncontent-length:");
  if (cl && cl < end) {
    size_t len = strtoul(cl + 16, NULL, 10);
    return n >= head + len ? head + len : 0;
  }
  const char *te = strcasestr(buf, "\ntransfer-encoding: chunked");
  if (te && te < end) {
    const char *last = memmem(end + 4, n - head, "0\r\n\r\n", 5);
    return last && (last == end + 4 || last[-1] == '\n') ? (size_t)(last + 5 - buf) : 0;
  }
  return head;
}

/* Serves one connection; false when the server stops. */
static bool serve(server *s, int c) {
  char buf[sizeof s->last];
  size_t n = 0;
  for (;;) {
    size_t end;
    while (!(end = request_end(buf, n))) {
      if (n == sizeof buf - 1 || !readable(s, c)) return false;
      ssize_t got = recv(c, buf + n, sizeof buf - 1 - n, 0);
      if (got <= 0) { /* the client closed it */
        atomic_fetch_add(&s->client_closed, 1);
        return true;
      }
      n += (size_t)got;
      buf[n] = '\0';
    }
    int nth = atomic_fetch_add(&s->requests, 1);
    pthread_mutex_lock(&s->mu);
    memcpy(s->last, buf, end);
    s->last[end] = '\0';
    pthread_mutex_unlock(&s->mu);
    memmove(buf, buf + end, n - end);
    n -= end;
    buf[n] = '\0';
    const step *st = &s->steps[(size_t)nth < s->n_steps ? (size_t)nth : s->n_steps - 1];
    if (st->reply) {
      size_t len = st->reply_len ? st->reply_len : strlen(st->reply);
      if (send(c, st->reply, len, MSG_NOSIGNAL) != (ssize_t)len) return true;
    }
    if (st->then == CLOSE) return true;
    if (st->then == HANG) {
      while (readable(s, c)) {
        char drop[256];
        if (recv(c, drop, sizeof drop, 0) <= 0) return true;
      }
      return false;
    }
  }
}

static void *server_main(void *ud) {
  server *s = ud;
  while (readable(s, s->fd)) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) continue;
    atomic_fetch_add(&s->accepted, 1);
    bool go_on = serve(s, c);
    close(c);
    if (!go_on) break;
  }
  return NULL;
}

static bool server_start(server *s, const step *steps, size_t n) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  s->steps = steps;
  s->n_steps = n;
  s->fd = net_listener(&s->port);
  if (s->fd < 0) return false;
  if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
    close(s->fd);
    return false;
  }
  return true;
}

static void server_stop(server *s) {
  atomic_store(&s->stop, true);
  pthread_join(s->thread, NULL);
  close(s->fd);
  pthread_mutex_destroy(&s->mu);
}

/* ---- one exchange -------------------------------------------------------------------------- */

typedef struct result {
  bool done;
  int status, heads;
  char code[32], error[256];
  hersh_buf body;
  hersh_upstream_req *req;
  hersh_upstream *u;
  hersh_upstream_call next; /* started from done when next.method is set */
  struct result *then;
} result;

static bool on_head(int status, const char *block, size_t len, void *ud) {
  (void)status;
  (void)block;
  (void)len;
  result *r = ud;
  r->heads++;
  return true;
}

static bool on_data(const char *piece, size_t len, void *ud) {
  result *r = ud;
  hersh_buf_put(&r->body, piece, len);
  return true;
}

static const hersh_upstream_fns FNS;

static void on_done(const hersh_upstream_result *res, void *ud) {
  result *r = ud;
  r->done = true;
  r->status = res->status;
  snprintf(r->code, sizeof r->code, "%s", res->code ? res->code : "");
  snprintf(r->error, sizeof r->error, "%s", res->error ? res->error : "");
  if (r->next.method && r->then) /* at once, before the loop reads anything more */
    CHECK_EQ_INT(hersh_upstream_start(r->u, &r->next, &FNS, r->then, &r->then->req), HERSH_OK);
}

static const hersh_upstream_fns FNS = {.head = on_head, .data = on_data, .done = on_done};

static bool is_done(void *ud) { return ((result *)ud)->done; }

static hersh_upstream_call get(int port, const char *target) {
  return (hersh_upstream_call){.method = "GET", .host = "127.0.0.1", .port = port, .target = target, .timeout = 10};
}

/* Runs one request to its end; false when it could not start or did not end in time. */
static bool exchange(hersh_loop *loop, const hersh_upstream_call *call, result *r) {
  hersh_upstream *u = hersh_upstream_get(loop);
  if (!u || hersh_upstream_start(u, call, &FNS, r, &r->req) != HERSH_OK) return false;
  return hersh_loop_run_until(loop, is_done, r, WAIT_S) == 1;
}

static bool body_is(const result *r, const char *text) {
  return r->body.len == strlen(text) && (r->body.len == 0 || memcmp(r->body.p, text, r->body.len) == 0);
}

static void result_free(result *r) { hersh_buf_free(&r->body); }

#define OK_5 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

/* ---- tests ----------------------------------------------------------------------------------- */

TEST(keep_alive_reuse) {
  step steps[] = {{OK_5, 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  for (int i = 0; i < 3; i++) {
    result r = {0};
    hersh_upstream_call call = get(s.port, "/a?b=c");
    const char *headers[] = {"X-Test: yes", "X-Empty;", NULL};
    call.headers = headers;
    CHECK(exchange(loop, &call, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.heads, 1);
    CHECK(body_is(&r, "hello"));
    CHECK_EQ_STR(r.code, "");
    result_free(&r);
  }
  CHECK_EQ_INT(atomic_load(&s.requests), 3);
  CHECK_EQ_INT(atomic_load(&s.accepted), 1); /* one connection served all three */
  pthread_mutex_lock(&s.mu);
  CHECK(strncmp(s.last, "GET /a?b=c HTTP/1.1\r\n", 21) == 0);
  char host[64];
  snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", s.port);
  CHECK(strstr(s.last, host) != NULL);
  CHECK(strstr(s.last, "\r\nX-Test: yes\r\n") != NULL);
  CHECK(strstr(s.last, "\r\nX-Empty:\r\n") != NULL); /* the "Name;" form: sent empty */
  CHECK(strstr(s.last, "Content-Length") == NULL);     /* a GET without a body has none */
  pthread_mutex_unlock(&s.mu);
  hersh_loop_free(loop);
  server_stop(&s);
}

/* Two GETs of / to a server that answers each with reply and then does `then`: both
** must get 200 and body. How many connections the server accepted; -1 if it did not start. */
static int two_gets(const char *reply, after then, const char *body) {
  step steps[] = {{reply, 0, then}};
  server s;
  if (!server_start(&s, steps, 1)) return -1;
  hersh_loop *loop = hersh_loop_new();
  for (int i = 0; i < 2; i++) {
    result r = {0};
    hersh_upstream_call call = get(s.port, "/");
    CHECK(exchange(loop, &call, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK(body_is(&r, body));
    CHECK_EQ_STR(r.code, "");
    result_free(&r);
  }
  int accepted = atomic_load(&s.accepted);
  hersh_loop_free(loop);
  server_stop(&s);
  return accepted;
}

TEST(chunked_answer) {
  int accepted = two_gets("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n"
                          "0\r\nX-Trailer: 1\r\n\r\n",
                          KEEP, "hello world");
  CHECK_EQ_INT(accepted, 1); /* reused after a whole chunked answer */
}

TEST(close_delimited_answer) {
  int accepted = two_gets("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", CLOSE, "until the end");
  CHECK_EQ_INT(accepted, 2); /* such a connection is never reused */
}

/* The program closes a connection the pool holds (as at its idle timeout): the next GET,
** sent on it before the close is seen, goes again on a fresh one; a POST does not. */
TEST(server_closes_idle_connection) {
  step steps[] = {{OK_5, 0, CLOSE}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream *u = hersh_upstream_get(loop);
  REQUIRE(u);
  result second = {0};
  result first = {.u = u, .next = get(s.port, "/again"), .then = &second};
  hersh_upstream_call call = get(s.port, "/");
  CHECK(exchange(loop, &call, &first));
  CHECK_EQ_INT(first.status, 200);
  CHECK(hersh_loop_run_until(loop, is_done, &second, WAIT_S) == 1);
  CHECK_EQ_INT(second.status, 200);
  CHECK(body_is(&second, "hello"));
  CHECK_EQ_INT(atomic_load(&s.accepted), 2);
  CHECK_EQ_INT(atomic_load(&s.requests), 2); /* the server never saw the first try */
  result_free(&first);
  result_free(&second);

  result post = {0};
  result third = {.u = u, .next = get(s.port, "/"), .then = &post};
  third.next.method = "POST";
  CHECK(exchange(loop, &call, &third));
  CHECK(hersh_loop_run_until(loop, is_done, &post, WAIT_S) == 1);
  CHECK_EQ_INT(post.status, 0); /* not sent twice: it may have been taken */
  CHECK_EQ_STR(post.code, "ECLOSED");
  result_free(&third);
  result_free(&post);
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(head_too_large) {
  size_t n = HERSH_UPSTREAM_MAX_HEAD + 1024;
  char *reply = malloc(n + 64);
  REQUIRE(reply);
  int at = snprintf(reply, 64, "HTTP/1.1 200 OK\r\nX-Big: ");
  memset(reply + at, 'a', n);
  memcpy(reply + at + n, "\r\n\r\n", 4);
  step steps[] = {{reply, (size_t)at + n + 4, KEEP}};
  server s;
  if (!server_start(&s, steps, 1)) {
    free(reply);
    REQUIRE(false);
  }
  hersh_loop *loop = hersh_loop_new();
  result r = {0};
  hersh_upstream_call call = get(s.port, "/");
  CHECK(exchange(loop, &call, &r));
  CHECK_EQ_INT(r.status, 0);
  CHECK_EQ_STR(r.code, "ETOOLARGE");
  CHECK_EQ_INT(r.heads, 0);
  result_free(&r);
  hersh_loop_free(loop);
  server_stop(&s);
  free(reply);
}

TEST(never_answers_times_out) {
  step steps[] = {{NULL, 0, HANG}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  result r = {0};
  hersh_upstream_call call = get(s.port, "/");
  call.timeout = 0.3;
  CHECK(exchange(loop, &call, &r));
  CHECK_EQ_INT(r.status, 0);
  CHECK_EQ_STR(r.code, "ETIMEOUT");
  CHECK_EQ_STR(r.error, "timeout");
  result_free(&r);
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(dies_mid_body) {
  step steps[] = {{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part", 0, CLOSE},
                  {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n", 0, CLOSE}};
  server s;
  REQUIRE(server_start(&s, steps, 2));
  hersh_loop *loop = hersh_loop_new();
  const char *parts[] = {"only a part", "some"};
  for (int i = 0; i < 2; i++) {
    result r = {0};
    hersh_upstream_call call = get(s.port, "/");
    CHECK(exchange(loop, &call, &r)); /* it ends: no hang */
    CHECK_EQ_INT(r.heads, 1);
    CHECK(body_is(&r, parts[i]));
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.code, "ECLOSED"); /* an error: the proxy cuts the client's stream */
    result_free(&r);
  }
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(connection_refused) {
  hersh_loop *loop = hersh_loop_new();
  result r = {0};
  hersh_upstream_call call = get(net_dead_port(), "/");
  CHECK(exchange(loop, &call, &r));
  CHECK_EQ_STR(r.code, "ECONNREFUSED");
  result_free(&r);
  hersh_loop_free(loop);
}

/* Answers two readers could frame differently are refused, never passed on. */
TEST(ambiguous_answers_refused) {
  step steps[] = {{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 0, KEEP},
                  {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                   0, KEEP},
                  {"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n", 0, KEEP},
                  {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0, KEEP},
                  {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 5));
  hersh_loop *loop = hersh_loop_new();
  for (int i = 0; i < 5; i++) {
    result r = {0};
    hersh_upstream_call call = get(s.port, "/");
    CHECK(exchange(loop, &call, &r));
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.code, "EPROTO");
    result_free(&r);
  }
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(interim_answer_skipped) {
  step steps[] = {{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  result r = {0};
  hersh_upstream_call call = get(s.port, "/");
  CHECK(exchange(loop, &call, &r));
  CHECK_EQ_INT(r.status, 201);
  CHECK_EQ_INT(r.heads, 1);
  CHECK(body_is(&r, "ok"));
  result_free(&r);
  hersh_loop_free(loop);
  server_stop(&s);
}

/* A streamed body, of unknown length (chunked) and of a known one. */
TEST(streamed_body) {
  step steps[] = {{OK_5, 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream *u = hersh_upstream_get(loop);
  REQUIRE(u);
  long long lengths[] = {-1, 11};
  for (int i = 0; i < 2; i++) {
    result r = {0};
    hersh_upstream_call call = get(s.port, "/up");
    call.method = "POST";
    call.stream_body = true;
    call.stream_len = lengths[i];
    REQUIRE(hersh_upstream_start(u, &call, &FNS, &r, &r.req) == HERSH_OK);
    hersh_upstream_send(r.req, "hello", 5); /* before the connection is there */
    (void)hersh_loop_run_for(loop, 0.05); /* the head goes; the rest of the body comes later */
    if (!r.done) hersh_upstream_send(r.req, " world", 6);
    if (!r.done) hersh_upstream_send(r.req, NULL, 0);
    CHECK(hersh_loop_run_until(loop, is_done, &r, WAIT_S) == 1);
    CHECK_EQ_INT(r.status, 200);
    pthread_mutex_lock(&s.mu);
    if (lengths[i] < 0) {
      CHECK(strstr(s.last, "\r\nTransfer-Encoding: chunked\r\n") != NULL);
      CHECK(strstr(s.last, "\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") != NULL);
    } else {
      CHECK(strstr(s.last, "\r\nContent-Length: 11\r\n\r\nhello world") != NULL);
    }
    pthread_mutex_unlock(&s.mu);
    result_free(&r);
  }
  hersh_loop_free(loop);
  server_stop(&s);
}

/* A route's change (a new epoch) retires the pooled connections opened before it. */
TEST(epoch_retires_pooled_connections) {
  step steps[] = {{OK_5, 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream_call call = get(s.port, "/");
  result r1 = {0}, r2 = {0}, r3 = {0};
  call.fresh_after = hersh_upstream_epoch();
  CHECK(exchange(loop, &call, &r1));
  CHECK_EQ_INT(atomic_load(&s.accepted), 1);
  uint64_t before = call.fresh_after;
  call.fresh_after = hersh_upstream_epoch(); /* the program changed */
  CHECK(exchange(loop, &call, &r2));
  CHECK_EQ_INT(r2.status, 200);
  CHECK_EQ_INT(atomic_load(&s.accepted), 2);
  call.fresh_after = before; /* nothing changed since: the new one serves */
  CHECK(exchange(loop, &call, &r3));
  CHECK_EQ_INT(r3.status, 200);
  CHECK_EQ_INT(atomic_load(&s.accepted), 2);
  result_free(&r1);
  result_free(&r2);
  result_free(&r3);
  hersh_loop_free(loop);
  server_stop(&s);
}

/* Whether the server saw its client close within `bound` seconds. The server's thread
** says so, which does not wake the loop: the loop turns in short slices meanwhile. */
static bool client_closed_within(hersh_loop *loop, server *s, double bound) {
  for (double waited = 0; waited < bound && !atomic_load(&s->client_closed); waited += 0.01)
    hersh_loop_run_for(loop, 0.01);
  return atomic_load(&s->client_closed) > 0;
}

/* A program whose route changed gets its idle pooled connections closed at once: a
** stopping program waits for its open connections to drain. */
TEST(retire_closes_idle_connections) {
  step steps[] = {{OK_5, 0, KEEP}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream_call call = get(s.port, "/");
  result r = {0};
  CHECK(exchange(loop, &call, &r));
  CHECK_EQ_INT(r.status, 200);
  hersh_upstream_retire(hersh_upstream_get(loop), s.port + 1); /* another program's */
  CHECK(!client_closed_within(loop, &s, 0.2));
  hersh_upstream_retire(hersh_upstream_get(loop), s.port);
  CHECK(client_closed_within(loop, &s, WAIT_S));
  CHECK_EQ_INT(atomic_load(&s.accepted), 1);
  result_free(&r);
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(cancel_ends_from_the_loop) {
  step steps[] = {{NULL, 0, HANG}};
  server s;
  REQUIRE(server_start(&s, steps, 1));
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream *u = hersh_upstream_get(loop);
  REQUIRE(u);
  result r = {0};
  hersh_upstream_call call = get(s.port, "/");
  REQUIRE(hersh_upstream_start(u, &call, &FNS, &r, &r.req) == HERSH_OK);
  hersh_upstream_cancel(r.req);
  CHECK(!r.done); /* never from inside the call */
  CHECK(hersh_loop_run_until(loop, is_done, &r, WAIT_S) == 1);
  CHECK_EQ_STR(r.code, "ECANCELLED");
  result_free(&r);
  hersh_loop_free(loop);
  server_stop(&s);
}

TEST(bad_calls_refused) {
  hersh_loop *loop = hersh_loop_new();
  hersh_upstream *u = hersh_upstream_get(loop);
  REQUIRE(u);
  result r = {0};
  hersh_upstream_call call = get(80, "/");
  call.method = "GE T";
  CHECK_EQ_INT(hersh_upstream_start(u, &call, &FNS, &r, NULL), HERSH_E_INVAL);
  call = get(80, "/");
  call.host = "localhost";
  CHECK_EQ_INT(hersh_upstream_start(u, &call, &FNS, &r, NULL), HERSH_E_INVAL);
  call = get(80, "no-slash");
  CHECK_EQ_INT(hersh_upstream_start(u, &call, &FNS, &r, NULL), HERSH_E_INVAL);
  const char *split[] = {"X-A: 1\r\nX-B: 2", NULL};
  const char *junk[] = {"X-A;junk", NULL};
  call = get(80, "/");
  call.headers = junk;
  CHECK_EQ_INT(hersh_upstream_start(u, &call, &FNS, &r, NULL), HERSH_E_INVAL);
  call = get(80, "/");
  call.headers = split;
  CHECK_EQ_INT(hersh_upstream_start(u, &call, &FNS, &r, NULL), HERSH_E_INVAL);
  CHECK(!r.done);
  hersh_loop_free(loop);
}

/* ---- the parser alone ---------------------------------------------------------------------- */

static int parse(const char *text, bool head_request, hersh_upstream_head *h) {
  const char *why = NULL;
  return hersh_upstream_parse_head(text, strlen(text), head_request, h, &why);
}

TEST(head_parser) {
  hersh_upstream_head h;
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", false, &h), 1);
  CHECK_EQ_INT(h.status, 200);
  CHECK_EQ_INT(h.len, 38);
  CHECK_EQ_INT(h.body, HERSH_UPSTREAM_BODY_LENGTH);
  CHECK_EQ_INT(h.length, 3);
  CHECK(h.reusable);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", false, &h), 0);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r", false, &h), 0);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true, &h), 1); /* HEAD */
  CHECK_EQ_INT(h.body, HERSH_UPSTREAM_BODY_NONE);
  CHECK_EQ_INT(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", false, &h), 1);
  CHECK_EQ_INT(h.body, HERSH_UPSTREAM_BODY_NONE);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", false, &h), 1);
  CHECK(!h.reusable);
  CHECK_EQ_INT(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, &h), 1);
  CHECK(!h.reusable);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\r\n\r\n", false, &h), 1);
  CHECK_EQ_INT(h.body, HERSH_UPSTREAM_BODY_CLOSE);
  CHECK(!h.reusable);
  CHECK_EQ_INT(parse("HTTP/1.1 200 OK\nContent-Length: 0\n\n", false, &h), 1); /* bare LF lines */
  const char *bad[] = {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 600 No\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nX\rY: 1\r\n\r\n", "HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
                       "HTTP/1.1 101 Switching\r\nUpgrade: h2c\r\n\r\n",
                       "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", NULL};
  for (const char **b = bad; *b; b++) {
    if (parse(*b, false, &h) != -1) printf("  accepted: %s\n", *b);
    CHECK_EQ_INT(parse(*b, false, &h), -1);
  }
}

/* The decoded body, fed one byte at a time (every split point), or NULL when invalid. */
static char *dechunk(const char *in, size_t piece, int *end) {
  hersh_upstream_chunks c = {0};
  hersh_buf out = {0};
  hersh_buf_put(&out, "", 0);
  size_t n = strlen(in);
  *end = 0;
  for (size_t at = 0; at < n && *end == 0;) {
    size_t give = n - at < piece ? n - at : piece;
    while (give > 0 && *end == 0) {
      size_t used, len;
      const char *data, *why;
      int rc = hersh_upstream_chunks_next(&c, in + at, give, &used, &data, &len, &why);
      if (rc < 0) {
        hersh_buf_free(&out);
        *end = -1;
        return NULL;
      }
      hersh_buf_put(&out, data, len);
      at += used;
      give -= used;
      *end = rc;
    }
  }
  return hersh_buf_take(&out);
}

TEST(chunked_decoder) {
  const char *body = "5\r\nhello\r\nA;name=value\r\n, chunked!\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t piece = 1; piece <= strlen(body); piece++) {
    int end;
    char *text = dechunk(body, piece, &end);
    CHECK(text && strcmp(text, "hello, chunked!") == 0);
    CHECK_EQ_INT(end, 1);
    free(text);
  }
  const char *bad[] = {"g\r\n", "5\r\nhello!\r\n", "5\r\nhelloXY", "\r\n", "1234567890abcdef0\r\n", NULL};
  for (const char **b = bad; *b; b++) {
    int end;
    char *text = dechunk(*b, 1, &end);
    CHECK(text == NULL);
    CHECK_EQ_INT(end, -1);
  }
}

int main(void) {
  RUN(head_parser);
  RUN(chunked_decoder);
  RUN(keep_alive_reuse);
  RUN(chunked_answer);
  RUN(close_delimited_answer);
  RUN(server_closes_idle_connection);
  RUN(head_too_large);
  RUN(never_answers_times_out);
  RUN(dies_mid_body);
  RUN(connection_refused);
  RUN(ambiguous_answers_refused);
  RUN(interim_answer_skipped);
  RUN(streamed_body);
  RUN(epoch_retires_pooled_connections);
  RUN(retire_closes_idle_connections);
  RUN(cancel_ends_from_the_loop);
  RUN(bad_calls_refused);
  return check_summary();
}
