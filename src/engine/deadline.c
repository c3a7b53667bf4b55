/*
** deadline.c -- one watchdog thread per loop enforces the deadlines of Lua calls.
**
** A run is synchronous on the loop thread, so no loop timer can end it. Arming costs a
** few atomic stores: the watchdog sleeps until the armed deadline and is woken only when
** it waits idle or towards a later time. Once the deadline has passed by the engine's
** clock it signals the loop thread (HERSH_DEADLINE_SIGNAL), and the handler, on that
** thread, fires the run's interrupt: Lua allows lua_sethook from a signal handler on the
** interpreted thread (lua.c's laction), not from another thread. Arm and disarm each
** bump a generation (odd while armed), and the handler fires only when the generation it
** finds is the one the watchdog signalled: a signal that lands after its run ended does
** nothing. C reducers poll hersh_ctx_cancelled() instead.
*/
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "engine.h"

/* SIGURG: ignored by default, so a stray one harms nothing; the kernel sends it only for
** out-of-band data to a socket owner set with F_SETOWN, which Hersh never asks for; and
** a spurious one is harmless to the others who use it (Go's preemption signal). */
#define HERSH_DEADLINE_SIGNAL SIGURG
#define REFIRE_NS 50000000 /* a run still armed after its signal gets another this often */

struct hersh_watchdog {
  pthread_t thread;
  pthread_t loop_thread; /* the thread it signals: the one that made it */
  int64_t tick_ns;       /* resolution of hersh_mono_ns */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool quit;                         /* under mu */
  _Atomic uint64_t gen;              /* odd while a run is armed */
  _Atomic int64_t deadline;          /* of the armed run (hersh_mono_ns) */
  _Atomic(hersh_interrupt *) target; /* of the armed run */
  _Atomic uint64_t signalled;        /* the generation the watchdog last signalled */
  _Atomic int64_t waking_at;         /* when the watchdog wakes (CLOCK_MONOTONIC ns) */
};

/* The watchdog armed on this thread, for the handler. Initial-exec: reading it in a
** handler allocates nothing, even in the dlopen'd Lua module. */
static _Thread_local _Atomic(hersh_watchdog *) armed_here __attribute__((tls_model("initial-exec")));

/* ---- the signal handler, installed while any watchdog exists ---------------------- */

static pthread_mutex_t handler_mu = PTHREAD_MUTEX_INITIALIZER;
static size_t handler_users;               /* under handler_mu */
static struct sigaction handler_previous;  /* under handler_mu: restored by the last user */
/* What was installed before us, passed every signal (atomic: a handler may run on any
** thread while another installs). */
static _Atomic(void (*)(int, siginfo_t *, void *)) chain_action;
static _Atomic(void (*)(int)) chain_handler;

static void on_deadline_signal(int sig, siginfo_t *info, void *uctx) {
  hersh_watchdog *wd = atomic_load(&armed_here);
  if (wd) {
    uint64_t g = atomic_load(&wd->gen);
    if ((g & 1) && atomic_load(&wd->signalled) == g) {
      hersh_interrupt *t = atomic_load(&wd->target);
      t->fire(t, g);
    }
  }
  void (*action)(int, siginfo_t *, void *) = atomic_load(&chain_action);
  void (*handler)(int) = atomic_load(&chain_handler);
  if (action) action(sig, info, uctx);
  else if (handler) handler(sig);
}

/* Chains to what `prev` installed (a function, not SIG_DFL or SIG_IGN); NULL: to nothing. */
static void chain_to(const struct sigaction *prev) {
  bool info = prev && (prev->sa_flags & SA_SIGINFO);
  bool plain = prev && !info && prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN;
  atomic_store(&chain_action, info ? prev->sa_sigaction : NULL);
  atomic_store(&chain_handler, plain ? prev->sa_handler : NULL);
}

