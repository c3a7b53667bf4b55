/*
** Handle lifetimes (docs/architecture.md, "Shutdown order"). An embedder gives a watcher
** a Lua reducer through the public C API (hersh_watcher_manage_lua: the loop's own Lua
** state); the reducer opens what a program can (timers, sleeping polls and producers, a
** watcher of its own), and the embedder tears down in each order it may use, on a loop
** of hersh's and on one it wraps. Then the Host's case: a state made as the Host makes
** its own (it owns its loop) opens everything the Host can and is closed.
** Every scenario runs in a child process: under ASan a use-after-free or a leak ends the
** child with a report and a non-zero status, which the parent checks. No timing is
** asserted; every wait is bounded, and a child that hangs is killed by its PID.
*/
#include <errno.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "net.h"
#include "hersh.h"
#include "lua/lhersh.h" /* hersh_lua_prepare: a state made as the Host makes its own */

#define WAIT_S 30.0    /* upper bound of any wait in a child: reached only when broken */
#define CHILD_MAX_S 90 /* a child still running then has hung: it is killed */

/* How the embedder ends: the documented order, or a shortcut it may take. */
typedef enum teardown {
  STOP_FREE_LOOP, /* hersh_watcher_stop, hersh_watcher_free, hersh_loop_free */
  FREE_LOOP,      /* hersh_watcher_free on a live watcher (Killed), hersh_loop_free */
  STOP_LOOP,      /* hersh_watcher_stop, then hersh_loop_free frees the watcher */
  LOOP_ONLY,      /* hersh_loop_free with a live watcher on it */
  N_TEARDOWNS
} teardown;

static const char *const teardown_names[] = {"stop+free+loop_free", "free+loop_free", "stop+loop_free",
                                             "loop_free with a live watcher"};

/* ---- running a scenario in a child ------------------------------------------------- */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Runs fn(arg) in a child; true when the child exited 0 (no sanitizer report, no leak). */
static bool in_child(int (*fn)(int arg), int arg, const char *what) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    printf("  %s: fork: %s\n", what, strerror(errno));
    return false;
  }
  if (pid == 0) {
    alarm(0); /* the parent's alarm is the parent's */
    exit(fn(arg)); /* exit, not _exit: LeakSanitizer runs at exit */
  }
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 20) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      printf("  %s: waitpid: %s\n", what, strerror(errno));
      return false;
    }
    if (waited_ms >= CHILD_MAX_S * 1000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      printf("  %s: hung, killed\n", what);
      return false;
    }
    sleep_ms(20);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
  if (WIFEXITED(status)) printf("  %s: child exited %d\n", what, WEXITSTATUS(status));
  else printf("  %s: child killed by signal %d\n", what, WTERMSIG(status));
  return false;
}

/* ---- the embedder ------------------------------------------------------------------- */

static bool is_ready(void *ud) { return hersh_watcher_state(ud) == HERSH_READY; }

static int fail(const char *what) {
  fprintf(stderr, "lifetimes: %s: %s\n", what ? what : "?", hersh_errmsg());
  return 2;
}

/* What the reducers use: a loopback port that never accepts, and a temp dir. */
static int scenario_port;
static char scenario_dir[64];

/* A watcher on `loop` whose Lua reducer runs `init` (Lua statements, with `hersh`, `core`,
** `ctx`, PORT and DIR in scope) on its first run, started and run until Ready. */
static int start_lua(hersh_loop *loop, const char *init, hersh_watcher **out) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "lifetimes";
  if (hersh_watcher_new(loop, &cfg, out) != HERSH_OK) return fail("hersh_watcher_new");
  char chunk[4096];
  int n = snprintf(chunk, sizeof chunk,
                   "local hersh = require 'hersh'\n"
                   "local core = require 'hersh.core'\n"
                   "local PORT, DIR = %d, '%s'\n"
                   "return function(msg, ctx)\n"
                   "  if msg then return end\n"
                   "  %s\n"
                   "end\n",
                   scenario_port, scenario_dir, init);
  if (n < 0 || (size_t)n >= sizeof chunk) return fail("the chunk is too long");
  if (hersh_watcher_manage_lua(*out, chunk, (size_t)n, "=lifetimes") != HERSH_OK) return fail("manage_lua");
  if (hersh_watcher_start(*out) != HERSH_OK) return fail("hersh_watcher_start");
  if (hersh_loop_run_until(loop, is_ready, *out, WAIT_S) != 1) return fail("the watcher never got Ready");
  if (hersh_watcher_failures(*out) != 0) return fail("the reducer failed: the scenario did not happen");
  /* Turns for what the reducer started (a poll's first resume, a request's connect);
  ** the teardown must be safe at any point, so how far they got does not matter. */
  if (hersh_loop_run_for(loop, 0.2) != HERSH_OK) return fail("hersh_loop_run_for");
  return 0;
}

