/*
** unavailable.c -- the raw 503 responder of a port whose program is down: accept,
** read what came, send a fixed response, close. No HTTP parsing: whatever a client
** sent, the answer is the same, and it fits any socket buffer.
*/
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/binding.h"
#include "http/unavailable.h"

enum { PAUSE_MS = 1000, PER_WAKE = 64 };

struct hersh_http_unavailable {
  uv_poll_t poll;
  uv_timer_t pause; /* polling again after a shortage of descriptors or memory */
  int fd, open_handles;
  char *reply;
  size_t reply_len;
  hersh_http_accepted_fn each; /* NULL: the 503 */
  void *each_ud;
};

char *hersh_http_unavailable_reply(const char *body, size_t n, size_t *len) {
  char head[160];
  int h = snprintf(head, sizeof head,
                   "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n", n);
  char *reply = malloc((size_t)h + n);
  if (!reply) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory for a 503 reply");
    return NULL;
  }
  memcpy(reply, head, (size_t)h);
  memcpy(reply + h, body, n);
  *len = (size_t)h + n;
  return reply;
}

/* Whether an accept() error is about the one connection it dropped (the next accept
** may succeed) rather than about the listener (see accept(2), "Error handling"). */
static bool connection_error(int err) {
  switch (err) {
  case EINTR: case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT:
  case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case ENETUNREACH:
    return true;
  default:
    return false;
  }
}

void hersh_http_unavailable_send(int c, const char *reply, size_t len) {
  char sink[4096]; /* read what came: closing on unread data would reset the connection */
  while (recv(c, sink, sizeof sink, 0) > 0) {
  }
  ssize_t w = send(c, reply, len, MSG_NOSIGNAL);
  (void)w; /* a client gone already needs no answer */
  (void)shutdown(c, SHUT_WR);
  close(c);
}

/* Accepts at most max connections, each to `each` (NULL: the reply). As
** hersh_http_unavailable_answer. */
static int accept_some(int fd, const char *reply, size_t len, int max, hersh_http_accepted_fn each, void *ud) {
  for (int i = 0; i < max; i++) {
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      if (connection_error(errno)) continue;
      return errno;
    }
    if (each) each(c, reply, len, ud);
    else hersh_http_unavailable_send(c, reply, len);
  }
  return 0;
}

int hersh_http_unavailable_answer(int fd, const char *reply, size_t len, int max) {
  return accept_some(fd, reply, len, max, NULL, NULL);
}

static void closed(uv_handle_t *h) {
  hersh_http_unavailable *u = h->data;
  if (--u->open_handles > 0) return;
  free(u->reply);
  free(u);
}

static void ready(uv_poll_t *h, int status, int events);

static void resume(uv_timer_t *t) {
  hersh_http_unavailable *u = t->data;
  (void)uv_poll_start(&u->poll, UV_READABLE, ready); /* fails only on a closing handle */
}

static void ready(uv_poll_t *h, int status, int events) {
  (void)events;
  hersh_http_unavailable *u = h->data;
  int err = status < 0 ? -status : accept_some(u->fd, u->reply, u->reply_len, PER_WAKE, u->each, u->each_ud);
  if (!err) return;
  /* A listener that cannot accept stays readable: polling it on would spin the loop.
  ** A shortage passes (try again later); anything else is for good. */
  uv_poll_stop(&u->poll);
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    (void)uv_timer_start(&u->pause, resume, PAUSE_MS, 0); /* fails only on a closing handle */
    return;
  }
  fprintf(stderr, "hersh: stopped answering on fd %d: %s\n", u->fd, strerror(err));
}

int hersh_http_unavailable_start(uv_loop_t *loop, int fd, const char *body, size_t n, hersh_http_unavailable **out) {
  return hersh_http_unavailable_start_with(loop, fd, body, n, NULL, NULL, out);
}

int hersh_http_unavailable_start_with(uv_loop_t *loop, int fd, const char *body, size_t n, hersh_http_accepted_fn each,
                                      void *ud, hersh_http_unavailable **out) {
  *out = NULL;
  hersh_http_unavailable *u = calloc(1, sizeof *u);
  if (!u) return hersh_fail_with(HERSH_E_NOMEM, "out of memory answering fd %d", fd);
  u->fd = fd;
  u->each = each;
  u->each_ud = ud;
  if (!(u->reply = hersh_http_unavailable_reply(body, n, &u->reply_len))) {
    free(u);
    return HERSH_E_NOMEM;
  }
  /* uv_poll_init makes fd non-blocking: the Host's accept never waits. */
  int rc = uv_poll_init(loop, &u->poll, fd);
  if (rc) {
    free(u->reply);
    free(u);
    return hersh_fail_with(HERSH_E_SYS, "cannot watch fd %d: %s", fd, uv_strerror(rc));
  }
  (void)uv_timer_init(loop, &u->pause); /* cannot fail */
  u->poll.data = u->pause.data = u;
  u->open_handles = 2;
  rc = uv_poll_start(&u->poll, UV_READABLE, ready);
  if (rc) {
    hersh_http_unavailable_stop(u);
    return hersh_fail_with(HERSH_E_SYS, "cannot watch fd %d: %s", fd, uv_strerror(rc));
  }
  *out = u;
  return HERSH_OK;
}

void hersh_http_unavailable_stop(hersh_http_unavailable *u) {
  if (!u || uv_is_closing((uv_handle_t *)&u->poll)) return;
  uv_close((uv_handle_t *)&u->poll, closed);
  uv_close((uv_handle_t *)&u->pause, closed);
}
