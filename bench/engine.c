/*
** bench/engine.c -- messages per second through the engine, beside a baseline
** measured in the same run: the same no-op Lua function called in a plain loop
** through lua_pcall with an equal message table. Each figure is the median of
** ROUNDS rounds. The runs through the engine are measured with the trace of runs off
** and on (the default ring, docs/replay.md), alternating within each round; that cost
** is also given in the loop thread's CPU time, which a loaded machine disturbs less
** (everything runs on that thread: the sends and the runs).
**
**   build-bench/bench_engine [messages]
*/
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hersh.h"

enum { ROUNDS = 5 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

static void die(const char *what) {
  fprintf(stderr, "bench_engine: %s: %s\n", what, hersh_errmsg());
  exit(1);
}

/* ---- the baseline ------------------------------------------------------------------- */

static double baseline(long n) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "return function(msg, ctx) end") != LUA_OK) die("baseline chunk");
  int fn = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newuserdatauv(L, 8, 1); /* stands for ctx */
  int ctx = luaL_ref(L, LUA_REGISTRYINDEX);
  const char *content = "tick";
  double t0 = now();
  for (long i = 0; i < n; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    lua_createtable(L, 0, 2);
    lua_pushlstring(L, content, 4);
    lua_setfield(L, -2, "content");
    lua_pushnumber(L, (double)i);
    lua_setfield(L, -2, "received_at");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ctx);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) die("baseline call");
    lua_pop(L, 1);
  }
  double t = now() - t0;
  lua_close(L);
  return (double)n / t;
}

/* ---- through the engine -------------------------------------------------------------- */

static long c_runs;

static int c_noop(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ctx, (void)msg, (void)ud;
  c_runs++;
  return HERSH_OK;
}

static bool drained(void *ud) {
  hersh_watcher *w = ud;
  hersh_queue_counts c = hersh_watcher_pending(w);
  return c.user == 0 && c.var == 0 && c.watcher == 0 && hersh_watcher_state(w) == HERSH_READY;
}

/* Messages per second: n sends, then the loop runs until every one is handled. */
static double through_engine(long n, bool lua, bool traced, double *cpu_rate) {
  hersh_loop *loop = hersh_loop_new();
  if (!loop) die("loop");
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.signal_capacity = (size_t)n;
  if (!traced) cfg.trace_runs = 0;
  hersh_watcher *w;
  if (hersh_watcher_new(loop, &cfg, &w)) die("watcher");
  const char *chunk = "return function(msg, ctx) end";
  int rc = lua ? hersh_watcher_manage_lua(w, chunk, strlen(chunk), "=bench") : hersh_watcher_manage(w, c_noop, NULL);
  if (rc || hersh_watcher_start(w)) die("manage/start");
  if (hersh_loop_run_until(loop, drained, w, 10) != 1) die("init run");
  double t0 = now(), c0 = cpu_now();
  for (long i = 0; i < n; i++)
    if (hersh_watcher_send(w, "tick", 4)) die("send");
  if (hersh_loop_run_until(loop, drained, w, 120) != 1) die("drain");
  double t = now() - t0;
  if (cpu_rate) *cpu_rate = (double)n / (cpu_now() - c0);
  hersh_watcher_free(w);
  hersh_loop_free(loop);
  return (double)n / t;
}

/* Var updates per second: n flow pushes, applied as one batch by one run. */
static hersh_flow *bench_flow;

static int register_flow(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)msg, (void)ud;
  hersh_watch_value v;
  return hersh_ctx_watch_flow(ctx, "price", NULL, &bench_flow, &v);
}

static double var_updates(long n) {
  hersh_loop *loop = hersh_loop_new();
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.signal_capacity = (size_t)n;
  hersh_watcher *w;
  if (!loop || hersh_watcher_new(loop, &cfg, &w) || hersh_watcher_manage(w, register_flow, NULL) ||
      hersh_watcher_start(w))
    die("var watcher");
  if (hersh_loop_run_until(loop, drained, w, 10) != 1) die("init run");
  double t0 = now();
  for (long i = 0; i < n; i++) {
    hersh_value v = hersh_int(i);
    if (hersh_flow_push(bench_flow, &v, NULL)) die("flow push");
  }
  if (hersh_loop_run_until(loop, drained, w, 120) != 1) die("drain");
  double t = now() - t0;
  hersh_watcher_free(w);
  hersh_loop_free(loop);
  return (double)n / t;
}

static void row(const char *name, double rate, const char *note) {
  printf("  %-52s %12.0f /s  %8.1f ns each  %s\n", name, rate, 1e9 / rate, note);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  if (n <= 0) {
    fprintf(stderr, "usage: bench_engine [messages]\n");
    return 2;
  }
  double base[ROUNDS], lua[ROUNDS], c[ROUNDS], vars[ROUNDS], lua_off[ROUNDS], c_off[ROUNDS];
  double cpu[4][ROUNDS]; /* Lua off, on; C off, on */
  for (int r = 0; r < ROUNDS; r++) {
    base[r] = baseline(n);
    lua_off[r] = through_engine(n, true, false, &cpu[0][r]);
    lua[r] = through_engine(n, true, true, &cpu[1][r]);
    c_off[r] = through_engine(n, false, false, &cpu[2][r]);
    c[r] = through_engine(n, false, true, &cpu[3][r]);
    vars[r] = var_updates(n);
  }
  double b = median(base, ROUNDS), l = median(lua, ROUNDS), cr = median(c, ROUNDS), v = median(vars, ROUNDS);
  double loff = median(lua_off, ROUNDS), coff = median(c_off, ROUNDS);
  double cpu_l = median(cpu[0], ROUNDS) / median(cpu[1], ROUNDS), cpu_c = median(cpu[2], ROUNDS) / median(cpu[3], ROUNDS);
  char note[128];
  printf("bench/engine: %ld messages per round, median of %d rounds\n", n, ROUNDS);
  row("baseline: lua_pcall of the no-op function", b, "");
  snprintf(note, sizeof note, "cost %.2fx the baseline (target <= 3x)", b / l);
  row("Lua reducer (no-op) through the engine", l, note);
  snprintf(note, sizeof note, "(target >= 2,000,000 /s)");
  row("C reducer (no-op) through the engine", cr, note);
  row("Lua reducer, trace off", loff, "");
  snprintf(note, sizeof note, "recording costs %.1f%% (target <= 15%%)", (loff / l - 1) * 100);
  row("Lua reducer, trace on (ring of 1,000 runs)", l, note);
  row("C reducer, trace off", coff, "");
  snprintf(note, sizeof note, "recording costs %.1f%% (target <= 15%%)", (coff / cr - 1) * 100);
  row("C reducer, trace on (ring of 1,000 runs)", cr, note);
  printf("  recording's cost in loop-thread CPU time: Lua reducer %.1f%%, C reducer %.1f%% (target <= 15%%)\n",
         (cpu_l - 1) * 100, (cpu_c - 1) * 100);
  row("batched var updates (flow pushes, one run)", v, "");
  return 0;
}
