/*
** ltask.c -- hersh.Task: a coroutine the loop resumes. Watch polls, flow producers,
** reducers and cleanups run as tasks, so they can wait (hersh.sleep, and any helper
** following the protocol of the "waits" section) without blocking the loop.
** A task lives as a userdata anchored in the registry while it runs or sleeps; its
** watcher ends all its tasks when it reaches a terminal state.
*/
#include <stdlib.h>
#include <string.h>

#include "lhersh.h"

struct hersh_ltask {
  hersh_lmod *m;
  hersh_watcher *w; /* NULL once cancelled */
  hersh_poll *poll; /* a watch_call poll, or NULL */
  hersh_flow *flow; /* a flow producer, or NULL */
  lua_State *co;
  double timeout;
  hersh_lhandle *timer; /* sleeps; NULL once finished */
  /* Resumes at the next loop turn (a zero sleep, a plain yield, the first resume). Not a
  ** 0 ms timer: libuv 1.44 runs a timer re-armed at 0 in its own callback again in the
  ** same pass, for ever. An idle handle runs once per turn and keeps poll from blocking. */
  hersh_lhandle *idle;
  int pending_args; /* arguments waiting on the coroutine's stack for the next resume */
  int self_ref;     /* owned by the timer: anchors the userdata and its coroutine */
  int64_t deadline; /* a run's or cleanup's, for all its resumes; 0: `timeout` per resume */
  void (*cancel)(void *ud); /* what it waits on, ended if the task ends first */
  void *cancel_ud;
  hersh_ltask_done done; /* a run's or cleanup's: told how it ended */
  void *done_ud;
};

#define check_task(L, i) ((hersh_ltask *)luaL_checkudata((L), (i), HERSH_TASK_MT))

static const char skip_key = 's';

/* What a watch_call poll carries: the poll function and its watcher's timeout. */
typedef struct poll_ud {
  hersh_lmod *m;
  hersh_watcher *w;
  int fn_ref;
  double timeout;
} poll_ud;

/* ---- lifetime ------------------------------------------------------------------------ */

/* Ends a task: it is never resumed again, and may be collected from now on. What it
** waited on is cancelled; a run that had not ended hears it with a NULL coroutine. */
static void task_finish(hersh_ltask *t) {
  void (*cancel)(void *ud) = t->cancel;
  hersh_ltask_done done = t->done;
  t->cancel = NULL;
  t->done = NULL;
  if (cancel) cancel(t->cancel_ud);
  if (done) done(t->done_ud, NULL, HERSH_LUA_ERROR);
  if (t->w) hersh_lwatcher_track_task(t->m->L, t->w, t, false);
  t->w = NULL;
  t->poll = NULL;
  t->flow = NULL;
  hersh_lhandle_close(t->idle);
  hersh_lhandle_close(t->timer);
}

void hersh_ltask_cancel(hersh_ltask *t) { task_finish(t); }

static void task_shutdown(void *t) { task_finish(t); }

static bool open_handles(hersh_ltask *t) {
  uv_loop_t *uv = hersh_loop_uv(t->m->loop);
  hersh_lhandle *timer = hersh_lhandle_new(t->m, t, task_shutdown);
  if (!hersh_lhandle_open(timer, timer ? uv_timer_init(uv, &timer->uv.timer) : UV_ENOMEM, &t->timer)) return false;
  hersh_lhandle *idle = hersh_lhandle_new(t->m, t, task_shutdown);
  if (hersh_lhandle_open(idle, idle ? uv_idle_init(uv, &idle->uv.idle) : UV_ENOMEM, &t->idle)) return true;
  hersh_lhandle_close(t->timer);
  return false;
}

/* A new task running the function on the top of L's stack (popped); NULL when its
** handles cannot be had. */
static hersh_ltask *task_new(hersh_lmod *m, hersh_watcher *w, double timeout) HERSH_MAY_RAISE {
  lua_State *L = m->L;
  hersh_ltask *t = lua_newuserdatauv(L, sizeof *t, 1);
  *t = (hersh_ltask){.m = m, .w = w, .timeout = timeout, .self_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_TASK_MT);
  t->co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  lua_rotate(L, -2, 1);   /* task, fn */
  lua_xmove(L, t->co, 1); /* the function starts the coroutine's stack */
  if (!open_handles(t)) {
    lua_pop(L, 1);
    return NULL;
  }
  t->self_ref = hersh_lhandle_keep(t->timer, L);
  hersh_lwatcher_track_task(L, w, t, true);
  return t;
}

/* ---- running -------------------------------------------------------------------------- */

