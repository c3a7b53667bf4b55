/*
** upstream_head.c -- fuzzes what the proxy reads from a program (src/http/upstream_head.c):
** the bytes as a response head, and what follows it as a chunked body fed in pieces of
** every size the input picks. Beyond "no crash, no leak, no UB" it asserts:
**  - a complete head lies inside the input, ends with an empty line, has a status in
**    100-599, and a body that is framed one way only (a close-delimited one never reused);
**  - the decoder consumes at least one byte per call and never more than it was given,
**    hands out data only from inside its input, and never more of it than it consumed;
**  - the decoded bytes are the same whatever the pieces were (one go against pieces).
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "http/upstream_head.h"

/* Decodes in[0, n) in pieces of at most `piece` bytes into out (which has room for n);
** the decoder's last result, and *out_len. */
static int dechunk(const char *in, size_t n, size_t piece, char *out, size_t *out_len) {
  hersh_upstream_chunks c = {0};
  *out_len = 0;
  int rc = 0;
  for (size_t at = 0; at < n && rc == 0;) {
    size_t give = n - at < piece ? n - at : piece;
    while (give > 0 && rc == 0) {
      size_t used = 0, len = 0;
      const char *data = NULL, *why = NULL;
      rc = hersh_upstream_chunks_next(&c, in + at, give, &used, &data, &len, &why);
      if (rc < 0) {
        if (!why) fuzz_fail("a refused chunked body without a reason", in, n);
        return rc;
      }
      if (used == 0 || used > give) fuzz_fail("the decoder consumed none, or more than it got", in, n);
      if (len > used || (len && (data < in + at || data + len > in + at + used)))
        fuzz_fail("decoded data from outside what was consumed", in, n);
      memcpy(out + *out_len, data, len);
      *out_len += len;
      at += used;
      give -= used;
    }
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  bool head_request = data[0] & 1;
  size_t piece = (size_t)(data[0] >> 1) + 1;
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  hersh_upstream_head h;
  const char *why = NULL;
  int rc = hersh_upstream_parse_head(in, n, head_request, &h, &why);
  if (rc < 0 && !why) fuzz_fail("a refused head without a reason", in, n);
  if (rc == 1) {
    if (h.len < 4 || h.len > n || in[h.len - 1] != '\n') fuzz_fail("a head that does not end with its empty line", in, n);
    if (h.status < 100 || h.status > 599) fuzz_fail("a status outside 100-599", in, n);
    if (h.body == HERSH_UPSTREAM_BODY_CLOSE && h.reusable) fuzz_fail("a close-delimited body on a reused connection", in, n);
    if (head_request && h.body != HERSH_UPSTREAM_BODY_NONE) fuzz_fail("a body for a HEAD request", in, n);
  }
  /* what follows the head (or all of it) as a chunked body, in one go and in pieces */
  const char *body = rc == 1 ? in + h.len : in;
  size_t body_len = rc == 1 ? n - h.len : n;
  if (body_len == 0) return 0;
  char *whole = malloc(body_len), *pieces = malloc(body_len);
  if (!whole || !pieces) abort();
  size_t whole_len, pieces_len;
  int a = dechunk(body, body_len, body_len, whole, &whole_len);
  int b = dechunk(body, body_len, piece, pieces, &pieces_len);
  if (a != b) fuzz_fail("the decoder's verdict depends on how the bytes were split", body, body_len);
  if (a >= 0 && (whole_len != pieces_len || memcmp(whole, pieces, whole_len) != 0))
    fuzz_fail("the decoded body depends on how the bytes were split", body, body_len);
  free(whole);
  free(pieces);
  return 0;
}
