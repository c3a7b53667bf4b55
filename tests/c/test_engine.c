/*
** The Watcher engine through the public C API: the behaviour of ENGINE.md, with C
** reducers (and one Lua reducer beside a C one, to show they get the same semantics).
** Every wait is bounded; no test asserts how long something took.
*/
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "check.h"
#include "hersh.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */

/* ---- helpers ------------------------------------------------------------------- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* The number an INT or NUM value holds; NAN for anything else. */
static double num_of(const hersh_value *v) {
  if (v && v->type == HERSH_T_INT) return (double)v->as.i;
  if (v && v->type == HERSH_T_NUM) return v->as.n;
  return NAN;
}

static hersh_config test_config(const char *id) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  return cfg;
}

/* A loop, one watcher on it, and how many times its cleanup ran. */
typedef struct fx {
  hersh_loop *loop;
  hersh_watcher *w;
  int cleanups;
} fx;

static void count_cleanup(hersh_ctx *ctx, void *ud) {
  (void)ctx;
  ((fx *)ud)->cleanups++;
}

static bool fx_open(fx *f, const hersh_config *cfg, hersh_reducer_fn fn, void *ud) {
  memset(f, 0, sizeof *f);
  f->loop = hersh_loop_new();
  if (!f->loop) return printf("hersh_loop_new: %s\n", hersh_errmsg()), false;
  if (hersh_watcher_new(f->loop, cfg, &f->w) != HERSH_OK)
    return printf("hersh_watcher_new: %s\n", hersh_errmsg()), false;
  if (fn && hersh_watcher_manage(f->w, fn, ud) != HERSH_OK)
    return printf("hersh_watcher_manage: %s\n", hersh_errmsg()), false;
  if (hersh_watcher_on_cleanup(f->w, count_cleanup, f) != HERSH_OK)
    return printf("hersh_watcher_on_cleanup: %s\n", hersh_errmsg()), false;
  return true;
}

/* fx_open, then the watcher started. */
static bool fx_start(fx *f, const hersh_config *cfg, hersh_reducer_fn fn, void *ud) {
  if (!fx_open(f, cfg, fn, ud)) return false;
  if (hersh_watcher_start(f->w) != HERSH_OK) return printf("hersh_watcher_start: %s\n", hersh_errmsg()), false;
  return true;
}

static void fx_close(fx *f) {
  if (f->w) hersh_watcher_free(f->w);
  if (f->loop) hersh_loop_free(f->loop);
  f->w = NULL;
  f->loop = NULL;
}

typedef struct int_goal {
  const int *v;
  int n;
} int_goal;
static bool pred_int(void *ud) {
  const int_goal *g = ud;
  return *g->v >= g->n;
}
static bool wait_int(fx *f, const int *v, int n) {
  int_goal g = {v, n};
  return hersh_loop_run_until(f->loop, pred_int, &g, WAIT_S) == 1;
}

typedef struct state_goal {
  hersh_watcher *w;
  hersh_state s;
} state_goal;
static bool pred_state(void *ud) {
  const state_goal *g = ud;
  return hersh_watcher_state(g->w) == g->s;
}
static bool wait_state(fx *f, hersh_state s) {
  state_goal g = {f->w, s};
  return hersh_loop_run_until(f->loop, pred_state, &g, WAIT_S) == 1;
}

static bool pred_terminal(void *ud) { return hersh_state_terminal(hersh_watcher_state(ud)); }
static bool wait_terminal(fx *f) {
  return hersh_loop_run_until(f->loop, pred_terminal, f->w, WAIT_S) == 1;
}

typedef struct failures_goal {
  hersh_watcher *w;
  int n;
} failures_goal;
static bool pred_failures(void *ud) {
  const failures_goal *g = ud;
  return hersh_watcher_failures(g->w) >= g->n || hersh_state_terminal(hersh_watcher_state(g->w));
}
static bool wait_failures(fx *f, int n) {
  failures_goal g = {f->w, n};
  return hersh_loop_run_until(f->loop, pred_failures, &g, WAIT_S) == 1;
}

/* ---- log snapshots --------------------------------------------------------------- */

#define ROW_TEXT 200
#define MAX_ROWS 256

/*
** One log entry, copied. By log: reduce a/b = prev/next, t = signal, reason, detail;
** effect t0 = text; result t = effect, error, ok; watch_error t = name, phase, error;
** context t = key, op, old, new; fault a/b = from/to, t0 = reason. NULL texts are "".
*/
typedef struct row {
  uint64_t id;
  hersh_state a, b;
  bool ok;
  char t[4][ROW_TEXT];
} row;

typedef struct rows {
  hersh_log_kind kind;
  int n;
  row v[MAX_ROWS];
} rows;

static void put(char *dst, const char *s) { snprintf(dst, ROW_TEXT, "%s", s ? s : ""); }

static bool copy_row(const hersh_log_entry *e, void *ud) {
  rows *r = ud;
  if (r->n == MAX_ROWS) return false;
  row *o = &r->v[r->n++];
  o->id = e->id;
  switch (r->kind) {
  case HERSH_LOG_REDUCE:
    o->a = e->u.reduce.prev;
    o->b = e->u.reduce.next;
    put(o->t[0], e->u.reduce.signal);
    put(o->t[1], e->u.reduce.reason);
    put(o->t[2], e->u.reduce.detail);
    break;
  case HERSH_LOG_EFFECT:
    put(o->t[0], e->u.effect.text);
    break;
  case HERSH_LOG_RESULT:
    put(o->t[0], e->u.result.effect);
    put(o->t[1], e->u.result.error);
    o->ok = e->u.result.ok;
    break;
  case HERSH_LOG_WATCH_ERROR:
    put(o->t[0], e->u.watch_error.name);
    put(o->t[1], e->u.watch_error.phase);
    put(o->t[2], e->u.watch_error.error);
    break;
  case HERSH_LOG_CONTEXT:
    put(o->t[0], e->u.context.key);
    put(o->t[1], e->u.context.op);
    put(o->t[2], e->u.context.old_json);
    put(o->t[3], e->u.context.new_json);
    break;
  case HERSH_LOG_FAULT:
    o->a = e->u.fault.from;
    o->b = e->u.fault.to;
    put(o->t[0], e->u.fault.reason);
    break;
  default:
    break;
  }
  return true;
}

/* The newest `limit` entries (0 = all, up to MAX_ROWS), oldest first. Caller frees. */
static rows *read_log(hersh_watcher *w, hersh_log_kind kind, size_t limit) {
  rows *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->kind = kind;
  CHECK_EQ_INT(hersh_watcher_logs(w, kind, limit, copy_row, r), HERSH_OK);
  return r;
}

static bool log_mentions(hersh_watcher *w, hersh_log_kind kind, const char *needle) {
  rows *r = read_log(w, kind, 0);
  bool found = false;
  for (int k = 0; k < r->n && !found; k++)
    for (int j = 0; j < 4 && !found; j++) found = strstr(r->v[k].t[j], needle) != NULL;
  free(r);
  return found;
}

/* The newest result is of a failed run, with an error that holds `error` (any, when NULL).
** Prints what it is otherwise. */
static bool last_run_failed(hersh_watcher *w, const char *error) {
  rows *r = read_log(w, HERSH_LOG_RESULT, 1);
  bool ok = r->n == 1 && streq(r->v[0].t[0], "run") && !r->v[0].ok && r->v[0].t[1][0] != '\0' &&
            (!error || strstr(r->v[0].t[1], error));
  if (!ok) printf("  newest result: %s \"%s\" (wanted a failed run with \"%s\")\n", r->n ? r->v[0].t[0] : "none",
                  r->n ? r->v[0].t[1] : "", error ? error : "");
  free(r);
  return ok;
}

/* The watch error log holds exactly one entry: of watch, at stage, its error holding text.
** Prints what it holds otherwise. */
static bool one_watch_error(hersh_watcher *w, const char *watch, const char *stage, const char *text) {
  rows *r = read_log(w, HERSH_LOG_WATCH_ERROR, 0);
  bool ok = r->n == 1 && streq(r->v[0].t[0], watch) && streq(r->v[0].t[1], stage) && strstr(r->v[0].t[2], text);
  if (!ok)
    printf("watch errors: %d, first: %s %s %s\n", r->n, r->n ? r->v[0].t[0] : "-", r->n ? r->v[0].t[1] : "-",
           r->n ? r->v[0].t[2] : "-");
  free(r);
  return ok;
}


/* ---- small reducers and callbacks used by several tests --------------------------- */

typedef struct counter {
  int runs;
} counter;

static int count_runs(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ctx;
  (void)msg;
  ((counter *)ud)->runs++;
  return HERSH_OK;
}

static int always_fail(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  ((counter *)ud)->runs++;
  return hersh_fail(ctx, "always fails");
}

static hersh_decision recover_fast(int n, const char *err, const hersh_recovery *p, void *ud) {
  (void)n, (void)err, (void)p, (void)ud;
  return (hersh_decision){HERSH_ACT_RECOVER, 0.05};
}

static hersh_decision recover_slow(int n, const char *err, const hersh_recovery *p, void *ud) {
  (void)n, (void)err, (void)p, (void)ud;
  return (hersh_decision){HERSH_ACT_RECOVER, 30.0};
}

static int poll_skip(hersh_poll *p, void *ud) {
  if (ud) (*(int *)ud)++;
  hersh_poll_skip(p);
  return HERSH_OK;
}

/* ---- names, defaults, the policy table ------------------------------------------ */

