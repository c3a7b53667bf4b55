/*
** upstream_head.h -- what the proxy reads from a program: a strict parser of an
** HTTP/1.1 response head (RFC 9112) and a decoder of a chunked body. Pure functions on
** bytes, no I/O, so that they are fuzzed alone (fuzz/upstream_head.c).
**
** Strict means: what could make two readers disagree on where a response ends is
** refused (the proxy answers 502): a Content-Length that is no number or repeated with
** another value, one beside Transfer-Encoding, a transfer coding other than chunked,
** folded lines, a CR or NUL inside a line, a status outside 100-599.
*/
#ifndef HERSH_HTTP_UPSTREAM_HEAD_H
#define HERSH_HTTP_UPSTREAM_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How the body of a response ends. */
typedef enum {
  HERSH_UPSTREAM_BODY_NONE,    /* no body: HEAD, 1xx, 204, 304 */
  HERSH_UPSTREAM_BODY_LENGTH,  /* after `length` bytes */
  HERSH_UPSTREAM_BODY_CHUNKED, /* at the last chunk (hersh_upstream_chunks) */
  HERSH_UPSTREAM_BODY_CLOSE,   /* when the program closes the connection */
} hersh_upstream_body;

typedef struct hersh_upstream_head {
  int status;
  size_t len; /* bytes of the head, its empty line included */
  hersh_upstream_body body;
  uint64_t length;
  bool reusable; /* HTTP/1.1 and no "Connection: close": the connection may serve another */
} hersh_upstream_head;

/* Parses the head that starts buf[0, n): 1 complete (*h), 0 incomplete (more bytes
** needed: the caller bounds n), -1 invalid (*why: a static text). head_request: the
** request was a HEAD, whose answer has no body. An interim 1xx answer is a complete
** head too, with no body: the caller skips it and parses what follows. */
int hersh_upstream_parse_head(const char *buf, size_t n, bool head_request, hersh_upstream_head *h,
                              const char **why);

/* A chunked body being decoded; zeroed at its start. */
typedef struct hersh_upstream_chunks {
  int state;
  uint64_t left;  /* bytes of the current chunk's data, or its size being read */
  size_t skipped; /* bytes of an extension or of trailers, bounded */
  int digits;
} hersh_upstream_chunks;

/* Consumes in[0, n) (n > 0) up to the end of the next piece of data: *used bytes (at
** least one), the piece at *data (inside in, *len bytes, maybe none). 1 once the body
** ended (its trailers are read and dropped), 0 to go on, -1 invalid (*why). */
int hersh_upstream_chunks_next(hersh_upstream_chunks *c, const char *in, size_t n, size_t *used, const char **data,
                               size_t *len, const char **why);

#endif
