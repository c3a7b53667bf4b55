/*
** lflow.c -- hersh.Flow: a flow fed from Lua. hersh.flow() makes one; f:push(value [, err])
** feeds it from any Lua code on the loop (a timer, an HTTP handler, a reducer); and
** ctx:watch_flow(name, f) watches it. A push goes straight to the engine as
** hersh_flow_push does from C, so the batching is the producer flows' (ENGINE.md): in
** a batch only the newest item of the flow counts.
**
** The watch's producer is a relay task that only waits: its end (the watcher's terminal
** state, the Lua state closing) cancels the wait, which tells the flow that its engine
** flow is gone. Until the relay first runs, pushes keep the newest item for it.
*/
#include "lhersh.h"

#define HERSH_FLOW_MT "hersh.Flow"

enum { UV_VALUE = 1, UV_ERR = 2 }; /* the item waiting for the relay (uservalues) */

struct hersh_lflow {
  bool watched;       /* a watch_flow took it: it cannot be watched again */
  bool stopped;       /* its watcher ended: pushes are refused */
  bool has_pending;   /* an item waits in the uservalues for the relay */
  hersh_flow *target; /* the engine flow it is watched as, once the watch exists */
  hersh_flow *flow;   /* the same, from the relay's first run until its end; else NULL */
};

#define check_flow(L, i) ((hersh_lflow *)luaL_checkudata((L), (i), HERSH_FLOW_MT))

hersh_lflow *hersh_lflow_test(lua_State *L, int idx) { return luaL_testudata(L, idx, HERSH_FLOW_MT); }

/* Hands (value, err) to the engine: true, or nil, message, code (queue full). The value
** is converted first, so a failure leaves nothing held. */
static int push_item(lua_State *L, hersh_flow *flow, int value_idx, const char *err) HERSH_MAY_RAISE {
  hersh_value v;
  if (hersh_lua_to_value(L, value_idx, &v) != HERSH_OK) return luaL_error(L, "out of memory");
  int rc = hersh_flow_push(flow, &v, err);
  if (rc == HERSH_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  hersh_value_free(&v);
  return hersh_lua_push_failure(L, rc);
}

/* f:push(value [, err]): true, or nil, message, code: "watcher stopped" (ESTOPPED) once
** its watcher ended, "queue full" when the watcher's var queue is. */
static int l_flow_push(lua_State *L) {
  hersh_lflow *f = check_flow(L, 1);
  luaL_checkany(L, 2);
  const char *err = luaL_optstring(L, 3, NULL);
  lua_settop(L, 3);
  if (f->stopped) return hersh_lua_push_failure(L, hersh_fail_with(HERSH_E_STOPPED, "watcher stopped"));
  if (f->flow) return push_item(L, f->flow, 2, err);
  /* Not running yet: only the newest item would count anyway. */
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, UV_VALUE);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, 1, UV_ERR);
  f->has_pending = true;
  lua_pushboolean(L, 1);
  return 1;
}

static int l_flow_tostring(lua_State *L) {
  hersh_lflow *f = check_flow(L, 1);
  lua_pushfstring(L, "hersh.Flow (%s)", f->stopped ? "stopped" : f->watched ? "watched" : "not watched");
  return 1;
}

/* hersh.flow(): a new flow, not watched yet. */
static int l_flow_new(lua_State *L) {
  hersh_lflow *f = lua_newuserdatauv(L, sizeof *f, 2);
  *f = (hersh_lflow){0};
  luaL_setmetatable(L, HERSH_FLOW_MT);
  return 1;
}

/* ---- the relay ------------------------------------------------------------------------ */

/* The relay's task ended (called once, outside Lua): the engine flow is gone. */
static void relay_end(void *ud) {
  hersh_lflow *f = ud;
  f->flow = NULL;
  f->stopped = true;
}

/* The producer of a watched flow (upvalue 1: the flow, 2: its watcher): from its first
** run on, pushes go to the engine; then it waits until its task ends. */
static int relay(lua_State *co) {
  hersh_lflow *f = lua_touserdata(co, lua_upvalueindex(1));
  hersh_ltask *t = hersh_ltask_running(co);
  if (!t) return luaL_error(co, "hersh.Flow: the relay runs only as the watch's producer");
  f->flow = f->target;
  if (f->has_pending) { /* pushed before: as if pushed now; a refusal is the watch's error */
    f->has_pending = false;
    lua_getiuservalue(co, lua_upvalueindex(1), UV_VALUE);
    lua_getiuservalue(co, lua_upvalueindex(1), UV_ERR);
    if (push_item(co, f->flow, -2, lua_tostring(co, -1)) > 1)
      hersh_watcher_watch_error(lua_touserdata(co, lua_upvalueindex(2)), hersh_flow_name(f->flow), "flow",
                                lua_tostring(co, -2));
    lua_pushnil(co);
    lua_setiuservalue(co, lua_upvalueindex(1), UV_VALUE);
  }
  hersh_ltask_wait(t, relay_end, f);
  return lua_yield(co, 0);
}

void hersh_lflow_watch(lua_State *L, int idx, hersh_flow *flow, hersh_watcher *w, double timeout) {
  hersh_lflow *f = check_flow(L, idx);
  if (f->watched) luaL_error(L, "watch_flow: this hersh.Flow is already watched (a flow has one watch)");
  f->watched = true;
  f->target = flow;
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, relay, 2);
  hersh_ltask_start_flow(L, lua_gettop(L), flow, w, timeout);
  lua_pop(L, 1);
}

int hersh_lflow_open(lua_State *L) {
  static const luaL_Reg meth[] = {{"push", l_flow_push}, {NULL, NULL}};
  static const luaL_Reg metameth[] = {{"__tostring", l_flow_tostring}, {NULL, NULL}};
  hersh_lclass_register(L, HERSH_FLOW_MT, meth, metameth);
  lua_pushcfunction(L, l_flow_new);
  lua_setfield(L, -2, "flow");
  return 0;
}
