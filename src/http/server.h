/*
** server.h -- a small HTTP server on libmicrohttpd. Handlers run on the server's own
** thread; they answer from state that is safe to read there (a snapshot, an atomic,
** a queue that takes pushes from any thread).
*/
#ifndef HERSH_HTTP_SERVER_H
#define HERSH_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hersh_http_server hersh_http_server;

typedef struct hersh_http_request {
  void *conn; /* the MHD connection, for hersh_http_query */
  const char *method;
  const char *path;
  const char *body; /* NUL-terminated; NULL when there is none */
  size_t body_len;
} hersh_http_request;

typedef struct hersh_http_response {
  int status;
  char *body; /* malloc'd, taken by the server; NULL = empty */
  size_t body_len;
  const char *content_type; /* default application/json */
  const char *allow;        /* the Allow header of a 405 */
} hersh_http_response;

typedef void (*hersh_http_handler)(const hersh_http_request *req, hersh_http_response *res, void *ud);

typedef struct hersh_http_options {
  const char *bind; /* an IPv4 or IPv6 address; default 127.0.0.1 */
  int port;         /* 0: any free port */
  int listen_fd;    /* >= 0: serve this listening socket instead of binding */
  size_t max_body;  /* larger bodies get 413 */
} hersh_http_options;

int hersh_http_server_start(const hersh_http_options *opts, hersh_http_handler handler, void *ud,
                            hersh_http_server **out);
int hersh_http_server_port(const hersh_http_server *s);
/* Stops accepting, finishes the requests under way, and frees the server. */
void hersh_http_server_stop(hersh_http_server *s);
const char *hersh_http_query(const hersh_http_request *req, const char *name);

/* A JSON error body {"error": "..."} with its status. */
void hersh_http_error(hersh_http_response *res, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
