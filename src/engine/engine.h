/*
** engine.h -- the engine's internal structures, shared by the files of src/engine.
** Private to src/engine: include/hersh.h is the contract, binding.h what the layers
** above may call besides. CMake defines HERSH_ENGINE_INTERNAL for src/engine only.
*/
#ifndef HERSH_ENGINE_H
#define HERSH_ENGINE_H

#ifndef HERSH_ENGINE_INTERNAL
#error "engine.h is private to src/engine: include engine/binding.h"
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "base/map.h"
#include "binding.h"

/* ---- ring logs (log.c) ------------------------------------------------------------ */

typedef struct hersh_message hersh_message;

/* A ring slot: the entry, and the message its `detail` points into (reduce log). */
typedef struct hersh_ring_item {
  hersh_log_entry e;
  hersh_message *msg;
} hersh_ring_item;

typedef struct hersh_ring {
  hersh_ring_item *items;
  size_t cap, max, head, count; /* grows up to max, then overwrites the oldest */
  uint64_t next_id;
} hersh_ring;

typedef struct hersh_logs {
  pthread_mutex_t mu;
  hersh_ring rings[HERSH_LOG_KINDS];
} hersh_logs;

int hersh_logs_init(hersh_logs *logs, size_t max_entries);
void hersh_logs_free(hersh_logs *logs);
/*
** Appends *e with copies of its text fields (the static names are kept as they are),
** and fills in its id, and its time unless the caller gave one. For the reduce log, `msg` (may be NULL) gives the detail
** without a copy: the entry keeps a reference on it.
*/
void hersh_logs_add(hersh_logs *logs, hersh_log_kind kind, const hersh_log_entry *e, hersh_message *msg);
/* Two entries under one lock (a run's result and its reduce entry); msg2 as above. */
void hersh_logs_add_two(hersh_logs *logs, hersh_log_kind k1, const hersh_log_entry *e1, hersh_log_kind k2,
                        const hersh_log_entry *e2, hersh_message *msg2);

/* ---- user messages (shared by the queue and the reduce log) ------------------------ */

struct hersh_message {
  unsigned refs; /* touched only on the loop thread once queued */
  hersh_msg msg;
  char data[];
};

hersh_message *hersh_message_new(const char *content, size_t len);
void hersh_message_unref(hersh_message *m);

/* ---- the trace of runs (trace.c) ----------------------------------------------------- */

#define HERSH_TRACE_VERSION 1

typedef struct hersh_trace_write {
  char *key, *json; /* a context write: the value as the context log encoded it */
} hersh_trace_write;

/* One run: its trigger, its inputs (each a JSON object), its checkpoint. */
typedef struct hersh_trace_run {
  uint64_t seq;
  const char *trigger; /* static reason */
  hersh_message *msg;  /* a reference, or NULL */
  char *vars;          /* n_vars names, each NUL-terminated */
  size_t n_vars;
  int failures; /* consecutive failures before the run */
  hersh_state prev, next;
  hersh_run_outcome outcome;
  char *error;
  double retry_in; /* > 0: the retry or recover the run's failure scheduled */
  bool lost;       /* out of memory dropped part of the record */
  char **inputs;
  size_t n_inputs, cap_inputs;
  hersh_trace_write *writes;
  size_t n_writes, cap_writes;
} hersh_trace_run;

typedef struct hersh_trace {
  pthread_mutex_t mu; /* the ring and snapshot, which readers walk from other threads */
  hersh_trace_run *ring;
  size_t cap, max, head; /* max 0: no trace; cap up to max and some spare slots (trace.c) */
  _Atomic size_t count;  /* records held; published by the loop thread, read under mu */
  hersh_trace_run *cur;         /* the open run's slot, NULL when none (loop thread) */
  uint64_t next_seq;
  hersh_strmap snapshot; /* key -> JSON: the context before the ring's oldest run */
  bool snapshot_lost;
  uint64_t rng[4]; /* ctx random numbers (xoshiro256**) */
} hersh_trace;

int hersh_trace_init(hersh_trace *tr, size_t max_runs, uint64_t seed);
void hersh_trace_free(hersh_trace *tr);
bool hersh_trace_on(const hersh_trace *tr);
/* Loop thread. A run opens a record, its inputs and writes go in (their texts taken),
** its outcome (copied) and the state it leads to close it into the ring. */
void hersh_trace_begin(hersh_trace *tr, const hersh_trigger *t, hersh_message *msg, int failures, hersh_state prev);
void hersh_trace_input(hersh_trace *tr, char *json);
void hersh_trace_context_write(hersh_trace *tr, const char *key, char *json);
void hersh_trace_retry(hersh_trace *tr, double delay);
void hersh_trace_outcome(hersh_trace *tr, hersh_run_outcome o, const char *error);
void hersh_trace_end(hersh_trace *tr, hersh_state next);
uint64_t hersh_trace_rand64(hersh_trace *tr);
/* The trace as lines (header, then runs, oldest first), each to fn; any thread. */
int hersh_trace_read(hersh_trace *tr, const char *id, bool (*fn)(const char *line, size_t len, void *ud), void *ud);

