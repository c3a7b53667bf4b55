/* http_check.c -- one raw HTTP exchange over loopback and the checks on its answer. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "http_check.h"

/* How long an incomplete request waits for an early answer (a 400 before the end of
** the head, a 413): the server may rightly wait for the rest, so no verdict then. */
#define EARLY_ANSWER_MS 30

typedef struct bytes {
  char *p;
  size_t len, cap;
} bytes;

static void bytes_put(bytes *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) fuzz_fail("out of memory", NULL, 0);
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int connect_loopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fuzz_fail("socket() failed", strerror(errno), 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS)
    fuzz_fail("cannot connect to the server", strerror(errno), 0);
  return fd;
}

/* Where the line starting at `at` ends (its CRLF), or NULL. */
static const char *line_end(const char *at, const char *end) {
  for (const char *p = at; p + 1 < end; p++)
    if (p[0] == '\r' && p[1] == '\n') return p;
  return NULL;
}

static bool header_is(const char *line, const char *colon, const char *name) {
  size_t n = strlen(name);
  return (size_t)(colon - line) == n && strncasecmp(line, name, n) == 0;
}

/* ---- the request: is there a whole first one? ------------------------------------------ */

/* "METHOD /target HTTP/1.x": a request line libmicrohttpd hands to the server. On a
** malformed one it closes without an answer, or, when the line starts with a NUL
** byte, waits for the idle timeout (docs/fuzzing.md): no verdict on those. */
static bool request_line_ok(const char *s, const char *eol) {
  const char *p = s;
  while (p < eol && isalpha((unsigned char)*p)) p++;
  if (p == s || p >= eol || *p++ != ' ') return false;
  const char *target = p;
  while (p < eol && *p > ' ' && *p < 0x7f) p++;
  if (p == target) return false;
  return eol - p == 9 && (memcmp(p, " HTTP/1.1", 9) == 0 || memcmp(p, " HTTP/1.0", 9) == 0);
}

/* Whether the bytes hold a whole first request, one the server must answer: a good
** request line, a head up to its blank line (CRLF line ends), then as many bytes as
** one plain Content-Length says. Chunked or otherwise unclear bodies count as
** incomplete (no verdict on silence). */
static bool first_request_complete(const char *s, size_t size) {
  const char *end = s + size, *line, *eol = line_end(s, end);
  long long length = 0;
  bool have_length = false;
  if (!eol || !request_line_ok(s, eol)) return false;
  for (line = eol + 2;; line = eol + 2) {
    eol = line_end(line, end);
    if (!eol) return false;
    if (eol == line) break;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon) continue;
    if (header_is(line, colon, "Transfer-Encoding")) return false;
    if (header_is(line, colon, "Content-Length")) {
      const char *v = colon + 1;
      while (v < eol && *v == ' ') v++;
      if (have_length || v == eol || eol - v > 12) return false;
      for (const char *q = v; q < eol; q++)
        if (!isdigit((unsigned char)*q)) return false;
      length = strtoll(v, NULL, 10);
      have_length = true;
    }
  }
  return end - (eol + 2) == length; /* what follows a request may end the connection */
}

/* ---- the answer: complete yet, and well-formed? ---------------------------------------- */

typedef enum { NEED_MORE, COMPLETE } progress;

/* Parses a status line and headers at *at; moves *at past the blank line. */
static progress parse_head(const char **at, const char *end, int *status, long long *length, bool *chunked,
                           const bytes *got) {
  const char *eol = line_end(*at, end);
  if (!eol) return NEED_MORE;
  if (eol - *at < 12 || (memcmp(*at, "HTTP/1.1 ", 9) != 0 && memcmp(*at, "HTTP/1.0 ", 9) != 0) ||
      sscanf(*at + 9, "%3d", status) != 1 || *status < 100 || *status > 599 || (*at)[12] != ' ')
    fuzz_fail("a malformed status line", *at, (size_t)(eol - *at));
  *length = -1;
  *chunked = false;
  for (const char *p = eol + 2;; p = eol + 2) {
    eol = line_end(p, end);
    if (!eol) return NEED_MORE;
    if (eol == p) {
      *at = eol + 2;
      return COMPLETE;
    }
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (!colon || colon == p) fuzz_fail("a header line without a name and ':'", got->p, got->len);
    const char *v = colon + 1;
    while (v < eol && *v == ' ') v++;
    if (header_is(p, colon, "Content-Length")) {
      char *num_end;
      *length = strtoll(v, &num_end, 10);
      if (num_end != eol || *length < 0) fuzz_fail("a bad Content-Length", p, (size_t)(eol - p));
    } else if (header_is(p, colon, "Transfer-Encoding")) {
      *chunked = (size_t)(eol - v) == 7 && strncasecmp(v, "chunked", 7) == 0;
    }
  }
}

