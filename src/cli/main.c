/*
** main.c -- the hersh executable: `hersh run FILE.lua [ARGS...]` and `hersh version`.
*/
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "hersh.h"
#include "lua/lhersh.h"

static int usage(void) {
  fprintf(stderr, "usage: hersh run FILE.lua [ARGS...]\n"
                  "       hersh version\n");
  return 2;
}

static int cmd_version(void) {
  printf("hersh %s (%s, libuv %s)\n", HERSH_VERSION, LUA_RELEASE, uv_version_string());
  return 0;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

/* Runs the script with `arg` set as lua.c does, then drives the loop until every
** watcher it started is in a terminal state. */
static int cmd_run(int argc, char **argv) {
  if (argc < 3) return usage();
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "hersh: cannot create a Lua state\n");
    return 2;
  }
  luaL_openlibs(L);
  hersh_lua_prepare(L);
  lua_createtable(L, argc - 3, 1);
  for (int i = 2; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 2);
  }
  lua_setglobal(L, "arg");
  int status = 0;
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[2]) != LUA_OK) {
    fprintf(stderr, "hersh: %s\n", lua_tostring(L, -1));
    status = 2;
  } else if (lua_pcall(L, 0, 0, 1) != LUA_OK) {
    fprintf(stderr, "hersh: %s\n", lua_tostring(L, -1));
    status = 2;
  } else {
    lua_settop(L, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "hersh");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "run");
    lua_call(L, 0, 0);
  }
  lua_close(L);
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  if (strcmp(argv[1], "run") == 0) return cmd_run(argc, argv);
  if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) return cmd_version();
  return usage();
}