TEST(names_and_defaults) {
  static const struct {
    int err;
    const char *code;
  } codes[] = {{HERSH_E_INVAL, "EINVAL"},     {HERSH_E_NOMEM, "ENOMEM"},
               {HERSH_E_QUEUE_FULL, "EQUEUEFULL"}, {HERSH_E_STOPPED, "ESTOPPED"},
               {HERSH_E_STATE, "ESTATE"},     {HERSH_E_TIMEOUT, "ETIMEOUT"},
               {HERSH_E_RUNTIME, "ERUNTIME"}, {HERSH_E_LIMIT, "ELIMIT"},
               {HERSH_E_NOTFOUND, "ENOTFOUND"}, {HERSH_E_SYS, "ESYS"},
               {HERSH_E_LUA, "ELUA"}};
  for (size_t k = 0; k < sizeof codes / sizeof *codes; k++)
    CHECK_EQ_STR(hersh_errcode(codes[k].err), codes[k].code);

  static const char *states[] = {"NotRun",      "InitRun", "Ready",  "Running",
                                 "WaitRecover", "Stopped", "Killed", "Crashed"};
  for (int s = HERSH_NOT_RUN; s <= HERSH_CRASHED; s++) {
    CHECK_EQ_STR(hersh_state_name((hersh_state)s), states[s]);
    CHECK_EQ_INT(hersh_state_terminal((hersh_state)s), s >= HERSH_STOPPED);
  }

  static const char *kinds[] = {"reduce", "effect", "effect_result", "watch_error", "context", "state_fault"};
  for (int k = 0; k < HERSH_LOG_KINDS; k++)
    CHECK_EQ_STR(hersh_log_kind_name((hersh_log_kind)k), kinds[k]);

  hersh_config cfg;
  memset(&cfg, 0xab, sizeof cfg);
  hersh_config_init(&cfg);
  CHECK(cfg.id == NULL);
  CHECK(cfg.timeout == 60.0);
  CHECK(cfg.cleanup_timeout == 5.0);
  CHECK_EQ_INT(cfg.signal_capacity, 50000);
  CHECK_EQ_INT(cfg.max_log_entries, 50000);
  CHECK_EQ_INT(cfg.max_watches, 1000);
  CHECK_EQ_INT(cfg.max_memo, 1000);
  CHECK(cfg.decide == NULL);
  CHECK(cfg.env == NULL);
  CHECK_EQ_INT(cfg.recovery.min_failures, 3);
  CHECK_EQ_INT(cfg.recovery.max_failures, 6);

  hersh_errbuf e;
  CHECK_EQ_INT(hersh_errorf(&e, "bad %s %d", "thing", 3), HERSH_E_RUNTIME);
  CHECK_EQ_STR(e.msg, "bad thing 3");
}

TEST(recovery_decide_table) {
  hersh_recovery p;
  hersh_recovery_defaults(&p);
  CHECK_EQ_INT(p.min_failures, 3);
  CHECK_EQ_INT(p.max_failures, 6);
  CHECK(p.base_delay == 5.0);
  CHECK(p.max_delay == 300.0);
  CHECK_EQ_INT(p.n_light_delays, 3);
  CHECK(p.light_delays[0] == 15.0 && p.light_delays[1] == 30.0 && p.light_delays[2] == 60.0);

  static const struct {
    int n;
    hersh_action action;
    double delay;
  } want[] = {{1, HERSH_ACT_RETRY, 15},   {2, HERSH_ACT_RETRY, 30},   {3, HERSH_ACT_RECOVER, 5},
              {4, HERSH_ACT_RECOVER, 10}, {5, HERSH_ACT_RECOVER, 20}, {6, HERSH_ACT_CRASH, -1},
              {7, HERSH_ACT_CRASH, -1}};
  for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
    hersh_decision d = hersh_recovery_decide(want[k].n, &p);
    CHECK_EQ_INT(d.action, want[k].action);
    if (want[k].delay >= 0 && fabs(d.delay - want[k].delay) > 1e-9)
      printf("  n=%d: delay %g, want %g\n", want[k].n, d.delay, want[k].delay);
    if (want[k].delay >= 0) CHECK(fabs(d.delay - want[k].delay) < 1e-9);
  }

  /* The last light delay repeats; the backoff is capped by max_delay. */
  hersh_recovery q = p;
  q.min_failures = 5;
  q.max_failures = 100;
  q.light_delays[0] = 1;
  q.light_delays[1] = 2;
  q.n_light_delays = 2;
  q.base_delay = 4;
  q.max_delay = 50;
  hersh_decision d = hersh_recovery_decide(4, &q);
  CHECK_EQ_INT(d.action, HERSH_ACT_RETRY);
  CHECK(fabs(d.delay - 2) < 1e-9);
  d = hersh_recovery_decide(6, &q); /* 4 * 2^1 */
  CHECK_EQ_INT(d.action, HERSH_ACT_RECOVER);
  CHECK(fabs(d.delay - 8) < 1e-9);
  d = hersh_recovery_decide(20, &q); /* 4 * 2^15, capped */
  CHECK_EQ_INT(d.action, HERSH_ACT_RECOVER);
  CHECK(fabs(d.delay - 50) < 1e-9);
}

/* ---- start and the init run ------------------------------------------------------ */

typedef struct init_rec {
  int runs;
  bool msg_null, ctx_msg_null, watcher, user, same_watcher, cancelled;
  size_t n_vars;
  char reason[32], env_foo[32], env_empty[32];
  bool env_missing_null;
  hersh_state state_in_run;
  hersh_watcher *w;
} init_rec;

static int init_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  init_rec *r = ud;
  if (r->runs++ > 0) return HERSH_OK;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  r->msg_null = msg == NULL;
  r->ctx_msg_null = hersh_ctx_message(ctx) == NULL;
  if (t) {
    r->watcher = t->watcher;
    r->user = t->user;
    r->n_vars = t->n_vars;
    put(r->reason, t->reason);
  }
  r->same_watcher = hersh_ctx_watcher(ctx) == r->w;
  r->state_in_run = hersh_watcher_state(r->w);
  r->cancelled = hersh_ctx_cancelled(ctx);
  const char *foo = hersh_ctx_env(ctx, "FOO"), *empty = hersh_ctx_env(ctx, "EMPTY");
  snprintf(r->env_foo, sizeof r->env_foo, "%s", foo ? foo : "(null)");
  snprintf(r->env_empty, sizeof r->env_empty, "%s", empty ? empty : "(null)");
  r->env_missing_null = hersh_ctx_env(ctx, "NOPE") == NULL;
  return HERSH_OK;
}

TEST(start_returns_at_once_then_init_run) {
  char env_buf[] = "FOO=bar";
  const char *env[] = {env_buf, "EMPTY=", NULL};
  hersh_config cfg = test_config("init-test");
  cfg.env = env;
  init_rec r = {0};
  fx f;
  REQUIRE(fx_open(&f, &cfg, init_reducer, &r));
  env_buf[0] = 'X'; /* the environment was copied */
  r.w = f.w;
  CHECK_EQ_STR(hersh_watcher_id(f.w), "init-test");
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_NOT_RUN);
  CHECK(hersh_watcher_config(f.w) != NULL && hersh_watcher_config(f.w)->timeout == 60.0);
  int tag = 0;
  hersh_watcher_set_userdata(f.w, &tag);
  CHECK(hersh_watcher_userdata(f.w) == &tag);

  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  CHECK_EQ_INT(r.runs, 0); /* the first run comes from the loop */
  CHECK(!hersh_state_terminal(hersh_watcher_state(f.w)));

  CHECK(wait_state(&f, HERSH_READY) && r.runs == 1);
  CHECK_EQ_INT(r.runs, 1);
  CHECK(r.msg_null);
  CHECK(r.ctx_msg_null);
  CHECK(r.watcher);
  CHECK(!r.user);
  CHECK_EQ_INT(r.n_vars, 0);
  CHECK_EQ_STR(r.reason, "init");
  CHECK(r.same_watcher);
  CHECK_EQ_STR(hersh_state_name(r.state_in_run), "InitRun");
  CHECK(!r.cancelled);
  CHECK_EQ_STR(r.env_foo, "bar");
  CHECK_EQ_STR(r.env_empty, "");
  CHECK(r.env_missing_null);
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 0);
  CHECK(hersh_watcher_next_retry(f.w) == 0);

  rows *red = read_log(f.w, HERSH_LOG_REDUCE, 0);
  CHECK(red->n >= 1);
  if (red->n >= 1) {
    CHECK_EQ_STR(red->v[0].t[0], "watcher");
    CHECK_EQ_STR(red->v[0].t[1], "init");
  }
  free(red);
  rows *res = read_log(f.w, HERSH_LOG_RESULT, 0);
  CHECK_EQ_INT(res->n, 1);
  if (res->n >= 1) {
    CHECK_EQ_STR(res->v[0].t[0], "run");
    CHECK(res->v[0].ok);
  }
  free(res);

  /* A generated id when none is given. */
  hersh_config anon = test_config(NULL);
  hersh_watcher *w2 = NULL;
  CHECK_EQ_INT(hersh_watcher_new(f.loop, &anon, &w2), HERSH_OK);
  if (w2) {
    CHECK(hersh_watcher_id(w2) != NULL && hersh_watcher_id(w2)[0] != '\0');
    CHECK(!streq(hersh_watcher_id(w2), "init-test"));
    hersh_watcher_free(w2);
  }

  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- one run per message, FIFO, from another thread -------------------------------- */

enum { BURST = 1000 };

typedef struct burst {
  hersh_watcher *w;
  atomic_int in_run, sent, send_errors;
  int user_runs, order_errors, trigger_errors;
  size_t pending_user;
} burst;

static void *burst_sender(void *ud) {
  burst *b = ud;
  double give_up = now_s() + WAIT_S;
  while (!atomic_load(&b->in_run) && now_s() < give_up) sleep_ms(1);
  for (int k = 0; k < BURST; k++) {
    char m[16];
    int n = snprintf(m, sizeof m, "%d", k);
    if (hersh_watcher_send(b->w, m, (size_t)n) != HERSH_OK) atomic_fetch_add(&b->send_errors, 1);
  }
  atomic_store(&b->sent, 1);
  return NULL;
}

static int burst_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  burst *b = ud;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  if (!msg) { /* the init run: hold the loop while the other thread sends */
    atomic_store(&b->in_run, 1);
    double give_up = now_s() + WAIT_S;
    while (!atomic_load(&b->sent) && now_s() < give_up) sleep_ms(1);
    b->pending_user = hersh_watcher_pending(b->w).user;
    return HERSH_OK;
  }
  char want[16];
  snprintf(want, sizeof want, "%d", b->user_runs);
  if (!streq(msg->content, want) || msg->len != strlen(want)) {
    if (b->order_errors++ == 0) printf("  run %d got message \"%s\"\n", b->user_runs, msg->content);
  }
  const hersh_msg *m = hersh_ctx_message(ctx);
  if (!t || !t->user || t->watcher || t->n_vars != 0 || !streq(t->reason, "message") || !m ||
      !streq(m->content, msg->content) || msg->received_at <= 0)
    b->trigger_errors++;
  b->user_runs++;
  return HERSH_OK;
}

