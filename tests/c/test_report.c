/*
** The log callback (hersh_loop_on_report): what it is told of failed runs, cleanups and
** watches and of the crash that ends a watcher; on which thread; and that it is not
** called once removed or for a freed watcher. Every wait is bounded.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hersh.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */
#define MAX_REPORTS 16

/* A copy of what one report said, taken inside the callback. */
typedef struct seen {
  hersh_report_kind kind;
  hersh_report_level level;
  char id[32], error[512], line[1024], trigger[16], message[32], watch[16], phase[8];
  bool has_message, decided, on_loop_thread, same_watcher;
  int failures;
  hersh_decision decision;
  double time, retry_at;
  hersh_state state; /* of the watcher when told */
} seen;

typedef struct sink {
  pthread_t loop_thread;
  hersh_watcher *w;
  seen s[MAX_REPORTS];
  int n;
} sink;

static void put(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

static void record(const hersh_report *r, void *ud) {
  sink *k = ud;
  if (k->n >= MAX_REPORTS) return;
  seen *s = &k->s[k->n++];
  s->kind = r->kind;
  s->level = r->level;
  put(s->id, sizeof s->id, r->watcher_id);
  put(s->error, sizeof s->error, r->error);
  put(s->line, sizeof s->line, r->line);
  put(s->trigger, sizeof s->trigger, r->trigger ? r->trigger->reason : NULL);
  s->has_message = r->message != NULL;
  put(s->message, sizeof s->message, r->message ? r->message->content : NULL);
  put(s->watch, sizeof s->watch, r->watch);
  put(s->phase, sizeof s->phase, r->phase);
  s->decided = r->decided;
  s->failures = r->failures;
  s->decision = r->decision;
  s->time = r->time;
  s->retry_at = r->retry_at;
  s->on_loop_thread = pthread_equal(pthread_self(), k->loop_thread);
  s->same_watcher = r->watcher == k->w;
  s->state = hersh_watcher_state(r->watcher);
}

static bool has(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

static hersh_config fast_config(const char *id) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  cfg.recovery.min_failures = 2;
  cfg.recovery.max_failures = 3;
  cfg.recovery.base_delay = 0.05;
  cfg.recovery.light_delays[0] = 0.05;
  cfg.recovery.n_light_delays = 1;
  return cfg;
}

static bool is_terminal(void *ud) { return hersh_state_terminal(hersh_watcher_state(ud)); }

static int failing_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  return hersh_fail(ctx, "sensor offline\nsecond line");
}

static void failing_cleanup(hersh_ctx *ctx, void *ud) {
  (void)ud;
  hersh_fail(ctx, "cannot flush");
}

/* A loop that reports to k; NULL when it cannot be made. */
static hersh_loop *reporting_loop(sink *k) {
  hersh_loop *loop = hersh_loop_new();
  if (loop && hersh_loop_on_report(loop, record, k) != HERSH_OK) {
    hersh_loop_free(loop);
    return NULL;
  }
  return loop;
}

/* A watcher of cfg on loop, told apart in k's reports, run by reducer (and cleanup when
** not NULL), started; NULL when a step fails. */
static hersh_watcher *started(hersh_loop *loop, sink *k, const hersh_config *cfg, hersh_reducer_fn reducer,
                              hersh_cleanup_fn cleanup) {
  hersh_watcher *w;
  if (hersh_watcher_new(loop, cfg, &w) != HERSH_OK) return NULL;
  k->w = w;
  if (hersh_watcher_manage(w, reducer, NULL) != HERSH_OK ||
      (cleanup && hersh_watcher_on_cleanup(w, cleanup, NULL) != HERSH_OK) || hersh_watcher_start(w) != HERSH_OK) {
    hersh_watcher_free(w);
    return NULL;
  }
  return w;
}

