/*
** watcher.c -- the watcher's lifecycle and its reducer loop.
**
** Signals arrive on three bounded queues (any thread may push). The loop thread drains
** them from an idle handle: a watcher signal in any state; otherwise, only in Ready,
** one user message per run, then every pending var update as one batched run. Each
** run's outcome goes through one table (finish_run): success, failure (the recovery
** policy), stop, kill, or a broken engine limit. A Lua run or cleanup may wait (its
** coroutine yields, ltask.c): it then stays open, nothing else runs on this watcher
** but a kill, and it ends later through hersh_ctx_wait_done or its deadline timer.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

enum { DRAIN_BATCH = 256 }; /* signals per loop turn, so timers and I/O get their turn */

static const char *const state_names[] = {"NotRun",  "InitRun",     "Ready",   "Running",
                                          "WaitRecover", "Stopped", "Killed", "Crashed"};

const char *hersh_state_name(hersh_state s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s] : "Unknown";
}

bool hersh_state_terminal(hersh_state s) { return s == HERSH_STOPPED || s == HERSH_KILLED || s == HERSH_CRASHED; }

void hersh_config_init(hersh_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->timeout = 60;
  cfg->cleanup_timeout = 5;
  cfg->signal_capacity = 50000;
  cfg->max_log_entries = 50000;
  cfg->max_watches = 1000;
  cfg->max_memo = 1000;
  cfg->trace_runs = 1000;
  hersh_recovery_defaults(&cfg->recovery);
}

/* Only the loop thread writes the state; other threads read a published value. */
static hersh_state state_of(const hersh_watcher *w) {
  return (hersh_state)atomic_load_explicit(&w->state, memory_order_acquire);
}

static void set_state(hersh_watcher *w, hersh_state s) { atomic_store_explicit(&w->state, (int)s, memory_order_release); }

static void set_next_retry(hersh_watcher *w, double t) { atomic_store_explicit(&w->next_retry, t, memory_order_release); }

/* ---- logging helpers ------------------------------------------------------------- */

void hersh_watcher_effect(hersh_watcher *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  hersh_log_entry e = {.u.effect.text = text};
  hersh_logs_add(&w->logs, HERSH_LOG_EFFECT, &e, NULL);
  free(text);
}

void hersh_watcher_watch_error(hersh_watcher *w, const char *name, const char *phase, const char *err) {
  hersh_log_entry e = {.u.watch_error = {name, phase, err}};
  hersh_logs_add(&w->logs, HERSH_LOG_WATCH_ERROR, &e, NULL);
  hersh_report_watch_error(w, name, phase, err);
}

/* `time` 0 means now; a run stamps its result and reduce entries with one reading. */
static void log_result_at(hersh_watcher *w, double time, const char *effect, bool ok, const char *error) {
  hersh_log_entry e = {.time = time, .u.result = {effect, ok, ok ? NULL : error}};
  hersh_logs_add(&w->logs, HERSH_LOG_RESULT, &e, NULL);
}

static void log_result(hersh_watcher *w, const char *effect, bool ok, const char *error) {
  log_result_at(w, 0, effect, ok, error);
}

static void log_fault(hersh_watcher *w, hersh_state from, hersh_state to, const char *reason) {
  hersh_log_entry e = {.u.fault = {from, to, reason}};
  hersh_logs_add(&w->logs, HERSH_LOG_FAULT, &e, NULL);
}

/* What one handled signal was, for its reduce-log entry. */
typedef struct signal_note {
  const char *signal, *reason, *detail;
  hersh_message *msg;
} signal_note;

/* The state a handled signal leads to: the final one already while a cleanup waits. */
static hersh_state next_state(const hersh_watcher *w) { return w->ending ? w->ending_state : state_of(w); }

static void log_reduce(hersh_watcher *w, double time, hersh_state prev, const signal_note *note) {
  hersh_log_entry e = {.time = time, .u.reduce = {prev, next_state(w), note->signal, note->reason, note->detail}};
  hersh_logs_add(&w->logs, HERSH_LOG_REDUCE, &e, note->msg);
}

/* ---- handles ------------------------------------------------------------------------ */

static void watcher_release(hersh_watcher *w);

void hersh_watcher_handle_closed(uv_handle_t *h) {
  hersh_watcher *w = h->data;
  if (--w->open_handles == 0 && w->freed) watcher_release(w);
}

static void close_handle(hersh_watcher *w, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = w;
  uv_close(h, hersh_watcher_handle_closed);
}

static void drain_cb(uv_idle_t *idle);

static void wake_cb(uv_async_t *async) {
  hersh_watcher *w = async->data;
  if (!hersh_state_terminal(state_of(w))) uv_idle_start(&w->drain, drain_cb);
}

/* ---- queuing ------------------------------------------------------------------------ */

int hersh_watcher_push(hersh_watcher *w, hersh_signal *s) {
  s->at = s->kind == SIG_USER ? s->u.user->msg.received_at : hersh_wall_coarse();
  pthread_mutex_lock(&w->mu);
  int rc = w->accepting ? hersh_queue_push(&w->queues[s->kind], s) : HERSH_E_STOPPED;
  if (rc == HERSH_OK) {
    if (hersh_loop_on_thread(w->loop))
      uv_idle_start(&w->drain, drain_cb);
    else
      uv_async_send(&w->wake); /* under the lock: the loop closes `wake` only after accepting = false */
  }
  pthread_mutex_unlock(&w->mu);
  if (rc == HERSH_E_STOPPED) return hersh_fail_with(rc, "watcher stopped");
  if (rc == HERSH_E_QUEUE_FULL)
    return hersh_fail_with(rc, "queue full");
  if (rc) return hersh_fail_with(rc, "out of memory queuing a signal");
  return HERSH_OK;
}

