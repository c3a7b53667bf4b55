/* listen.c -- a listening TCP socket, for a port published to programs. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proc/proc.h"

int hersh_listen_tcp(const char *host, int port, int *fd_out, int *bound_port) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 0 || port > 65535) return hersh_fail_with(HERSH_E_INVAL, "port %d is out of range", port);
  if (inet_pton(AF_INET, host ? host : "127.0.0.1", &addr.sin_addr) != 1)
    return hersh_fail_with(HERSH_E_INVAL, "'%s' is not an IPv4 address", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return hersh_fail_with(HERSH_E_SYS, "socket: %s", strerror(errno));
  /* SO_REUSEADDR: a port whose old connections linger in TIME_WAIT can be taken again
  ** (after a Host restart). A listening socket still cannot be shared. */
  int one = 1;
  socklen_t len = sizeof addr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 128) != 0 ||
      getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
    int err = errno;
    close(fd);
    return hersh_fail_with(err == EADDRINUSE ? HERSH_E_STATE : HERSH_E_SYS, "cannot listen on %s:%d: %s",
                           host ? host : "127.0.0.1", port, strerror(err));
  }
  *fd_out = fd;
  *bound_port = ntohs(addr.sin_port);
  return HERSH_OK;
}
