/*
** watch.c -- watch_call, watch_flow and watch_tick: registration on first use inside
** a run, their producers (polls on timers, flow pushes from any thread, ticks), and
** the batched application of their updates in the reducer loop.
*/
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static const char *const kind_names[] = {"watch_call", "watch_flow", "watch_tick"};

#define WATCH_OF_TIMER(t) ((hersh_watch *)(void *)((char *)(t)-offsetof(hersh_watch, timer)))

/* ---- registration ------------------------------------------------------------------ */

bool hersh_watch_exists(hersh_watcher *w, const char *name) { return hersh_strmap_find(&w->watches, name) != NULL; }

/* The watch `name` of `kind`, registering it if new (*fresh). NULL after a violation. */
static hersh_watch *lookup(hersh_ctx *ctx, const char *name, hersh_watch_kind kind, bool *fresh) {
  hersh_watcher *w = ctx->w;
  *fresh = false;
  if (!name || !*name) {
    hersh_ctx_violation(ctx, "%s needs a non-empty name", kind_names[kind]);
    return NULL;
  }
  if (!ctx->in_run) {
    hersh_ctx_violation(ctx, "%s('%s') called outside a run", kind_names[kind], name);
    return NULL;
  }
  void **slot = hersh_strmap_find(&w->watches, name);
  if (slot) {
    hersh_watch *wt = *slot;
    if (wt->kind != kind) {
      hersh_ctx_violation(ctx, "watch '%s' is a %s, not a %s", name, kind_names[wt->kind], kind_names[kind]);
      return NULL;
    }
    return wt;
  }
  if (w->watches.count >= w->cfg.max_watches) {
    hersh_ctx_violation(ctx, "watch registry limit reached: %zu/%zu (cannot register '%s')", w->watches.count,
                        w->cfg.max_watches, name);
    return NULL;
  }
  hersh_watch *wt = calloc(1, sizeof *wt);
  if (!wt || !(wt->name = hersh_strdup(name)) || !(slot = hersh_strmap_insert(&w->watches, name))) {
    if (wt) free(wt->name);
    free(wt);
    hersh_fail_with(HERSH_E_NOMEM, "out of memory registering watch '%s'", name);
    return NULL;
  }
  *slot = wt;
  w->dirty |= DIRTY_WATCHES | DIRTY_VARS;
  wt->w = w;
  wt->kind = kind;
  wt->poll_state.watch = wt;
  wt->flow.watch = wt;
  *fresh = true;
  return wt;
}

/* A watch read in a run is one of its inputs: what the reducer saw, as it saw it. */
static void record_read(hersh_ctx *ctx, const hersh_watch_value *v) {
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, "watch");
  hersh_json_cstr(&j, v->name);
  hersh_json_key(&j, "value");
  hersh_json_value(&j, v->value);
  if (v->err) {
    hersh_json_key(&j, "error");
    hersh_json_cstr(&j, v->err);
  }
  hersh_json_key(&j, "updated");
  hersh_json_bool(&j, v->updated);
  hersh_json_key(&j, "triggered");
  hersh_json_bool(&j, v->triggered);
  hersh_json_end(&j);
  hersh_trace_input(&ctx->w->trace, hersh_json_take(&j));
}

static void fill_value(hersh_ctx *ctx, hersh_watch *wt, hersh_watch_value *out) {
  if (!out) return;
  bool triggered = false;
  for (size_t i = 0; i < ctx->trigger.n_vars && !triggered; i++) triggered = strcmp(ctx->trigger.vars[i], wt->name) == 0;
  *out = (hersh_watch_value){&wt->value, wt->err, wt->name, wt->updated, triggered};
  if (ctx->in_run && hersh_trace_on(&ctx->w->trace)) record_read(ctx, out);
}

static int start_timer(hersh_watch *wt, double interval, uv_timer_cb cb, bool at_once) {
  hersh_watcher *w = wt->w;
  int rc = uv_timer_init(w->loop->uv, &wt->timer);
  if (rc) return hersh_fail_with(HERSH_E_SYS, "uv_timer_init: %s", uv_strerror(rc));
  wt->timer.data = w;
  wt->timer_open = true;
  w->open_handles++;
  uint64_t ms = (uint64_t)(interval * 1000.0 + 0.5);
  if (ms == 0) ms = 1;
  uv_timer_start(&wt->timer, cb, at_once ? 0 : ms, ms);
  return HERSH_OK;
}

