/*
** access.c -- what code outside src/engine reads and sets instead of the structures:
** the snapshot observers take of a watcher, and the few accessors of binding.h.
*/
#include "engine.h"

int hersh_watcher_snapshot(hersh_watcher *w, hersh_snapshot *out) {
  if (!w || !out) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_snapshot: NULL argument");
  *out = (hersh_snapshot){
      .state = (hersh_state)atomic_load(&w->state),
      .started = atomic_load(&w->started),
      .waiting = atomic_load(&w->waiting),
      .failures = atomic_load(&w->failures),
      .next_retry = atomic_load(&w->next_retry),
      .pending = hersh_watcher_pending(w),
      .env = (const char *const *)w->env,
      .n_env = w->n_env,
  };
  /* The stores change only on the loop thread: elsewhere they cannot be read safely. */
  if (!hersh_loop_on_thread(w->loop)) return HERSH_OK;
  out->on_loop = true;
  out->n_context = w->context.count;
  out->n_memo = w->memo.count;
  out->n_watches = w->watches.count;
  out->last_trigger = w->ctx.trigger.reason ? &w->ctx.trigger : NULL;
  out->runs = w->stats;
  return HERSH_OK;
}

void hersh_loop_watchers(hersh_loop *loop, void (*fn)(hersh_watcher *w, void *ud), void *ud) {
  /* By index, re-reading the count: fn may stop or kill, which never detaches. */
  for (size_t i = 0; i < loop->n_watchers; i++) fn(loop->watchers[i], ud);
}

hersh_loop *hersh_watcher_loop(const hersh_watcher *w) { return w->loop; }
hersh_ctx *hersh_watcher_ctx(hersh_watcher *w) { return &w->ctx; }

void hersh_watcher_set_decide(hersh_watcher *w, hersh_recovery_fn fn, void *ud) {
  w->cfg.decide = fn;
  w->cfg.decide_ud = ud;
}

void hersh_watcher_on_free(hersh_watcher *w, void (*fn)(void *ud), void *ud) {
  w->on_free = fn;
  w->on_free_ud = ud;
}

const hersh_observer *hersh_watcher_observer(const hersh_watcher *w, void **ud) {
  if (ud) *ud = w->observer_ud;
  return w->observer;
}

bool hersh_ctx_active(const hersh_ctx *ctx) { return ctx->in_run || ctx->in_cleanup; }
int64_t hersh_ctx_deadline_ns(const hersh_ctx *ctx) { return ctx->deadline_ns; }
const char *hersh_flow_name(const hersh_flow *flow) { return flow->watch->name; }

const char *hersh_signal_type(const hersh_signal *s) {
  static const char *const types[SIG_KINDS] = {"watcher", "user", "var"};
  return types[s->kind];
}

double hersh_signal_at(const hersh_signal *s) { return s->at; }
