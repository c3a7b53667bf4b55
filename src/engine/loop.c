/* loop.c -- the libuv loop that drives watchers, and the ways to run it. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static hersh_loop *loop_alloc(void) {
  hersh_loop *loop = calloc(1, sizeof *loop);
  if (!loop) hersh_fail_with(HERSH_E_NOMEM, "out of memory creating a loop");
  return loop;
}

hersh_loop *hersh_loop_new(void) {
  hersh_loop *loop = loop_alloc();
  if (!loop) return NULL;
  int rc = uv_loop_init(&loop->own);
  if (rc != 0) {
    free(loop);
    hersh_fail_with(HERSH_E_SYS, "uv_loop_init: %s", uv_strerror(rc));
    return NULL;
  }
  loop->uv = &loop->own;
  loop->owns_uv = true;
  loop->thread = pthread_self();
  return loop;
}

hersh_loop *hersh_loop_wrap(void *uv_loop) {
  if (!uv_loop) {
    hersh_fail_with(HERSH_E_INVAL, "hersh_loop_wrap: NULL uv loop");
    return NULL;
  }
  hersh_loop *loop = loop_alloc();
  if (!loop) return NULL;
  loop->uv = uv_loop;
  loop->thread = pthread_self();
  return loop;
}

void *hersh_loop_uv(hersh_loop *loop) { return loop ? loop->uv : NULL; }

bool hersh_loop_on_thread(const hersh_loop *loop) { return pthread_equal(loop->thread, pthread_self()); }

hersh_watchdog *hersh_loop_watchdog(hersh_loop *loop) {
  if (!loop->watchdog) loop->watchdog = hersh_watchdog_new();
  return loop->watchdog;
}

int hersh_loop_attach(hersh_loop *loop, hersh_watcher *w) {
  if (loop->n_watchers == loop->cap_watchers) {
    size_t cap = loop->cap_watchers ? loop->cap_watchers * 2 : 8;
    hersh_watcher **ws = realloc(loop->watchers, cap * sizeof *ws);
    if (!ws) return hersh_fail_with(HERSH_E_NOMEM, "out of memory attaching a watcher");
    loop->watchers = ws;
    loop->cap_watchers = cap;
  }
  loop->watchers[loop->n_watchers++] = w;
  return HERSH_OK;
}

void hersh_loop_detach(hersh_loop *loop, hersh_watcher *w) {
  for (size_t i = 0; i < loop->n_watchers; i++) {
    if (loop->watchers[i] == w) {
      loop->watchers[i] = loop->watchers[--loop->n_watchers];
      return;
    }
  }
}

static void close_leftover(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int hersh_loop_on_free(hersh_loop *loop, void (*fn)(void *ud), void *ud) {
  if (loop->n_on_free == HERSH_LOOP_HOOKS) return hersh_fail_with(HERSH_E_NOMEM, "too many on-free hooks on a loop");
  loop->on_free[loop->n_on_free++] = (struct hersh_loop_hook){fn, ud};
  return HERSH_OK;
}

void *hersh_loop_on_free_find(const hersh_loop *loop, void (*fn)(void *ud)) {
  for (size_t i = 0; i < loop->n_on_free; i++)
    if (loop->on_free[i].fn == fn) return loop->on_free[i].ud;
  return NULL;
}

void hersh_loop_on_free_remove(hersh_loop *loop, void (*fn)(void *ud), void *ud) {
  for (size_t i = 0; i < loop->n_on_free; i++) {
    if (loop->on_free[i].fn == fn && loop->on_free[i].ud == ud) {
      memmove(&loop->on_free[i], &loop->on_free[i + 1], (loop->n_on_free - i - 1) * sizeof loop->on_free[0]);
      loop->n_on_free--;
      return;
    }
  }
}

/* Inside one of our runs uv_run must not be entered again; the closes then finish when
** that run goes on. */
void hersh_loop_drain(hersh_loop *loop) {
  if (loop->depth == 0) uv_run(loop->uv, UV_RUN_NOWAIT);
}