static int apply_update(hersh_value *v, void *ud, hersh_errbuf *err) {
  poll_ud *u = ud;
  lua_State *L = u->m->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return hersh_errorf(err, "Lua stack overflow");
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->fn_ref);
  hersh_lua_push_value(L, v);
  hersh_lua_status st = hersh_lua_pcall(u->m, L, 1, 1, hersh_lua_deadline(u->timeout));
  int rc = HERSH_OK;
  if (st == HERSH_LUA_OK) {
    hersh_value next;
    rc = hersh_lua_to_value(L, -1, &next);
    if (rc == HERSH_OK) {
      hersh_value_free(v);
      *v = next;
    } else {
      rc = hersh_errorf(err, "out of memory");
    }
  } else {
    rc = hersh_errorf(err, "%s", st == HERSH_LUA_ERROR ? lua_tostring(L, -1) : "timeout");
  }
  lua_settop(L, top);
  return rc;
}

static void free_update(void *ud) {
  poll_ud *u = ud;
  luaL_unref(u->m->L, LUA_REGISTRYINDEX, u->fn_ref);
  free(u);
}

/* A poll's answer, from the value it returned (on top of the coroutine's stack). */
static void answer_poll(hersh_ltask *t, int nres) {
  lua_State *co = t->co;
  hersh_poll *p = t->poll;
  if (nres == 0) lua_pushnil(co);
  lua_rawgetp(co, LUA_REGISTRYINDEX, &skip_key);
  bool skip = lua_rawequal(co, -1, -2);
  lua_pop(co, 1);
  if (skip) {
    hersh_poll_skip(p);
  } else if (lua_isfunction(co, -1)) {
    poll_ud *u = malloc(sizeof *u);
    if (!u) {
      hersh_poll_fail(p, "out of memory");
      return;
    }
    *u = (poll_ud){t->m, t->w, LUA_NOREF, t->timeout};
    lua_pushvalue(co, -1);
    lua_xmove(co, t->m->L, 1);
    u->fn_ref = luaL_ref(t->m->L, LUA_REGISTRYINDEX);
    hersh_poll_update(p, apply_update, u, free_update);
  } else {
    hersh_value v;
    if (hersh_lua_to_value(co, -1, &v) == HERSH_OK)
      hersh_poll_replace(p, &v);
    else
      hersh_poll_fail(p, "out of memory");
  }
}

static void task_failed(hersh_ltask *t) {
  lua_State *L = t->m->L;
  const char *msg = lua_tostring(t->co, -1);
  luaL_traceback(L, t->co, msg ? msg : "(error object is not a string)", 0);
  const char *text = lua_tostring(L, -1);
  if (t->poll) hersh_poll_fail(t->poll, text);
  else if (t->flow) {
    hersh_watcher_watch_error(t->w, hersh_flow_name(t->flow), "flow", text);
    hersh_watcher_effect(t->w, "Flow[%s] failed", hersh_flow_name(t->flow));
  }
  lua_pop(L, 1);
}

static bool resume_later(hersh_ltask *t, double seconds);

/* Under lua_pcall: an error object -> its text, as lcall.c's handler words it. */
static int error_text(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
    lua_tostring(L, 1);
    lua_settop(L, 1);
    return 1;
  }
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  return 1;
}

/* A run's end: one result (or the error with its traceback) on the coroutine's top,
** as a protected call with one result leaves it. done stays set: a task that returned
** is parked for its watcher's next run (a coroutine that returned can start another
** function), which saves making a coroutine and two handles per run. */
static void end_run(hersh_ltask *t, int rc, bool late, int nres) {
  lua_State *co = t->co;
  hersh_lua_status st = HERSH_LUA_OK;
  if (late) st = HERSH_LUA_TIMEOUT;
  else if (rc == LUA_ERRMEM) st = HERSH_LUA_NOMEM;
  else if (rc != LUA_OK) st = HERSH_LUA_ERROR;
  if (st == HERSH_LUA_ERROR) {
    lua_State *L = t->m->L; /* a dead coroutine takes no calls: the text is made here */
    lua_pushcfunction(L, error_text);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    const char *msg = lua_pcall(L, 1, 1, 0) == LUA_OK ? lua_tostring(L, -1) : NULL;
    luaL_traceback(L, co, msg ? msg : "(error object has no text)", 0);
    lua_xmove(L, co, 1);
    lua_pop(L, 1);
  } else if (st == HERSH_LUA_OK) {
    if (nres == 0) lua_pushnil(co);
    else lua_pop(co, nres - 1); /* the first result, as lua_pcall(..., 1) keeps it */
  }
  t->done(t->done_ud, co, st);
}

