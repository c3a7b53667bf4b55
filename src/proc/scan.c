/*
** scan.c -- finding a sandbox's processes in /proc when it has no cgroup. bubblewrap
** (the leader) runs the programs in a PID namespace of their own: a program that
** leaves the leader's process group (setsid, a double fork) is still in there.
*/
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc/proc.h"

enum { MAX_NS = 8 };

/* The parent and process group of pid, from /proc/<pid>/stat. */
static bool read_stat(long pid, long *ppid, long *pgrp) {
  char path[64], stat[512];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return false;
  stat[n] = '\0';
  char *after = strrchr(stat, ')'); /* the command name may hold spaces and parens */
  return after && sscanf(after + 1, " %*c %ld %ld", ppid, pgrp) == 2;
}

/* The inode of pid's PID namespace (0 when unreadable). */
static ino_t pidns_of(long pid) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%ld/ns/pid", pid);
  return stat(path, &st) == 0 ? st.st_ino : 0;
}

static long next_pid(DIR *d) {
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (!*end && pid > 0) return pid;
  }
  return 0;
}

int hersh_proc_scan_signal(int leader, int signum) {
  ino_t own = pidns_of(leader), ns[MAX_NS];
  int n_ns = 0, n = 0;
  long pid, ppid, pgrp;
  DIR *d = opendir("/proc");
  if (!d) return 0;
  while (n_ns < MAX_NS && (pid = next_pid(d))) { /* the namespaces the leader made */
    ino_t child_ns;
    if (read_stat(pid, &ppid, &pgrp) && ppid == leader && (child_ns = pidns_of(pid)) && child_ns != own)
      ns[n_ns++] = child_ns;
  }
  rewinddir(d);
  while ((pid = next_pid(d))) {
    if (pid == leader || !read_stat(pid, &ppid, &pgrp)) continue;
    bool inside = pgrp == leader;
    ino_t its = inside || n_ns == 0 ? 0 : pidns_of(pid);
    for (int i = 0; i < n_ns && !inside; i++) inside = its == ns[i];
    if (inside && kill((pid_t)pid, signum) == 0) n++;
  }
  closedir(d);
  return n;
}