static int push_watcher_signal(hersh_watcher *w, hersh_wsig what, uint64_t gen, const char *reason) {
  hersh_signal s = {.kind = SIG_WATCHER, .u.w = {what, gen, NULL}};
  if (reason && !(s.u.w.reason = hersh_strdup(reason))) return hersh_fail_with(HERSH_E_NOMEM, "out of memory");
  int rc = hersh_watcher_push(w, &s);
  if (rc) hersh_signal_release(&s);
  return rc;
}

int hersh_watcher_crash_later(hersh_watcher *w, const char *reason) {
  return push_watcher_signal(w, WSIG_CRASH, 0, reason);
}

/* ---- retries ------------------------------------------------------------------------ */

static void retry_cb(uv_timer_t *t) {
  hersh_watcher *w = t->data;
  push_watcher_signal(w, w->retry_what, w->retry_gen, NULL); /* a full queue only when stopping */
}

static void cancel_retry(hersh_watcher *w) {
  if (!w->retry_pending) return;
  w->retry_pending = false;
  w->retry_gen++;
  uv_timer_stop(&w->retry_timer);
  set_next_retry(w, 0.0);
}

static void schedule_retry(hersh_watcher *w, hersh_wsig what, double delay) {
  cancel_retry(w);
  w->retry_pending = true;
  w->retry_what = what;
  set_next_retry(w, hersh_wall_now() + delay);
  hersh_trace_retry(&w->trace, delay);
  uv_timer_start(&w->retry_timer, retry_cb, (uint64_t)(delay * 1000.0 + 0.5), 0);
}

/* ---- running user code ------------------------------------------------------------- */

static void ctx_reset_outcome(hersh_ctx *ctx) {
  ctx->outcome = OUT_OK;
  free(ctx->outcome_text);
  ctx->outcome_text = NULL;
}

/* The deadline of the run or cleanup about to start. C code polls hersh_ctx_cancelled();
** the Lua binding arms the watchdog while its code executes, and while it waits the
** wait timer below keeps the same deadline. */
static void set_deadline(hersh_watcher *w, double seconds) {
  w->ctx.deadline_ns = hersh_mono_ns() + (int64_t)(seconds * 1e9);
}

/* ---- waiting runs and cleanups ------------------------------------------------------ */

static void wait_deadline_cb(uv_timer_t *t);

void hersh_ctx_wait(hersh_ctx *ctx, void (*abort)(void *ud), void *ud) {
  ctx->waiting = true;
  ctx->wait_abort = abort;
  ctx->wait_ud = ud;
}

/* After the code said it waits: its deadline becomes a loop timer, as the loop is free. */
static void start_wait_timer(hersh_watcher *w) {
  int64_t left = w->ctx.deadline_ns - hersh_mono_ns();
  uint64_t ms = left > 0 ? (uint64_t)((left + 999999) / 1000000) : 0;
  uv_timer_start(&w->wait_timer, wait_deadline_cb, ms, 0);
  atomic_store_explicit(&w->waiting, true, memory_order_release); /* for snapshots */
}

/* Ends the wait; with abort, the waiting code is ended too (it reports nothing). */
static void clear_wait(hersh_watcher *w, bool abort) {
  hersh_ctx *ctx = &w->ctx;
  void (*fn)(void *ud) = ctx->wait_abort;
  void *ud = ctx->wait_ud;
  ctx->waiting = false;
  ctx->wait_abort = NULL;
  ctx->wait_ud = NULL;
  uv_timer_stop(&w->wait_timer);
  atomic_store_explicit(&w->waiting, false, memory_order_release);
  if (abort && fn) fn(ud);
}

static void release_open_run(hersh_watcher *w) {
  free(w->open_run.detail);
  if (w->open_run.msg) hersh_message_unref(w->open_run.msg);
  w->open_run.detail = NULL;
  w->open_run.msg = NULL;
}

/* ---- cleanup ------------------------------------------------------------------------ */

/* Logs how the cleanup ended: `forced` is its error when it was cut short. */
static void end_cleanup(hersh_watcher *w, const char *forced) {
  hersh_ctx *ctx = &w->ctx;
  bool late = hersh_mono_ns() >= ctx->deadline_ns;
  ctx->in_cleanup = false;
  const char *err = forced                   ? forced
                    : late                   ? "timeout"
                    : ctx->outcome == OUT_OK ? NULL
                    : ctx->outcome_text      ? ctx->outcome_text
                                             : "cleanup failed";
  log_result(w, "cleanup", !err, err);
  if (err) hersh_report_cleanup_failed(w, err);
  ctx_reset_outcome(ctx);
}

/* Runs the cleanup once; true when it waits (it ends the watcher when it is done). */
static bool run_cleanup(hersh_watcher *w) {
  if (w->cleanup_done) return false;
  w->cleanup_done = true; /* at most once, whatever happens inside */
  if (!w->cleanup) return false; /* nothing ran: nothing to log */
  hersh_ctx *ctx = &w->ctx;
  ctx_reset_outcome(ctx);
  ctx->in_cleanup = true;
  ctx->msg = NULL;
  set_deadline(w, w->cfg.cleanup_timeout);
  w->cleanup(ctx, w->cleanup_ud);
  if (ctx->waiting) {
    start_wait_timer(w);
    return true;
  }
  end_cleanup(w, NULL);
  return false;
}

