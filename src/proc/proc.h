/*
** proc.h -- child processes on the loop: spawn with an argument vector, environment,
** working directory and extra file descriptors; stdout and stderr captured line by
** line into a size-capped, rotated log and an in-memory tail; the exit reported as
** soon as it happens (a pidfd on the loop, no polling); signals to its process group;
** a cgroup where the machine allows one, for limits and for finding everything the
** child started (when it exits, whatever is left there is killed). Each child gets a
** session keyring of its own. How to stop a child gently is its caller's business
** (a sandbox driver: lua/host/sandbox/), with the helpers below.
*/
#ifndef HERSH_PROC_H
#define HERSH_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "base/clock.h"
#include "base/error.h"
#include "hersh.h"

/* HERSH_HOST: a line the Host writes about the child into its log; the child cannot write one. */
enum { HERSH_PROC_MAX_FDS = 8, HERSH_STDOUT = 1, HERSH_STDERR = 2, HERSH_HOST = 3 };

typedef struct hersh_proc hersh_proc;

typedef struct hersh_proc_limits {
  uint64_t memory; /* bytes, 0 = none */
  int64_t pids;    /* 0 = none */
  double cpus;     /* CPUs, e.g. 0.5; 0 = none */
} hersh_proc_limits;

/* Which limits the kernel enforces for this process (cgroup.c decides). */
typedef struct hersh_proc_enforced {
  bool memory, pids, cpus;
  const char *why; /* when one is not: what the machine lacks */
} hersh_proc_enforced;

typedef struct hersh_proc_options {
  const char *const *argv; /* argv[0] is run as given, or searched in PATH */
  const char *const *envp; /* the whole environment; nothing is inherited */
  const char *cwd;         /* NULL: the caller's */
  int uid, gid;            /* >= 0: the child drops to this user (and no groups); -1: ours */
  int n_fds;
  int child_fd[HERSH_PROC_MAX_FDS], parent_fd[HERSH_PROC_MAX_FDS]; /* extra fds, e.g. 3 <- a socket */
  const char *log_path; /* NULL: no log file */
  size_t log_max;       /* bytes before rotating (10 MiB) */
  int log_keep;         /* rotated files kept: runtime.log.1 .. .N (3) */
  size_t tail_lines;    /* lines kept in memory (200) */
  hersh_proc_limits limits;
  const char *cgroup_name; /* names the cgroup made when limits are asked */
  void (*on_exit)(hersh_proc *p, int code, int signal, void *ud);
  void (*on_line)(hersh_proc *p, int stream, const char *line, size_t len, void *ud);
  void *ud;
} hersh_proc_options;

void hersh_proc_options_init(hersh_proc_options *o);
int hersh_proc_spawn(hersh_loop *loop, const hersh_proc_options *o, hersh_proc **out);
int hersh_proc_pid(const hersh_proc *p);
bool hersh_proc_running(const hersh_proc *p);
/* A signal to the child's process group (to the child when it left the group). */
int hersh_proc_signal(hersh_proc *p, int signum);
typedef struct hersh_cgroup hersh_cgroup;
/* The running child's cgroup; NULL when it has none (none asked, none to be had here,
** or the child has exited: its cgroup went with it). */
hersh_cgroup *hersh_proc_cgroup(hersh_proc *p);
hersh_proc_enforced hersh_proc_limits_enforced(const hersh_proc *p);
/* After the exit: how many of its processes the kernel killed for memory (its cgroup's count). */
long hersh_proc_oom_kills(const hersh_proc *p);
/* Calls fn for the newest `n` captured lines (0 = all kept), oldest first. */
void hersh_proc_tail(const hersh_proc *p, size_t n,
                     void (*fn)(double time, int stream, const char *line, size_t len, void *ud), void *ud);
/* Logs a HERSH_HOST line into its log, in order with its own output. */
void hersh_proc_note(hersh_proc *p, const char *line, size_t len);
/* Kills a running child; the memory goes once its handles have closed. */
void hersh_proc_free(hersh_proc *p);

/* ---- pieces (capture.c, cgroup.c, listen.c) ----------------------------------------- */

/* The captured output: a rotated log file and a ring of recent lines. */
typedef struct hersh_capture hersh_capture;
hersh_capture *hersh_capture_new(const char *log_path, size_t log_max, int log_keep, size_t tail_lines);
void hersh_capture_free(hersh_capture *c);
/* Takes bytes read from a stream; complete lines are logged (a partial one waits). */
void hersh_capture_feed(hersh_capture *c, int stream, const char *data, size_t len,
                        void (*on_line)(int stream, const char *line, size_t len, void *ud), void *ud);
/* Logs a HERSH_HOST line (not kept in the tail). */
void hersh_capture_note(hersh_capture *c, const char *line, size_t len);
/* The stream ended: its partial last line is logged too. */
void hersh_capture_flush(hersh_capture *c, int stream,
                         void (*on_line)(int stream, const char *line, size_t len, void *ud), void *ud);
void hersh_capture_tail(const hersh_capture *c, size_t n,
                        void (*fn)(double time, int stream, const char *line, size_t len, void *ud), void *ud);

/* A cgroup per child, in each hierarchy the machine offers (v1 controllers, or v2). */
hersh_cgroup *hersh_cgroup_new(const char *name, const hersh_proc_limits *limits, hersh_proc_enforced *enforced);
/* The cgroup.procs files the child writes "0" into before exec (NULL-terminated). */
const char *const *hersh_cgroup_procs_files(const hersh_cgroup *cg);
/* Its directories, one per hierarchy it was made in (where its usage is read); the count. */
int hersh_cgroup_dirs(const hersh_cgroup *cg, const char *const **dirs);
/* How many of its processes the kernel killed for memory (v2 or v1 counters). */
long hersh_cgroup_oom_kills(const hersh_cgroup *cg);
/* Signals every process in it but `spare` (0: none); how many it signalled. */
int hersh_cgroup_signal(const hersh_cgroup *cg, int signum, int spare);
/* Kills every process in it: cgroup.kill (Linux 5.14+), else SIGKILL to each process
** of cgroup.procs, again until none is left (bounded). False if some were left. */
bool hersh_cgroup_kill(hersh_cgroup *cg);
void hersh_cgroup_free(hersh_cgroup *cg); /* kills what is left, removes the dirs */

/* ---- a sandbox's processes without a cgroup (scan.c) ----------------------------------- */

/* Signals every process but `leader` that is in leader's process group or in the PID
** namespace of one of its children: a PID-namespace sandbox's programs, however they
** left the group (setsid, double fork). From /proc; how many it signalled. */
int hersh_proc_scan_signal(int leader, int signum);

/* A listening TCP socket on host:port (0 = any free port): its fd and bound port. */
int hersh_listen_tcp(const char *host, int port, int *fd, int *bound_port);

/* ---- the sandbox's own defences (seccomp.c, setid.c) ---------------------------------- */

/* A new memfd holding the sandbox's seccomp filter as BPF, at offset 0 (bwrap --seccomp). */
int hersh_seccomp_filter_fd(int *fd);
/* Clears set-id and group/other write bits under root, never following a link. */
int hersh_strip_setid(const char *root);
/* A new close-on-exec memfd holding data, at offset 0 (memfd.c). */
int hersh_memfd_bytes(const char *name, const void *data, size_t len, int *fd);

#endif
