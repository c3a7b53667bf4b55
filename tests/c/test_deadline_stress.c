/*
** Deadlines under stress. The watchdog's interrupt must run on the thread it interrupts
** (Lua allows lua_sethook only from a signal handler there), never for a run already
** disarmed; and over 10,000 runs whose deadlines pass just before or just after they end,
** Lua and C reducers alike, each run's reported outcome must match what happened to it:
** a run cut short is reported "timeout", a run reported ok ran to its end, and a run with
** a far deadline is never hit by an interrupt meant for an earlier one. Outcomes are
** checked, never durations; every wait is bounded. Built and run in the normal, ASan and
** TSan builds (`--probe` only starts and exits: scripts/test asks whether TSan runs here).
*/
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "engine/binding.h"
#include "hersh.h"

#define WAIT_S 10.0      /* upper bound of one wait: reached only when broken */
#define STRESS_RUNS 10000 /* edge runs, Lua and C together */
#define EDGE_TIMEOUT 0.001
#define MAX_BUSY_US 4500 /* about one tick of the engine's coarse clock, plus a little */

static int64_t precise_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps ~1 ms; a signal cuts it short, which is what the callers wait for. */
static void nap(void) {
  struct timespec ts = {0, 1000000};
  nanosleep(&ts, NULL);
}

/* ---- the watchdog alone ----------------------------------------------------------- */

typedef struct probe {
  hersh_interrupt base;
  pthread_t armed_on;
  _Atomic int fires, fires_elsewhere, fires_disarmed;
  _Atomic bool armed; /* cleared right after each disarm */
} probe;

static void probe_fire(hersh_interrupt *self, uint64_t gen) {
  (void)gen;
  probe *p = (probe *)self;
  atomic_fetch_add(&p->fires, 1);
  if (!pthread_equal(pthread_self(), p->armed_on)) atomic_fetch_add(&p->fires_elsewhere, 1);
  if (!atomic_load(&p->armed)) atomic_fetch_add(&p->fires_disarmed, 1);
}

/* Waits (bounded) until the probe has fired n times in all. */
static bool wait_fires(probe *p, int n) {
  for (int64_t give_up = precise_ns() + (int64_t)(WAIT_S * 1e9); precise_ns() < give_up;) {
    if (atomic_load(&p->fires) >= n) return true;
    nap();
  }
  return false;
}

TEST(interrupt_runs_on_the_armed_thread) {
  hersh_watchdog *wd = hersh_watchdog_new();
  REQUIRE(wd != NULL);
  probe p = {.base.fire = probe_fire, .armed_on = pthread_self()};
  atomic_store(&p.armed, true);
  hersh_watchdog_arm(wd, &p.base, hersh_mono_ns()); /* due at once */
  CHECK(wait_fires(&p, 1));
  CHECK(hersh_watchdog_expired(wd));
  hersh_watchdog_disarm(wd);
  atomic_store(&p.armed, false);
  CHECK(!hersh_watchdog_expired(wd));
  CHECK_EQ_INT(atomic_load(&p.fires_elsewhere), 0);
  hersh_watchdog_free(wd);
}

/* Runs that end as their deadline passes: an interrupt may come while armed, never after. */
TEST(a_disarmed_run_is_never_interrupted) {
  hersh_watchdog *wd = hersh_watchdog_new();
  REQUIRE(wd != NULL);
  probe p = {.base.fire = probe_fire, .armed_on = pthread_self()};
  unsigned seed = 11;
  for (int i = 0; i < 2000; i++) {
    atomic_store(&p.armed, true);
    hersh_watchdog_arm(wd, &p.base, hersh_mono_ns());
    for (int64_t until = precise_ns() + rand_r(&seed) % 200000; precise_ns() < until;) {
    }
    hersh_watchdog_disarm(wd);
    atomic_store(&p.armed, false);
  }
  /* Give a straggler time to land: a far deadline keeps the watchdog busy elsewhere. */
  hersh_watchdog_arm(wd, &p.base, hersh_mono_ns() + 3600 * (int64_t)1000000000);
  atomic_store(&p.armed, false); /* armed for an hour: any fire now is for a disarmed run */
  for (int i = 0; i < 100; i++) nap();
  hersh_watchdog_disarm(wd);
  printf("  %d interrupts in 2000 runs\n", atomic_load(&p.fires));
  CHECK_EQ_INT(atomic_load(&p.fires_disarmed), 0);
  CHECK_EQ_INT(atomic_load(&p.fires_elsewhere), 0);
  hersh_watchdog_free(wd);
}

static _Atomic int foreign_calls;
static void foreign_handler(int sig) {
  (void)sig;
  atomic_fetch_add(&foreign_calls, 1);
}
static void foreign_action(int sig, siginfo_t *info, void *uctx) {
  (void)info, (void)uctx;
  foreign_handler(sig);
}

