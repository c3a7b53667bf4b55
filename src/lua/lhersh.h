/*
** lhersh.h -- what the files of the Lua binding (src/lua) share.
**
** The binding is five modules (lmodule.c): `hersh.core`, the engine programs get, on
** which lua/hersh/init.lua builds the user-facing `hersh` module; and the Host's
** `hersh.os`, `hersh.httpd`, `hersh.http` and `hersh.store`.
** All Lua code runs on the loop thread, on the main Lua
** thread (reducers, cleanups, updates) or on coroutines (polls, flow producers).
*/
#ifndef HERSH_LHERSH_H
#define HERSH_LHERSH_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "engine/binding.h"

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
#define HERSH_RELAY_MT "hersh.Relay"

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
typedef struct hersh_lhandle hersh_lhandle;

/* One per Lua state: the loop its watchers run on (lmodule.c). */
typedef struct hersh_lmod {
  hersh_loop *loop;
  bool owns_loop;
  lua_State *L; /* the main thread */
  hersh_lua_interrupt interrupt;
  hersh_ltask *current_task; /* the coroutine being resumed, for hersh.sleep */
  hersh_lhandle *handles;    /* the open handles of Lua objects (lhandle.c) */
} hersh_lmod;

/* lhandle.c: a libuv handle owned by a Lua object, as luv does it. The handle is
** malloc'd on its own and the object holds a pointer to it, since libuv uses it until
** its close callback, which may come after the object, or the whole Lua state, is gone:
** that callback frees only the handle. The Lua references the handle owns (the
** callback, the object kept alive while it runs) are released when it is closed, which
** is always while the state is alive: by the owner (stop, __gc), or by
** hersh_lhandle_close_all before the loop closes the state. An owner's __gc closes
** what it still has open. */
#define HERSH_LHANDLE_REFS 2
struct hersh_lhandle {
  union {
    uv_handle_t handle; /* handle.data: the owner, for its callbacks */
    uv_timer_t timer;
    uv_idle_t idle;
    uv_signal_t signal;
    uv_fs_event_t fs_event;
    uv_async_t async;
    uv_poll_t poll;
  } uv;
  hersh_lmod *m;
  hersh_lhandle **slot;          /* the owner's pointer to it: NULL once closed */
  void (*shutdown)(void *owner); /* closes the owner's handles; NULL: close this one */
  int refs[HERSH_LHANDLE_REFS];  /* registry references it owns */
  hersh_lhandle *prev, *next;    /* in m->handles */
};
/* A handle for `owner` (NULL when out of memory): initialise h->uv with uv_*_init on
** the loop, then pass the result to hersh_lhandle_open. */
hersh_lhandle *hersh_lhandle_new(hersh_lmod *m, void *owner, void (*shutdown)(void *owner));
/* Given uv_*_init's result: 0 opens it (stored in *slot), else frees it. True if open. */
bool hersh_lhandle_open(hersh_lhandle *h, int init_rc, hersh_lhandle **slot);
/* Pops the value on top of L's stack into a reference the handle owns; returns it. */
int hersh_lhandle_keep(hersh_lhandle *h, lua_State *L) HERSH_MAY_RAISE;
/* Releases the references, clears the owner's pointer and closes the handle. NULL and
** closing twice are fine: the pointer is cleared the first time. */
void hersh_lhandle_close(hersh_lhandle *h);
/* Closes every open handle of the state, each through its owner's shutdown. */
void hersh_lhandle_close_all(hersh_lmod *m);

/* A runtime failure as Lua sees it: pushes nil, hersh_errmsg(), the error's code. */
int hersh_lua_push_failure(lua_State *L, int err);

/* lstate.c: preloads the modules of a program or of the Host, and puts the hersh Lua
** modules on package.path. A program's state cannot load C code (no package.loadlib,
** no C searchers): what it reaches is what is preloaded. */
typedef enum hersh_lua_role { HERSH_LUA_PROGRAM, HERSH_LUA_HOST } hersh_lua_role;
void hersh_lua_prepare(lua_State *L, hersh_lua_role role);

/* lclass.c: registers the class `name` once per state: its metatable (in the registry
** under `name`) gets the metamethods, and the methods (if any) as __index. */
void hersh_lclass_register(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods);

