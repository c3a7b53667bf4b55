/*
** lproc.c -- hersh.Process: child processes for Lua (hersh.os.spawn), and the listening
** sockets handed to them (listen, relisten, close_fd), answered on
** while no process serves them (answer_unavailable) or relayed to a program's unix
** socket (relay). A running process keeps its
** userdata alive; on_exit(code, signal, oom_killed) is called on the loop thread the moment the
** child exits, and what followed it (pidfd, pipes, log file) is released then.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/relay.h"
#include "http/unavailable.h"
#include "lhersh.h"
#include "proc/proc.h"

typedef struct lproc {
  hersh_proc *p; /* NULL once the process has exited */
  hersh_lmod *m;
  int self_ref, on_exit_ref, on_line_ref;
  bool exited;
  int pid, code, signal;
} lproc;

#define check_lproc(L, i) ((lproc *)luaL_checkudata((L), (i), HERSH_PROCESS_MT))

/* ---- callbacks from the process ------------------------------------------------------- */

static void call_lua(lproc *lp, int ref, int nargs) {
  lua_State *L = lp->m->L;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_rotate(L, -2 - nargs, 2); /* handler and function below the arguments */
  if (hersh_lua_pcall(lp->m, L, nargs, 0, 0) != HERSH_LUA_OK) {
    fprintf(stderr, "hersh: process callback: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* the handler */
}

static void proc_exited(hersh_proc *p, int code, int signal, void *ud) {
  lproc *lp = ud;
  lua_State *L = lp->m->L;
  lp->exited = true;
  lp->code = code;
  lp->signal = signal;
  if (lp->on_exit_ref != LUA_NOREF && lua_checkstack(L, 6)) {
    if (code >= 0) lua_pushinteger(L, code);
    else lua_pushnil(L);
    if (signal) lua_pushinteger(L, signal);
    else lua_pushnil(L);
    lua_pushboolean(L, hersh_proc_oom_kills(p) > 0);
    call_lua(lp, lp->on_exit_ref, 3);
  }
  /* Its pidfd, pipes and log file go now, not when the collector gets to the
  ** userdata: a Host that restarts programs would pile them up meanwhile. */
  hersh_proc_free(lp->p);
  lp->p = NULL;
  /* No callback comes after this: dropping them now also frees a process whose
  ** callbacks hold it (the registry would keep them, and them it, for ever). */
  luaL_unref(L, LUA_REGISTRYINDEX, lp->on_exit_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->on_line_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->self_ref); /* collectable once Lua drops it */
  lp->on_exit_ref = lp->on_line_ref = lp->self_ref = LUA_NOREF;
}

static void proc_line(hersh_proc *p, int stream, const char *line, size_t len, void *ud) {
  (void)p;
  lproc *lp = ud;
  lua_State *L = lp->m->L;
  if (lp->on_line_ref == LUA_NOREF || !lua_checkstack(L, 6)) return;
  lua_pushstring(L, stream == HERSH_STDERR ? "stderr" : "stdout");
  lua_pushlstring(L, line, len);
  call_lua(lp, lp->on_line_ref, 2);
}

/* ---- core.spawn -------------------------------------------------------------------------- */

/* A NULL-terminated array of the strings in the list at idx, in a userdata pushed on
** the stack (the strings stay anchored in the list). */
static const char **string_array(lua_State *L, int idx, const char *what) HERSH_MAY_RAISE {
  idx = lua_absindex(L, idx);
  lua_Integer n = luaL_len(L, idx);
  const char **a = lua_newuserdatauv(L, ((size_t)n + 1) * sizeof *a, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING) luaL_error(L, "%s[%d] must be a string", what, (int)i);
    a[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  a[n] = NULL;
  return a;
}

/* env as {"K=V", ...} or {K = "V"}: made into a list of "K=V" strings first. */
static const char **env_array(lua_State *L, int opts) HERSH_MAY_RAISE {
  if (lua_getfield(L, opts, "env") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, -1, LUA_TTABLE);
  int env = lua_gettop(L);
  lua_newtable(L);
  int list = lua_gettop(L);
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      lua_pushfstring(L, "%s=%s", k, luaL_checkstring(L, -1));
    } else {
      lua_pushvalue(L, -1);
    }
    lua_rawseti(L, list, ++n);
    lua_pop(L, 1);
  }
  return string_array(L, list, "env");
}

static double opt_number(lua_State *L, int t, const char *name, double def) HERSH_MAY_RAISE {
  double v = def;
  if (lua_getfield(L, t, name) != LUA_TNIL) v = luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.spawn{argv, env, cwd, uid, gid, fds = {[3] = fd}, log, log_max, log_keep, tail,
** limits, cgroup, on_exit, on_line} -> process | nil, err, code */
static int l_proc_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  hersh_proc_options o;
  hersh_proc_options_init(&o);
  lua_getfield(L, 1, "argv");
  luaL_checktype(L, -1, LUA_TTABLE);
  o.argv = string_array(L, -1, "argv");
  if (!o.argv[0]) return luaL_error(L, "spawn: argv is empty");
  o.envp = env_array(L, 1);
  if (lua_getfield(L, 1, "cwd") != LUA_TNIL) o.cwd = luaL_checkstring(L, -1);
  if (lua_getfield(L, 1, "log") != LUA_TNIL) o.log_path = luaL_checkstring(L, -1);
  if (lua_getfield(L, 1, "cgroup") != LUA_TNIL) o.cgroup_name = luaL_checkstring(L, -1);
  o.log_max = (size_t)opt_number(L, 1, "log_max", (double)o.log_max);
  o.log_keep = (int)opt_number(L, 1, "log_keep", o.log_keep);
  o.tail_lines = (size_t)opt_number(L, 1, "tail", (double)o.tail_lines);
  o.uid = (int)opt_number(L, 1, "uid", -1);
  o.gid = (int)opt_number(L, 1, "gid", -1);
  if (lua_getfield(L, 1, "fds") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (o.n_fds == HERSH_PROC_MAX_FDS) return luaL_error(L, "spawn: at most %d fds", HERSH_PROC_MAX_FDS);
      o.child_fd[o.n_fds] = (int)luaL_checkinteger(L, -2);
      o.parent_fd[o.n_fds++] = (int)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  }
  if (lua_getfield(L, 1, "limits") == LUA_TTABLE) {
    int t = lua_gettop(L);
    o.limits.memory = (uint64_t)opt_number(L, t, "memory", 0);
    o.limits.pids = (int64_t)opt_number(L, t, "pids", 0);
    o.limits.cpus = opt_number(L, t, "cpus", 0);
  }
  lproc *lp = lua_newuserdatauv(L, sizeof *lp, 0);
  *lp = (lproc){NULL, hersh_lmod_get(L), LUA_NOREF, LUA_NOREF, LUA_NOREF, false, 0, 0, 0};
  luaL_setmetatable(L, HERSH_PROCESS_MT);
  int self = lua_gettop(L);
  if (lua_getfield(L, 1, "on_exit") == LUA_TFUNCTION) lp->on_exit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  if (lua_getfield(L, 1, "on_line") == LUA_TFUNCTION) lp->on_line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  o.on_exit = proc_exited;
  o.on_line = lp->on_line_ref != LUA_NOREF ? proc_line : NULL;
  o.ud = lp;
  int rc = hersh_proc_spawn(lp->m->loop, &o, &lp->p);
  if (rc) return hersh_lua_push_failure(L, rc); /* the userdata's __gc releases the refs */
  lp->pid = hersh_proc_pid(lp->p);
  lua_pushvalue(L, self);
  lp->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, self);
  return 1;
}