TEST(burst_from_thread_one_run_per_message_fifo) {
  burst b = {0};
  hersh_config cfg = test_config("burst");
  fx f;
  REQUIRE(fx_open(&f, &cfg, burst_reducer, &b));
  b.w = f.w;
  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, burst_sender, &b) == 0);
  int_goal g = {&b.user_runs, BURST};
  CHECK_EQ_INT(hersh_loop_run_until(f.loop, pred_int, &g, 2 * WAIT_S), 1);
  pthread_join(th, NULL);
  CHECK_EQ_INT(atomic_load(&b.send_errors), 0);
  CHECK_EQ_INT(b.pending_user, BURST); /* all waited in the queue during the run */
  CHECK_EQ_INT(b.user_runs, BURST);
  CHECK_EQ_INT(b.order_errors, 0);
  CHECK_EQ_INT(b.trigger_errors, 0);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

/* ---- priority ------------------------------------------------------------------------ */

typedef struct prio {
  int runs, stop_rc;
  char order[8][32];
  hersh_flow *flow;
  bool stop_inside;
} prio;

static int prio_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  prio *p = ud;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_flow(ctx, "f", NULL, &p->flow, &out);
  if (rc != HERSH_OK) return rc;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  if (p->runs < 8) {
    char *o = p->order[p->runs];
    if (t->watcher) snprintf(o, 32, "watcher:%s", t->reason);
    else if (t->user) snprintf(o, 32, "user:%s", msg ? msg->content : "?");
    else snprintf(o, 32, "var:%s/%zu", t->n_vars ? t->vars[0] : "", t->n_vars);
  }
  if (p->runs++ > 0) return HERSH_OK;
  /* The first run queues a var signal and two messages while it holds the loop. */
  hersh_value v = hersh_int(1);
  hersh_flow_push(p->flow, &v, NULL);
  hersh_watcher *w = hersh_ctx_watcher(ctx);
  hersh_watcher_send(w, "m1", 2);
  hersh_watcher_send(w, "m2", 2);
  if (p->stop_inside) {
    p->stop_rc = hersh_watcher_stop(w); /* queued: a watcher signal */
    return HERSH_OK;
  }
  return hersh_fail(ctx, "first run fails"); /* WaitRecover, then a recover signal */
}

TEST(priority_watcher_then_user_then_var) {
  prio p = {0};
  hersh_config cfg = test_config("prio");
  cfg.decide = recover_fast;
  fx f;
  REQUIRE(fx_start(&f, &cfg, prio_reducer, &p));
  CHECK(wait_int(&f, &p.runs, 5));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(p.runs, 5);
  static const char *want[] = {"watcher:init", "watcher:recover", "user:m1", "user:m2", "var:f/1"};
  for (int k = 0; k < 5; k++) CHECK_EQ_STR(p.order[k], want[k]);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

TEST(stop_queued_in_run_goes_before_waiting_messages_and_vars) {
  prio p = {0};
  p.stop_inside = true;
  hersh_config cfg = test_config("prio-stop");
  fx f;
  REQUIRE(fx_start(&f, &cfg, prio_reducer, &p));
  CHECK(wait_terminal(&f));
  CHECK_EQ_INT(p.stop_rc, HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(p.runs, 1);
  CHECK_EQ_INT(f.cleanups, 1);
  hersh_loop_run_for(f.loop, 0.05);
  CHECK_EQ_INT(p.runs, 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

/* ---- batching: dependent updates all applied, independent ones coalesce ---------------- */

enum { DEP_UPDATES = 600 };

typedef struct dep {
  int polls, order_errors, var_runs, watcher_runs;
  int64_t first_value;
  size_t first_n_vars;
  char first_var[16];
  bool first_triggered, first_updated;
} dep;

typedef struct dep_step {
  dep *d;
  int seq;
} dep_step;

static int dep_add(hersh_value *v, void *ud, hersh_errbuf *err) {
  dep_step *s = ud;
  if (v->type != HERSH_T_INT) return hersh_errorf(err, "not an int");
  if (v->as.i != s->seq - 1) s->d->order_errors++; /* each sees the previous result */
  v->as.i++;
  return HERSH_OK;
}

static int dep_poll(hersh_poll *p, void *ud) {
  dep *d = ud;
  if (d->polls >= DEP_UPDATES) {
    hersh_poll_skip(p);
    return HERSH_OK;
  }
  dep_step *s = malloc(sizeof *s);
  if (!s) abort();
  s->d = d;
  s->seq = ++d->polls;
  hersh_poll_update(p, dep_add, s, free);
  return HERSH_OK;
}

/*
** While the watcher backs off in WaitRecover, var signals wait: the polls pile up
** DEP_UPDATES dependent updates, then one successful recover run leads to one batch.
*/
static int dep_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  dep *d = ud;
  hersh_value init = hersh_int(0);
  hersh_watch_value out;
  int rc = hersh_ctx_watch_call(ctx, "c", 0.001, dep_poll, d, NULL, &init, &out);
  if (rc != HERSH_OK) return rc;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  if (t->watcher) {
    d->watcher_runs++;
    return d->polls < DEP_UPDATES ? hersh_fail(ctx, "holding the batch") : HERSH_OK;
  }
  if (t->n_vars > 0 && d->var_runs++ == 0) {
    d->first_value = out.value && out.value->type == HERSH_T_INT ? out.value->as.i : -1;
    d->first_n_vars = t->n_vars;
    put(d->first_var, t->vars[0]);
    d->first_triggered = out.triggered;
    d->first_updated = out.updated;
  }
  return HERSH_OK;
}

TEST(dependent_updates_batched_none_lost) {
  dep d = {0};
  hersh_config cfg = test_config("dep");
  cfg.decide = recover_fast;
  fx f;
  REQUIRE(fx_start(&f, &cfg, dep_reducer, &d));
  int_goal g = {&d.var_runs, 1};
  CHECK_EQ_INT(hersh_loop_run_until(f.loop, pred_int, &g, 3 * WAIT_S), 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(d.polls, DEP_UPDATES);
  CHECK(d.watcher_runs >= 2);
  CHECK_EQ_INT(d.var_runs, 1); /* one batch */
  CHECK_EQ_INT(d.first_value, DEP_UPDATES);
  CHECK_EQ_INT(d.order_errors, 0);
  CHECK_EQ_INT(d.first_n_vars, 1);
  CHECK_EQ_STR(d.first_var, "c");
  CHECK(d.first_triggered);
  CHECK(d.first_updated);
  fx_close(&f);
}

typedef struct flowt {
  hersh_flow *f, *g;
  atomic_int push_errors;
  int var_runs;
  double f_value, g_value;
  size_t n_vars, pending_var;
  char vars[2][16];
  bool f_triggered, f_updated, init_updated;
  char err[ROW_TEXT]; /* the watch's error in the second var run */
} flowt;

static void *flow_pusher(void *ud) {
  flowt *ft = ud;
  for (int k = 1; k <= BURST; k++) {
    hersh_value v = hersh_int(k);
    if (hersh_flow_push(ft->f, &v, NULL) != HERSH_OK) atomic_fetch_add(&ft->push_errors, 1);
    if (k % 100 == 0) {
      v = hersh_int(k / 100);
      if (hersh_flow_push(ft->g, &v, NULL) != HERSH_OK) atomic_fetch_add(&ft->push_errors, 1);
    }
  }
  return NULL;
}

static int flow_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  flowt *ft = ud;
  hersh_watch_value f, g;
  int rc = hersh_ctx_watch_flow(ctx, "f", NULL, &ft->f, &f);
  if (rc == HERSH_OK) rc = hersh_ctx_watch_flow(ctx, "g", NULL, &ft->g, &g);
  if (rc != HERSH_OK) return rc;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  if (t->watcher && streq(t->reason, "init")) {
    ft->init_updated = f.updated;
    pthread_t th; /* another thread pushes while this run holds the loop */
    if (pthread_create(&th, NULL, flow_pusher, ft) != 0) return hersh_fail(ctx, "pthread_create");
    pthread_join(th, NULL);
    return HERSH_OK;
  }
  if (t->n_vars > 0 && ft->var_runs++ == 0) {
    ft->f_value = num_of(f.value);
    ft->g_value = num_of(g.value);
    ft->n_vars = t->n_vars;
    for (size_t k = 0; k < t->n_vars && k < 2; k++) put(ft->vars[k], t->vars[k]);
    ft->f_triggered = f.triggered;
    ft->f_updated = f.updated;
    ft->pending_var = hersh_watcher_pending(hersh_ctx_watcher(ctx)).var;
  } else if (t->n_vars > 0) {
    put(ft->err, f.err);
  }
  return HERSH_OK;
}

TEST(independent_flow_updates_coalesce_to_newest) {
  flowt ft = {0};
  hersh_config cfg = test_config("flow");
  fx f;
  REQUIRE(fx_start(&f, &cfg, flow_reducer, &ft));
  CHECK(wait_int(&f, &ft.var_runs, 1));
  hersh_loop_run_for(f.loop, 0.2);
  CHECK_EQ_INT(atomic_load(&ft.push_errors), 0);
  CHECK(!ft.init_updated);
  CHECK_EQ_INT(ft.var_runs, 1); /* 1,010 pushes, one batched run */
  CHECK(ft.f_value == BURST);
  CHECK(ft.g_value == BURST / 100);
  CHECK_EQ_INT(ft.n_vars, 2); /* each variable once */
  CHECK((streq(ft.vars[0], "f") && streq(ft.vars[1], "g")) ||
        (streq(ft.vars[0], "g") && streq(ft.vars[1], "f")));
  CHECK(ft.f_triggered);
  CHECK(ft.f_updated);
  CHECK_EQ_INT(ft.pending_var, 0);

  /* An error item: stored as the watch's error, logged with phase "flow". */
  REQUIRE(ft.f != NULL);
  hersh_value nil = hersh_nil();
  CHECK_EQ_INT(hersh_flow_push(ft.f, &nil, "flow broke"), HERSH_OK);
  CHECK(wait_int(&f, &ft.var_runs, 2));
  CHECK(strstr(ft.err, "flow broke") != NULL);
  CHECK(one_watch_error(f.w, "f", "flow", "flow broke"));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- stop and kill from every state ------------------------------------------------- */

TEST(stop_from_not_run) {
  counter c = {0};
  hersh_config cfg = test_config("stop-notrun");
  fx f;
  REQUIRE(fx_open(&f, &cfg, count_runs, &c));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
  CHECK(hersh_watcher_start(f.w) != HERSH_OK);
  hersh_loop_run_for(f.loop, 0.05);
  CHECK_EQ_INT(c.runs, 0);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

/* A second manage before start replaces the first; a watcher without a cleanup logs
** none when it stops. */
TEST(manage_replaces_before_start_and_no_cleanup_no_entry) {
  counter first = {0}, second = {0};
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop != NULL);
  hersh_config cfg = test_config("manage-twice");
  hersh_watcher *w = NULL;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_manage(w, count_runs, &first), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_manage(w, count_runs, &second), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_start(w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_manage(w, count_runs, &first), HERSH_E_STATE);
  CHECK_EQ_INT(hersh_watcher_stop(w), HERSH_OK);
  CHECK_EQ_INT(first.runs, 0);
  CHECK_EQ_INT(second.runs, 1);
  CHECK(!log_mentions(w, HERSH_LOG_RESULT, "cleanup"));
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

typedef struct stop_then {
  hersh_watcher *w;
  int rc_stop;
} stop_then;

/* Asks for a stop, then returns a kill: the stop asked first wins. */
static int stop_then_kill(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  stop_then *s = ud;
  if (!msg) return HERSH_OK;
  s->rc_stop = hersh_watcher_stop(s->w);
  return hersh_kill(ctx, "changed my mind");
}

TEST(stop_asked_in_run_wins_over_the_runs_kill) {
  stop_then s = {0};
  hersh_config cfg = test_config("stop-then-kill");
  fx f;
  REQUIRE(fx_open(&f, &cfg, stop_then_kill, &s));
  s.w = f.w;
  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "go", 2), HERSH_OK);
  CHECK_EQ_INT(hersh_loop_run(f.loop), HERSH_OK);
  CHECK_EQ_INT(s.rc_stop, HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

typedef struct ready_rec {
  int runs, polls;
} ready_rec;

static int ready_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  ready_rec *r = ud;
  r->runs++;
  hersh_watch_value out;
  return hersh_ctx_watch_call(ctx, "poller", 0.01, poll_skip, &r->polls, NULL, NULL, &out);
}

TEST(stop_from_ready_then_terminal_refuses) {
  ready_rec r = {0};
  hersh_config cfg = test_config("stop-ready");
  fx f;
  REQUIRE(fx_start(&f, &cfg, ready_reducer, &r));
  CHECK(wait_int(&f, &r.polls, 2)); /* Ready, and the watch polls */
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_READY);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_kill(f.w, "late"), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
  int polls = r.polls;
  hersh_loop_run_for(f.loop, 0.1);
  CHECK_EQ_INT(r.polls, polls); /* no watch keeps polling */
  CHECK_EQ_INT(r.runs, 1);
  CHECK_EQ_INT(f.cleanups, 1);

  rows *red = read_log(f.w, HERSH_LOG_REDUCE, 0);
  bool saw_stop = false;
  for (int k = 0; k < red->n; k++)
    if (streq(red->v[k].t[1], "stop") && red->v[k].b == HERSH_STOPPED) saw_stop = true;
  CHECK(saw_stop);
  free(red);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

typedef struct running_stop {
  hersh_watcher *w;
  atomic_int in_run, stop_called, stop_returned, stop_rc, state_after;
  int runs;
} running_stop;

static void *stop_thread(void *ud) {
  running_stop *s = ud;
  double give_up = now_s() + WAIT_S;
  while (!atomic_load(&s->in_run) && now_s() < give_up) sleep_ms(1);
  atomic_store(&s->stop_called, 1);
  atomic_store(&s->stop_rc, hersh_watcher_stop(s->w)); /* returns once terminal */
  atomic_store(&s->state_after, (int)hersh_watcher_state(s->w));
  atomic_store(&s->stop_returned, 1);
  return NULL;
}

static int running_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ctx;
  (void)msg;
  running_stop *s = ud;
  s->runs++;
  atomic_store(&s->in_run, 1);
  /* Stay in the run until the other thread's stop is (very likely) queued. */
  double give_up = now_s() + 2.0;
  while (now_s() < give_up) {
    if (atomic_load(&s->stop_called) && hersh_watcher_pending(s->w).watcher > 0) break;
    sleep_ms(1);
  }
  sleep_ms(20);
  return HERSH_OK;
}

TEST(stop_from_running_called_from_another_thread) {
  running_stop s = {0};
  hersh_config cfg = test_config("stop-running");
  fx f;
  REQUIRE(fx_open(&f, &cfg, running_reducer, &s));
  s.w = f.w;
  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, stop_thread, &s) == 0);
  CHECK(wait_terminal(&f));
  /* The loop wakes for its own events only: drive it in slices until stop returns. */
  double give_up = now_s() + WAIT_S;
  while (!atomic_load(&s.stop_returned) && now_s() < give_up) hersh_loop_run_for(f.loop, 0.01);
  CHECK(atomic_load(&s.stop_returned));
  pthread_join(th, NULL);
  CHECK_EQ_INT(atomic_load(&s.stop_rc), HERSH_OK);
  CHECK_EQ_INT(atomic_load(&s.state_after), HERSH_STOPPED);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(s.runs, 1);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

TEST(stop_from_wait_recover) {
  counter c = {0};
  hersh_config cfg = test_config("stop-waitrecover");
  cfg.decide = recover_slow;
  fx f;
  REQUIRE(fx_start(&f, &cfg, always_fail, &c));
  CHECK(wait_state(&f, HERSH_WAIT_RECOVER));
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 1);
  CHECK(hersh_watcher_next_retry(f.w) > 0);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED); /* not Crashed */
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK(hersh_watcher_next_retry(f.w) == 0); /* the pending recovery is cancelled */
  hersh_loop_run_for(f.loop, 0.05);
  CHECK_EQ_INT(c.runs, 1);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

TEST(kill_skips_cleanup) {
  counter c = {0};
  hersh_config cfg = test_config("kill");
  fx f;
  REQUIRE(fx_start(&f, &cfg, count_runs, &c));
  CHECK(wait_state(&f, HERSH_READY));
  CHECK_EQ_INT(hersh_watcher_kill(f.w, "test kill"), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_KILLED);
  CHECK_EQ_INT(hersh_watcher_kill(f.w, "again"), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
  CHECK_EQ_INT(f.cleanups, 0);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 0);
}

/* ---- what the reducer returns ----------------------------------------------------------- */

typedef enum ret_mode { RET_STOP, RET_KILL, RET_CRASH, RET_FAIL, RET_OTHER } ret_mode;

static int ret_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  switch (*(ret_mode *)ud) {
  case RET_STOP: return hersh_stop(ctx, "stop-reason");
  case RET_KILL: return hersh_kill(ctx, "kill-reason");
  case RET_CRASH: return hersh_crash(ctx, "crash-reason", "crash-cause");
  case RET_FAIL: return hersh_fail(ctx, "fail %d", 7);
  default: return 42;
  }
}

