/*
** front_head.c -- fuzzes the front's reading of request heads (src/http/front_head.c).
** Beyond "no crash, no leak, no UB" it asserts, for a head it takes:
**  - it lies inside the input and ends with its first empty line (CR LF CR LF), and the
**    verdict is the same on the head alone: the bytes after it (a next, pipelined
**    request) never change it, and one byte less is never a whole head;
**  - HTTP/1.1, a token method, a path from '/' with nothing libmicrohttpd would decode
**    ('%', '+') or cut ('?', '#'), no CR, LF or NUL in any name or value, names tokens,
**    exactly one Host, and Content-Length and Authorization as their headers say.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "http/front_head.h"

static bool token(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (!strchr("!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", *s)) return false;
  return true;
}

static hersh_front_head a, b; /* large: not on the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  hersh_front_head_result r = hersh_front_head_parse(in, size, &a);
  if (r != HERSH_FRONT_HEAD_WHOLE) return 0;
  if (a.len < 4 || a.len > size || a.len > HERSH_FRONT_HEAD_MAX || memcmp(in + a.len - 4, "\r\n\r\n", 4) != 0)
    fuzz_fail("a head that does not end with its empty line", in, size);
  if (memmem(in, a.len, "\r\n\r\n", 4) != in + a.len - 4) fuzz_fail("a head past its first empty line", in, size);
  if (hersh_front_head_parse(in, a.len, &b) != HERSH_FRONT_HEAD_WHOLE || b.len != a.len)
    fuzz_fail("the verdict depends on what follows the head", in, size);
  if (hersh_front_head_parse(in, a.len - 1, &b) == HERSH_FRONT_HEAD_WHOLE)
    fuzz_fail("a head taken without its last byte", in, size);
  if (!token(a.req.method)) fuzz_fail("a method that is no token", in, size);
  if (a.req.path[0] != '/' || strpbrk(a.req.path, "%+?# \t\r\n")) fuzz_fail("a path to decode or cut", in, size);
  unsigned hosts = 0;
  const char *auth = NULL, *length = NULL;
  for (size_t i = 0; i < a.req.headers.n; i++) {
    const hersh_proxy_pair *h = &a.req.headers.at[i];
    if (!token(h->key) || strpbrk(h->value, "\r\n")) fuzz_fail("a header that is no token, or a value with CR or LF", in, size);
    hosts += strcasecmp(h->key, "host") == 0;
    if (strcasecmp(h->key, "authorization") == 0) auth = h->value;
    if (strcasecmp(h->key, "content-length") == 0) length = h->value;
  }
  for (size_t i = 0; i < a.req.query.n; i++)
    if (!a.req.query.at[i].key[0] || strpbrk(a.req.query.at[i].key, "%+&=") || strpbrk(a.req.query.at[i].value, "%+&"))
      fuzz_fail("a query pair libmicrohttpd would read otherwise", in, size);
  if (hosts != 1) fuzz_fail("not exactly one Host", in, size);
  if (auth != a.authorization) fuzz_fail("an Authorization that is not its header's", in, size);
  if ((length ? strtoull(length, NULL, 10) : 0) != a.content_length) fuzz_fail("a Content-Length not its header's", in, size);
  return 0;
}