/* What a wait resumes a run with (the nargs values on the coroutine's top) is one of
** the run's inputs: the trace records it where the code takes it. */
static void record_resume(hersh_ltask *t, int nargs) {
  hersh_ctx *ctx = hersh_watcher_ctx(t->w);
  if (!hersh_ctx_tracing(ctx)) return;
  hersh_value list = hersh_list();
  for (int i = nargs; i >= 1; i--) {
    hersh_value item;
    if (hersh_lua_to_value(t->co, -i, &item) != HERSH_OK) break;
    hersh_list_push(&list, &item);
    hersh_value_free(&item);
  }
  hersh_ctx_record_resume(ctx, &list);
  hersh_value_free(&list);
}

static void task_resume(hersh_ltask *t) {
  if (!t->w || hersh_state_terminal(hersh_watcher_state(t->w))) {
    task_finish(t);
    return;
  }
  hersh_lmod *m = t->m;
  hersh_ltask *outer = m->current_task;
  m->current_task = t;
  hersh_lua_guard_begin(m, t->co, t->deadline ? t->deadline : hersh_lua_deadline(t->timeout));
  int nres = 0, nargs = t->pending_args;
  t->pending_args = 0;
  if (t->done && lua_status(t->co) == LUA_YIELD) record_resume(t, nargs);
  int rc = lua_resume(t->co, m->L, nargs, &nres);
  bool late = hersh_lua_guard_end(m, t->co);
  m->current_task = outer;
  if (rc == LUA_YIELD) {
    lua_pop(t->co, nres);
    /* A yield that is not a sleep (coroutine.yield): go on at the next loop turn. */
    if (t->w && !t->cancel && !uv_is_active(&t->timer->uv.handle) && !uv_is_active(&t->idle->uv.handle))
      resume_later(t, 0);
    return;
  }
  if (t->done) {
    /* done may end the watcher, which finishes t and drops its anchor: the stack
    ** keeps t (and its coroutine) alive until this function is through with it. */
    lua_rawgeti(m->L, LUA_REGISTRYINDEX, t->self_ref);
    end_run(t, rc, late, nres);
    if (rc == LUA_OK && !late && t->w && t->done) lua_settop(t->co, 0); /* parked for the next run */
    else task_finish(t);
    lua_pop(m->L, 1);
    return;
  }
  if (rc == LUA_OK && !late) {
    if (t->poll) answer_poll(t, nres);
    else if (t->flow) hersh_watcher_effect(t->w, "Flow[%s] ended", hersh_flow_name(t->flow));
  } else if (late) {
    lua_pushliteral(t->co, "timeout");
    task_failed(t);
  } else {
    task_failed(t);
  }
  task_finish(t);
}

static void timer_cb(uv_timer_t *timer) { task_resume(timer->data); }

static void idle_cb(uv_idle_t *idle) {
  uv_idle_stop(idle);
  task_resume(idle->data);
}

/* Resumes the task after `seconds`; under half a millisecond, at the next loop turn.
** False when the task has no handle for it. */
static bool resume_later(hersh_ltask *t, double seconds) {
  uint64_t ms = (uint64_t)(seconds * 1000.0 + 0.5);
  if (ms > 0) return t->timer && uv_timer_start(&t->timer->uv.timer, timer_cb, ms, 0) == 0;
  return t->idle && uv_idle_start(&t->idle->uv.idle, idle_cb) == 0;
}

/* ---- watch_call polls ------------------------------------------------------------------ */

void *hersh_ltask_poll_ud(lua_State *L, int fn_idx, hersh_watcher *w, double timeout) {
  hersh_lmod *m = hersh_lmod_get(L);
  poll_ud *u = malloc(sizeof *u);
  if (!u) return NULL;
  lua_pushvalue(L, fn_idx);
  *u = (poll_ud){m, w, luaL_ref(L, LUA_REGISTRYINDEX), timeout};
  return u;
}

void hersh_ltask_free_poll_ud(void *ud) { free_update(ud); }

int hersh_ltask_poll(hersh_poll *p, void *ud) {
  poll_ud *u = ud;
  lua_State *L = u->m->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, u->fn_ref);
  hersh_ltask *t = task_new(u->m, u->w, u->timeout);
  if (!t) {
    hersh_poll_fail(p, "out of memory for the poll's task");
    return HERSH_OK;
  }
  t->poll = hersh_poll_defer(p);
  task_resume(t);
  return HERSH_OK;
}

/* ---- flow producers --------------------------------------------------------------- */