static int tear_down(hersh_loop *loop, hersh_watcher *w, teardown how) {
  if (how == STOP_FREE_LOOP || how == STOP_LOOP) {
    if (hersh_watcher_stop(w) != HERSH_OK) return fail("hersh_watcher_stop");
    if (hersh_watcher_state(w) != HERSH_STOPPED) return fail("not Stopped after hersh_watcher_stop");
  }
  if (how == STOP_FREE_LOOP || how == FREE_LOOP) hersh_watcher_free(w);
  hersh_loop_free(loop);
  return 0;
}

/* The Lua that the scenario's reducer runs on its first run. */
static const char *scenario_init;

static int run_scenario(int how) {
  hersh_loop *loop = hersh_loop_new();
  if (!loop) return fail("hersh_loop_new");
  hersh_watcher *w;
  int rc = start_lua(loop, scenario_init, &w);
  if (rc) return rc;
  return tear_down(loop, w, (teardown)how);
}

/* Runs the reducer `init` under every teardown order, each in its own child. */
static void each_teardown(const char *init) {
  scenario_init = init;
  for (int how = 0; how < N_TEARDOWNS; how++) CHECK(in_child(run_scenario, how, teardown_names[how]));
}

/* ---- scenarios: a C embedder's Lua reducer ------------------------------------------ */

TEST(timer_outlives_nothing) {
  each_teardown("core.timer(60, function() end)\n"
                "core.timer(60, function() end, 60)\n"
                "local t = core.timer(60, function() end); t:stop()");
}

/* A poll sleeping in hersh.sleep: a task with its handles and a registry reference,
** and the watch's own reference to its poll function (freed with the watcher). */
TEST(watch_call_with_a_sleeping_poll) {
  each_teardown("ctx:watch_call('slow', 0.01, function() hersh.sleep(60) return 1 end)\n"
                "ctx:watch_call('idle', 60, function() return 1 end)");
}

TEST(flow_producer_sleeping) {
  each_teardown("ctx:watch_flow('feed', function(emit) emit(1) hersh.sleep(60) end)");
}

/* A watcher the reducer made (Lua owns it), started and live at teardown. */
TEST(watcher_made_in_lua) {
  each_teardown("INNER = hersh.watcher{id = 'inner'}\n"
                "INNER:manage(function(m, c) if not m then c:watch_call('w', 0.01, function() hersh.sleep(60) end) end end)\n"
                "assert(INNER:start())");
}

/* Everything a program can open, on a loop the embedder owns (hersh_loop_wrap):
** hersh_loop_free closes what Lua opened, and the embedder's own uv_run finishes the
** closing with no Lua state left. uv_loop_close then finds no handle of ours. */
static const char everything[] =
    "core.timer(60, function() end)\n"
    "ctx:watch_call('slow', 0.01, function() hersh.sleep(60) return 1 end)\n"
    "ctx:watch_flow('feed', function(emit) emit(1) hersh.sleep(60) end)\n"
    "INNER = hersh.watcher{id = 'inner'}\n"
    "INNER:manage(function() end)\n"
    "assert(INNER:start())";