/* lmodule.c: the modules, and the loop each Lua state has. */
hersh_lmod *hersh_lmod_get(lua_State *L);
int luaopen_hersh_core(lua_State *L);  /* the engine: what programs get */
int luaopen_hersh_os(lua_State *L);    /* processes, files, sockets, signals, the sandbox */
int luaopen_hersh_httpd(lua_State *L); /* the HTTP server */
int luaopen_hersh_http(lua_State *L);  /* the HTTP client */
int luaopen_hersh_store(lua_State *L); /* SQLite */
int luaopen_hersh_json(lua_State *L);  /* ljson.c: JSON on src/base/json.h, for both */
/* `hersh run`: pops the table of its WatcherAPI options, which core.runner_api() hands
** out once (to the first watcher hersh.watcher makes). */
void hersh_lmod_set_runner_api(lua_State *L);

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
/* hersh.os.call_within: a Lua function called with a deadline (the Host's policies). */
int hersh_lcall_open(lua_State *L);

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

/* The *_open functions register their classes and add their functions to the module
** table on the stack top. */
/* lproc.c (hersh.os): spawn, listen, relisten, close_fd, answer_unavailable, relay. */
int hersh_lproc_open(lua_State *L);

/* hersh.os: fs (lfiles.c), sha256 (lsha256.c), sandbox (lsandbox.c). */
int hersh_lfiles_open(lua_State *L);
int hersh_lsha256_open(lua_State *L);
int hersh_lsandbox_open(lua_State *L);
int hersh_lstore_open(lua_State *L); /* lstore.c: hersh.store.open */
/* ltimer.c: timer (hersh.core); on_signal, serve, stop_serving (hersh.os). */
int hersh_ltimer_open(lua_State *L);
int hersh_lsignal_open(lua_State *L);

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
/* How a reducer or cleanup run ended: its one result, or its error text, on co's top;
** co NULL when its task ends (cancelled, failed, the state closing): forget it then. */
typedef void (*hersh_ltask_done)(void *ud, lua_State *co, hersh_lua_status st);
/* Runs the function under its nargs arguments on the main thread's top (popped) as a
** run with one `deadline` (hersh_mono_ns) for all its resumes, on the task in *slot (a
** parked one, whose last run returned) or a new one stored there. Resumed at once:
** true when it waits; false when it ended there (done was called). */
bool hersh_ltask_start_run(hersh_lmod *m, hersh_watcher *w, hersh_ltask **slot, int nargs, int64_t deadline,
                           hersh_ltask_done done, void *ud);
/* The yield protocol of helpers (hersh.sleep, hersh.http), docs/architecture.md:
** the task whose coroutine L is being resumed now, or NULL (the helper raises); */
hersh_ltask *hersh_ltask_running(lua_State *L);
/* what it is about to yield on: cancel(ud) is called once if the task ends first; */
void hersh_ltask_wait(hersh_ltask *t, void (*cancel)(void *ud), void *ud);
/* its answer: push n values on hersh_ltask_thread(t), then wake: the wait is cleared and
** the task resumes on the next loop turn, the n values the results of its yield. */
lua_State *hersh_ltask_thread(hersh_ltask *t);
void hersh_ltask_wake(hersh_ltask *t, int n);

/* lhttp.c: hersh.http.request(opts, callback), hersh.http.stream(opts, handlers) and
** hersh.http.proxy(opts, res, callback) of the Host; hersh.core.fetch(opts), the yielding
** request under the user-facing hersh.http (lua/hersh/fetch.lua). */
int hersh_lhttp_request(lua_State *L);
int hersh_lhttp_stream(lua_State *L);
int hersh_lhttp_proxy(lua_State *L);
int hersh_lhttp_epoch(lua_State *L); /* hersh.http.epoch() */
int hersh_lhttp_fetch(lua_State *L);

/* lflow.c: hersh.Flow, a flow fed from Lua (f:push); open adds core.flow(). */
typedef struct hersh_lflow hersh_lflow;
int hersh_lflow_open(lua_State *L);
hersh_lflow *hersh_lflow_test(lua_State *L, int idx); /* the flow at idx, or NULL */
/* ctx:watch_flow(name, f) registered a new watch: f (at idx) feeds it from now on. */
void hersh_lflow_watch(lua_State *L, int idx, hersh_flow *flow, hersh_watcher *w, double timeout) HERSH_MAY_RAISE;
int hersh_lhttpd_open(lua_State *L);   /* lhttpd.c: hersh.httpd.serve */
/* lhttpd.c: takes the hold of the res (a request's answer) at idx for C code (loop thread):
** the caller answers through exactly one hersh_http_complete or hersh_http_stream_start
** (src/http/server.h); from Lua the res is answered. Raises if it was answered; NULL when
** the server is stopping (hersh_errmsg). */
struct hersh_http_pending;
struct hersh_http_pending *hersh_lhttpd_take(lua_State *L, int idx) HERSH_MAY_RAISE;
int hersh_lfswatch_open(lua_State *L); /* lfswatch.c: hersh.os.fs_watch, file_id */

#endif