/* Tells the observer what the signal just handled changed. */
void hersh_watcher_changed(hersh_watcher *w, unsigned what) {
  w->dirty |= what;
  if (!w->ctx.in_run && !w->ctx.in_cleanup && w->observer) { /* between runs: publish now */
    unsigned dirty = w->dirty;
    w->dirty = 0;
    w->observer->reduced(w, dirty, w->observer_ud);
  }
}

static void notify_reduced(hersh_watcher *w) {
  if (!w->observer) return;
  unsigned dirty = w->dirty;
  w->dirty = 0;
  w->observer->reduced(w, dirty, w->observer_ud);
}

static void finish_terminate(hersh_watcher *w, hersh_state final);

/* Drops a wait the watcher cannot finish (it is freed, or killed during a run). */
static void abandon_wait(hersh_watcher *w, const char *why) {
  clear_wait(w, true);
  if (w->ctx.in_cleanup) {
    end_cleanup(w, why);
  } else {
    release_open_run(w);
    w->ctx.in_run = false;
  }
}

/* Ends the watcher in a terminal state: nothing is left running afterwards. A cleanup
** that waits holds the end back (`ending`): the end of its wait finishes the work. */
static void terminate(hersh_watcher *w, hersh_state final, bool with_cleanup) {
  if (w->ctx.waiting) abandon_wait(w, "the watcher was freed during the cleanup");
  if (w->ending) final = w->ending_state;
  cancel_retry(w);
  pthread_mutex_lock(&w->mu);
  w->accepting = false;
  pthread_mutex_unlock(&w->mu);
  hersh_watch_close_all(w);
  if (with_cleanup && run_cleanup(w)) {
    w->ending = true;
    w->ending_state = final;
    return;
  }
  finish_terminate(w, final);
}

static void finish_terminate(hersh_watcher *w, hersh_state final) {
  w->ending = false;
  w->cleanup_done = true;
  pthread_mutex_lock(&w->mu);
  for (int k = 0; k < SIG_KINDS; k++) hersh_queue_free(&w->queues[k]); /* refused from now on */
  set_state(w, final);
  pthread_cond_broadcast(&w->terminal_cv);
  pthread_mutex_unlock(&w->mu);
  close_handle(w, (uv_handle_t *)&w->wake);
  close_handle(w, (uv_handle_t *)&w->drain);
  close_handle(w, (uv_handle_t *)&w->retry_timer);
  close_handle(w, (uv_handle_t *)&w->wait_timer);
  if (hersh_state_terminal(final)) w->loop->ended[final - HERSH_STOPPED]++;
  if (w->cfg.trace_file && hersh_watcher_trace_write(w, w->cfg.trace_file) != HERSH_OK)
    hersh_watcher_effect(w, "trace: %s", hersh_errmsg());
  notify_reduced(w);
  if (w->observer) w->observer->terminal(w, w->observer_ud);
  if (w->on_terminal) w->on_terminal(w, w->on_terminal_ud);
}

/* Ends the watcher Crashed, then reports why: `why` is copied first, as the cleanup
** may free it. `failures` > 0 when the recovery policy gave up after that many. */
static void crash(hersh_watcher *w, const char *why, int failures) {
  char *reason = hersh_strdup(why ? why : "crashed");
  terminate(w, HERSH_CRASHED, true);
  hersh_report_crashed(w, reason ? reason : "out of memory", failures);
  free(reason);
}

/* The outcome of a run, from what the reducer returned and what it recorded. */
static hersh_outcome classify(hersh_ctx *ctx, int rc, bool late, const char **text) {
  *text = ctx->outcome_text;
  if (ctx->outcome == OUT_LIMIT) return OUT_LIMIT;
  if (late) {
    *text = "timeout";
    return OUT_FAIL;
  }
  if (rc == HERSH_R_OK) return OUT_OK;
  if (rc == HERSH_R_STOP && ctx->outcome == OUT_STOP) return OUT_STOP;
  if (rc == HERSH_R_KILL && ctx->outcome == OUT_KILL) return OUT_KILL;
  if (rc == HERSH_R_CRASH && ctx->outcome == OUT_CRASH) return OUT_CRASH;
  if (!(rc == HERSH_R_FAIL && ctx->outcome == OUT_FAIL)) {
    free(ctx->outcome_text);
    ctx->outcome_text = NULL;
    hersh_buf b = {0};
    if (rc < 0) /* a hersh_err passed up: its message says what went wrong */
      hersh_buf_printf(&b, "reducer returned %s: %s", hersh_errcode(rc), hersh_errmsg());
    else
      hersh_buf_printf(&b, "reducer returned %d", rc);
    *text = ctx->outcome_text = hersh_buf_take(&b);
  }
  return OUT_FAIL;
}