static bool pred_settled(void *ud) {
  hersh_watcher *w = ud;
  return hersh_state_terminal(hersh_watcher_state(w)) || hersh_watcher_failures(w) > 0;
}

/* Runs one watcher whose init run returns `mode`; checks the outcome. */
static void check_return(ret_mode mode, hersh_state want, int want_cleanups, const char *error) {
  hersh_config cfg = test_config("returns");
  fx f;
  REQUIRE(fx_start(&f, &cfg, ret_reducer, &mode));
  CHECK_EQ_INT(hersh_loop_run_until(f.loop, pred_settled, f.w, WAIT_S), 1);
  CHECK_EQ_STR(hersh_state_name(hersh_watcher_state(f.w)), hersh_state_name(want));
  CHECK_EQ_INT(f.cleanups, want_cleanups);
  if (want == HERSH_READY) { /* a failure: the policy retries later */
    CHECK_EQ_INT(hersh_watcher_failures(f.w), 1);
    CHECK(hersh_watcher_next_retry(f.w) > 0);
    CHECK(last_run_failed(f.w, error));
    CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
    CHECK_EQ_INT(f.cleanups, 1);
  } else {
    CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
    CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  }
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, want == HERSH_KILLED ? 0 : 1);
}

TEST(reducer_returns_stop) { check_return(RET_STOP, HERSH_STOPPED, 1, NULL); }
TEST(reducer_returns_kill) { check_return(RET_KILL, HERSH_KILLED, 0, NULL); }
TEST(reducer_returns_crash_is_a_failure) { check_return(RET_CRASH, HERSH_READY, 0, "crash-reason"); }
TEST(reducer_returns_fail) { check_return(RET_FAIL, HERSH_READY, 0, "fail 7"); }
TEST(reducer_returns_other_nonzero) { check_return(RET_OTHER, HERSH_READY, 0, NULL); }

/* ---- recovery ------------------------------------------------------------------------ */

typedef struct seq_rec {
  int runs;
  char reasons[8][16];
  int failures_before[8];
  hersh_state states[8];
} seq_rec;

static int seq_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  seq_rec *s = ud;
  if (s->runs < 8) {
    put(s->reasons[s->runs], hersh_ctx_trigger(ctx)->reason);
    s->failures_before[s->runs] = hersh_watcher_failures(hersh_ctx_watcher(ctx));
    s->states[s->runs] = hersh_watcher_state(hersh_ctx_watcher(ctx));
  }
  s->runs++;
  return hersh_fail(ctx, "failure %d", s->runs);
}

TEST(default_recovery_sequence_scaled_down) {
  seq_rec s = {0};
  hersh_config cfg = test_config("recovery");
  cfg.recovery.light_delays[0] = 0.1;
  cfg.recovery.light_delays[1] = 0.2;
  cfg.recovery.n_light_delays = 2;
  cfg.recovery.base_delay = 0.1;
  cfg.recovery.max_delay = 10;
  fx f;
  REQUIRE(fx_start(&f, &cfg, seq_reducer, &s));
  /* fail, retry, fail, retry, fail, WaitRecover x3 ... then Crashed at 6 */
  static const hersh_state after[] = {HERSH_READY, HERSH_READY, HERSH_WAIT_RECOVER,
                                      HERSH_WAIT_RECOVER, HERSH_WAIT_RECOVER};
  for (int n = 1; n <= 5; n++) {
    CHECK(wait_failures(&f, n));
    CHECK_EQ_INT(hersh_watcher_failures(f.w), n);
    CHECK_EQ_STR(hersh_state_name(hersh_watcher_state(f.w)), hersh_state_name(after[n - 1]));
    CHECK(hersh_watcher_next_retry(f.w) > 0);
    CHECK_EQ_INT(f.cleanups, 0);
  }
  CHECK(wait_terminal(&f));
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_CRASHED);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(s.runs, 6);
  static const char *reasons[] = {"init", "retry", "retry", "recover", "recover", "recover"};
  for (int k = 0; k < 6; k++) {
    CHECK_EQ_STR(s.reasons[k], reasons[k]);
    CHECK_EQ_INT(s.failures_before[k], k);
    CHECK_EQ_STR(hersh_state_name(s.states[k]), k == 0 ? "InitRun" : "Running");
  }
  hersh_loop_run_for(f.loop, 0.1);
  CHECK_EQ_INT(s.runs, 6);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  fx_close(&f);
  CHECK_EQ_INT(f.cleanups, 1);
}

