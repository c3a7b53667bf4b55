/*
** main.c -- the hersh executable.
**
**   hersh run FILE.lua [--port N] [--bind ADDR] [--record TRACE] [ARGS...]
**   hersh host [--bind ADDR] [--port N] [--storage DIR] [--token-file FILE] ...
**   hersh version
**   hersh COMMAND ...   (deploy, ps, logs, ...: the client of a Host, lua/cli/main.lua)
**
** `run` executes the script, which creates and starts watchers; the first watcher it
** creates serves the WatcherAPI (on --port/--bind, or on the listening socket inherited
** as fd 3 with LISTEN_FDS=1, or on a unix socket it makes at $HERSH_LISTEN_UNIX). It
** drives the loop until every watcher is terminal.
** SIGTERM or SIGINT stops every watcher (cleanup runs; on an inherited socket its
** WatcherAPI takes no new connection from then on); a second one kills them.
** Every failed run, cleanup and watch, and every crash, is printed to stderr as it
** happens (hersh_loop_on_report; the format is in docs/lua-api.md).
** Exit status: 0 after normal stops, 1 if a watcher ended Killed or Crashed, 2 for a
** usage error or a script that fails to load or run.
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "hersh.h"
#include "http/curl.h"
#include "lua/lhersh.h"
#include "proc/proc.h"

enum { EXIT_STOPPED = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

static int usage(void) {
  fprintf(stderr, "usage: hersh run FILE.lua [--port N] [--bind ADDR] [--record TRACE] [ARGS...] (hersh run --help)\n");
  return EXIT_USAGE;
}

static int cmd_version(void) {
  const char *curl = hersh_curl_load() == HERSH_OK ? curl_version_info(CURLVERSION_NOW)->version : "not found";
  printf("hersh %s (%s, libuv %s, libmicrohttpd %s, libcurl %s)\n", HERSH_VERSION, LUA_RELEASE,
         uv_version_string(), MHD_get_version(), curl);
  return 0;
}

typedef struct run_options {
  const char *file;
  const char *bind;
  long port;
  int listen_fd;
  char unix_path[sizeof ((struct sockaddr_un *)0)->sun_path]; /* HERSH_LISTEN_UNIX's, for the announce */
  const char *record; /* --record: the first watcher's whole trace goes there (docs/replay.md) */
  const char **args; /* the script's own arguments, arg[1..n_args] */
  int n_args;
} run_options;

/* The WatcherAPI serves a socket the next process serves too (an update in place). */
static bool hands_socket_on;

/* A listening socket handed over as systemd does: LISTEN_FDS=1 (and LISTEN_PID, if
** set, naming us) means fd 3. It is taken once: children do not inherit it. */
static int inherited_socket(void) {
  const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
  if (!fds || strcmp(fds, "1") != 0) return -1;
  if (pid && atol(pid) != (long)getpid()) return -1;
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (getsockopt(3, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) {
    fprintf(stderr, "hersh: LISTEN_FDS=1 but fd 3 is not a listening socket\n");
    return -2;
  }
  if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0) fprintf(stderr, "hersh: cannot set FD_CLOEXEC on fd 3: %s\n", strerror(errno));
  return 3;
}

/* A sandbox that cannot hand over a socket (gVisor) names a path instead:
** HERSH_LISTEN_UNIX=/dev/hersh/api.sock, a directory the Host relays its port to.
** -1 when not asked, -2 (said) when the socket cannot be made. Taken once, as above;
** the path is kept in `path` (the variable is gone after). */
static int unix_socket(char path[static sizeof ((struct sockaddr_un *)0)->sun_path]) {
  const char *env = getenv("HERSH_LISTEN_UNIX");
  if (!env) return -1;
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (!*env || strlen(env) >= sizeof addr.sun_path) {
    fprintf(stderr, "hersh: HERSH_LISTEN_UNIX wants a path of 1 to %zu bytes\n", sizeof addr.sun_path - 1);
    return -2;
  }
  strcpy(addr.sun_path, env);
  strcpy(path, env);
  unsetenv("HERSH_LISTEN_UNIX");
  (void)unlink(addr.sun_path); /* a socket left by an earlier run of the program */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 128) != 0) {
    fprintf(stderr, "hersh: cannot listen on %s: %s\n", addr.sun_path, strerror(errno));
    if (fd >= 0) close(fd);
    return -2;
  }
  return fd;
}

