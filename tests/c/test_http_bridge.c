/*
** Deferred answers and streams of the HTTP server (src/http/server.c), against raw
** sockets on loopback: a handler defers, another thread answers; and a server on the loop
** (no thread of its own) run by the test's thread. Every wait is bounded;
** no test asserts how long something took.
*/
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "hersh.h"
#include "../../src/http/server.h"

#define WAIT_MS 20000 /* upper bound of any wait: reached only when something is broken */
#define MANY 200

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- the server: /now answers at once, everything else defers ---------------------------- */

static struct {
  pthread_mutex_t mu;
  hersh_http_pending *pending[MANY + 8];
  char paths[MANY + 8][64];
  int n;
  int calls;
} got = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void handler(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  (void)ud;
  pthread_mutex_lock(&got.mu);
  got.calls++;
  pthread_mutex_unlock(&got.mu);
  if (strcmp(req->path, "/now") == 0) {
    res->body = strdup("now\n");
    res->body_len = 4;
    res->content_type = "text/plain";
    return;
  }
  hersh_http_pending *p = hersh_http_defer(req);
  if (!p) return hersh_http_error(res, 503, "cannot defer");
  pthread_mutex_lock(&got.mu);
  got.pending[got.n] = p;
  snprintf(got.paths[got.n], sizeof got.paths[0], "%s", req->path);
  got.n++;
  pthread_mutex_unlock(&got.mu);
}

static void reset_got(void) {
  pthread_mutex_lock(&got.mu);
  got.n = 0;
  got.calls = 0;
  pthread_mutex_unlock(&got.mu);
}

/* Waits (bounded) for n deferred requests; returns how many there are. */
static int wait_pending(int n) {
  int have = 0;
  for (int waited = 0; waited < WAIT_MS; waited += 5) {
    pthread_mutex_lock(&got.mu);
    have = got.n;
    pthread_mutex_unlock(&got.mu);
    if (have >= n) break;
    sleep_ms(5);
  }
  return have;
}

static hersh_http_server *start(size_t max_body) {
  hersh_http_options o = {.port = 0, .listen_fd = -1, .max_body = max_body};
  hersh_http_server *s = NULL;
  if (hersh_http_server_start(&o, handler, NULL, &s) != HERSH_OK) printf("server: %s\n", hersh_errmsg());
  reset_got();
  return s;
}

/* ---- a raw client ---------------------------------------------------------------------- */

static bool send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    p += k;
    n -= (size_t)k;
  }
  return true;
}

static bool send_get(int fd, const char *path) {
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
  return send_all(fd, req, (size_t)n);
}