/* ---- signals and queues (queue.c) ------------------------------------------------- */

typedef enum hersh_sig_kind { SIG_WATCHER = 0, SIG_USER, SIG_VAR, SIG_KINDS } hersh_sig_kind;
typedef enum hersh_wsig { WSIG_INIT, WSIG_STOP, WSIG_KILL, WSIG_RETRY, WSIG_RECOVER, WSIG_CRASH } hersh_wsig;

typedef struct hersh_watch hersh_watch;

/* One pending update of a watched variable. */
typedef struct hersh_var_update {
  hersh_watch *watch;
  bool independent;
  enum { UPD_REPLACE, UPD_APPLY, UPD_ERROR } kind;
  hersh_value value; /* REPLACE */
  hersh_update_fn fn; /* APPLY */
  void *ud;
  void (*free_ud)(void *);
  char *err; /* ERROR */
} hersh_var_update;

typedef struct hersh_signal {
  hersh_sig_kind kind;
  double at; /* when it was queued (user messages: their received_at) */
  union {
    struct {
      hersh_wsig what;
      uint64_t gen; /* RETRY/RECOVER: the schedule it belongs to */
      char *reason; /* KILL, CRASH */
    } w;
    hersh_message *user;
    hersh_var_update *var;
  } u;
} hersh_signal;

typedef struct hersh_queue {
  hersh_signal *items;
  size_t cap, max, head, count;
} hersh_queue;

void hersh_queue_init(hersh_queue *q, size_t max);
void hersh_queue_free(hersh_queue *q);
int hersh_queue_push(hersh_queue *q, const hersh_signal *s); /* HERSH_E_QUEUE_FULL, NOMEM */
bool hersh_queue_pop(hersh_queue *q, hersh_signal *out);
void hersh_signal_release(hersh_signal *s);
void hersh_var_update_free(hersh_var_update *u);

/* ---- the loop (loop.c) -------------------------------------------------------------- */

#define HERSH_LOOP_HOOKS 8

struct hersh_loop {
  size_t ended[3]; /* watchers that ended Stopped, Killed, Crashed */
  uv_loop_t *uv;
  uv_loop_t own;
  bool owns_uv;
  pthread_t thread; /* the thread that created it: the loop thread */
  int depth;        /* > 0 while one of our run functions is inside uv_run */
  hersh_watchdog *watchdog;
  hersh_watcher **watchers; /* live watchers, for hersh_loop_run */
  size_t n_watchers, cap_watchers;
  /* What other parts keep on the loop (its Lua state, the HTTP client): binding.h. */
  struct hersh_loop_hook {
    void (*fn)(void *ud);
    void *ud;
  } on_free[HERSH_LOOP_HOOKS];
  size_t n_on_free;
  hersh_report_fn on_report; /* the log callback (report.c) */
  void *on_report_ud;
};

int hersh_loop_attach(hersh_loop *loop, hersh_watcher *w);
void hersh_loop_detach(hersh_loop *loop, hersh_watcher *w);

/* ---- watches (watch.c) -------------------------------------------------------------- */

typedef enum hersh_watch_kind { WATCH_CALL, WATCH_FLOW, WATCH_TICK } hersh_watch_kind;

struct hersh_poll {
  hersh_watch *watch;
  bool pending;  /* a poll is under way (deferred polls finish later) */
  bool answered; /* this poll has given its answer */
  bool deferred; /* it said it will answer later (hersh_poll_defer) */
};

struct hersh_flow {
  hersh_watch *watch;
};

struct hersh_watch {
  hersh_watcher *w;
  hersh_watch_kind kind;
  char *name;
  hersh_value value;
  char *err;
  bool updated;
  bool closed;
  uint64_t newest_mark, trigger_mark; /* batch ids, for one linear pass per batch */
  /* WATCH_CALL */
  hersh_poll_fn poll;
  void *ud;
  void (*free_ud)(void *);
  hersh_poll poll_state;
  /* WATCH_CALL and WATCH_TICK */
  uv_timer_t timer;
  bool timer_open;
  double interval;
  /* WATCH_FLOW */
  hersh_flow flow;
};

void hersh_watch_close_all(hersh_watcher *w);

void hersh_watch_free(void *watch);
/* Applies one batch of var updates in arrival order; fills the trigger names. */
void hersh_watch_apply_batch(hersh_watcher *w, hersh_var_update **batch, size_t n);

/* ---- observing a watcher (the WatcherAPI publishes through this) ------------------- */

/* Marks sections changed; outside a run the observer hears of it at once. */
void hersh_watcher_changed(hersh_watcher *w, unsigned what);

/* ---- counting runs (stats.c) ------------------------------------------------------- */

/* Counts one run that took `seconds`. Loop thread. */
void hersh_stats_count_run(hersh_run_stats *s, const hersh_trigger *t, hersh_run_outcome o, double seconds);

/* ---- reports: the log callback (report.c) ------------------------------------------ */

