/*
** server.h -- a small HTTP server on libmicrohttpd, in one of two threading modes:
**
** - its own thread (on_loop false; the WatcherAPI): handlers run on the server's
**   thread and answer from state that is safe to read there (a snapshot, an atomic, a
**   queue that takes pushes from any thread), so they answer while the loop is busy;
** - on the loop (on_loop true; the Host): no thread. The owner watches
**   hersh_http_server_fd for reading and calls hersh_http_server_run then and when the
**   time it returned has passed; every callback (handlers, stream readers, close
**   callbacks) runs inside hersh_http_server_run, on the owner's thread.
**
** A handler that cannot answer at once defers: hersh_http_defer suspends the
** connection, and the answer comes later, whole (hersh_http_complete) or as a stream of
** chunks (hersh_http_stream_*), from any thread (on the loop: from the loop thread, at
** any moment; the resumed connection calls the wake option, and the run the owner then
** makes sends the answer).
** Never stop a server from one of its own callbacks.
*/
#ifndef HERSH_HTTP_SERVER_H
#define HERSH_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct hersh_http_server hersh_http_server;

typedef struct hersh_http_request {
  void *conn; /* the MHD connection, for hersh_http_query */
  const char *method;
  const char *path;
  const char *body; /* NUL-terminated; NULL when there is none; freed after the handler returns */
  size_t body_len;
  void *state; /* server.c's own, for hersh_http_defer */
} hersh_http_request;

typedef struct hersh_http_response {
  int status;
  char *body; /* malloc'd, taken by the server; NULL = empty */
  size_t body_len;
  const char *content_type; /* default application/json */
  const char *allow;        /* the Allow header of a 405 */
  char *headers;            /* malloc'd, taken: more "Name: value\r\n" lines; NULL = none */
} hersh_http_response;

typedef void (*hersh_http_handler)(const hersh_http_request *req, hersh_http_response *res, void *ud);

/* Defaults of the limits below (a 0 in the options). */
#define HERSH_HTTP_MAX_CONNECTIONS 1024
#define HERSH_HTTP_MAX_PER_CLIENT 256
#define HERSH_HTTP_IDLE_TIMEOUT 10    /* seconds */
#define HERSH_HTTP_REQUEST_TIMEOUT 30 /* seconds */
/* The longest bearer token: tokens are compared over this many bytes. */
#define HERSH_HTTP_TOKEN_MAX 1024

typedef struct hersh_http_options {
  const char *bind; /* an IPv4 or IPv6 address; default 127.0.0.1 */
  int port;         /* 0: any free port */
  int listen_fd;    /* >= 0: serve this listening socket instead of binding */
  size_t max_body;  /* larger bodies get 413 */
  /* The bodies held at once, over all connections; a body that would pass it gets
  ** 503. 0: 4 * max_body. */
  size_t max_buffered;
  /* Non-NULL: every request but those for public_path, and the GETs and HEADs of
  ** public_prefix or a path under it (public_prefix "/"...), needs "Authorization:
  ** Bearer <token>"; the others get 401 from the headers, before their body is read. */
  const char *token;
  const char *public_path;
  const char *public_prefix;
  unsigned max_connections; /* open connections in all */
  unsigned max_per_client;  /* open connections from one client address */
  unsigned idle_timeout;    /* seconds a connection may stay silent */
  /* Seconds a request's headers and body may take to come in (counted from the end of
  ** the previous answer on a kept-alive connection): a client that trickles them is cut. */
  unsigned request_timeout;
  bool on_loop; /* no thread of its own: see the top of this file */
  /* On the loop: the listening socket is the front's (front.h), which accepts and hands
  ** libmicrohttpd the connections it does not serve itself (hersh_http_server_add). */
  bool front;
  /* On the loop: called (with the handler's ud) when a suspended connection resumes:
  ** the owner runs the server soon (MHD does not wake its fd for that). */
  void (*wake)(void *ud);
  /* Non-NULL: called (with the handler's ud) on each request's headers, before its body
  ** is read (req->body NULL), once the token and Content-Length checks passed. It may
  ** answer (fill res), or defer and take the body as a stream (hersh_http_body_take),
  ** or leave res alone: the body is then read and the handler called as usual. */
  void (*on_headers)(const hersh_http_request *req, hersh_http_response *res, void *ud);
} hersh_http_options;

int hersh_http_server_start(const hersh_http_options *opts, hersh_http_handler handler, void *ud,
                            hersh_http_server **out);
int hersh_http_server_port(const hersh_http_server *s);
/* On the loop: the descriptor to watch for reading (MHD's epoll fd), and one run of the
** server (every callback runs in it) that returns the milliseconds after which it must
** run again if the descriptor stays quiet (at most a second), or -1: only when the
** descriptor wakes (no connection is open). */
int hersh_http_server_fd(const hersh_http_server *s);
int hersh_http_server_run(hersh_http_server *s);
/* Stops accepting, answers the deferred requests still waiting with 503, cuts the open
** streams (their close callbacks run), lets the answers go out (waiting at most a
** second), ends the connections, and frees the server. Deferred requests and streams
** stay valid for their owners afterwards (their calls find them ended). */
void hersh_http_server_stop(hersh_http_server *s);
/* Stop's first step alone: no new connection is accepted, those open are answered and
** closed after their answer (Connection: close), no request can be deferred. */
void hersh_http_server_quiesce(hersh_http_server *s);
/* The connections open now (of those it could keep track of). */
unsigned hersh_http_server_connections(hersh_http_server *s);
const char *hersh_http_query(const hersh_http_request *req, const char *name);

