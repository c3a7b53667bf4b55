/*
** proxy_route.h -- the proxy's fast path: a request for /programs/{id|name}/proxy/...
** decided in C from the route table (route_table.h) and forwarded (proxy.c), never
** entering Lua. It takes only what the Lua route (lua/host/api.lua, route_proxy) would
** forward as it is; anything else (an unknown program, one not Ready, a foreign Host or
** Origin, a body that is not JSON, what cannot be forwarded) goes on to the Lua route,
** which gives the same answers as ever. The bearer token was checked before (server.c).
*/
#ifndef HERSH_HTTP_PROXY_ROUTE_H
#define HERSH_HTTP_PROXY_ROUTE_H

#include <stdbool.h>

#include "base/buf.h"
#include "hersh.h"
#include "http/proxy.h"
#include "http/route_table.h"
#include "http/server.h"

/* A request as the fast path sees it, filled from libmicrohttpd (hersh_proxy_route_try)
** or from the front's parser (front.c): the path and query decoded as server.c decodes
** them, a query "?flag" with the value "". */
enum { HERSH_PROXY_MAX_PAIRS = 64 };
typedef struct hersh_proxy_pair {
  const char *key, *value;
} hersh_proxy_pair;
typedef struct hersh_proxy_pairs {
  hersh_proxy_pair at[HERSH_PROXY_MAX_PAIRS];
  size_t n;
  bool over; /* there were more: the fast path does not take it */
} hersh_proxy_pairs;
typedef struct hersh_proxy_request {
  const char *method, *path;
  hersh_proxy_pairs headers, query;
} hersh_proxy_request;

/* What the fast path forwards: filled by hersh_proxy_route_plan, valid while the request is. */
typedef struct hersh_proxy_plan {
  const char *method;
  hersh_buf lines, url;
  const char *headers[HERSH_PROXY_MAX_PAIRS + 1];
  char program[256];
  hersh_route route;
} hersh_proxy_plan;

/* Whether the fast path takes req: true and *plan filled (free it, or forward it), or
** false: the Lua route decides (nothing to free). Loop thread. */
bool hersh_proxy_route_plan(const hersh_route_table *t, const hersh_proxy_request *req, hersh_proxy_plan *plan);
void hersh_proxy_route_plan_free(hersh_proxy_plan *plan);
/* Forwards a planned request through the client c (taking its hold; see proxy.h), counts
** it in t's tally, and frees the plan. */
void hersh_proxy_route_forward(hersh_loop *loop, hersh_route_table *t, hersh_proxy_plan *plan,
                               const hersh_proxy_client *cl, void *c);

/* In on_headers (loop thread): true when the request was taken (forwarded, or answered
** by the proxy with its 400 or 502); false: the Lua route decides. */
bool hersh_proxy_route_try(hersh_loop *loop, hersh_route_table *t, const hersh_http_request *req);

/* Whether path is one of a program's proxy: /programs/{id}/proxy or /programs/{id}/proxy/... */
bool hersh_proxy_route_match(const char *path);

#endif
