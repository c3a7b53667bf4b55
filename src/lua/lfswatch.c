/*
** lfswatch.c -- file system events for Lua (inotify through libuv's uv_fs_event):
** core.fs_watch(path, fn) calls fn(name, "change" | "rename") when the file `path`,
** or something in the directory `path`, changes, until w:stop();
** core.file_id(path | file) names the file behind a path or an open Lua file, so a
** reader can tell that a name now stands for another file (a log was rotated).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lhersh.h"

#define HERSH_FSWATCH_MT "hersh.FsWatch"

typedef struct lfswatch {
  hersh_lhandle *h; /* NULL once stopped */
  int fn_ref;       /* owned by h, which also anchors the userdata while it watches */
} lfswatch;

#define check_fswatch(L, i) ((lfswatch *)luaL_checkudata((L), (i), HERSH_FSWATCH_MT))

static void on_event(uv_fs_event_t *ev, const char *name, int events, int status) {
  lfswatch *w = ev->data;
  hersh_lmod *m = w->h->m;
  lua_State *L = m->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 5)) {
    fprintf(stderr, "hersh: fs_watch: Lua stack overflow\n");
    return;
  }
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref); /* on the stack: fn may stop w */
  if (name) lua_pushstring(L, name);
  else lua_pushnil(L);
  if (status < 0) {
    lua_pushliteral(L, "error");
    lua_pushstring(L, uv_strerror(status));
  } else {
    lua_pushstring(L, events & UV_RENAME ? "rename" : "change");
    lua_pushnil(L);
  }
  hersh_lua_status rc = hersh_lua_pcall(m, L, 3, 0, 0);
  if (rc != HERSH_LUA_OK) {
    const char *msg = rc == HERSH_LUA_NOMEM ? "out of memory" : lua_tostring(L, -1);
    fprintf(stderr, "hersh: fs_watch callback: %s\n", msg ? msg : "(error object is not a string)");
  }
  lua_settop(L, top);
}

static int push_errno(lua_State *L, const char *what, const char *path, int e, const char *code) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", what, path, strerror(e));
  lua_pushstring(L, code);
  return 3;
}

/* core.fs_watch(path, fn) -> watch | nil, message, code ("ENOENT", ...). */
static int l_fs_watch(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  hersh_lmod *m = hersh_lmod_get(L);
  lfswatch *w = lua_newuserdatauv(L, sizeof *w, 0);
  *w = (lfswatch){.fn_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_FSWATCH_MT);
  hersh_lhandle *h = hersh_lhandle_new(m, w, NULL);
  if (!hersh_lhandle_open(h, h ? uv_fs_event_init(hersh_loop_uv(m->loop), &h->uv.fs_event) : UV_ENOMEM, &w->h))
    return push_errno(L, "cannot watch", path, ENOMEM, "ENOMEM");
  int rc = uv_fs_event_start(&h->uv.fs_event, on_event, path, 0);
  if (rc != 0) {
    hersh_lhandle_close(h);
    return push_errno(L, "cannot watch", path, -rc, uv_err_name(rc));
  }
  lua_pushvalue(L, 2);
  w->fn_ref = hersh_lhandle_keep(h, L);
  lua_pushvalue(L, 3);
  hersh_lhandle_keep(h, L);
  return 1;
}

static int l_fswatch_stop(lua_State *L) {
  hersh_lhandle_close(check_fswatch(L, 1)->h);
  return 0;
}

static int l_fswatch_active(lua_State *L) {
  lua_pushboolean(L, check_fswatch(L, 1)->h != NULL);
  return 1;
}

/* Reached when stopped, or when the whole state closes while it watches. */
static int l_fswatch_gc(lua_State *L) {
  hersh_lhandle_close(check_fswatch(L, 1)->h);
  return 0;
}

/* core.file_id(path | file) -> "device:inode" | nil, message, code */
static int l_file_id(lua_State *L) {
  struct stat st;
  luaL_Stream *f = luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (f) {
    luaL_argcheck(L, f->closef != NULL, 1, "attempt to use a closed file");
    if (fstat(fileno(f->f), &st) != 0) return push_errno(L, "cannot stat", "an open file", errno, "EIO");
  } else {
    const char *path = luaL_checkstring(L, 1);
    if (stat(path, &st) != 0) {
      int e = errno;
      return push_errno(L, "cannot stat", path, e, e == ENOENT ? "ENOENT" : e == ENOTDIR ? "ENOTDIR" : "EIO");
    }
  }
  char id[48];
  snprintf(id, sizeof id, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
  lua_pushstring(L, id);
  return 1;
}

static const luaL_Reg fswatch_meth[] = {{"stop", l_fswatch_stop}, {"active", l_fswatch_active}, {NULL, NULL}};
static const luaL_Reg fswatch_metameth[] = {{"__gc", l_fswatch_gc}, {NULL, NULL}};

/* Adds fs_watch and file_id to the module table at the stack top (hersh.os). */
int hersh_lfswatch_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_FSWATCH_MT, fswatch_meth, fswatch_metameth);
  static const luaL_Reg funcs[] = {{"fs_watch", l_fs_watch}, {"file_id", l_file_id}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