/* A connection to s with a GET of path sent and its request deferred; -1 on failure. */
static int pending_get(hersh_http_server *s, const char *path) {
  int fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  if (fd >= 0 && (!send_get(fd, path) || wait_pending(1) != 1)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads until the peer closes (or the bound passes); a malloc'd, NUL-terminated text. */
static char *read_all(int fd, size_t *len) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n + 1024 > cap) buf = realloc(buf, cap *= 2);
    ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
    if (k <= 0) break;
    n += (size_t)k;
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

/* Reads until `want` appears in what came so far (kept in buf); false at EOF or the bound. */
static bool read_until(int fd, char *buf, size_t cap, size_t *n, const char *want) {
  while (!strstr(buf, want)) {
    if (*n + 1 >= cap) return false;
    ssize_t k = recv(fd, buf + *n, cap - *n - 1, 0);
    if (k <= 0) return false;
    *n += (size_t)k;
    buf[*n] = '\0';
  }
  return true;
}

static int status_of(const char *resp) {
  int status = 0;
  return sscanf(resp, "HTTP/1.%*d %d", &status) == 1 ? status : 0;
}

static const char *body_of(const char *resp) {
  const char *p = strstr(resp, "\r\n\r\n");
  return p ? p + 4 : "";
}

/* Decodes a chunked body in place; false if it is malformed or has no last chunk. */
static bool dechunk(const char *in, char *out, size_t cap) {
  size_t n = 0;
  for (;;) {
    char *end;
    unsigned long size = strtoul(in, &end, 16);
    if (end == in || strncmp(end, "\r\n", 2) != 0) return false;
    in = end + 2;
    if (size == 0) break;
    if (n + size >= cap || strlen(in) < size + 2) return false;
    memcpy(out + n, in, size);
    n += size;
    in += size + 2;
  }
  out[n] = '\0';
  return true;
}

static hersh_http_response text_response(int status, const char *text) {
  hersh_http_response res = {.status = status, .body = strdup(text), .body_len = strlen(text)};
  res.content_type = "text/plain";
  return res;
}

/* ---- deferred completion ------------------------------------------------------------------ */

static void *complete_later(void *arg) {
  hersh_http_pending *p = arg;
  sleep_ms(50);
  hersh_http_response res = text_response(201, "answered later\n");
  res.headers = strdup("X-Later: yes\r\n");
  hersh_http_complete(p, &res);
  return NULL;
}

TEST(deferred_completion_from_another_thread) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  int fd = pending_get(s, "/later");
  REQUIRE(fd >= 0);
  pthread_t t;
  pthread_create(&t, NULL, complete_later, got.pending[0]);
  char *resp = read_all(fd, NULL);
  pthread_join(t, NULL);
  CHECK_EQ_INT(status_of(resp), 201);
  CHECK_EQ_STR(body_of(resp), "answered later\n");
  CHECK(strstr(resp, "Content-Type: text/plain\r\n") != NULL);
  CHECK(strstr(resp, "X-Later: yes\r\n") != NULL);
  free(resp);
  close(fd);
  /* and the direct answers still work on the same server */
  fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  REQUIRE(fd >= 0);
  CHECK(send_get(fd, "/now"));
  resp = read_all(fd, NULL);
  CHECK_EQ_INT(status_of(resp), 200);
  CHECK_EQ_STR(body_of(resp), "now\n");
  free(resp);
  close(fd);
  hersh_http_server_stop(s);
}

TEST(deferred_answers_on_a_keep_alive_connection) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  int fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  REQUIRE(fd >= 0);
  char buf[4096] = "";
  size_t n = 0;
  for (int i = 0; i < 3; i++) {
    char req[128];
    int k = snprintf(req, sizeof req, "GET /ka%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    CHECK(send_all(fd, req, (size_t)k));
    REQUIRE(wait_pending(i + 1) == i + 1);
    char text[32];
    snprintf(text, sizeof text, "answer-%d", i);
    hersh_http_response res = text_response(200, text);
    CHECK_EQ_INT(hersh_http_complete(got.pending[i], &res), HERSH_OK);
    CHECK(read_until(fd, buf, sizeof buf, &n, text));
  }
  close(fd);
  hersh_http_server_stop(s);
}

/* ---- streams ------------------------------------------------------------------------------ */

static atomic_int client_saw; /* how many chunks the client has read */
static atomic_int closes;     /* on_close calls */

static void count_close(hersh_http_stream *st, void *ud) {
  (void)st, (void)ud;
  atomic_fetch_add(&closes, 1);
}

/* Waits (bounded) until a stream's close was told; how many were. */
static int wait_closes(void) {
  for (int waited = 0; atomic_load(&closes) == 0 && waited < WAIT_MS; waited += 5) sleep_ms(5);
  return atomic_load(&closes);
}

typedef struct writer {
  hersh_http_pending *p;
  int chunks;
  int rc_after_close;
  bool waited_all;
} writer;

/* Writes chunk i only once the client has read chunk i-1: buffered until the end, the
** stream would never get past the first. */
static void *write_chunks(void *arg) {
  writer *w = arg;
  hersh_http_stream *st = hersh_http_stream_start(w->p, 200, "text/event-stream", "X-Stream: 1\r\n");
  hersh_http_stream_on_close(st, count_close, NULL);
  w->waited_all = true;
  for (int i = 0; i < w->chunks; i++) {
    char text[32];
    int n = snprintf(text, sizeof text, "chunk-%d;", i);
    hersh_http_stream_write(st, text, (size_t)n);
    int waited = 0;
    while (atomic_load(&client_saw) <= i && waited < WAIT_MS) {
      sleep_ms(2);
      waited += 2;
    }
    if (waited >= WAIT_MS) w->waited_all = false;
  }
  hersh_http_stream_end(st);
  return NULL;
}

