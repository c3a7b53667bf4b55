/*
** relay.h -- a published port forwarded to a program's unix socket. A sandbox that
** cannot be handed the port's listening socket (the gVisor driver: runsc passes no
** descriptors) has the program listen on a unix socket in a host directory instead;
** the Host accepts on the port and joins each connection to a fresh one to that
** socket, bytes both ways. While nothing listens there, a connection gets the 503 of
** unavailable.h. Loop thread.
*/
#ifndef HERSH_HTTP_RELAY_H
#define HERSH_HTTP_RELAY_H

#include <stddef.h>
#include <uv.h>

typedef struct hersh_http_relay hersh_http_relay;

/* Relays every connection on the listener fd (made non-blocking; still the caller's)
** to the unix socket at path, answering with a 503 around body when it cannot be
** reached, until stopped. HERSH_OK, or an error (hersh_errmsg). */
int hersh_http_relay_start(uv_loop_t *loop, int fd, const char *path, const char *body, size_t n,
                           hersh_http_relay **out);
/* Stops accepting and closes the relayed connections (once; NULL is fine); the memory
** goes when its handles have closed. */
void hersh_http_relay_stop(hersh_http_relay *r);

#endif
