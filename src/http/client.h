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
  int max_redirects;               /* 0: a 3xx is the answer; N: follow up to N (http, https);
                                      not for a streamed request */
  long long stream_len;            /* a body read from hersh_http_stream_fns.read: its size, -1 unknown */
  const char *unix_socket;         /* non-NULL: connect to this unix socket path, not to the URL's
                                      host (which still names the Host header), e.g. the Docker
                                      Engine's /var/run/docker.sock */
} hersh_http_call;

/* What done gets; the pointers are valid only during the callback. */
typedef struct hersh_http_result {
  int status;          /* HTTP status, 0 on a transport error */
  const char *error;   /* NULL, or text: "connection refused", "timeout", "connect timeout", ... */
  const char *code;    /* NULL, or "ECONNREFUSED", "ECONNECT", "ETIMEOUT", "ETOOLARGE",
                          "ENOTFOUND", "EREDIRECT", "ENOMEM", "ECANCELLED", "EHTTP" (anything else) */
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

/* ---- streamed answers ------------------------------------------------------------------
**
** A request started with hersh_http_request_stream hands its answer over as it comes:
** the head once, then the body piece by piece (nothing is collected; max_response bounds
** the headers only; timeout 0 means no deadline). curl reads no more of the socket while
** a callback runs, and none at all while paused, so a slow consumer slows the sender (TCP
** back-pressure). done still comes exactly once, with the status and an empty body. */
typedef struct hersh_http_req hersh_http_req;

typedef enum {
  HERSH_HTTP_TAKEN, /* the piece is consumed */
  HERSH_HTTP_PAUSE, /* not consumed: stop reading until hersh_http_resume, then offer it again */
  HERSH_HTTP_ABORT, /* end the transfer: done gets "aborted", code "ECANCELLED" */
} hersh_http_take;

typedef struct hersh_http_stream_fns {
  /* The final response's status and raw header block (status line first), before any
  ** body (also for an empty one). */
  hersh_http_take (*head)(int status, const char *headers, size_t len, void *ud);
  hersh_http_take (*data)(const char *piece, size_t len, void *ud);
  /* Non-NULL: the request body comes from here (call->body is not sent), as it arrives:
  ** up to max bytes into buf, their count; 0 at its end; HERSH_HTTP_READ_PAUSE when none
  ** is there yet (hersh_http_resume once some is); HERSH_HTTP_READ_ABORT ends the request. */
  size_t (*read)(char *buf, size_t max, void *ud);
  /* Non-NULL: called once curl has been driven, after a drive that brought the head or
  ** body and did not end the request (what came in one go can be handled as one). */
  void (*settled)(void *ud);
} hersh_http_stream_fns;

#define HERSH_HTTP_READ_PAUSE ((size_t)-1)
#define HERSH_HTTP_READ_ABORT ((size_t)-2)

/* As hersh_http_request; fns must live until done; *out (may be NULL) is the request
** until done is called. */
int hersh_http_request_stream(hersh_http_client *c, const hersh_http_call *call, const hersh_http_stream_fns *fns,
                              hersh_http_done done, void *ud, hersh_http_req **out);
/* Reading and sending go on after a pause (the paused piece comes first, maybe at once:
** its callback may abort then). An error (also for a cancelled request) leaves the
** request to the caller to cancel. Not from inside the request's own callbacks. */
int hersh_http_resume(hersh_http_req *r);
/* Stops a streamed request: no callback but done comes after this, and done soon gets
** "cancelled" (ECANCELLED) from the loop, never from inside this call. Any time before
** done, also from inside any callback of the client; again is harmless. */
void hersh_http_cancel(hersh_http_req *r);

/* Abandons the pending request started with (done, ud): done is never called, and its
** connection is closed at once (the server sees it go). Nothing happens if there is none.
** Not from inside one of curl's callbacks (use hersh_http_cancel there). */
void hersh_http_abandon(hersh_http_client *c, hersh_http_done done, void *ud);

/* Whether the n bytes at s are an HTTP token (RFC 9110 5.6.2): a method or a field name. */
bool hersh_http_is_token(const char *s, size_t n);

/* Cancels pending requests (done gets error "cancelled", code "ECANCELLED") and frees
** the client. Not from inside a done callback. */
void hersh_http_client_free(hersh_http_client *c);

#endif
