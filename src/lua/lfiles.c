/*
** lfiles.c -- the file operations the Host and the build need, as core.fs: make and
** remove trees, read, write (atomically) and copy files, stat, list, chmod and lock.
** Failures return nil, message, code ("ENOENT", "EACCES", ...) with the path in the
** message. Files a program or a build step may have made are opened O_NONBLOCK and
** checked with fstat: a FIFO or a device must never block the Host's loop.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lhersh.h"

static const char *errno_code(int e) {
  switch (e) {
  case ENOENT: return "ENOENT";
  case EEXIST: return "EEXIST";
  case EACCES: return "EACCES";
  case EPERM: return "EPERM";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case ENOSPC: return "ENOSPC";
  case ENOTEMPTY: return "ENOTEMPTY";
  case EROFS: return "EROFS";
  case EDQUOT: return "ENOSPC";
  default: return "EIO";
  }
}

static int fail(lua_State *L, const char *what, const char *path, int e) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(e));
  lua_pushstring(L, errno_code(e));
  return 3;
}

static const char *kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

static int fail_not_regular(lua_State *L, const char *what, const char *path, mode_t m) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: it is %s, not a regular file", what, path, kind_of(m));
  lua_pushstring(L, "ENOTREG");
  return 3;
}

/* An open that failed: a socket (ENXIO) is named as such, like a FIFO would be. */
static int fail_open(lua_State *L, const char *what, const char *path, int e) {
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
    return fail_not_regular(L, what, path, st.st_mode);
  return fail(L, what, path, e);
}

/* Opens a regular file to read without blocking on whatever else `path` may be. */
static int open_regular(const char *path, int flags, struct stat *st) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | flags);
  if (fd < 0) return -1;
  if (fstat(fd, st) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static int ok(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* mkdir -p, with `mode` for the directories it makes. */
static int mkdir_p(char *path, mode_t mode) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int rc = mkdir(path, mode);
    *p = '/';
    if (rc != 0 && errno != EEXIST) return -1;
  }
  return mkdir(path, mode) != 0 && errno != EEXIST ? -1 : 0;
}

static int l_fs_mkdir_p(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
  luaL_Buffer b;
  char *copy = luaL_buffinitsize(L, &b, strlen(path) + 1);
  memcpy(copy, path, strlen(path) + 1);
  if (mkdir_p(copy, mode) != 0) return fail(L, "cannot create", path, errno);
  return ok(L);
}

/* rm -rf without following symbolic links out of the tree. */
static int remove_at(int dirfd, const char *name) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlinkat(dirfd, name, 0);
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) rc = remove_at(fd, e->d_name);
  closedir(d);
  return rc == 0 ? unlinkat(dirfd, name, AT_REMOVEDIR) : rc;
}

static int l_fs_remove_tree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_argcheck(L, strcmp(path, "/") != 0 && *path, 1, "refusing to remove '/' or ''");
  if (remove_at(AT_FDCWD, path) != 0) return fail(L, "cannot remove", path, errno);
  return ok(L);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* write_file(path, data [, mode]): a temporary file renamed over the target, so a
** reader sees the old content or the new, never half of it. */
static int l_fs_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = (mode_t)luaL_optinteger(L, 3, 0644);
  const char *tmp = lua_pushfstring(L, "%s.tmp-%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
  if (fd < 0) return fail(L, "cannot write", path, errno);
  int rc = write_all(fd, data, len);
  int e = errno;
  if (rc == 0 && fsync(fd) != 0) rc = -1, e = errno;
  if (close(fd) != 0 && rc == 0) rc = -1, e = errno;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1, e = errno;
  if (rc != 0) {
    unlink(tmp);
    return fail(L, "cannot write", path, e);
  }
  return ok(L);
}

static int l_fs_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  int fd = open_regular(path, 0, &st);
  if (fd < 0) return fail_open(L, "cannot read", path, errno);
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail_not_regular(L, "cannot read", path, st.st_mode);
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    ssize_t n = read(fd, p, LUAL_BUFFERSIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return fail(L, "cannot read", path, e);
    }
    if (n == 0) break;
    luaL_addsize(&b, (size_t)n);
  }
  close(fd);
  luaL_pushresult(&b);
  return 1;
}

/* copy_file(from, to [, mode]): the mode of `from` unless given. An existing `to` is
** replaced (unlinked, then made anew): never written through, whatever it links to;
** one that is not a regular file is refused ("ENOTREG"). */
static int l_fs_copy_file(lua_State *L) {
  const char *from = luaL_checkstring(L, 1), *to = luaL_checkstring(L, 2);
  lua_Integer given = luaL_optinteger(L, 3, -1); /* before any open: it may raise */
  struct stat st;
  if (lstat(to, &st) == 0 && !S_ISREG(st.st_mode)) return fail_not_regular(L, "cannot write", to, st.st_mode);
  int in = open_regular(from, O_NOFOLLOW, &st);
  if (in < 0) return fail_open(L, "cannot read", from, errno);
  if (!S_ISREG(st.st_mode)) {
    close(in);
    return fail_not_regular(L, "cannot read", from, st.st_mode);
  }
  mode_t mode = given >= 0 ? (mode_t)given : st.st_mode & 07777;
  int out = -1;
  if (unlink(to) == 0 || errno == ENOENT) /* O_EXCL: what appeared since is refused, not followed */
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
  if (out < 0) {
    int e = errno;
    close(in);
    return fail(L, "cannot write", to, e);
  }
  char buf[65536];
  int rc = 0, e = 0;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0) rc = -1, e = errno;
      break;
    }
    if (write_all(out, buf, (size_t)n) != 0) {
      rc = -1, e = errno;
      break;
    }
  }
  close(in);
  if (close(out) != 0 && rc == 0) rc = -1, e = errno;
  if (rc != 0) return fail(L, "cannot copy to", to, e);
  return ok(L);
}

