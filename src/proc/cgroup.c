/*
** cgroup.c -- limits for one child through cgroups, and the processes a cgroup holds
** (signalled, killed: a sandbox driver's stop). Each limit goes where the machine
** offers it: a cgroup v2 controller when the unified hierarchy has it, otherwise the
** v1 controller (this Debian machine runs hybrid: memory, pids and cpu are v1, and the
** unified hierarchy has none of them but offers cgroup.kill). Children go below the
** runtime's own cgroup of each hierarchy, so they count against its limits too.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proc/proc.h"

enum { MAX_DIRS = 4 };

struct hersh_cgroup {
  char *dirs[MAX_DIRS];
  int n_dirs;
  const char *procs[MAX_DIRS + 1]; /* NULL-terminated, pointing into procs_buf */
  char procs_buf[MAX_DIRS][512];
  char kill_file[512]; /* the unified hierarchy's cgroup.kill, or "" */
};

/* The runtime's own path in the hierarchy named `controller` ("" = the unified one). */
static bool own_path(const char *controller, char *out, size_t n) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f) return false;
  char line[1024];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    char *ctrls = strchr(line, ':'), *path = ctrls ? strchr(ctrls + 1, ':') : NULL;
    if (!path) continue;
    *path++ = '\0';
    ctrls++;
    path[strcspn(path, "\n")] = '\0';
    if (*controller == '\0') {
      found = *ctrls == '\0';
    } else {
      for (char *tok = strtok(ctrls, ","); tok && !found; tok = strtok(NULL, ","))
        found = strcmp(tok, controller) == 0;
    }
    if (found) snprintf(out, n, "%s", path);
  }
  fclose(f);
  return found;
}

static bool write_file(const char *dir, const char *file, const char *text) {
  char path[640];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t w = write(fd, text, strlen(text));
  close(fd);
  return w == (ssize_t)strlen(text);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Makes <mount><own path>/hersh/<name>; returns the dir or NULL. */
static char *make_dir(const char *mount, const char *controller, const char *name) {
  char own[512], parent[1024], dir[1100];
  if (!exists(mount) || !own_path(controller, own, sizeof own)) return NULL;
  snprintf(parent, sizeof parent, "%s%s/hersh", mount, strcmp(own, "/") == 0 ? "" : own);
  if (mkdir(parent, 0755) != 0 && errno != EEXIST) return NULL;
  snprintf(dir, sizeof dir, "%s/%s", parent, name);
  rmdir(dir); /* a stale one from a runtime that died */
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return NULL;
  return hersh_strdup(dir);
}

static void add_dir(hersh_cgroup *cg, char *dir) {
  int i = cg->n_dirs++;
  cg->dirs[i] = dir;
  snprintf(cg->procs_buf[i], sizeof cg->procs_buf[i], "%s/cgroup.procs", dir);
  cg->procs[i] = cg->procs_buf[i];
}

/* The unified hierarchy: where it is, and whether it has `controller`. */
static const char *unified_mount(void) {
  return exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
}

static bool unified_has(const char *controller) {
  char path[256], text[256] = "";
  snprintf(path, sizeof path, "%s/cgroup.controllers", unified_mount());
  FILE *f = fopen(path, "re");
  if (!f) return false;
  bool has = false;
  if (fgets(text, sizeof text, f))
    for (char *tok = strtok(text, " \n"); tok && !has; tok = strtok(NULL, " \n")) has = strcmp(tok, controller) == 0;
  fclose(f);
  return has;
}

hersh_cgroup *hersh_cgroup_new(const char *name, const hersh_proc_limits *lim, hersh_proc_enforced *enf) {
  *enf = (hersh_proc_enforced){0};
  hersh_cgroup *cg = calloc(1, sizeof *cg);
  if (!cg) return NULL;
  char text[64];
  /* The unified hierarchy: v2 limits if it has the controllers, and cgroup.kill. */
  char *udir = make_dir(unified_mount(), "", name);
  if (udir) {
    add_dir(cg, udir);
    snprintf(cg->kill_file, sizeof cg->kill_file, "%s/cgroup.kill", udir);
    if (!exists(cg->kill_file)) cg->kill_file[0] = '\0';
    if (lim->memory && unified_has("memory")) {
      snprintf(text, sizeof text, "%llu", (unsigned long long)lim->memory);
      enf->memory = write_file(udir, "memory.max", text) && (write_file(udir, "memory.swap.max", "0"), true);
    }
    if (lim->pids && unified_has("pids")) {
      snprintf(text, sizeof text, "%lld", (long long)lim->pids);
      enf->pids = write_file(udir, "pids.max", text);
    }
    if (lim->cpus > 0 && unified_has("cpu")) {
      snprintf(text, sizeof text, "%lld 100000", (long long)(lim->cpus * 100000));
      enf->cpus = write_file(udir, "cpu.max", text);
    }
  }
  /* v1 controllers for what v2 could not do. */
  if (lim->memory && !enf->memory) {
    char *dir = make_dir("/sys/fs/cgroup/memory", "memory", name);
    if (dir) {
      add_dir(cg, dir);
      snprintf(text, sizeof text, "%llu", (unsigned long long)lim->memory);
      enf->memory = write_file(dir, "memory.limit_in_bytes", text);
      write_file(dir, "memory.memsw.limit_in_bytes", text); /* no swap either, where accounted */
    }
  }
  if (lim->pids && !enf->pids) {
    char *dir = make_dir("/sys/fs/cgroup/pids", "pids", name);
    if (dir) {
      add_dir(cg, dir);
      snprintf(text, sizeof text, "%lld", (long long)lim->pids);
      enf->pids = write_file(dir, "pids.max", text);
    }
  }
  if (lim->cpus > 0 && !enf->cpus) {
    char *dir = make_dir("/sys/fs/cgroup/cpu", "cpu", name);
    if (dir) {
      add_dir(cg, dir);
      snprintf(text, sizeof text, "%lld", (long long)(lim->cpus * 100000));
      enf->cpus = write_file(dir, "cpu.cfs_period_us", "100000") && write_file(dir, "cpu.cfs_quota_us", text);
    }
  }
  bool want_all = (!lim->memory || enf->memory) && (!lim->pids || enf->pids) && (!lim->cpus || enf->cpus);
  if (!want_all)
    enf->why = geteuid() != 0 ? "cgroups need root to create limits"
                              : "the machine offers no writable cgroup controller for some limits";
  return cg;
}

const char *const *hersh_cgroup_procs_files(const hersh_cgroup *cg) { return cg->procs; }

int hersh_cgroup_dirs(const hersh_cgroup *cg, const char *const **dirs) {
  *dirs = (const char *const *)cg->dirs;
  return cg->n_dirs;
}

/* The "oom_kill N" count of one file (v2 memory.events, v1 memory.oom_control); 0 if none. */
static long oom_kill_count(const char *dir, const char *file) {
  char path[640], line[128];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  long n = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "oom_kill %ld", &n) == 1) break;
  fclose(f);
  return n;
}

