/*
** The proxy's header rules (src/http/proxy.c, RFC 9110 7.6.1): what never crosses it in
** either direction, and the X-Forwarded-* fields it adds. The forwarding itself is
** proved end to end by spec/proxy_spec.lua.
*/
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/proxy.h"

/* Whether the NULL-terminated lines hold exactly `line`. */
static bool has_line(char **lines, const char *line) {
  for (char **l = lines; l && *l; l++)
    if (strcmp(*l, line) == 0) return true;
  return false;
}

/* Whether any line starts with `prefix` (case-insensitive). */
static bool has_prefix(char **lines, const char *prefix) {
  for (char **l = lines; l && *l; l++)
    if (strncasecmp(*l, prefix, strlen(prefix)) == 0) return true;
  return false;
}

TEST(hop_by_hop_names) {
  const char *hop[] = {"Connection", "keep-alive", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
                       "Proxy-Authorization", "proxy-authenticate", "Proxy-Connection", "Host",
                       "Content-Length", "Authorization", "Expect", NULL};
  for (const char **h = hop; *h; h++) CHECK(hersh_proxy_hop_header(*h, strlen(*h), NULL));
  const char *end_to_end[] = {"Content-Type", "Accept", "Cookie", "X-Custom", "Proxy", "Tee", "Hosts", NULL};
  for (const char **h = end_to_end; *h; h++) CHECK(!hersh_proxy_hop_header(*h, strlen(*h), NULL));
  /* what Connection lists, however it is spaced or cased */
  CHECK(hersh_proxy_hop_header("X-Secret", 8, "close, x-secret"));
  CHECK(hersh_proxy_hop_header("x-secret", 8, " keep-alive ,\tX-SECRET\t"));
  CHECK(!hersh_proxy_hop_header("X-Secret", 8, "x-secret2, x-secre"));
  CHECK(!hersh_proxy_hop_header("X-Secret", 8, ""));
}

TEST(request_headers) {
  const char *in[] = {"host: 127.0.0.1:9000", "authorization: Bearer host-token", "connection: keep-alive, x-drop",
                      "x-drop: 1", "keep-alive: timeout=5", "te: trailers", "upgrade: h2c",
                      "proxy-authorization: Basic x", "transfer-encoding: chunked", "content-length: 5",
                      "expect: 100-continue", "content-type: application/json", "x-keep: yes", "x-empty: ",
                      "x-forwarded-proto: https", "x-forwarded-host: evil.example", NULL};
  char **out = hersh_proxy_request_headers(in, "127.0.0.7");
  REQUIRE(out);
  CHECK(has_line(out, "content-type: application/json"));
  CHECK(has_line(out, "x-keep: yes"));
  CHECK(has_line(out, "x-empty;")); /* sent empty, not dropped by curl */
  CHECK(has_line(out, "X-Forwarded-For: 127.0.0.7"));
  CHECK(has_line(out, "X-Forwarded-Proto: http"));
  CHECK(has_line(out, "X-Forwarded-Host: 127.0.0.1:9000"));
  const char *gone[] = {"host:", "authorization:", "connection:", "x-drop:", "keep-alive:", "te:", "upgrade:",
                        "proxy-", "transfer-encoding:", "content-length:", "expect:", "x-forwarded-proto: https",
                        "x-forwarded-host: evil", NULL};
  for (const char **g = gone; *g; g++) {
    if (has_prefix(out, *g)) printf("  still there: %s\n", *g);
    CHECK(!has_prefix(out, *g));
  }
  free(out);
}

TEST(forwarded_for_appends) {
  const char *in[] = {"x-forwarded-for: 10.0.0.1, 10.0.0.2", NULL};
  char **out = hersh_proxy_request_headers(in, "127.0.0.1");
  REQUIRE(out);
  CHECK(has_line(out, "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 127.0.0.1"));
  int n = 0;
  for (char **l = out; *l; l++) n += strncasecmp(*l, "x-forwarded-for:", 16) == 0;
  CHECK(n == 1);
  free(out);
  const char *none[] = {NULL};
  out = hersh_proxy_request_headers(none, NULL); /* no address known: nothing made up */
  REQUIRE(out);
  CHECK(!has_prefix(out, "x-forwarded-for:"));
  CHECK(!has_prefix(out, "x-forwarded-host:"));
  CHECK(has_line(out, "X-Forwarded-Proto: http"));
  free(out);
}

TEST(response_headers) {
  const char block[] = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: text/plain\r\n"
                       "Connection: keep-alive, X-Internal\r\n"
                       "X-Internal: secret\r\n"
                       "Keep-Alive: timeout=10\r\n"
                       "Transfer-Encoding: chunked\r\n"
                       "Content-Length: 12\r\n"
                       "Trailer: X-Sum\r\n"
                       "Upgrade: websocket\r\n"
                       "Proxy-Authenticate: Basic\r\n"
                       "Set-Cookie: a=1\r\n"
                       "Set-Cookie: b=2\r\n"
                       " folded continuation\r\n"
                       "no colon here\r\n"
                       "connection: X-Other\r\n"
                       "X-Other: also\r\n"
                       "\r\n";
  char *out = hersh_proxy_response_headers(block, sizeof block - 1);
  REQUIRE(out);
  CHECK_EQ_STR(out, "Content-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n");
  free(out);
  /* LF-only lines, no final blank line, just a status line */
  out = hersh_proxy_response_headers("HTTP/1.1 204 No Content\nX-A: 1\nTE: x", 36);
  REQUIRE(out);
  CHECK_EQ_STR(out, "X-A: 1\r\n");
  free(out);
  out = hersh_proxy_response_headers("HTTP/1.1 200 OK\r\n", 17);
  REQUIRE(out);
  CHECK_EQ_STR(out, "");
  free(out);
}

/* Found by the proxy_headers fuzz target: "connection; p" (no token) went to the program
** as "connection; p;", which curl may send as a Connection field. */
TEST(names_that_are_no_tokens_are_dropped) {
  const char *in[] = {"connection; p: ", "x bad: 1", "x(y): 2", "x-ok: 1", NULL};
  char **out = hersh_proxy_request_headers(in, "127.0.0.7");
  REQUIRE(out);
  CHECK(has_line(out, "x-ok: 1"));
  CHECK(!has_prefix(out, "connection"));
  CHECK(!has_prefix(out, "x bad"));
  CHECK(!has_prefix(out, "x(y)"));
  free(out);
  const char block[] = "HTTP/1.1 200 OK\r\nBad Name: v\r\nx;y: 2\r\nX-Good: 3\r\n\r\n";
  char *answer = hersh_proxy_response_headers(block, sizeof block - 1);
  REQUIRE(answer);
  CHECK_EQ_STR(answer, "X-Good: 3\r\n");
  free(answer);
}

int main(void) {
  RUN(hop_by_hop_names);
  RUN(names_that_are_no_tokens_are_dropped);
  RUN(request_headers);
  RUN(forwarded_for_appends);
  RUN(response_headers);
  return check_summary();
}
