/*
** upstream.h -- the proxy's HTTP/1.1 client to the programs, on the loop: plain
** keep-alive TCP connections to loopback ports, pooled per address and port, no libcurl.
** A request writes its head (and its body, given whole or streamed piece by piece); the
** answer's head is parsed (upstream_head.h) and its body handed over as it is read.
**
** A connection goes back to the pool only after a complete answer to a request it sent
** whole, when the program did not ask to close it; one found closed by the program (it
** was idle) makes an idempotent request that got nothing yet go again, once, on a fresh
** connection. A pooled connection opened before a route's change (an epoch, see
** hersh_upstream_epoch) is never reused for it: after a program's restart or update,
** requests reach the new process and not the old one.
**
** Everything here runs on the loop thread.
*/
#ifndef HERSH_HTTP_UPSTREAM_H
#define HERSH_HTTP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hersh.h"

/* The bytes of an answer's head the proxy reads; a larger one is answered 502. */
#define HERSH_UPSTREAM_MAX_HEAD ((size_t)64 << 10)

typedef struct hersh_upstream hersh_upstream;
typedef struct hersh_upstream_req hersh_upstream_req;

/* One per loop, made on first use and freed with the loop; NULL (hersh_errmsg) on failure. */
hersh_upstream *hersh_upstream_get(hersh_loop *loop);

/* A process-wide counter, larger at each call: a route stamps its changes with it, and
** each connection its opening. */
uint64_t hersh_upstream_epoch(void);

/* Loop thread. Closes every idle pooled connection to `port` (on any address): a program
** whose route changed (stopped, restarted, replaced) must not keep the proxy's idle
** connections open, since a stopping program waits for its open connections to drain. */
void hersh_upstream_retire(hersh_upstream *u, int port);

typedef struct hersh_upstream_call {
  const char *method;
  const char *host; /* an IPv4 address */
  int port;
  const char *target;         /* "/path?query" */
  const char *const *headers; /* "Name: value" (or "Name;": empty), NULL-terminated; Host is added */
  const char *body;           /* a body given whole (may be NULL) */
  size_t body_len;
  /* The body comes through hersh_upstream_send instead: its length, or -1 (chunked). */
  bool stream_body;
  long long stream_len;
  double timeout;         /* seconds for the whole exchange; 0: none */
  double connect_timeout; /* seconds to connect; 0: the whole timeout */
  uint64_t fresh_after;   /* no pooled connection opened at or before this epoch is used */
} hersh_upstream_call;

typedef struct hersh_upstream_result {
  int status;        /* the program's, 0 on an error */
  const char *error; /* NULL, or what went wrong: "timeout", "connect timeout", ... */
  const char *code;  /* NULL, or "ECONNREFUSED", "ECONNECT", "ETIMEOUT", "ETOOLARGE", "EPROTO",
                        "ECLOSED", "ECANCELLED", "ENOMEM" */
} hersh_upstream_result;

typedef struct hersh_upstream_fns {
  /* The final answer's status and head (status line first, its empty line last). false
  ** ends the exchange (done: "aborted", ECANCELLED). */
  bool (*head)(int status, const char *block, size_t len, void *ud);
  /* A piece of its body, as read; false ends the exchange as head's does. */
  bool (*data)(const char *piece, size_t len, void *ud);
  /* Non-NULL: after each read from the program that did not end the answer. */
  void (*settled)(void *ud);
  /* Non-NULL: everything sent with hersh_upstream_send is written. */
  void (*sent)(void *ud);
  /* Once, last: the exchange is over. */
  void (*done)(const hersh_upstream_result *r, void *ud);
} hersh_upstream_fns;

/* Starts a request: HERSH_OK, and done will be called (never from inside this call), or
** an error and it will not: HERSH_E_INVAL (a bad method, address or header),
** HERSH_E_NOMEM, HERSH_E_STATE (closing). fns must live until done. */
int hersh_upstream_start(hersh_upstream *u, const hersh_upstream_call *call, const hersh_upstream_fns *fns, void *ud,
                         hersh_upstream_req **out);
/* Appends a piece of a streamed body (copied), or its end (len 0). An error ends the
** exchange (done follows, from the loop). */
void hersh_upstream_send(hersh_upstream_req *r, const char *data, size_t len);
/* The bytes given to hersh_upstream_send not yet written to the program. */
size_t hersh_upstream_unsent(const hersh_upstream_req *r);
/* Stops reading from the program (TCP then pushes back on it), and goes on. */
void hersh_upstream_pause(hersh_upstream_req *r);
void hersh_upstream_resume(hersh_upstream_req *r);
/* Ends the exchange: its connection closes, no callback but done comes, and done comes
** from the loop ("cancelled", ECANCELLED), never from inside this call. Again: nothing. */
void hersh_upstream_cancel(hersh_upstream_req *r);

#endif