typedef struct reset_rec {
  int runs;
  char reasons[8][16];
} reset_rec;

static int reset_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  reset_rec *r = ud;
  if (r->runs < 8) put(r->reasons[r->runs], hersh_ctx_trigger(ctx)->reason);
  r->runs++;
  if (msg && streq(msg->content, "ok")) return HERSH_OK;
  return hersh_fail(ctx, "not ok");
}

TEST(success_resets_failures_and_cancels_retry) {
  reset_rec r = {0};
  hersh_config cfg = test_config("reset");
  cfg.recovery.light_delays[0] = 1.0;
  cfg.recovery.n_light_delays = 1;
  fx f;
  REQUIRE(fx_start(&f, &cfg, reset_reducer, &r));
  CHECK(wait_failures(&f, 1));
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_READY);
  CHECK(hersh_watcher_next_retry(f.w) > 0);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "ok", 2), HERSH_OK);
  CHECK(wait_int(&f, &r.runs, 2));
  CHECK_EQ_STR(r.reasons[1], "message");
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 0);
  CHECK(hersh_watcher_next_retry(f.w) == 0);
  hersh_loop_run_for(f.loop, 1.5); /* past the cancelled retry */
  CHECK_EQ_INT(r.runs, 2);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

typedef struct decide_rec {
  int calls, n;
  char err[ROW_TEXT];
} decide_rec;

static hersh_decision decide_crash(int n, const char *err, const hersh_recovery *p, void *ud) {
  (void)p;
  decide_rec *d = ud;
  d->calls++;
  d->n = n;
  put(d->err, err);
  return (hersh_decision){HERSH_ACT_CRASH, 0};
}

static int custom_err_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  return hersh_fail(ctx, "custom err");
}

TEST(custom_decide_function) {
  decide_rec d = {0};
  hersh_config cfg = test_config("decide");
  cfg.decide = decide_crash;
  cfg.decide_ud = &d;
  fx f;
  REQUIRE(fx_start(&f, &cfg, custom_err_reducer, NULL));
  CHECK(wait_terminal(&f));
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_CRASHED);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(d.calls, 1);
  CHECK_EQ_INT(d.n, 1);
  CHECK(strstr(d.err, "custom err") != NULL);
  fx_close(&f);
}

/* ---- deadline ---------------------------------------------------------------------- */

typedef struct deadline_rec {
  int runs;
  bool cancelled_at_start, saw_cancel, quick_cancelled;
} deadline_rec;

static int deadline_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  deadline_rec *d = ud;
  d->runs++;
  if (msg) {
    d->quick_cancelled = hersh_ctx_cancelled(ctx);
    return HERSH_OK;
  }
  d->cancelled_at_start = hersh_ctx_cancelled(ctx);
  double give_up = now_s() + WAIT_S;
  while (now_s() < give_up && !(d->saw_cancel = hersh_ctx_cancelled(ctx))) sleep_ms(1);
  sleep_ms(10); /* return after the deadline */
  return HERSH_OK;
}

TEST(run_past_deadline_is_cancelled_and_times_out) {
  deadline_rec d = {0};
  hersh_config cfg = test_config("deadline");
  cfg.timeout = 0.2;
  fx f;
  REQUIRE(fx_start(&f, &cfg, deadline_reducer, &d));
  CHECK(wait_failures(&f, 1));
  CHECK(!d.cancelled_at_start);
  CHECK(d.saw_cancel);
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 1);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_READY);
  CHECK(last_run_failed(f.w, "timeout"));
  /* The next run has a fresh deadline. */
  CHECK_EQ_INT(hersh_watcher_send(f.w, "quick", 5), HERSH_OK);
  CHECK(wait_int(&f, &d.runs, 2));
  CHECK(!d.quick_cancelled);
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 0);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

/* ---- limits -------------------------------------------------------------------------- */

typedef struct limit_rec {
  int runs, rc1, rc2, rc3;
  char errmsg[ROW_TEXT];
} limit_rec;

static int limit_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  limit_rec *l = ud;
  l->runs++;
  hersh_watch_value out;
  l->rc1 = hersh_ctx_watch_call(ctx, "w1", 10, poll_skip, NULL, NULL, NULL, &out);
  l->rc2 = hersh_ctx_watch_call(ctx, "w2", 10, poll_skip, NULL, NULL, NULL, &out);
  l->rc3 = hersh_ctx_watch_call(ctx, "w3_over_limit", 10, poll_skip, NULL, NULL, NULL, &out);
  put(l->errmsg, hersh_errmsg());
  return l->rc3;
}

TEST(watch_limit_crashes_naming_the_watch) {
  limit_rec l = {0};
  hersh_config cfg = test_config("limit");
  cfg.max_watches = 2;
  fx f;
  REQUIRE(fx_start(&f, &cfg, limit_reducer, &l));
  CHECK(wait_terminal(&f));
  CHECK_EQ_INT(l.rc1, HERSH_OK);
  CHECK_EQ_INT(l.rc2, HERSH_OK);
  CHECK_EQ_INT(l.rc3, HERSH_E_LIMIT);
  CHECK(strstr(l.errmsg, "w3_over_limit") != NULL);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_CRASHED);
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(l.runs, 1);
  CHECK(log_mentions(f.w, HERSH_LOG_RESULT, "w3_over_limit") ||
        log_mentions(f.w, HERSH_LOG_FAULT, "w3_over_limit"));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "x", 1), HERSH_E_STOPPED);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_E_STOPPED);
  fx_close(&f);
}

typedef enum bad_use { BAD_INTERVAL, BAD_KIND_REUSE } bad_use;

typedef struct bad_rec {
  bad_use mode;
  int runs, rc;
} bad_rec;

static int bad_use_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  bad_rec *b = ud;
  hersh_watch_value out;
  b->runs++;
  if (b->mode == BAD_INTERVAL) {
    b->rc = hersh_ctx_watch_call(ctx, "zero", 0, poll_skip, NULL, NULL, NULL, &out);
  } else {
    hersh_flow *flow = NULL;
    if (hersh_ctx_watch_tick(ctx, "dup", 30, &out) != HERSH_OK) return hersh_fail(ctx, "tick");
    b->rc = hersh_ctx_watch_flow(ctx, "dup", NULL, &flow, &out);
  }
  return b->rc;
}

static void check_bad_use(bad_use mode) {
  bad_rec b = {mode, 0, 0};
  hersh_config cfg = test_config("bad-use");
  fx f;
  REQUIRE(fx_start(&f, &cfg, bad_use_reducer, &b));
  CHECK(wait_terminal(&f));
  CHECK(b.rc != HERSH_OK);
  CHECK_EQ_STR(hersh_state_name(hersh_watcher_state(f.w)), "Crashed");
  CHECK_EQ_INT(f.cleanups, 1);
  CHECK_EQ_INT(b.runs, 1);
  fx_close(&f);
}

TEST(invalid_watch_use_crashes) {
  check_bad_use(BAD_INTERVAL);   /* a non-positive interval */
  check_bad_use(BAD_KIND_REUSE); /* one name, two kinds */
}

/* ---- memo ------------------------------------------------------------------------- */

typedef struct memo_rec {
  int runs, computes, bad_computes;
  int rc_first, rc_second, rc_bad, rc_bad2, rc_again, rc_clear, rc_after_clear;
  double first, second, again, after_clear;
} memo_rec;

static int compute_counted(hersh_value *out, void *ud, hersh_errbuf *err) {
  (void)err;
  memo_rec *m = ud;
  m->computes++;
  *out = hersh_int(100 + m->computes);
  return HERSH_OK;
}

static int compute_bad(hersh_value *out, void *ud, hersh_errbuf *err) {
  (void)out;
  ((memo_rec *)ud)->bad_computes++;
  return hersh_errorf(err, "no value");
}

static int memo_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  memo_rec *m = ud;
  m->runs++;
  const hersh_value *v = NULL;
  if (!msg) {
    m->rc_first = hersh_ctx_memo(ctx, "m", compute_counted, m, &v);
    m->first = num_of(v);
    v = NULL;
    m->rc_second = hersh_ctx_memo(ctx, "m", compute_counted, m, &v);
    m->second = num_of(v);
    m->rc_bad = hersh_ctx_memo(ctx, "bad", compute_bad, m, &v);
    m->rc_bad2 = hersh_ctx_memo(ctx, "bad", compute_bad, m, &v);
  } else if (streq(msg->content, "again")) {
    m->rc_again = hersh_ctx_memo(ctx, "m", compute_counted, m, &v);
    m->again = num_of(v);
  } else if (streq(msg->content, "clear")) {
    m->rc_clear = hersh_ctx_clear_memo(ctx, "m");
    m->rc_after_clear = hersh_ctx_memo(ctx, "m", compute_counted, m, &v);
    m->after_clear = num_of(v);
  }
  return HERSH_OK;
}

TEST(memo_computed_once_clear_recomputes) {
  memo_rec m = {0};
  hersh_config cfg = test_config("memo");
  fx f;
  REQUIRE(fx_start(&f, &cfg, memo_reducer, &m));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "again", 5), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "clear", 5), HERSH_OK);
  CHECK(wait_int(&f, &m.runs, 3));
  hersh_loop_run_for(f.loop, 0.05);
  CHECK_EQ_INT(m.runs, 3); /* memo never triggers a run */
  CHECK_EQ_INT(m.rc_first, HERSH_OK);
  CHECK_EQ_INT(m.rc_second, HERSH_OK);
  CHECK(m.first == 101 && m.second == 101);
  CHECK_EQ_INT(m.rc_again, HERSH_OK);
  CHECK(m.again == 101);
  CHECK_EQ_INT(m.rc_clear, HERSH_OK);
  CHECK_EQ_INT(m.rc_after_clear, HERSH_OK);
  CHECK(m.after_clear == 102);
  CHECK_EQ_INT(m.computes, 2);
  CHECK_EQ_INT(m.rc_bad, HERSH_E_RUNTIME); /* an error caches nothing */
  CHECK_EQ_INT(m.rc_bad2, HERSH_E_RUNTIME);
  CHECK_EQ_INT(m.bad_computes, 2);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

typedef struct max_memo_rec {
  int runs, computes, rc_a, rc_b, rc_c, rc_a2, rc_clear, rc_c2;
} max_memo_rec;

