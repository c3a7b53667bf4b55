/*
** hersh-init -- the first process of a program in its sandbox, between bwrap's pid 1
** and the program: it runs the program, waits for it, and writes how it ended to a
** descriptor the Host reads: "exited N", "signaled N" or "error <why>". bwrap reports
** a signal n only as exit status 128 + n, which a program may also exit with itself.
**   hersh-init STATUS_FD PROGRAM [ARG...]
** It holds back (blocks) the signals a stop sends, which reach the program directly,
** so that it outlives the program to report. It is not dumpable: the program cannot
** reach the descriptor through /proc/<pid>/fd. Linked statically, so that it runs in
** any image (FROM scratch has no libc).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(int fd, const char *text) {
  size_t len = strlen(text);
  while (len > 0) {
    ssize_t w = write(fd, text, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the Host then falls back on bwrap's exit status */
    text += w;
    len -= (size_t)w;
  }
}

int main(int argc, char **argv) {
  char *end;
  long fd = argc >= 3 ? strtol(argv[1], &end, 10) : -1;
  if (argc < 3 || *end != '\0' || fd < 3 || fd > 1023 || fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) {
    fputs("usage: hersh-init STATUS_FD PROGRAM [ARG...] (STATUS_FD open, >= 3)\n", stderr);
    return 2;
  }
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    perror("hersh-init: prctl");
    return 2;
  }
  sigset_t stop_signals, old;
  sigemptyset(&stop_signals);
  int held[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof held / sizeof held[0]; i++) sigaddset(&stop_signals, held[i]);
  int exec_err[2];
  if (sigprocmask(SIG_BLOCK, &stop_signals, &old) != 0 || pipe2(exec_err, O_CLOEXEC) != 0) {
    perror("hersh-init");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("hersh-init: fork");
    return 2;
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[2], argv + 2);
    int err = errno;
    ssize_t w = write(exec_err[1], &err, sizeof err);
    (void)w;
    _exit(127);
  }
  close(exec_err[1]);
  int err = 0;
  ssize_t n;
  do n = read(exec_err[0], &err, sizeof err); /* 0 once the exec succeeded */
  while (n < 0 && errno == EINTR);
  int status;
  pid_t w;
  do w = waitpid(pid, &status, 0);
  while (w < 0 && errno == EINTR);
  char text[600];
  if (n == (ssize_t)sizeof err) {
    snprintf(text, sizeof text, "error execvp %.500s: %s", argv[2], strerror(err));
    fprintf(stderr, "hersh-init: %s\n", text + 6);
    report((int)fd, text);
    return 127;
  }
  if (w != pid) {
    perror("hersh-init: waitpid");
    return 2;
  }
  if (WIFSIGNALED(status)) {
    snprintf(text, sizeof text, "signaled %d", WTERMSIG(status));
    report((int)fd, text);
    return 128 + WTERMSIG(status);
  }
  snprintf(text, sizeof text, "exited %d", WEXITSTATUS(status));
  report((int)fd, text);
  return WEXITSTATUS(status);
}