static hersh_run_outcome counted_outcome(hersh_outcome o, bool late) {
  static const hersh_run_outcome counted[] = {
      [OUT_OK] = HERSH_RUN_OK,         [OUT_FAIL] = HERSH_RUN_FAILED,   [OUT_STOP] = HERSH_RUN_STOPPED,
      [OUT_KILL] = HERSH_RUN_KILLED,   [OUT_CRASH] = HERSH_RUN_CRASHED, [OUT_LIMIT] = HERSH_RUN_LIMIT,
  };
  return o == OUT_FAIL && late ? HERSH_RUN_TIMEOUT : counted[o];
}

/* True when a stop (not a kill) was asked for while the run went on. */
static bool stop_pending(hersh_watcher *w) {
  pthread_mutex_lock(&w->mu);
  bool pending = w->stop_requested && !w->kill_requested;
  pthread_mutex_unlock(&w->mu);
  return pending;
}

static void finish_run(hersh_watcher *w, hersh_outcome outcome, const char *text, double time) {
  /* A stop accepted during the run wins over how the run ends (it is handled when the
  ** run returns and ends Stopped): the result is logged, the queued stop does the rest. */
  if (outcome != OUT_OK && outcome != OUT_STOP && stop_pending(w)) {
    log_result_at(w, time, "run", outcome == OUT_KILL, text ? text : "failed");
    set_state(w, HERSH_READY);
    if (outcome != OUT_KILL) hersh_report_run_failed(w, text ? text : "failed", atomic_load(&w->failures), NULL);
    return;
  }
  switch (outcome) {
  case OUT_OK: /* its result entry is written with the reduce entry, by run() */
    if (atomic_load_explicit(&w->failures, memory_order_relaxed)) atomic_store(&w->failures, 0);
    cancel_retry(w);
    set_state(w, HERSH_READY);
    break;
  case OUT_STOP:
  case OUT_KILL:
    log_result_at(w, time, "run", true, NULL);
    hersh_watcher_effect(w, "%s: %s", outcome == OUT_STOP ? "stop" : "kill", text ? text : "");
    terminate(w, outcome == OUT_STOP ? HERSH_STOPPED : HERSH_KILLED, outcome == OUT_STOP);
    break;
  case OUT_LIMIT:
    log_result_at(w, time, "run", false, text);
    crash(w, text, 0);
    break;
  case OUT_FAIL:
  case OUT_CRASH: {
    const char *err = text ? text : "failed";
    int n = atomic_fetch_add(&w->failures, 1) + 1;
    log_result_at(w, time, "run", false, err);
    hersh_decision d = w->cfg.decide ? w->cfg.decide(n, err, &w->cfg.recovery, w->cfg.decide_ud)
                                     : hersh_recovery_decide(n, &w->cfg.recovery);
    if (d.action == HERSH_ACT_CRASH) {
      hersh_report_run_failed(w, err, n, &d); /* before the cleanup, which frees err */
      crash(w, err, n);
      break;
    }
    if (d.action == HERSH_ACT_RECOVER) {
      set_state(w, HERSH_WAIT_RECOVER);
      schedule_retry(w, WSIG_RECOVER, d.delay);
    } else {
      set_state(w, HERSH_READY);
      schedule_retry(w, WSIG_RETRY, d.delay);
    }
    hersh_report_run_failed(w, err, n, &d);
    break;
  }
  }
}

/* Ends the open run as its reducer returned `rc` (or its wait timed out): one outcome
** through classify, whether it waited or not. */
static void end_run(hersh_watcher *w, int rc, bool timed_out, const signal_note *note) {
  hersh_ctx *ctx = &w->ctx;
  hersh_state prev = w->open_run.prev;
  bool late = timed_out || hersh_mono_ns() >= ctx->deadline_ns;
  double took = (double)(uv_hrtime() - w->open_run.started_ns) / 1e9;
  ctx->in_run = false;
  const char *text;
  hersh_outcome outcome = classify(ctx, rc, late, &text);
  hersh_stats_count_run(&w->stats, &ctx->trigger, counted_outcome(outcome, late), took);
  hersh_trace_outcome(&w->trace, counted_outcome(outcome, late), text); /* finish_run may free text */
  double done_at = hersh_wall_now();
  finish_run(w, outcome, text, done_at);
  hersh_trace_end(&w->trace, state_of(w));
  ctx->msg = NULL;
  if (outcome == OUT_OK) { /* the common case: both entries under one lock */
    hersh_log_entry result = {.time = done_at, .u.result = {"run", true, NULL}};
    hersh_log_entry reduce = {.time = done_at, .u.reduce = {prev, state_of(w), note->signal, note->reason, note->detail}};
    hersh_logs_add_two(&w->logs, HERSH_LOG_RESULT, &result, HERSH_LOG_REDUCE, &reduce, note->msg);
  } else {
    log_reduce(w, done_at, prev, note);
  }
  ctx_reset_outcome(ctx);
  if (!hersh_state_terminal(state_of(w))) notify_reduced(w); /* terminate told it already */
}

