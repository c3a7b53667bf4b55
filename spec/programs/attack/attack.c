/* The attacker of spec/attack_sandbox_spec.lua, run inside the sandbox: it tries the
** calls the seccomp filter refuses and prints one line per try, "name rc errno", then
** its own "Seccomp:" mode. $HERSH_SPEC_KEY is the id of a key in the Host's session
** keyring. It decides nothing: the spec judges. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long rc) {
  printf("%s %ld %d\n", name, rc, rc < 0 ? errno : 0);
  fflush(stdout);
}

/* A child made with these clone flags: 0 when it was made and exited 0. */
static long try_clone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid < 0) return -1;
  int status = 0;
  waitpid((pid_t)pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(void) {
  long key = strtol(getenv("HERSH_SPEC_KEY") ? getenv("HERSH_SPEC_KEY") : "0", NULL, 10);
  char buf[256];
  report("keyctl_read", syscall(SYS_keyctl, KEYCTL_READ, key, buf, sizeof buf));
  report("keyctl_search", syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user",
                                  getenv("HERSH_SPEC_KEY_NAME") ? getenv("HERSH_SPEC_KEY_NAME") : "", 0));
  report("keyctl_session", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
  report("add_key", syscall(SYS_add_key, "user", "hersh-spec-planted", "planted", 7, KEY_SPEC_SESSION_KEYRING));
  report("request_key", syscall(SYS_request_key, "user", "hersh-spec-planted", NULL, KEY_SPEC_SESSION_KEYRING));
  report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
  report("unshare_net", syscall(SYS_unshare, CLONE_NEWNET));
  report("clone_newuser", try_clone(CLONE_NEWUSER));
  report("clone3", syscall(SYS_clone3, NULL, 0));
  report("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL));
  report("umount", syscall(SYS_umount2, "/tmp", MNT_DETACH));
  report("bpf", syscall(SYS_bpf, 0, NULL, 0));
  char attr[128];
  memset(attr, 0, sizeof attr);
  report("perf_event_open", syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
  report("userfaultfd", syscall(SYS_userfaultfd, 0));
  char params[120]; /* struct io_uring_params, zeroed */
  memset(params, 0, sizeof params);
  report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
  report("fork", try_clone(0));
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(buf, sizeof buf, f))
    if (strncmp(buf, "Seccomp:", 8) == 0) printf("%s", buf);
  if (f) fclose(f);
  return 0;
}