/* realpath(path) -> the absolute path with no link, "." or ".." in it | nil, err, code */
static int l_fs_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char real[PATH_MAX]; /* on the stack: lua_pushstring may raise */
  if (!realpath(path, real)) return fail(L, "cannot resolve", path, errno);
  lua_pushstring(L, real);
  return 1;
}

/* stat(path) -> {type = "file"|"dir"|"link"|"other", size = n, mode = n} | nil, err, code */
static int l_fs_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) return fail(L, "cannot stat", path, errno);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : S_ISLNK(st.st_mode) ? "link" : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  return 1;
}

/* list(dir) -> sorted names (without . and ..) */
static int l_fs_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return fail(L, "cannot list", path, errno);
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name); /* a memory error here leaks `d`: it cannot happen short of OOM */
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, -3);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 1;
}

static int chown_at(int dirfd, const char *name, uid_t uid, gid_t gid, bool recursive) {
  if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return -1;
  struct stat st;
  if (!recursive || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) return 0;
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (!d) {
    if (fd >= 0) close(fd);
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) rc = chown_at(fd, e->d_name, uid, gid, true);
  closedir(d);
  return rc;
}

/* chown(path, uid, gid [, recursive]): links are changed themselves, never followed. */
static int l_fs_chown(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uid_t uid = (uid_t)luaL_checkinteger(L, 2);
  gid_t gid = (gid_t)luaL_checkinteger(L, 3);
  if (chown_at(AT_FDCWD, path, uid, gid, lua_toboolean(L, 4)) != 0) return fail(L, "cannot chown", path, errno);
  return ok(L);
}

static int l_fs_symlink(lua_State *L) {
  const char *target = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  if (symlink(target, path) != 0 && errno != EEXIST) return fail(L, "cannot link", path, errno);
  return ok(L);
}

/* chmod(path, mode): a symbolic link is refused, never followed. */
static int l_fs_chmod(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mode_t mode = (mode_t)luaL_checkinteger(L, 2);
  struct stat st;
  if (lstat(path, &st) != 0) return fail(L, "cannot chmod", path, errno);
  if (S_ISLNK(st.st_mode)) return fail(L, "cannot chmod", path, ELOOP);
  if (chmod(path, mode) != 0) return fail(L, "cannot chmod", path, errno);
  return ok(L);
}

/* The pid written in a lock file, or 0. */
static long lock_holder(int fd) {
  char buf[24];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  long pid = strtol(buf, NULL, 10);
  return pid > 0 ? pid : 0;
}

/* lock(path) -> fd | nil, err, code: an exclusive flock on `path` (made 0600) with our
** pid written inside, held until the process ends (the fd is never closed, and not
** inherited by what we exec). "EBUSY" when another process holds it, naming its pid. */
static int l_fs_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) return fail(L, "cannot lock", path, errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    long holder = e == EWOULDBLOCK ? lock_holder(fd) : 0;
    close(fd);
    if (e != EWOULDBLOCK) return fail(L, "cannot lock", path, e);
    lua_pushnil(L);
    if (holder) lua_pushfstring(L, "%s is held by pid %d", path, (int)holder);
    else lua_pushfstring(L, "%s is held by another process", path);
    lua_pushstring(L, "EBUSY");
    return 3;
  }
  char pid[24];
  int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  errno = EIO; /* what a short write leaves */
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    int e = errno;
    close(fd);
    return fail(L, "cannot lock", path, e);
  }
  lua_pushinteger(L, fd);
  return 1;
}

static const luaL_Reg fs_funcs[] = {{"mkdir_p", l_fs_mkdir_p},     {"remove_tree", l_fs_remove_tree},
                                    {"write_file", l_fs_write_file}, {"read_file", l_fs_read_file},
                                    {"copy_file", l_fs_copy_file},   {"stat", l_fs_stat},
                                    {"list", l_fs_list},             {"symlink", l_fs_symlink},
                                    {"chown", l_fs_chown},           {"chmod", l_fs_chmod},
                                    {"lock", l_fs_lock},             {"realpath", l_fs_realpath},
                                    {NULL, NULL}};

/* Sets module.fs on the module table at the stack top. */
int hersh_lfiles_open(lua_State *L) {
  luaL_newlib(L, fs_funcs);
  lua_setfield(L, -2, "fs");
  return 0;
}
