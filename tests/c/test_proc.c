/*
** test_proc.c -- the pieces a sandbox driver stops processes with (src/proc): a
** cgroup's processes signalled (one spared) and killed, by cgroup.kill and, where the
** kernel has none, by SIGKILL to each listed pid until none is left; and the /proc scan
** that finds a PID namespace's processes without a cgroup. Real cgroups and namespaces:
** it needs root and a writable cgroup hierarchy, else it says why and skips.
**
** Each test's processes run `pause` with SIGTERM ignored unless said otherwise, and
** include a daemon (setsid and double fork): the case a process group cannot hold.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "hersh.h"
#include "proc/proc.h"

enum { WAIT_MS = 10000 };

static void nap_ms(int ms) { nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL); }

/* Reads `n` readiness bytes from fd (bounded); true if all came. */
static bool await_ready(int fd, int n) {
  char c;
  for (int got = 0; got < n;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, WAIT_MS) <= 0 || read(fd, &c, 1) != 1) return false;
    got++;
  }
  return true;
}

static int said_fd = -1;

static void say_usr1(int sig) {
  (void)sig;
  if (write(said_fd, "u", 1) != 1) _exit(1);
}

/* A process that says it is ready on w (and keeps w open while it lives), then waits
** for signals: SIGUSR1 it reports on w with a 'u'; SIGTERM it ignores when stubborn.
** Never returns. */
static void idle(int w, bool stubborn) {
  if (stubborn) signal(SIGTERM, SIG_IGN);
  said_fd = w;
  signal(SIGUSR1, say_usr1); /* a handler: a namespace's init takes it from outside */
  if (write(w, "r", 1) != 1) _exit(1);
  for (;;) pause();
}

/* In the calling (forked) process: a child in our group and a daemon (setsid, double
** fork), each ready on w; then idles itself. 3 ready bytes in all. */
static void family(int w, bool stubborn) {
  signal(SIGCHLD, SIG_IGN); /* no zombie of the family stays listed */
  if (fork() == 0) idle(w, stubborn);
  if (fork() == 0) {
    setsid();
    if (fork() == 0) idle(w, stubborn);
    _exit(0);
  }
  idle(w, stubborn);
}

/* Forks a leader that joins cg (when given) and starts its family: 3 processes. */
static pid_t start_family(hersh_cgroup *cg, int w, bool stubborn) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  for (const char *const *f = cg ? hersh_cgroup_procs_files(cg) : NULL; f && *f; f++) {
    int fd = open(*f, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) _exit(1);
    close(fd);
  }
  setpgid(0, 0);
  family(w, stubborn);
  return 0;
}

/* How many pids the cgroup's first procs file lists (-1 if unreadable). */
static int listed(hersh_cgroup *cg) {
  FILE *f = fopen(hersh_cgroup_procs_files(cg)[0], "re");
  if (!f) return -1;
  int n = 0;
  long pid;
  while (fscanf(f, "%ld", &pid) == 1) n++;
  fclose(f);
  return n;
}

/* Waits (bounded) until the cgroup lists exactly n processes; reaps our exited leader. */
static bool await_listed(hersh_cgroup *cg, int n, pid_t leader) {
  for (int i = 0; i < WAIT_MS; i++) {
    (void)waitpid(leader, NULL, WNOHANG);
    if (listed(cg) == n) return true;
    nap_ms(1);
  }
  return false;
}

/* start_family, then its 3 ready bytes and nothing else in cg (the daemon's parent
** gone), checked; the leader, or -1. */
static pid_t ready_family(hersh_cgroup *cg, bool stubborn) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t leader = start_family(cg, fds[1], stubborn);
  close(fds[1]);
  bool ready = await_ready(fds[0], 3);
  close(fds[0]);
  CHECK(ready);
  CHECK(await_listed(cg, 3, leader));
  return leader;
}

static int serial;

static hersh_cgroup *new_cgroup(void) {
  char name[64];
  snprintf(name, sizeof name, "test-proc-%d-%d", (int)getpid(), ++serial);
  hersh_proc_limits lim = {.pids = 64};
  hersh_proc_enforced enf;
  hersh_cgroup *cg = hersh_cgroup_new(name, &lim, &enf);
  if (cg && !hersh_cgroup_procs_files(cg)[0]) {
    hersh_cgroup_free(cg);
    return NULL;
  }
  return cg;
}

/* Reaps every descendant (main makes this process their subreaper), bounded. */
static void reap_all(void) {
  for (int i = 0; i < WAIT_MS && waitpid(-1, NULL, WNOHANG) >= 0; i++) nap_ms(1);
}

