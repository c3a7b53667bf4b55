/*
** context.c -- what a reducer sees through hersh_ctx: its message and trigger, the
** context store, memo, environment, effect log, and the results it returns.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* ---- results ---------------------------------------------------------------------- */

static int set_outcome(hersh_ctx *ctx, hersh_outcome outcome, char *text, int rc) {
  if (ctx->outcome == OUT_LIMIT) { /* a broken limit wins over what the reducer says next */
    free(text);
    return rc;
  }
  free(ctx->outcome_text);
  ctx->outcome = outcome;
  ctx->outcome_text = text;
  return rc;
}

int hersh_stop(hersh_ctx *ctx, const char *reason) {
  return set_outcome(ctx, OUT_STOP, hersh_strdup(reason ? reason : ""), HERSH_R_STOP);
}

int hersh_kill(hersh_ctx *ctx, const char *reason) {
  return set_outcome(ctx, OUT_KILL, hersh_strdup(reason ? reason : ""), HERSH_R_KILL);
}

int hersh_crash(hersh_ctx *ctx, const char *reason, const char *cause) {
  hersh_buf b = {0};
  hersh_buf_printf(&b, "crash: %s", reason ? reason : "");
  if (cause) hersh_buf_printf(&b, " (caused by: %s)", cause);
  return set_outcome(ctx, OUT_CRASH, hersh_buf_take(&b), HERSH_R_CRASH);
}

int hersh_fail(hersh_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  return set_outcome(ctx, OUT_FAIL, text, HERSH_R_FAIL);
}

int hersh_ctx_violation(hersh_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *text = hersh_vformat(fmt, ap);
  va_end(ap);
  if (!ctx->in_run) {
    if (!ctx->in_cleanup && text) hersh_watcher_crash_later(ctx->w, text);
    int rc = hersh_fail_with(HERSH_E_LIMIT, "%s", text ? text : "engine limit");
    free(text);
    return rc;
  }
  if (ctx->outcome != OUT_LIMIT) { /* the first violation is the one reported */
    free(ctx->outcome_text);
    ctx->outcome = OUT_LIMIT;
    ctx->outcome_text = text;
  } else {
    free(text);
  }
  return hersh_fail_with(HERSH_E_LIMIT, "%s", ctx->outcome_text ? ctx->outcome_text : "engine limit");
}

/* ---- what the run is about -------------------------------------------------------- */

hersh_watcher *hersh_ctx_watcher(hersh_ctx *ctx) { return ctx->w; }
const hersh_msg *hersh_ctx_message(hersh_ctx *ctx) { return ctx->msg; }
const hersh_trigger *hersh_ctx_trigger(hersh_ctx *ctx) { return &ctx->trigger; }
bool hersh_ctx_cancelled(const hersh_ctx *ctx) { return hersh_mono_ns() >= ctx->deadline_ns; }

const char *hersh_ctx_env(hersh_ctx *ctx, const char *key) {
  hersh_watcher *w = ctx->w;
  size_t klen = strlen(key);
  for (size_t i = 0; i < w->n_env; i++)
    if (strncmp(w->env[i], key, klen) == 0 && w->env[i][klen] == '=') return w->env[i] + klen + 1;
  return NULL;
}

int hersh_ctx_log(hersh_ctx *ctx, const char *text) {
  if (!text) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_log: NULL text");
  hersh_log_entry e = {.u.effect.text = text};
  hersh_logs_add(&ctx->w->logs, HERSH_LOG_EFFECT, &e, NULL);
  return HERSH_OK;
}

int hersh_ctx_print(hersh_ctx *ctx, const char *text) {
  if (!text) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_print: NULL text");
  if (printf("%s\n", text) < 0 || fflush(stdout) != 0) return hersh_fail_with(HERSH_E_SYS, "cannot write to stdout");
  return hersh_ctx_log(ctx, text);
}

/* ---- inputs: time and random numbers, recorded (trace.c) -------------------------- */

/* Records {"<kind>": number} as one input of the open run. */
static void record_number(hersh_ctx *ctx, const char *kind, bool integer, int64_t i, double d) {
  if (!ctx->in_run || !hersh_trace_on(&ctx->w->trace)) return;
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, kind);
  if (integer) hersh_json_int(&j, i);
  else hersh_json_number(&j, d);
  hersh_json_end(&j);
  hersh_trace_input(&ctx->w->trace, hersh_json_take(&j));
}

double hersh_ctx_now(hersh_ctx *ctx) {
  if (!ctx->in_run) return hersh_wall_now();
  if (!ctx->now_set) {
    ctx->now = hersh_wall_now();
    ctx->now_set = true;
    record_number(ctx, "now", false, 0, ctx->now);
  }
  return ctx->now;
}

double hersh_ctx_random(hersh_ctx *ctx) {
  double d = (double)(hersh_trace_rand64(&ctx->w->trace) >> 11) * 0x1.0p-53;
  record_number(ctx, "random", false, 0, d);
  return d;
}

int hersh_ctx_random_int(hersh_ctx *ctx, int64_t lo, int64_t hi, int64_t *out) {
  if (!out || lo > hi) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_random_int: the interval is empty");
  uint64_t n = (uint64_t)hi - (uint64_t)lo, r = hersh_trace_rand64(&ctx->w->trace);
  if (n & (n + 1)) { /* n + 1 not a power of 2: draw in the smallest 2^b - 1 >= n, as Lua does */
    uint64_t lim = n;
    for (int shift = 1; shift < 64; shift <<= 1) lim |= lim >> shift;
    while ((r &= lim) > n) r = hersh_trace_rand64(&ctx->w->trace);
  } else {
    r &= n;
  }
  *out = (int64_t)((uint64_t)lo + r);
  record_number(ctx, "random", true, *out, 0);
  return HERSH_OK;
}