TEST(streaming_several_chunks) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  atomic_store(&client_saw, 0);
  atomic_store(&closes, 0);
  int fd = pending_get(s, "/stream");
  REQUIRE(fd >= 0);
  writer w = {.p = got.pending[0], .chunks = 5};
  pthread_t t;
  pthread_create(&t, NULL, write_chunks, &w);
  static char buf[65536];
  buf[0] = '\0';
  size_t n = 0;
  for (int i = 0; i < 5; i++) {
    char want[32];
    snprintf(want, sizeof want, "chunk-%d;", i);
    bool ok = read_until(fd, buf, sizeof buf, &n, want);
    CHECK(ok);
    atomic_store(&client_saw, i + 1);
  }
  CHECK(read_until(fd, buf, sizeof buf, &n, "\r\n0\r\n\r\n"));
  pthread_join(t, NULL);
  CHECK(w.waited_all);
  CHECK_EQ_INT(status_of(buf), 200);
  CHECK(strstr(buf, "Transfer-Encoding: chunked\r\n") != NULL);
  CHECK(strstr(buf, "Content-Type: text/event-stream\r\n") != NULL);
  CHECK(strstr(buf, "X-Stream: 1\r\n") != NULL);
  char body[1024];
  CHECK(dechunk(body_of(buf), body, sizeof body));
  CHECK_EQ_STR(body, "chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;");
  close(fd);
  CHECK_EQ_INT(wait_closes(), 1); /* the connection ended, delivered */
  hersh_http_server_stop(s);
}

/* A quiet stream (nothing to write: its connection suspended) whose client leaves. */
TEST(client_disconnect_is_detected) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  atomic_store(&closes, 0);
  int fd = pending_get(s, "/follow");
  REQUIRE(fd >= 0);
  hersh_http_stream *st = hersh_http_stream_start(got.pending[0], 200, NULL, NULL);
  REQUIRE(st);
  hersh_http_stream_retain(st); /* kept past end, to look at it */
  hersh_http_stream_on_close(st, count_close, NULL);
  CHECK_EQ_INT(hersh_http_stream_write(st, "first\n", 6), HERSH_OK);
  char buf[4096] = "";
  size_t n = 0;
  CHECK(read_until(fd, buf, sizeof buf, &n, "first\n"));
  CHECK(strstr(buf, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
  CHECK(!hersh_http_stream_closed(st));
  close(fd);
  bool closed = false;
  for (int waited = 0; !closed && waited < WAIT_MS; waited += 10) {
    closed = hersh_http_stream_closed(st);
    if (!closed) sleep_ms(10);
  }
  CHECK(closed);
  CHECK_EQ_INT(wait_closes(), 1);
  CHECK_EQ_INT(hersh_http_stream_write(st, "more\n", 5), HERSH_E_STATE);
  hersh_http_stream_end(st);
  int late = 0;
  hersh_http_stream_on_close(st, count_close, &late); /* already ended: runs at once */
  CHECK_EQ_INT(atomic_load(&closes), 2);
  hersh_http_stream_release(st);
  hersh_http_server_stop(s);
}

/* A stream that keeps writing to a client that left: the writes start failing. */
TEST(client_disconnect_fails_writes) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  atomic_store(&closes, 0);
  int fd = pending_get(s, "/tail");
  REQUIRE(fd >= 0);
  hersh_http_stream *st = hersh_http_stream_start(got.pending[0], 200, NULL, NULL);
  REQUIRE(st);
  hersh_http_stream_on_close(st, count_close, NULL);
  CHECK_EQ_INT(hersh_http_stream_write(st, "line\n", 5), HERSH_OK);
  char buf[4096] = "";
  size_t n = 0;
  CHECK(read_until(fd, buf, sizeof buf, &n, "line\n"));
  close(fd);
  int rc = HERSH_OK;
  for (int waited = 0; rc == HERSH_OK && waited < WAIT_MS; waited += 5) {
    rc = hersh_http_stream_write(st, "line\n", 5);
    sleep_ms(5);
  }
  CHECK_EQ_INT(rc, HERSH_E_STATE);
  CHECK_EQ_INT(atomic_load(&closes), 1);
  hersh_http_stream_end(st);
  hersh_http_server_stop(s);
}

