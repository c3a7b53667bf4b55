/*
** fixed_route.c -- the C side of GET /health and GET /programs/{id|name}: the checks
** api.lua's refuse_foreign makes of such a request (the Host header; a Content-Type or a
** body, which Lua refuses or judges, go to Lua), then the cached text, as api.lua sends
** it (application/json, the server's default type).
*/
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/fixed_route.h"

static const char PREFIX[] = "/programs/";

typedef struct seen {
  const char *host;
  unsigned hosts;
  bool other; /* a header that makes Lua judge: a body or a Content-Type */
} seen;

static enum MHD_Result look(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  seen *s = cls;
  if (strcasecmp(key, "host") == 0) {
    s->host = value;
    s->hosts++;
  } else if (strcasecmp(key, "content-type") == 0 || strcasecmp(key, "transfer-encoding") == 0 ||
             (strcasecmp(key, "content-length") == 0 && strcmp(value ? value : "", "0") != 0)) {
    s->other = true;
  }
  return MHD_YES;
}

bool hersh_fixed_route_try(hersh_route_table *t, const hersh_http_request *req, hersh_http_response *res) {
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) return false;
  const char *path = req->path, *text = NULL;
  size_t len = 0;
  bool health = strcmp(path, "/health") == 0;
  if (health) {
    text = hersh_route_table_health(t, &len);
  } else if (strncmp(path, PREFIX, sizeof PREFIX - 1) == 0) {
    const char *key = path + sizeof PREFIX - 1;
    size_t n = strlen(key);
    if (n == 0 || memchr(key, '/', n)) return false;
    text = hersh_route_table_record(t, key, n, &len);
  }
  if (!text || req->body_len) return false;
  seen s = {0};
  MHD_get_connection_values(req->conn, MHD_HEADER_KIND, look, &s);
  /* two Host headers: Lua sees them joined, and refuses that */
  if (s.other || s.hosts > 1 || (s.host && !hersh_route_table_host_allowed(t, s.host))) return false;
  char *body = malloc(len + 1);
  if (!body) return false;
  memcpy(body, text, len + 1);
  *res = (hersh_http_response){.status = 200, .body = body, .body_len = len};
  hersh_route_table_count_fixed(t, health);
  return true;
}
