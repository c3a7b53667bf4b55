/*
** lctx.c -- hersh.Context, the `ctx` a Lua reducer gets: context store, memo,
** environment, trigger, logs and watches.
** Its one user value is the current message table (ctx:message()).
*/
#include <stdlib.h>
#include <string.h>

#include "lhersh.h"

typedef struct lctx {
  hersh_ctx *ctx;
} lctx;

static hersh_ctx *check_ctx(lua_State *L) HERSH_MAY_RAISE {
  return ((lctx *)luaL_checkudata(L, 1, HERSH_CTX_MT))->ctx;
}

/* set and update need a run or the cleanup: outside them nothing could observe it. */
static hersh_ctx *check_active(lua_State *L, const char *what) HERSH_MAY_RAISE {
  hersh_ctx *ctx = check_ctx(L);
  if (!hersh_ctx_active(ctx)) luaL_error(L, "ctx:%s used outside a run or the cleanup", what);
  return ctx;
}

void hersh_lctx_push_new(lua_State *L, hersh_ctx *ctx) {
  lctx *c = lua_newuserdatauv(L, sizeof *c, 1);
  c->ctx = ctx;
  luaL_setmetatable(L, HERSH_CTX_MT);
}

/* Raises the engine's last message: after a failed call that holds nothing. */
static int raise_errmsg(lua_State *L) HERSH_MAY_RAISE { return luaL_error(L, "%s", hersh_errmsg()); }

static int l_ctx_get(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  const hersh_value *v = hersh_ctx_get(ctx, luaL_checkstring(L, 2));
  if (v) hersh_lua_push_value(L, v);
  else lua_pushnil(L);
  return 1;
}

static int l_ctx_set(lua_State *L) {
  hersh_ctx *ctx = check_active(L, "set");
  const char *key = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  hersh_value v;
  if (hersh_lua_to_value(L, 3, &v) != HERSH_OK) return luaL_error(L, "out of memory");
  int rc = hersh_ctx_set(ctx, key, &v);
  hersh_value_free(&v);
  if (rc) return raise_errmsg(L);
  return 1; /* the value */
}

/* Deeper than this, ctx:update refuses: the copy recurses on the C stack. */
#define UPDATE_MAX_DEPTH 1000

/* Pushes a recursive copy of the value at idx (absolute). Tables shared or cyclic in the
** value are so in the copy (seen, at seen_idx, maps originals to copies); metatables
** are kept. */
static void push_deep_copy(lua_State *L, int idx, int seen_idx, int depth) HERSH_MAY_RAISE {
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushvalue(L, idx);
    return;
  }
  if (depth > UPDATE_MAX_DEPTH) luaL_error(L, "ctx:update: the value nests deeper than %d tables", UPDATE_MAX_DEPTH);
  luaL_checkstack(L, 8, "ctx:update: the value nests too deeply");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, seen_idx) != LUA_TNIL) return;
  lua_pop(L, 1);
  lua_newtable(L);
  int copy = lua_gettop(L);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, copy);
  lua_rawset(L, seen_idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) { /* the key at copy + 1, the value at copy + 2 */
    push_deep_copy(L, copy + 1, seen_idx, depth + 1);
    push_deep_copy(L, copy + 2, seen_idx, depth + 1);
    lua_rawset(L, copy);
    lua_pop(L, 1);
  }
  if (lua_getmetatable(L, idx)) lua_setmetatable(L, copy);
}

/* ctx:update(key, fn): fn gets a deep copy of the value; its result is stored. An
** error in fn leaves the stored value as it was. */
static int l_ctx_update(lua_State *L) {
  check_ctx(L);
  luaL_argcheck(L, lua_type(L, 2) == LUA_TSTRING, 2, "ctx:update: key must be a string");
  luaL_argcheck(L, lua_type(L, 3) == LUA_TFUNCTION, 3, "ctx:update: fn must be a function");
  lua_settop(L, 3);
  lua_pushcfunction(L, l_ctx_set); /* 4: set(ctx, key, fn(copy)) */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushcfunction(L, l_ctx_get);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  lua_newtable(L); /* seen */
  push_deep_copy(L, lua_gettop(L) - 1, lua_gettop(L), 0);
  lua_replace(L, -3); /* fn, copy */
  lua_pop(L, 1);
  lua_call(L, 1, 1);
  lua_call(L, 3, 1);
  return 1;
}

typedef struct memo_call {
  lua_State *L;
  int fn_idx;
} memo_call;

