/*
** lmodule.c -- the Lua modules and what each holds: hersh.core, the engine a program
** gets (one loop per Lua state, the functions that drive it, time, timers, watchers,
** the results a reducer returns, the HTTP request a task waits on and flows fed from
** Lua); and for the Host only hersh.os (processes, files, sockets, signals, the
** sandbox), hersh.httpd (the HTTP server), hersh.http (the callback HTTP client) and
** hersh.store (SQLite). They share the state's loop.
*/
#include <stdlib.h>

#include "lhersh.h"

static const char lmod_key = 'm';
#define HERSH_LMOD_MT "hersh.Loop"

/* The loop a C embedder made (hersh_watcher_manage_lua) is used instead of a new one. */
const char hersh_lmod_loop_key = 'l';

hersh_lmod *hersh_lmod_get(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &lmod_key);
  hersh_lmod *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!m) luaL_error(L, "hersh.core is not loaded in this Lua state");
  return m;
}

static int l_lmod_gc(lua_State *L) {
  hersh_lmod *m = luaL_checkudata(L, 1, HERSH_LMOD_MT); /* a program can call it too */
  if (m->loop && m->owns_loop) hersh_loop_free(m->loop);
  m->loop = NULL;
  return 0;
}

static int l_module_now(lua_State *L) {
  lua_pushnumber(L, hersh_wall_now());
  return 1;
}

static int l_module_run(lua_State *L) {
  int rc = hersh_loop_run(hersh_lmod_get(L)->loop);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_module_run_for(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  int rc = hersh_loop_run_for(hersh_lmod_get(L)->loop, seconds);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct wait_pred {
  lua_State *L;
  hersh_lmod *m;
  bool failed;
} wait_pred;

/* Calls the predicate (stack index 1); an error in it ends the wait. */
static bool call_pred(void *ud) {
  wait_pred *p = ud;
  if (p->failed) return true;
  hersh_lua_push_handler(p->L);
  lua_pushvalue(p->L, 1);
  if (hersh_lua_pcall(p->m, p->L, 0, 1, 0) != HERSH_LUA_OK) {
    p->failed = true; /* the message stays on the stack for l_module_wait */
    return true;
  }
  bool done = lua_toboolean(p->L, -1);
  lua_pop(p->L, 2); /* the result and the handler */
  return done;
}

static int l_module_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  double seconds = luaL_checknumber(L, 2);
  lua_settop(L, 2);
  wait_pred p = {L, hersh_lmod_get(L), false};
  int rc = hersh_loop_run_until(p.m->loop, call_pred, &p, seconds);
  if (p.failed) return lua_error(L);
  if (rc < 0) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, rc == 1);
  return 1;
}

/* hersh.stop(reason), hersh.kill(reason), hersh.crash(reason, cause): result tables. */
static int make_outcome(lua_State *L, const char *kind) {
  lua_settop(L, 2);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "reason");
  lua_pushvalue(L, 2);
  lua_setfield(L, -2, "cause");
  luaL_setmetatable(L, HERSH_OUTCOME_MT);
  return 1;
}

/* `hersh run`'s WatcherAPI options: set from C, handed out once. */
static const char runner_key = 'r';

void hersh_lmod_set_runner_api(lua_State *L) { lua_rawsetp(L, LUA_REGISTRYINDEX, &runner_key); }

static int l_module_runner_api(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &runner_key);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &runner_key);
  return 1;
}

static int l_module_stop(lua_State *L) { return make_outcome(L, "stop"); }
static int l_module_kill(lua_State *L) { return make_outcome(L, "kill"); }
static int l_module_crash(lua_State *L) { return make_outcome(L, "crash"); }

static const luaL_Reg core_funcs[] = {
    {"run", l_module_run},     {"run_for", l_module_run_for}, {"wait", l_module_wait},
    {"now", l_module_now},     {"sleep", hersh_ltask_sleep},  {"stop", l_module_stop},
    {"kill", l_module_kill},   {"crash", l_module_crash},     {"watcher", hersh_lwatcher_new},
    {"runner_api", l_module_runner_api}, {"fetch", hersh_lhttp_fetch}, {NULL, NULL}};

static void open_lmod(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &lmod_key) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  hersh_lmod *m = lua_newuserdatauv(L, sizeof *m, 0);
  *m = (hersh_lmod){0};
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  m->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  hersh_lua_interrupt_init(L, m);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &hersh_lmod_loop_key);
  m->loop = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!m->loop) {
    m->loop = hersh_loop_new();
    m->owns_loop = true;
    if (!m->loop) luaL_error(L, "hersh: %s", hersh_errmsg());
  }
  static const luaL_Reg lmod_metameth[] = {{"__gc", l_lmod_gc}, {NULL, NULL}};
  hersh_lclass_register(L, HERSH_LMOD_MT, NULL, lmod_metameth);
  luaL_setmetatable(L, HERSH_LMOD_MT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &lmod_key);
}

int luaopen_hersh_core(lua_State *L) {
  open_lmod(L);
  hersh_lclass_register(L, HERSH_OUTCOME_MT, NULL, NULL);
  hersh_lwatcher_open(L);
  hersh_lctx_open(L);
  hersh_ltask_open(L);
  luaL_newlib(L, core_funcs);
  hersh_ltimer_open(L);
  hersh_lflow_open(L);
  lua_pushliteral(L, HERSH_VERSION);
  lua_setfield(L, -2, "VERSION");
  hersh_ltask_push_skip(L);
  lua_setfield(L, -2, "SKIP");
  return 1;
}

int luaopen_hersh_os(lua_State *L) {
  open_lmod(L);
  lua_newtable(L);
  hersh_lproc_open(L);
  hersh_lfiles_open(L);
  hersh_lfswatch_open(L);
  hersh_lsandbox_open(L);
  hersh_lsha256_open(L);
  hersh_lsignal_open(L);
  hersh_lcall_open(L);
  return 1;
}

int luaopen_hersh_httpd(lua_State *L) {
  open_lmod(L);
  lua_newtable(L);
  hersh_lhttpd_open(L);
  return 1;
}

int luaopen_hersh_http(lua_State *L) {
  open_lmod(L);
  static const luaL_Reg http_funcs[] = {
    {"request", hersh_lhttp_request}, {"stream", hersh_lhttp_stream}, {"proxy", hersh_lhttp_proxy},
    {"epoch", hersh_lhttp_epoch},     {NULL, NULL}};
  luaL_newlib(L, http_funcs);
  return 1;
}

int luaopen_hersh_store(lua_State *L) {
  lua_newtable(L);
  hersh_lstore_open(L);
  return 1;
}
