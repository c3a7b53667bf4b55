/*
** The observer's view of a watcher through the public C API: hersh_watcher_snapshot
** and hersh_loop_watchers (include/hersh.h), which the WatcherAPI and the CLI use
** instead of the engine's structures. Every wait is bounded; nothing is timed.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hersh.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static hersh_config config(const char *id) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  return cfg;
}

/* Each run stores two context keys, computes one memo and holds one flow watch (fed by
** nobody, so that it adds no trigger of its own). */
static int one(hersh_value *out, void *ud, hersh_errbuf *err) {
  (void)ud;
  (void)err;
  *out = hersh_int(1);
  return HERSH_OK;
}

static int busy_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  hersh_value a = hersh_int(1), b = hersh_str("two");
  const hersh_value *memo;
  hersh_flow *flow;
  hersh_watch_value watched;
  if (hersh_ctx_set(ctx, "a", &a) || hersh_ctx_set(ctx, "b", &b) || hersh_ctx_memo(ctx, "m", one, NULL, &memo) ||
      hersh_ctx_watch_flow(ctx, "f", NULL, &flow, &watched))
    return hersh_fail(ctx, "setup: %s", hersh_errmsg());
  return HERSH_OK;
}

static int failing_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg;
  (void)ud;
  return hersh_fail(ctx, "always");
}

static bool is_ready(void *ud) { return hersh_watcher_state(ud) == HERSH_READY; }
static bool has_failed(void *ud) { return hersh_watcher_failures(ud) >= 1; }

static bool pending_empty(void *ud) {
  hersh_queue_counts c = hersh_watcher_pending(ud);
  return c.watcher + c.user + c.var == 0;
}

TEST(snapshot_rejects_null) {
  hersh_snapshot s;
  CHECK_EQ_INT(hersh_watcher_snapshot(NULL, &s), HERSH_E_INVAL);
  CHECK(strstr(hersh_errmsg(), "hersh_watcher_snapshot") != NULL);
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg = config("null-out");
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_snapshot(w, NULL), HERSH_E_INVAL);
  hersh_loop_free(loop);
}

TEST(snapshot_before_start) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  const char *const env[] = {"REGION=eu", "API_TOKEN=s3cret", NULL};
  hersh_config cfg = config("fresh");
  cfg.env = env;
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  hersh_snapshot s;
  memset(&s, 0xAB, sizeof s); /* every field must be written */
  REQUIRE(hersh_watcher_snapshot(w, &s) == HERSH_OK);
  CHECK_EQ_INT(s.state, HERSH_NOT_RUN);
  CHECK(!s.started);
  CHECK_EQ_INT(s.failures, 0);
  CHECK(s.next_retry == 0.0);
  CHECK_EQ_INT(s.pending.watcher + s.pending.user + s.pending.var, 0);
  REQUIRE(s.n_env == 2);
  CHECK_EQ_STR(s.env[0], "REGION=eu");
  CHECK_EQ_STR(s.env[1], "API_TOKEN=s3cret");
  CHECK(s.env[0] != env[0]); /* the watcher's copy, not the caller's array */
  CHECK(s.on_loop);
  CHECK_EQ_INT(s.n_context + s.n_memo + s.n_watches, 0);
  CHECK(s.last_trigger == NULL);
  hersh_loop_free(loop);
}

TEST(snapshot_counts_queues_and_trigger) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg = config("busy");
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(w, busy_reducer, NULL) == HERSH_OK);
  REQUIRE(hersh_watcher_start(w) == HERSH_OK);
  REQUIRE(hersh_watcher_send(w, "m1", 2) == HERSH_OK);
  REQUIRE(hersh_watcher_send(w, "m2", 2) == HERSH_OK);
  hersh_snapshot s;
  REQUIRE(hersh_watcher_snapshot(w, &s) == HERSH_OK); /* nothing handled yet */
  CHECK(s.started);
  CHECK_EQ_INT(s.pending.watcher, 1); /* init */
  CHECK_EQ_INT(s.pending.user, 2);
  CHECK_EQ_INT(s.pending.var, 0);
  CHECK(s.last_trigger == NULL);

  CHECK_EQ_INT(hersh_loop_run_until(loop, pending_empty, w, WAIT_S), 1);
  REQUIRE(hersh_watcher_snapshot(w, &s) == HERSH_OK);
  CHECK_EQ_INT(s.state, HERSH_READY);
  CHECK_EQ_INT(s.pending.watcher + s.pending.user + s.pending.var, 0);
  CHECK(s.on_loop);
  CHECK_EQ_INT(s.n_context, 2);
  CHECK_EQ_INT(s.n_memo, 1);
  CHECK_EQ_INT(s.n_watches, 1);
  REQUIRE(s.last_trigger != NULL);
  CHECK(s.last_trigger->user);
  CHECK_EQ_STR(s.last_trigger->reason, "message");

  REQUIRE(hersh_watcher_stop(w) == HERSH_OK);
  REQUIRE(hersh_watcher_snapshot(w, &s) == HERSH_OK);
  CHECK_EQ_INT(s.state, HERSH_STOPPED);
  hersh_loop_free(loop);
}