/* ---- methods --------------------------------------------------------------------------- */

static int l_proc_pid(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  lua_pushinteger(L, lp->pid);
  return 1;
}

static int l_proc_running(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  lua_pushboolean(L, lp->p && hersh_proc_running(lp->p));
  return 1;
}

/* exit_status() -> code, signal (nil, nil while running) */
static int l_proc_exit_status(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  if (!lp->exited) return 0;
  if (lp->code >= 0) lua_pushinteger(L, lp->code);
  else lua_pushnil(L);
  if (lp->signal) lua_pushinteger(L, lp->signal);
  else lua_pushnil(L);
  return 2;
}

static int signal_arg(lua_State *L, int idx) HERSH_MAY_RAISE {
  static const char *const names[] = {"TERM", "KILL", "INT", "HUP", "QUIT", "USR1", "USR2", "STOP", "CONT", NULL};
  static const int numbers[] = {SIGTERM, SIGKILL, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGSTOP, SIGCONT};
  if (lua_type(L, idx) == LUA_TNUMBER) return (int)luaL_checkinteger(L, idx);
  return numbers[luaL_checkoption(L, idx, "TERM", names)];
}

static int l_proc_kill(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  int sig = signal_arg(L, 2);
  int rc = lp->p ? hersh_proc_signal(lp->p, sig) : hersh_fail_with(HERSH_E_STATE, "the process has exited");
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* The pieces a sandbox driver stops a process with (lua/host/sandbox/). */

static hersh_cgroup *cgroup_of(lproc *lp) {
  hersh_cgroup *cg = lp->p ? hersh_proc_cgroup(lp->p) : NULL;
  if (!cg) hersh_fail_with(HERSH_E_NOTFOUND, "the process has no cgroup (none here, or it has exited)");
  return cg;
}

/* signal_cgroup(sig [, spare_pid]) -> count | nil, err, code: every process of its cgroup. */
static int l_proc_signal_cgroup(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  int sig = signal_arg(L, 2);
  int spare = (int)luaL_optinteger(L, 3, 0);
  hersh_cgroup *cg = cgroup_of(lp);
  if (!cg) return hersh_lua_push_failure(L, HERSH_E_NOTFOUND);
  lua_pushinteger(L, hersh_cgroup_signal(cg, sig, spare));
  return 1;
}

/* kill_cgroup() -> true | nil, err, code: SIGKILL to everything in its cgroup. */
static int l_proc_kill_cgroup(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  hersh_cgroup *cg = cgroup_of(lp);
  if (!cg) return hersh_lua_push_failure(L, HERSH_E_NOTFOUND);
  if (!hersh_cgroup_kill(cg))
    return hersh_lua_push_failure(L, hersh_fail_with(HERSH_E_SYS, "processes of the cgroup outlived SIGKILL"));
  lua_pushboolean(L, 1);
  return 1;
}

/* cgroup_dirs() -> {dir...} | nil, err, code: where its cgroup's usage is read (metrics). */
static int l_proc_cgroup_dirs(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  hersh_cgroup *cg = cgroup_of(lp);
  if (!cg) return hersh_lua_push_failure(L, HERSH_E_NOTFOUND);
  const char *const *dirs;
  int n = hersh_cgroup_dirs(cg, &dirs);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, dirs[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* scan_signal(sig) -> count: every process of its group or of the PID namespaces it
** made, but itself (found in /proc: for a sandbox without a cgroup). */
static int l_proc_scan_signal(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  int sig = signal_arg(L, 2);
  lua_pushinteger(L, lp->p && hersh_proc_running(lp->p) ? hersh_proc_scan_signal(lp->pid, sig) : 0);
  return 1;
}

static void push_tail_line(double time, int stream, const char *line, size_t len, void *ud) {
  lua_State *L = ud;
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, time);
  lua_setfield(L, -2, "time");
  lua_pushstring(L, stream == HERSH_STDERR ? "stderr" : "stdout");
  lua_setfield(L, -2, "stream");
  lua_pushlstring(L, line, len);
  lua_setfield(L, -2, "text");
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
}

static int l_proc_tail(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, n >= 0, 2, "must not be negative");
  lua_newtable(L);
  if (lp->p) hersh_proc_tail(lp->p, (size_t)n, push_tail_line, L);
  return 1;
}

/* note(text): a Host line ("host" stream) in its log, in order with its output. */
static int l_proc_note(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  if (lp->p) hersh_proc_note(lp->p, text, len);
  return 0;
}

/* log_note(path, text) -> true | nil, err, code: the same line in a log no process
** writes now, through the same writer (format, rotation) as a process's log. */
static int l_log_note(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  hersh_proc_options o;
  hersh_proc_options_init(&o);
  hersh_capture *c = hersh_capture_new(path, o.log_max, o.log_keep, 0);
  if (!c) return hersh_lua_push_failure(L, HERSH_E_SYS);
  hersh_capture_note(c, text, len);
  hersh_capture_free(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_proc_limits(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  hersh_proc_enforced e = lp->p ? hersh_proc_limits_enforced(lp->p) : (hersh_proc_enforced){0};
  lua_createtable(L, 0, 4);
  lua_pushboolean(L, e.memory);
  lua_setfield(L, -2, "memory");
  lua_pushboolean(L, e.pids);
  lua_setfield(L, -2, "pids");
  lua_pushboolean(L, e.cpus);
  lua_setfield(L, -2, "cpus");
  if (e.why) {
    lua_pushstring(L, e.why);
    lua_setfield(L, -2, "why");
  }
  return 1;
}

static int l_proc_gc(lua_State *L) {
  lproc *lp = check_lproc(L, 1);
  if (lp->p) hersh_proc_free(lp->p); /* kills it if it still runs */
  lp->p = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, lp->on_exit_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->on_line_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lp->self_ref);
  lp->on_exit_ref = lp->on_line_ref = lp->self_ref = LUA_NOREF;
  return 0;
}

/* ---- sockets ---------------------------------------------------------------------------- */

/* core.listen(host, port) -> fd, port | nil, err, code */
static int l_proc_listen(lua_State *L) {
  const char *host = luaL_optstring(L, 1, "127.0.0.1");
  int port = (int)luaL_optinteger(L, 2, 0);
  int fd, bound;
  int rc = hersh_listen_tcp(host, port, &fd, &bound);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushinteger(L, fd);
  lua_pushinteger(L, bound);
  return 2;
}

/* ---- answering for a program that is not running (src/http/unavailable.c) ------------ */

typedef struct lanswer {
  hersh_http_unavailable *u; /* NULL once stopped */
} lanswer;

/* core.answer_unavailable(fd, body) -> handle | nil, err, code: a 503 with body on
** every connection until h:stop() (or until the handle is collected). */
static int l_proc_answer_unavailable(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *body = luaL_checklstring(L, 2, &n);
  lanswer *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->u = NULL;
  luaL_setmetatable(L, HERSH_ANSWER_MT);
  int rc = hersh_http_unavailable_start(hersh_loop_uv(hersh_lmod_get(L)->loop), fd, body, n, &a->u);
  if (rc) return hersh_lua_push_failure(L, rc);
  return 1;
}

static int l_answer_stop(lua_State *L) {
  lanswer *a = luaL_checkudata(L, 1, HERSH_ANSWER_MT);
  hersh_http_unavailable_stop(a->u);
  a->u = NULL;
  return 0;
}

/* ---- relaying to a program's unix socket (src/http/relay.c) ---------------------------- */

typedef struct lrelay {
  hersh_http_relay *r; /* NULL once stopped */
} lrelay;

/* core.relay(fd, path, body) -> handle | nil, err, code: every connection on fd joined
** to the unix socket at path (a 503 with body while it cannot be reached) until
** h:stop() (or until the handle is collected). */
static int l_proc_relay(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  const char *path = luaL_checkstring(L, 2);
  size_t n;
  const char *body = luaL_checklstring(L, 3, &n);
  lrelay *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->r = NULL;
  luaL_setmetatable(L, HERSH_RELAY_MT);
  int rc = hersh_http_relay_start(hersh_loop_uv(hersh_lmod_get(L)->loop), fd, path, body, n, &a->r);
  if (rc) return hersh_lua_push_failure(L, rc);
  return 1;
}

static int l_relay_stop(lua_State *L) {
  lrelay *a = luaL_checkudata(L, 1, HERSH_RELAY_MT);
  hersh_http_relay_stop(a->r);
  a->r = NULL;
  return 0;
}

/* core.relisten(fd, host, port, body) -> fd | fd, err | nil, err, code: a fresh
** listening socket for the port in place of fd, which a process had. The process
** shared fd's socket and file description: whatever it did to them (shut down, a
** locked filter, options, flags) must not outlive it, and a socket cannot be reset,
** only replaced. Connections left queued on fd get the 503 reply, then fd is closed.
** When no new socket can be had, fd listens again and comes back with the error. */
static int l_proc_relisten(lua_State *L) {
  int old = (int)luaL_checkinteger(L, 1);
  const char *host = luaL_checkstring(L, 2);
  int port = (int)luaL_checkinteger(L, 3);
  size_t n, len;
  const char *body = luaL_checklstring(L, 4, &n);
  luaL_argcheck(L, old > 2, 1, "not a descriptor hersh handed out");
  char *reply = hersh_http_unavailable_reply(body, n, &len);
  if (!reply) return hersh_lua_push_failure(L, HERSH_E_NOMEM);
  int fl = fcntl(old, F_GETFL); /* the process may have made it blocking */
  if (fl >= 0 && fcntl(old, F_SETFL, fl | O_NONBLOCK) == 0) (void)hersh_http_unavailable_answer(old, reply, len, 4096);
  free(reply);
  /* Shut down, the old socket still holds the port (nobody else can take it) but no
  ** longer listens: the new one may bind it (both SO_REUSEADDR), and no copy of the old
  ** one left anywhere can accept again. */
  int one = 1;
  (void)setsockopt(old, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  (void)shutdown(old, SHUT_RDWR); /* ENOTCONN: shut down already */
  int fd, bound;
  int rc = hersh_listen_tcp(host, port, &fd, &bound);
  if (rc == HERSH_OK) {
    close(old);
    lua_pushinteger(L, fd);
    return 1;
  }
  if (listen(old, 128) == 0) {
    lua_pushinteger(L, old);
    lua_pushstring(L, hersh_errmsg());
    return 2;
  }
  close(old);
  return hersh_lua_push_failure(L, rc);
}

static int l_proc_close_fd(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd > 2, 1, "not a descriptor hersh handed out");
  lua_pushboolean(L, close(fd) == 0);
  return 1;
}

static const luaL_Reg proc_meth[] = {{"pid", l_proc_pid},       {"running", l_proc_running},
                                     {"exit_status", l_proc_exit_status}, {"kill", l_proc_kill},
                                     {"signal_cgroup", l_proc_signal_cgroup},
                                     {"kill_cgroup", l_proc_kill_cgroup},
                                     {"cgroup_dirs", l_proc_cgroup_dirs},
                                     {"scan_signal", l_proc_scan_signal}, {"tail", l_proc_tail},
                                     {"limits", l_proc_limits}, {"note", l_proc_note}, {NULL, NULL}};

static const luaL_Reg proc_metameth[] = {{"__gc", l_proc_gc}, {"__close", l_proc_gc}, {NULL, NULL}};

static const luaL_Reg proc_funcs[] = {{"spawn", l_proc_spawn},
                                      {"log_note", l_log_note},
                                      {"listen", l_proc_listen},
                                      {"close_fd", l_proc_close_fd},
                                      {"answer_unavailable", l_proc_answer_unavailable},
                                      {"relisten", l_proc_relisten},
                                      {"relay", l_proc_relay},
                                      {NULL, NULL}};

static const luaL_Reg answer_meth[] = {{"stop", l_answer_stop}, {NULL, NULL}};
static const luaL_Reg answer_metameth[] = {{"__gc", l_answer_stop}, {NULL, NULL}};
static const luaL_Reg relay_meth[] = {{"stop", l_relay_stop}, {NULL, NULL}};
static const luaL_Reg relay_metameth[] = {{"__gc", l_relay_stop}, {NULL, NULL}};

/* Adds spawn, listen, relisten, close_fd, answer_unavailable and relay to the module table on
** the stack top. */
int hersh_lproc_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_PROCESS_MT, proc_meth, proc_metameth);
  hersh_lclass_register(L, HERSH_ANSWER_MT, answer_meth, answer_metameth);
  hersh_lclass_register(L, HERSH_RELAY_MT, relay_meth, relay_metameth);
  luaL_setfuncs(L, proc_funcs, 0);
  return 0;
}