/* Options may come before or after FILE; what is left after FILE is the script's
** (and everything after "--"). */
static int parse_run(int argc, char **argv, run_options *o) {
  *o = (run_options){.bind = "127.0.0.1", .port = 8080, .listen_fd = -1};
  o->args = calloc((size_t)argc, sizeof *o->args);
  if (!o->args) return -1;
  bool options = true;
  for (int i = 2; i < argc; i++) {
    if (options && strcmp(argv[i], "--") == 0) {
      options = false;
    } else if (options && strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
      char *end;
      o->port = strtol(argv[++i], &end, 10);
      if (!*argv[i] || *end || o->port < 0 || o->port > 65535) {
        fprintf(stderr, "hersh: --port wants 0..65535, not '%s'\n", argv[i]);
        return -1;
      }
    } else if (options && strcmp(argv[i], "--bind") == 0 && i + 1 < argc) {
      o->bind = argv[++i];
      unsigned char addr[16];
      if (inet_pton(AF_INET, o->bind, addr) != 1 && inet_pton(AF_INET6, o->bind, addr) != 1) {
        fprintf(stderr, "hersh: --bind wants an IPv4 or IPv6 address, not '%s'\n", o->bind);
        return -1;
      }
    } else if (options && strcmp(argv[i], "--record") == 0 && i + 1 < argc) {
      o->record = argv[++i];
    } else if (options && strncmp(argv[i], "--", 2) == 0) {
      fprintf(stderr, "hersh: unknown option '%s'\n", argv[i]);
      return -1;
    } else if (!o->file) {
      o->file = argv[i];
    } else {
      o->args[o->n_args++] = argv[i];
    }
  }
  if (!o->file) return -1;
  o->listen_fd = inherited_socket();
  hands_socket_on = o->listen_fd >= 0;
  if (o->listen_fd == -1) o->listen_fd = unix_socket(o->unix_path);
  return o->listen_fd == -2 ? -1 : 0;
}

/* A Lua state with the standard libraries and the modules of `role` ready to require. */
static lua_State *new_state(hersh_lua_role role) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "hersh: cannot create a Lua state\n");
    return NULL;
  }
  luaL_openlibs(L);
  hersh_lua_prepare(L, role);
  return L;
}

/* A usage error (a table with a `usage` text, from lua/hersh/init.lua) passes as is:
** it is the command line's fault, not the script's, so it gets no traceback. */
static int traceback(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "usage") == LUA_TSTRING) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_traceback(L, L, luaL_tolstring(L, 1, NULL), 1);
  return 1;
}

/* listen_failure(bind, port): why the runner cannot listen there (nil if it can now),
** for the usage error when its WatcherAPI does not start. */
static int l_listen_failure(lua_State *L) {
  const char *bind = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2), fd, bound;
  if (hersh_listen_tcp(bind, port, &fd, &bound) == HERSH_OK) {
    (void)close(fd); /* only a probe: nothing was written to it */
    return 0;
  }
  lua_pushstring(L, hersh_errmsg());
  return 1;
}

/* One report per write, so lines from a supervisor's other streams do not cut into
** it; stderr is unbuffered. */
static void print_report(const hersh_report *r, void *ud) {
  (void)ud;
  fprintf(stderr, "hersh: %s\n", r->line);
}

/* Before the script runs: the state's loop (hersh.core) with the log callback (the
** script may drive the loop itself), and the runner's WatcherAPI options for
** core.runner_api(). */
static int prepare_runner(lua_State *L) {
  const run_options *o = lua_touserdata(L, 1);
  luaL_requiref(L, "hersh.core", luaopen_hersh_core, 0);
  if (hersh_loop_on_report(hersh_lmod_get(L)->loop, print_report, NULL) != HERSH_OK)
    return luaL_error(L, "%s", hersh_errmsg());
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, o->port);
  lua_setfield(L, -2, "port");
  lua_pushstring(L, o->bind);
  lua_setfield(L, -2, "bind");
  if (o->listen_fd >= 0) {
    lua_pushinteger(L, o->listen_fd);
    lua_setfield(L, -2, "fd");
  }
  if (o->unix_path[0]) {
    lua_pushstring(L, o->unix_path);
    lua_setfield(L, -2, "unix");
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "announce");
  if (o->record) {
    lua_pushstring(L, o->record);
    lua_setfield(L, -2, "record");
  }
  lua_pushcfunction(L, l_listen_failure);
  lua_setfield(L, -2, "listen_failure");
  hersh_lmod_set_runner_api(L);
  return 0;
}

