/*
** memfd.c -- bytes handed to a child through a descriptor instead of its command line
** or environment: both are readable by every local user in /proc/<pid>/cmdline (and
** by the program itself inside the sandbox), a memfd only by whoever holds it.
*/
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proc/proc.h"

int hersh_memfd_bytes(const char *name, const void *data, size_t len, int *out) {
  *out = -1;
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return hersh_fail_with(HERSH_E_SYS, "memfd_create: %s", strerror(errno));
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      close(fd);
      return hersh_fail_with(HERSH_E_SYS, "cannot write %s: %s", name, strerror(err));
    }
    p += n;
    left -= (size_t)n;
  }
  if (lseek(fd, 0, SEEK_SET) != 0) { /* the reader starts at the current offset */
    int err = errno;
    close(fd);
    return hersh_fail_with(HERSH_E_SYS, "cannot rewind %s: %s", name, strerror(err));
  }
  *out = fd;
  return HERSH_OK;
}