static int compute_one(hersh_value *out, void *ud, hersh_errbuf *err) {
  (void)err;
  ((max_memo_rec *)ud)->computes++;
  *out = hersh_int(1);
  return HERSH_OK;
}

static int max_memo_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  max_memo_rec *m = ud;
  const hersh_value *v;
  m->runs++;
  m->rc_a = hersh_ctx_memo(ctx, "a", compute_one, m, &v);
  m->rc_b = hersh_ctx_memo(ctx, "b", compute_one, m, &v);
  m->rc_c = hersh_ctx_memo(ctx, "c", compute_one, m, &v);
  m->rc_a2 = hersh_ctx_memo(ctx, "a", compute_one, m, &v);
  m->rc_clear = hersh_ctx_clear_memo(ctx, "a");
  m->rc_c2 = hersh_ctx_memo(ctx, "c", compute_one, m, &v);
  return HERSH_OK;
}

TEST(max_memo_enforced) {
  max_memo_rec m = {0};
  hersh_config cfg = test_config("max-memo");
  cfg.max_memo = 2;
  fx f;
  REQUIRE(fx_start(&f, &cfg, max_memo_reducer, &m));
  CHECK(wait_int(&f, &m.runs, 1));
  CHECK_EQ_INT(m.rc_a, HERSH_OK);
  CHECK_EQ_INT(m.rc_b, HERSH_OK);
  CHECK_EQ_INT(m.rc_c, HERSH_E_LIMIT);
  CHECK_EQ_INT(m.rc_a2, HERSH_OK); /* cached entries still read */
  CHECK_EQ_INT(m.rc_clear, HERSH_OK);
  CHECK_EQ_INT(m.rc_c2, HERSH_OK); /* room again */
  CHECK_EQ_INT(m.computes, 3);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- context store and its log --------------------------------------------------- */

typedef struct upd_rec {
  int runs;
  const hersh_agg *stored_agg;
  bool saw_copy, was_nil;
} upd_rec;

static int add_ten(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)ud;
  if (v->type != HERSH_T_INT) return hersh_errorf(err, "not an int");
  v->as.i += 10;
  return HERSH_OK;
}

static int push_two(hersh_value *v, void *ud, hersh_errbuf *err) {
  upd_rec *u = ud;
  if (v->type != HERSH_T_LIST) return hersh_errorf(err, "not a list");
  u->saw_copy = v->as.agg != u->stored_agg;
  hersh_value two = hersh_int(2);
  return hersh_list_push(v, &two);
}

static int push_then_fail(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)ud;
  hersh_value three = hersh_int(3);
  if (v->type == HERSH_T_LIST) hersh_list_push(v, &three);
  else {
    hersh_value_free(v);
    *v = hersh_int(999);
  }
  return hersh_errorf(err, "refused %d", 42);
}

static int from_nil(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)err;
  ((upd_rec *)ud)->was_nil = v->type == HERSH_T_NIL;
  *v = hersh_str("fresh");
  return HERSH_OK;
}

static int upd_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  upd_rec *u = ud;
  if (u->runs++ > 0) return HERSH_OK;
  CHECK(hersh_ctx_get(ctx, "k") == NULL);
  hersh_value v = hersh_int(1);
  CHECK_EQ_INT(hersh_ctx_set(ctx, "k", &v), HERSH_OK);
  CHECK_EQ_INT(v.type, HERSH_T_NIL); /* ownership taken */
  CHECK(num_of(hersh_ctx_get(ctx, "k")) == 1);
  v = hersh_int(2);
  CHECK_EQ_INT(hersh_ctx_set(ctx, "k", &v), HERSH_OK);
  CHECK_EQ_INT(hersh_ctx_update(ctx, "k", add_ten, u), HERSH_OK);
  CHECK(num_of(hersh_ctx_get(ctx, "k")) == 12);

  hersh_value list = hersh_list(), one = hersh_int(1);
  hersh_list_push(&list, &one);
  CHECK_EQ_INT(hersh_ctx_set(ctx, "L", &list), HERSH_OK);
  const hersh_value *stored = hersh_ctx_get(ctx, "L");
  CHECK(stored != NULL && stored->type == HERSH_T_LIST);
  if (!stored || stored->type != HERSH_T_LIST) return HERSH_OK;
  u->stored_agg = stored->as.agg;
  CHECK_EQ_INT(hersh_ctx_update(ctx, "L", push_two, u), HERSH_OK);
  CHECK(u->saw_copy);
  CHECK_EQ_INT(hersh_value_len(hersh_ctx_get(ctx, "L")), 2);

  /* An error in fn stores nothing, logs nothing, and says why. */
  CHECK_EQ_INT(hersh_ctx_update(ctx, "L", push_then_fail, u), HERSH_E_RUNTIME);
  CHECK(strstr(hersh_errmsg(), "refused 42") != NULL);
  CHECK_EQ_INT(hersh_value_len(hersh_ctx_get(ctx, "L")), 2);
  CHECK_EQ_INT(hersh_ctx_update(ctx, "k", push_then_fail, u), HERSH_E_RUNTIME);
  CHECK(num_of(hersh_ctx_get(ctx, "k")) == 12);

  CHECK_EQ_INT(hersh_ctx_update(ctx, "fresh", from_nil, u), HERSH_OK);
  CHECK(u->was_nil);
  const hersh_value *fresh = hersh_ctx_get(ctx, "fresh");
  CHECK(fresh && fresh->type == HERSH_T_STR && streq(fresh->as.s.ptr, "fresh"));
  return HERSH_OK;
}

TEST(ctx_update_isolated_copy_and_context_log) {
  upd_rec u = {0};
  hersh_config cfg = test_config("context");
  fx f;
  REQUIRE(fx_start(&f, &cfg, upd_reducer, &u));
  CHECK(wait_state(&f, HERSH_READY) && u.runs == 1);
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 0);

  static const char *want[][4] = {
      {"k", "initialized", NULL, "1"},    {"k", "updated", "1", "2"},
      {"k", "updated", "2", "12"},        {"L", "initialized", NULL, "[1]"},
      {"L", "updated", "[1]", "[1,2]"},   {"fresh", "initialized", NULL, "\"fresh\""}};
  rows *ctxlog = read_log(f.w, HERSH_LOG_CONTEXT, 0);
  CHECK_EQ_INT(ctxlog->n, 6);
  CHECK_EQ_INT(hersh_watcher_log_count(f.w, HERSH_LOG_CONTEXT), 6);
  for (int k = 0; k < ctxlog->n && k < 6; k++) {
    row *r = &ctxlog->v[k];
    check_json_squeeze(r->t[2]);
    check_json_squeeze(r->t[3]);
    CHECK_EQ_STR(r->t[0], want[k][0]);
    CHECK_EQ_STR(r->t[1], want[k][1]);
    if (want[k][2]) CHECK_EQ_STR(r->t[2], want[k][2]);
    CHECK_EQ_STR(r->t[3], want[k][3]);
    if (k > 0) CHECK(r->id > ctxlog->v[k - 1].id);
  }
  free(ctxlog);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- ring logs ---------------------------------------------------------------------- */

enum { RING = 4, LINES_PER_RUN = 7 };

static int ring_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  int *runs = ud;
  for (int j = 0; j < LINES_PER_RUN; j++) {
    char line[32];
    snprintf(line, sizeof line, "r%d-%d", *runs, j);
    hersh_ctx_log(ctx, line);
  }
  (*runs)++;
  return HERSH_OK;
}

TEST(ring_logs_keep_newest_with_fresh_ids) {
  int runs = 0;
  hersh_config cfg = test_config("ring");
  cfg.max_log_entries = RING;
  fx f;
  REQUIRE(fx_start(&f, &cfg, ring_reducer, &runs));
  uint64_t max_seen = 0;
  for (int k = 0; k < 5; k++) {
    if (k > 0) CHECK_EQ_INT(hersh_watcher_send(f.w, "more", 4), HERSH_OK);
    CHECK(wait_int(&f, &runs, k + 1));
    CHECK_EQ_INT(hersh_watcher_log_count(f.w, HERSH_LOG_EFFECT), RING);
    rows *eff = read_log(f.w, HERSH_LOG_EFFECT, 0);
    CHECK_EQ_INT(eff->n, RING);
    for (int j = 0; j < eff->n; j++) {
      char want[32];
      snprintf(want, sizeof want, "r%d-%d", k, LINES_PER_RUN - RING + j);
      CHECK_EQ_STR(eff->v[j].t[0], want);
      CHECK(eff->v[j].id > max_seen); /* never reused */
      if (j > 0) CHECK(eff->v[j].id > eff->v[j - 1].id);
    }
    if (eff->n > 0) max_seen = eff->v[eff->n - 1].id;
    free(eff);
  }
  rows *two = read_log(f.w, HERSH_LOG_EFFECT, 2); /* the newest two, oldest first */
  CHECK_EQ_INT(two->n, 2);
  if (two->n == 2) {
    CHECK_EQ_STR(two->v[0].t[0], "r4-5");
    CHECK_EQ_STR(two->v[1].t[0], "r4-6");
  }
  free(two);
  CHECK(hersh_watcher_log_count(f.w, HERSH_LOG_REDUCE) <= RING);
  CHECK(hersh_watcher_log_count(f.w, HERSH_LOG_RESULT) <= RING);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- queues ------------------------------------------------------------------------ */

typedef struct queue_rec {
  int runs;
  char got[8][8];
} queue_rec;

static int queue_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ctx;
  queue_rec *q = ud;
  if (msg && q->runs < 8) put(q->got[q->runs++], msg->content);
  return HERSH_OK;
}

TEST(full_queue_refuses_at_once) {
  queue_rec q = {0};
  hersh_config cfg = test_config("queue");
  cfg.signal_capacity = 3;
  fx f;
  REQUIRE(fx_start(&f, &cfg, queue_reducer, &q));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "a", 1), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "b", 1), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "c", 1), HERSH_OK);
  int rc = hersh_watcher_send(f.w, "d", 1);
  CHECK_EQ_INT(rc, HERSH_E_QUEUE_FULL);
  CHECK_EQ_STR(hersh_errcode(rc), "EQUEUEFULL");
  CHECK(hersh_errmsg()[0] != '\0');
  CHECK_EQ_INT(hersh_watcher_pending(f.w).user, 3);
  CHECK(wait_int(&f, &q.runs, 3));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "e", 1), HERSH_OK); /* room again */
  CHECK(wait_int(&f, &q.runs, 4));
  CHECK_EQ_STR(q.got[0], "a");
  CHECK_EQ_STR(q.got[1], "b");
  CHECK_EQ_STR(q.got[2], "c");
  CHECK_EQ_STR(q.got[3], "e");
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(q.runs, 4);
  fx_close(&f);
}