/* A JSON error body {"error": "..."} with its status. */
void hersh_http_error(hersh_http_response *res, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- deferred answers -------------------------------------------------------------------
**
** In the handler (server thread only): hersh_http_defer(req) and return without filling
** `res`. NULL means the server is stopping (or out of memory): then fill `res` as usual.
** The caller then owns one hold on the pending request and gives it up through exactly
** one of hersh_http_complete or hersh_http_stream_start (whose stream it gives up through
** hersh_http_stream_end). Everything below may be called from any thread. */
typedef struct hersh_http_pending hersh_http_pending;
/* A stream is the pending request it answers. */
typedef struct hersh_http_pending hersh_http_stream;

hersh_http_pending *hersh_http_defer(const hersh_http_request *req);
/* Answers and gives up the hold; takes res->body and res->headers in every case.
** HERSH_E_STATE when the request had already ended (its client left, the server stopped). */
int hersh_http_complete(hersh_http_pending *p, hersh_http_response *res);

/* A request deferred by on_headers gives its body, as it arrives, to fn(ud, data, len),
** which returns how many bytes it took; fewer than len stops reading from the client
** (the connection is suspended) until hersh_http_body_resume, and the rest comes again.
** len 0 (data NULL): the body is all in, once. Without a taker, the body is dropped.
** Such a body is not held, so not counted in max_buffered; Content-Length over
** max_body is still refused and the request timeout still counts. Server's run/thread. */
typedef size_t (*hersh_http_body_fn)(void *ud, const char *data, size_t len);
void hersh_http_body_take(hersh_http_pending *p, hersh_http_body_fn fn, void *ud);
void hersh_http_body_resume(hersh_http_pending *p);

/* A write that finds this much already waiting for a slow client fails (HERSH_E_LIMIT). */
#define HERSH_HTTP_STREAM_MAX_BUFFER ((size_t)1 << 20)

/* Answers with a chunked body that follows: the pending hold becomes the stream's.
** content_type NULL: "text/plain; charset=utf-8"; headers as in hersh_http_response
** (copied). NULL when out of memory: the request is answered 500 and the hold given up. */
hersh_http_stream *hersh_http_stream_start(hersh_http_pending *p, int status, const char *content_type,
                                           const char *headers);
/* Appends a chunk. HERSH_E_STATE once the client is gone or the stream ended;
** HERSH_E_LIMIT when HERSH_HTTP_STREAM_MAX_BUFFER bytes already wait for the client
** (the caller should stop or drop data); a write into an empty buffer always goes. */
int hersh_http_stream_write(hersh_http_stream *s, const void *data, size_t len);
/* Finishes the body (what is buffered still goes out) and gives up the hold. */
void hersh_http_stream_end(hersh_http_stream *s);
/* The bytes written that wait for the client (a writer paces itself by it). */
size_t hersh_http_stream_waiting(hersh_http_stream *s);
/* Shuts the connection down at once, dropping what waits: a client too slow to keep. */
void hersh_http_stream_cut(hersh_http_stream *s);
/* Whether the client can no longer get writes: it left, or the stream was delivered,
** or the server stops. A suspended connection is not watched by libmicrohttpd, so
** this also looks at its socket: polling it notices a client that left mid-stream. */
bool hersh_http_stream_closed(hersh_http_stream *s);
/* fn(s, ud) runs once, when the connection of the stream ends for any reason (on the
** server's thread, or at once on the caller's if it already ended). ud must stay valid
** until then or until the server is stopped. */
typedef void (*hersh_http_close_fn)(hersh_http_stream *s, void *ud);
void hersh_http_stream_on_close(hersh_http_stream *s, hersh_http_close_fn fn, void *ud);
/* fn(s, ud) runs each time the client has taken every byte written so far (the buffer
** emptied; not after stream_end), in the server's run (on_loop) or on its thread: a
** writer that paused for a slow client goes on. NULL stops it. */
void hersh_http_stream_on_drain(hersh_http_stream *s, hersh_http_close_fn fn, void *ud);
/* The MHD connection of a pending request or stream (its headers, client address...),
** NULL once it ended (its on_close has run or is running). */
struct MHD_Connection;
struct MHD_Connection *hersh_http_pending_conn(hersh_http_pending *p);
/* Extra holds, for owners that hand the stream to another thread or keep it after end. */
void hersh_http_stream_retain(hersh_http_stream *s);
void hersh_http_stream_release(hersh_http_stream *s);

/* ---- for the front (front.h), on the loop ---------------------------------------------- */

/* The listening socket the front watches (-1 without the front option). The server
** closes it at stop (never shuts it down: another process may serve it next). */
int hersh_http_server_listen_fd(const hersh_http_server *s);
/* Whether quiesce or stop came: answers close their connection. */
bool hersh_http_server_stopping(hersh_http_server *s);
/* libmicrohttpd serves the connection fd from now on, reading the request still unread
** in it; fd is closed on failure too. */
int hersh_http_server_add(hersh_http_server *s, int fd, const struct sockaddr *addr, socklen_t len);
/* The bearer token check of every request (constant time), with its Authorization value. */
bool hersh_http_server_authorized(const hersh_http_server *s, const char *method, const char *path,
                                  const char *authorization);
/* Whether a body of len bytes is under max_body and what the server may still hold. */
bool hersh_http_server_body_fits(hersh_http_server *s, unsigned long long len);
/* The connection limits in force, and libmicrohttpd's connections from addr's address. */
void hersh_http_server_limits(const hersh_http_server *s, unsigned *max_connections, unsigned *max_per_client);
unsigned hersh_http_server_client_connections(hersh_http_server *s, const struct sockaddr *addr);
/* Whether two client addresses (IPv4 or IPv6) are the same host. */
bool hersh_http_same_address(const struct sockaddr *a, const struct sockaddr *b);

#endif
