/*
** net.h -- loopback sockets for the C tests: a listener, a port nothing listens on, and
** a client connection whose reads are bounded. Every socket is on 127.0.0.1.
*/
#ifndef HERSH_TEST_NET_H
#define HERSH_TEST_NET_H

/* A listening socket on an ephemeral loopback port, stored in *port; -1 on failure.
** Nothing accepts on it unless the caller does: connections wait in its backlog. */
int net_listener(int *port);

/* A port nothing listens on (bound once, then closed); -1 on failure. */
int net_dead_port(void);

/* A connection to port on loopback whose reads give up after timeout_s; -1 on failure. */
int net_connect(int port, int timeout_s);

#endif