/* ---- watches ---------------------------------------------------------------------- */

typedef struct tick_rec {
  int runs, var_runs;
  bool init_updated, init_nil, triggered, updated, watcher, user;
  double count, time;
  char var0[16], reason[16];
} tick_rec;

static int tick_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  tick_rec *t = ud;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_tick(ctx, "t", 30.0, &out);
  if (rc != HERSH_OK) return rc;
  const hersh_trigger *tr = hersh_ctx_trigger(ctx);
  if (t->runs++ == 0) {
    t->init_updated = out.updated;
    t->init_nil = !out.value || out.value->type == HERSH_T_NIL;
  } else if (tr->n_vars > 0 && t->var_runs++ == 0) {
    put(t->var0, tr->vars[0]);
    put(t->reason, tr->reason);
    t->watcher = tr->watcher;
    t->user = tr->user;
    t->triggered = out.triggered;
    t->updated = out.updated;
    t->count = NAN;
    if (out.value && out.value->type == HERSH_T_MAP) {
      t->count = num_of(hersh_map_get(out.value, "count"));
      t->time = num_of(hersh_map_get(out.value, "time"));
    }
  }
  return HERSH_OK;
}

TEST(watch_tick_first_tick_at_once) {
  tick_rec t = {0};
  hersh_config cfg = test_config("tick");
  fx f;
  REQUIRE(fx_start(&f, &cfg, tick_reducer, &t));
  CHECK(wait_int(&f, &t.var_runs, 1));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK(!t.init_updated);
  CHECK(t.init_nil);
  CHECK_EQ_INT(t.var_runs, 1);
  CHECK_EQ_STR(t.var0, "t");
  CHECK_EQ_STR(t.reason, "vars");
  CHECK(!t.watcher && !t.user);
  CHECK(t.triggered);
  CHECK(t.updated);
  CHECK(t.count == 1);
  CHECK(t.time > 1e9); /* epoch seconds */
  fx_close(&f);
}

typedef struct call_rec {
  int polls, runs, var_runs, probe_runs;
  bool init_updated, init_nil, first_updated, first_triggered, first_err_null;
  double first_value, probe_value;
  char probe_err[ROW_TEXT];
  bool probe_triggered;
} call_rec;

static int call_poll(hersh_poll *p, void *ud) {
  call_rec *c = ud;
  switch (++c->polls) {
  case 1: {
    hersh_value v = hersh_int(42);
    hersh_poll_replace(p, &v);
    break;
  }
  case 3: hersh_poll_fail(p, "bad poll"); break;
  default: hersh_poll_skip(p); break;
  }
  return HERSH_OK;
}

static int call_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  call_rec *c = ud;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_call(ctx, "w", 0.02, call_poll, c, NULL, NULL, &out);
  if (rc != HERSH_OK) return rc;
  const hersh_trigger *t = hersh_ctx_trigger(ctx);
  if (c->runs++ == 0) {
    c->init_updated = out.updated;
    c->init_nil = !out.value || out.value->type == HERSH_T_NIL;
  } else if (t->n_vars > 0 && c->var_runs++ == 0) {
    c->first_value = num_of(out.value);
    c->first_updated = out.updated;
    c->first_triggered = out.triggered;
    c->first_err_null = out.err == NULL;
  } else if (msg && streq(msg->content, "probe")) {
    c->probe_runs++;
    put(c->probe_err, out.err);
    c->probe_value = num_of(out.value);
    c->probe_triggered = out.triggered;
  }
  return HERSH_OK;
}

static bool pred_call_done(void *ud) {
  fx *f = ud;
  return hersh_watcher_log_count(f->w, HERSH_LOG_WATCH_ERROR) >= 1;
}

TEST(watch_call_replace_skip_fail) {
  call_rec c = {0};
  hersh_config cfg = test_config("call");
  fx f;
  REQUIRE(fx_start(&f, &cfg, call_reducer, &c));
  CHECK_EQ_INT(hersh_loop_run_until(f.loop, pred_call_done, &f, WAIT_S), 1);
  CHECK(wait_int(&f, &c.polls, 5));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "probe", 5), HERSH_OK);
  CHECK(wait_int(&f, &c.probe_runs, 1));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);

  CHECK(!c.init_updated);
  CHECK(c.init_nil);
  CHECK_EQ_INT(c.var_runs, 1); /* skip and fail send no signal */
  CHECK(c.first_value == 42);
  CHECK(c.first_updated);
  CHECK(c.first_triggered);
  CHECK(c.first_err_null);
  CHECK(strstr(c.probe_err, "bad poll") != NULL); /* stored as the watch's error */
  CHECK(c.probe_value == 42);
  CHECK(!c.probe_triggered);

  CHECK(one_watch_error(f.w, "w", "poll", "bad poll"));
  fx_close(&f);
}

typedef struct upd_err_rec {
  int polls, runs, var_runs;
  char err[ROW_TEXT];
  bool triggered;
} upd_err_rec;

static int failing_update(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)v;
  (void)ud;
  return hersh_errorf(err, "upd bad %d", 5);
}

static int upd_err_poll(hersh_poll *p, void *ud) {
  upd_err_rec *u = ud;
  if (++u->polls == 1) hersh_poll_update(p, failing_update, NULL, NULL);
  else hersh_poll_skip(p);
  return HERSH_OK;
}

static int upd_err_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  upd_err_rec *u = ud;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_call(ctx, "u", 0.02, upd_err_poll, u, NULL, NULL, &out);
  if (rc != HERSH_OK) return rc;
  u->runs++;
  if (hersh_ctx_trigger(ctx)->n_vars > 0 && u->var_runs++ == 0) {
    put(u->err, out.err);
    u->triggered = out.triggered;
  }
  return HERSH_OK;
}

TEST(watch_call_update_error_still_runs) {
  upd_err_rec u = {0};
  hersh_config cfg = test_config("upd-err");
  fx f;
  REQUIRE(fx_start(&f, &cfg, upd_err_reducer, &u));
  CHECK(wait_int(&f, &u.var_runs, 1));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK(strstr(u.err, "upd bad 5") != NULL);
  CHECK(u.triggered);
  CHECK(one_watch_error(f.w, "u", "update", "upd bad 5"));
  fx_close(&f);
}

typedef struct defer_rec {
  hersh_poll *pending;
  int polls, var_runs;
  bool finished;
  double value;
} defer_rec;

static int defer_poll(hersh_poll *p, void *ud) {
  defer_rec *d = ud;
  d->polls++;
  if (!d->pending && !d->finished) d->pending = hersh_poll_defer(p);
  else hersh_poll_skip(p);
  return HERSH_OK;
}

static int defer_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  defer_rec *d = ud;
  hersh_watch_value out;
  int rc = hersh_ctx_watch_call(ctx, "d", 0.01, defer_poll, d, NULL, NULL, &out);
  if (rc != HERSH_OK) return rc;
  if (msg && streq(msg->content, "finish") && d->pending) { /* on the loop thread */
    hersh_value v = hersh_int(7);
    hersh_poll_replace(d->pending, &v);
    d->pending = NULL;
    d->finished = true;
  }
  if (hersh_ctx_trigger(ctx)->n_vars > 0 && d->var_runs++ == 0) d->value = num_of(out.value);
  return HERSH_OK;
}

TEST(deferred_poll_finishes_later) {
  defer_rec d = {0};
  hersh_config cfg = test_config("defer");
  fx f;
  REQUIRE(fx_start(&f, &cfg, defer_reducer, &d));
  CHECK(wait_int(&f, &d.polls, 1));
  CHECK(d.pending != NULL);
  hersh_loop_run_for(f.loop, 0.05);
  CHECK_EQ_INT(d.var_runs, 0); /* nothing until it finishes */
  CHECK_EQ_INT(hersh_watcher_send(f.w, "finish", 6), HERSH_OK);
  CHECK(wait_int(&f, &d.var_runs, 1));
  CHECK(d.value == 7);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

/* ---- the same reducer in C and in Lua ------------------------------------------------ */

static int n_plus_one(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)ud;
  if (v->type != HERSH_T_INT) return hersh_errorf(err, "n is not an integer");
  v->as.i++;
  return HERSH_OK;
}

static int c_counting(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ud;
  if (streq(hersh_ctx_trigger(ctx)->reason, "init")) {
    hersh_value zero = hersh_int(0);
    hersh_ctx_set(ctx, "n", &zero);
    return hersh_ctx_log(ctx, "init");
  }
  if (msg && streq(msg->content, "stop")) return hersh_stop(ctx, "bye");
  int rc = hersh_ctx_update(ctx, "n", n_plus_one, NULL);
  if (rc != HERSH_OK) return rc;
  char line[64];
  snprintf(line, sizeof line, "msg %s", msg ? msg->content : "?");
  return hersh_ctx_log(ctx, line);
}

static void c_counting_cleanup(hersh_ctx *ctx, void *ud) {
  (void)ud;
  hersh_ctx_log(ctx, "cleanup");
}

static const char lua_counting[] =
    "local hersh = require 'hersh'\n"
    "return {\n"
    "  reduce = function(msg, ctx)\n"
    "    if ctx:trigger().reason == 'init' then\n"
    "      ctx:set('n', 0)\n"
    "      ctx:log('init')\n"
    "      return\n"
    "    end\n"
    "    if msg.content == 'stop' then return hersh.stop('bye') end\n"
    "    ctx:update('n', function(n) return n + 1 end)\n"
    "    ctx:log('msg ' .. msg.content)\n"
    "  end,\n"
    "  cleanup = function(ctx) ctx:log('cleanup') end,\n"
    "}\n";

static bool pred_both_terminal(void *ud) {
  hersh_watcher **w = ud;
  return hersh_state_terminal(hersh_watcher_state(w[0])) &&
         hersh_state_terminal(hersh_watcher_state(w[1]));
}

