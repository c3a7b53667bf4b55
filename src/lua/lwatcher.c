/*
** lwatcher.c -- hersh.Watcher: a watcher whose reducer, cleanup and recovery policy
** are Lua functions. The Lua functions live in the registry; the engine calls them
** through the C glue below, which is the same path a C reducer takes. A reducer or
** cleanup runs as a task (ltask.c): when it waits, the engine keeps the run open
** (hersh_ctx_wait) until the task ends.
*/
#include <stdlib.h>
#include <string.h>

#include "lhersh.h"

struct hersh_lwatcher {
  hersh_watcher *w;
  hersh_lmod *m;
  bool owns_watcher; /* made from Lua; otherwise bound to a C embedder's watcher */
  int self_ref;      /* keeps a started watcher alive until it is terminal */
  int reduce_ref, cleanup_ref, ctx_ref, decide_ref, policy_ref;
  int tasks_ref; /* {[task pointer] = true}: its polls and producers under way */
  hersh_ltask *run_task; /* runs the reducer and cleanup: waiting, parked, or NULL */
  bool run_starting;     /* a run's first resume is under way: its result goes to run_rc */
  bool run_waits;        /* the run is open in the engine (hersh_ctx_wait) */
  bool run_cleanup;      /* it is the cleanup: only its errors count */
  int run_rc;
};

#define check_lwatcher(L, i) ((hersh_lwatcher *)luaL_checkudata((L), (i), HERSH_WATCHER_MT))

static hersh_lwatcher *check_open(lua_State *L, int i) HERSH_MAY_RAISE {
  hersh_lwatcher *lw = check_lwatcher(L, i);
  if (!lw->w) luaL_error(L, "attempt to use a freed watcher");
  return lw;
}

static void unref(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* ---- the glue the engine calls ----------------------------------------------------- */

/* A string field of a table without metamethods (never raises); NULL if not a string. */
static const char *raw_string(lua_State *L, int t, const char *name) {
  lua_pushstring(L, name);
  lua_rawget(L, t);
  return lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : NULL;
}

/* Maps what a Lua call left on the stack top to the reducer's result. It runs outside
** any protected call, so it must not raise: raw access only. */
static int result_of(lua_State *L, hersh_ctx *ctx, hersh_lua_status st) {
  switch (st) {
  case HERSH_LUA_TIMEOUT: return hersh_fail(ctx, "timeout");
  case HERSH_LUA_NOMEM: return hersh_fail(ctx, "out of memory");
  case HERSH_LUA_ERROR: return hersh_fail(ctx, "%s", lua_tostring(L, -1));
  case HERSH_LUA_OK: break;
  }
  if (lua_type(L, -1) != LUA_TTABLE || !lua_getmetatable(L, -1)) return HERSH_R_OK;
  luaL_getmetatable(L, HERSH_OUTCOME_MT);
  bool outcome = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!outcome) return HERSH_R_OK;
  int t = lua_gettop(L);
  const char *kind = raw_string(L, t, "kind");
  const char *reason = raw_string(L, t, "reason");
  const char *cause = raw_string(L, t, "cause");
  if (!reason) reason = lua_isnil(L, -2) ? "" : luaL_typename(L, -2);
  if (kind && strcmp(kind, "stop") == 0) return hersh_stop(ctx, reason);
  if (kind && strcmp(kind, "kill") == 0) return hersh_kill(ctx, reason);
  return hersh_crash(ctx, reason, cause);
}

/* A run or cleanup ended (co: its result), or its task did (co NULL: forget it; a run
** still open then was aborted by the engine, or ends at its deadline). */
static void run_done(void *ud, lua_State *co, hersh_lua_status st) {
  hersh_lwatcher *lw = ud;
  if (!co) {
    lw->run_task = NULL;
    return;
  }
  if (!lw->w) return;
  hersh_ctx *ctx = hersh_watcher_ctx(lw->w);
  int rc = lw->run_cleanup && st == HERSH_LUA_OK ? HERSH_R_OK : result_of(co, ctx, st);
  if (lw->run_starting) {
    lw->run_rc = rc;
  } else if (lw->run_waits) {
    lw->run_waits = false;
    hersh_ctx_wait_done(ctx, rc);
  }
}

