/*
** binding.h -- what the layers above the engine (the Lua binding, the WatcherAPI, the
** HTTP client, process spawning) may call beyond include/hersh.h. Functions and
** interfaces only: the engine's structures are in engine.h, which only src/engine may
** include (the build refuses it elsewhere), so no other layer depends on a layout.
*/
#ifndef HERSH_ENGINE_BINDING_H
#define HERSH_ENGINE_BINDING_H

#include <stdbool.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/json.h"
#include "base/value.h"
#include "hersh.h"

/* ---- the loop (loop.c) --------------------------------------------------------------- */

/* True on the thread that created the loop: the loop thread. Any thread. */
bool hersh_loop_on_thread(const hersh_loop *loop);
/* Runs the loop a turn at a time while *running stays true (a server's loop). Loop
** thread; HERSH_E_STATE when called from inside one of the loop's run functions. */
int hersh_loop_run_while(hersh_loop *loop, const bool *running);
/* fn(ud) runs in hersh_loop_free, after the watchers are freed, newest hook first.
** HERSH_E_NOMEM when HERSH_LOOP_HOOKS are taken. */
int hersh_loop_on_free(hersh_loop *loop, void (*fn)(void *ud), void *ud);
/* The ud of the hook with fn (a part finds what it keeps on the loop), or NULL. */
void *hersh_loop_on_free_find(const hersh_loop *loop, void (*fn)(void *ud));
/* Withdraws the hook fn(ud): its part was freed before the loop. */
void hersh_loop_on_free_remove(hersh_loop *loop, void (*fn)(void *ud), void *ud);
/* One turn without waiting, so that the handles closed before it finish closing. */
void hersh_loop_drain(hersh_loop *loop);

/* ---- deadlines (deadline.c) --------------------------------------------------------- */

/* What fires when a deadline passes: in a signal handler on the loop thread, so only
** async-signal-safe work (the Lua binding sets a hook on the running Lua thread). */
typedef struct hersh_interrupt {
  void (*fire)(struct hersh_interrupt *self, uint64_t gen);
} hersh_interrupt;

typedef struct hersh_watchdog hersh_watchdog;

/* Made on the loop thread: the thread its signal (SIGURG, deadline.c) interrupts. */
hersh_watchdog *hersh_watchdog_new(void);
void hersh_watchdog_free(hersh_watchdog *wd);
/* Arms the deadline of one run; returns its generation. */
uint64_t hersh_watchdog_arm(hersh_watchdog *wd, hersh_interrupt *target, int64_t deadline_ns);
void hersh_watchdog_disarm(hersh_watchdog *wd);
/* True while the armed run is past its deadline and the watchdog has signalled it; a
** hook uses it to tell a stale interrupt. Loop thread. */
bool hersh_watchdog_expired(hersh_watchdog *wd);
/* The loop's watchdog, made on first use (NULL if out of memory). Loop thread. */
hersh_watchdog *hersh_loop_watchdog(hersh_loop *loop);

/* ---- a watcher and its runs (access.c, watch.c, watcher.c) ---------------------------- */

hersh_loop *hersh_watcher_loop(const hersh_watcher *w);
/* The context the watcher's runs and cleanup get (a binding keeps one handle on it). */
hersh_ctx *hersh_watcher_ctx(hersh_watcher *w);
/* Replaces the recovery decision of cfg.decide (a binding's policy made after the
** watcher). Loop thread, before the first failure it should see. */
void hersh_watcher_set_decide(hersh_watcher *w, hersh_recovery_fn fn, void *ud);
/* Called once as the watcher is freed (a binding's glue forgets it); NULL clears. */
void hersh_watcher_on_free(hersh_watcher *w, void (*fn)(void *ud), void *ud);
/* True inside a run or the cleanup: the only time the ctx may be used. */
bool hersh_ctx_active(const hersh_ctx *ctx);
/* The monotonic deadline (hersh_mono_ns) of the run or cleanup in progress. */
int64_t hersh_ctx_deadline_ns(const hersh_ctx *ctx);
/* A Lua reducer or cleanup whose coroutine waits (ltask.c) calls this before it returns
** to the engine: the run stays open (still one at a time), the engine watches its
** deadline with a loop timer, and abort(ud) ends the waiting code without a result
** (deadline, kill, the watcher freed); abort must not call hersh_ctx_wait_done. */
void hersh_ctx_wait(hersh_ctx *ctx, void (*abort)(void *ud), void *ud);
/* The waiting code ended with `rc` (what the reducer would have returned): the engine
** finishes the run (or cleanup) as if it had returned now. Loop thread. */
void hersh_ctx_wait_done(hersh_ctx *ctx, int rc);
bool hersh_watch_exists(hersh_watcher *w, const char *name);
/* True while a run is open and traced: then what a wait resumes the run's code with is
** one of its inputs, recorded by hersh_ctx_record_resume (`values`: a list). */
bool hersh_ctx_tracing(const hersh_ctx *ctx);
void hersh_ctx_record_resume(hersh_ctx *ctx, const hersh_value *values);
const char *hersh_flow_name(const hersh_flow *flow); /* the watch that feeds on it */
/* The log of an effect: effect-log line with printf formatting. */
void hersh_watcher_effect(hersh_watcher *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hersh_watcher_watch_error(hersh_watcher *w, const char *name, const char *phase, const char *err);

/* ---- observing a watcher (the WatcherAPI publishes through this) ------------------- */

/* What a handled signal changed, so an observer republishes only that. */
enum { DIRTY_CONTEXT = 1u, DIRTY_MEMO = 2u, DIRTY_WATCHES = 4u, DIRTY_VARS = 8u, DIRTY_ALL = 15u };

typedef struct hersh_observer {
  void (*reduced)(hersh_watcher *w, unsigned dirty, void *ud); /* loop thread, after each signal */
  void (*terminal)(hersh_watcher *w, void *ud);                /* loop thread, once */
  void (*freed)(void *ud);                                     /* the watcher is being freed */
} hersh_observer;

/* One observer per watcher (NULL removes it). It hears of what changes from now on:
** publish a first snapshot yourself. Loop thread. */
int hersh_watcher_observe(hersh_watcher *w, const hersh_observer *obs, void *ud);
/* The observer (NULL if none) and its ud. Loop thread. */
const hersh_observer *hersh_watcher_observer(const hersh_watcher *w, void **ud);

/* JSON of the live sections (loop thread only: foreign values convert there). */
char *hersh_watcher_json_store(hersh_watcher *w, bool memo); /* {"key": value, ...} */
char *hersh_watcher_json_vars(hersh_watcher *w);             /* {"name": value | {"value","error"}} */
char *hersh_watcher_json_watching(hersh_watcher *w);         /* ["name", ...] */
/* JSON of a trigger: {"watcher":b,"user":b,"vars":[...],"reason":"..."}. */
void hersh_json_trigger(hersh_json *j, const hersh_trigger *t);

typedef struct hersh_signal hersh_signal;
/* Visits up to `per_kind` pending signals of each queue from its front, without
** taking them (any thread). */
void hersh_watcher_peek(hersh_watcher *w, size_t per_kind, void (*fn)(const hersh_signal *s, void *ud), void *ud);
/* A short description of a pending signal, e.g. "VarSig{var=price, type=dependent}". */
void hersh_buf_signal(hersh_buf *b, const hersh_signal *s);
const char *hersh_signal_type(const hersh_signal *s); /* "watcher", "user", "var" */
double hersh_signal_at(const hersh_signal *s);        /* when it was queued, epoch s */

#endif
