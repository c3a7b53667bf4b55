/*
** deadline.c -- one watchdog thread per loop enforces run deadlines.
**
** A run is synchronous on the loop thread, so no loop timer can end it. Arming costs a
** few atomic stores: the watchdog sleeps until the armed deadline and is only woken
** when it sleeps idle or towards a later deadline. When a deadline passes it calls the
** run's interrupt (lua_sethook for Lua, a flag for C). An interrupt that lands after its
** run ended is harmless: the target checks hersh_watchdog_deadline() and ignores it.
*/
#include <stdlib.h>
#include <time.h>

#include "engine.h"

struct hersh_watchdog {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool quit;
  _Atomic int64_t deadline;      /* of the armed run, 0 = none */
  _Atomic uint64_t gen;          /* increases with every arm */
  _Atomic(hersh_interrupt *) target;
  _Atomic bool idle;             /* the watchdog waits with no deadline */
  _Atomic int64_t sleeping_until; /* the deadline it waits for, when not idle */
};

static void deadline_to_timespec(int64_t ns, struct timespec *ts) {
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
}

static void *watchdog_main(void *arg) {
  hersh_watchdog *wd = arg;
  uint64_t fired_gen = 0;
  pthread_mutex_lock(&wd->mu);
  while (!wd->quit) {
    atomic_store(&wd->idle, true);
    int64_t d = atomic_load(&wd->deadline);
    uint64_t g = atomic_load(&wd->gen);
    if (d == 0 || g == fired_gen) {
      /* Nothing armed, or the armed run was already interrupted: wait for the next arm
      ** (a late run is re-checked every 50 ms so a stuck C reducer stays cancelled). */
      if (d == 0) {
        pthread_cond_wait(&wd->cv, &wd->mu);
      } else {
        struct timespec ts;
        deadline_to_timespec(hersh_mono_ns() + 50000000, &ts);
        pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
        if (atomic_load(&wd->gen) == fired_gen) fired_gen = 0; /* interrupt it again */
      }
      continue;
    }
    /* Publish what we sleep towards before re-reading the deadline, so an arm that
    ** sets an earlier one either sees it and wakes us, or is seen here. */
    atomic_store(&wd->sleeping_until, d);
    atomic_store(&wd->idle, false);
    if (atomic_load(&wd->deadline) != d) {
      atomic_store(&wd->sleeping_until, 0);
      continue;
    }
    if (hersh_mono_ns() < d) {
      struct timespec ts;
      deadline_to_timespec(d, &ts);
      pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
      atomic_store(&wd->sleeping_until, 0);
      continue;
    }
    atomic_store(&wd->sleeping_until, 0);
    hersh_interrupt *t = atomic_load(&wd->target);
    if (t && atomic_load(&wd->gen) == g) t->fire(t, g);
    fired_gen = g;
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

hersh_watchdog *hersh_watchdog_new(void) {
  hersh_watchdog *wd = calloc(1, sizeof *wd);
  if (!wd) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory creating the watchdog");
    return NULL;
  }
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) goto fail_attr;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  if (pthread_mutex_init(&wd->mu, NULL) != 0) goto fail_mu;
  if (pthread_cond_init(&wd->cv, &attr) != 0) goto fail_cv;
  if (pthread_create(&wd->thread, NULL, watchdog_main, wd) != 0) goto fail_thread;
  pthread_condattr_destroy(&attr);
  return wd;
fail_thread:
  pthread_cond_destroy(&wd->cv);
fail_cv:
  pthread_mutex_destroy(&wd->mu);
fail_mu:
  pthread_condattr_destroy(&attr);
fail_attr:
  free(wd);
  hersh_fail_with(HERSH_E_SYS, "cannot start the watchdog thread");
  return NULL;
}

void hersh_watchdog_free(hersh_watchdog *wd) {
  if (!wd) return;
  pthread_mutex_lock(&wd->mu);
  wd->quit = true;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->mu);
  pthread_join(wd->thread, NULL);
  pthread_cond_destroy(&wd->cv);
  pthread_mutex_destroy(&wd->mu);
  free(wd);
}

uint64_t hersh_watchdog_arm(hersh_watchdog *wd, hersh_interrupt *target, int64_t deadline_ns) {
  /* Only the loop thread arms: plain read-modify-write is enough for gen. The
  ** deadline store and the two loads below stay sequentially consistent: they pair
  ** with the watchdog's stores of idle and sleeping_until (see watchdog_main). */
  atomic_store_explicit(&wd->target, target, memory_order_release);
  uint64_t g = atomic_load_explicit(&wd->gen, memory_order_relaxed) + 1;
  atomic_store_explicit(&wd->gen, g, memory_order_release);
  atomic_store(&wd->deadline, deadline_ns);
  int64_t until = atomic_load(&wd->sleeping_until);
  if (atomic_load(&wd->idle) || (until && deadline_ns < until)) {
    pthread_mutex_lock(&wd->mu);
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
  }
  return g;
}

void hersh_watchdog_disarm(hersh_watchdog *wd) { atomic_store_explicit(&wd->deadline, 0, memory_order_release); }

int64_t hersh_watchdog_deadline(hersh_watchdog *wd) { return atomic_load(&wd->deadline); }