/* The engine ends the wait (deadline, kill): the task, and what it waited on, end. */
static void run_abort(void *ud) {
  hersh_lwatcher *lw = ud;
  lw->run_waits = false;
  if (lw->run_task) hersh_ltask_cancel(lw->run_task); /* run_done clears run_task */
}

/* Runs the function and its nargs arguments on L's top as the run's task. */
static int start_run(hersh_lwatcher *lw, hersh_ctx *ctx, int nargs, bool cleanup) {
  lw->run_rc = HERSH_R_OK;
  lw->run_cleanup = cleanup;
  lw->run_starting = true;
  bool waits = hersh_ltask_start_run(lw->m, lw->w, &lw->run_task, nargs, hersh_ctx_deadline_ns(ctx), run_done, lw);
  lw->run_starting = false;
  if (!waits) return lw->run_rc;
  lw->run_waits = true;
  hersh_ctx_wait(ctx, run_abort, lw);
  return HERSH_R_OK; /* not the result: the run goes on */
}

static int lua_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  hersh_lwatcher *lw = ud;
  lua_State *L = lw->m->L;
  if (!lua_checkstack(L, 8)) return hersh_fail(ctx, "Lua stack overflow");
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->reduce_ref);
  if (msg) {
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, msg->content, msg->len);
    lua_setfield(L, -2, "content");
    lua_pushnumber(L, msg->received_at);
    lua_setfield(L, -2, "received_at");
  } else {
    lua_pushnil(L);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->ctx_ref);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1); /* ctx:message() */
  return start_run(lw, ctx, 2, false);
}

static void lua_cleanup(hersh_ctx *ctx, void *ud) {
  hersh_lwatcher *lw = ud;
  lua_State *L = lw->m->L;
  if (!lua_checkstack(L, 4)) {
    hersh_fail(ctx, "Lua stack overflow");
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->cleanup_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->ctx_ref);
  lua_pushnil(L);
  lua_setiuservalue(L, -2, 1);
  start_run(lw, ctx, 1, true);
}

/* The Lua policy: decide(n, err, policy) -> {action = "retry"|"recover"|"crash", delay}. */
static hersh_decision lua_decide(int n, const char *err, const hersh_recovery *policy, void *ud) {
  hersh_lwatcher *lw = ud;
  lua_State *L = lw->m->L;
  int top = lua_gettop(L);
  hersh_decision d = {HERSH_ACT_CRASH, 0};
  if (!lua_checkstack(L, 6)) return d;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->decide_ref);
  lua_pushinteger(L, n);
  lua_pushstring(L, err);
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->policy_ref);
  hersh_lua_status st = hersh_lua_pcall(lw->m, L, 3, 1, hersh_lua_deadline(hersh_watcher_config(lw->w)->timeout));
  const char *problem = NULL;
  if (st != HERSH_LUA_OK) {
    problem = st == HERSH_LUA_ERROR ? lua_tostring(L, -1) : "timeout";
  } else if (lua_type(L, -1) != LUA_TTABLE) {
    problem = "decide must return a table {action = ..., delay = ...}";
  } else {
    int t = lua_gettop(L);
    const char *action = raw_string(L, t, "action");
    lua_pushliteral(L, "delay");
    lua_rawget(L, t);
    double delay = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (action && strcmp(action, "retry") == 0) d = (hersh_decision){HERSH_ACT_RETRY, delay};
    else if (action && strcmp(action, "recover") == 0) d = (hersh_decision){HERSH_ACT_RECOVER, delay};
    else if (!action || strcmp(action, "crash") != 0) problem = "decide returned an unknown action";
    if (delay < 0) d.delay = 0;
  }
  if (problem) hersh_watcher_effect(lw->w, "recovery policy failed (crashing): %s", problem);
  (void)policy;
  lua_settop(L, top);
  return d;
}

void hersh_lwatcher_track_task(lua_State *L, hersh_watcher *w, hersh_ltask *t, bool add) {
  hersh_lwatcher *lw = hersh_watcher_userdata(w);
  if (!lw || lw->tasks_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lw->tasks_ref);
  if (add) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawsetp(L, -2, t);
  lua_pop(L, 1);
}

