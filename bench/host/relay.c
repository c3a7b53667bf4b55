/*
** relay.c -- the floor under any proxy on this machine: a byte relay that knows no HTTP.
** One thread, epoll, each client connection paired with its own connection to the
** upstream port, and every read on one side written to the other as it is. It parses,
** pools, filters and checks nothing, so it costs only what every proxy pays: a second
** loopback exchange and the wake-ups around it. bench/host/run.lua measures it beside
** the Host's proxy and nginx.
**
**   bench_relay UPSTREAM_PORT     prints its own port on the first line, serves until killed
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUFFER = 64 << 10, EVENTS = 64 };

/* One direction's peer: the fd an epoll event came from is paired with `peer`. */
typedef struct side {
  int fd;
  struct side *peer;
  struct side *next_closed; /* freed after the batch of events that may still name it */
  int closed;
} side;

static side *closed_list;

static void fail(const char *what) {
  perror(what);
  exit(1);
}

static int upstream_socket(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
      connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Writes all of it (the sockets block for writes: a benchmark's answers are small). */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void close_pair(int ep, side *s) {
  side *first = s < s->peer ? s : s->peer; /* both sides are one allocation */
  for (side *x = first; x <= first + 1; x++) {
    (void)epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
    close(x->fd);
    x->closed = 1;
  }
  first->next_closed = closed_list;
  closed_list = first;
}

static int watch(int ep, side *s) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
  return epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void accept_one(int ep, int listener, int upstream_port) {
  int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (client < 0) return;
  int one = 1;
  int up = upstream_socket(upstream_port);
  side *pair = calloc(2, sizeof *pair);
  if (up < 0 || !pair || setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
    if (up >= 0) close(up);
    close(client);
    free(pair);
    return;
  }
  pair[0] = (side){.fd = client, .peer = &pair[1]};
  pair[1] = (side){.fd = up, .peer = &pair[0]};
  if (watch(ep, &pair[0]) < 0 || watch(ep, &pair[1]) < 0) close_pair(ep, &pair[0]);
}

int main(int argc, char **argv) {
  int upstream_port = argc == 2 ? atoi(argv[1]) : 0;
  if (upstream_port <= 0 || upstream_port > 65535) {
    fprintf(stderr, "usage: bench_relay UPSTREAM_PORT\n");
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) < 0 || listen(listener, 128) < 0 ||
      getsockname(listener, (struct sockaddr *)&a, &len) < 0)
    fail("listen");
  printf("%d\n", ntohs(a.sin_port));
  if (fflush(stdout) != 0) fail("stdout");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  side listening = {.fd = listener};
  if (ep < 0 || watch(ep, &listening) < 0) fail("epoll");
  static char buf[BUFFER];
  for (;;) {
    struct epoll_event ev[EVENTS];
    int n = epoll_wait(ep, ev, EVENTS, -1);
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; i++) {
      side *s = ev[i].data.ptr;
      if (s->closed) continue;
      if (s == &listening) {
        accept_one(ep, listener, upstream_port);
        continue;
      }
      ssize_t r = read(s->fd, buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0 || write_all(s->peer->fd, buf, (size_t)r) < 0) close_pair(ep, s);
    }
    while (closed_list) {
      side *next = closed_list->next_closed;
      free(closed_list);
      closed_list = next;
    }
  }
}
