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

#include "hersh.h"
#include "http/route_table.h"
#include "http/server.h"

/* In on_headers (loop thread): true when the request was taken (forwarded, or answered
** by the proxy with its 400 or 502); false: the Lua route decides. */
bool hersh_proxy_route_try(hersh_loop *loop, hersh_route_table *t, const hersh_http_request *req);

/* Whether path is one of a program's proxy: /programs/{id}/proxy or /programs/{id}/proxy/... */
bool hersh_proxy_route_match(const char *path);

#endif