static void lua_on_terminal(hersh_watcher *w, void *ud) {
  (void)w;
  hersh_lwatcher *lw = ud;
  lua_State *L = lw->m->L;
  if (lua_checkstack(L, 4)) { /* nothing keeps running: end every poll and producer */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lw->tasks_ref);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lua_pop(L, 1);
      hersh_ltask_cancel(lua_touserdata(L, -1)); /* removes its own key: allowed in lua_next */
    }
    lua_pop(L, 1);
  }
  unref(L, &lw->self_ref); /* may now be collected once Lua drops it */
}

/* ---- creation --------------------------------------------------------------------- */

static double opt_number_field(lua_State *L, int t, const char *name, double def) HERSH_MAY_RAISE {
  double v = def;
  if (lua_getfield(L, t, name) != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "config.%s must be a number", name);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static size_t opt_count_field(lua_State *L, int t, const char *name, size_t def) HERSH_MAY_RAISE {
  double v = opt_number_field(L, t, name, (double)def);
  if (v < 0 || v != (double)(size_t)v) luaL_error(L, "config.%s must be a whole number", name);
  return (size_t)v;
}

static void read_recovery(lua_State *L, int t, hersh_recovery *r) HERSH_MAY_RAISE {
  r->min_failures = (int)opt_number_field(L, t, "min_failures", r->min_failures);
  r->max_failures = (int)opt_number_field(L, t, "max_failures", r->max_failures);
  r->base_delay = opt_number_field(L, t, "base_delay", r->base_delay);
  r->max_delay = opt_number_field(L, t, "max_delay", r->max_delay);
  if (lua_getfield(L, t, "light_delays") == LUA_TTABLE) {
    int n = (int)lua_rawlen(L, -1);
    if (n > HERSH_MAX_LIGHT_DELAYS) luaL_error(L, "at most %d light_delays", HERSH_MAX_LIGHT_DELAYS);
    r->n_light_delays = n;
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, -1, i + 1);
      if (!lua_isnumber(L, -1)) luaL_error(L, "light_delays[%d] must be a number", i + 1);
      r->light_delays[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* Builds a NULL-terminated "KEY=VALUE" array in a userdata left on the stack. */
static const char **read_env(lua_State *L, int t) HERSH_MAY_RAISE {
  if (lua_getfield(L, t, "env") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushnil(L); /* keeps the stack shape: [env strings] */
    return NULL;
  }
  luaL_checktype(L, -1, LUA_TTABLE);
  int env = lua_gettop(L);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    n++;
    lua_pop(L, 1);
  }
  const char **list = lua_newuserdatauv(L, (n + 1) * sizeof *list, 1);
  lua_createtable(L, (int)n, 0); /* anchors the strings */
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "config.env keys must be strings");
    const char *key = lua_tostring(L, -2);
    const char *value = luaL_tolstring(L, -1, NULL);
    const char *s = lua_pushfstring(L, "%s=%s", key, value);
    list[i] = s;
    lua_rawseti(L, -5, (lua_Integer)++i); /* into the anchor table */
    lua_pop(L, 2);                        /* the tolstring copy and the value */
  }
  list[i] = NULL;
  lua_setiuservalue(L, -2, 1);
  lua_remove(L, env);
  return list;
}

/* Whoever frees the watcher (its C embedder, hersh_loop_free), the glue stays in Lua
** until it is collected, and must not reach the watcher again. */
static void forget_watcher(void *ud) { ((hersh_lwatcher *)ud)->w = NULL; }

static int new_glue(lua_State *L, hersh_watcher *w, bool owns) {
  hersh_lwatcher *lw = lua_newuserdatauv(L, sizeof *lw, 0);
  *lw = (hersh_lwatcher){w, hersh_lmod_get(L), owns, LUA_NOREF, LUA_NOREF, LUA_NOREF,
                         LUA_NOREF, LUA_NOREF, LUA_NOREF, LUA_NOREF, .run_task = NULL};
  luaL_setmetatable(L, HERSH_WATCHER_MT);
  hersh_lctx_push_new(L, hersh_watcher_ctx(w));
  lw->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lw->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  hersh_watcher_on_terminal(w, lua_on_terminal, lw);
  hersh_watcher_set_userdata(w, lw);
  hersh_watcher_on_free(w, forget_watcher, lw);
  return 1;
}

