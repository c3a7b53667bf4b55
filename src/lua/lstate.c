/*
** lstate.c -- a Lua state ready for hersh: the modules of its role preloaded, and the
** hersh Lua modules on package.path. The hersh binary uses it for its scripts (`hersh
** run` a program's, `hersh host` the Host's), and a loop makes a program's one for
** hersh_watcher_manage_lua.
*/
#include <lualib.h>
#include <stdlib.h>
#include <sys/stat.h>

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

/* What a program gets; the Host gets these and its own. */
static const luaL_Reg program_modules[] = {
    {"hersh.core", luaopen_hersh_core}, {"hersh.json", luaopen_hersh_json}, {NULL, NULL}};
static const luaL_Reg host_modules[] = {{"hersh.os", luaopen_hersh_os},
                                        {"hersh.httpd", luaopen_hersh_httpd},
                                        {"hersh.http", luaopen_hersh_http},
                                        {"hersh.store", luaopen_hersh_store},
                                        {NULL, NULL}};

/* A program loads no C code, so what it can reach is what is preloaded: no loadlib (on
** /proc/self/exe, libhersh or a module file), no C searchers, an empty cpath. */
static void forbid_c_loading(lua_State *L) {
  lua_getglobal(L, "package");
  lua_pushnil(L);
  lua_setfield(L, -2, "loadlib");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "cpath");
  lua_getfield(L, -1, "searchers");
  for (lua_Integer i = luaL_len(L, -1); i > 2; i--) { /* 1 preload and 2 Lua files stay */
    lua_pushnil(L);
    lua_rawseti(L, -2, i);
  }
  lua_pop(L, 2);
}

void hersh_lua_prepare(lua_State *L, hersh_lua_role role) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  luaL_setfuncs(L, program_modules, 0);
  if (role == HERSH_LUA_HOST) luaL_setfuncs(L, host_modules, 0);
  lua_pop(L, 1);
  if (role == HERSH_LUA_PROGRAM) forbid_c_loading(L);
  add_lua_dirs(L);
}

/* The loop's own state goes with the loop (docs/architecture.md, "Shutdown order"):
** the handles of its objects close while it is alive and finish closing, then it closes. */
static void close_state(void *L) {
  hersh_lmod *m = hersh_lmod_get(L); /* does not raise: the state loaded hersh.core */
  hersh_lhandle_close_all(m);
  hersh_loop_drain(m->loop);
  lua_close(L);
}

static int open_hersh(lua_State *L) {
  luaL_openlibs(L);
  hersh_lua_prepare(L, HERSH_LUA_PROGRAM);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "hersh");
  lua_call(L, 1, 0);
  return 0;
}

/* The loop's own Lua state, made on first use. */
static lua_State *loop_state(hersh_loop *loop) {
  lua_State *L = hersh_loop_on_free_find(loop, close_state);
  if (L) return L;
  L = luaL_newstate();
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
  if (hersh_loop_on_free(loop, close_state, L) != HERSH_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

int hersh_watcher_manage_lua(hersh_watcher *w, const char *chunk, size_t len, const char *chunkname) {
  if (!w || !chunk) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_manage_lua: NULL watcher or chunk");
  lua_State *L = loop_state(hersh_watcher_loop(w));
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
