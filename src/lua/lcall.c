/*
** lcall.c -- the one way from C into Lua: a protected call with a traceback handler
** and a deadline. The deadline costs nothing until it passes: only then does the
** watchdog thread install a hook (lua_sethook is safe to call asynchronously, as
** lua.c's own SIGINT handler does), and the hook raises "timeout" at the next
** instruction, again and again, until the call unwinds.
*/
#include <string.h>

#include "lhersh.h"

static const char hook_key = 'h';

static void timeout_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &hook_key);
  hersh_lmod *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  int64_t deadline = m && m->loop->watchdog ? hersh_watchdog_deadline(m->loop->watchdog) : 0;
  if (deadline == 0 || hersh_mono_ns() < deadline) { /* an interrupt that came too late */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  lua_pushliteral(L, "timeout");
  lua_error(L);
}

static void interrupt_fire(hersh_interrupt *self, uint64_t gen) {
  (void)gen;
  hersh_lua_interrupt *intr = (hersh_lua_interrupt *)self;
  lua_State *L = atomic_load(&intr->L);
  if (L) lua_sethook(L, timeout_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void hersh_lua_interrupt_init(lua_State *L, hersh_lmod *m) {
  m->interrupt.base.fire = interrupt_fire;
  atomic_store(&m->interrupt.L, NULL);
  lua_pushlightuserdata(L, m); /* for the hook, which gets only the lua_State */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hook_key);
}

int64_t hersh_lua_deadline(double seconds) { return hersh_mono_ns() + (int64_t)(seconds * 1e9); }

void hersh_lua_guard_begin(hersh_lmod *m, lua_State *L, int64_t deadline) {
  hersh_watchdog *wd = hersh_loop_watchdog(m->loop);
  if (!wd) return; /* no watchdog thread: the call goes without a deadline */
  atomic_store_explicit(&m->interrupt.L, L, memory_order_release);
  hersh_watchdog_arm(wd, &m->interrupt.base, deadline);
}

/* Only the watchdog installs a hook, and only at a deadline: a hook left on L says
** the deadline passed. */
bool hersh_lua_guard_end(hersh_lmod *m, lua_State *L) {
  if (m->loop->watchdog) hersh_watchdog_disarm(m->loop->watchdog);
  if (!lua_gethook(L)) return false;
  lua_sethook(L, NULL, 0, 0);
  return true;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) { /* a non-string error object: use its __tostring, or its type */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  if (strcmp(msg, "timeout") == 0) { /* no traceback for our own abort */
    lua_pushstring(L, msg);
    return 1;
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

void hersh_lua_push_handler(lua_State *L) { lua_pushcfunction(L, traceback); }

hersh_lua_status hersh_lua_pcall(hersh_lmod *m, lua_State *L, int nargs, int nresults, int64_t deadline) {
  int handler = lua_gettop(L) - nargs - 1;
  if (deadline) hersh_lua_guard_begin(m, L, deadline);
  int rc = lua_pcall(L, nargs, nresults, handler);
  bool late = deadline && hersh_lua_guard_end(m, L);
  if (rc == LUA_OK) return HERSH_LUA_OK;
  if (late) return HERSH_LUA_TIMEOUT;
  return rc == LUA_ERRMEM ? HERSH_LUA_NOMEM : HERSH_LUA_ERROR;
}

int hersh_lua_push_failure(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushstring(L, hersh_errmsg());
  lua_pushstring(L, hersh_errcode(err));
  return 3;
}
