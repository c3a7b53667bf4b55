/*
** lstate.c -- a Lua state ready for hersh: hersh.core and cjson preloaded, and the
** hersh Lua modules on package.path. The hersh binary uses it for its scripts, and a
** loop makes one for hersh_watcher_manage_lua.
*/
#include <lualib.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <lua-cjson.h>

#include "lhersh.h"

extern const char hersh_lmod_loop_key;

static bool is_dir(const char *path) {
  struct stat st;
  return path && *path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* HERSH_LUA_DIR, then the installed modules, then the source tree (a build tree). */
static void add_lua_dirs(lua_State *L) {
  const char *dirs[] = {getenv("HERSH_LUA_DIR"), HERSH_INSTALL_LUA_DIR, HERSH_SOURCE_LUA_DIR};
  luaL_Buffer b;
  lua_getglobal(L, "package");
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    if (!is_dir(dirs[i])) continue;
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dirs[i], dirs[i]);
    luaL_addvalue(&b);
  }
  lua_getfield(L, -2, "path");
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

void hersh_lua_prepare(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_hersh_core);
  lua_setfield(L, -2, "hersh.core");
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  lua_pop(L, 1);
  add_lua_dirs(L);
}

static void close_state(void *L) { lua_close(L); }

static int open_hersh(lua_State *L) {
  luaL_openlibs(L);
  hersh_lua_prepare(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "hersh");
  lua_call(L, 1, 0);
  return 0;
}

/* The loop's own Lua state, made on first use. */
static lua_State *loop_state(hersh_loop *loop) {
  if (loop->lua) return loop->lua;
  lua_State *L = luaL_newstate();
  if (!L) {
    hersh_fail_with(HERSH_E_NOMEM, "cannot create a Lua state");
    return NULL;
  }
  lua_pushlightuserdata(L, loop);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hersh_lmod_loop_key); /* hersh.core uses this loop */
  lua_pushcfunction(L, open_hersh);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    hersh_fail_with(HERSH_E_LUA, "cannot load hersh in Lua: %s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  loop->lua = L;
  loop->lua_close = close_state;
  return L;
}

int hersh_watcher_manage_lua(hersh_watcher *w, const char *chunk, size_t len, const char *chunkname) {
  if (!w || !chunk) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_manage_lua: NULL watcher or chunk");
  lua_State *L = loop_state(w->loop);
  if (!L) return HERSH_E_LUA;
  int top = lua_gettop(L);
  int rc = HERSH_OK;
  if (luaL_loadbuffer(L, chunk, len, chunkname ? chunkname : "=reducer") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    rc = hersh_fail_with(HERSH_E_LUA, "%s", lua_tostring(L, -1));
  } else if (lua_isfunction(L, -1)) {
    rc = hersh_lwatcher_bind(L, w, -1, 0);
  } else if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "reduce");
    lua_getfield(L, -2, "cleanup");
    rc = lua_isfunction(L, -2) ? hersh_lwatcher_bind(L, w, -2, -1)
                               : hersh_fail_with(HERSH_E_LUA, "the chunk's table has no reduce function");
  } else {
    rc = hersh_fail_with(HERSH_E_LUA, "the chunk must return a function or {reduce = fn, cleanup = fn}");
  }
  lua_settop(L, top);
  return rc;
}
