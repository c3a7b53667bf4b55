/*
** listen_exec.c -- a test tool: hands a listening socket to a program the way
** systemd does.
**
**   listen_exec PORTFILE CMD [ARGS...]
**
** Opens a TCP socket listening on 127.0.0.1 on a free port, writes the port number
** (and a newline) to PORTFILE, moves the socket to fd 3, sets LISTEN_FDS=1 and
** LISTEN_PID to its own pid (exec keeps the pid), and execs CMD with ARGS (CMD is
** looked up on PATH). Any failure prints a message to stderr and exits 127.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { LISTEN_FD = 3, EXIT_TOOL = 127 };

static _Noreturn void die(const char *what) {
  fprintf(stderr, "listen_exec: %s: %s\n", what, strerror(errno));
  exit(EXIT_TOOL);
}

/* Writes the port to `path` through a temporary file renamed into place, so a
** reader never sees a partial number. */
static void write_port(const char *path, unsigned port) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 5);
  if (!tmp) die("malloc");
  memcpy(tmp, path, len);
  memcpy(tmp + len, ".tmp", 5);
  FILE *f = fopen(tmp, "w");
  if (!f) die(tmp);
  if (fprintf(f, "%u\n", port) < 0) die("writing the port file");
  if (fclose(f) != 0) die("closing the port file");
  if (rename(tmp, path) != 0) die("renaming the port file");
  free(tmp);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: listen_exec PORTFILE CMD [ARGS...]\n");
    return EXIT_TOOL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("setsockopt SO_REUSEADDR");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(0);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("bind 127.0.0.1:0");
  if (listen(fd, 64) != 0) die("listen");
  socklen_t alen = sizeof addr;
  if (getsockname(fd, (struct sockaddr *)&addr, &alen) != 0) die("getsockname");

  if (fd != LISTEN_FD) {
    if (dup2(fd, LISTEN_FD) < 0) die("dup2 to fd 3");
    if (close(fd) != 0) die("close");
  }
  /* dup2 clears FD_CLOEXEC on the copy; make sure of it when the socket was already fd 3. */
  int flags = fcntl(LISTEN_FD, F_GETFD);
  if (flags < 0) die("fcntl F_GETFD");
  if (fcntl(LISTEN_FD, F_SETFD, flags & ~FD_CLOEXEC) != 0) die("fcntl F_SETFD");

  char pid[32];
  snprintf(pid, sizeof pid, "%ld", (long)getpid());
  if (setenv("LISTEN_FDS", "1", 1) != 0) die("setenv LISTEN_FDS");
  if (setenv("LISTEN_PID", pid, 1) != 0) die("setenv LISTEN_PID");

  /* The port file last: once it exists, the socket is ready to take connections. */
  write_port(argv[1], (unsigned)ntohs(addr.sin_port));
  execvp(argv[2], argv + 2);
  die(argv[2]);
}