/* hersh.watcher(config): config as normalized by lua/hersh/init.lua. */
int hersh_lwatcher_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  hersh_config cfg;
  hersh_config_init(&cfg);
  if (lua_getfield(L, 1, "id") != LUA_TNIL) cfg.id = luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays anchored in the config table */
  cfg.timeout = opt_number_field(L, 1, "timeout", cfg.timeout);
  cfg.cleanup_timeout = opt_number_field(L, 1, "cleanup_timeout", cfg.cleanup_timeout);
  cfg.signal_capacity = opt_count_field(L, 1, "signal_capacity", cfg.signal_capacity);
  cfg.max_log_entries = opt_count_field(L, 1, "max_log_entries", cfg.max_log_entries);
  cfg.max_watches = opt_count_field(L, 1, "max_watches", cfg.max_watches);
  cfg.max_memo = opt_count_field(L, 1, "max_memo", cfg.max_memo);
  /* trace: runs the ring keeps, false for none, "all" for every run (docs/replay.md) */
  if (lua_getfield(L, 1, "trace") == LUA_TBOOLEAN && !lua_toboolean(L, -1)) cfg.trace_runs = 0;
  else if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "all") == 0) cfg.trace_runs = HERSH_TRACE_ALL;
  else if (!lua_isnil(L, -1)) cfg.trace_runs = opt_count_field(L, 1, "trace", cfg.trace_runs);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "record") != LUA_TNIL) cfg.trace_file = luaL_checkstring(L, -1);
  lua_pop(L, 1); /* anchored in the config table */
  int policy = 0;
  if (lua_getfield(L, 1, "recovery") == LUA_TTABLE) {
    read_recovery(L, 2, &cfg.recovery);
    policy = 2;
  }
  cfg.env = read_env(L, 1); /* stack: config, recovery, env */
  lua_getfield(L, 1, "decide");
  bool has_decide = lua_isfunction(L, -1);
  lua_pop(L, 1);
  hersh_watcher *w;
  int rc = hersh_watcher_new(hersh_lmod_get(L)->loop, &cfg, &w);
  if (rc) return hersh_lua_push_failure(L, rc);
  new_glue(L, w, true);
  hersh_lwatcher *lw = lua_touserdata(L, -1);
  if (has_decide) {
    lua_getfield(L, 1, "decide");
    lw->decide_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (policy) lua_pushvalue(L, policy);
    else lua_newtable(L);
    lw->policy_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    hersh_watcher_set_decide(w, lua_decide, lw);
  }
  return 1;
}


int hersh_lwatcher_bind(lua_State *L, hersh_watcher *w, int reduce_idx, int cleanup_idx) {
  reduce_idx = lua_absindex(L, reduce_idx);
  cleanup_idx = cleanup_idx ? lua_absindex(L, cleanup_idx) : 0;
  new_glue(L, w, false);
  hersh_lwatcher *lw = lua_touserdata(L, -1);
  lua_pushvalue(L, -1);
  lw->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* the C embedder holds it */
  lua_pushvalue(L, reduce_idx);
  lw->reduce_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int rc = hersh_watcher_manage(w, lua_reducer, lw);
  if (rc == HERSH_OK && cleanup_idx && lua_isfunction(L, cleanup_idx)) {
    lua_pushvalue(L, cleanup_idx);
    lw->cleanup_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    rc = hersh_watcher_on_cleanup(w, lua_cleanup, lw);
  }
  lua_pop(L, 1);
  return rc;
}

/* ---- methods ---------------------------------------------------------------------- */

static int l_watcher_manage(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int rc = hersh_watcher_manage(lw->w, lua_reducer, lw);
  if (rc) return luaL_error(L, "%s", hersh_errmsg());
  unref(L, &lw->reduce_ref); /* before start, a second manage replaces the first */
  lua_pushvalue(L, 2);
  lw->reduce_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 1);
  return 1;
}