/* Each tells the loop's log callback, if any, on the loop thread. Run failures read the
** trigger and message of w->ctx; `d` NULL means a pending stop won (no decision). */
void hersh_report_run_failed(hersh_watcher *w, const char *err, int failures, const hersh_decision *d);
void hersh_report_cleanup_failed(hersh_watcher *w, const char *err);
void hersh_report_watch_error(hersh_watcher *w, const char *name, const char *phase, const char *err);
void hersh_report_crashed(hersh_watcher *w, const char *reason, int failures);

/* ---- the watcher (watcher.c) -------------------------------------------------------- */

typedef enum hersh_outcome {
  OUT_OK = 0,
  OUT_FAIL,
  OUT_STOP,
  OUT_KILL,
  OUT_CRASH,
  OUT_LIMIT /* an engine limit or invalid watch use: Crashed */
} hersh_outcome;

struct hersh_ctx {
  hersh_watcher *w;
  int64_t deadline_ns; /* of the run or cleanup in progress */
  bool in_run;     /* inside a reducer run (watch APIs allowed) */
  bool in_cleanup; /* inside the cleanup */
  const hersh_msg *msg;
  hersh_trigger trigger;
  const char **trigger_vars;
  size_t trigger_vars_cap;
  /* set by hersh_stop/kill/crash/fail and by limit violations during a run */
  hersh_outcome outcome;
  char *outcome_text;
  bool now_set; /* the run's time (hersh_ctx_now) was read */
  double now;
  /* The run or cleanup's Lua code waits (hersh_ctx_wait): abort ends that code. */
  bool waiting;
  void (*wait_abort)(void *ud);
  void *wait_ud;
};

/* A run whose code waits: what its reduce entry needs once it ends (watcher.c). */
typedef struct hersh_open_run {
  hersh_state prev;
  const char *signal, *reason; /* static names */
  char *detail;                /* owned */
  hersh_message *msg;          /* a reference, or NULL */
  uint64_t started_ns;
} hersh_open_run;

struct hersh_watcher {
  hersh_loop *loop;
  hersh_config cfg;
  char *id;
  char **env; /* copied "KEY=VALUE" */
  size_t n_env;
  void *userdata;

  hersh_reducer_fn reducer;
  void *reducer_ud;
  hersh_cleanup_fn cleanup;
  void *cleanup_ud;
  void (*on_terminal)(hersh_watcher *w, void *ud);
  void *on_terminal_ud;
  void (*on_free)(void *ud); /* the Lua glue of a C embedder's watcher forgets it */
  void *on_free_ud;
  const hersh_observer *observer;
  void *observer_ud;
  unsigned dirty; /* DIRTY_* since the observer last heard */

  _Atomic int state; /* hersh_state, read from any thread */
  _Atomic int failures;
  _Atomic double next_retry;
  _Atomic bool started; /* read by the WatcherAPI thread */
  _Atomic bool waiting; /* a run or cleanup waits (ctx.waiting, published) */
  bool cleanup_done, freed;

  pthread_mutex_t mu; /* queues, accepting, the stop waiters */
  pthread_cond_t terminal_cv;
  bool accepting;     /* new signals are taken */
  bool stop_requested, kill_requested;
  hersh_queue queues[SIG_KINDS];

  uv_async_t wake; /* other threads queued something */
  uv_idle_t drain; /* signals are waiting: process them on the next loop turn */
  uv_timer_t retry_timer;
  hersh_wsig retry_what; /* RETRY or RECOVER, while the timer runs */
  bool retry_pending;    /* the timer runs, or its signal is queued */
  uint64_t retry_gen;    /* bumped on every schedule and cancel: older signals are stale */
  hersh_var_update **batch; /* scratch for one var batch */
  uint64_t batch_seq;
  size_t batch_cap;
  int open_handles; /* closed-callback count still to come */
  hersh_open_run open_run; /* the run in progress */
  uv_timer_t wait_timer;   /* the deadline of a run or cleanup that waits */
  bool ending;             /* a waiting cleanup holds back the end in ending_state */
  hersh_state ending_state;

  hersh_ctx ctx;
  hersh_logs logs;
  hersh_trace trace;
  bool trace_ready; /* trace initialised (its lock) */
  char *trace_file; /* cfg.trace_file, copied */
  hersh_strmap context;
  hersh_strmap memo;
  hersh_strmap watches; /* name -> hersh_watch* */
  hersh_run_stats stats; /* loop thread only */
};

/* Queue a signal from the loop thread or any other; HERSH_E_STOPPED when terminal. */
int hersh_watcher_push(hersh_watcher *w, hersh_signal *s);
/* Queues a crash for an engine limit broken outside a run (cleanup runs). */
int hersh_watcher_crash_later(hersh_watcher *w, const char *reason);
/* Record that the current run broke an engine limit (it ends Crashed). Outside a run
** (a saved ctx used later) the watcher is crashed through its queue. */
int hersh_ctx_violation(hersh_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hersh_watcher_handle_closed(uv_handle_t *h);

#endif
