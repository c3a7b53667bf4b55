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

/* Cancels pending requests (done gets error "cancelled", code "ECANCELLED") and frees
** the client. Not from inside a done callback. */
void hersh_http_client_free(hersh_http_client *c);

#endif
