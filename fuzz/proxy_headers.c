/*
** proxy_headers.c -- fuzzes the proxy's header rules (src/http/proxy.c) with arbitrary
** bytes, read both as a program's response header block and as a client's request
** header lines. Beyond "no crash, no leak, no UB" it asserts:
**  - what goes back to the client is "Name: value" lines, each ended by CR LF, with no
**    CR, LF or NUL inside, and none of them hop-by-hop (RFC 9110 7.6.1) or named by a
**    Connection line of the block;
**  - what goes to the program holds no hop-by-hop field either, and exactly one
**    X-Forwarded-For (ending with the client), X-Forwarded-Proto and at most one
**    X-Forwarded-Host.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "http/proxy.h"

static void check_response(const char *block, size_t size) {
  char *out = hersh_proxy_response_headers(block, size);
  if (!out) fuzz_fail("no answer headers (out of memory?)", block, size);
  for (char *line = out; *line;) {
    char *end = strstr(line, "\r\n");
    if (!end) fuzz_fail("an answer header line without CR LF", out, strlen(out));
    char *colon = memchr(line, ':', (size_t)(end - line));
    if (!colon || colon == line) fuzz_fail("an answer header line that is no field", line, (size_t)(end - line));
    if (memchr(line, '\r', (size_t)(end - line)) || memchr(line, '\n', (size_t)(end - line)))
      fuzz_fail("a CR or LF inside an answer header line", line, (size_t)(end - line));
    if (hersh_proxy_hop_header(line, (size_t)(colon - line), NULL))
      fuzz_fail("a hop-by-hop header goes back to the client", line, (size_t)(end - line));
    line = end + 2;
  }
  free(out);
}

static void check_request(const char *data, size_t size) {
  /* the input as NUL-terminated lines, as lhttpd hands them over */
  char *copy = malloc(size + 1);
  const char **lines = malloc((size + 2) * sizeof *lines);
  if (!copy || !lines) abort();
  memcpy(copy, data, size);
  copy[size] = '\0';
  size_t n = 0;
  for (char *at = copy; at < copy + size && *at;) {
    lines[n++] = at;
    char *lf = strchr(at, '\n');
    if (!lf) break;
    *lf = '\0';
    at = lf + 1;
  }
  lines[n] = NULL;
  char **out = hersh_proxy_request_headers(lines, "127.0.0.1");
  if (!out) fuzz_fail("no request headers (out of memory?)", data, size);
  int xff = 0, proto = 0, host = 0;
  for (char **l = out; *l; l++) {
    const char *colon = strchr(*l, ':');
    const char *semi = strchr(*l, ';');
    const char *end = colon ? colon : semi;
    if (!end) fuzz_fail("a request header line that is no field", *l, strlen(*l));
    if (hersh_proxy_hop_header(*l, (size_t)(end - *l), NULL))
      fuzz_fail("a hop-by-hop header goes to the program", *l, strlen(*l));
    if (strncasecmp(*l, "x-forwarded-for:", 16) == 0) {
      xff++;
      size_t len = strlen(*l);
      if (len < 9 || strcmp(*l + len - 9, "127.0.0.1") != 0) fuzz_fail("X-Forwarded-For lost the client", *l, len);
    }
    proto += strncasecmp(*l, "x-forwarded-proto:", 18) == 0;
    host += strncasecmp(*l, "x-forwarded-host:", 17) == 0;
  }
  if (xff != 1 || proto != 1 || host > 1) fuzz_fail("X-Forwarded-* not exactly once", data, size);
  free(out);
  free(lines);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_response((const char *)data, size);
  check_request((const char *)data, size);
  return 0;
}
