/*
** fixed_route.h -- GET /health and GET /programs/{id|name} answered in C, from the text
** the Lua route encoded last (route_table.h): the Lua side hands each answer over when
** it gives it, and every change of a program forgets the program's text and /health's
** (host.lua, Host:route), so the next request goes to Lua again and gets the new text.
** A request it is not sure of (another Host name, a Content-Type, a body, no text yet)
** goes to the Lua route as before.
*/
#ifndef HERSH_HTTP_FIXED_ROUTE_H
#define HERSH_HTTP_FIXED_ROUTE_H

#include <stdbool.h>

#include "http/route_table.h"
#include "http/server.h"

/* In the handler (loop thread): true when res holds the answer; false: Lua answers. */
bool hersh_fixed_route_try(hersh_route_table *t, const hersh_http_request *req, hersh_http_response *res);

#endif