TEST(a_slow_client_fills_the_buffer) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  int fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  REQUIRE(fd >= 0);
  int small = 4096; /* a small receive window, so the kernel holds little of it */
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  CHECK(send_get(fd, "/fast"));
  REQUIRE(wait_pending(1) == 1);
  hersh_http_stream *st = hersh_http_stream_start(got.pending[0], 200, NULL, NULL);
  REQUIRE(st);
  static char block[64 * 1024];
  memset(block, 'x', sizeof block);
  int rc = HERSH_OK;
  size_t written = 0;
  while (rc == HERSH_OK && written < ((size_t)256 << 20)) {
    rc = hersh_http_stream_write(st, block, sizeof block);
    if (rc == HERSH_OK) written += sizeof block;
  }
  CHECK_EQ_INT(rc, HERSH_E_LIMIT);
  CHECK(strstr(hersh_errmsg(), "slower") != NULL);
  CHECK(written >= HERSH_HTTP_STREAM_MAX_BUFFER);
  close(fd);
  hersh_http_stream_end(st);
  hersh_http_server_stop(s);
}

/* A client that reads nothing, its stream cut: the connection is reset at once, not left
** open behind the bytes that wait for it, and the stream's close is told. */
TEST(a_cut_stream_ends_a_client_that_reads_nothing) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  atomic_store(&closes, 0);
  int fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  REQUIRE(fd >= 0);
  int small = 4096;
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
  CHECK(send_get(fd, "/stalled"));
  REQUIRE(wait_pending(1) == 1);
  hersh_http_stream *st = hersh_http_stream_start(got.pending[0], 200, NULL, NULL);
  REQUIRE(st);
  hersh_http_stream_retain(st); /* kept past end, to look at it */
  hersh_http_stream_on_close(st, count_close, NULL);
  static char block[64 * 1024];
  memset(block, 'x', sizeof block);
  /* until bytes wait in the stream's own buffer: the kernel's are full */
  for (int i = 0; i < 64 && hersh_http_stream_waiting(st) == 0; i++) {
    CHECK_EQ_INT(hersh_http_stream_write(st, block, sizeof block), HERSH_OK);
    sleep_ms(5);
  }
  CHECK(hersh_http_stream_waiting(st) > 0);
  CHECK(!hersh_http_stream_closed(st));
  hersh_http_stream_cut(st);
  CHECK(hersh_http_stream_closed(st));
  CHECK_EQ_INT(hersh_http_stream_write(st, "more", 4), HERSH_E_STATE);
  CHECK_EQ_INT(wait_closes(), 1);
  size_t n = 0;
  free(read_all(fd, &n)); /* ends (reset or closed) well before its receive timeout */
  CHECK(n < (size_t)64 * sizeof block);
  close(fd);
  hersh_http_stream_end(st);
  hersh_http_stream_release(st);
  hersh_http_server_stop(s);
}

/* ---- many at once ---------------------------------------------------------------------------- */

static void *complete_all(void *arg) {
  (void)arg;
  for (int i = MANY - 1; i >= 0; i--) { /* in another order than they came */
    char text[64];
    snprintf(text, sizeof text, "%s", got.paths[i] + 1);
    hersh_http_response res = text_response(200, text);
    hersh_http_complete(got.pending[i], &res);
  }
  return NULL;
}