static int push_update(hersh_watch *wt, hersh_var_update *u) {
  hersh_signal s = {.kind = SIG_VAR, .u.var = u};
  int rc = hersh_watcher_push(wt->w, &s);
  if (rc) {
    if (rc != HERSH_E_STOPPED) hersh_watcher_watch_error(wt->w, wt->name, "poll", hersh_errmsg());
    hersh_var_update_free(u);
  }
  return rc;
}

static hersh_var_update *new_update(hersh_watch *wt, bool independent) {
  hersh_var_update *u = calloc(1, sizeof *u);
  if (!u) {
    hersh_watcher_watch_error(wt->w, wt->name, "poll", "out of memory");
    return NULL;
  }
  u->watch = wt;
  u->independent = independent;
  return u;
}

/* ---- watch_call --------------------------------------------------------------------- */

static void poll_finish(hersh_poll *p) {
  p->answered = true;
  p->pending = false;
}

void hersh_poll_replace(hersh_poll *p, hersh_value *v) {
  hersh_watch *wt = p->watch;
  poll_finish(p);
  hersh_var_update *u = wt->closed ? NULL : new_update(wt, false);
  if (!u) {
    hersh_value_free(v);
    return;
  }
  u->kind = UPD_REPLACE;
  u->value = *v;
  *v = hersh_nil();
  push_update(wt, u);
}

void hersh_poll_update(hersh_poll *p, hersh_update_fn fn, void *ud, void (*free_ud)(void *)) {
  hersh_watch *wt = p->watch;
  poll_finish(p);
  hersh_var_update *u = wt->closed ? NULL : new_update(wt, false);
  if (!u) {
    if (free_ud) free_ud(ud);
    return;
  }
  u->kind = UPD_APPLY;
  u->fn = fn;
  u->ud = ud;
  u->free_ud = free_ud;
  push_update(wt, u);
}

void hersh_poll_skip(hersh_poll *p) { poll_finish(p); }

void hersh_poll_fail(hersh_poll *p, const char *err) {
  hersh_watch *wt = p->watch;
  poll_finish(p);
  if (wt->closed) return;
  char *copy = hersh_strdup(err ? err : "poll failed");
  if (copy) {
    free(wt->err);
    wt->err = copy;
  }
  hersh_watcher_watch_error(wt->w, wt->name, "poll", err ? err : "poll failed");
  hersh_watcher_changed(wt->w, DIRTY_VARS);
}

hersh_poll *hersh_poll_defer(hersh_poll *p) {
  p->deferred = true;
  return p;
}

static void call_tick(uv_timer_t *t) {
  hersh_watch *wt = WATCH_OF_TIMER(t);
  hersh_poll *p = &wt->poll_state;
  if (wt->closed || p->pending) return; /* the previous poll is still under way */
  p->pending = true;
  p->answered = p->deferred = false;
  hersh_errclear();
  int rc = wt->poll(p, wt->ud);
  if (p->answered || p->deferred) return; /* a deferred poll answers later */
  if (rc != HERSH_OK) hersh_poll_fail(p, hersh_errmsg()[0] ? hersh_errmsg() : "poll failed");
  else hersh_poll_fail(p, "the poll gave no answer (replace, update, skip, fail or defer)");
}

