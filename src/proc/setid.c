/*
** setid.c -- after a build step, an image holds no set-user-id or set-group-id file
** and nothing writable by group or others: its files belong to the unprivileged build
** user on the host, and a local user who became that user must not find a way into
** every image that shares it.
**
** It runs as root on the host over a tree a sandboxed step wrote, so it never follows
** a link: each entry is looked at without following, and files and directories are
** opened with O_NOFOLLOW and checked to be what was looked at before being changed.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc/proc.h"

enum { MAX_DEPTH = 256 };

static const mode_t unsafe_bits = S_ISUID | S_ISGID | S_IWGRP | S_IWOTH;

static int strip_at(int parent, const char *name, int depth, const char **why);

/* Takes fd (a directory) and closes it. */
static int strip_children(int fd, int depth, const char **why) {
  DIR *d = fdopendir(fd);
  if (!d) {
    int err = errno;
    close(fd);
    errno = err;
    *why = "opendir";
    return -1;
  }
  int rc = 0;
  for (;;) {
    errno = 0; /* readdir tells its end from its failure only by errno */
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno != 0) *why = "readdir", rc = -1;
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    rc = strip_at(dirfd(d), e->d_name, depth + 1, why);
    if (rc) break;
  }
  int err = errno;
  closedir(d);
  errno = err;
  return rc;
}

static int strip_at(int parent, const char *name, int depth, const char **why) {
  struct stat st;
  if (depth > MAX_DEPTH) {
    *why = "the image is nested too deep";
    errno = ENAMETOOLONG;
    return -1;
  }
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    *why = "stat";
    return -1;
  }
  if (S_ISLNK(st.st_mode)) return 0; /* a link's own mode means nothing */
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    /* fifos and sockets: opening them could block or connect; never follows either */
    if ((st.st_mode & unsafe_bits) && fchmodat(parent, name, st.st_mode & 07777 & ~unsafe_bits, AT_SYMLINK_NOFOLLOW)) {
      *why = "chmod";
      return -1;
    }
    return 0;
  }
  int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
  int fd = openat(parent, name, flags);
  struct stat now;
  if (fd < 0 || fstat(fd, &now) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    errno = err;
    *why = "open";
    return -1;
  }
  int rc = 0;
  if (now.st_ino != st.st_ino || now.st_dev != st.st_dev) { /* replaced under us: refuse */
    *why = "the image changed while it was checked";
    errno = EAGAIN;
    rc = -1;
  } else if ((now.st_mode & unsafe_bits) && fchmod(fd, now.st_mode & 07777 & ~unsafe_bits) != 0) {
    *why = "chmod";
    rc = -1;
  } else if (S_ISDIR(now.st_mode)) {
    return strip_children(fd, depth, why);
  }
  int err = errno;
  close(fd);
  errno = err;
  return rc;
}

int hersh_strip_setid(const char *root) {
  const char *why = NULL;
  if (strip_at(AT_FDCWD, root, 0, &why) != 0)
    return hersh_fail_with(HERSH_E_SYS, "cannot make %s safe (%s): %s", root, why, strerror(errno));
  return HERSH_OK;
}
