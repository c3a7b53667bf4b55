/*
** lsandbox.c -- the sandbox's own defences for the Host, as core.sandbox:
** seccomp_fd() -> a new descriptor holding the seccomp filter (hand it to bwrap as
** --seccomp N, then close it), args_fd(list) -> a new descriptor holding the strings
** NUL-separated (bwrap --args N: options kept out of /proc/<pid>/cmdline),
** strip_setid(root) after each build step, and status_fd() -> a new empty descriptor
** that hersh-init writes the program's end into, read by read_status(fd) -> string.
*/
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lhersh.h"
#include "proc/proc.h"

static int l_sandbox_seccomp_fd(lua_State *L) {
  int fd;
  int rc = hersh_seccomp_filter_fd(&fd);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_sandbox_args_fd(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer n = luaL_len(L, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!s || memchr(s, '\0', len)) return luaL_error(L, "args_fd: entry %d is not a string without NUL", (int)i);
    lua_pop(L, 1);
    luaL_addlstring(&b, s, len + 1); /* with its NUL */
  }
  luaL_pushresult(&b);
  size_t len;
  const char *bytes = lua_tolstring(L, -1, &len);
  int fd;
  int rc = hersh_memfd_bytes("hersh-args", bytes, len, &fd);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_sandbox_strip_setid(lua_State *L) {
  int rc = hersh_strip_setid(luaL_checkstring(L, 1));
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_sandbox_status_fd(lua_State *L) {
  int fd;
  int rc = hersh_memfd_bytes("hersh-status", "", 0, &fd);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushinteger(L, fd);
  return 1;
}

/* What the descriptor holds from offset 0 (a status is one short line). */
static int l_sandbox_read_status(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  char buf[1024];
  ssize_t n;
  do n = pread(fd, buf, sizeof buf, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return hersh_lua_push_failure(L, hersh_fail_with(HERSH_E_SYS, "cannot read the status: %s", strerror(errno)));
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

static const luaL_Reg sandbox_funcs[] = {{"seccomp_fd", l_sandbox_seccomp_fd},   {"args_fd", l_sandbox_args_fd},
                                         {"strip_setid", l_sandbox_strip_setid}, {"status_fd", l_sandbox_status_fd},
                                         {"read_status", l_sandbox_read_status}, {NULL, NULL}};

/* Sets module.sandbox on the module table at the stack top. */
int hersh_lsandbox_open(lua_State *L) {
  luaL_newlib(L, sandbox_funcs);
  lua_setfield(L, -2, "sandbox");
  return 0;
}