int hersh_ctx_watch_call(hersh_ctx *ctx, const char *name, double interval, hersh_poll_fn poll, void *ud,
                         void (*free_ud)(void *), const hersh_value *init, hersh_watch_value *out) {
  bool fresh;
  if (!poll) {
    if (free_ud) free_ud(ud);
    return hersh_ctx_violation(ctx, "watch_call('%s') needs a poll function", name ? name : "");
  }
  if (!(interval > 0)) {
    if (free_ud) free_ud(ud);
    return hersh_ctx_violation(ctx, "watch_call('%s') needs a positive interval", name ? name : "");
  }
  hersh_watch *wt = lookup(ctx, name, WATCH_CALL, &fresh);
  if (!wt || !fresh) {
    if (free_ud) free_ud(ud); /* a later call only reads */
    if (!wt) return hersh_ctx_violation(ctx, "%s", hersh_errmsg());
    fill_value(ctx, wt, out);
    return HERSH_OK;
  }
  wt->poll = poll;
  wt->ud = ud;
  wt->free_ud = free_ud;
  wt->interval = interval;
  if (init && hersh_value_retain_copy(&wt->value, init) != HERSH_OK) return HERSH_E_NOMEM;
  int rc = start_timer(wt, interval, call_tick, false);
  if (rc) return rc;
  fill_value(ctx, wt, out);
  return HERSH_OK;
}

/* ---- watch_tick --------------------------------------------------------------------- */

static int tick_update(hersh_value *v, void *ud, hersh_errbuf *err) {
  (void)ud;
  int64_t count = 0;
  const hersh_value *c = v->type == HERSH_T_MAP ? hersh_map_get(v, "count") : NULL;
  if (c && c->type == HERSH_T_INT) count = c->as.i;
  hersh_value next = hersh_map(), n = hersh_int(count + 1), t = hersh_num(hersh_wall_now());
  if (next.type != HERSH_T_MAP || hersh_map_set(&next, "count", &n) || hersh_map_set(&next, "time", &t)) {
    hersh_value_free(&next);
    return hersh_errorf(err, "out of memory");
  }
  hersh_value_free(v);
  *v = next;
  return HERSH_OK;
}

static void tick_tick(uv_timer_t *t) {
  hersh_watch *wt = WATCH_OF_TIMER(t);
  hersh_var_update *u = wt->closed ? NULL : new_update(wt, false);
  if (!u) return;
  u->kind = UPD_APPLY;
  u->fn = tick_update;
  push_update(wt, u);
}

int hersh_ctx_watch_tick(hersh_ctx *ctx, const char *name, double interval, hersh_watch_value *out) {
  bool fresh;
  if (!(interval > 0)) return hersh_ctx_violation(ctx, "watch_tick('%s') needs a positive interval", name ? name : "");
  hersh_watch *wt = lookup(ctx, name, WATCH_TICK, &fresh);
  if (!wt) return hersh_ctx_violation(ctx, "%s", hersh_errmsg());
  if (fresh) {
    wt->interval = interval;
    int rc = start_timer(wt, interval, tick_tick, true);
    if (rc) return rc;
  }
  fill_value(ctx, wt, out);
  return HERSH_OK;
}

/* ---- watch_flow --------------------------------------------------------------------- */

int hersh_ctx_watch_flow(hersh_ctx *ctx, const char *name, const hersh_value *init, hersh_flow **flow,
                         hersh_watch_value *out) {
  bool fresh;
  hersh_watch *wt = lookup(ctx, name, WATCH_FLOW, &fresh);
  if (!wt) return hersh_ctx_violation(ctx, "%s", hersh_errmsg());
  if (fresh && init && hersh_value_retain_copy(&wt->value, init) != HERSH_OK) return HERSH_E_NOMEM;
  if (flow) *flow = &wt->flow;
  fill_value(ctx, wt, out);
  return HERSH_OK;
}

int hersh_flow_push(hersh_flow *flow, hersh_value *v, const char *err) {
  if (!flow || !v) return hersh_fail_with(HERSH_E_INVAL, "hersh_flow_push: NULL flow or value");
  hersh_var_update *u = calloc(1, sizeof *u);
  if (!u) return hersh_fail_with(HERSH_E_NOMEM, "out of memory pushing a flow item");
  u->watch = flow->watch;
  u->independent = true;
  u->kind = err ? UPD_ERROR : UPD_REPLACE;
  if (err && !(u->err = hersh_strdup(err))) {
    free(u);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory pushing a flow item");
  }
  u->value = *v;
  *v = hersh_nil();
  hersh_signal s = {.kind = SIG_VAR, .u.var = u};
  int rc = hersh_watcher_push(flow->watch->w, &s);
  if (rc) {
    *v = u->value; /* the caller keeps its value on failure */
    u->value = hersh_nil();
    hersh_var_update_free(u);
  }
  return rc;
}

