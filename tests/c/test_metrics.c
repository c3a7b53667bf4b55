/*
** A watcher's run counters (src/engine/stats.c) after real runs of a C reducer, the
** Prometheus text writer (src/http/prom.c), and GET /watcher/metrics over loopback.
** Every wait is bounded; no test asserts how long something took.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "hersh.h"
#include "http/prom.h"

#define WAIT_S 30.0 /* upper bound of any wait: reached only when something is broken */

/* ---- the exposition writer ------------------------------------------------------------ */

static char *take(hersh_buf *b) {
  char *text = hersh_buf_take(b);
  return text ? text : strdup("(out of memory)");
}

TEST(label_values_and_help_are_escaped) {
  hersh_buf b = {0};
  hersh_prom_family(&b, "m_total", "counter", "back\\slash and\nnewline \"quoted\"");
  const hersh_prom_label labels[] = {{"watcher", "a\"b\\c\nd"}, {"bad", "x\xff" "y\xe2\x82"}, {"ok", "h\xc3\xa9"}};
  hersh_prom_sample(&b, "m_total", labels, 3, 7);
  char *text = take(&b);
  CHECK_EQ_STR(text, "# HELP m_total back\\\\slash and\\nnewline \"quoted\"\n"
                     "# TYPE m_total counter\n"
                     "m_total{watcher=\"a\\\"b\\\\c\\nd\",bad=\"x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\",ok=\"h\xc3\xa9\"} 7\n");
  free(text);
}

TEST(numbers_read_back_exactly) {
  hersh_buf b = {0};
  hersh_prom_sample(&b, "a", NULL, 0, 0.1);
  hersh_prom_sample(&b, "b", NULL, 0, 1e21);
  hersh_prom_sample(&b, "c", NULL, 0, 1.0 / 3.0);
  hersh_prom_sample(&b, "d", NULL, 0, INFINITY);
  hersh_prom_sample(&b, "e", NULL, 0, -INFINITY);
  hersh_prom_sample(&b, "f", NULL, 0, NAN);
  hersh_prom_sample(&b, "g", NULL, 0, 18446744073709551615.0);
  char *text = take(&b);
  CHECK_EQ_STR(text, "a 0.1\nb 1e+21\nc 0.33333333333333331\nd +Inf\ne -Inf\nf NaN\ng 1.8446744073709552e+19\n");
  free(text);
}

TEST(histogram_buckets_are_cumulative) {
  hersh_buf b = {0};
  const double bounds[] = {0.5, 1};
  const uint64_t counts[] = {2, 0, 3}; /* two <= 0.5, none in (0.5, 1], three above */
  const hersh_prom_label id[] = {{"watcher", "w"}};
  hersh_prom_histogram(&b, "d_seconds", id, 1, bounds, counts, 2, 12.5);
  char *text = take(&b);
  CHECK_EQ_STR(text, "d_seconds_bucket{watcher=\"w\",le=\"0.5\"} 2\n"
                     "d_seconds_bucket{watcher=\"w\",le=\"1\"} 2\n"
                     "d_seconds_bucket{watcher=\"w\",le=\"+Inf\"} 5\n"
                     "d_seconds_sum{watcher=\"w\"} 12.5\n"
                     "d_seconds_count{watcher=\"w\"} 5\n");
  free(text);
}

/* ---- the engine's counters -------------------------------------------------------------- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Messages: "fail" fails the run, "slow" outlives the run's deadline, "stop" stops. */
static int reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  int *runs = ud;
  ++*runs;
  if (!msg) return HERSH_OK;
  if (strcmp(msg->content, "fail") == 0) return hersh_fail(ctx, "failed on purpose");
  if (strcmp(msg->content, "slow") == 0) sleep_ms(300);
  if (strcmp(msg->content, "stop") == 0) return hersh_stop(ctx, "asked to");
  return HERSH_OK;
}

typedef struct goal {
  const int *runs;
  int n;
} goal;

static bool reached(void *ud) {
  const goal *g = ud;
  return *g->runs >= g->n;
}

typedef struct fx {
  hersh_loop *loop;
  hersh_watcher *w;
  int runs;
} fx;

