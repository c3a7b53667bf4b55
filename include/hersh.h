/*
** hersh.h -- the public C API of the Hersh Watcher engine.
**
** A watcher owns one managed function (the reducer), three bounded signal queues,
** its watches, memo cache, context store and six ring logs. Everything that touches
** the reducer runs on the thread that drives the watcher's loop; the functions marked
** "any thread" may be called from elsewhere.
**
** Errors: functions return HERSH_OK (0) or a negative hersh_err, or NULL; the text of
** the last failure on the calling thread is hersh_errmsg(). Nothing here exits the
** process or prints on its own.
*/
#ifndef HERSH_H
#define HERSH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HERSH_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------------ */

typedef enum hersh_err {
  HERSH_OK = 0,
  HERSH_E_INVAL = -1,      /* a caller's bug: bad argument or misuse       EINVAL     */
  HERSH_E_NOMEM = -2,      /* allocation failed                            ENOMEM     */
  HERSH_E_QUEUE_FULL = -3, /* the signal queue is at capacity              EQUEUEFULL */
  HERSH_E_STOPPED = -4,    /* the watcher is in a terminal state           ESTOPPED   */
  HERSH_E_STATE = -5,      /* not allowed in the current state             ESTATE     */
  HERSH_E_TIMEOUT = -6,    /* a deadline passed                            ETIMEOUT   */
  HERSH_E_RUNTIME = -7,    /* user code failed                             ERUNTIME   */
  HERSH_E_LIMIT = -8,      /* an engine limit was reached                  ELIMIT     */
  HERSH_E_NOTFOUND = -9,   /* no such entry                                ENOTFOUND  */
  HERSH_E_SYS = -10,       /* the OS or a library refused                  ESYS       */
  HERSH_E_LUA = -11        /* a Lua chunk failed to load                   ELUA       */
} hersh_err;

/* A stable machine-matchable name ("EQUEUEFULL") for an error code. */
const char *hersh_errcode(int err);
/* The message of the last failure on the calling thread ("" if none). */
const char *hersh_errmsg(void);

/* ---- values ------------------------------------------------------------------ */

typedef enum hersh_type {
  HERSH_T_NIL = 0,
  HERSH_T_BOOL,
  HERSH_T_INT,
  HERSH_T_NUM,
  HERSH_T_STR,
  HERSH_T_LIST, /* ordered items                                             */
  HERSH_T_MAP,  /* string keys, insertion order kept                          */
  HERSH_T_EXT   /* a foreign value (a Lua table, function...) held by its owner */
} hersh_type;

typedef struct hersh_agg hersh_agg;
typedef struct hersh_ext hersh_ext;

/*
** A small tagged value. It owns what it points to: copy it with hersh_value_copy,
** release it with hersh_value_free. A zeroed hersh_value is nil.
*/
typedef struct hersh_value {
  hersh_type type;
  union {
    bool b;
    int64_t i;
    double n;
    struct {
      char *ptr; /* NUL-terminated; may also contain NULs up to len */
      size_t len;
    } s;
    hersh_agg *agg; /* LIST and MAP */
    hersh_ext *ext;
  } as;
} hersh_value;

hersh_value hersh_nil(void);
hersh_value hersh_bool(bool b);
hersh_value hersh_int(int64_t i);
hersh_value hersh_num(double n);
/* Strings are copied; on allocation failure the result is nil and errmsg says so. */
hersh_value hersh_str(const char *s);
hersh_value hersh_strn(const char *s, size_t len);
hersh_value hersh_list(void);
hersh_value hersh_map(void);

/* Append to a list / set a map key. Both take ownership of *item (left nil). */
int hersh_list_push(hersh_value *list, hersh_value *item);
int hersh_map_set(hersh_value *map, const char *key, hersh_value *item);

size_t hersh_value_len(const hersh_value *v);       /* items, pairs or bytes */
const hersh_value *hersh_list_at(const hersh_value *list, size_t i);
const hersh_value *hersh_map_get(const hersh_value *map, const char *key);
const char *hersh_map_key(const hersh_value *map, size_t i);
const hersh_value *hersh_map_value(const hersh_value *map, size_t i);