TEST(failed_runs_then_crash_in_order_with_decisions) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("sensor");
  hersh_watcher *w = started(loop, &k, &cfg, failing_reducer, failing_cleanup);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, is_terminal, w, WAIT_S), 1);
  CHECK_EQ_INT(hersh_watcher_state(w), HERSH_CRASHED);
  REQUIRE(k.n == 5);
  static const hersh_report_kind kinds[] = {HERSH_REPORT_RUN_FAILED, HERSH_REPORT_RUN_FAILED, HERSH_REPORT_RUN_FAILED,
                                            HERSH_REPORT_CLEANUP_FAILED, HERSH_REPORT_CRASHED};
  static const char *const triggers[] = {"init", "retry", "recover"};
  static const hersh_action actions[] = {HERSH_ACT_RETRY, HERSH_ACT_RECOVER, HERSH_ACT_CRASH};
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(k.s[i].kind, kinds[i]);
    CHECK(k.s[i].on_loop_thread);
    CHECK(k.s[i].same_watcher);
    CHECK_EQ_STR(k.s[i].id, "sensor");
    CHECK(k.s[i].time > 0);
    CHECK(has(k.s[i].line, "watcher \"sensor\""));
  }
  for (int i = 0; i < 3; i++) {
    seen *s = &k.s[i];
    CHECK_EQ_INT(s->level, HERSH_REPORT_WARNING);
    CHECK_EQ_STR(s->trigger, triggers[i]);
    CHECK(!s->has_message);
    CHECK_EQ_STR(s->error, "sensor offline\nsecond line");
    CHECK_EQ_INT(s->failures, i + 1);
    CHECK(s->decided);
    CHECK_EQ_INT(s->decision.action, actions[i]);
    /* the line: the first line of the error, the decision, then the rest indented */
    CHECK(has(s->line, "run failed"));
    CHECK(has(s->line, ": sensor offline; failure "));
    CHECK(has(s->line, "\n  second line"));
  }
  CHECK(k.s[0].retry_at >= k.s[0].time);
  CHECK(has(k.s[0].line, "run failed (init): sensor offline; failure 1, retry in 0.05 s\n  second line"));
  CHECK(k.s[1].retry_at >= k.s[1].time);
  CHECK(has(k.s[1].line, "failure 2, recover in 0.05 s (WaitRecover)"));
  CHECK(k.s[2].retry_at == 0);
  CHECK(has(k.s[2].line, "failure 3, the recovery policy gives up: crash"));
  CHECK_EQ_STR(k.s[3].error, "cannot flush");
  CHECK_EQ_STR(k.s[3].line, "watcher \"sensor\" cleanup failed: cannot flush");
  seen *c = &k.s[4];
  CHECK_EQ_INT(c->level, HERSH_REPORT_ERROR);
  CHECK_EQ_INT(c->state, HERSH_CRASHED); /* told after the engine acted */
  CHECK_EQ_INT(c->failures, 3);
  CHECK_EQ_STR(c->line, "watcher \"sensor\" crashed after 3 failures: sensor offline");
  hersh_watcher_free(w);
  hersh_loop_free(loop);
  CHECK_EQ_INT(k.n, 5);
}

TEST(crash_after_one_failure_reads_right) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("once");
  cfg.recovery.min_failures = 1;
  cfg.recovery.max_failures = 1;
  hersh_watcher *w = started(loop, &k, &cfg, failing_reducer, NULL);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, is_terminal, w, WAIT_S), 1);
  REQUIRE(k.n == 2); /* no cleanup set: no cleanup report */
  CHECK_EQ_INT(k.s[0].decision.action, HERSH_ACT_CRASH);
  CHECK_EQ_STR(k.s[1].line, "watcher \"once\" crashed after 1 failure: sensor offline");
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

static int fail_on_message(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ud;
  return msg ? hersh_fail(ctx, "bad order") : HERSH_OK;
}

static bool reports_at_least_one(void *ud) { return ((sink *)ud)->n >= 1; }

TEST(user_run_names_its_message_quoted) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("orders");
  hersh_watcher *w = started(loop, &k, &cfg, fail_on_message, NULL);
  REQUIRE(w);
  const char msg[] = "buy \"ACME\"\n10";
  CHECK_EQ_INT(hersh_watcher_send(w, msg, sizeof msg - 1), HERSH_OK);
  CHECK_EQ_INT(hersh_loop_run_until(loop, reports_at_least_one, &k, WAIT_S), 1);
  REQUIRE(k.n >= 1);
  CHECK_EQ_INT(k.s[0].kind, HERSH_REPORT_RUN_FAILED);
  CHECK_EQ_STR(k.s[0].trigger, "message");
  CHECK(k.s[0].has_message);
  CHECK_EQ_STR(k.s[0].message, msg);
  CHECK(has(k.s[0].line, "run failed (message \"buy \\\"ACME\\\"\\n10\"): bad order; failure 1, retry in 0.05 s"));
  CHECK(strchr(k.s[0].line, '\n') == NULL); /* the message cannot break the line */
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

static int poll_fails(hersh_poll *p, void *ud) {
  (void)ud;
  hersh_poll_fail(p, "feed unreachable");
  return HERSH_OK;
}

static int watching_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  hersh_watch_value v;
  return hersh_ctx_watch_call(ctx, "price", 0.05, poll_fails, NULL, NULL, NULL, &v);
}

static int limit_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  hersh_watch_value v;
  hersh_ctx_watch_tick(ctx, "first", 10, &v);
  return hersh_ctx_watch_tick(ctx, "second", 10, &v);
}

