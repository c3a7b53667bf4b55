/*
** relay.c -- the published port joined to a program's unix socket (relay.h). The
** accepting is unavailable.c's (its pause on a shortage of descriptors included);
** each accepted connection becomes a pair of libuv streams copying bytes both ways,
** with back-pressure: a side whose peer has more than MAX_QUEUED bytes unsent stops
** being read until they are sent. An end of stream is passed on as a shutdown, so
** half-closed connections work; the pair closes when both directions ended or on any
** error.
**
** The program may write in the socket's directory: it could put a symbolic link where
** the socket should be, to make the Host connect to another socket of the machine.
** So the socket is opened without following links (O_PATH | O_NOFOLLOW), checked to be
** a socket, and connected to through that very descriptor (/proc/self/fd/N).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/binding.h"
#include "http/relay.h"
#include "http/unavailable.h"

enum { READ_SIZE = 64 * 1024, MAX_QUEUED = 256 * 1024 };

typedef struct pair pair;

struct hersh_http_relay {
  hersh_http_unavailable *acceptor;
  uv_loop_t *loop;
  char *path;
  pair *pairs; /* the open ones, a doubly linked list */
  int refs;    /* 1 until stopped, plus one per pair not yet freed */
};

enum { CLIENT, PROGRAM };

struct pair {
  pair *prev, *next;
  hersh_http_relay *r;
  uv_tcp_t client;
  uv_pipe_t program;
  bool paused[2], ended[2]; /* per side: reading stopped for back-pressure; its end seen and passed on */
  int open_handles;
  bool closing;
};

typedef struct write_req {
  uv_write_t req;
  pair *p;
  int from; /* the side the bytes were read from */
  char *base;
} write_req;

static uv_stream_t *side(pair *p, int s) {
  return s == CLIENT ? (uv_stream_t *)&p->client : (uv_stream_t *)&p->program;
}

static void release(hersh_http_relay *r) {
  if (--r->refs > 0) return;
  free(r->path);
  free(r);
}

static void pair_closed(uv_handle_t *h) {
  pair *p = h->data;
  if (--p->open_handles > 0) return;
  hersh_http_relay *r = p->r;
  free(p);
  release(r);
}

static void pair_close(pair *p) {
  if (p->closing) return;
  p->closing = true;
  if (p->prev) p->prev->next = p->next;
  else p->r->pairs = p->next;
  if (p->next) p->next->prev = p->prev;
  uv_close((uv_handle_t *)&p->client, pair_closed);
  uv_close((uv_handle_t *)&p->program, pair_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = malloc(READ_SIZE);
  buf->len = buf->base ? READ_SIZE : 0; /* 0: libuv reports UV_ENOBUFS to on_read */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  pair *p = w->p;
  int from = w->from;
  free(w->base);
  free(w);
  if (p->closing) return;
  if (status < 0) return pair_close(p);
  uv_stream_t *to = side(p, !from);
  if (p->paused[from] && to->write_queue_size == 0) {
    p->paused[from] = false;
    if (uv_read_start(side(p, from), on_alloc, on_read) != 0) pair_close(p);
  }
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  pair *p = req->data;
  free(req);
  if (p->closing) return;
  if (status < 0 || (p->ended[CLIENT] && p->ended[PROGRAM])) pair_close(p);
}

/* The end of what side `from` sends: the other side's writing is shut down after what
** is queued. */
static void pass_end(pair *p, int from) {
  p->ended[from] = true;
  (void)uv_read_stop(side(p, from));
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) return pair_close(p);
  req->data = p;
  if (uv_shutdown(req, side(p, !from), on_shutdown) != 0) {
    free(req);
    pair_close(p);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pair *p = s->data;
  int from = s == side(p, CLIENT) ? CLIENT : PROGRAM;
  if (nread <= 0) {
    free(buf->base);
    if (nread == UV_EOF) pass_end(p, from);
    else if (nread < 0) pair_close(p);
    return;
  }
  uv_stream_t *to = side(p, !from);
  write_req *w = malloc(sizeof *w);
  if (!w) {
    free(buf->base);
    return pair_close(p);
  }
  *w = (write_req){.p = p, .from = from, .base = buf->base};
  uv_buf_t out = uv_buf_init(buf->base, (unsigned int)nread);
  if (uv_write(&w->req, to, &out, 1, on_written) != 0) {
    free(w->base);
    free(w);
    return pair_close(p);
  }
  if (to->write_queue_size > MAX_QUEUED) {
    p->paused[from] = true;
    (void)uv_read_stop(s);
  }
}

/* A connection to the program's socket at path, not following a link there:
** the descriptor, or -1 (nothing listens there yet, or it is no socket). */
static int connect_program(const char *path) {
  int at = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (at < 0) return -1;
  struct stat st;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int fd = -1;
  if (fstat(at, &st) == 0 && S_ISSOCK(st.st_mode) &&
      snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d", at) < (int)sizeof addr.sun_path)
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    close(fd); /* refused, or its backlog is full (EAGAIN): unavailable now */
    fd = -1;
  }
  close(at);
  return fd;
}

static void accepted(int c, const char *reply, size_t len, void *ud) {
  hersh_http_relay *r = ud;
  int fd = connect_program(r->path);
  pair *p = fd >= 0 ? calloc(1, sizeof *p) : NULL;
  if (!p) {
    if (fd >= 0) close(fd);
    return hersh_http_unavailable_send(c, reply, len);
  }
  p->r = r;
  /* Init cannot fail for these types; open only on a bad descriptor. */
  (void)uv_tcp_init(r->loop, &p->client);
  (void)uv_pipe_init(r->loop, &p->program, 0);
  p->client.data = p->program.data = p;
  p->open_handles = 2;
  r->refs++;
  p->next = r->pairs;
  if (r->pairs) r->pairs->prev = p;
  r->pairs = p;
  if (uv_tcp_open(&p->client, c) != 0) {
    close(c);
    c = -1;
  }
  if (uv_pipe_open(&p->program, fd) != 0) {
    close(fd);
    fd = -1;
  }
  if (c < 0 || fd < 0 || uv_read_start(side(p, CLIENT), on_alloc, on_read) != 0 ||
      uv_read_start(side(p, PROGRAM), on_alloc, on_read) != 0)
    pair_close(p);
}

int hersh_http_relay_start(uv_loop_t *loop, int fd, const char *path, const char *body, size_t n,
                           hersh_http_relay **out) {
  *out = NULL;
  hersh_http_relay *r = calloc(1, sizeof *r);
  char *copy = strdup(path);
  if (!r || !copy) {
    free(r);
    free(copy);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory relaying fd %d", fd);
  }
  *r = (hersh_http_relay){.loop = loop, .path = copy, .refs = 1};
  int rc = hersh_http_unavailable_start_with(loop, fd, body, n, accepted, r, &r->acceptor);
  if (rc) {
    free(r->path);
    free(r);
    return rc;
  }
  *out = r;
  return HERSH_OK;
}

void hersh_http_relay_stop(hersh_http_relay *r) {
  if (!r || !r->acceptor) return;
  hersh_http_unavailable_stop(r->acceptor);
  r->acceptor = NULL;
  while (r->pairs) pair_close(r->pairs);
  release(r);
}