/* The order (docs/architecture.md, "Shutdown order"): the watchers first, while every
** hook's part still works (their Lua glue releases its references in a live state);
** then the hooks, newest first (the Lua state's: its objects' handles close, the loop
** drains, the state closes); then what is still closing finishes, and the loop goes. */
void hersh_loop_free(hersh_loop *loop) {
  if (!loop) return;
  while (loop->n_watchers) hersh_watcher_free(loop->watchers[0]);
  while (loop->n_on_free) {
    struct hersh_loop_hook h = loop->on_free[--loop->n_on_free];
    h.fn(h.ud);
  }
  /* Let the handles of freed watchers finish closing. */
  while (uv_run(loop->uv, UV_RUN_NOWAIT) != 0 && loop->owns_uv) {
  }
  if (loop->owns_uv) {
    /* Anything still open is closed now (an owner that forgot it): uv_loop_close would
    ** refuse, and the loop's own memory would be lost. */
    uv_walk(loop->uv, close_leftover, NULL);
    uv_run(loop->uv, UV_RUN_NOWAIT);
  }
  hersh_watchdog_free(loop->watchdog);
  if (loop->owns_uv) uv_loop_close(&loop->own);
  free(loop->watchers);
  free(loop);
}

static bool any_live_watcher(const hersh_loop *loop) {
  for (size_t i = 0; i < loop->n_watchers; i++) {
    hersh_watcher *w = loop->watchers[i];
    if (w->started && !hersh_state_terminal((hersh_state)atomic_load(&w->state))) return true;
  }
  return false;
}

static int enter(hersh_loop *loop) {
  if (!hersh_loop_on_thread(loop))
    return hersh_fail_with(HERSH_E_INVAL, "the loop can only be run on the thread that created it");
  if (loop->depth > 0)
    return hersh_fail_with(HERSH_E_STATE, "the loop is already running (called from inside a callback)");
  loop->depth++;
  return HERSH_OK;
}

int hersh_loop_run(hersh_loop *loop) {
  int rc = enter(loop);
  if (rc) return rc;
  bool alive = true;
  while (alive && any_live_watcher(loop)) alive = uv_run(loop->uv, UV_RUN_ONCE) != 0;
  loop->depth--;
  if (any_live_watcher(loop))
    return hersh_fail_with(HERSH_E_STATE, "nothing is left that could wake the loop");
  return HERSH_OK;
}

/* uv_stop too: the timer may fire in the timer phase that opens a UV_RUN_ONCE, whose
** poll would then block with no timer left to end it. */
static void expire_cb(uv_timer_t *t) {
  *(bool *)t->data = true;
  uv_stop(t->loop);
}
static void free_handle_cb(uv_handle_t *h) { free(h); }

int hersh_loop_run_until(hersh_loop *loop, bool (*pred)(void *ud), void *ud, double seconds) {
  int rc = enter(loop);
  if (rc) return rc;
  bool expired = false;
  uv_timer_t *timer = malloc(sizeof *timer);
  if (!timer) {
    loop->depth--;
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory for a timer");
  }
  uv_timer_init(loop->uv, timer);
  timer->data = &expired;
  uint64_t ms = seconds > 0 ? (uint64_t)(seconds * 1000.0 + 0.5) : 0;
  /* The loop's clock is cached from its last turn, which may be long ago when the
  ** caller did other work meanwhile: without a fresh one the bound would end early. */
  uv_update_time(loop->uv);
  uv_timer_start(timer, expire_cb, ms, 0);
  bool done = pred && pred(ud);
  while (!done && !expired) {
    uv_run(loop->uv, UV_RUN_ONCE);
    done = pred && pred(ud);
  }
  uv_close((uv_handle_t *)timer, free_handle_cb); /* no callback after this: `expired` may go */
  loop->depth--;
  return done ? 1 : 0;
}

int hersh_loop_run_for(hersh_loop *loop, double seconds) {
  int rc = hersh_loop_run_until(loop, NULL, NULL, seconds);
  return rc < 0 ? rc : HERSH_OK;
}

int hersh_loop_run_while(hersh_loop *loop, const bool *running) {
  int rc = enter(loop);
  if (rc) return rc;
  while (*running) uv_run(loop->uv, UV_RUN_ONCE);
  loop->depth--;
  return HERSH_OK;
}

void hersh_loop_outcomes(const hersh_loop *loop, size_t *stopped, size_t *killed, size_t *crashed) {
  if (stopped) *stopped = loop->ended[0];
  if (killed) *killed = loop->ended[1];
  if (crashed) *crashed = loop->ended[2];
}