/* An embedder's own handler of the signal still hears it, and gets its place back. */
static void check_chained(bool siginfo) {
  struct sigaction mine = {.sa_flags = siginfo ? SA_SIGINFO : 0}, before, after;
  if (siginfo) mine.sa_sigaction = foreign_action;
  else mine.sa_handler = foreign_handler;
  sigemptyset(&mine.sa_mask);
  atomic_store(&foreign_calls, 0);
  REQUIRE(sigaction(SIGURG, &mine, &before) == 0);
  hersh_watchdog *wd = hersh_watchdog_new();
  REQUIRE(wd != NULL);
  REQUIRE(sigaction(SIGURG, NULL, &after) == 0);
  CHECK(after.sa_handler != foreign_handler && after.sa_sigaction != foreign_action); /* the engine's now */
  REQUIRE(pthread_kill(pthread_self(), SIGURG) == 0); /* delivered before it returns */
  CHECK_EQ_INT(atomic_load(&foreign_calls), 1);
  hersh_watchdog_free(wd);
  REQUIRE(sigaction(SIGURG, NULL, &after) == 0);
  if (siginfo) CHECK((after.sa_flags & SA_SIGINFO) && after.sa_sigaction == foreign_action);
  else CHECK(!(after.sa_flags & SA_SIGINFO) && after.sa_handler == foreign_handler);
  REQUIRE(sigaction(SIGURG, &before, NULL) == 0);
}

TEST(an_earlier_handler_is_chained_and_restored) {
  check_chained(false);
  check_chained(true);
}

/* ---- 10,000 runs through the public API ------------------------------------------- */

static hersh_decision keep_ready(int n, const char *err, const hersh_recovery *policy, void *ud) {
  (void)n, (void)err, (void)policy, (void)ud;
  return (hersh_decision){HERSH_ACT_RETRY, 3600}; /* the next message comes first */
}

static hersh_config stress_config(const char *id, double timeout) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  cfg.timeout = timeout;
  cfg.decide = keep_ready;
  return cfg;
}

/* A C reducer busy for the time its message says, polling for its deadline. */
typedef struct c_busy {
  bool saw_cancel, ran_out;
} c_busy;

static int c_busy_reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  c_busy *b = ud;
  *b = (c_busy){0};
  if (!msg) return HERSH_OK;
  int64_t end = precise_ns() + strtoll(msg->content, NULL, 10) * 1000;
  while (precise_ns() < end) {
    if (hersh_ctx_cancelled(ctx)) {
      b->saw_cancel = true;
      return HERSH_OK;
    }
  }
  b->ran_out = true;
  return HERSH_OK;
}

/* Lua reducers: "<us> <seq>" keeps the CPU busy that long (allocating, which is where
** TSan delivers signals), optionally inside pcall, then logs "done <seq>". */
static const char LUA_BUSY[] = "return function(msg, ctx)\n"
                               "  if not msg then return end\n"
                               "  local us, seq, guarded = msg.content:match('^(%d+) (%d+) (%a+)$')\n"
                               "  local stop, t = os.clock() + tonumber(us) / 1e6\n"
                               "  while os.clock() < stop do\n"
                               "    if guarded == 'pcall' then pcall(function() t = {} end) else t = {} end\n"
                               "  end\n"
                               "  ctx:log('done ' .. seq)\n"
                               "end\n";

typedef struct last_entry {
  char text[64];
  bool ok;
} last_entry;

static bool copy_result(const hersh_log_entry *e, void *ud) {
  last_entry *l = ud;
  l->ok = e->u.result.ok;
  snprintf(l->text, sizeof l->text, "%s", e->u.result.error ? e->u.result.error : "");
  return false;
}

static bool copy_effect(const hersh_log_entry *e, void *ud) {
  last_entry *l = ud;
  snprintf(l->text, sizeof l->text, "%s", e->u.effect.text);
  return false;
}

typedef struct result_wait {
  hersh_watcher *w;
  size_t before;
} result_wait;

static bool result_logged(void *ud) {
  result_wait *rw = ud;
  return hersh_watcher_log_count(rw->w, HERSH_LOG_RESULT) > rw->before;
}

/* Sends content and runs the loop until the run's result is logged; false if it never is. */
static bool one_run(hersh_loop *loop, hersh_watcher *w, const char *content, last_entry *result) {
  result_wait rw = {w, hersh_watcher_log_count(w, HERSH_LOG_RESULT)};
  if (hersh_watcher_send(w, content, strlen(content)) != HERSH_OK) return false;
  if (hersh_loop_run_until(loop, result_logged, &rw, WAIT_S) != 1) return false;
  *result = (last_entry){0};
  hersh_watcher_logs(w, HERSH_LOG_RESULT, 1, copy_result, result);
  return true;
}

static bool lua_done(hersh_watcher *w, int seq) {
  last_entry e = {0};
  char want[32];
  snprintf(want, sizeof want, "done %d", seq);
  hersh_watcher_logs(w, HERSH_LOG_EFFECT, 1, copy_effect, &e);
  return strcmp(e.text, want) == 0;
}

