/*
** The trace of runs through the public C API (docs/replay.md): the inputs a C reducer
** takes through the engine (hersh_ctx_now, hersh_ctx_random, hersh_ctx_random_int), the
** ring with its context snapshot, and hersh_watcher_trace / hersh_watcher_trace_write.
** Every wait is bounded; nothing is timed.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "check.h"
#include "hersh.h"

#define WAIT_S 30.0

typedef struct seen {
  bool now_stable, in_range, float_ok, empty_refused;
} seen;

static int dice(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  seen *s = ud;
  if (!msg) return HERSH_OK;
  double t = hersh_ctx_now(ctx);
  s->now_stable = t > 0 && hersh_ctx_now(ctx) == t;
  int64_t roll, all;
  s->in_range = hersh_ctx_random_int(ctx, 1, 6, &roll) == HERSH_OK && roll >= 1 && roll <= 6 &&
                hersh_ctx_random_int(ctx, INT64_MIN, INT64_MAX, &all) == HERSH_OK;
  double f = hersh_ctx_random(ctx);
  s->float_ok = f >= 0 && f < 1;
  s->empty_refused = hersh_ctx_random_int(ctx, 2, 1, &roll) == HERSH_E_INVAL;
  hersh_value v = hersh_str(msg->content);
  return hersh_ctx_set(ctx, "last", &v);
}

typedef struct lines {
  hersh_value items[16];
  size_t n;
} lines;

static bool collect(const char *line, size_t len, void *ud) {
  lines *l = ud;
  char err[128];
  if (l->n < 16 && len > 0 && line[len - 1] == '\n' && hersh_json_parse(line, len - 1, &l->items[l->n], err, sizeof err) == HERSH_OK)
    l->n++;
  return true;
}

static void lines_free(lines *l) {
  for (size_t i = 0; i < l->n; i++) hersh_value_free(&l->items[i]);
}

static bool drained(void *ud) {
  hersh_queue_counts c = hersh_watcher_pending(ud);
  return c.user == 0 && hersh_watcher_state(ud) == HERSH_READY;
}

static int64_t int_at(const hersh_value *map, const char *key) {
  const hersh_value *v = hersh_map_get(map, key);
  return v && v->type == HERSH_T_INT ? v->as.i : -1;
}

TEST(ring_keeps_the_last_runs_and_the_store_before_them) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "dice";
  cfg.trace_runs = 3;
  hersh_watcher *w;
  seen s = {0};
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(w, dice, &s) == HERSH_OK);
  REQUIRE(hersh_watcher_start(w) == HERSH_OK);
  const char *msgs[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 5; i++) REQUIRE(hersh_watcher_send(w, msgs[i], 1) == HERSH_OK);
  REQUIRE(hersh_loop_run_until(loop, drained, w, WAIT_S) == 1);
  CHECK(s.now_stable);
  CHECK(s.in_range);
  CHECK(s.float_ok);
  CHECK(s.empty_refused);

  lines l = {0};
  CHECK(hersh_watcher_trace(w, collect, &l) == HERSH_OK);
  REQUIRE(l.n == 4); /* the header and runs 4..6 (run 1 is init) */
  CHECK(int_at(&l.items[0], "hersh_trace") == 1);
  CHECK(int_at(&l.items[0], "from_run") == 4);
  CHECK(int_at(&l.items[0], "runs") == 3);
  const hersh_value *ctx = hersh_map_get(&l.items[0], "context");
  const hersh_value *last = ctx ? hersh_map_get(ctx, "last") : NULL;
  CHECK(last && last->type == HERSH_T_STR && strcmp(last->as.s.ptr, "b") == 0); /* as run 3 left it */
  const hersh_value *inputs = hersh_map_get(&l.items[3], "inputs");
  REQUIRE(inputs && inputs->type == HERSH_T_LIST);
  CHECK(hersh_value_len(inputs) == 4); /* now, two random ints, a float: a refused call records nothing */
  CHECK(hersh_map_get(hersh_list_at(inputs, 0), "now") != NULL);
  CHECK(int_at(&l.items[3], "run") == 6);
  lines_free(&l);

  CHECK(hersh_watcher_trace_write(w, "/nonexistent-dir/trace") == HERSH_E_SYS);
  CHECK(strstr(hersh_errmsg(), "/nonexistent-dir/trace") != NULL);
  CHECK(hersh_watcher_trace(w, NULL, NULL) == HERSH_E_INVAL);
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

TEST(no_trace_when_turned_off) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg;
  hersh_config_init(&cfg);
  CHECK(cfg.trace_runs == 1000);
  cfg.trace_runs = 0;
  hersh_watcher *w;
  seen s = {0};
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  REQUIRE(hersh_watcher_manage(w, dice, &s) == HERSH_OK);
  REQUIRE(hersh_watcher_start(w) == HERSH_OK);
  REQUIRE(hersh_watcher_send(w, "x", 1) == HERSH_OK);
  REQUIRE(hersh_loop_run_until(loop, drained, w, WAIT_S) == 1);
  CHECK(s.in_range); /* the inputs work unrecorded */
  lines l = {0};
  CHECK(hersh_watcher_trace(w, collect, &l) == HERSH_OK);
  CHECK(l.n == 1);
  CHECK(l.n == 1 && int_at(&l.items[0], "runs") == 0);
  lines_free(&l);
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

int main(void) {
  RUN(ring_keeps_the_last_runs_and_the_store_before_them);
  RUN(no_trace_when_turned_off);
  return check_summary();
}