static bool fx_open(fx *f, const char *id) {
  memset(f, 0, sizeof *f);
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  cfg.timeout = 0.1;
  cfg.recovery.base_delay = 600; /* no retry run during the test */
  cfg.recovery.light_delays[0] = 600;
  cfg.recovery.n_light_delays = 1;
  cfg.recovery.min_failures = 100;
  cfg.recovery.max_failures = 100;
  f->loop = hersh_loop_new();
  if (!f->loop) return printf("hersh_loop_new: %s\n", hersh_errmsg()), false;
  if (hersh_watcher_new(f->loop, &cfg, &f->w) != HERSH_OK) return printf("new: %s\n", hersh_errmsg()), false;
  if (hersh_watcher_manage(f->w, reducer, &f->runs) != HERSH_OK) return printf("manage: %s\n", hersh_errmsg()), false;
  return true;
}

static void fx_close(fx *f) {
  if (f->w) hersh_watcher_free(f->w);
  if (f->loop) hersh_loop_free(f->loop);
}

static bool send_all_and_wait(fx *f, const char *const *msgs, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (hersh_watcher_send(f->w, msgs[i], strlen(msgs[i])) != HERSH_OK) return false;
  goal g = {&f->runs, f->runs + (int)n};
  return hersh_loop_run_until(f->loop, reached, &g, WAIT_S) == 1;
}

static uint64_t all_runs(const hersh_run_stats *s) {
  uint64_t n = 0;
  for (int t = 0; t < HERSH_RUN_TRIGGERS; t++)
    for (int o = 0; o < HERSH_RUN_OUTCOMES; o++) n += s->runs[t][o];
  return n;
}

TEST(runs_are_counted_by_trigger_and_outcome) {
  fx f;
  REQUIRE(fx_open(&f, "counted"));
  REQUIRE(hersh_watcher_start(f.w) == HERSH_OK);
  goal init = {&f.runs, 1};
  REQUIRE(hersh_loop_run_until(f.loop, reached, &init, WAIT_S) == 1);
  const char *const msgs[] = {"a", "b", "fail", "c", "slow", "d"};
  REQUIRE(send_all_and_wait(&f, msgs, sizeof msgs / sizeof *msgs));
  hersh_snapshot snap;
  REQUIRE(hersh_watcher_snapshot(f.w, &snap) == HERSH_OK);
  CHECK(snap.on_loop);
  const hersh_run_stats *s = &snap.runs;
  CHECK_EQ_INT(s->runs[HERSH_RUN_INIT][HERSH_RUN_OK], 1);
  CHECK_EQ_INT(s->runs[HERSH_RUN_MESSAGE][HERSH_RUN_OK], 4);
  CHECK_EQ_INT(s->runs[HERSH_RUN_MESSAGE][HERSH_RUN_FAILED], 1);
  CHECK_EQ_INT(s->runs[HERSH_RUN_MESSAGE][HERSH_RUN_TIMEOUT], 1);
  CHECK_EQ_INT(all_runs(s), 7);
  CHECK_EQ_INT(s->duration_count, 7);
  uint64_t in_buckets = 0;
  for (int i = 0; i <= HERSH_RUN_BUCKETS; i++) in_buckets += s->duration_buckets[i];
  CHECK_EQ_INT(in_buckets, 7);
  /* the slow run slept 0.3 s: it is in a bucket above 0.25 s, and in the sum */
  uint64_t above = 0;
  for (int i = 0; i <= HERSH_RUN_BUCKETS; i++)
    if (i == HERSH_RUN_BUCKETS || hersh_run_bucket_bounds[i] > 0.25) above += s->duration_buckets[i];
  CHECK(above >= 1);
  CHECK(s->duration_sum >= 0.3);

  const char *const stop[] = {"stop"};
  REQUIRE(send_all_and_wait(&f, stop, 1));
  REQUIRE(hersh_watcher_snapshot(f.w, &snap) == HERSH_OK);
  CHECK_EQ_INT(snap.runs.runs[HERSH_RUN_MESSAGE][HERSH_RUN_STOPPED], 1);
  CHECK_EQ_INT(snap.runs.duration_count, 8);
  fx_close(&f);
}