/* ---- signals ------------------------------------------------------------------------ */

static int signals_seen;

/* What watches the signals, and the drain that may come before the stop. */
typedef struct signal_watch {
  hersh_loop *loop;
  uv_signal_t sigs[2];
  uv_timer_t drain;
  uint64_t drain_until; /* uv_now, ms */
} signal_watch;

/* On a shared socket the first signal waits (bounded) until each WatcherAPI has
** answered and closed the connections it took: a message one of them brings still
** reaches a watcher that takes it. */
enum { DRAIN_POLL_MS = 5, DRAIN_MAX_MS = 2000 };

static void end_watcher(hersh_watcher *w, void *ud) {
  (void)ud;
  if (hersh_state_terminal(hersh_watcher_state(w))) return;
  if (signals_seen == 1) hersh_watcher_stop(w); /* queued: cleanup runs */
  else hersh_watcher_kill(w, "second signal");
}

static void count_open(hersh_watcher *w, void *ud) { *(unsigned *)ud += hersh_watcher_api_quiesce(w); }

/* Each WatcherAPI takes no new connection (the next process on the socket gets them);
** once those they had are closed, or at the bound, the watchers stop. */
static void on_drain(uv_timer_t *t) {
  signal_watch *sw = t->data;
  unsigned open = 0;
  hersh_loop_watchers(sw->loop, count_open, &open);
  if (open && uv_now(t->loop) < sw->drain_until) return;
  uv_timer_stop(t);
  hersh_loop_watchers(sw->loop, end_watcher, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  signal_watch *sw = h->data;
  signals_seen++;
  fprintf(stderr, "hersh: %s: %s\n", strsignal(signum), signals_seen == 1 ? "stopping" : "killing");
  if (signals_seen == 1 && hands_socket_on) {
    sw->drain_until = uv_now(h->loop) + DRAIN_MAX_MS;
    if (uv_timer_start(&sw->drain, on_drain, 0, DRAIN_POLL_MS) == 0) return;
  }
  uv_timer_stop(&sw->drain);
  hersh_loop_watchers(sw->loop, end_watcher, NULL);
}

/* Started before the script runs: a script that drives the loop itself (hersh.run())
** must stop its watchers on SIGTERM too, not die with requests in flight. */
static int watch_signals(hersh_loop *loop, signal_watch *sw) {
  uv_loop_t *uv = hersh_loop_uv(loop);
  sw->loop = loop;
  int rc = uv_timer_init(uv, &sw->drain);
  if (rc != 0) {
    fprintf(stderr, "hersh: cannot make the drain timer: %s\n", uv_strerror(rc));
    return -1;
  }
  sw->drain.data = sw;
  uv_unref((uv_handle_t *)&sw->drain); /* the watchers keep the program running, not it */
  int which[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    rc = uv_signal_init(uv, &sw->sigs[i]);
    if (rc == 0) {
      sw->sigs[i].data = sw;
      uv_unref((uv_handle_t *)&sw->sigs[i]); /* signals alone do not keep the program running */
      rc = uv_signal_start(&sw->sigs[i], on_signal, which[i]);
      if (rc != 0) uv_close((uv_handle_t *)&sw->sigs[i], NULL);
    }
    if (rc != 0) {
      fprintf(stderr, "hersh: cannot watch %s: %s\n", strsignal(which[i]), uv_strerror(rc));
      for (int j = 0; j < i; j++) uv_close((uv_handle_t *)&sw->sigs[j], NULL);
      uv_close((uv_handle_t *)&sw->drain, NULL);
      return -1;
    }
  }
  return 0;
}

/* Closing L frees the loop, which lets the handles finish closing. */
static void unwatch_signals(signal_watch *sw) {
  for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&sw->sigs[i], NULL);
  uv_close((uv_handle_t *)&sw->drain, NULL);
}

/* The script (or the runner's preparation) raised: says why, closes L. */
static int script_failed(lua_State *L) {
  if (lua_istable(L, -1)) { /* a usage error, as the handler let it through */
    lua_getfield(L, -1, "usage");
    fprintf(stderr, "hersh run: %s\n", lua_tostring(L, -1));
  } else {
    fprintf(stderr, "hersh: %s\n", lua_tostring(L, -1));
  }
  lua_close(L);
  return EXIT_USAGE;
}

