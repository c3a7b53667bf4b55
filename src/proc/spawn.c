/*
** spawn.c -- fork and exec a child, then follow it on the loop.
**
** The child is its own session and process group, has its own session keyring, joins
** its cgroups before exec, and gets /dev/null as stdin, two pipes as stdout and stderr,
** and the extra descriptors asked for (nothing else stays open). The parent learns of
** an exec failure at once through a close-on-exec pipe, and of the exit through a
** pidfd polled by the loop: no SIGCHLD handler, no polling.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <linux/keyctl.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc/proc.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct hersh_proc {
  hersh_loop *loop;
  pid_t pid;
  int pidfd, out_fd, err_fd;
  uv_poll_t pid_poll, out_poll, err_poll;
  int open_handles;
  bool running, freed;
  hersh_capture *capture;
  hersh_cgroup *cgroup;
  hersh_proc_enforced enforced;
  long oom_kills; /* read from its cgroup at the exit, before the cgroup goes */
  void (*on_exit)(hersh_proc *p, int code, int signal, void *ud);
  void (*on_line)(hersh_proc *p, int stream, const char *line, size_t len, void *ud);
  void *ud;
};

void hersh_proc_options_init(hersh_proc_options *o) {
  memset(o, 0, sizeof *o);
  o->log_max = 10 * 1024 * 1024;
  o->log_keep = 3;
  o->tail_lines = 200;
  o->uid = o->gid = -1;
}

/* ---- the child (between fork and exec: async-signal-safe calls only) ------------------ */

static void close_range_except(const int *keep, int n) {
  int lo = 3;
  for (int fd = 3; fd < 64 + HERSH_PROC_MAX_FDS; fd++) { /* keep[] is small: walk in order */
    bool kept = false;
    for (int i = 0; i < n; i++) kept |= keep[i] == fd;
    if (!kept) continue;
    if (fd > lo) syscall(SYS_close_range, lo, fd - 1, 0);
    lo = fd + 1;
  }
  syscall(SYS_close_range, lo, ~0U, 0);
}

static void child_fail(int report_fd) {
  int err = errno;
  ssize_t w = write(report_fd, &err, sizeof err);
  (void)w;
  _exit(127);
}

static void child_main(const hersh_proc_options *o, const char *const *cgroup_procs, int out_w, int err_w,
                       int report_fd) {
  setsid();
  /* A session keyring of its own: the caller's keys are not the child's to read, nor a
  ** channel between children. Where keyctl is filtered out, the child cannot reach
  ** the caller's keys either. */
  if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS && errno != EPERM)
    child_fail(report_fd);
  for (const char *const *f = cgroup_procs; f && *f; f++) {
    int fd = open(*f, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) child_fail(report_fd);
    close(fd);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL); /* ignored signals would survive exec */
  /* Park every descriptor we hand over above the ones we are about to fill. */
  report_fd = fcntl(report_fd, F_DUPFD_CLOEXEC, 64);
  int moved[HERSH_PROC_MAX_FDS];
  for (int i = 0; i < o->n_fds; i++) moved[i] = fcntl(o->parent_fd[i], F_DUPFD_CLOEXEC, 65 + i);
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (report_fd < 0 || devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
    child_fail(report_fd);
  int keep[HERSH_PROC_MAX_FDS + 1];
  for (int i = 0; i < o->n_fds; i++) {
    if (moved[i] < 0 || dup2(moved[i], o->child_fd[i]) < 0) child_fail(report_fd);
    keep[i] = o->child_fd[i];
  }
  keep[o->n_fds] = report_fd;
  close_range_except(keep, o->n_fds + 1);
  if (o->cwd && chdir(o->cwd) != 0) child_fail(report_fd);
  if (o->gid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)o->gid) != 0)) child_fail(report_fd);
  if (o->uid >= 0 && setuid((uid_t)o->uid) != 0) child_fail(report_fd);
  execvpe(o->argv[0], (char *const *)o->argv, (char *const *)o->envp);
  child_fail(report_fd);
}

/* ---- following it ---------------------------------------------------------------------- */

static void proc_release(hersh_proc *p) {
  if (p->pidfd >= 0) close(p->pidfd);
  if (p->out_fd >= 0) close(p->out_fd);
  if (p->err_fd >= 0) close(p->err_fd);
  hersh_cgroup_free(p->cgroup);
  hersh_capture_free(p->capture);
  free(p);
}