int hersh_value_copy(hersh_value *dst, const hersh_value *src); /* deep */
void hersh_value_free(hersh_value *v);                           /* leaves nil */
bool hersh_value_equal(const hersh_value *a, const hersh_value *b);
/*
** JSON text of a value (malloc'd, caller frees): map keys sorted bytewise, `/` as
** is, invalid UTF-8 as U+FFFD, numbers in the shortest form that reads back the same.
** Values JSON cannot hold (foreign functions, cycles, NaN) appear as short type tags
** such as "<function>". NULL (hersh_errmsg says why) when out of memory or nested
** deeper than 128 levels.
*/
char *hersh_value_json(const hersh_value *v);

/* ---- loop ---------------------------------------------------------------------- */

typedef struct hersh_loop hersh_loop;

/* A loop with its own libuv loop, or one that borrows the caller's uv_loop_t. The
** calling thread is the loop thread: Lua code past its deadline is interrupted there
** by SIGURG from the loop's watchdog thread, so do not block SIGURG on it
** (docs/c-api.md, "The deadline signal"). */
hersh_loop *hersh_loop_new(void);
hersh_loop *hersh_loop_wrap(void *uv_loop);
/*
** Frees the loop. Loop thread, outside every callback. In this order: every watcher
** still on it is freed (as hersh_watcher_free does: a live one ends Killed); then what
** the library keeps on the loop goes, the newest first: the loop's Lua state
** (hersh_watcher_manage_lua) closes the handles its objects hold (timers, sleeping
** polls, ...), lets them finish closing, and is closed; then the handles still closing
** finish. Any order of hersh_watcher_stop and hersh_watcher_free calls before it is
** fine, or none. A loop from hersh_loop_wrap leaves your uv_loop_t open: what still
** closes there frees C memory only on its next turn, so run it once more before
** uv_loop_close.
*/
void hersh_loop_free(hersh_loop *loop);
void *hersh_loop_uv(hersh_loop *loop);
/*
** Runs until every started watcher on the loop is terminal. A started watcher keeps
** the loop alive (another thread may send to it), so this is a server's main loop;
** HERSH_E_STATE only if nothing at all could wake the loop any more.
*/
int hersh_loop_run(hersh_loop *loop);
/* Runs until pred(ud) is true or `seconds` have passed; 1 = true, 0 = timed out. */
int hersh_loop_run_until(hersh_loop *loop, bool (*pred)(void *ud), void *ud, double seconds);
/* Runs for `seconds`, then returns. */
int hersh_loop_run_for(hersh_loop *loop, double seconds);
/* How many of the loop's watchers ended in each terminal state so far. */
void hersh_loop_outcomes(const hersh_loop *loop, size_t *stopped, size_t *killed, size_t *crashed);

/* ---- watcher ------------------------------------------------------------------- */

typedef enum hersh_state {
  HERSH_NOT_RUN = 0,
  HERSH_INIT_RUN,
  HERSH_READY,
  HERSH_RUNNING,
  HERSH_WAIT_RECOVER,
  HERSH_STOPPED,
  HERSH_KILLED,
  HERSH_CRASHED
} hersh_state;

const char *hersh_state_name(hersh_state s); /* "NotRun", "InitRun", ... */
bool hersh_state_terminal(hersh_state s);

/* What the recovery policy decides after the n-th consecutive failure. */
typedef enum hersh_action {
  HERSH_ACT_RETRY = 0, /* stay Ready, re-run after `delay` unless another run comes first */
  HERSH_ACT_RECOVER,   /* WaitRecover for `delay`, then re-run                              */
  HERSH_ACT_CRASH      /* Crashed (cleanup runs)                                            */
} hersh_action;

#define HERSH_MAX_LIGHT_DELAYS 16

typedef struct hersh_recovery {
  int min_failures;  /* 3      */
  int max_failures;  /* 6      */
  double base_delay; /* 5 s    */
  double max_delay;  /* 300 s  */
  double light_delays[HERSH_MAX_LIGHT_DELAYS]; /* 15, 30, 60 s; the last repeats */
  int n_light_delays;
} hersh_recovery;

typedef struct hersh_decision {
  hersh_action action;
  double delay; /* seconds */
} hersh_decision;

/* The built-in policy; the same rule as lua/hersh/recovery.lua. */
void hersh_recovery_defaults(hersh_recovery *policy);
hersh_decision hersh_recovery_decide(int n, const hersh_recovery *policy);

typedef hersh_decision (*hersh_recovery_fn)(int n, const char *err, const hersh_recovery *policy,
                                            void *ud);