static bool start_ready(hersh_loop *loop, hersh_watcher *w) {
  result_wait rw = {w, 0};
  return hersh_watcher_start(w) == HERSH_OK && hersh_loop_run_until(loop, result_logged, &rw, WAIT_S) == 1;
}

typedef struct tally {
  int ok, timeout, late_ok; /* late_ok: ran to its end, reported "timeout" (ended past it) */
  int bad;                  /* inconsistent outcomes */
} tally;

TEST(ten_thousand_runs_at_the_edge_of_their_deadline) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop != NULL);
  hersh_watcher *lua_edge = NULL, *c_edge = NULL, *far = NULL;
  hersh_config cfg = stress_config("lua-edge", EDGE_TIMEOUT);
  REQUIRE(hersh_watcher_new(loop, &cfg, &lua_edge) == HERSH_OK);
  REQUIRE(hersh_watcher_manage_lua(lua_edge, LUA_BUSY, strlen(LUA_BUSY), "=busy") == HERSH_OK);
  cfg = stress_config("c-edge", EDGE_TIMEOUT);
  c_busy cb = {0};
  REQUIRE(hersh_watcher_new(loop, &cfg, &c_edge) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(c_edge, c_busy_reducer, &cb) == HERSH_OK);
  cfg = stress_config("far", 60);
  REQUIRE(hersh_watcher_new(loop, &cfg, &far) == HERSH_OK);
  REQUIRE(hersh_watcher_manage_lua(far, LUA_BUSY, strlen(LUA_BUSY), "=busy") == HERSH_OK);
  REQUIRE(start_ready(loop, lua_edge) && start_ready(loop, c_edge) && start_ready(loop, far));

  tally lua = {0}, c = {0};
  int far_bad = 0, lost = 0;
  unsigned seed = 7;
  char content[64];
  last_entry res;
  for (int i = 0; i < STRESS_RUNS && lost == 0; i++) {
    int us = rand_r(&seed) % MAX_BUSY_US;
    if (i % 2 == 0) {
      snprintf(content, sizeof content, "%d %d %s", us, i, i % 4 == 0 ? "pcall" : "plain");
      if (!one_run(loop, lua_edge, content, &res)) {
        lost++;
        break;
      }
      bool done = lua_done(lua_edge, i);
      if (res.ok && done) lua.ok++;
      else if (!res.ok && strcmp(res.text, "timeout") == 0) done ? lua.late_ok++ : lua.timeout++;
      else if (lua.bad++ < 5) printf("  lua run %d: ok=%d error=\"%s\" done=%d\n", i, res.ok, res.text, done);
      /* Right after it, a run with an hour to go: nothing of the run before may hit it. */
      snprintf(content, sizeof content, "%d %d plain", us % 50, i);
      if (!one_run(loop, far, content, &res)) {
        lost++;
        break;
      }
      if (!(res.ok && lua_done(far, i)) && far_bad++ < 5) printf("  far run %d: ok=%d error=\"%s\"\n", i, res.ok, res.text);
    } else {
      snprintf(content, sizeof content, "%d", us);
      if (!one_run(loop, c_edge, content, &res)) {
        lost++;
        break;
      }
      if (res.ok && !cb.saw_cancel && cb.ran_out) c.ok++;
      else if (!res.ok && strcmp(res.text, "timeout") == 0) cb.saw_cancel ? c.timeout++ : c.late_ok++;
      else if (c.bad++ < 5) printf("  C run %d: ok=%d error=\"%s\" saw_cancel=%d\n", i, res.ok, res.text, cb.saw_cancel);
    }
  }
  printf("  Lua: %d ok, %d cut short, %d ran out late; C: %d ok, %d cancelled, %d ran out late\n", lua.ok,
         lua.timeout, lua.late_ok, c.ok, c.timeout, c.late_ok);
  CHECK_EQ_INT(lost, 0);
  CHECK_EQ_INT(lua.bad, 0);
  CHECK_EQ_INT(c.bad, 0);
  CHECK_EQ_INT(far_bad, 0);
  /* Both sides of the edge were reached, or the test proved little. */
  CHECK(lua.ok > 0 && lua.timeout > 0 && c.ok > 0 && c.timeout > 0);
  hersh_watcher_stop(lua_edge);
  hersh_watcher_stop(c_edge);
  hersh_watcher_stop(far);
  hersh_watcher_free(lua_edge);
  hersh_watcher_free(c_edge);
  hersh_watcher_free(far);
  hersh_loop_free(loop);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--probe") == 0) return 0;
  RUN(interrupt_runs_on_the_armed_thread);
  RUN(a_disarmed_run_is_never_interrupted);
  RUN(an_earlier_handler_is_chained_and_restored);
  RUN(ten_thousand_runs_at_the_edge_of_their_deadline);
  return check_summary();
}