static int handler_acquire(void) {
  int rc = HERSH_OK;
  pthread_mutex_lock(&handler_mu);
  if (handler_users == 0) {
    struct sigaction sa = {.sa_sigaction = on_deadline_signal, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    if (sigaction(HERSH_DEADLINE_SIGNAL, NULL, &handler_previous) != 0) {
      rc = hersh_fail_with(HERSH_E_SYS, "cannot read the deadline signal's handler");
    } else {
      chain_to(&handler_previous); /* before ours is in place, so no signal misses it */
      if (sigaction(HERSH_DEADLINE_SIGNAL, &sa, NULL) != 0) {
        chain_to(NULL);
        rc = hersh_fail_with(HERSH_E_SYS, "cannot install the deadline signal handler");
      }
    }
  }
  if (rc == HERSH_OK) handler_users++;
  pthread_mutex_unlock(&handler_mu);
  return rc;
}

/* The last user puts back what was there, unless someone replaced us meanwhile. No
** signal of ours is pending by then: each watchdog was joined, and a signal sent to a
** thread is delivered before that thread returns from its next system call. */
static void handler_release(void) {
  pthread_mutex_lock(&handler_mu);
  if (--handler_users == 0) {
    struct sigaction now;
    if (sigaction(HERSH_DEADLINE_SIGNAL, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) &&
        now.sa_sigaction == on_deadline_signal)
      (void)sigaction(HERSH_DEADLINE_SIGNAL, &handler_previous, NULL); /* valid: it came from sigaction */
    chain_to(NULL);
  }
  pthread_mutex_unlock(&handler_mu);
}

/* ---- the watchdog thread ------------------------------------------------------------ */

static int64_t precise_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ns_to_timespec(int64_t ns, struct timespec *ts) {
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
}

/* A run is late by the engine's clock, hersh_mono_ns(), which is coarse: the watchdog
** wakes at the deadline, then every quarter tick until that clock has reached it, so
** the hook and the engine agree on which runs are late. */
static void *watchdog_main(void *arg) {
  hersh_watchdog *wd = arg;
  int64_t last_signal = 0;
  pthread_mutex_lock(&wd->mu);
  while (!wd->quit) {
    atomic_store(&wd->waking_at, INT64_MAX); /* idle: any arm wakes us */
    uint64_t g = atomic_load(&wd->gen);
    if (!(g & 1)) {
      pthread_cond_wait(&wd->cv, &wd->mu);
      continue;
    }
    int64_t deadline = atomic_load(&wd->deadline);
    if (atomic_load(&wd->gen) != g) continue; /* re-armed while we read */
    int64_t now = precise_now(), wake = deadline;
    if (hersh_mono_ns() >= deadline) {
      if (atomic_load(&wd->signalled) != g || now - last_signal >= REFIRE_NS) {
        atomic_store(&wd->signalled, g);
        /* It fails only when the loop thread is gone: nothing is left to interrupt. */
        (void)pthread_kill(wd->loop_thread, HERSH_DEADLINE_SIGNAL);
        last_signal = now;
      }
      wake = last_signal + REFIRE_NS;
    } else if (wake <= now) {
      wake = now + wd->tick_ns / 4; /* the engine's clock has not caught up yet */
    }
    /* Publish when we wake before looking at gen again: an arm either sees it (and
    ** wakes us if it needs us earlier) or is seen here. */
    atomic_store(&wd->waking_at, wake);
    if (atomic_load(&wd->gen) != g) continue;
    struct timespec ts;
    ns_to_timespec(wake, &ts);
    pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
  }
  pthread_mutex_unlock(&wd->mu);
  return NULL;
}

/* Every signal is blocked in the watchdog thread: it inherits the mask of its maker. */
static int start_thread(hersh_watchdog *wd) {
  sigset_t all, old;
  sigfillset(&all);
  if (pthread_sigmask(SIG_SETMASK, &all, &old) != 0) return -1;
  int rc = pthread_create(&wd->thread, NULL, watchdog_main, wd);
  (void)pthread_sigmask(SIG_SETMASK, &old, NULL); /* cannot fail: `old` came from it */
  return rc;
}

hersh_watchdog *hersh_watchdog_new(void) {
  hersh_watchdog *wd = calloc(1, sizeof *wd);
  if (!wd) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory creating the watchdog");
    return NULL;
  }
  wd->loop_thread = pthread_self();
  wd->tick_ns = hersh_mono_tick_ns();
  if (handler_acquire() != HERSH_OK) {
    free(wd);
    return NULL;
  }
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) goto fail_attr;
  if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0) goto fail_mu;
  if (pthread_mutex_init(&wd->mu, NULL) != 0) goto fail_mu;
  if (pthread_cond_init(&wd->cv, &attr) != 0) goto fail_cv;
  if (start_thread(wd) != 0) goto fail_thread;
  pthread_condattr_destroy(&attr);
  return wd;
fail_thread:
  pthread_cond_destroy(&wd->cv);
fail_cv:
  pthread_mutex_destroy(&wd->mu);
fail_mu:
  pthread_condattr_destroy(&attr);
fail_attr:
  handler_release();
  free(wd);
  hersh_fail_with(HERSH_E_SYS, "cannot start the watchdog thread");
  return NULL;
}

void hersh_watchdog_free(hersh_watchdog *wd) {
  if (!wd) return;
  hersh_watchdog_disarm(wd);
  pthread_mutex_lock(&wd->mu);
  wd->quit = true;
  pthread_cond_signal(&wd->cv);
  pthread_mutex_unlock(&wd->mu);
  pthread_join(wd->thread, NULL);
  pthread_cond_destroy(&wd->cv);
  pthread_mutex_destroy(&wd->mu);
  handler_release();
  free(wd);
}

uint64_t hersh_watchdog_arm(hersh_watchdog *wd, hersh_interrupt *target, int64_t deadline_ns) {
  hersh_watchdog_disarm(wd); /* a run left armed (never expected) is over now */
  /* Only the loop thread writes gen. The stores come before gen turns odd, so the
  ** watchdog and the handler, which read gen first, see this run's values. */
  atomic_store(&wd->target, target);
  atomic_store(&wd->deadline, deadline_ns);
  atomic_store(&armed_here, wd);
  uint64_t g = atomic_load(&wd->gen) + 1;
  atomic_store(&wd->gen, g);
  /* Sequentially consistent with the watchdog's store of waking_at and load of gen. */
  if (deadline_ns < atomic_load(&wd->waking_at)) {
    pthread_mutex_lock(&wd->mu);
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
  }
  return g;
}

void hersh_watchdog_disarm(hersh_watchdog *wd) {
  uint64_t g = atomic_load(&wd->gen);
  if (g & 1) atomic_store(&wd->gen, g + 1); /* from here on the handler ignores the run */
  if (atomic_load(&armed_here) == wd) atomic_store(&armed_here, NULL);
}

bool hersh_watchdog_expired(hersh_watchdog *wd) {
  uint64_t g = atomic_load(&wd->gen);
  return (g & 1) && atomic_load(&wd->signalled) == g;
}