typedef struct hersh_config {
  const char *id;           /* watcher id; generated when NULL                 */
  double timeout;           /* deadline of one run, s (60)                     */
  double cleanup_timeout;   /* deadline of the cleanup, s (5)                  */
  size_t signal_capacity;   /* capacity of each of the three queues (50,000)   */
  size_t max_log_entries;   /* capacity of each ring log (50,000)              */
  size_t max_watches;       /* (1,000)                                         */
  size_t max_memo;          /* (1,000)                                         */
  hersh_recovery recovery;  /* policy data                                     */
  hersh_recovery_fn decide; /* NULL: hersh_recovery_decide                     */
  void *decide_ud;
  const char *const *env; /* NULL-terminated "KEY=VALUE" strings, copied     */
  size_t trace_runs;      /* runs the trace keeps (1,000); 0 = none; HERSH_TRACE_ALL */
  const char *trace_file; /* NULL; else the trace is written there when the watcher
                             ends (copied). docs/replay.md                      */
} hersh_config;

/* trace_runs: keep every run (`hersh run --record`). */
#define HERSH_TRACE_ALL SIZE_MAX

/* Fills every field with its default. Start from this, then change fields. */
void hersh_config_init(hersh_config *cfg);

typedef struct hersh_watcher hersh_watcher;
typedef struct hersh_ctx hersh_ctx;

typedef struct hersh_msg {
  const char *content; /* NUL-terminated */
  size_t len;
  double received_at; /* seconds since the epoch */
} hersh_msg;

/* What caused the current run. Exactly one of watcher/user/vars is set. */
typedef struct hersh_trigger {
  bool watcher;
  bool user;
  const char *const *vars; /* names in the batch, each once */
  size_t n_vars;
  const char *reason; /* "init", "retry", "recover", "message", "vars" */
} hersh_trigger;

/*
** A reducer returns HERSH_OK for success, or the result of hersh_stop / hersh_kill /
** hersh_crash / hersh_fail. Any other non-zero return is a failure.
*/
typedef int (*hersh_reducer_fn)(hersh_ctx *ctx, const hersh_msg *msg, void *ud);
typedef void (*hersh_cleanup_fn)(hersh_ctx *ctx, void *ud);

int hersh_watcher_new(hersh_loop *loop, const hersh_config *cfg, hersh_watcher **out);
/* Kills a live watcher (its cleanup does not run), then frees it. Loop thread, not
** from the watcher's own callbacks. */
void hersh_watcher_free(hersh_watcher *w);

int hersh_watcher_manage(hersh_watcher *w, hersh_reducer_fn fn, void *ud);
int hersh_watcher_on_cleanup(hersh_watcher *w, hersh_cleanup_fn fn, void *ud);
/*
** A Lua reducer: `chunk` is Lua source that returns the reducer function, or a table
** {reduce = fn, cleanup = fn}. It runs in the loop's Lua state, a program's: require
** "hersh" works (hersh.core, hersh.json), the Host's modules and C modules do not.
** Compile errors return HERSH_E_LUA with the message in hersh_errmsg(). The Lua
** side uses the watcher's on_terminal hook and userdata slot for itself.
*/
int hersh_watcher_manage_lua(hersh_watcher *w, const char *chunk, size_t len, const char *chunkname);

/* Queues the init signal and returns at once; the first run comes from the loop. */
int hersh_watcher_start(hersh_watcher *w);
/* Queues a user message (any thread). Full queue: HERSH_E_QUEUE_FULL at once. */
int hersh_watcher_send(hersh_watcher *w, const char *content, size_t len);
/*
** Stops the watcher: pending retries are cancelled, cleanup runs once, the state ends
** Stopped, every watch and timer stops. From other threads, and from the loop's thread
** outside any hersh_loop_run* call, it returns when the watcher is terminal; from inside
** a callback (a reducer, a poll), or on a loop from hersh_loop_wrap, it queues the stop
** and returns (drive a loop of your own only through hersh_loop_run* or your own
** uv_run on a wrapped loop). Twice: HERSH_E_STOPPED.
*/
int hersh_watcher_stop(hersh_watcher *w);
/* Like stop, without cleanup; ends Killed. It also overrides a stop not yet handled. */
int hersh_watcher_kill(hersh_watcher *w, const char *reason);

