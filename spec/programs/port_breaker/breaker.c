/* The attacker of spec/attack_port_spec.lua: damages the listening socket the Host
** hands over as fd 3 in the way $BREAK names, says what it did, and exits 3. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A socket filter that drops every packet, locked so that nobody can remove it. */
static int drop_all(int fd) {
  struct sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  struct sock_fprog prog = {.len = 1, .filter = code};
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) return -1;
  return setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof one);
}

/* Blocking mode on the shared file description: a Host that accepts on it blocks. */
static int blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Without SO_REUSEADDR, a new socket cannot bind the port while this one is bound. */
static int no_reuse_shut(int fd) {
  int zero = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero) != 0) return -1;
  return shutdown(fd, SHUT_RD);
}

int main(void) {
  const char *how = getenv("BREAK");
  int rc;
  if (!how) how = "";
  if (strcmp(how, "shut_rd") == 0) rc = shutdown(3, SHUT_RD);
  else if (strcmp(how, "shut_rdwr") == 0) rc = shutdown(3, SHUT_RDWR);
  else if (strcmp(how, "backlog0") == 0) rc = listen(3, 0);
  else if (strcmp(how, "blocking") == 0) rc = blocking(3);
  else if (strcmp(how, "no_reuse_shut") == 0) rc = no_reuse_shut(3);
  else if (strcmp(how, "drop_all") == 0) rc = drop_all(3);
  else {
    fprintf(stderr, "breaker: unknown BREAK '%s'\n", how);
    return 2;
  }
  fprintf(stderr, "breaker: %s: %s\n", how, rc == 0 ? "done" : strerror(errno));
  return 3;
}