TEST(watch_error_and_engine_limit_crash) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("feed");
  hersh_watcher *w = started(loop, &k, &cfg, watching_reducer, NULL);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, reports_at_least_one, &k, WAIT_S), 1);
  REQUIRE(k.n >= 1);
  CHECK_EQ_INT(k.s[0].kind, HERSH_REPORT_WATCH_ERROR);
  CHECK(k.s[0].on_loop_thread);
  CHECK_EQ_STR(k.s[0].watch, "price");
  CHECK_EQ_STR(k.s[0].phase, "poll");
  CHECK_EQ_STR(k.s[0].line, "watcher \"feed\" watch \"price\" poll failed: feed unreachable");
  hersh_watcher_free(w);

  k.n = 0;
  cfg = fast_config("limited");
  cfg.max_watches = 1;
  w = started(loop, &k, &cfg, limit_reducer, NULL);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, is_terminal, w, WAIT_S), 1);
  REQUIRE(k.n == 1);
  CHECK_EQ_INT(k.s[0].kind, HERSH_REPORT_CRASHED);
  CHECK_EQ_INT(k.s[0].failures, 0);
  CHECK(has(k.s[0].error, "second"));
  CHECK(has(k.s[0].line, "watcher \"limited\" crashed: watch registry limit reached"));
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

static const char lua_failing[] = "local function explode() error('kaboom') end\n"
                                  "return function(msg, ctx) explode() end\n";

TEST(lua_reducer_error_carries_its_traceback) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("lua");
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  k.w = w;
  CHECK_EQ_INT(hersh_watcher_manage_lua(w, lua_failing, sizeof lua_failing - 1, "=failing"), HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_start(w), HERSH_OK);
  CHECK_EQ_INT(hersh_loop_run_until(loop, reports_at_least_one, &k, WAIT_S), 1);
  REQUIRE(k.n >= 1);
  CHECK_EQ_INT(k.s[0].kind, HERSH_REPORT_RUN_FAILED);
  CHECK(has(k.s[0].error, "failing:1: kaboom\nstack traceback:"));
  CHECK(has(k.s[0].line, "run failed (init): failing:1: kaboom; failure 1, retry in 0.05 s\n  stack traceback:"));
  CHECK(has(k.s[0].line, "\n  \tfailing:1: in "));
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

TEST(no_call_once_removed_or_after_free) {
  sink k = {.loop_thread = pthread_self()};
  hersh_loop *loop = reporting_loop(&k);
  REQUIRE(loop);
  hersh_config cfg = fast_config("quiet");
  hersh_watcher *w = started(loop, &k, &cfg, failing_reducer, failing_cleanup);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, reports_at_least_one, &k, WAIT_S), 1);
  CHECK_EQ_INT(k.n, 1);
  CHECK_EQ_INT(hersh_loop_on_report(loop, NULL, NULL), HERSH_OK);
  /* it fails on, retries and crashes: nobody is told any more */
  CHECK_EQ_INT(hersh_loop_run_until(loop, is_terminal, w, WAIT_S), 1);
  CHECK_EQ_INT(hersh_watcher_state(w), HERSH_CRASHED);
  CHECK_EQ_INT(k.n, 1);
  hersh_watcher_free(w);

  /* freed with a retry pending and a failing cleanup: the free neither reports nor
  ** leaves a retry that could */
  k.n = 0;
  CHECK_EQ_INT(hersh_loop_on_report(loop, record, &k), HERSH_OK);
  w = started(loop, &k, &cfg, failing_reducer, failing_cleanup);
  REQUIRE(w);
  CHECK_EQ_INT(hersh_loop_run_until(loop, reports_at_least_one, &k, WAIT_S), 1);
  CHECK_EQ_INT(k.n, 1);
  CHECK(hersh_watcher_next_retry(w) > 0);
  hersh_watcher_free(w);
  hersh_loop_run_for(loop, 0.2); /* past the retry's delay */
  CHECK_EQ_INT(k.n, 1);
  hersh_loop_free(loop);
  CHECK_EQ_INT(k.n, 1);
}

static void *set_from_other_thread(void *loop) {
  static int rc;
  rc = hersh_loop_on_report(loop, record, NULL);
  return &rc;
}

TEST(set_only_on_the_loop_thread) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, set_from_other_thread, loop) == 0);
  void *res = NULL;
  REQUIRE(pthread_join(t, &res) == 0);
  CHECK_EQ_INT(*(int *)res, HERSH_E_INVAL);
  CHECK_EQ_INT(hersh_loop_on_report(NULL, record, NULL), HERSH_E_INVAL);
  hersh_loop_free(loop);
}

int main(void) {
  RUN(failed_runs_then_crash_in_order_with_decisions);
  RUN(crash_after_one_failure_reads_right);
  RUN(user_run_names_its_message_quoted);
  RUN(watch_error_and_engine_limit_crash);
  RUN(lua_reducer_error_carries_its_traceback);
  RUN(no_call_once_removed_or_after_free);
  RUN(set_only_on_the_loop_thread);
  return check_summary();
}