TEST(many_concurrent_deferred_requests) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  int fds[MANY];
  int opened = 0;
  for (int i = 0; i < MANY; i++) {
    fds[i] = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
    if (fds[i] < 0) break;
    opened++;
    char path[32];
    snprintf(path, sizeof path, "/r%d", i);
    CHECK(send_get(fds[i], path));
  }
  CHECK_EQ_INT(opened, MANY);
  int have = wait_pending(opened);
  CHECK_EQ_INT(have, opened);
  if (have == MANY) {
    pthread_t t;
    pthread_create(&t, NULL, complete_all, NULL);
    int ok = 0;
    for (int i = 0; i < opened; i++) {
      char *resp = read_all(fds[i], NULL);
      char want[32];
      snprintf(want, sizeof want, "r%d", i);
      if (status_of(resp) == 200 && strcmp(body_of(resp), want) == 0) ok++;
      free(resp);
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(ok, MANY);
  }
  for (int i = 0; i < opened; i++) close(fds[i]);
  hersh_http_server_stop(s);
}

/* ---- limits and the end ------------------------------------------------------------------------ */

TEST(max_body_still_answers_413) {
  hersh_http_server *s = start(1024);
  REQUIRE(s);
  int fd = net_connect(hersh_http_server_port(s), WAIT_MS / 1000);
  REQUIRE(fd >= 0);
  static char req[8192];
  int n = snprintf(req, sizeof req, "POST /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 4096\r\n\r\n");
  memset(req + n, 'b', 4096);
  CHECK(send_all(fd, req, (size_t)n + 4096));
  char *resp = read_all(fd, NULL);
  CHECK_EQ_INT(status_of(resp), 413);
  CHECK(strstr(body_of(resp), "\"error\"") != NULL);
  free(resp);
  close(fd);
  pthread_mutex_lock(&got.mu);
  CHECK_EQ_INT(got.calls, 0); /* the handler never saw it */
  pthread_mutex_unlock(&got.mu);
  hersh_http_server_stop(s);
}

