/*
** server.c -- libmicrohttpd behind one handler call per request. The response is
** queued on a later call than the first for each request: queued on the first, MHD
** answers with "Connection: close" and keep-alive clients slow down about sevenfold.
*/
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/engine.h"
#include "http/server.h"

struct hersh_http_server {
  struct MHD_Daemon *daemon;
  hersh_http_handler handler;
  void *ud;
  size_t max_body;
  int port;
};

/* Per request: the body as it arrives. */
typedef struct request_state {
  char *body;
  size_t len, cap;
  bool too_large;
} request_state;

void hersh_http_error(hersh_http_response *res, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  hersh_buf b = {0};
  hersh_buf_puts(&b, "{\"error\":");
  hersh_buf_json_string(&b, text ? text : "error", text ? strlen(text) : 5);
  hersh_buf_puts(&b, "}\n");
  free(text);
  free(res->body);
  res->status = status;
  res->body = hersh_buf_take(&b);
  res->body_len = res->body ? strlen(res->body) : 0;
}

static bool append_body(request_state *st, const char *data, size_t n, size_t max) {
  if (st->too_large || st->len + n > max) {
    st->too_large = true; /* keep reading, so the client gets its 413 */
    return true;
  }
  if (st->len + n + 1 > st->cap) {
    size_t cap = st->cap ? st->cap : 1024;
    while (cap < st->len + n + 1) cap *= 2;
    char *p = realloc(st->body, cap);
    if (!p) return false;
    st->body = p;
    st->cap = cap;
  }
  memcpy(st->body + st->len, data, n);
  st->len += n;
  st->body[st->len] = '\0';
  return true;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, hersh_http_response *res) {
  if (!res->body) { /* never an empty body: an error says what happened */
    hersh_http_error(res, res->status >= 400 ? res->status : 500, "no response");
  }
  struct MHD_Response *r = MHD_create_response_from_buffer(res->body_len, res->body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(res->body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type ? res->content_type : "application/json");
  if (res->allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
  enum MHD_Result ok = MHD_queue_response(conn, (unsigned)res->status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
  (void)version;
  hersh_http_server *s = cls;
  request_state *st = *con_cls;
  if (!st) { /* the first call: only remember the request */
    st = calloc(1, sizeof *st);
    if (!st) return MHD_NO;
    *con_cls = st;
    return MHD_YES;
  }
  if (*upload_size) {
    bool ok = append_body(st, upload_data, *upload_size, s->max_body);
    *upload_size = 0;
    return ok ? MHD_YES : MHD_NO;
  }
  hersh_http_response res = {.status = 200};
  if (st->too_large) {
    hersh_http_error(&res, 413, "request body over %zu bytes", s->max_body);
  } else {
    hersh_http_request req = {conn, method, url, st->body, st->len};
    s->handler(&req, &res, s->ud);
  }
  return send_response(conn, &res);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode code) {
  (void)cls, (void)conn, (void)code;
  request_state *st = *con_cls;
  if (st) {
    free(st->body);
    free(st);
  }
  *con_cls = NULL;
}

const char *hersh_http_query(const hersh_http_request *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int hersh_http_server_start(const hersh_http_options *opts, hersh_http_handler handler, void *ud,
                            hersh_http_server **out) {
  *out = NULL;
  hersh_http_server *s = calloc(1, sizeof *s);
  if (!s) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP server");
  s->handler = handler;
  s->ud = ud;
  s->max_body = opts->max_body;
  /* ITC lets stop quiesce the daemon: see hersh_http_server_stop. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC;
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  const char *bind = opts->bind && *opts->bind ? opts->bind : "127.0.0.1";
  if (opts->listen_fd < 0) {
    struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, bind, &in4->sin_addr) == 1) {
      in4->sin_family = AF_INET;
      in4->sin_port = htons((uint16_t)opts->port);
    } else if (inet_pton(AF_INET6, bind, &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons((uint16_t)opts->port);
      flags |= MHD_USE_IPv6;
    } else {
      free(s);
      return hersh_fail_with(HERSH_E_INVAL, "bind address '%s' is not an IPv4 or IPv6 address", bind);
    }
  }
  if (opts->port < 0 || opts->port > 65535) {
    free(s);
    return hersh_fail_with(HERSH_E_INVAL, "port %d is out of range", opts->port);
  }
  if (opts->listen_fd >= 0) {
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, opts->listen_fd,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)10, MHD_OPTION_END);
  } else {
    s->daemon = MHD_start_daemon(flags, (uint16_t)opts->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  }
  if (!s->daemon) {
    free(s);
    if (opts->listen_fd >= 0) return hersh_fail_with(HERSH_E_SYS, "cannot serve the listening socket fd %d", opts->listen_fd);
    return hersh_fail_with(HERSH_E_SYS, "cannot listen on %s:%d (in use, or not allowed)", bind, opts->port);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : opts->port;
  *out = s;
  return 0;
}

int hersh_http_server_port(const hersh_http_server *s) { return s ? s->port : 0; }

/* MHD_stop_daemon would shutdown() the listening socket, which also breaks it for the
** process that handed it over (and for the next program it hands it to). Quiesced,
** the daemon gives the socket back, and closing our descriptor leaves theirs alone. */
void hersh_http_server_stop(hersh_http_server *s) {
  if (!s) return;
  MHD_socket fd = MHD_quiesce_daemon(s->daemon);
  MHD_stop_daemon(s->daemon);
  if (fd != MHD_INVALID_SOCKET) close(fd);
  free(s);
}
