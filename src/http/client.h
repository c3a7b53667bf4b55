/*
** client.h -- an asynchronous HTTP client on the loop: libcurl's multi interface
** driven by libuv (one uv_poll_t per socket, one uv_timer_t), with keep-alive
** connections kept by the multi handle and easy handles reused from a pool.
**
** Everything here runs on the loop thread; nothing blocks it.
*/
#ifndef HERSH_HTTP_CLIENT_H
#define HERSH_HTTP_CLIENT_H

#include <stddef.h>

#include "hersh.h"

/* One per loop: a curl multi handle and its connection pool. */
typedef struct hersh_http_client hersh_http_client;

/* Made on first use and freed with the loop; NULL (hersh_errmsg) on failure. */
hersh_http_client *hersh_http_client_get(hersh_loop *loop);

/* A request. Everything it points to is copied: it need live only during the call. */
typedef struct hersh_http_call {
  const char *method;              /* "GET", "POST", ... any method; NULL = "GET" */
  const char *url;                 /* http://127.0.0.1:PORT/path?query */
  const char *const *headers;      /* "Name: value" strings, NULL-terminated; may be NULL */
  const char *body;                /* may be NULL */
  size_t body_len;
  double timeout;                  /* seconds, whole request; 0 = 30 */
  double connect_timeout;          /* seconds to connect, within timeout; 0 = curl's 300 */
  size_t max_response;             /* bytes of body (and of headers); 0 = 16 MiB */
} hersh_http_call;

/* What done gets; the pointers are valid only during the callback. */
typedef struct hersh_http_result {
  int status;          /* HTTP status, 0 on a transport error */
  const char *error;   /* NULL, or text: "connection refused", "timeout", "connect timeout", ... */
  const char *code;    /* NULL, or "ECONNREFUSED", "ECONNECT", "ETIMEOUT", "ETOOLARGE",
                          "ENOTFOUND", "ENOMEM", "ECANCELLED", "EHTTP" (anything else) */
  const char *headers; /* the raw header block of the final response ("" on an error) */
  size_t headers_len;
  const char *body;    /* never NULL; NUL-terminated after body_len bytes */
  size_t body_len;
} hersh_http_result;

/* Called on the loop thread, exactly once per started request. */
typedef void (*hersh_http_done)(const hersh_http_result *r, void *ud);

/* Starts a request: HERSH_OK (done will be called), or an error (it will not):
** HERSH_E_INVAL for a bad method, URL or header, HERSH_E_NOMEM, HERSH_E_SYS. */
int hersh_http_request(hersh_http_client *c, const hersh_http_call *call, hersh_http_done done, void *ud);

/* A streamed request: the body is handed out as it arrives instead of collected. */
typedef struct hersh_http_req hersh_http_req;

typedef struct hersh_http_stream_cbs {
  /* Once, before the first chunk (also for an empty body): status and headers, body "". */
  void (*head)(const hersh_http_result *r, void *ud);
  /* Each piece of the body as it arrives. curl reads no more of the socket until it
  ** returns, so a slow consumer slows the sender (TCP back-pressure); nothing queues. */
  void (*chunk)(const char *data, size_t len, void *ud);
  /* Exactly once: the end (body "", no error), or the error ("cancelled", ...). */
  hersh_http_done done;
} hersh_http_stream_cbs;

/* Starts a streamed request, as hersh_http_request does; *out is its handle until done.
** call->max_response bounds the headers only; call->timeout 0 means no deadline. */
int hersh_http_stream_request(hersh_http_client *c, const hersh_http_call *call, const hersh_http_stream_cbs *cbs,
                              void *ud, hersh_http_req **out);

/* Stops a streamed request: no chunk comes after this, and done soon gets "cancelled"
** (ECANCELLED) from the loop, never from inside this call. Any time before done, also
** from its own callbacks; again is harmless. */
void hersh_http_cancel(hersh_http_req *r);

/* Cancels pending requests (done gets error "cancelled", code "ECANCELLED") and frees
** the client. Not from inside a done callback. */
void hersh_http_client_free(hersh_http_client *c);

#endif