/* The status of GET /now with one header of `n` bytes (0: no answer). */
static int status_with_header(int port, size_t n) {
  int fd = net_connect(port, WAIT_MS / 1000);
  if (fd < 0) return 0;
  size_t cap = n + 256;
  char *req = malloc(cap);
  if (!req) {
    close(fd);
    return 0;
  }
  int head = snprintf(req, cap, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\nCookie: ");
  memset(req + head, 'c', n);
  memcpy(req + head + n, "\r\n\r\n", 4);
  bool sent = send_all(fd, req, (size_t)head + n + 4);
  free(req);
  char *resp = sent ? read_all(fd, NULL) : NULL;
  int status = resp ? status_of(resp) : 0;
  free(resp);
  close(fd);
  return status;
}

/* The per-connection memory (what MHD clears for each request) still takes the large
** headers clients send (a 12 KiB cookie), and a header block over it is refused. */
TEST(large_headers_fit_the_connection_memory) {
  hersh_http_server *s = start(1024);
  REQUIRE(s);
  int port = hersh_http_server_port(s);
  CHECK_EQ_INT(status_with_header(port, 12 * 1024), 200);
  CHECK_EQ_INT(status_with_header(port, 64 * 1024), 431);
  hersh_http_server_stop(s);
}

/* Stop with a request still waiting and a stream open: the waiting one gets its 503, the
** stream is cut (its close callback runs), and both stay usable for their owners. */
TEST(stop_answers_what_waits) {
  hersh_http_server *s = start(1 << 20);
  REQUIRE(s);
  atomic_store(&closes, 0);
  int port = hersh_http_server_port(s);
  int waiting = net_connect(port, WAIT_MS / 1000), streaming = net_connect(port, WAIT_MS / 1000);
  REQUIRE(waiting >= 0 && streaming >= 0);
  CHECK(send_get(waiting, "/wait"));
  REQUIRE(wait_pending(1) == 1);
  CHECK(send_get(streaming, "/stream"));
  REQUIRE(wait_pending(2) == 2);
  hersh_http_stream *st = hersh_http_stream_start(got.pending[1], 200, NULL, NULL);
  REQUIRE(st);
  hersh_http_stream_on_close(st, count_close, NULL);
  hersh_http_server_stop(s);
  CHECK_EQ_INT(atomic_load(&closes), 1);
  CHECK(hersh_http_stream_closed(st));
  CHECK_EQ_INT(hersh_http_stream_write(st, "x", 1), HERSH_E_STATE);
  hersh_http_stream_end(st);
  hersh_http_response res = text_response(200, "too late");
  CHECK_EQ_INT(hersh_http_complete(got.pending[0], &res), HERSH_E_STATE);
  char *resp = read_all(waiting, NULL);
  CHECK_EQ_INT(status_of(resp), 503);
  CHECK(strstr(body_of(resp), "stopping") != NULL);
  free(resp);
  close(waiting);
  close(streaming);
}

/* ---- on the loop: no thread; the test's thread runs the server --------------------------- */

#define UPLOAD 100000

static struct {
  pthread_t driver;   /* the thread that runs the server */
  atomic_int foreign; /* callbacks that ran on another thread */
  atomic_int calls;   /* handler and on_headers calls */
  bool wake;          /* a connection resumed: run again at once */
  hersh_http_pending *upload; /* its body is being taken */
  bool paused;        /* the taker left some: resume after the run */
  char body[UPLOAD];
  size_t got, offers;
} lp;

static void note_thread(void) {
  atomic_fetch_add(&lp.calls, 1);
  if (!pthread_equal(pthread_self(), lp.driver)) atomic_fetch_add(&lp.foreign, 1);
}

static void loop_handler(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  (void)ud;
  note_thread();
  *res = text_response(200, req->path);
}

/* Takes at most 1000 bytes of each piece and nothing from every other offer, so the
** body comes in many suspended-and-resumed steps; answers with the count at the end. */
static size_t take_body(void *ud, const char *data, size_t len) {
  (void)ud;
  note_thread();
  if (len == 0) {
    char text[32];
    snprintf(text, sizeof text, "%zu", lp.got);
    hersh_http_response res = text_response(200, text);
    hersh_http_complete(lp.upload, &res);
    return 0;
  }
  size_t take = lp.offers++ % 2 ? 0 : len < 1000 ? len : 1000;
  if (lp.got + take > UPLOAD) take = UPLOAD - lp.got;
  memcpy(lp.body + lp.got, data, take);
  lp.got += take;
  lp.paused = take < len;
  return take;
}

static void loop_on_headers(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  (void)res, (void)ud;
  note_thread();
  if (strcmp(req->path, "/upload") != 0) return; /* read whole, then loop_handler */
  lp.upload = hersh_http_defer(req);
  if (lp.upload) hersh_http_body_take(lp.upload, take_body, NULL);
}

static void loop_wake(void *ud) {
  (void)ud;
  lp.wake = true;
}

static atomic_int client_done;
static char upload_reply[4096], now_reply[4096];

/* The client, on its own thread: an upload with a body, then a plain request. */
static void *loop_client(void *arg) {
  int port = (int)(intptr_t)arg;
  static char req[UPLOAD + 256];
  int n = snprintf(req, sizeof req, "POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
                   UPLOAD);
  for (int i = 0; i < UPLOAD; i++) req[n + i] = (char)('a' + i % 26);
  int fd = net_connect(port, WAIT_MS / 1000);
  if (fd >= 0 && send_all(fd, req, (size_t)n + UPLOAD)) {
    char *resp = read_all(fd, NULL);
    snprintf(upload_reply, sizeof upload_reply, "%s", resp);
    free(resp);
  }
  if (fd >= 0) close(fd);
  fd = net_connect(port, WAIT_MS / 1000);
  if (fd >= 0 && send_get(fd, "/now")) {
    char *resp = read_all(fd, NULL);
    snprintf(now_reply, sizeof now_reply, "%s", resp);
    free(resp);
  }
  if (fd >= 0) close(fd);
  atomic_store(&client_done, 1);
  return NULL;
}

TEST(on_the_loop_every_callback_runs_on_the_driving_thread) {
  lp.driver = pthread_self();
  hersh_http_options o = {.port = 0, .listen_fd = -1, .max_body = 1 << 20, .on_loop = true,
                          .on_headers = loop_on_headers, .wake = loop_wake};
  hersh_http_server *s = NULL;
  REQUIRE(hersh_http_server_start(&o, loop_handler, NULL, &s) == HERSH_OK);
  int fd = hersh_http_server_fd(s);
  REQUIRE(fd >= 0);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, loop_client, (void *)(intptr_t)hersh_http_server_port(s)) == 0);
  int ms = 0;
  for (int turns = 0; !atomic_load(&client_done) && turns < WAIT_MS; turns++) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    (void)poll(&pfd, 1, lp.wake ? 0 : ms < 1 ? 1 : ms); /* bounded: 1 ms per turn at least */
    lp.wake = false;
    ms = hersh_http_server_run(s);
    if (lp.paused) {
      lp.paused = false;
      hersh_http_body_resume(lp.upload);
    }
  }
  CHECK(atomic_load(&client_done));
  pthread_join(t, NULL);
  hersh_http_server_stop(s);
  CHECK_EQ_INT(status_of(upload_reply), 200);
  CHECK_EQ_STR(body_of(upload_reply), "100000");
  CHECK(lp.got == UPLOAD);
  bool same = true;
  for (size_t i = 0; i < lp.got; i++) same = same && lp.body[i] == (char)('a' + i % 26);
  CHECK(same);
  CHECK(lp.offers > UPLOAD / 1000); /* it was paused and resumed, many times */
  CHECK_EQ_INT(status_of(now_reply), 200);
  CHECK_EQ_STR(body_of(now_reply), "/now");
  CHECK(atomic_load(&lp.calls) >= 4);
  CHECK_EQ_INT(atomic_load(&lp.foreign), 0);
}