TEST(names_of_triggers_and_outcomes) {
  CHECK_EQ_STR(hersh_run_trigger_name(HERSH_RUN_MESSAGE), "message");
  CHECK_EQ_STR(hersh_run_trigger_name(HERSH_RUN_VARS), "vars");
  CHECK_EQ_STR(hersh_run_outcome_name(HERSH_RUN_TIMEOUT), "timeout");
  CHECK_EQ_STR(hersh_run_outcome_name(HERSH_RUN_OUTCOMES), "unknown");
  for (int i = 1; i < HERSH_RUN_BUCKETS; i++) CHECK(hersh_run_bucket_bounds[i] > hersh_run_bucket_bounds[i - 1]);
}

/* ---- GET /watcher/metrics ------------------------------------------------------------ */

/* One GET on a fresh connection; the whole answer (headers and body), malloc'd. */
static char *http_get(int port, const char *path) {
  int fd = net_connect(port, (int)WAIT_S);
  if (fd < 0) return NULL;
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return NULL;
  }
  hersh_buf b = {0};
  char chunk[4096];
  ssize_t k;
  while ((k = recv(fd, chunk, sizeof chunk, 0)) > 0) hersh_buf_put(&b, chunk, (size_t)k);
  close(fd);
  return hersh_buf_take(&b);
}

TEST(the_route_answers_prometheus_text) {
  fx f;
  REQUIRE(fx_open(&f, "served \"one\""));
  hersh_api_options o;
  hersh_api_options_init(&o);
  o.port = 0;
  REQUIRE(hersh_watcher_serve(f.w, &o) == HERSH_OK);
  int port = hersh_watcher_api_port(f.w);
  REQUIRE(port > 0);
  REQUIRE(hersh_watcher_start(f.w) == HERSH_OK);
  goal init = {&f.runs, 1};
  REQUIRE(hersh_loop_run_until(f.loop, reached, &init, WAIT_S) == 1);
  const char *const msgs[] = {"a", "fail", "b"};
  REQUIRE(send_all_and_wait(&f, msgs, 3));
  /* the HTTP thread answers from what the loop published: the loop need not run */
  char *res = http_get(port, "/watcher/metrics");
  REQUIRE(res);
  CHECK(strncmp(res, "HTTP/1.1 200", 12) == 0);
  CHECK(strstr(res, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
  static const char *const want[] = {
      "# TYPE hersh_watcher_runs_total counter\n",
      "hersh_watcher_runs_total{watcher=\"served \\\"one\\\"\",trigger=\"init\",outcome=\"ok\"} 1\n",
      "hersh_watcher_runs_total{watcher=\"served \\\"one\\\"\",trigger=\"message\",outcome=\"ok\"} 2\n",
      "hersh_watcher_runs_total{watcher=\"served \\\"one\\\"\",trigger=\"message\",outcome=\"failed\"} 1\n",
      "hersh_watcher_failed_runs_total{watcher=\"served \\\"one\\\"\"} 1\n",
      "hersh_watcher_run_duration_seconds_count{watcher=\"served \\\"one\\\"\"} 4\n",
      "hersh_watcher_run_duration_seconds_bucket{watcher=\"served \\\"one\\\"\",le=\"+Inf\"} 4\n",
      "hersh_watcher_state{watcher=\"served \\\"one\\\"\",state=\"Ready\"} 1\n",
      "hersh_watcher_consecutive_failures{watcher=\"served \\\"one\\\"\"} 0\n",
      "hersh_watcher_queue_depth{watcher=\"served \\\"one\\\"\",queue=\"user\"} 0\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (!strstr(res, want[i])) {
      CHECK(!"a line is missing");
      printf("missing: %s", want[i]);
    }
  free(res);
  res = http_get(port, "/watcher/metrics?x=1");
  REQUIRE(res);
  CHECK(strncmp(res, "HTTP/1.1 200", 12) == 0);
  free(res);
  fx_close(&f);
}

int main(void) {
  RUN(label_values_and_help_are_escaped);
  RUN(numbers_read_back_exactly);
  RUN(histogram_buckets_are_cumulative);
  RUN(runs_are_counted_by_trigger_and_outcome);
  RUN(names_of_triggers_and_outcomes);
  RUN(the_route_answers_prometheus_text);
  return check_summary();
}