static int l_watcher_cleanup(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int rc = hersh_watcher_on_cleanup(lw->w, lua_cleanup, lw);
  if (rc) return luaL_error(L, "%s", hersh_errmsg());
  unref(L, &lw->cleanup_ref);
  lua_pushvalue(L, 2);
  lw->cleanup_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, 1);
  return 1;
}

static int l_watcher_start(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  int rc = hersh_watcher_start(lw->w);
  if (rc) return hersh_lua_push_failure(L, rc);
  if (lw->self_ref == LUA_NOREF && !hersh_state_terminal(hersh_watcher_state(lw->w))) {
    lua_pushvalue(L, 1);
    lw->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_watcher_send(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  size_t len;
  const char *content = luaL_checklstring(L, 2, &len);
  int rc = hersh_watcher_send(lw->w, content, len);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_watcher_stop(lua_State *L) {
  int rc = hersh_watcher_stop(check_open(L, 1)->w);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_watcher_kill(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  int rc = hersh_watcher_kill(lw->w, luaL_optstring(L, 2, "killed"));
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* w:serve{port = 8080, bind = "127.0.0.1", fd = nil}: the WatcherAPI. */
static int l_watcher_serve(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  hersh_api_options o;
  hersh_api_options_init(&o);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    o.port = (int)opt_number_field(L, 2, "port", o.port);
    o.listen_fd = (int)opt_number_field(L, 2, "fd", o.listen_fd);
    if (lua_getfield(L, 2, "bind") != LUA_TNIL) o.bind = luaL_checkstring(L, -1);
    lua_pop(L, 1); /* the string stays anchored in the table */
  }
  int rc = hersh_watcher_serve(lw->w, &o);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushinteger(L, hersh_watcher_api_port(lw->w));
  return 1;
}

static int l_watcher_api_port(lua_State *L) {
  int port = hersh_watcher_api_port(check_open(L, 1)->w);
  if (port) lua_pushinteger(L, port);
  else lua_pushnil(L);
  return 1;
}

static int l_watcher_state(lua_State *L) {
  lua_pushstring(L, hersh_state_name(hersh_watcher_state(check_open(L, 1)->w)));
  return 1;
}

static int l_watcher_id(lua_State *L) {
  lua_pushstring(L, hersh_watcher_id(check_open(L, 1)->w));
  return 1;
}

static int l_watcher_failures(lua_State *L) {
  lua_pushinteger(L, hersh_watcher_failures(check_open(L, 1)->w));
  return 1;
}

static int l_watcher_next_retry(lua_State *L) {
  double t = hersh_watcher_next_retry(check_open(L, 1)->w);
  if (t > 0) lua_pushnumber(L, t);
  else lua_pushnil(L);
  return 1;
}

static int l_watcher_pending(lua_State *L) {
  hersh_queue_counts c = hersh_watcher_pending(check_open(L, 1)->w);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)c.watcher);
  lua_setfield(L, -2, "watcher");
  lua_pushinteger(L, (lua_Integer)c.user);
  lua_setfield(L, -2, "user");
  lua_pushinteger(L, (lua_Integer)c.var);
  lua_setfield(L, -2, "var");
  return 1;
}

/* ---- logs: copied out under the log lock, turned into tables afterwards ---------- */

typedef struct log_copy {
  hersh_log_kind kind;
  hersh_log_entry *items;
  size_t n, cap;
  bool oom;
} log_copy;

static bool copy_entry(const hersh_log_entry *e, void *ud) {
  log_copy *c = ud;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    hersh_log_entry *items = realloc(c->items, cap * sizeof *items);
    if (!items) {
      c->oom = true;
      return false;
    }
    c->items = items;
    c->cap = cap;
  }
  if (hersh_log_entry_copy(c->kind, e, &c->items[c->n]) != HERSH_OK) {
    c->oom = true;
    return false;
  }
  c->n++;
  return true;
}

static void log_copy_free(log_copy *c) {
  for (size_t i = 0; i < c->n; i++) hersh_log_entry_free(c->kind, &c->items[i]);
  free(c->items);
}

/* The log named by argument i: a name of hersh_log_kind_name, or an older alias. */
static hersh_log_kind check_log_kind(lua_State *L, int i) HERSH_MAY_RAISE {
  const char *name = luaL_checkstring(L, i);
  hersh_log_kind kind;
  if (hersh_log_kind_parse(name, &kind)) return kind;
  return (hersh_log_kind)luaL_argerror(L, i, lua_pushfstring(L, "unknown log '%s' (" HERSH_LOG_KIND_NAMES ")", name));
}

static void set_str(lua_State *L, const char *k, const char *v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* A context entry's value as hersh.json decodes it, in field k; JSON null stays nil. */
static void set_decoded(lua_State *L, const char *k, const char *json) HERSH_MAY_RAISE {
  if (!json) return;
  luaL_requiref(L, "hersh.json", luaopen_hersh_json, 0);
  lua_getfield(L, -1, "decode");
  lua_pushstring(L, json);
  lua_call(L, 1, 1);
  if (lua_islightuserdata(L, -1) && !lua_touserdata(L, -1)) lua_pop(L, 1); /* json.null */
  else lua_setfield(L, -3, k);
  lua_pop(L, 1);
}

static void push_entry(lua_State *L, hersh_log_kind kind, const hersh_log_entry *e) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)e->id);
  lua_setfield(L, -2, "id");
  lua_pushnumber(L, e->time);
  lua_setfield(L, -2, "time");
  switch (kind) {
  case HERSH_LOG_REDUCE:
    set_str(L, "signal", e->u.reduce.signal);
    set_str(L, "reason", e->u.reduce.reason);
    set_str(L, "detail", e->u.reduce.detail);
    set_str(L, "prev", hersh_state_name(e->u.reduce.prev));
    set_str(L, "next", hersh_state_name(e->u.reduce.next));
    break;
  case HERSH_LOG_EFFECT: set_str(L, "text", e->u.effect.text); break;
  case HERSH_LOG_RESULT:
    set_str(L, "effect", e->u.result.effect);
    lua_pushboolean(L, e->u.result.ok);
    lua_setfield(L, -2, "ok");
    set_str(L, "error", e->u.result.error);
    break;
  case HERSH_LOG_WATCH_ERROR:
    set_str(L, "name", e->u.watch_error.name);
    set_str(L, "phase", e->u.watch_error.phase);
    set_str(L, "error", e->u.watch_error.error);
    break;
  case HERSH_LOG_CONTEXT:
    set_str(L, "key", e->u.context.key);
    set_str(L, "op", e->u.context.op);
    set_str(L, "old_json", e->u.context.old_json);
    set_str(L, "new_json", e->u.context.new_json);
    set_decoded(L, "old", e->u.context.old_json);
    set_decoded(L, "new", e->u.context.new_json);
    break;
  case HERSH_LOG_FAULT:
    set_str(L, "from", hersh_state_name(e->u.fault.from));
    set_str(L, "to", hersh_state_name(e->u.fault.to));
    set_str(L, "reason", e->u.fault.reason);
    break;
  default: break;
  }
}

