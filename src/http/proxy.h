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
typedef struct hersh_http_pending hersh_http_stream;
typedef void (*hersh_http_close_fn)(hersh_http_stream *s, void *ud);
typedef size_t (*hersh_http_body_fn)(void *ud, const char *data, size_t len);

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

/* The client side of an exchange, `c`: the server's deferred request (server.h, the
** default) or a connection of the front (front.h). The proxy holds c from the forward
** until complete, or stream_start then end (or a failed stream_start). Callbacks get the
** server's stream or NULL as their first argument. */
typedef struct hersh_proxy_client {
  /* The whole answer ("Name: value\r\n" header lines); takes body and headers. */
  void (*complete)(void *c, int status, char *body, size_t len, char *headers);
  /* A body that follows (write, end): false when it could not start (answered 500). */
  bool (*stream_start)(void *c, int status, const char *headers);
  int (*write)(void *c, const void *data, size_t len); /* as hersh_http_stream_write */
  void (*end)(void *c);
  void (*cut)(void *c);
  size_t (*waiting)(void *c);
  void (*on_drain)(void *c, hersh_http_close_fn fn, void *ud);
  void (*on_close)(void *c, hersh_http_close_fn fn, void *ud); /* at once if gone */
  void (*body_take)(void *c, hersh_http_body_fn fn, void *ud);
  void (*body_resume)(void *c);
  /* The client's address as text in buf (n bytes), or NULL when unknown. */
  const char *(*client_ip)(void *c, char *buf, size_t n);
} hersh_proxy_client;

/* The server's deferred request as a client (c: a hersh_http_pending). */
extern const hersh_proxy_client hersh_proxy_server_client;

/* Forwards as hersh_proxy_forward does, with the client side `cl` (holding c). */
int hersh_proxy_forward_to(hersh_loop *loop, const hersh_proxy_client *cl, void *c, const hersh_proxy_call *call,
                           hersh_proxy_done done, void *ud);

/* Forwards, taking the hold on p (the client's address is appended to X-Forwarded-For):
** done will be called once. An error (HERSH_E_INVAL: what
** cannot be forwarded, HERSH_E_NOMEM, ...) is answered at once, 400 or 502 naming it,
** and done is not called. */
int hersh_proxy_forward(hersh_loop *loop, hersh_http_pending *p, const hersh_proxy_call *call, hersh_proxy_done done,
                        void *ud);

/* An IPv4 or IPv6 address as text in buf (n bytes), or NULL for another family. */
struct sockaddr;
const char *hersh_proxy_address_text(const struct sockaddr *sa, char *buf, size_t n);

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
