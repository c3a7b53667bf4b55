/*
** clock.c -- the two clocks: wall time for logs and messages, monotonic time for
** deadlines. Deadlines read the coarse monotonic clock (a few ms of resolution, an
** eighth of the cost): every run reads it twice.
*/
#include <time.h>

#include "clock.h"

double hersh_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t hersh_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t hersh_mono_tick_ns(void) {
  struct timespec ts;
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0) return 10000000; /* a slow kernel tick */
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double hersh_wall_coarse(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