#define HERSH_LOG_COPY_MT "hersh.LogCopy"

static int l_log_copy_gc(lua_State *L) {
  log_copy *c = luaL_checkudata(L, 1, HERSH_LOG_COPY_MT); /* a program can call it too */
  log_copy_free(c);
  *c = (log_copy){0};
  return 0;
}

static int l_watcher_logs(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  hersh_log_kind kind = check_log_kind(L, 2);
  lua_Integer limit = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, limit >= 0, 3, "limit must not be negative");
  log_copy c = {.kind = kind};
  hersh_watcher_logs(lw->w, kind, (size_t)limit, copy_entry, &c);
  if (c.oom) {
    log_copy_free(&c);
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory copying the log");
    lua_pushliteral(L, "ENOMEM");
    return 3;
  }
  /* The copy belongs to a userdata while tables are built, so an allocation error
  ** raised meanwhile cannot leak it. */
  log_copy *owned = lua_newuserdatauv(L, sizeof *owned, 0);
  *owned = c;
  static const luaL_Reg log_copy_metameth[] = {{"__gc", l_log_copy_gc}, {NULL, NULL}};
  hersh_lclass_register(L, HERSH_LOG_COPY_MT, NULL, log_copy_metameth);
  luaL_setmetatable(L, HERSH_LOG_COPY_MT);
  lua_createtable(L, (int)c.n, 0);
  for (size_t i = 0; i < c.n; i++) {
    push_entry(L, kind, &c.items[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int l_watcher_gc(lua_State *L) {
  hersh_lwatcher *lw = check_lwatcher(L, 1);
  if (lw->w) {
    if (lw->owns_watcher) {
      hersh_watcher_free(lw->w); /* ends its tasks through lua_on_terminal */
    } else { /* the C embedder keeps its watcher: it forgets us */
      if (lw->run_waits) hersh_ctx_wait(hersh_watcher_ctx(lw->w), NULL, NULL); /* ends at its deadline */
      lw->run_waits = false;
      if (lw->run_task) hersh_ltask_cancel(lw->run_task);
      hersh_watcher_on_terminal(lw->w, NULL, NULL);
      hersh_watcher_set_userdata(lw->w, NULL);
      hersh_watcher_on_free(lw->w, NULL, NULL);
    }
    lw->w = NULL;
  }
  unref(L, &lw->reduce_ref);
  unref(L, &lw->cleanup_ref);
  unref(L, &lw->ctx_ref);
  unref(L, &lw->decide_ref);
  unref(L, &lw->policy_ref);
  unref(L, &lw->tasks_ref);
  unref(L, &lw->self_ref);
  return 0;
}

static int l_watcher_tostring(lua_State *L) {
  hersh_lwatcher *lw = check_lwatcher(L, 1);
  if (!lw->w) lua_pushliteral(L, "hersh.Watcher (freed)");
  else lua_pushfstring(L, "hersh.Watcher %s (%s)", hersh_watcher_id(lw->w), hersh_state_name(hersh_watcher_state(lw->w)));
  return 1;
}

/* w:trace(): the trace as text (docs/replay.md), or nil, err, code. The lines are
** gathered in C first: nothing may raise under the trace's lock. */
static bool gather_line(const char *line, size_t len, void *ud) {
  hersh_buf_put(ud, line, len);
  return true;
}

static int push_text(lua_State *L) {
  const hersh_buf *text = lua_touserdata(L, 1);
  lua_pushlstring(L, text->p ? text->p : "", text->len);
  return 1;
}

static int l_watcher_trace(lua_State *L) {
  hersh_lwatcher *lw = check_open(L, 1);
  hersh_buf text = {0};
  int rc = hersh_watcher_trace(lw->w, gather_line, &text);
  if (!rc && text.oom) rc = HERSH_E_NOMEM;
  if (!rc) {
    lua_pushcfunction(L, push_text);
    lua_pushlightuserdata(L, &text);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) rc = hersh_fail_with(HERSH_E_NOMEM, "out of memory for the trace");
  }
  hersh_buf_free(&text);
  if (rc) return hersh_lua_push_failure(L, rc);
  return 1;
}

static const luaL_Reg watcher_meth[] = {
    {"manage", l_watcher_manage},     {"cleanup", l_watcher_cleanup}, {"start", l_watcher_start},
    {"send", l_watcher_send},         {"stop", l_watcher_stop},       {"kill", l_watcher_kill},
    {"state", l_watcher_state},       {"id", l_watcher_id},           {"failures", l_watcher_failures},
    {"next_retry", l_watcher_next_retry}, {"pending", l_watcher_pending}, {"logs", l_watcher_logs},
    {"trace", l_watcher_trace},
    {"serve", l_watcher_serve},       {"api_port", l_watcher_api_port}, {NULL, NULL}};

static const luaL_Reg watcher_metameth[] = {
    {"__gc", l_watcher_gc}, {"__close", l_watcher_gc}, {"__tostring", l_watcher_tostring}, {NULL, NULL}};

int hersh_lwatcher_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_WATCHER_MT, watcher_meth, watcher_metameth);
  return 0;
}