const char *hersh_watcher_id(const hersh_watcher *w);
hersh_state hersh_watcher_state(const hersh_watcher *w); /* any thread */
int hersh_watcher_failures(const hersh_watcher *w);       /* consecutive failures; any thread */
double hersh_watcher_next_retry(const hersh_watcher *w);  /* epoch s, 0 if none; any thread */
const hersh_config *hersh_watcher_config(const hersh_watcher *w);
/* Called once on the loop thread when the watcher reaches a terminal state. */
int hersh_watcher_on_terminal(hersh_watcher *w, void (*fn)(hersh_watcher *w, void *ud), void *ud);
void hersh_watcher_set_userdata(hersh_watcher *w, void *ud);
void *hersh_watcher_userdata(const hersh_watcher *w);

typedef struct hersh_queue_counts {
  size_t watcher, user, var;
} hersh_queue_counts;
hersh_queue_counts hersh_watcher_pending(hersh_watcher *w); /* any thread */

/* ---- observing: snapshots ----------------------------------------------------------- */

/* What caused a run, as counted (the trigger's reason). */
typedef enum hersh_run_trigger {
  HERSH_RUN_INIT = 0,
  HERSH_RUN_RETRY,
  HERSH_RUN_RECOVER,
  HERSH_RUN_MESSAGE,
  HERSH_RUN_VARS,
  HERSH_RUN_TRIGGERS
} hersh_run_trigger;

/* How a run ended, as counted: a timeout is a failure past the run's deadline, a limit
** an engine limit or invalid watch use (the watcher crashes). */
typedef enum hersh_run_outcome {
  HERSH_RUN_OK = 0,
  HERSH_RUN_FAILED,
  HERSH_RUN_TIMEOUT,
  HERSH_RUN_STOPPED,
  HERSH_RUN_KILLED,
  HERSH_RUN_CRASHED,
  HERSH_RUN_LIMIT,
  HERSH_RUN_OUTCOMES
} hersh_run_outcome;

const char *hersh_run_trigger_name(hersh_run_trigger t); /* "init", "retry", ..., "vars" */
const char *hersh_run_outcome_name(hersh_run_outcome o); /* "ok", "failed", ..., "limit" */

/* Upper bounds in seconds of the run-duration histogram's buckets, ascending; a last,
** unbounded bucket (+Inf) follows them. */
#define HERSH_RUN_BUCKETS 12
extern const double hersh_run_bucket_bounds[HERSH_RUN_BUCKETS];

/* Every run of a watcher since it was made, counted as it ends. */
typedef struct hersh_run_stats {
  uint64_t runs[HERSH_RUN_TRIGGERS][HERSH_RUN_OUTCOMES];
  uint64_t duration_buckets[HERSH_RUN_BUCKETS + 1]; /* per bucket, not cumulative */
  double duration_sum;                              /* s */
  uint64_t duration_count;
} hersh_run_stats;

/*
** What an observer (a monitor, the WatcherAPI, a CLI) may know of a watcher, in a
** plain struct the caller owns; nothing in it needs freeing. Observers read these,
** never the engine's structures.
*/
typedef struct hersh_snapshot {
  hersh_state state;
  bool started;               /* hersh_watcher_start was called */
  bool waiting;               /* the Lua run (or cleanup) in progress waits: hersh.sleep, hersh.http */
  int failures;               /* consecutive failures */
  double next_retry;          /* epoch s of the next retry or recover, 0 if none */
  hersh_queue_counts pending; /* signals waiting in each queue */
  const char *const *env;     /* n_env "KEY=VALUE" strings, borrowed for the watcher's life */
  size_t n_env;
  /* Filled only on the loop thread (on_loop true); elsewhere 0 and NULL. */
  bool on_loop;
  size_t n_context, n_memo, n_watches; /* entries in the context store, memo, watches */
  const hersh_trigger *last_trigger;   /* of the last run, NULL before one; borrowed
                                          until the watcher handles its next signal */
  hersh_run_stats runs;                /* a copy */
} hersh_snapshot;

/* Fills *out. Any thread: the state, counters and queues are read atomically or under
** the watcher's lock (each field is current, the set is not one instant). */
int hersh_watcher_snapshot(hersh_watcher *w, hersh_snapshot *out);
/* Calls fn for each watcher on the loop. Loop thread; fn may stop or kill watchers,
** not free them. */
void hersh_loop_watchers(hersh_loop *loop, void (*fn)(hersh_watcher *w, void *ud), void *ud);