void hersh_ctx_record_resume(hersh_ctx *ctx, const hersh_value *values) {
  if (!ctx->in_run || !hersh_trace_on(&ctx->w->trace)) return;
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  hersh_json_key(&j, "resume");
  hersh_json_value(&j, values);
  hersh_json_end(&j);
  hersh_trace_input(&ctx->w->trace, hersh_json_take(&j));
}

bool hersh_ctx_tracing(const hersh_ctx *ctx) { return ctx->in_run && hersh_trace_on(&ctx->w->trace); }

/* ---- the context store ------------------------------------------------------------ */

const hersh_value *hersh_ctx_get(hersh_ctx *ctx, const char *key) {
  void **slot = key ? hersh_strmap_find(&ctx->w->context, key) : NULL;
  return slot ? *slot : NULL;
}

/* Stores *v (taken) under key and writes the one context-log entry. */
static int store(hersh_ctx *ctx, const char *key, hersh_value *v) {
  hersh_strmap *m = &ctx->w->context;
  hersh_value *box = malloc(sizeof *box);
  if (!box) return hersh_fail_with(HERSH_E_NOMEM, "out of memory storing '%s'", key);
  void **slot = hersh_strmap_find(m, key);
  bool fresh = slot == NULL;
  if (fresh && !(slot = hersh_strmap_insert(m, key))) {
    free(box);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory storing '%s'", key);
  }
  *box = *v;
  *v = hersh_nil();
  hersh_value *old = *slot;
  *slot = box;
  ctx->w->dirty |= DIRTY_CONTEXT;
  char *old_json = old ? hersh_value_json(old) : NULL;
  char *new_json = hersh_value_json(box);
  hersh_log_entry e = {.u.context = {key, fresh ? "initialized" : "updated", old_json ? old_json : "null", new_json}};
  hersh_logs_add(&ctx->w->logs, HERSH_LOG_CONTEXT, &e, NULL);
  free(old_json);
  if (ctx->in_run) hersh_trace_context_write(&ctx->w->trace, key, new_json); /* taken */
  else free(new_json);
  if (old) {
    hersh_value_free(old);
    free(old);
  }
  return HERSH_OK;
}

int hersh_ctx_set(hersh_ctx *ctx, const char *key, hersh_value *v) {
  if (!key || !v) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_set: NULL key or value");
  return store(ctx, key, v);
}

int hersh_ctx_update(hersh_ctx *ctx, const char *key, hersh_update_fn fn, void *ud) {
  if (!key || !fn) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_update: NULL key or function");
  const hersh_value *cur = hersh_ctx_get(ctx, key);
  hersh_value copy = hersh_nil();
  if (cur && hersh_value_copy(&copy, cur) != HERSH_OK) return HERSH_E_NOMEM;
  hersh_errbuf err = {{0}};
  int rc = fn(&copy, ud, &err);
  if (rc != HERSH_OK) {
    hersh_value_free(&copy); /* an error stores nothing */
    return hersh_fail_with(HERSH_E_RUNTIME, "update of '%s' failed: %s", key, err.msg[0] ? err.msg : "error");
  }
  return store(ctx, key, &copy);
}

/* ---- memo ------------------------------------------------------------------------- */

int hersh_ctx_memo(hersh_ctx *ctx, const char *name, hersh_compute_fn fn, void *ud, const hersh_value **out) {
  if (!name || !fn || !out) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_memo: NULL argument");
  hersh_watcher *w = ctx->w;
  void **slot = hersh_strmap_find(&w->memo, name);
  if (slot) {
    *out = *slot;
    return HERSH_OK;
  }
  if (w->memo.count >= w->cfg.max_memo)
    return hersh_fail_with(HERSH_E_LIMIT, "memo limit reached: %zu/%zu (cannot cache '%s')", w->memo.count,
                           w->cfg.max_memo, name);
  hersh_value v = hersh_nil();
  hersh_errbuf err = {{0}};
  int rc = fn(&v, ud, &err);
  if (rc != HERSH_OK) {
    hersh_value_free(&v);
    return hersh_fail_with(HERSH_E_RUNTIME, "memo '%s' failed: %s", name, err.msg[0] ? err.msg : "error");
  }
  hersh_value *box = malloc(sizeof *box);
  if (!box || !(slot = hersh_strmap_insert(&w->memo, name))) {
    free(box);
    hersh_value_free(&v);
    return hersh_fail_with(HERSH_E_NOMEM, "out of memory caching '%s'", name);
  }
  *box = v;
  *slot = box;
  w->dirty |= DIRTY_MEMO;
  char *json = hersh_value_json(box);
  hersh_watcher_effect(w, "Memo[%s] = %s", name, json ? json : "?");
  free(json);
  *out = box;
  return HERSH_OK;
}

int hersh_ctx_clear_memo(hersh_ctx *ctx, const char *name) {
  if (!name) return hersh_fail_with(HERSH_E_INVAL, "hersh_ctx_clear_memo: NULL name");
  hersh_value *old = hersh_strmap_remove(&ctx->w->memo, name);
  if (old) {
    hersh_value_free(old);
    free(old);
    ctx->w->dirty |= DIRTY_MEMO;
  }
  hersh_watcher_effect(ctx->w, "Memo[%s] cleared", name);
  return HERSH_OK;
}
