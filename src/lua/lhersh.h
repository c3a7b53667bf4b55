/*
** lhersh.h -- what the files of the Lua binding (src/lua) share.
**
** The binding is the module `hersh.core`; lua/hersh/init.lua builds the user-facing
** `hersh` module on top of it. All Lua code runs on the loop thread, on the main Lua
** thread (reducers, cleanups, updates) or on coroutines (polls, flow producers).
*/
#ifndef HERSH_LHERSH_H
#define HERSH_LHERSH_H

#include <lauxlib.h>
#include <lua.h>

#include "engine/engine.h"

/* Marks a function that may raise a Lua error (longjmp): it holds no resource then. */
#define HERSH_MAY_RAISE

#define HERSH_WATCHER_MT "hersh.Watcher"
#define HERSH_CTX_MT "hersh.Context"
#define HERSH_TASK_MT "hersh.Task"
#define HERSH_OUTCOME_MT "hersh.Outcome"
#define HERSH_WATCHVALUE_MT "hersh.WatchValue"
#define HERSH_PROCESS_MT "hersh.Process"
#define HERSH_TIMER_MT "hersh.Timer"
#define HERSH_ANSWER_MT "hersh.Unavailable"

/* How a call into Lua ended (lcall.c). */
typedef enum hersh_lua_status {
  HERSH_LUA_OK = 0,
  HERSH_LUA_ERROR,   /* an error; the message (with traceback) is on the stack */
  HERSH_LUA_TIMEOUT, /* aborted at its deadline */
  HERSH_LUA_NOMEM
} hersh_lua_status;

/* The interrupt the watchdog fires for Lua code: it hooks the thread running now. */
typedef struct hersh_lua_interrupt {
  hersh_interrupt base;
  _Atomic(lua_State *) L;
} hersh_lua_interrupt;

typedef struct hersh_lwatcher hersh_lwatcher;
typedef struct hersh_ltask hersh_ltask;

/* One per Lua state: the loop its watchers run on (lmodule.c). */
typedef struct hersh_lmod {
  hersh_loop *loop;
  bool owns_loop;
  lua_State *L; /* the main thread */
  hersh_lua_interrupt interrupt;
  hersh_ltask *current_task; /* the coroutine being resumed, for hersh.sleep */
} hersh_lmod;

/* A runtime failure as Lua sees it: pushes nil, hersh_errmsg(), the error's code. */
int hersh_lua_push_failure(lua_State *L, int err);

/* lstate.c: preloads hersh.core and cjson, and puts the hersh modules on package.path. */
void hersh_lua_prepare(lua_State *L);

/* lmodule.c */
hersh_lmod *hersh_lmod_get(lua_State *L);
int luaopen_hersh_core(lua_State *L);

/* lcall.c: the one way into Lua. The caller pushes the traceback handler, then the
** function and its nargs arguments; results (or the error text) follow the handler.
** `deadline` (monotonic ns, 0 = none) aborts the call when it passes. */
void hersh_lua_push_handler(lua_State *L);
hersh_lua_status hersh_lua_pcall(hersh_lmod *m, lua_State *L, int nargs, int nresults, int64_t deadline);
int64_t hersh_lua_deadline(double seconds);
/* The same deadline around a coroutine resume; end says whether it passed. */
void hersh_lua_guard_begin(hersh_lmod *m, lua_State *L, int64_t deadline);
bool hersh_lua_guard_end(hersh_lmod *m, lua_State *L);
void hersh_lua_interrupt_init(lua_State *L, hersh_lmod *m);

/* lvalue.c: Lua values <-> hersh_value. Tables, functions, userdata and threads stay
** in Lua (EXT handles on registry references); everything else is copied. */
int hersh_lua_to_value(lua_State *L, int idx, hersh_value *out);
void hersh_lua_push_value(lua_State *L, const hersh_value *v);
/* The plain form of the value at idx: JSON-able, foreign values as "<type>" tags. */
int hersh_lua_to_plain(lua_State *L, int idx, hersh_value *out);

/* lwatcher.c */
int hersh_lwatcher_open(lua_State *L);
int hersh_lwatcher_new(lua_State *L);
/* Binds an existing C watcher to the Lua reducer (and cleanup) on the stack top. */
int hersh_lwatcher_bind(lua_State *L, hersh_watcher *w, int reduce_idx, int cleanup_idx);
/* The tasks of a watcher are cancelled when it reaches a terminal state. */
void hersh_lwatcher_track_task(lua_State *L, hersh_watcher *w, hersh_ltask *t, bool add);

/* lproc.c: adds spawn, listen and close_fd to the module table on the stack top. */
int hersh_lproc_open(lua_State *L);

/* lfiles.c and ltimer.c: core.fs and core.timer on the module table at the stack top. */
int hersh_lfiles_open(lua_State *L);
int hersh_ltimer_open(lua_State *L);
int hersh_lsha256_open(lua_State *L);
int hersh_lstore_open(lua_State *L); /* lstore.c: core.db_open */
int hersh_lsandbox_open(lua_State *L); /* lsandbox.c: core.sandbox */

/* lctx.c */
int hersh_lctx_open(lua_State *L);
void hersh_lctx_push_new(lua_State *L, hersh_ctx *ctx);
/* Pushes the watch value table for a watch read. */
void hersh_lctx_push_watch_value(lua_State *L, const hersh_watch_value *v);

/* ltask.c: coroutines for polls and flow producers, and hersh.sleep. */
int hersh_ltask_open(lua_State *L);
int hersh_ltask_poll(hersh_poll *p, void *ud);
void hersh_ltask_free_poll_ud(void *ud);
void *hersh_ltask_poll_ud(lua_State *L, int fn_idx, hersh_watcher *w, double timeout);
void hersh_ltask_cancel(hersh_ltask *t);
void hersh_ltask_push_skip(lua_State *L); /* the hersh.SKIP sentinel */
int hersh_ltask_start_flow(lua_State *L, int producer_idx, hersh_flow *flow, hersh_watcher *w, double timeout);
int hersh_ltask_sleep(lua_State *L);

/* lhttp.c: hersh.core.http_request(opts, callback). */
int hersh_lhttp_request(lua_State *L);
int hersh_lhttpd_open(lua_State *L); /* lhttpd.c: core.http_serve */
int hersh_lfswatch_open(lua_State *L); /* lfswatch.c: core.fs_watch, core.file_id */

#endif