/* A server on an inherited unix socket (a WatcherAPI behind a socket proxy): its clients'
** addresses are the family alone, which the server's connection tracking must not read
** past (ASan found it reading 16 bytes of a 2-byte address). */
TEST(a_unix_socket_client_is_served) {
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "/tmp/hersh-test-unix.%d", (int)getpid());
  unlink(a.sun_path);
  REQUIRE(bind(listener, (struct sockaddr *)&a, sizeof a) == 0 && listen(listener, 8) == 0);
  hersh_http_options o = {.listen_fd = listener, .max_body = 1 << 20};
  hersh_http_server *s = NULL;
  REQUIRE(hersh_http_server_start(&o, handler, NULL, &s) == HERSH_OK);
  reset_got();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0); /* unbound: its address is its family */
  REQUIRE(fd >= 0);
  REQUIRE(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(send_get(fd, "/now"));
  char *resp = read_all(fd, NULL);
  CHECK_EQ_INT(status_of(resp), 200);
  CHECK_EQ_STR(body_of(resp), "now\n");
  free(resp);
  close(fd);
  hersh_http_server_stop(s);
  unlink(a.sun_path);
}

int main(void) {
  RUN(deferred_completion_from_another_thread);
  RUN(deferred_answers_on_a_keep_alive_connection);
  RUN(streaming_several_chunks);
  RUN(client_disconnect_is_detected);
  RUN(client_disconnect_fails_writes);
  RUN(a_slow_client_fills_the_buffer);
  RUN(a_cut_stream_ends_a_client_that_reads_nothing);
  RUN(many_concurrent_deferred_requests);
  RUN(max_body_still_answers_413);
  RUN(large_headers_fit_the_connection_memory);
  RUN(stop_answers_what_waits);
  RUN(on_the_loop_every_callback_runs_on_the_driving_thread);
  RUN(a_unix_socket_client_is_served);
  return check_summary();
}