static int run_wrapped(int how) {
  uv_loop_t uv;
  if (uv_loop_init(&uv) != 0) return fail("uv_loop_init");
  hersh_loop *loop = hersh_loop_wrap(&uv);
  if (!loop) return fail("hersh_loop_wrap");
  hersh_watcher *w;
  int rc = start_lua(loop, everything, &w);
  if (rc) return rc;
  /* A stop on a wrapped loop is queued: run it to the end with uv_run of our own. */
  if (how == STOP_FREE_LOOP || how == STOP_LOOP) {
    if (hersh_watcher_stop(w) != HERSH_OK) return fail("hersh_watcher_stop");
    for (int i = 0; i < 10000 && hersh_watcher_state(w) != HERSH_STOPPED; i++) uv_run(&uv, UV_RUN_ONCE);
    if (hersh_watcher_state(w) != HERSH_STOPPED) return fail("not Stopped");
  }
  if (how == STOP_FREE_LOOP || how == FREE_LOOP) hersh_watcher_free(w);
  hersh_loop_free(loop);
  /* A child killed at teardown is reaped through its pidfd: bounded turns until done. */
  for (int i = 0; i < 100000 && uv_run(&uv, UV_RUN_NOWAIT) != 0; i++) sleep_ms(1);
  if (uv_loop_close(&uv) != 0) return fail("uv_loop_close: handles left open on the embedder's loop");
  return 0;
}

TEST(wrapped_loop_everything) {
  for (int how = 0; how < N_TEARDOWNS; how++) CHECK(in_child(run_wrapped, how, teardown_names[how]));
}

/* ---- scenarios: the Host's own Lua state (it owns its loop) --------------------------- */

/* Everything the Host opens, in a state made as the Host makes its own; the state
** closes with all of it live, or after the script closed it. */
static const char host_script[] =
    "local core, os_ = require 'hersh.core', require 'hersh.os'\n"
    "local http, httpd = require 'hersh.http', require 'hersh.httpd'\n"
    "local port, dir, close_first = ...\n"
    "local timer = core.timer(60, function() end)\n"
    "local sig = os_.on_signal('HUP', function() end)\n"
    "local p = assert(os_.spawn{argv = {'/bin/sleep', '60'}, on_exit = function() end})\n"
    "local fw = assert(os_.fs_watch(dir, function() end))\n"
    "assert(http.request({url = 'http://127.0.0.1:' .. port .. '/', timeout = 60}, function() end))\n"
    "local srv = assert(httpd.serve{bind = '127.0.0.1', port = 0, handler = function(req, res) end})\n"
    "local w = core.watcher{id = 'host'}\n"
    "w:manage(function(m, ctx) if not m then ctx:watch_call('slow', 0.01, function() core.sleep(60) end) end end)\n"
    "assert(w:start())\n"
    "core.run_for(0.2)\n"
    "if close_first then timer:stop(); fw:stop(); srv:close(); p:kill('KILL'); w:stop() end\n";

static int run_host(int close_first) {
  lua_State *L = luaL_newstate();
  if (!L) return fail("luaL_newstate");
  luaL_openlibs(L);
  hersh_lua_prepare(L, HERSH_LUA_HOST);
  int rc = 0;
  if (luaL_loadstring(L, host_script) != LUA_OK) {
    rc = fail(lua_tostring(L, -1));
  } else {
    lua_pushinteger(L, scenario_port);
    lua_pushstring(L, scenario_dir);
    lua_pushboolean(L, close_first);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) rc = fail(lua_tostring(L, -1));
  }
  lua_close(L); /* frees the loop too */
  return rc;
}

TEST(host_state_closes_with_everything_open) {
  CHECK(in_child(run_host, 0, "lua_close with everything open"));
  CHECK(in_child(run_host, 1, "lua_close after closing everything"));
}

/* ---- main ------------------------------------------------------------------------- */

int main(void) {
  int listener = net_listener(&scenario_port); /* never accepts */
  if (listener < 0) {
    printf("cannot listen on loopback: %s\n", strerror(errno));
    return 1;
  }
  strcpy(scenario_dir, "/tmp/hersh-lifetimes-XXXXXX");
  if (!mkdtemp(scenario_dir)) {
    printf("mkdtemp: %s\n", strerror(errno));
    close(listener);
    return 1;
  }
  RUN(timer_outlives_nothing);
  RUN(watch_call_with_a_sleeping_poll);
  RUN(flow_producer_sleeping);
  RUN(watcher_made_in_lua);
  RUN(wrapped_loop_everything);
  RUN(host_state_closes_with_everything_open);
  rmdir(scenario_dir);
  close(listener);
  return check_summary();
}
