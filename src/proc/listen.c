/*
** listen.c -- the sockets of published ports. A port is reserved by a bound socket
** (others cannot bind it, and a connection is refused at once rather than left
** waiting) and served by calling listen() on that socket when a program runs.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc/proc.h"

int hersh_bind_tcp(const char *host, int port, int *fd_out, int *bound_port) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 0 || port > 65535) return hersh_fail_with(HERSH_E_INVAL, "port %d is out of range", port);
  if (inet_pton(AF_INET, host ? host : "127.0.0.1", &addr.sin_addr) != 1)
    return hersh_fail_with(HERSH_E_INVAL, "'%s' is not an IPv4 address", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return hersh_fail_with(HERSH_E_SYS, "socket: %s", strerror(errno));
  /* No SO_REUSEADDR: with it, another socket that sets it too could share the port. */
  socklen_t len = sizeof addr;
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    int err = errno;
    close(fd);
    return hersh_fail_with(err == EADDRINUSE ? HERSH_E_STATE : HERSH_E_SYS, "cannot bind %s:%d: %s",
                           host ? host : "127.0.0.1", port, strerror(err));
  }
  *fd_out = fd;
  *bound_port = ntohs(addr.sin_port);
  return HERSH_OK;
}

int hersh_listen_fd(int fd) {
  if (listen(fd, 128) != 0) return hersh_fail_with(HERSH_E_SYS, "listen: %s", strerror(errno));
  return HERSH_OK;
}

int hersh_listen_tcp(const char *host, int port, int *fd, int *bound_port) {
  int rc = hersh_bind_tcp(host, port, fd, bound_port);
  if (rc == HERSH_OK && (rc = hersh_listen_fd(*fd)) != HERSH_OK) close(*fd);
  return rc;
}