static void run(hersh_watcher *w, const hersh_trigger *trigger, hersh_message *message, const signal_note *note) {
  hersh_state prev = state_of(w);
  hersh_ctx *ctx = &w->ctx;
  set_state(w, prev == HERSH_NOT_RUN ? HERSH_INIT_RUN : HERSH_RUNNING);
  if (w->retry_pending) set_next_retry(w, 0.0); /* this run is the retry, or replaces it */
  ctx_reset_outcome(ctx);
  ctx->trigger = *trigger;
  ctx->msg = message ? &message->msg : NULL;
  ctx->in_run = true;
  ctx->now_set = false;
  hersh_trace_begin(&w->trace, trigger, message, atomic_load_explicit(&w->failures, memory_order_relaxed), prev);
  /* started_ns is precise, unlike the deadline's coarse clock */
  w->open_run = (hersh_open_run){prev, note->signal, note->reason, NULL, NULL, uv_hrtime()};
  set_deadline(w, w->cfg.timeout);
  int rc = w->reducer(ctx, ctx->msg, w->reducer_ud);
  if (!ctx->waiting) {
    end_run(w, rc, false, note);
    return;
  }
  /* The run waits: what its reduce entry needs outlives the signal. A detail lost to
  ** memory only shortens that entry. */
  w->open_run.detail = note->detail ? hersh_strdup(note->detail) : NULL;
  if ((w->open_run.msg = note->msg)) note->msg->refs++;
  start_wait_timer(w);
}

/* Ends the open run after its wait: `rc` from its code, or a timeout, or a kill. */
static void end_waiting_run(hersh_watcher *w, int rc, bool timed_out) {
  hersh_open_run *r = &w->open_run;
  signal_note note = {r->signal, r->reason, r->detail, r->msg};
  end_run(w, rc, timed_out, &note);
  release_open_run(w);
  if (!hersh_state_terminal(state_of(w))) uv_idle_start(&w->drain, drain_cb); /* what queued meanwhile */
}

void hersh_ctx_wait_done(hersh_ctx *ctx, int rc) {
  hersh_watcher *w = ctx->w;
  if (!ctx->waiting) return;
  clear_wait(w, false);
  if (ctx->in_cleanup) {
    end_cleanup(w, NULL);
    finish_terminate(w, w->ending_state);
  } else {
    end_waiting_run(w, rc, false);
  }
}

static void wait_deadline_cb(uv_timer_t *t) {
  hersh_watcher *w = t->data;
  bool cleanup = w->ctx.in_cleanup;
  clear_wait(w, true); /* cancels what the code waited on */
  if (cleanup) {
    end_cleanup(w, "timeout");
    finish_terminate(w, w->ending_state);
  } else {
    end_waiting_run(w, HERSH_R_FAIL, true);
  }
}

/* A kill during a wait ends it at once: a run as Killed (no cleanup); a cleanup (the
** watcher was ending) is cut short, and the watcher ends Killed. */
static void kill_waiting(hersh_watcher *w) {
  bool cleanup = w->ctx.in_cleanup;
  clear_wait(w, true);
  if (cleanup) {
    end_cleanup(w, "killed");
    finish_terminate(w, HERSH_KILLED);
  } else {
    end_waiting_run(w, hersh_kill(&w->ctx, "killed during a wait"), false);
  }
}

/* ---- handling signals ------------------------------------------------------------- */

static void handle_watcher_signal(hersh_watcher *w, hersh_signal *s) {
  hersh_state st = state_of(w);
  hersh_wsig what = s->u.w.what;
  static const char *const reasons[] = {"init", "stop", "kill", "retry", "recover", "crash"};
  signal_note note = {"watcher", reasons[what], s->u.w.reason, NULL};
  if (hersh_state_terminal(st)) {
    log_fault(w, st, what == WSIG_KILL ? HERSH_KILLED : HERSH_STOPPED, "watcher stopped");
    return;
  }
  switch (what) {
  case WSIG_INIT:
    if (st != HERSH_NOT_RUN) {
      log_fault(w, st, HERSH_INIT_RUN, "already started");
      return;
    }
    run(w, &(hersh_trigger){.watcher = true, .reason = "init"}, NULL, &note);
    return;
  case WSIG_RETRY:
  case WSIG_RECOVER:
    if (s->u.w.gen != w->retry_gen) return; /* cancelled or replaced: stale */
    if (st != (what == WSIG_RETRY ? HERSH_READY : HERSH_WAIT_RECOVER)) {
      log_fault(w, st, HERSH_RUNNING, reasons[what]);
      return;
    }
    if (what == WSIG_RECOVER) log_result(w, "recover", true, NULL);
    run(w, &(hersh_trigger){.watcher = true, .reason = reasons[what]}, NULL, &note);
    return;
  case WSIG_STOP:
  case WSIG_KILL: {
    pthread_mutex_lock(&w->mu);
    bool kill = what == WSIG_KILL || w->kill_requested; /* a kill overrides a stop not yet handled */
    pthread_mutex_unlock(&w->mu);
    terminate(w, kill ? HERSH_KILLED : HERSH_STOPPED, !kill);
    log_reduce(w, 0, st, &note);
    return;
  }
  case WSIG_CRASH: /* an engine limit broken outside a run */
    log_result(w, "run", false, s->u.w.reason);
    crash(w, s->u.w.reason, 0);
    log_reduce(w, 0, st, &note);
    return;
  }
}

static void run_user(hersh_watcher *w, hersh_message *m) {
  signal_note note = {"user", "message", NULL, m};
  run(w, &(hersh_trigger){.user = true, .reason = "message"}, m, &note);
}