static void handle_closed(uv_handle_t *h) {
  hersh_proc *p = h->data;
  if (--p->open_handles == 0 && p->freed) proc_release(p);
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, handle_closed);
}

static void line_cb(int stream, const char *line, size_t len, void *ud) {
  hersh_proc *p = ud;
  if (p->on_line && !p->freed) p->on_line(p, stream, line, len, p->ud);
}

/* Reads what the stream has now; closes its poll at end of file. */
static void drain(hersh_proc *p, int stream) {
  int fd = stream == HERSH_STDOUT ? p->out_fd : p->err_fd;
  uv_poll_t *poll = stream == HERSH_STDOUT ? &p->out_poll : &p->err_poll;
  if (fd < 0 || uv_is_closing((uv_handle_t *)poll)) return;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      hersh_capture_feed(p->capture, stream, buf, (size_t)n, line_cb, p);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    hersh_capture_flush(p->capture, stream, line_cb, p); /* end of file, or an error */
    close_handle((uv_handle_t *)poll);
    return;
  }
}

static void output_cb(uv_poll_t *h, int status, int events) {
  (void)events;
  hersh_proc *p = h->data;
  int stream = h == &p->out_poll ? HERSH_STDOUT : HERSH_STDERR;
  if (status < 0) {
    close_handle((uv_handle_t *)h);
    return;
  }
  drain(p, stream);
}

static void exit_cb(uv_poll_t *h, int status, int events) {
  (void)status, (void)events;
  hersh_proc *p = h->data;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return;
  p->running = false;
  close_handle((uv_handle_t *)h);
  drain(p, HERSH_STDOUT); /* the last lines before the exit belong in the log first */
  drain(p, HERSH_STDERR);
  /* Nothing outlives the child, and its cgroup goes before on_exit: freed later, it
  ** would kill a next child of the same name (a restart) that joined it meanwhile. */
  p->oom_kills = p->cgroup ? hersh_cgroup_oom_kills(p->cgroup) : 0;
  hersh_cgroup_free(p->cgroup);
  p->cgroup = NULL;
  int code = info.si_code == CLD_EXITED ? info.si_status : -1;
  int sig = info.si_code == CLD_EXITED ? 0 : info.si_status;
  if (p->on_exit && !p->freed) p->on_exit(p, code, sig, p->ud);
}

static int start_poll(hersh_proc *p, uv_poll_t *h, int fd, uv_poll_cb cb) {
  int rc = uv_poll_init(hersh_loop_uv(p->loop), h, fd);
  if (rc) return rc;
  h->data = p;
  p->open_handles++;
  return uv_poll_start(h, UV_READABLE | UV_DISCONNECT, cb);
}

/* ---- spawning ---------------------------------------------------------------------------- */

static void close_pair(int fds[2]) {
  if (fds[0] >= 0) close(fds[0]);
  if (fds[1] >= 0) close(fds[1]);
}