/* Ends what a failed test left: the leader's group, then the cgroup (kills, removes). */
static void end_family(hersh_cgroup *cg, pid_t leader) {
  kill(-leader, SIGKILL);
  kill(leader, SIGKILL);
  hersh_cgroup_free(cg);
  reap_all();
}

/* v1_only: the unified hierarchy is hidden, so the kill must do without cgroup.kill. */
static void kill_everything(bool v1_only) {
  hersh_cgroup *cg = new_cgroup();
  REQUIRE(cg);
  if (v1_only) CHECK(strncmp(hersh_cgroup_procs_files(cg)[0], "/sys/fs/cgroup/unified/", 23) != 0);
  pid_t leader = ready_family(cg, true);
  REQUIRE(leader > 0);
  CHECK(hersh_cgroup_kill(cg));
  CHECK(await_listed(cg, 0, leader)); /* the daemon too, though SIGTERM-proof and out of the group */
  end_family(cg, leader);
}

TEST(cgroup_kill_ends_a_daemon_that_left_the_group) { kill_everything(false); }

TEST(cgroup_signal_reaches_all_but_the_spared_one) {
  hersh_cgroup *cg = new_cgroup();
  REQUIRE(cg);
  pid_t leader = ready_family(cg, false);
  REQUIRE(leader > 0);
  CHECK_EQ_INT(hersh_cgroup_signal(cg, SIGTERM, leader), 2);
  CHECK(await_listed(cg, 1, leader)); /* the child and the daemon died of it */
  CHECK_EQ_INT(kill(leader, 0), 0);
  CHECK_EQ_INT(waitpid(leader, NULL, WNOHANG), 0); /* spared: still running */
  end_family(cg, leader);
}

/* A process in a PID namespace of its own, under a leader that stays outside (as
** bubblewrap runs a program): its family is in the namespace. */
static pid_t start_namespace(int w) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  if (unshare(CLONE_NEWPID) != 0) _exit(1);
  if (fork() == 0) family(w, true); /* pid 1 in there, and its child and daemon */
  close(w);
  for (;;) pause();
}

TEST(scan_finds_a_namespace_daemon_and_spares_the_leader) {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  pid_t leader = start_namespace(fds[1]);
  close(fds[1]);
  bool ready = await_ready(fds[0], 3);
  CHECK(ready);
  /* The init, its child and the daemon that left the group: each says it got it (the
  ** daemon's parent, if not gone yet, dies of it). */
  CHECK(hersh_proc_scan_signal(leader, SIGUSR1) >= 3);
  CHECK(await_ready(fds[0], 3));
  CHECK_EQ_INT(waitpid(leader, NULL, WNOHANG), 0); /* spared */
  CHECK(hersh_proc_scan_signal(leader, SIGKILL) >= 1); /* the namespace dies with its init */
  /* every process of the namespace is gone: the pipe's last writer with them */
  char c;
  struct pollfd p = {fds[0], POLLIN, 0};
  CHECK(poll(&p, 1, WAIT_MS) == 1 && read(fds[0], &c, 1) == 0);
  close(fds[0]);
  kill(leader, SIGKILL);
  reap_all();
}

/* Last: it hides the unified hierarchy (and with it cgroup.kill) from this process. */
TEST(without_cgroup_kill_each_pid_is_killed_until_none_is_left) {
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
    printf("cannot make a mount namespace: %s\n", strerror(errno));
    CHECK(false);
    return;
  }
  const char *unified = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "/sys/fs/cgroup"
                                                                               : "/sys/fs/cgroup/unified";
  if (strcmp(unified, "/sys/fs/cgroup") == 0) {
    printf("note: the machine is cgroup v2 only: no v1 hierarchy to fall back on; killing through v2\n");
    kill_everything(false);
    return;
  }
  REQUIRE(mount("none", unified, "tmpfs", MS_RDONLY, NULL) == 0);
  kill_everything(true);
}

int main(void) {
  hersh_cgroup *probe = geteuid() == 0 ? new_cgroup() : NULL;
  if (!probe) {
    printf("skipped: cgroups here need root and a writable hierarchy (euid %d)\n", (int)geteuid());
    printf("0 passed, 0 failed, 4 skipped\n");
    return 0;
  }
  hersh_cgroup_free(probe);
  /* Orphans (the daemons) come back here to be reaped, not to an init that may not. */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) printf("note: no subreaper: %s\n", strerror(errno));
  RUN(cgroup_kill_ends_a_daemon_that_left_the_group);
  RUN(cgroup_signal_reaches_all_but_the_spared_one);
  RUN(scan_finds_a_namespace_daemon_and_spares_the_leader);
  RUN(without_cgroup_kill_each_pid_is_killed_until_none_is_left);
  return check_summary();
}