/* ---- teardown ----------------------------------------------------------------------- */

void hersh_watch_close_all(hersh_watcher *w) {
  for (size_t i = 0; i < w->watches.count; i++) {
    hersh_watch *wt = w->watches.entries[i].val;
    wt->closed = true;
    if (wt->timer_open && !uv_is_closing((uv_handle_t *)&wt->timer))
      uv_close((uv_handle_t *)&wt->timer, hersh_watcher_handle_closed);
  }
}

void hersh_watch_free(void *p) {
  hersh_watch *wt = p;
  free(wt->name);
  free(wt->err);
  hersh_value_free(&wt->value);
  if (wt->free_ud) wt->free_ud(wt->ud);
  free(wt);
}

/* ---- applying a batch ------------------------------------------------------------- */

static void set_err(hersh_watch *wt, const char *err) {
  free(wt->err);
  wt->err = err ? hersh_strdup(err) : NULL;
}

static void apply_one(hersh_watcher *w, hersh_var_update *u) {
  hersh_watch *wt = u->watch;
  w->dirty |= DIRTY_VARS;
  switch (u->kind) {
  case UPD_REPLACE:
    hersh_value_free(&wt->value);
    wt->value = u->value;
    u->value = hersh_nil();
    set_err(wt, NULL);
    break;
  case UPD_ERROR:
    hersh_value_free(&wt->value);
    wt->value = u->value;
    u->value = hersh_nil();
    set_err(wt, u->err);
    hersh_watcher_watch_error(w, wt->name, "flow", u->err);
    break;
  case UPD_APPLY: {
    hersh_value next = hersh_nil();
    hersh_errbuf err = {{0}};
    int rc = hersh_value_retain_copy(&next, &wt->value);
    if (rc == HERSH_OK) rc = u->fn(&next, u->ud, &err);
    if (rc == HERSH_OK) {
      hersh_value_free(&wt->value);
      wt->value = next;
      set_err(wt, NULL);
    } else {
      hersh_value_free(&next);
      set_err(wt, err.msg[0] ? err.msg : "update failed");
      hersh_watcher_watch_error(w, wt->name, "update", wt->err ? wt->err : "update failed");
    }
    break;
  }
  }
  wt->updated = true;
}

static bool add_trigger_name(hersh_ctx *ctx, const char *name) {
  if (ctx->trigger.n_vars == ctx->trigger_vars_cap) {
    size_t cap = ctx->trigger_vars_cap ? ctx->trigger_vars_cap * 2 : 8;
    const char **v = realloc(ctx->trigger_vars, cap * sizeof *v);
    if (!v) return false;
    ctx->trigger_vars = v;
    ctx->trigger_vars_cap = cap;
  }
  ctx->trigger_vars[ctx->trigger.n_vars++] = name;
  ctx->trigger.vars = ctx->trigger_vars;
  return true;
}

void hersh_watch_apply_batch(hersh_watcher *w, hersh_var_update **batch, size_t n) {
  hersh_ctx *ctx = &w->ctx;
  uint64_t batch_id = ++w->batch_seq;
  ctx->trigger.n_vars = 0;
  ctx->trigger.vars = ctx->trigger_vars;
  /* Independent updates: only the newest per watch counts. Walking backwards, the
  ** first one seen for a watch is its newest; older ones are dropped unapplied. */
  for (size_t i = n; i-- > 0;) {
    hersh_var_update *u = batch[i];
    if (!u->independent) continue;
    if (u->watch->newest_mark == batch_id) {
      hersh_var_update_free(u);
      batch[i] = NULL;
    } else {
      u->watch->newest_mark = batch_id;
    }
  }
  for (size_t i = 0; i < n; i++) {
    hersh_var_update *u = batch[i];
    if (!u) continue;
    hersh_watch *wt = u->watch;
    if (!wt->closed) {
      apply_one(w, u);
      if (wt->trigger_mark != batch_id) { /* each name once in the trigger */
        wt->trigger_mark = batch_id;
        add_trigger_name(ctx, wt->name);
      }
    }
    hersh_var_update_free(u);
  }
}