static void run_vars(hersh_watcher *w, size_t n) {
  hersh_watch_apply_batch(w, w->batch, n);
  hersh_ctx *ctx = &w->ctx;
  hersh_buf names = {0};
  for (size_t i = 0; i < ctx->trigger.n_vars; i++) {
    if (i) hersh_buf_put(&names, ",", 1);
    hersh_buf_puts(&names, ctx->trigger.vars[i]);
  }
  char *detail = hersh_buf_take(&names);
  signal_note note = {"var", "vars", detail, NULL};
  hersh_trigger trigger = {.vars = ctx->trigger.vars, .n_vars = ctx->trigger.n_vars, .reason = "vars"};
  run(w, &trigger, NULL, &note);
  free(detail);
}

/* Takes every pending var update into w->batch; false if out of memory. */
static bool take_var_batch(hersh_watcher *w, size_t *n) {
  hersh_queue *q = &w->queues[SIG_VAR];
  if (q->count > w->batch_cap) {
    hersh_var_update **b = realloc(w->batch, q->count * sizeof *b);
    if (!b) return false;
    w->batch = b;
    w->batch_cap = q->count;
  }
  hersh_signal s;
  *n = 0;
  while (hersh_queue_pop(q, &s)) w->batch[(*n)++] = s.u.var;
  return true;
}

/* Handles the next signal the current state allows; false when there is none. */
static bool step(hersh_watcher *w) {
  hersh_signal s;
  size_t n = 0;
  pthread_mutex_lock(&w->mu);
  hersh_state st = state_of(w);
  if (w->ctx.waiting) { /* one run at a time: signals wait in their queues, but a kill */
    bool kill = w->kill_requested;
    pthread_mutex_unlock(&w->mu);
    if (kill) kill_waiting(w);
    return kill;
  }
  if (hersh_queue_pop(&w->queues[SIG_WATCHER], &s)) {
    pthread_mutex_unlock(&w->mu);
    handle_watcher_signal(w, &s);
    hersh_signal_release(&s);
    return true;
  }
  if (st == HERSH_READY) {
    if (hersh_queue_pop(&w->queues[SIG_USER], &s)) {
      pthread_mutex_unlock(&w->mu);
      run_user(w, s.u.user);
      hersh_signal_release(&s);
      return true;
    }
    if (w->queues[SIG_VAR].count && take_var_batch(w, &n)) {
      pthread_mutex_unlock(&w->mu);
      run_vars(w, n);
      return true;
    }
  }
  pthread_mutex_unlock(&w->mu);
  return false;
}

static void drain_cb(uv_idle_t *idle) {
  hersh_watcher *w = idle->data;
  for (int i = 0; i < DRAIN_BATCH; i++) {
    if (hersh_state_terminal(state_of(w))) return; /* its handles are closing */
    if (!step(w)) {
      uv_idle_stop(idle);
      return;
    }
  }
}

/* ---- public API ------------------------------------------------------------------- */

static int validate(const hersh_config *cfg) {
  if (!(cfg->timeout > 0) || !(cfg->cleanup_timeout > 0))
    return hersh_fail_with(HERSH_E_INVAL, "timeout and cleanup_timeout must be positive");
  if (cfg->signal_capacity == 0) return hersh_fail_with(HERSH_E_INVAL, "signal_capacity must be at least 1");
  const hersh_recovery *r = &cfg->recovery;
  if (r->min_failures < 1 || r->max_failures < 1)
    return hersh_fail_with(HERSH_E_INVAL, "recovery min_failures and max_failures must be at least 1");
  if (r->base_delay < 0 || r->max_delay < 0 || r->n_light_delays < 0 || r->n_light_delays > HERSH_MAX_LIGHT_DELAYS)
    return hersh_fail_with(HERSH_E_INVAL, "recovery delays must not be negative (at most %d light delays)",
                           HERSH_MAX_LIGHT_DELAYS);
  for (int i = 0; i < r->n_light_delays; i++)
    if (r->light_delays[i] < 0) return hersh_fail_with(HERSH_E_INVAL, "recovery light_delays must not be negative");
  if (cfg->env)
    for (const char *const *e = cfg->env; *e; e++)
      if (!strchr(*e, '=')) return hersh_fail_with(HERSH_E_INVAL, "env entry '%s' is not KEY=VALUE", *e);
  return HERSH_OK;
}

static char *make_id(const hersh_watcher *w) {
  static _Atomic unsigned counter;
  char buf[32];
  uint64_t x = (uint64_t)hersh_mono_ns() ^ (uint64_t)(uintptr_t)w ^ ((uint64_t)atomic_fetch_add(&counter, 1) << 40);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  snprintf(buf, sizeof buf, "w-%08x", (unsigned)x);
  return hersh_strdup(buf);
}

static int copy_env(hersh_watcher *w, const char *const *env) {
  if (!env) return HERSH_OK;
  size_t n = 0;
  while (env[n]) n++;
  w->env = calloc(n + 1, sizeof *w->env); /* NULL-terminated, like the config's */
  if (!w->env) return HERSH_E_NOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!(w->env[i] = hersh_strdup(env[i]))) return HERSH_E_NOMEM;
    w->n_env++;
  }
  return HERSH_OK;
}

static void free_value_box(void *p) {
  hersh_value_free(p);
  free(p);
}