/* emit(value [, err]): true, or nil, message, code when the queue is full. */
static int l_task_emit(lua_State *L) {
  hersh_ltask *t = lua_touserdata(L, lua_upvalueindex(1));
  if (!t->flow || !t->w) return luaL_error(L, "watcher stopped");
  const char *err = luaL_optstring(L, 2, NULL);
  hersh_value v;
  if (hersh_lua_to_value(L, 1, &v) != HERSH_OK) return luaL_error(L, "out of memory");
  int rc = hersh_flow_push(t->flow, &v, err);
  if (rc == HERSH_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  hersh_value_free(&v);
  if (rc == HERSH_E_STOPPED) return luaL_error(L, "watcher stopped");
  lua_pushnil(L);
  lua_pushstring(L, hersh_errmsg());
  lua_pushstring(L, hersh_errcode(rc));
  return 3;
}

int hersh_ltask_start_flow(lua_State *L, int producer_idx, hersh_flow *flow, hersh_watcher *w, double timeout) {
  hersh_lmod *m = hersh_lmod_get(L);
  lua_pushvalue(L, producer_idx);
  lua_xmove(L, m->L, 1); /* L may be a reducer's coroutine: task_new works on the main thread */
  hersh_ltask *t = task_new(m, w, timeout);
  if (!t) return luaL_error(L, "out of memory for the flow's task");
  t->flow = flow;
  /* The producer gets emit as its argument: wrap it so the first resume passes it. */
  lua_State *co = t->co;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
  lua_pushcclosure(L, l_task_emit, 1);
  lua_xmove(L, co, 1);
  t->pending_args = 1;
  resume_later(t, 0); /* starts on the next loop turn */
  return HERSH_OK;
}

/* ---- reducers and cleanups ---------------------------------------------------------- */

bool hersh_ltask_start_run(hersh_lmod *m, hersh_watcher *w, hersh_ltask **slot, int nargs, int64_t deadline,
                           hersh_ltask_done done, void *ud) {
  lua_State *L = m->L;
  hersh_ltask *t = *slot;
  if (t) { /* parked: its coroutine returned, its stack is empty */
    lua_xmove(L, t->co, nargs + 1);
  } else {
    lua_rotate(L, -(nargs + 1), -1); /* the function on top, for task_new */
    if (!(t = task_new(m, w, 0))) {
      lua_pop(L, nargs);
      lua_pushliteral(L, "out of memory for the run's coroutine");
      done(ud, L, HERSH_LUA_ERROR);
      lua_pop(L, 1);
      return false;
    }
    lua_xmove(L, t->co, nargs);
    *slot = t;
  }
  t->pending_args = nargs;
  t->deadline = deadline;
  t->done = done;
  t->done_ud = ud;
  task_resume(t);
  return *slot == t && lua_status(t->co) == LUA_YIELD; /* done(NULL) clears the slot */
}

/* ---- waits: the protocol of every yielding helper (docs/architecture.md) ------------ */

hersh_ltask *hersh_ltask_running(lua_State *L) {
  hersh_ltask *t = hersh_lmod_get(L)->current_task;
  return t && t->co == L && t->w ? t : NULL;
}

void hersh_ltask_wait(hersh_ltask *t, void (*cancel)(void *ud), void *ud) {
  t->cancel = cancel;
  t->cancel_ud = ud;
}

lua_State *hersh_ltask_thread(hersh_ltask *t) { return t->co; }

void hersh_ltask_wake(hersh_ltask *t, int n) {
  t->cancel = NULL;
  t->cancel_ud = NULL;
  t->pending_args = n;
  if (!resume_later(t, 0)) { /* no handle left: the task was finished meanwhile */
    lua_pop(t->co, n);
    t->pending_args = 0;
  }
}

/* ---- hersh.sleep -------------------------------------------------------------------- */

int hersh_ltask_sleep(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  luaL_argcheck(L, seconds >= 0, 1, "must not be negative");
  hersh_ltask *t = hersh_ltask_running(L);
  if (!t)
    return luaL_error(L, "hersh.sleep works only in a watch poll, a flow producer, a reducer or a cleanup "
                         "(elsewhere it would block the loop)");
  if (!resume_later(t, seconds)) return luaL_error(L, "hersh.sleep: no timer for this task");
  return lua_yield(L, 0);
}

/* ---- the module part -------------------------------------------------------------------- */

/* Normally a task is collected once finished; when the whole Lua state closes, what
** it still has open is closed here. */
static int l_task_gc(lua_State *L) {
  hersh_ltask *t = check_task(L, 1);
  hersh_lhandle_close(t->idle);
  hersh_lhandle_close(t->timer);
  return 0;
}

int hersh_ltask_open(lua_State *L) {
  static const luaL_Reg task_metameth[] = {{"__gc", l_task_gc}, {NULL, NULL}};
  hersh_lclass_register(L, HERSH_TASK_MT, NULL, task_metameth);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &skip_key) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &skip_key);
  }
  lua_pop(L, 1);
  return 0;
}

void hersh_ltask_push_skip(lua_State *L) { lua_rawgetp(L, LUA_REGISTRYINDEX, &skip_key); }
