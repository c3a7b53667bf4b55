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

void hersh_lua_interrupt_init(hersh_lua_interrupt *intr) {
  intr->base.fire = interrupt_fire;
  atomic_store(&intr->L, NULL);
}

void hersh_lua_guard_begin(hersh_lmod *m, lua_State *L, double seconds, int64_t *deadline) {
  *deadline = hersh_mono_ns() + (int64_t)(seconds * 1e9);
  hersh_watchdog *wd = hersh_loop_watchdog(m->loop);
  if (!wd) return; /* no watchdog thread: the run goes without a deadline */
  lua_pushlightuserdata(L, m);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hook_key);
  atomic_store(&m->interrupt.L, L);
  hersh_watchdog_arm(wd, &m->interrupt.base, *deadline);
}

bool hersh_lua_guard_end(hersh_lmod *m, lua_State *L, int64_t deadline) {
  if (m->loop->watchdog) hersh_watchdog_disarm(m->loop->watchdog);
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);
  return hersh_mono_ns() >= deadline;
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

hersh_lua_status hersh_lua_pcall(hersh_lmod *m, lua_State *L, int nargs, int nresults, double seconds) {
  int base = lua_gettop(L) - nargs; /* the function's index */
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int64_t deadline = 0;
  if (seconds > 0) hersh_lua_guard_begin(m, L, seconds, &deadline);
  int rc = lua_pcall(L, nargs, nresults, base);
  bool late = seconds > 0 && hersh_lua_guard_end(m, L, deadline);
  lua_remove(L, base); /* the handler */
  if (rc == LUA_OK) return late ? HERSH_LUA_TIMEOUT : HERSH_LUA_OK;
  if (late) return HERSH_LUA_TIMEOUT;
  return rc == LUA_ERRMEM ? HERSH_LUA_NOMEM : HERSH_LUA_ERROR;
}