int hersh_proc_spawn(hersh_loop *loop, const hersh_proc_options *o, hersh_proc **out) {
  *out = NULL;
  if (!o->argv || !o->argv[0] || !o->envp) return hersh_fail_with(HERSH_E_INVAL, "spawn needs argv and envp");
  if (o->n_fds < 0 || o->n_fds > HERSH_PROC_MAX_FDS)
    return hersh_fail_with(HERSH_E_INVAL, "at most %d extra descriptors", HERSH_PROC_MAX_FDS);
  for (int i = 0; i < o->n_fds; i++)
    if (o->child_fd[i] < 3 || o->child_fd[i] >= 64)
      return hersh_fail_with(HERSH_E_INVAL, "extra descriptors go to fd 3..63, not %d", o->child_fd[i]);
  hersh_proc *p = calloc(1, sizeof *p);
  if (!p) return hersh_fail_with(HERSH_E_NOMEM, "out of memory spawning %s", o->argv[0]);
  p->loop = loop;
  p->pidfd = p->out_fd = p->err_fd = -1;
  p->on_exit = o->on_exit;
  p->on_line = o->on_line;
  p->ud = o->ud;
  p->capture = hersh_capture_new(o->log_path, o->log_max, o->log_keep, o->tail_lines);
  if (!p->capture) {
    free(p);
    return HERSH_E_SYS;
  }
  const hersh_proc_limits *lim = &o->limits;
  if (lim->memory || lim->pids || lim->cpus > 0)
    p->cgroup = hersh_cgroup_new(o->cgroup_name ? o->cgroup_name : "child", lim, &p->enforced);
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, report[2] = {-1, -1};
  if (pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC) || pipe2(report, O_CLOEXEC)) {
    int err = errno;
    close_pair(out_pipe), close_pair(err_pipe), close_pair(report);
    proc_release(p);
    return hersh_fail_with(HERSH_E_SYS, "pipe: %s", strerror(err));
  }
  const char *const *procs = p->cgroup ? hersh_cgroup_procs_files(p->cgroup) : NULL;
  pid_t pid = fork();
  if (pid == 0) child_main(o, procs, out_pipe[1], err_pipe[1], report[1]);
  int fork_err = errno;
  close(out_pipe[1]), close(err_pipe[1]), close(report[1]);
  p->out_fd = out_pipe[0];
  p->err_fd = err_pipe[0];
  if (pid < 0) {
    close(report[0]);
    proc_release(p);
    return hersh_fail_with(HERSH_E_SYS, "fork: %s", strerror(fork_err));
  }
  int child_err = 0;
  ssize_t n;
  do n = read(report[0], &child_err, sizeof child_err); /* returns 0 once exec succeeded */
  while (n < 0 && errno == EINTR);
  close(report[0]);
  if (n > 0) {
    waitpid(pid, NULL, 0);
    proc_release(p);
    return hersh_fail_with(HERSH_E_SYS, "cannot run %s: %s", o->argv[0], strerror(child_err));
  }
  p->pid = pid;
  p->pidfd = pidfd_open(pid, 0);
  if (p->pidfd < 0) { /* should not happen on Linux >= 5.3: do not leave it unfollowed */
    int err = errno;
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    proc_release(p);
    return hersh_fail_with(HERSH_E_SYS, "pidfd_open: %s", strerror(err));
  }
  fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
  fcntl(p->err_fd, F_SETFL, O_NONBLOCK);
  p->running = true;
  int rc = start_poll(p, &p->pid_poll, p->pidfd, exit_cb);
  if (!rc) rc = start_poll(p, &p->out_poll, p->out_fd, output_cb);
  if (!rc) rc = start_poll(p, &p->err_poll, p->err_fd, output_cb);
  if (rc) { /* the loop refused: the child must not run unfollowed */
    hersh_proc_free(p);
    return hersh_fail_with(HERSH_E_SYS, "cannot follow the child: %s", uv_strerror(rc));
  }
  *out = p;
  return HERSH_OK;
}

int hersh_proc_pid(const hersh_proc *p) { return p->pid; }
bool hersh_proc_running(const hersh_proc *p) { return p->running; }
hersh_proc_enforced hersh_proc_limits_enforced(const hersh_proc *p) { return p->enforced; }
long hersh_proc_oom_kills(const hersh_proc *p) { return p->oom_kills; }

hersh_cgroup *hersh_proc_cgroup(hersh_proc *p) {
  return p->cgroup && hersh_cgroup_procs_files(p->cgroup)[0] ? p->cgroup : NULL;
}

int hersh_proc_signal(hersh_proc *p, int signum) {
  if (!p->running) return hersh_fail_with(HERSH_E_STATE, "the process has exited");
  /* The group is the child's session, unless the child left it. */
  if (kill(-p->pid, signum) != 0 && kill(p->pid, signum) != 0 && errno != ESRCH)
    return hersh_fail_with(HERSH_E_SYS, "kill: %s", strerror(errno));
  return HERSH_OK;
}

void hersh_proc_note(hersh_proc *p, const char *line, size_t len) { hersh_capture_note(p->capture, line, len); }

void hersh_proc_tail(const hersh_proc *p, size_t n,
                     void (*fn)(double time, int stream, const char *line, size_t len, void *ud), void *ud) {
  hersh_capture_tail(p->capture, n, fn, ud);
}

void hersh_proc_free(hersh_proc *p) {
  if (!p || p->freed) return;
  p->freed = true;
  if (p->running) hersh_proc_signal(p, SIGKILL); /* the pid poll stays to reap it */
  else close_handle((uv_handle_t *)&p->pid_poll);
  close_handle((uv_handle_t *)&p->out_poll);
  close_handle((uv_handle_t *)&p->err_poll);
  if (!p->running && p->open_handles == 0) proc_release(p);
}