static int memo_compute(hersh_value *out, void *ud, hersh_errbuf *err) {
  memo_call *mc = ud;
  lua_State *L = mc->L;
  int top = lua_gettop(L);
  hersh_lua_push_handler(L);
  lua_pushvalue(L, mc->fn_idx);
  /* no deadline of its own: the run's deadline covers it */
  int rc;
  if (hersh_lua_pcall(hersh_lmod_get(L), L, 0, 1, 0) != HERSH_LUA_OK)
    rc = hersh_errorf(err, "%s", lua_tostring(L, -1));
  else if (hersh_lua_to_value(L, -1, out) != HERSH_OK)
    rc = hersh_errorf(err, "out of memory");
  else
    rc = HERSH_OK;
  lua_settop(L, top);
  return rc;
}

static int l_ctx_memo(lua_State *L) {
  hersh_ctx *ctx = check_active(L, "memo");
  const char *name = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  memo_call mc = {L, 3};
  const hersh_value *v;
  if (hersh_ctx_memo(ctx, name, memo_compute, &mc, &v) != HERSH_OK) return raise_errmsg(L);
  hersh_lua_push_value(L, v);
  return 1;
}

static int l_ctx_clear_memo(lua_State *L) {
  hersh_ctx *ctx = check_active(L, "clear_memo");
  if (hersh_ctx_clear_memo(ctx, luaL_checkstring(L, 2)) != HERSH_OK) return raise_errmsg(L);
  return 0;
}

static int l_ctx_env(lua_State *L) {
  const char *v = hersh_ctx_env(check_ctx(L), luaL_checkstring(L, 2));
  if (v) lua_pushstring(L, v);
  else lua_pushnil(L);
  return 1;
}

static int l_ctx_id(lua_State *L) {
  lua_pushstring(L, hersh_watcher_id(hersh_ctx_watcher(check_ctx(L))));
  return 1;
}