long hersh_cgroup_oom_kills(const hersh_cgroup *cg) {
  long n = 0;
  for (int i = 0; i < cg->n_dirs; i++)
    n += oom_kill_count(cg->dirs[i], "memory.events") + oom_kill_count(cg->dirs[i], "memory.oom_control");
  return n;
}

/* Signals each pid listed in a cgroup.procs file but `spare`; how many it signalled. */
static int signal_listed(const char *procs, int signum, int spare) {
  FILE *f = fopen(procs, "re");
  if (!f) return 0;
  int n = 0;
  long pid;
  while (fscanf(f, "%ld", &pid) == 1)
    if (pid > 0 && pid != spare && kill((pid_t)pid, signum) == 0) n++;
  fclose(f);
  return n;
}

/* Every process joined every dir before exec and cannot move itself (/sys/fs/cgroup
** is not in the sandbox): the first dir lists them all. */
int hersh_cgroup_signal(const hersh_cgroup *cg, int signum, int spare) {
  return cg->n_dirs > 0 ? signal_listed(cg->procs[0], signum, spare) : 0;
}

bool hersh_cgroup_kill(hersh_cgroup *cg) {
  if (cg->kill_file[0]) { /* the kernel kills them all, forks under way included */
    int fd = open(cg->kill_file, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t w = write(fd, "1", 1);
      close(fd);
      if (w == 1) return true;
    }
  }
  /* One by one: a process may fork between the read and its kill, so read again until
  ** the list is empty (a killed process leaves it once it has died). */
  for (int round = 0; round < 100; round++) {
    int n = 0;
    for (int i = 0; i < cg->n_dirs; i++) n += signal_listed(cg->procs[i], SIGKILL, 0);
    if (n == 0) return true;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  return false;
}

void hersh_cgroup_free(hersh_cgroup *cg) {
  if (!cg) return;
  (void)hersh_cgroup_kill(cg); /* what it leaves, rmdir finds busy below */
  for (int i = 0; i < cg->n_dirs; i++) {
    /* The killed processes leave within moments; wait a little, then leave it. */
    for (int tries = 0; tries < 50 && rmdir(cg->dirs[i]) != 0 && errno == EBUSY; tries++)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    free(cg->dirs[i]);
  }
  free(cg);
}
