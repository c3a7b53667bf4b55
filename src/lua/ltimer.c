/*
** ltimer.c -- the loop's own events for Lua: core.timer(seconds, fn [, repeat]) runs
** fn after `seconds` (and every `repeat` seconds) until t:stop(); core.on_signal(name,
** fn) runs fn when the process gets that signal; core.serve() runs the loop until
** core.stop_serving(). Errors in these callbacks go to stderr: nothing else hears them.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "lhersh.h"

typedef struct ltimer {
  uv_timer_t timer;
  hersh_lmod *m;
  int self_ref, fn_ref;
  bool open;
} ltimer;

#define check_ltimer(L, i) ((ltimer *)luaL_checkudata((L), (i), HERSH_TIMER_MT))

/* A closed timer never calls fn again: both references go now. Keeping fn until __gc
** would leak every timer whose fn holds the timer (the usual `t = core.timer(..., function()
** t:stop() end)`): the registry would keep fn, fn the timer, and __gc would never come. */
static void closed(uv_handle_t *h) {
  ltimer *t = h->data;
  t->open = false;
  luaL_unref(t->m->L, LUA_REGISTRYINDEX, t->self_ref); /* collectable from now on */
  t->self_ref = LUA_NOREF;
  luaL_unref(t->m->L, LUA_REGISTRYINDEX, t->fn_ref);
  t->fn_ref = LUA_NOREF;
}

static void stop(ltimer *t) {
  if (t->open && !uv_is_closing((uv_handle_t *)&t->timer)) uv_close((uv_handle_t *)&t->timer, closed);
}

static void fire(uv_timer_t *h) {
  ltimer *t = h->data;
  lua_State *L = t->m->L;
  bool again = uv_timer_get_repeat(h) > 0;
  if (!again) stop(t); /* before calling: fn may start a new timer, or stop this one */
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  if (hersh_lua_pcall(t->m, L, 0, 0, 0) != HERSH_LUA_OK) {
    fprintf(stderr, "hersh: timer: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int l_timer_new(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  double every = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, seconds >= 0 && every >= 0, 1, "must not be negative");
  ltimer *t = lua_newuserdatauv(L, sizeof *t, 0);
  *t = (ltimer){.m = hersh_lmod_get(L), .self_ref = LUA_NOREF, .fn_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_TIMER_MT);
  if (uv_timer_init(t->m->loop->uv, &t->timer) != 0) return luaL_error(L, "cannot create a timer");
  t->timer.data = t;
  t->open = true;
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_start(&t->timer, fire, (uint64_t)(seconds * 1000.0 + 0.5), (uint64_t)(every * 1000.0 + 0.5));
  return 1;
}

static int l_timer_stop(lua_State *L) {
  stop(check_ltimer(L, 1));
  return 0;
}

static int l_timer_active(lua_State *L) {
  ltimer *t = check_ltimer(L, 1);
  lua_pushboolean(L, t->open && !uv_is_closing((uv_handle_t *)&t->timer));
  return 1;
}

static int l_timer_gc(lua_State *L) {
  ltimer *t = check_ltimer(L, 1);
  stop(t); /* only reached once closed, or when the whole state closes */
  luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
  t->fn_ref = LUA_NOREF;
  return 0;
}

static const luaL_Reg timer_meth[] = {{"stop", l_timer_stop}, {"active", l_timer_active}, {NULL, NULL}};
static const luaL_Reg timer_metameth[] = {{"__index", NULL}, {"__gc", l_timer_gc}, {NULL, NULL}};

/* ---- signals and serving -------------------------------------------------------------- */

typedef struct lsignal {
  uv_signal_t handle;
  hersh_lmod *m;
  int fn_ref;
} lsignal;

#define HERSH_SIGNAL_MT "hersh.Signal"

/* Signals last as long as the Lua state: closed when it closes, before the loop. */
static int l_signal_gc(lua_State *L) {
  lsignal *s = luaL_checkudata(L, 1, HERSH_SIGNAL_MT);
  if (!uv_is_closing((uv_handle_t *)&s->handle)) uv_close((uv_handle_t *)&s->handle, NULL);
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  lsignal *s = h->data;
  lua_State *L = s->m->L;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  lua_pushinteger(L, signum);
  if (hersh_lua_pcall(s->m, L, 1, 0, 0) != HERSH_LUA_OK) {
    fprintf(stderr, "hersh: signal handler: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* core.on_signal("TERM" | "INT" | "HUP", fn): for the life of the process. */
static int l_on_signal(lua_State *L) {
  static const char *const names[] = {"TERM", "INT", "HUP", NULL};
  static const int numbers[] = {SIGTERM, SIGINT, SIGHUP};
  int signum = numbers[luaL_checkoption(L, 1, NULL, names)];
  luaL_checktype(L, 2, LUA_TFUNCTION);
  hersh_lmod *m = hersh_lmod_get(L);
  lsignal *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->m = m;
  if (uv_signal_init(m->loop->uv, &s->handle) != 0) return luaL_error(L, "cannot watch signal %d", signum);
  luaL_setmetatable(L, HERSH_SIGNAL_MT);
  luaL_ref(L, LUA_REGISTRYINDEX); /* never withdrawn: anchored until the state closes */
  lua_pushvalue(L, 2);
  s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->handle.data = s;
  uv_signal_start(&s->handle, on_signal, signum);
  uv_unref((uv_handle_t *)&s->handle); /* a signal alone does not keep the loop running */
  return 0;
}

static bool serving;

/* core.serve(): runs the loop until core.stop_serving() (a server's loop). */
static int l_serve(lua_State *L) {
  hersh_lmod *m = hersh_lmod_get(L);
  if (m->loop->depth > 0) return luaL_error(L, "core.serve: the loop is already running");
  serving = true;
  m->loop->depth++;
  while (serving) uv_run(m->loop->uv, UV_RUN_ONCE);
  m->loop->depth--;
  return 0;
}

static int l_stop_serving(lua_State *L) {
  (void)L;
  serving = false;
  return 0;
}

/* Sets module.timer and friends on the module table at the stack top. */
int hersh_ltimer_open(lua_State *L) {
  luaL_newmetatable(L, HERSH_TIMER_MT);
  luaL_setfuncs(L, timer_metameth, 0);
  luaL_newlib(L, timer_meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, HERSH_SIGNAL_MT);
  lua_pushcfunction(L, l_signal_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"timer", l_timer_new}, {"on_signal", l_on_signal}, {"serve", l_serve},
                                   {"stop_serving", l_stop_serving}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