static void watcher_release(hersh_watcher *w) {
  for (int k = 0; k < SIG_KINDS; k++) hersh_queue_free(&w->queues[k]);
  hersh_strmap_free(&w->watches, hersh_watch_free);
  hersh_strmap_free(&w->context, free_value_box);
  hersh_strmap_free(&w->memo, free_value_box);
  hersh_logs_free(&w->logs);
  if (w->trace_ready) hersh_trace_free(&w->trace);
  free(w->trace_file);
  for (size_t i = 0; i < w->n_env; i++) free(w->env[i]);
  free(w->env);
  free(w->id);
  free(w->batch);
  free(w->ctx.trigger_vars);
  free(w->ctx.outcome_text);
  pthread_cond_destroy(&w->terminal_cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}

int hersh_watcher_new(hersh_loop *loop, const hersh_config *cfg, hersh_watcher **out) {
  if (!loop || !out) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_new: NULL loop or out");
  *out = NULL;
  hersh_config defaults;
  if (!cfg) {
    hersh_config_init(&defaults);
    cfg = &defaults;
  }
  int rc = validate(cfg);
  if (rc) return rc;
  if (!hersh_loop_on_thread(loop))
    return hersh_fail_with(HERSH_E_INVAL, "watchers are created on the loop's thread");
  hersh_watcher *w = calloc(1, sizeof *w);
  if (!w) return hersh_fail_with(HERSH_E_NOMEM, "out of memory creating a watcher");
  w->loop = loop;
  w->cfg = *cfg;
  w->ctx.w = w;
  if (pthread_mutex_init(&w->mu, NULL) != 0) {
    free(w);
    return hersh_fail_with(HERSH_E_SYS, "pthread_mutex_init failed");
  }
  if (pthread_cond_init(&w->terminal_cv, NULL) != 0) {
    pthread_mutex_destroy(&w->mu);
    free(w);
    return hersh_fail_with(HERSH_E_SYS, "pthread_cond_init failed");
  }
  if (hersh_logs_init(&w->logs, cfg->max_log_entries) != HERSH_OK) {
    pthread_cond_destroy(&w->terminal_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return HERSH_E_SYS;
  }
  for (int k = 0; k < SIG_KINDS; k++) hersh_queue_init(&w->queues[k], cfg->signal_capacity);
  hersh_strmap_init(&w->context);
  hersh_strmap_init(&w->memo);
  hersh_strmap_init(&w->watches);
  uint64_t seed = (uint64_t)hersh_mono_ns() ^ ((uint64_t)(hersh_wall_now() * 1e6) << 7) ^ (uint64_t)(uintptr_t)w;
  if (hersh_trace_init(&w->trace, cfg->trace_runs, seed) != HERSH_OK) {
    watcher_release(w);
    return HERSH_E_SYS;
  }
  w->trace_ready = true;
  if (cfg->trace_file && !(w->trace_file = hersh_strdup(cfg->trace_file))) {
    watcher_release(w);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory creating a watcher");
  }
  w->id = cfg->id ? hersh_strdup(cfg->id) : make_id(w);
  if (!w->id || copy_env(w, cfg->env) != HERSH_OK || hersh_loop_attach(loop, w) != HERSH_OK) {
    watcher_release(w);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory creating a watcher");
  }
  w->cfg.id = w->id; /* the config read back names what the watcher owns */
  w->cfg.env = (const char *const *)w->env;
  w->cfg.trace_file = w->trace_file;
  set_state(w, HERSH_NOT_RUN);
  w->accepting = true;
  uv_async_init(loop->uv, &w->wake, wake_cb);
  uv_idle_init(loop->uv, &w->drain);
  uv_timer_init(loop->uv, &w->retry_timer);
  uv_timer_init(loop->uv, &w->wait_timer);
  w->wake.data = w->drain.data = w->retry_timer.data = w->wait_timer.data = w;
  w->open_handles = 4;
  uv_unref((uv_handle_t *)&w->wake); /* a watcher keeps the loop alive only once started */
  *out = w;
  return HERSH_OK;
}

void hersh_watcher_free(hersh_watcher *w) {
  if (!w || w->freed) return;
  if (!hersh_state_terminal(state_of(w))) terminate(w, w->started ? HERSH_KILLED : state_of(w), false);
  w->freed = true;
  if (w->on_free) w->on_free(w->on_free_ud);
  if (w->observer) w->observer->freed(w->observer_ud);
  hersh_loop_detach(w->loop, w);
  if (w->open_handles == 0) watcher_release(w);
}

int hersh_watcher_manage(hersh_watcher *w, hersh_reducer_fn fn, void *ud) {
  if (!w || !fn) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_manage: NULL watcher or function");
  if (w->started) return hersh_fail_with(HERSH_E_STATE, "cannot manage a watcher that is already started");
  w->reducer = fn;
  w->reducer_ud = ud;
  return HERSH_OK;
}

int hersh_watcher_on_cleanup(hersh_watcher *w, hersh_cleanup_fn fn, void *ud) {
  if (!w || !fn) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_on_cleanup: NULL watcher or function");
  if (w->started) return hersh_fail_with(HERSH_E_STATE, "cannot set the cleanup of a started watcher");
  w->cleanup = fn;
  w->cleanup_ud = ud;
  return HERSH_OK;
}

int hersh_watcher_start(hersh_watcher *w) {
  if (!w) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_start: NULL watcher");
  if (!hersh_loop_on_thread(w->loop)) return hersh_fail_with(HERSH_E_INVAL, "start a watcher on its loop's thread");
  if (hersh_state_terminal(state_of(w))) return hersh_fail_with(HERSH_E_STOPPED, "watcher stopped");
  if (w->started) return hersh_fail_with(HERSH_E_STATE, "watcher already started");
  if (!w->reducer) return hersh_fail_with(HERSH_E_INVAL, "no managed function registered");
  int rc = push_watcher_signal(w, WSIG_INIT, 0, NULL);
  if (rc) return rc;
  atomic_store(&w->started, true);
  uv_ref((uv_handle_t *)&w->wake);
  return HERSH_OK;
}

int hersh_watcher_send(hersh_watcher *w, const char *content, size_t len) {
  if (!w || (!content && len)) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_send: NULL watcher or content");
  hersh_message *m = hersh_message_new(content ? content : "", len);
  if (!m) return hersh_fail_with(HERSH_E_NOMEM, "out of memory for a message of %zu bytes", len);
  hersh_signal s = {.kind = SIG_USER, .u.user = m};
  int rc = hersh_watcher_push(w, &s);
  if (rc) hersh_message_unref(m);
  return rc;
}

static bool is_terminal_pred(void *ud) { return hersh_state_terminal(state_of(ud)); }

/* Queues a stop or kill once; then waits where waiting is possible (see hersh.h). */
static int request_end(hersh_watcher *w, hersh_wsig what, const char *reason) {
  if (!w) return hersh_fail_with(HERSH_E_INVAL, "NULL watcher");
  pthread_mutex_lock(&w->mu);
  hersh_state st = state_of(w);
  /* A stop comes once; a kill may follow a stop that has not been handled yet. */
  bool refused = hersh_state_terminal(st) || (what == WSIG_KILL ? w->kill_requested : w->stop_requested);
  w->stop_requested = true;
  if (what == WSIG_KILL) w->kill_requested = true;
  /* Not accepting, not terminal: a cleanup waits (ending). A kill cuts it short: no
  ** signal can be queued, so the flag alone wakes the loop (wake is open until the
  ** state turns terminal, under this lock). */
  bool cut_cleanup = !refused && what == WSIG_KILL && !w->accepting;
  if (cut_cleanup) {
    if (hersh_loop_on_thread(w->loop)) uv_idle_start(&w->drain, drain_cb);
    else uv_async_send(&w->wake);
  }
  pthread_mutex_unlock(&w->mu);
  if (refused) {
    log_fault(w, st, what == WSIG_STOP ? HERSH_STOPPED : HERSH_KILLED, "already stopped");
    return hersh_fail_with(HERSH_E_STOPPED, "already stopped");
  }
  int rc = cut_cleanup ? HERSH_OK : push_watcher_signal(w, what, 0, reason);
  if (rc) return rc;
  if (!hersh_loop_on_thread(w->loop)) {
    pthread_mutex_lock(&w->mu);
    while (!hersh_state_terminal(state_of(w))) pthread_cond_wait(&w->terminal_cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
  } else if (w->loop->depth == 0 && w->loop->owns_uv) {
    hersh_loop_run_until(w->loop, is_terminal_pred, w, 1e9);
  }
  return HERSH_OK;
}

int hersh_watcher_stop(hersh_watcher *w) { return request_end(w, WSIG_STOP, NULL); }

int hersh_watcher_kill(hersh_watcher *w, const char *reason) { return request_end(w, WSIG_KILL, reason ? reason : "killed"); }

const char *hersh_watcher_id(const hersh_watcher *w) { return w ? w->id : NULL; }
hersh_state hersh_watcher_state(const hersh_watcher *w) { return state_of(w); }
int hersh_watcher_failures(const hersh_watcher *w) { return atomic_load(&w->failures); }
double hersh_watcher_next_retry(const hersh_watcher *w) { return atomic_load(&w->next_retry); }
const hersh_config *hersh_watcher_config(const hersh_watcher *w) { return &w->cfg; }
void hersh_watcher_set_userdata(hersh_watcher *w, void *ud) { w->userdata = ud; }

int hersh_watcher_observe(hersh_watcher *w, const hersh_observer *obs, void *ud) {
  if (w->observer && obs) return hersh_fail_with(HERSH_E_STATE, "the watcher is already observed");
  w->observer = obs;
  w->observer_ud = ud;
  w->dirty = 0; /* the observer published its first snapshot itself */
  return HERSH_OK;
}

void hersh_watcher_peek(hersh_watcher *w, size_t per_kind, void (*fn)(const hersh_signal *s, void *ud), void *ud) {
  pthread_mutex_lock(&w->mu);
  for (int k = SIG_KINDS - 1; k >= 0; k--) { /* var, user, watcher: the original's order */
    const hersh_queue *q = &w->queues[k];
    for (size_t i = 0; i < q->count && i < per_kind; i++) fn(&q->items[(q->head + i) % q->cap], ud);
  }
  pthread_mutex_unlock(&w->mu);
}

int hersh_watcher_on_terminal(hersh_watcher *w, void (*fn)(hersh_watcher *w, void *ud), void *ud) {
  if (!w) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_on_terminal: NULL watcher");
  w->on_terminal = fn;
  w->on_terminal_ud = ud;
  return HERSH_OK;
}
void *hersh_watcher_userdata(const hersh_watcher *w) { return w->userdata; }

hersh_queue_counts hersh_watcher_pending(hersh_watcher *w) {
  pthread_mutex_lock(&w->mu);
  hersh_queue_counts c = {w->queues[SIG_WATCHER].count, w->queues[SIG_USER].count, w->queues[SIG_VAR].count};
  pthread_mutex_unlock(&w->mu);
  return c;
}
