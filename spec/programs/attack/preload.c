/* The escape of spec/attack_sandbox_spec.lua: a shared object a program leaves in its
** own image and names in LD_PRELOAD. Loaded by a process on the host, its constructor
** writes a marker into $HERSH_SPEC_MARKER_DIR and connects to 127.0.0.1:$HERSH_SPEC_PORT;
** inside the sandbox neither exists. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void escape(void) {
  const char *dir = getenv("HERSH_SPEC_MARKER_DIR"), *port = getenv("HERSH_SPEC_PORT");
  if (dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/escaped-%d", dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
  }
  if (port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
      if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) {
        ssize_t w = write(s, "escaped\n", 8);
        (void)w;
      }
      close(s);
    }
  }
}
