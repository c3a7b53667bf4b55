/*
** front.h -- the Host's listening socket, on the loop, in front of libmicrohttpd. It
** accepts each connection and, at each request boundary, peeks at the request head: a
** request the proxy's fast path takes (proxy_route.h) and whose head it reads with
** certainty (front_head.h) is consumed head first and forwarded (proxy.h) with the front
** as the client side, its answer written straight to the socket; the connection then
** waits for its next request. Anything else is handed to libmicrohttpd
** (hersh_http_server_add) with its bytes still unread, and stays there: since the front
** never reads past a head it takes, libmicrohttpd reads exactly what it would have.
**
** The server's limits hold: connections held here count with libmicrohttpd's against
** max_connections and max_per_client, a silent one closes after idle_timeout, a body (or
** a slow reader) that takes longer than request_timeout (idle_timeout) is cut, Content-
** Length over max_body goes to libmicrohttpd (413), and writes never block the loop.
**
** Loop thread only. The server must have been started with the front option.
*/
#ifndef HERSH_HTTP_FRONT_H
#define HERSH_HTTP_FRONT_H

#include "hersh.h"
#include "http/route_table.h"
#include "http/server.h"

typedef struct hersh_front hersh_front;

/* Starts accepting on the server's listening socket; o: the server's options (timeouts). */
int hersh_front_start(hersh_loop *loop, hersh_http_server *server, hersh_route_table *routes,
                      const hersh_http_options *o, hersh_front **out);
/* Stops accepting; the requests being answered get 503 if not answered yet, the
** streams are cut, idle connections close. Before hersh_http_server_stop. */
void hersh_front_stop(hersh_front *f);
/* The connections the front holds now. */
unsigned hersh_front_connections(const hersh_front *f);

#endif