/* ---- inside a run: results -------------------------------------------------------- */

typedef enum hersh_result {
  HERSH_R_OK = 0,
  HERSH_R_FAIL = 1,
  HERSH_R_STOP = 2,
  HERSH_R_KILL = 3,
  HERSH_R_CRASH = 4
} hersh_result;

int hersh_stop(hersh_ctx *ctx, const char *reason);
int hersh_kill(hersh_ctx *ctx, const char *reason);
int hersh_crash(hersh_ctx *ctx, const char *reason, const char *cause);
int hersh_fail(hersh_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- inside a run: the context ------------------------------------------------------ */

hersh_watcher *hersh_ctx_watcher(hersh_ctx *ctx);
const hersh_msg *hersh_ctx_message(hersh_ctx *ctx); /* NULL unless a user run */
const hersh_trigger *hersh_ctx_trigger(hersh_ctx *ctx);
/* True once the run's deadline has passed: return soon, the run counts as timed out. */
bool hersh_ctx_cancelled(const hersh_ctx *ctx);
const char *hersh_ctx_env(hersh_ctx *ctx, const char *key); /* NULL if absent */

/*
** Inputs a reducer must take through the engine, not from the OS, so that its trace
** replays (docs/replay.md): each value is recorded. Loop thread, inside a run; outside a
** run they work unrecorded.
** hersh_ctx_now: the run's time, epoch s: read once per run, the same for the whole run.
** hersh_ctx_random: uniform in [0, 1). hersh_ctx_random_int: uniform in [lo, hi]
** (lo <= hi, else HERSH_E_INVAL); [INT64_MIN, INT64_MAX] gives all 64 bits.
*/
double hersh_ctx_now(hersh_ctx *ctx);
double hersh_ctx_random(hersh_ctx *ctx);
int hersh_ctx_random_int(hersh_ctx *ctx, int64_t lo, int64_t hi, int64_t *out);

/* An error buffer for user callbacks (updates, computes, polls). */
typedef struct hersh_errbuf {
  char msg[256];
} hersh_errbuf;
/* Formats the message and returns HERSH_E_RUNTIME. */
int hersh_errorf(hersh_errbuf *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The context store. get borrows (NULL if absent); set takes ownership of *v. */
const hersh_value *hersh_ctx_get(hersh_ctx *ctx, const char *key);
int hersh_ctx_set(hersh_ctx *ctx, const char *key, hersh_value *v);
/* fn gets a deep copy of the current value (nil if absent) and turns it into the next. */
typedef int (*hersh_update_fn)(hersh_value *v, void *ud, hersh_errbuf *err);
int hersh_ctx_update(hersh_ctx *ctx, const char *key, hersh_update_fn fn, void *ud);

/* Memo: computed once per watcher; *out borrows the cached value. */
typedef int (*hersh_compute_fn)(hersh_value *out, void *ud, hersh_errbuf *err);
int hersh_ctx_memo(hersh_ctx *ctx, const char *name, hersh_compute_fn fn, void *ud,
                   const hersh_value **out);
int hersh_ctx_clear_memo(hersh_ctx *ctx, const char *name);

int hersh_ctx_log(hersh_ctx *ctx, const char *text);   /* effect log */
int hersh_ctx_print(hersh_ctx *ctx, const char *text); /* stdout, then effect log */

/* ---- inside a run: watches --------------------------------------------------------- */

typedef struct hersh_watch_value {
  const hersh_value *value; /* borrowed until the run ends */
  const char *err;          /* NULL when the last update succeeded */
  const char *name;
  bool updated;   /* false while it still holds its initial value */
  bool triggered; /* this run's trigger names it */
} hersh_watch_value;

/*
** A poll tells what the watch's new value is, through exactly one of these:
** hersh_poll_replace (a new value), hersh_poll_update (a dependent update applied
** in the reducer), hersh_poll_skip (no signal), hersh_poll_fail (an error). A poll
** may also finish later: hersh_poll_defer returns a handle to finish on the loop
** thread (the Lua binding's coroutines use this).
*/
typedef struct hersh_poll hersh_poll;
typedef int (*hersh_poll_fn)(hersh_poll *p, void *ud);
void hersh_poll_replace(hersh_poll *p, hersh_value *v);
/* `free_ud` (may be NULL) releases `ud` once the update is applied or dropped. */
void hersh_poll_update(hersh_poll *p, hersh_update_fn fn, void *ud, void (*free_ud)(void *));
void hersh_poll_skip(hersh_poll *p);
void hersh_poll_fail(hersh_poll *p, const char *err);
hersh_poll *hersh_poll_defer(hersh_poll *p);

/* Registers on the first call in a run, then reads. `init` (may be NULL) is copied. */
int hersh_ctx_watch_call(hersh_ctx *ctx, const char *name, double interval, hersh_poll_fn poll,
                         void *ud, void (*free_ud)(void *), const hersh_value *init,
                         hersh_watch_value *out);
/* A flow is fed by hersh_flow_push from any thread; only the newest pending item counts. */
typedef struct hersh_flow hersh_flow;
int hersh_ctx_watch_flow(hersh_ctx *ctx, const char *name, const hersh_value *init,
                         hersh_flow **flow, hersh_watch_value *out);
/* Takes ownership of *v; `err` (may be NULL) marks an error item. Any thread. */
int hersh_flow_push(hersh_flow *flow, hersh_value *v, const char *err);
/* Its value is the map {count, time}; the first tick comes at once. */
int hersh_ctx_watch_tick(hersh_ctx *ctx, const char *name, double interval, hersh_watch_value *out);

/* ---- the WatcherAPI (HTTP) -------------------------------------------------------- */

typedef struct hersh_api_options {
  const char *bind; /* "127.0.0.1"                                     */
  int port;         /* 8080; 0 = any free port (see hersh_watcher_api_port) */
  int listen_fd;    /* -1; >= 0: serve this listening socket instead   */
} hersh_api_options;

void hersh_api_options_init(hersh_api_options *o);
/*
** Serves the watcher's WatcherAPI (docs/watcher-api.md) on its own HTTP thread until
** the watcher is terminal. Requests never wait for a run: monitoring routes answer
** with the values of the last completed reduce. Loop thread; once per watcher.
*/
int hersh_watcher_serve(hersh_watcher *w, const hersh_api_options *o);
/* The port the WatcherAPI listens on, 0 if it does not. */
int hersh_watcher_api_port(const hersh_watcher *w);
/* Before a stop that hands the socket on (an update in place): the WatcherAPI takes no
** new connection from now on, answers those it took, each closed after its answer, and
** goes on so until the watcher is terminal. The connections still open (0 if it does
** not serve): stop the watcher once none is, and no message finds it refusing. Loop
** thread; may be called again. */
unsigned hersh_watcher_api_quiesce(hersh_watcher *w);

/* ---- logs ------------------------------------------------------------------------- */

typedef enum hersh_log_kind {
  HERSH_LOG_REDUCE = 0, /* every signal handled                          */
  HERSH_LOG_EFFECT,     /* user log lines, memo events, stop/kill reasons */
  HERSH_LOG_RESULT,     /* each run / cleanup / recover: ok or an error  */
  HERSH_LOG_WATCH_ERROR,
  HERSH_LOG_CONTEXT,
  HERSH_LOG_FAULT, /* rejected state transitions                     */
  HERSH_LOG_KINDS
} hersh_log_kind;

const char *hersh_log_kind_name(hersh_log_kind k); /* "reduce", "effect", ... */
/* The log a name means: a hersh_log_kind_name, or the older alias "result" or "fault".
** Any thread. Returns false for an unknown name. */
bool hersh_log_kind_parse(const char *name, hersh_log_kind *out);
/* The names a user may give, for error messages. */
#define HERSH_LOG_KIND_NAMES "reduce, effect, effect_result, watch_error, context, state_fault"


typedef struct hersh_log_entry {
  uint64_t id; /* increasing per log, never reused */
  double time; /* seconds since the epoch */
  union {
    struct {
      hersh_state prev, next;
      const char *signal;  /* "watcher", "user", "var" */
      const char *reason;  /* "init", "stop", "message", "vars", ... */
      const char *detail;  /* message content or var names; may be NULL */
    } reduce;
    struct {
      const char *text;
    } effect;
    struct {
      const char *effect; /* "run", "cleanup", "recover" */
      bool ok;
      const char *error; /* NULL when ok */
    } result;
    struct {
      const char *name, *phase, *error; /* phase: "poll", "update", "flow" */
    } watch_error;
    struct {
      const char *key, *op;        /* op: "initialized" or "updated" */
      const char *old_json, *new_json;
    } context;
    struct {
      hersh_state from, to;
      const char *reason;
    } fault;
  } u;
} hersh_log_entry;

/*
** Calls fn for the newest `limit` entries (0 = all), oldest first, while holding the
** log's lock (any thread): copy what you keep. fn returns false to stop early.
*/
int hersh_watcher_logs(hersh_watcher *w, hersh_log_kind kind, size_t limit,
                       bool (*fn)(const hersh_log_entry *e, void *ud), void *ud);
size_t hersh_watcher_log_count(hersh_watcher *w, hersh_log_kind kind); /* any thread */
/* A copy of an entry that outlives the callback; release it with hersh_log_entry_free. */
int hersh_log_entry_copy(hersh_log_kind kind, const hersh_log_entry *src, hersh_log_entry *dst);
void hersh_log_entry_free(hersh_log_kind kind, hersh_log_entry *e);

/* ---- the trace: deterministic replay (docs/replay.md) ------------------------------------ */

/*
** The watcher's trace, one JSON line at a time to fn (a header, then its runs oldest
** first; `line` ends in "\n" and is borrowed for the call). fn returns false to stop
** early; it runs under the trace's lock, so it must not call into the watcher. Any
** thread. HERSH_E_NOMEM if a line could not be encoded.
*/
int hersh_watcher_trace(hersh_watcher *w, bool (*fn)(const char *line, size_t len, void *ud), void *ud);
/* The trace written to a file (created or truncated, mode 0600). Any thread. */
int hersh_watcher_trace_write(hersh_watcher *w, const char *path);

/* ---- reports: failures as they happen ------------------------------------------------- */

/*
** The log callback. The ring logs keep what happened for whoever asks; a report tells
** it the moment it happens, so a failure is never silent: `hersh run` prints each one
** to stderr (docs/lua-api.md, "What hersh run prints").
*/
typedef enum hersh_report_kind {
  HERSH_REPORT_RUN_FAILED = 0, /* a run failed; the recovery policy decided what next */
  HERSH_REPORT_CLEANUP_FAILED, /* the cleanup raised, failed or passed its deadline     */
  HERSH_REPORT_WATCH_ERROR,    /* a poll, flow or dependent update failed               */
  HERSH_REPORT_CRASHED         /* the watcher ended Crashed                             */
} hersh_report_kind;

typedef enum hersh_report_level {
  HERSH_REPORT_WARNING = 0, /* the watcher goes on */
  HERSH_REPORT_ERROR        /* the watcher ended (CRASHED)  */
} hersh_report_level;

/* Everything is borrowed for the call only: copy what you keep. */
typedef struct hersh_report {
  hersh_report_kind kind;
  hersh_report_level level;
  hersh_watcher *watcher;
  const char *watcher_id;
  double time;       /* seconds since the epoch */
  const char *error; /* the error; a Lua error carries its traceback (several lines) */
  /* RUN_FAILED */
  const hersh_trigger *trigger;
  const hersh_msg *message; /* the message of a user run, else NULL */
  /* RUN_FAILED: consecutive failures, this one included (unchanged when stopping).
  ** CRASHED: the failures that made the policy give up, 0 for an engine limit. */
  int failures;
  bool decided;            /* RUN_FAILED: false when a pending stop wins (no decision) */
  hersh_decision decision; /* RUN_FAILED, when decided */
  double retry_at;         /* RUN_FAILED: epoch s of the retry or recover, 0 if none */
  /* WATCH_ERROR */
  const char *watch;
  const char *phase; /* "poll", "update", "flow" */
  /* The report as text, never NULL: one line, then the error's further lines (its
  ** traceback) each indented by two spaces; no trailing newline. E.g.
  **   watcher "counter" run failed (message "boom"): main.lua:7: boom; failure 2, retry in 30 s
  **     stack traceback: ...                                                             */
  const char *line;
} hersh_report;

typedef void (*hersh_report_fn)(const hersh_report *r, void *ud);

/*
** Sets the loop's log callback (NULL removes it): fn is called on the loop thread for
** every report of every watcher on the loop, after the engine has acted (the retry is
** scheduled, the watcher is terminal), and never for a freed watcher. fn may stop or
** kill watchers, not free them or the loop. Loop thread. `ud` stays the caller's.
*/
int hersh_loop_on_report(hersh_loop *loop, hersh_report_fn fn, void *ud);

#ifdef __cplusplus
}
#endif

#endif