TEST(lua_and_c_reducers_same_semantics) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop != NULL);
  hersh_watcher *w[2] = {NULL, NULL};
  hersh_config cc = test_config("same-c"), cl = test_config("same-lua");
  REQUIRE(hersh_watcher_new(loop, &cc, &w[0]) == HERSH_OK);
  REQUIRE(hersh_watcher_new(loop, &cl, &w[1]) == HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_manage(w[0], c_counting, NULL), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_on_cleanup(w[0], c_counting_cleanup, NULL), HERSH_OK);
  int rc = hersh_watcher_manage_lua(w[1], lua_counting, sizeof lua_counting - 1, "=counting");
  if (rc != HERSH_OK) printf("  manage_lua: %s\n", hersh_errmsg());
  CHECK_EQ_INT(rc, HERSH_OK);
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_INT(hersh_watcher_start(w[k]), HERSH_OK);
    CHECK_EQ_INT(hersh_watcher_send(w[k], "a", 1), HERSH_OK);
    CHECK_EQ_INT(hersh_watcher_send(w[k], "b", 1), HERSH_OK);
    CHECK_EQ_INT(hersh_watcher_send(w[k], "stop", 4), HERSH_OK);
  }
  CHECK_EQ_INT(hersh_loop_run_until(loop, pred_both_terminal, w, WAIT_S), 1);

  static const char *effects[] = {"init", "msg a", "msg b", "cleanup"};
  static const char *contexts[][2] = {{"initialized", "0"}, {"updated", "1"}, {"updated", "2"}};
  rows *logs[2][HERSH_LOG_KINDS];
  for (int k = 0; k < 2; k++) {
    CHECK_EQ_STR(hersh_state_name(hersh_watcher_state(w[k])), "Stopped");
    for (int kind = 0; kind < HERSH_LOG_KINDS; kind++)
      logs[k][kind] = read_log(w[k], (hersh_log_kind)kind, 0);
    rows *eff = logs[k][HERSH_LOG_EFFECT], *ctxl = logs[k][HERSH_LOG_CONTEXT];
    int found = 0; /* the user's lines, in order (the engine may add its own) */
    for (int j = 0; j < eff->n && found < 4; j++)
      if (streq(eff->v[j].t[0], effects[found])) found++;
    CHECK_EQ_INT(found, 4);
    CHECK_EQ_INT(ctxl->n, 3);
    for (int j = 0; j < ctxl->n && j < 3; j++) {
      check_json_squeeze(ctxl->v[j].t[3]);
      CHECK_EQ_STR(ctxl->v[j].t[0], "n");
      CHECK_EQ_STR(ctxl->v[j].t[1], contexts[j][0]);
      CHECK_EQ_STR(ctxl->v[j].t[3], contexts[j][1]);
    }
    CHECK_EQ_INT(logs[k][HERSH_LOG_WATCH_ERROR]->n, 0);
  }
  /* The same signals gave the same reduce steps and the same results. */
  rows *rr = logs[0][HERSH_LOG_REDUCE], *rl = logs[1][HERSH_LOG_REDUCE];
  CHECK_EQ_INT(rr->n, rl->n);
  for (int j = 0; j < rr->n && j < rl->n; j++) {
    CHECK_EQ_STR(rr->v[j].t[0], rl->v[j].t[0]);
    CHECK_EQ_STR(rr->v[j].t[1], rl->v[j].t[1]);
    CHECK_EQ_STR(rr->v[j].t[2], rl->v[j].t[2]);
    CHECK_EQ_INT(rr->v[j].a, rl->v[j].a);
    CHECK_EQ_INT(rr->v[j].b, rl->v[j].b);
  }
  rows *ec = logs[0][HERSH_LOG_EFFECT], *el = logs[1][HERSH_LOG_EFFECT];
  CHECK_EQ_INT(ec->n, el->n);
  for (int j = 0; j < ec->n && j < el->n; j++) CHECK_EQ_STR(ec->v[j].t[0], el->v[j].t[0]);
  rows *xc = logs[0][HERSH_LOG_RESULT], *xl = logs[1][HERSH_LOG_RESULT];
  CHECK_EQ_INT(xc->n, xl->n);
  for (int j = 0; j < xc->n && j < xl->n; j++) {
    CHECK_EQ_STR(xc->v[j].t[0], xl->v[j].t[0]);
    CHECK_EQ_INT(xc->v[j].ok, xl->v[j].ok);
  }
  for (int k = 0; k < 2; k++)
    for (int kind = 0; kind < HERSH_LOG_KINDS; kind++) free(logs[k][kind]);
  hersh_watcher_free(w[0]);
  hersh_watcher_free(w[1]);
  hersh_loop_free(loop);
}

TEST(lua_reducer_errors) {
  hersh_config cfg = test_config("lua-errors");
  fx f;
  REQUIRE(fx_open(&f, &cfg, NULL, NULL));
  static const char broken[] = "return function(";
  CHECK_EQ_INT(hersh_watcher_manage_lua(f.w, broken, sizeof broken - 1, "=broken"), HERSH_E_LUA);
  CHECK(hersh_errmsg()[0] != '\0');
  static const char not_fn[] = "return 42";
  CHECK(hersh_watcher_manage_lua(f.w, not_fn, sizeof not_fn - 1, "=not_fn") != HERSH_OK);

  static const char raising[] = "return function(msg, ctx) error('lua boom') end";
  CHECK_EQ_INT(hersh_watcher_manage_lua(f.w, raising, sizeof raising - 1, "=raising"), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  CHECK(wait_failures(&f, 1));
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 1);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_READY);
  CHECK(last_run_failed(f.w, "lua boom"));
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

TEST(loop_run_returns_when_all_terminal) {
  hersh_config cfg = test_config("loop-run");
  fx f;
  REQUIRE(fx_start(&f, &cfg, c_counting, NULL));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "a", 1), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(f.w, "stop", 4), HERSH_OK);
  CHECK(hersh_loop_run(f.loop) >= 0);
  CHECK_EQ_INT(hersh_watcher_state(f.w), HERSH_STOPPED);
  CHECK_EQ_INT(f.cleanups, 1);
  fx_close(&f);
}

static bool pred_two_results(void *ud) {
  return hersh_watcher_log_count(ud, HERSH_LOG_RESULT) >= 2;
}

TEST(loop_wrap_borrows_callers_uv_loop) {
  uv_loop_t ul;
  REQUIRE(uv_loop_init(&ul) == 0);
  hersh_loop *hl = hersh_loop_wrap(&ul);
  REQUIRE(hl != NULL);
  CHECK(hersh_loop_uv(hl) == &ul);
  hersh_config cfg = test_config("wrap");
  hersh_watcher *w = NULL;
  REQUIRE(hersh_watcher_new(hl, &cfg, &w) == HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_manage(w, c_counting, NULL), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_start(w), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(w, "a", 1), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_send(w, "stop", 4), HERSH_OK);
  /* The caller drives its own loop. */
  double give_up = now_s() + WAIT_S;
  while (!hersh_state_terminal(hersh_watcher_state(w)) && now_s() < give_up) {
    uv_run(&ul, UV_RUN_NOWAIT);
    sleep_ms(1);
  }
  CHECK_EQ_STR(hersh_state_name(hersh_watcher_state(w)), "Stopped");
  CHECK(log_mentions(w, HERSH_LOG_EFFECT, "msg a"));
  hersh_watcher_free(w);
  hersh_loop_free(hl);
  for (int k = 0; k < 10; k++) uv_run(&ul, UV_RUN_NOWAIT); /* close callbacks, if any */
  CHECK_EQ_INT(uv_loop_close(&ul), 0); /* nothing of ours is left on it */
}

/* Last: if the abort does not happen, the per-test alarm ends the suite here. */
TEST(lua_run_past_deadline_is_aborted) {
#ifdef CHECK_UNDER_TSAN
  SKIP("TSan holds the deadline signal until an intercepted call, which a bare Lua loop never makes "
       "(test_deadline_stress covers the Lua deadline under TSan)");
#endif
  hersh_config cfg = test_config("lua-deadline");
  cfg.timeout = 0.2;
  fx f;
  REQUIRE(fx_open(&f, &cfg, NULL, NULL));
  static const char spin[] =
      "return function(msg, ctx) if msg then return end while true do end end";
  CHECK_EQ_INT(hersh_watcher_manage_lua(f.w, spin, sizeof spin - 1, "=spin"), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_start(f.w), HERSH_OK);
  CHECK(wait_failures(&f, 1));
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 1);
  CHECK(last_run_failed(f.w, "timeout"));
  CHECK_EQ_INT(hersh_watcher_send(f.w, "quick", 5), HERSH_OK); /* the Lua state is usable */
  CHECK_EQ_INT(hersh_loop_run_until(f.loop, pred_two_results, f.w, WAIT_S), 1);
  CHECK_EQ_INT(hersh_watcher_failures(f.w), 0);
  CHECK_EQ_INT(hersh_watcher_stop(f.w), HERSH_OK);
  fx_close(&f);
}

int main(void) {
  RUN(names_and_defaults);
  RUN(recovery_decide_table);
  RUN(start_returns_at_once_then_init_run);
  RUN(burst_from_thread_one_run_per_message_fifo);
  RUN(priority_watcher_then_user_then_var);
  RUN(stop_queued_in_run_goes_before_waiting_messages_and_vars);
  RUN(dependent_updates_batched_none_lost);
  RUN(independent_flow_updates_coalesce_to_newest);
  RUN(stop_from_not_run);
  RUN(manage_replaces_before_start_and_no_cleanup_no_entry);
  RUN(stop_asked_in_run_wins_over_the_runs_kill);
  RUN(stop_from_ready_then_terminal_refuses);
  RUN(stop_from_running_called_from_another_thread);
  RUN(stop_from_wait_recover);
  RUN(kill_skips_cleanup);
  RUN(reducer_returns_stop);
  RUN(reducer_returns_kill);
  RUN(reducer_returns_crash_is_a_failure);
  RUN(reducer_returns_fail);
  RUN(reducer_returns_other_nonzero);
  RUN(default_recovery_sequence_scaled_down);
  RUN(success_resets_failures_and_cancels_retry);
  RUN(custom_decide_function);
  RUN(run_past_deadline_is_cancelled_and_times_out);
  RUN(watch_limit_crashes_naming_the_watch);
  RUN(invalid_watch_use_crashes);
  RUN(memo_computed_once_clear_recomputes);
  RUN(max_memo_enforced);
  RUN(ctx_update_isolated_copy_and_context_log);
  RUN(ring_logs_keep_newest_with_fresh_ids);
  RUN(full_queue_refuses_at_once);
  RUN(watch_tick_first_tick_at_once);
  RUN(watch_call_replace_skip_fail);
  RUN(watch_call_update_error_still_runs);
  RUN(deferred_poll_finishes_later);
  RUN(lua_and_c_reducers_same_semantics);
  RUN(lua_reducer_errors);
  RUN(loop_run_returns_when_all_terminal);
  RUN(loop_wrap_borrows_callers_uv_loop);
  RUN(lua_run_past_deadline_is_aborted);
  return check_summary();
}
