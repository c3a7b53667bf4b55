/*
** seccomp.c -- the seccomp filter of every sandbox, compiled with libseccomp into a
** memfd that bubblewrap loads (--seccomp FD) just before it runs the program.
**
** Modelled on the default profiles of Docker and Podman: everything is allowed but the
** calls that reach the kernel's shared state (keyrings, BPF, perf, io_uring, modules,
** clocks, mounts, swap, reboot) and new namespaces. ptrace and personality stay
** allowed: the PID namespace already confines ptrace to the sandbox, and
** LeakSanitizer needs both.
** On x86-64 the same rules cover the i386 and x32 calls (their numbers differ): a
** 32-bit program would otherwise reach keyctl unfiltered.
*/
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proc/proc.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

/* Refused with EPERM, whatever the arguments. */
static const char *const denied[] = {
    "keyctl", "add_key", "request_key",                                /* the Host's keys */
    "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",         /* kernel attack surface */
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr", "open_by_handle_at",                 /* file systems */
    "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",      /* the host's clock */
    "iopl", "ioperm", "setns", "uselib", "nfsservctl",
    NULL};

/* Flags of clone and unshare that make a namespace. */
static const unsigned long new_namespace[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                              CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET, CLONE_NEWTIME};

static int add_rules(scmp_filter_ctx ctx) {
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    int rc = seccomp_arch_add(ctx, SCMP_ARCH_X86);
    if (!rc) rc = seccomp_arch_add(ctx, SCMP_ARCH_X32);
    if (rc) return rc;
  }
  for (const char *const *name = denied; *name; name++) {
    int nr = seccomp_syscall_resolve_name(*name);
    if (nr == __NR_SCMP_ERROR) continue; /* unknown to this libseccomp: nothing to refuse */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc) return rc;
  }
  for (size_t i = 0; i < sizeof new_namespace / sizeof *new_namespace; i++) {
    unsigned long f = new_namespace[i];
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
    if (!rc) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
    if (rc) return rc;
  }
  /* clone3 passes its flags in memory, out of the filter's reach: ENOSYS makes glibc
  ** fall back to clone, whose flags are checked above. */
  return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

int hersh_seccomp_filter_fd(int *out) {
  *out = -1;
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return hersh_fail_with(HERSH_E_NOMEM, "seccomp_init failed");
  int rc = add_rules(ctx);
  if (rc) {
    seccomp_release(ctx);
    return hersh_fail_with(HERSH_E_SYS, "seccomp rule: %s", strerror(-rc));
  }
  int fd = memfd_create("hersh-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    seccomp_release(ctx);
    return hersh_fail_with(HERSH_E_SYS, "memfd_create: %s", strerror(err));
  }
  rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  if (rc || lseek(fd, 0, SEEK_SET) != 0) { /* bwrap reads from the current offset */
    close(fd);
    return hersh_fail_with(HERSH_E_SYS, "cannot write the seccomp filter: %s", strerror(rc ? -rc : errno));
  }
  *out = fd;
  return HERSH_OK;
}