TEST(snapshot_failures_and_retry) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg = config("failing");
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(w, failing_reducer, NULL) == HERSH_OK);
  REQUIRE(hersh_watcher_start(w) == HERSH_OK);
  CHECK_EQ_INT(hersh_loop_run_until(loop, has_failed, w, WAIT_S), 1);
  hersh_snapshot s;
  REQUIRE(hersh_watcher_snapshot(w, &s) == HERSH_OK);
  CHECK_EQ_INT(s.failures, 1);
  CHECK(s.next_retry > 0.0); /* the default policy retries after a light delay */
  CHECK_EQ_INT(s.failures, hersh_watcher_failures(w));
  CHECK(s.next_retry == hersh_watcher_next_retry(w));
  REQUIRE(s.last_trigger != NULL);
  CHECK(s.last_trigger->watcher);
  CHECK_EQ_STR(s.last_trigger->reason, "init");
  hersh_loop_free(loop);
}

/* Off the loop thread the store sizes and the trigger are not read (they change on the
** loop thread only), and the snapshot says so. */
typedef struct off_loop {
  hersh_watcher *w;
  int rc;
  hersh_snapshot s;
} off_loop;

static void *snapshot_thread(void *arg) {
  off_loop *o = arg;
  o->rc = hersh_watcher_snapshot(o->w, &o->s);
  return NULL;
}

TEST(snapshot_off_the_loop_thread) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg = config("elsewhere");
  hersh_watcher *w;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(w, busy_reducer, NULL) == HERSH_OK);
  REQUIRE(hersh_watcher_start(w) == HERSH_OK);
  REQUIRE(hersh_loop_run_until(loop, is_ready, w, WAIT_S) == 1);
  off_loop o = {.w = w, .rc = -100};
  memset(&o.s, 0xAB, sizeof o.s);
  pthread_t t;
  REQUIRE(pthread_create(&t, NULL, snapshot_thread, &o) == 0);
  REQUIRE(pthread_join(t, NULL) == 0);
  CHECK_EQ_INT(o.rc, HERSH_OK);
  CHECK_EQ_INT(o.s.state, HERSH_READY);
  CHECK(o.s.started);
  CHECK(!o.s.on_loop);
  CHECK_EQ_INT(o.s.n_context + o.s.n_memo + o.s.n_watches, 0);
  CHECK(o.s.last_trigger == NULL);
  hersh_loop_free(loop);
}

/* The CLI's use: visit every watcher of the loop and stop the live ones. */
typedef struct visit {
  int seen;
  bool saw[3];
  hersh_watcher *ws[3];
} visit;

static void visit_one(hersh_watcher *w, void *ud) {
  visit *v = ud;
  v->seen++;
  for (int i = 0; i < 3; i++)
    if (v->ws[i] == w) v->saw[i] = true;
  if (!hersh_state_terminal(hersh_watcher_state(w))) hersh_watcher_kill(w, "visited");
}

static bool all_killed(void *ud) {
  visit *v = ud;
  for (int i = 0; i < 3; i++)
    if (hersh_watcher_state(v->ws[i]) != HERSH_KILLED) return false;
  return true;
}

TEST(loop_watchers_visits_each) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  visit v = {0};
  const char *ids[3] = {"v0", "v1", "v2"};
  for (int i = 0; i < 3; i++) {
    hersh_config cfg = config(ids[i]);
    REQUIRE(hersh_watcher_new(loop, &cfg, &v.ws[i]) == HERSH_OK);
    REQUIRE(hersh_watcher_manage(v.ws[i], busy_reducer, NULL) == HERSH_OK);
    REQUIRE(hersh_watcher_start(v.ws[i]) == HERSH_OK);
  }
  hersh_loop_watchers(loop, visit_one, &v);
  CHECK_EQ_INT(v.seen, 3);
  for (int i = 0; i < 3; i++) CHECK(v.saw[i]);
  CHECK_EQ_INT(hersh_loop_run_until(loop, all_killed, &v, WAIT_S), 1);
  size_t stopped = 9, killed = 9, crashed = 9;
  hersh_loop_outcomes(loop, &stopped, &killed, &crashed);
  CHECK_EQ_INT(killed, 3);
  CHECK(streq(hersh_watcher_id(v.ws[0]), "v0"));
  hersh_loop_free(loop);
}

int main(void) {
  RUN(snapshot_rejects_null);
  RUN(snapshot_before_start);
  RUN(snapshot_counts_queues_and_trigger);
  RUN(snapshot_failures_and_retry);
  RUN(snapshot_off_the_loop_thread);
  RUN(loop_watchers_visits_each);
  return check_summary();
}
