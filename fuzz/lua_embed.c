/* lua_embed.c -- the Lua state of the Lua-side targets (see lua_embed.h). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "lua/lhersh.h"
#include "lua_embed.h"

static const char script_key = 's';

/* The Lua interpreter is not instrumented: without this, libFuzzer would see only the
** C of the harness and fuzz the Lua code blind. A line hook turns each step from one
** Lua line to the next into a hit in libFuzzer's extra counters, its coverage of Lua. */
#define LUA_EDGES (1u << 16)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t lua_edges[LUA_EDGES];

static void line_hook(lua_State *L, lua_Debug *ar) {
  static uintptr_t prev;
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t here = ((uintptr_t)ar->source * 31u) ^ ((uintptr_t)ar->currentline * 2654435761u);
  uint8_t *c = &lua_edges[(here ^ (prev >> 1)) % LUA_EDGES];
  if (*c < 255) (*c)++;
  prev = here;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

static void call_or_abort(lua_State *L, int nargs, int nresults, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base); /* under the function */
  if (lua_pcall(L, nargs, nresults, base) != LUA_OK) fuzz_fail(what, lua_tostring(L, -1), 0);
  lua_remove(L, base);
}

lua_State *fuzz_lua_open(const char *script) {
  lua_State *L = luaL_newstate();
  if (!L) fuzz_fail("cannot create a Lua state", NULL, 0);
  luaL_openlibs(L);
  hersh_lua_prepare(L, HERSH_LUA_HOST);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0); /* coroutines made from L inherit it */
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", HERSH_FUZZ_LUA_DIR, script);
  if (luaL_loadfile(L, path) != LUA_OK) fuzz_fail("cannot load the target's Lua script", lua_tostring(L, -1), 0);
  call_or_abort(L, 0, 1, "the target's Lua script failed");
  if (!lua_istable(L, -1)) fuzz_fail("the target's Lua script must return a table", path, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &script_key);
  return L;
}

void fuzz_lua_call(lua_State *L, const char *fn, const char *arg, size_t len, int nresults) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  if (arg) lua_pushlstring(L, arg, len);
  call_or_abort(L, arg ? 1 : 0, nresults, "a Lua error (not a clean refusal)");
}