/* Skips a chunked body at *at, adding its length without the framing to *total. */
static progress skip_chunks(const char **at, const char *end, size_t *total) {
  for (const char *p = *at;;) {
    const char *eol = line_end(p, end);
    if (!eol) return NEED_MORE;
    char *num_end;
    unsigned long long n = strtoull(p, &num_end, 16);
    if (num_end == p) fuzz_fail("a malformed chunk size", p, (size_t)(eol - p));
    p = eol + 2;
    if (n == 0) {
      while ((eol = line_end(p, end)) != p) { /* trailers, then the blank line */
        if (!eol) return NEED_MORE;
        p = eol + 2;
      }
      *at = p + 2;
      return COMPLETE;
    }
    if ((unsigned long long)(end - p) < n + 2) return NEED_MORE;
    if (memcmp(p + n, "\r\n", 2) != 0) fuzz_fail("a chunk longer than its size", p, (size_t)n);
    p += n + 2;
    *total += n;
  }
}

/*
** Judges the first answer in `got` (later ones belong to pipelined requests, which may
** be HEAD: no body, and a Content-Length that does not frame one). `closed`: nothing
** more will come. Aborts on a malformed answer, an error answer without a body, and a
** 500 (Internal Server Error).
*/
static progress judge(const bytes *got, bool head_request, bool closed) {
  const char *at = got->p, *end = got->p + got->len;
  for (;;) {
    int status;
    long long length;
    bool chunked;
    if (parse_head(&at, end, &status, &length, &chunked, got) == NEED_MORE) {
      if (closed) fuzz_fail("an answer cut before the end of its head", got->p, got->len);
      return NEED_MORE;
    }
    if (status < 200) continue; /* 100 Continue: the real answer follows */
    /* A 500 means a handler raised or failed in a way it did not foresee. */
    if (status == 500) fuzz_fail("an internal error (500): bad input must get a 4xx", got->p, got->len);
    if (head_request || status == 204 || status == 304) return COMPLETE;
    size_t body = 0;
    if (chunked) {
      if (skip_chunks(&at, end, &body) == NEED_MORE) {
        if (closed) fuzz_fail("a chunked body cut before its last chunk", got->p, got->len);
        return NEED_MORE;
      }
    } else if (length >= 0) {
      if ((unsigned long long)(end - at) < (unsigned long long)length) {
        if (closed) fuzz_fail("a body shorter than its Content-Length", got->p, got->len);
        return NEED_MORE;
      }
      body = (size_t)length;
    } else {
      if (!closed) return NEED_MORE; /* the body runs to the close */
      body = (size_t)(end - at);
    }
    if (status >= 400 && body == 0) fuzz_fail("an error answer with an empty body", got->p, got->len);
    return COMPLETE;
  }
}

/* ---- the exchange ------------------------------------------------------------------------ */

void fuzz_http_exchange(int port, const uint8_t *data, size_t size, fuzz_http_pump pump) {
  int fd = connect_loopback(port);
  bool complete = first_request_complete((const char *)data, size);
  bool head_request = size >= 5 && memcmp(data, "HEAD ", 5) == 0;
  bytes got = {0};
  size_t sent = 0;
  bool wr_closed = false, closed = false, cut = false;
  double start = now_ms(), last = start;
  for (;;) {
    if (got.len && judge(&got, head_request, false) == COMPLETE) break;
    double t = now_ms();
    if (t - start > FUZZ_HTTP_WAIT_MS) {
      fprintf(stderr, "fuzz: sent %zu of %zu bytes, received %zu\n", sent, size, got.len);
      if (got.len) fuzz_fail("hang: an answer begun and not finished in time", got.p, got.len);
      fuzz_fail("silence: a complete request got no answer in time", (const char *)data, size);
    }
    /* An incomplete request with no answer begun: the server may wait for the rest. */
    if (!complete && !got.len && sent == size && t - last > EARLY_ANSWER_MS) break;
    if (pump) pump(1);
    struct pollfd pfd = {.fd = fd, .events = POLLIN | (wr_closed ? 0 : POLLOUT)};
    int n = poll(&pfd, 1, pump ? 0 : 5);
    if (n < 0 && errno != EINTR) fuzz_fail("poll() failed", strerror(errno), 0);
    if (n <= 0) continue;
    if (!wr_closed && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = size > sent ? send(fd, data + sent, size - sent, MSG_NOSIGNAL) : 0;
      if (w > 0) sent += (size_t)w, last = now_ms();
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        wr_closed = cut = true; /* the server stopped reading: its answer may be lost */
      } else if (sent == size) {
        /* No shutdown(SHUT_WR): libmicrohttpd misses a FIN that comes with the request
        ** and keeps the connection until its idle timeout (docs/fuzzing.md). */
        wr_closed = true;
      }
    }
    if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
      char buf[16384];
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r > 0) {
        bytes_put(&got, buf, (size_t)r);
        last = now_ms();
      } else if (r == 0 || errno == ECONNRESET) {
        closed = true;
        cut = cut || r < 0 || sent < size;
        break;
      } else if (errno != EAGAIN && errno != EINTR) {
        fuzz_fail("recv() failed", strerror(errno), 0);
      }
    }
  }
  close(fd);
  if (closed && got.len) {
    if (!cut) judge(&got, head_request, true); /* a reset may have taken the rest */
  } else if (closed && complete && !cut) {
    fuzz_fail("silence: the server closed without answering a complete request", (const char *)data, size);
  }
  free(got.p);
}
