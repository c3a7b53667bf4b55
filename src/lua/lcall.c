/*
** lcall.c -- the one way from C into Lua: a protected call with a traceback handler
** and a deadline. The deadline costs nothing until it passes: then the watchdog
** signals the loop thread, whose handler (deadline.c) installs a hook on the Lua
** thread of the call, as lua.c's own SIGINT handler does; the hook raises "timeout"
** at the next instruction, again and again, until the call unwinds.
*/
#include <stdatomic.h>
#include <string.h>

#include "lhersh.h"

static const char hook_key = 'h';

static void timeout_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &hook_key);
  hersh_lmod *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  /* Only the watchdog's signal installs this hook: the watchdog exists, none is made here. */
  hersh_watchdog *wd = m ? hersh_loop_watchdog(m->loop) : NULL;
  if (!wd || !hersh_watchdog_expired(wd)) { /* inherited by a coroutine made in a late run */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  lua_pushliteral(L, "timeout");
  lua_error(L);
}

/* In the signal handler, on the loop thread, while the call is armed: lua_sethook is
** async-signal-safe there (ldebug.c). */
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

/* Late when the watchdog signalled the call's deadline. After the disarm no signal
** touches L; a hook it set before is removed here. */
bool hersh_lua_guard_end(hersh_lmod *m, lua_State *L) {
  hersh_watchdog *wd = hersh_loop_watchdog(m->loop);
  if (!wd) return false;
  bool late = hersh_watchdog_expired(wd);
  hersh_watchdog_disarm(wd);
  if (lua_gethook(L) == timeout_hook) lua_sethook(L, NULL, 0, 0);
  atomic_store(&m->interrupt.L, NULL); /* none armed now: call_within's check of nesting */
  return late;
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

/* hersh.os.call_within(seconds, f, ...) -> true, f's results | false, message, code
** ("ETIMEOUT", "ERROR", "ENOMEM"). The Host's policy hooks run through it, bounded by
** the same watchdog as a reducer's run: the Host's handlers run outside any engine
** run, so this is their only way to a deadline. One deadline at a time (the watchdog
** arms one run): a call inside another bounded call is a caller's bug. */
static int l_os_call_within(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  luaL_argcheck(L, seconds > 0 && seconds <= 3600, 1, "seconds must be above 0 and at most 3600");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  hersh_lmod *m = hersh_lmod_get(L);
  if (atomic_load(&m->interrupt.L)) return luaL_error(L, "call_within: already inside a call with a deadline");
  int nargs = lua_gettop(L) - 2;
  luaL_checkstack(L, 3, "call_within");
  hersh_lua_push_handler(L);
  lua_rotate(L, 2, 1); /* seconds, handler, f, args... */
  hersh_lua_status st = hersh_lua_pcall(m, L, nargs, LUA_MULTRET, hersh_lua_deadline(seconds));
  if (st == HERSH_LUA_OK) {
    lua_pushboolean(L, 1);
    lua_replace(L, 2); /* the handler's slot: true, results... */
    return lua_gettop(L) - 1;
  }
  static const char *const codes[] = {[HERSH_LUA_ERROR] = "ERROR", [HERSH_LUA_TIMEOUT] = "ETIMEOUT",
                                      [HERSH_LUA_NOMEM] = "ENOMEM"};
  lua_pushboolean(L, 0);
  lua_rotate(L, -2, 1); /* false, message */
  lua_pushstring(L, codes[st]);
  return 3;
}

int hersh_lcall_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"call_within", l_os_call_within}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}

int hersh_lua_push_failure(lua_State *L, int err) {
  lua_pushnil(L);
  lua_pushstring(L, hersh_errmsg());
  lua_pushstring(L, hersh_errcode(err));
  return 3;
}
