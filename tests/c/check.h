/*
** check.h -- a header-only test harness for the C tests.
**
**   TEST(name) { CHECK(x > 0); CHECK_EQ_INT(a, b); CHECK_EQ_STR(s, "ok"); }
**   int main(void) { RUN(name); return check_summary(); }
**
** A failed check prints file:line and what it saw, and the test goes on; REQUIRE stops
** the test at once (for checks that later code depends on, such as a non-NULL pointer).
** SKIP(why) ends a test that cannot run here. check_summary prints exactly one line
** "N passed, N failed" (tests, not checks; ", N skipped" when some were) and returns
** the exit status. Each test has CHECK_TIMEOUT seconds: a hung test ends the
** process with its summary rather than hanging the suite. Checks are for the main
** thread only: other threads record what they saw and the test checks it afterwards.
*/
#ifndef HERSH_CHECK_H
#define HERSH_CHECK_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef CHECK_TIMEOUT
#define CHECK_TIMEOUT 120
#endif

static struct {
  const char *test;      /* the test running now */
  int passed, failed;    /* tests */
  int skipped;           /* tests that cannot run here (SKIP) */
  const char *skip_why;  /* of the test running now, when it skipped */
  int failures_in_test;  /* checks */
} check_state;

#define TEST(name) static void name(void)

static inline void check_fail_at(const char *file, int line) {
  check_state.failures_in_test++;
  printf("%s:%d: in %s: ", file, line, check_state.test);
}

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      check_fail_at(__FILE__, __LINE__);                                                  \
      printf("CHECK(%s) failed\n", #cond);                                                \
    }                                                                                     \
  } while (0)

#define REQUIRE(cond)                                                                     \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      check_fail_at(__FILE__, __LINE__);                                                  \
      printf("REQUIRE(%s) failed: test abandoned\n", #cond);                              \
      return;                                                                             \
    }                                                                                     \
  } while (0)

/* The test cannot run here: it says why and counts as skipped, never as passed. */
#define SKIP(why)                                                                         \
  do {                                                                                    \
    check_state.skip_why = (why);                                                         \
    return;                                                                               \
  } while (0)

/* ThreadSanitizer holds an asynchronous signal until the thread calls something it
** intercepts, so code that calls nothing (a bare Lua loop) never receives one there. */
#if defined(__SANITIZE_THREAD__)
#define CHECK_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHECK_UNDER_TSAN 1
#endif
#endif

#define CHECK_EQ_INT(a, b)                                                                \
  do {                                                                                    \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);                       \
    if (check_a_ != check_b_) {                                                           \
      check_fail_at(__FILE__, __LINE__);                                                  \
      printf("%s == %s failed: %lld != %lld\n", #a, #b, check_a_, check_b_);              \
    }                                                                                     \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                                \
  do {                                                                                    \
    const char *check_a_ = (a), *check_b_ = (b);                                          \
    if (!check_a_ || !check_b_ ? check_a_ != check_b_ : strcmp(check_a_, check_b_) != 0) { \
      check_fail_at(__FILE__, __LINE__);                                                  \
      printf("%s == %s failed: \"%s\" != \"%s\"\n", #a, #b, check_a_ ? check_a_ : "(null)", \
             check_b_ ? check_b_ : "(null)");                                             \
    }                                                                                     \
  } while (0)

/* A hung test: report it, print the summary (it counts as failed) and leave. snprintf is
** not formally async-signal-safe, but nothing else runs after it: the process exits. */
static inline void check_on_alarm(int sig) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "FAIL %s: timed out after %d s\n%d passed, %d failed\n",
                   check_state.test, CHECK_TIMEOUT, check_state.passed, check_state.failed + 1);
  (void)sig;
  if (n > 0 && write(STDOUT_FILENO, buf, (size_t)n) < 0) {
    /* nothing left to do */
  }
  _exit(1);
}

static inline void check_run(const char *name, void (*fn)(void)) {
  setvbuf(stdout, NULL, _IONBF, 0); /* the alarm handler writes past stdio */
  signal(SIGALRM, check_on_alarm);
  check_state.test = name;
  check_state.failures_in_test = 0;
  check_state.skip_why = NULL;
  alarm(CHECK_TIMEOUT);
  fn();
  alarm(0);
  if (check_state.skip_why && check_state.failures_in_test == 0) {
    check_state.skipped++;
    printf("skip %s: %s\n", name, check_state.skip_why);
  } else if (check_state.failures_in_test == 0) {
    check_state.passed++;
    printf("ok   %s\n", name);
  } else {
    check_state.failed++;
    printf("FAIL %s (%d failed checks)\n", name, check_state.failures_in_test);
  }
}

#define RUN(name) check_run(#name, name)

/* JSON with the whitespace outside strings removed, in place (a writer's layout is free). */
static inline void check_json_squeeze(char *s) {
  bool in_str = false, esc = false;
  char *out = s;
  for (const char *p = s; *p; p++) {
    if (in_str) {
      if (esc) esc = false;
      else if (*p == '\\') esc = true;
      else if (*p == '"') in_str = false;
    } else if (*p == '"') {
      in_str = true;
    } else if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
      continue;
    }
    *out++ = *p;
  }
  *out = '\0';
}

static inline int check_summary(void) {
  if (check_state.skipped)
    printf("%d passed, %d failed, %d skipped\n", check_state.passed, check_state.failed, check_state.skipped);
  else
    printf("%d passed, %d failed\n", check_state.passed, check_state.failed);
  return check_state.failed ? 1 : 0;
}

#endif
