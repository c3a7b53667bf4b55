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
  hersh_lhandle *h; /* NULL once stopped */
  int fn_ref;       /* owned by h */
} ltimer;

#define check_ltimer(L, i) ((ltimer *)luaL_checkudata((L), (i), HERSH_TIMER_MT))

/* A stopped timer never calls fn again: fn and the timer's anchor go with the handle.
** Keeping fn until __gc would leak every timer whose fn holds the timer (the usual
** `t = core.timer(..., function() t:stop() end)`): fn would keep the timer for ever. */
static void fire(uv_timer_t *uvt) {
  ltimer *t = uvt->data;
  hersh_lmod *m = t->h->m;
  lua_State *L = m->L;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
  /* A one-shot timer is done before fn runs (fn may start a new timer, or stop this
  ** one). From here t may be collected: fn is on the stack. */
  if (uv_timer_get_repeat(uvt) == 0) hersh_lhandle_close(t->h);
  if (hersh_lua_pcall(m, L, 0, 0, 0) != HERSH_LUA_OK) {
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
  hersh_lmod *m = hersh_lmod_get(L);
  ltimer *t = lua_newuserdatauv(L, sizeof *t, 0);
  *t = (ltimer){.fn_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_TIMER_MT);
  hersh_lhandle *h = hersh_lhandle_new(m, t, NULL);
  if (!hersh_lhandle_open(h, h ? uv_timer_init(hersh_loop_uv(m->loop), &h->uv.timer) : UV_ENOMEM, &t->h))
    return luaL_error(L, "cannot create a timer");
  lua_pushvalue(L, 2);
  t->fn_ref = hersh_lhandle_keep(h, L);
  lua_pushvalue(L, -1);
  hersh_lhandle_keep(h, L); /* a running timer keeps itself */
  uv_timer_start(&h->uv.timer, fire, (uint64_t)(seconds * 1000.0 + 0.5), (uint64_t)(every * 1000.0 + 0.5));
  return 1;
}

static int l_timer_stop(lua_State *L) {
  hersh_lhandle_close(check_ltimer(L, 1)->h);
  return 0;
}

static int l_timer_active(lua_State *L) {
  lua_pushboolean(L, check_ltimer(L, 1)->h != NULL);
  return 1;
}

/* Only reached once stopped, or when the whole state closes. */
static int l_timer_gc(lua_State *L) {
  hersh_lhandle_close(check_ltimer(L, 1)->h);
  return 0;
}

static const luaL_Reg timer_meth[] = {{"stop", l_timer_stop}, {"active", l_timer_active}, {NULL, NULL}};
static const luaL_Reg timer_metameth[] = {{"__gc", l_timer_gc}, {NULL, NULL}};

/* ---- signals and serving -------------------------------------------------------------- */

typedef struct lsignal {
  hersh_lhandle *h;
  int fn_ref; /* owned by h */
} lsignal;

#define HERSH_SIGNAL_MT "hersh.Signal"

/* Signals last as long as the Lua state: closed when it closes, before the loop. */
static int l_signal_gc(lua_State *L) {
  hersh_lhandle_close(((lsignal *)luaL_checkudata(L, 1, HERSH_SIGNAL_MT))->h);
  return 0;
}

static void on_signal(uv_signal_t *uvs, int signum) {
  lsignal *s = uvs->data;
  hersh_lmod *m = s->h->m;
  lua_State *L = m->L;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  lua_pushinteger(L, signum);
  if (hersh_lua_pcall(m, L, 1, 0, 0) != HERSH_LUA_OK) {
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
  *s = (lsignal){.fn_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_SIGNAL_MT);
  hersh_lhandle *h = hersh_lhandle_new(m, s, NULL);
  if (!hersh_lhandle_open(h, h ? uv_signal_init(hersh_loop_uv(m->loop), &h->uv.signal) : UV_ENOMEM, &s->h))
    return luaL_error(L, "cannot watch signal %d", signum);
  hersh_lhandle_keep(h, L); /* never withdrawn: anchored until the state closes */
  lua_pushvalue(L, 2);
  s->fn_ref = hersh_lhandle_keep(h, L);
  uv_signal_start(&h->uv.signal, on_signal, signum);
  uv_unref(&h->uv.handle); /* a signal alone does not keep the loop running */
  return 0;
}

static bool serving;

/* core.serve(): runs the loop until core.stop_serving() (a server's loop). */
static int l_serve(lua_State *L) {
  hersh_lmod *m = hersh_lmod_get(L);
  serving = true;
  if (hersh_loop_run_while(m->loop, &serving) != HERSH_OK) return luaL_error(L, "core.serve: %s", hersh_errmsg());
  return 0;
}

static int l_stop_serving(lua_State *L) {
  (void)L;
  serving = false;
  return 0;
}

/* Adds timer to the module table at the stack top (hersh.core). */
int hersh_ltimer_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_TIMER_MT, timer_meth, timer_metameth);
  lua_pushcfunction(L, l_timer_new);
  lua_setfield(L, -2, "timer");
  return 0;
}

/* Adds on_signal, serve and stop_serving to the module table at the stack top (hersh.os):
** a server's loop, which `hersh run` does not need. */
int hersh_lsignal_open(lua_State *L) {
  static const luaL_Reg signal_metameth[] = {{"__gc", l_signal_gc}, {NULL, NULL}};
  hersh_lclass_register(L, HERSH_SIGNAL_MT, NULL, signal_metameth);
  static const luaL_Reg funcs[] = {{"on_signal", l_on_signal}, {"serve", l_serve}, {"stop_serving", l_stop_serving},
                                   {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
  return 0;
}
