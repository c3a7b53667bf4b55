/*
** proxy.h -- the Host's proxy to a program: a deferred request, once the Lua route has
** decided to forward it, goes to the program's port through upstream.c (HTTP/1.1 on
** the loop, keep-alive connections pooled per port), and the answer comes back as it
** arrives through the server's stream API. Nothing holds a whole response: reading
** from the program pauses while the client has not taken what waits.
**
** Everything here runs on the loop thread.
*/
#ifndef HERSH_HTTP_PROXY_H
#define HERSH_HTTP_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hersh.h"

/* The stream API of server.h, whose request type has the name of client.h's function. */
typedef struct hersh_http_pending hersh_http_pending;

/* Bytes waiting for a slow client at which reading from the program pauses. */
#define HERSH_PROXY_HIGH_WATER ((size_t)256 << 10)
/* Bytes of a streamed request body held while the program has not taken them. */
#define HERSH_PROXY_BODY_BUFFER ((size_t)64 << 10)

typedef struct hersh_proxy_call {
  const char *method;
  const char *url;            /* http://127.0.0.1:PORT/path?query: an IPv4 address and a port */
  const char *const *headers; /* "name: value" as the client sent them, NULL-terminated */
  const char *body;           /* may be NULL */
  size_t body_len;
  /* The body is not read yet (the request was taken on its headers): it goes to the
  ** program as the client sends it, with its Content-Length, or chunked. */
  bool stream_body;
  double timeout;         /* seconds for the whole exchange */
  double connect_timeout; /* seconds to connect */
  const char *program;    /* named in the 502 and 504 messages */
  /* The epoch of the route's last change (hersh_upstream_epoch): no pooled connection
  ** opened before it is used, so a restarted program is never reached through one that
  ** its old process accepted. 0: any. */
  uint64_t fresh_after;
} hersh_proxy_call;

/* The exchange is over: the status the client got (the program's, or the proxy's own). */
typedef void (*hersh_proxy_done)(int status, void *ud);

/* Forwards, taking the hold on p (the client's address is appended to X-Forwarded-For):
** done will be called once. An error (HERSH_E_INVAL: what
** cannot be forwarded, HERSH_E_NOMEM, ...) is answered at once, 400 or 502 naming it,
** and done is not called. */
int hersh_proxy_forward(hersh_loop *loop, hersh_http_pending *p, const hersh_proxy_call *call, hersh_proxy_done done,
                        void *ud);

/* ---- header rules (RFC 9110 7.6.1), exposed for the tests ------------------------------ */

/* Whether a header (name of n bytes) stays on this side of the proxy: the hop-by-hop
** ones, those the message's Connection header lists (`connection`: its value, or NULL),
** and those the proxy sets itself (Host, Content-Length, Authorization: the Host's own
** token, Expect: the Host already read the body). Case-insensitive. */
bool hersh_proxy_hop_header(const char *name, size_t n, const char *connection);

/* The request header lines for the program, "Name: value" strings (NULL-terminated,
** malloc'd with the strings in one block: one free), with X-Forwarded-For appended,
** X-Forwarded-Proto http, X-Forwarded-Host the client's Host. NULL when out of memory. */
char **hersh_proxy_request_headers(const char *const *in, const char *client_ip);

/* A program's raw header block (status line first) as the lines the client gets,
** "Name: value\r\n" each, without the hop-by-hop ones. NULL when out of memory. */
char *hersh_proxy_response_headers(const char *block, size_t len);

#endif