static int l_ctx_trigger(lua_State *L) {
  const hersh_trigger *t = hersh_ctx_trigger(check_ctx(L));
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, t->watcher);
  lua_setfield(L, -2, "watcher");
  lua_pushboolean(L, t->user);
  lua_setfield(L, -2, "user");
  lua_createtable(L, (int)t->n_vars, 0);
  for (size_t i = 0; i < t->n_vars; i++) {
    lua_pushstring(L, t->vars[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "vars");
  if (t->reason) {
    lua_pushstring(L, t->reason);
    lua_setfield(L, -2, "reason");
  }
  return 1;
}

static int l_ctx_message(lua_State *L) {
  check_ctx(L);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int l_ctx_log(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  if (hersh_ctx_log(ctx, luaL_checkstring(L, 2)) != HERSH_OK) return raise_errmsg(L);
  return 0;
}

static int l_ctx_print(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  if (hersh_ctx_print(ctx, luaL_checkstring(L, 2)) != HERSH_OK) return raise_errmsg(L);
  return 0;
}

/* ---- inputs through the engine (docs/replay.md) --------------------------------------- */

/* ctx:now(): the run's time, recorded in the trace: reducers use it, not os.time. */
static int l_ctx_now(lua_State *L) {
  lua_pushnumber(L, hersh_ctx_now(check_ctx(L)));
  return 1;
}

/* ctx:random([m [, n]]): math.random's contract, recorded in the trace. */
static int l_ctx_random(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  lua_Integer lo, hi;
  switch (lua_gettop(L)) {
  case 1:
    lua_pushnumber(L, hersh_ctx_random(ctx));
    return 1;
  case 2:
    lo = 1;
    hi = luaL_checkinteger(L, 2);
    if (hi == 0) { /* all bits */
      lo = LUA_MININTEGER;
      hi = LUA_MAXINTEGER;
    }
    break;
  case 3:
    lo = luaL_checkinteger(L, 2);
    hi = luaL_checkinteger(L, 3);
    break;
  default: return luaL_error(L, "ctx:random: wrong number of arguments");
  }
  luaL_argcheck(L, lo <= hi, lua_gettop(L), "interval is empty");
  int64_t out;
  if (hersh_ctx_random_int(ctx, lo, hi, &out) != HERSH_OK) return raise_errmsg(L);
  lua_pushinteger(L, out);
  return 1;
}

/* ---- watches ------------------------------------------------------------------------ */

void hersh_lctx_push_watch_value(lua_State *L, const hersh_watch_value *v) {
  lua_createtable(L, 0, 5);
  hersh_lua_push_value(L, v->value);
  lua_setfield(L, -2, "value");
  if (v->err) {
    lua_pushstring(L, v->err);
    lua_setfield(L, -2, "err");
  }
  lua_pushstring(L, v->name);
  lua_setfield(L, -2, "name");
  lua_pushboolean(L, v->updated);
  lua_setfield(L, -2, "updated");
  lua_pushboolean(L, v->triggered);
  lua_setfield(L, -2, "_triggered");
  luaL_setmetatable(L, HERSH_WATCHVALUE_MT);
}

/* The optional initial value at idx, converted; raises only before anything is held. */
static void read_init(lua_State *L, int idx, hersh_value *init) HERSH_MAY_RAISE {
  if (hersh_lua_to_value(L, idx, init) != HERSH_OK) luaL_error(L, "out of memory");
}

static int l_ctx_watch_call(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  const char *name = luaL_checkstring(L, 2);
  double interval = luaL_checknumber(L, 3);
  luaL_checktype(L, 4, LUA_TFUNCTION);
  hersh_watcher *w = hersh_ctx_watcher(ctx);
  hersh_watch_value out;
  int rc;
  if (hersh_watch_exists(w, name)) { /* a read: nothing to hand over */
    rc = hersh_ctx_watch_call(ctx, name, interval, hersh_ltask_poll, NULL, NULL, NULL, &out);
  } else {
    hersh_value init;
    read_init(L, 5, &init);
    void *ud = hersh_ltask_poll_ud(L, 4, w, hersh_watcher_config(w)->timeout);
    rc = ud ? hersh_ctx_watch_call(ctx, name, interval, hersh_ltask_poll, ud, hersh_ltask_free_poll_ud, &init, &out)
            : hersh_fail_with(HERSH_E_NOMEM, "out of memory");
    hersh_value_free(&init);
  }
  if (rc) return raise_errmsg(L);
  hersh_lctx_push_watch_value(L, &out);
  return 1;
}

/* ctx:watch_flow(name, producer | hersh.Flow [, init]) */
static int l_ctx_watch_flow(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  const char *name = luaL_checkstring(L, 2);
  bool fed = hersh_lflow_test(L, 3) != NULL; /* fed from Lua by f:push */
  if (!fed && !lua_isfunction(L, 3)) luaL_typeerror(L, 3, "function or hersh.Flow");
  hersh_watcher *w = hersh_ctx_watcher(ctx);
  bool fresh = !hersh_watch_exists(w, name);
  hersh_value init;
  read_init(L, 4, &init);
  hersh_flow *flow = NULL;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_flow(ctx, name, &init, &flow, &out);
  hersh_value_free(&init);
  if (rc) return raise_errmsg(L);
  if (fresh && fed) hersh_lflow_watch(L, 3, flow, w, hersh_watcher_config(w)->timeout);
  else if (fresh) hersh_ltask_start_flow(L, 3, flow, w, hersh_watcher_config(w)->timeout);
  hersh_lctx_push_watch_value(L, &out);
  return 1;
}

static int l_ctx_watch_tick(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  const char *name = luaL_checkstring(L, 2);
  double interval = luaL_checknumber(L, 3);
  hersh_watch_value out;
  if (hersh_ctx_watch_tick(ctx, name, interval, &out) != HERSH_OK) return raise_errmsg(L);
  hersh_lctx_push_watch_value(L, &out);
  return 1;
}

static int l_watchvalue_triggered(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "_triggered");
  lua_pushboolean(L, lua_toboolean(L, -1));
  return 1;
}

static int l_ctx_tostring(lua_State *L) {
  hersh_ctx *ctx = check_ctx(L);
  lua_pushfstring(L, "hersh.Context of %s", hersh_watcher_id(hersh_ctx_watcher(ctx)));
  return 1;
}

static const luaL_Reg ctx_meth[] = {
    {"get", l_ctx_get},           {"set", l_ctx_set},           {"update", l_ctx_update},
    {"memo", l_ctx_memo},         {"clear_memo", l_ctx_clear_memo},
    {"env", l_ctx_env},           {"id", l_ctx_id},
    {"trigger", l_ctx_trigger},   {"message", l_ctx_message},
    {"log", l_ctx_log},           {"print", l_ctx_print},
    {"watch_call", l_ctx_watch_call}, {"watch_flow", l_ctx_watch_flow},
    {"watch_tick", l_ctx_watch_tick}, {"now", l_ctx_now},
    {"random", l_ctx_random},         {NULL, NULL}};

static const luaL_Reg ctx_metameth[] = {{"__tostring", l_ctx_tostring}, {NULL, NULL}};

static const luaL_Reg watchvalue_meth[] = {{"triggered", l_watchvalue_triggered}, {NULL, NULL}};

int hersh_lctx_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_CTX_MT, ctx_meth, ctx_metameth);
  hersh_lclass_register(L, HERSH_WATCHVALUE_MT, watchvalue_meth, NULL);
  return 0;
}