static int cmd_run(int argc, char **argv) {
  run_options o;
  if (parse_run(argc, argv, &o) != 0) {
    free(o.args);
    return usage();
  }
  lua_State *L = new_state(HERSH_LUA_PROGRAM);
  if (!L) return EXIT_USAGE;
  lua_createtable(L, o.n_args, 1);
  lua_pushstring(L, o.file);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < o.n_args; i++) {
    lua_pushstring(L, o.args[i]);
    lua_rawseti(L, -2, i + 1);
  }
  free(o.args);
  lua_setglobal(L, "arg");
  int status = EXIT_STOPPED;
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, prepare_runner);
  lua_pushlightuserdata(L, &o);
  signal_watch sw;
  if (lua_pcall(L, 1, 0, 1) != LUA_OK) return script_failed(L);
  if (watch_signals(hersh_lmod_get(L)->loop, &sw) != 0) {
    lua_close(L);
    return EXIT_USAGE;
  }
  if (luaL_loadfile(L, o.file) != LUA_OK || lua_pcall(L, 0, 0, 1) != LUA_OK) {
    unwatch_signals(&sw);
    return script_failed(L);
  }
  hersh_lmod *m = hersh_lmod_get(L);
  if (hersh_loop_run(m->loop) != HERSH_OK) {
    fprintf(stderr, "hersh: %s\n", hersh_errmsg());
    status = EXIT_FAILED;
  }
  size_t killed, crashed;
  hersh_loop_outcomes(m->loop, NULL, &killed, &crashed);
  if (killed || crashed) status = EXIT_FAILED;
  unwatch_signals(&sw);
  lua_close(L);
  return status;
}

/* Runs `script` (a Lua main of the Host's role) with `...` = argv[first..] as a list and
** the value on the top of L's stack; closes L. Its exit status, or EXIT_USAGE when it
** cannot load or raises (said on stderr, after `who`). */
static int run_lua_main(lua_State *L, const char *who, const char *script, int argc, char **argv, int first) {
  int extra = lua_gettop(L);
  lua_pushcfunction(L, traceback);
  int handler = lua_gettop(L);
  int status = EXIT_USAGE;
  if (luaL_loadstring(L, script) == LUA_OK) {
    lua_createtable(L, argc - first, 0);
    for (int i = first; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i - first + 1);
    }
    lua_pushvalue(L, extra);
    if (lua_pcall(L, 2, 1, handler) == LUA_OK) status = (int)lua_tointeger(L, -1);
    else fprintf(stderr, "%s: %s\n", who, lua_tostring(L, -1));
  } else {
    fprintf(stderr, "%s: %s\n", who, lua_tostring(L, -1));
  }
  lua_close(L);
  return status;
}

/* The Host is Lua (lua/host/main.lua); this hands it its arguments and the path of
** this executable, which sandboxes of FROM hersh images run. */
static int cmd_host(int argc, char **argv) {
  lua_State *L = new_state(HERSH_LUA_HOST);
  if (!L) return EXIT_USAGE;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  lua_pushstring(L, exe);
  return run_lua_main(L, "hersh host",
                      "local args, exe = ...\n"
                      "return require('host.main').run(args, exe ~= '' and exe or nil)\n",
                      argc, argv, 2);
}

/* Every other command, and --help of any, is the client's (lua/cli): its parser is
** the one source of the help texts, the man page and the completions. */
static int cmd_client(int argc, char **argv) {
  lua_State *L = new_state(HERSH_LUA_HOST);
  if (!L) return EXIT_USAGE;
  lua_pushboolean(L, isatty(STDOUT_FILENO));
  return run_lua_main(L, "hersh", "local args, tty = ...\nreturn require('cli.main').run(args, {tty = tty})\n",
                      argc, argv, 1);
}

static bool asks_help(int argc, char **argv) {
  return argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
}

int main(int argc, char **argv) {
  if (argc >= 2 && !asks_help(argc, argv)) {
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc, argv);
    if (strcmp(argv[1], "host") == 0) return cmd_host(argc, argv);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) return cmd_version();
  }
  return cmd_client(argc, argv);
}
