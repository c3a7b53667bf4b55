/*
** report.c -- the log callback: each failure told as it happens, as a struct and as a
** ready-made line, so a failure is never only in a ring log nobody reads.
*/
#include <stdlib.h>
#include <string.h>

#include "engine.h"

enum { QUOTE_MAX = 60 }; /* bytes of a message shown in a line: enough to recognise it */

int hersh_loop_on_report(hersh_loop *loop, hersh_report_fn fn, void *ud) {
  if (!loop) return hersh_fail_with(HERSH_E_INVAL, "hersh_loop_on_report: NULL loop");
  if (!hersh_loop_on_thread(loop)) return hersh_fail_with(HERSH_E_INVAL, "set the log callback on the loop's thread");
  loop->on_report = fn;
  loop->on_report_ud = fn ? ud : NULL;
  return HERSH_OK;
}

/* Text that cannot break or forge a line: control bytes but a tab as \xHH, so each
** line of a report starts with its own "watcher" or two spaces. */
static void put_clean(hersh_buf *b, const char *s, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      hersh_buf_printf(b, "\\x%02x", c);
    else
      hersh_buf_put(b, (const char *)&c, 1);
  }
}

/* `s` quoted: `"` and `\` escaped, a newline as \n, cut after QUOTE_MAX bytes. */
static void put_quoted(hersh_buf *b, const char *s, size_t len) {
  size_t n = len < QUOTE_MAX ? len : QUOTE_MAX;
  hersh_buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '"' || c == '\\')
      hersh_buf_printf(b, "\\%c", c);
    else if (c == '\n')
      hersh_buf_puts(b, "\\n");
    else
      put_clean(b, &c, 1);
  }
  hersh_buf_puts(b, len > QUOTE_MAX ? "\"..." : "\"");
}

static void put_clean_str(hersh_buf *b, const char *s) { put_clean(b, s, strlen(s)); }

static void put_trigger(hersh_buf *b, const hersh_trigger *t, const hersh_msg *msg) {
  hersh_buf_puts(b, " (");
  if (msg) {
    hersh_buf_puts(b, "message ");
    put_quoted(b, msg->content, msg->len);
  } else if (t->n_vars) {
    hersh_buf_puts(b, "vars ");
    for (size_t i = 0; i < t->n_vars; i++) {
      if (i) hersh_buf_puts(b, ", ");
      put_clean_str(b, t->vars[i]);
    }
  } else {
    hersh_buf_puts(b, t->reason ? t->reason : "run");
  }
  hersh_buf_puts(b, ")");
}

static size_t first_line_len(const char *s) { return strcspn(s, "\n"); }

/* The error's lines after the first, each on a line of its own indented by two. */
static void put_rest(hersh_buf *b, const char *err) {
  const char *p = err + first_line_len(err);
  while (*p == '\n') {
    p++;
    size_t n = first_line_len(p);
    hersh_buf_puts(b, "\n  ");
    put_clean(b, p, n);
    p += n;
  }
}

static void put_decision(hersh_buf *b, const hersh_report *r) {
  hersh_buf_printf(b, "; failure %d, ", r->failures);
  if (!r->decided) {
    hersh_buf_puts(b, "no retry: the watcher is stopping");
    return;
  }
  switch (r->decision.action) {
  case HERSH_ACT_RETRY: hersh_buf_printf(b, "retry in %g s", r->decision.delay); break;
  case HERSH_ACT_RECOVER: hersh_buf_printf(b, "recover in %g s (WaitRecover)", r->decision.delay); break;
  case HERSH_ACT_CRASH: hersh_buf_puts(b, "the recovery policy gives up: crash"); break;
  }
}

static char *format_line(const hersh_report *r) {
  hersh_buf b = {0};
  const char *err = r->error ? r->error : "";
  hersh_buf_puts(&b, "watcher \"");
  put_clean_str(&b, r->watcher_id);
  hersh_buf_puts(&b, "\" ");
  switch (r->kind) {
  case HERSH_REPORT_RUN_FAILED:
    hersh_buf_puts(&b, "run failed");
    put_trigger(&b, r->trigger, r->message);
    break;
  case HERSH_REPORT_CLEANUP_FAILED: hersh_buf_puts(&b, "cleanup failed"); break;
  case HERSH_REPORT_WATCH_ERROR:
    hersh_buf_puts(&b, "watch \"");
    put_clean_str(&b, r->watch);
    hersh_buf_printf(&b, "\" %s failed", r->phase);
    break;
  case HERSH_REPORT_CRASHED:
    hersh_buf_puts(&b, "crashed");
    if (r->failures) hersh_buf_printf(&b, " after %d failure%s", r->failures, r->failures == 1 ? "" : "s");
    break;
  }
  hersh_buf_puts(&b, ": ");
  put_clean(&b, err, first_line_len(err));
  if (r->kind == HERSH_REPORT_RUN_FAILED) put_decision(&b, r);
  if (r->kind != HERSH_REPORT_CRASHED) put_rest(&b, err); /* the run's report had the traceback */
  return hersh_buf_take(&b);
}

/* Fills the common fields and calls the callback. */
static void emit(hersh_watcher *w, hersh_report *r) {
  hersh_loop *loop = w->loop;
  if (!loop->on_report || w->freed || !hersh_loop_on_thread(loop)) return; /* as hersh.h promises */
  r->watcher = w;
  r->watcher_id = w->id;
  r->time = hersh_wall_now();
  char *line = format_line(r);
  r->line = line ? line : "watcher report: out of memory formatting it";
  loop->on_report(r, loop->on_report_ud);
  free(line);
}

void hersh_report_run_failed(hersh_watcher *w, const char *err, int failures, const hersh_decision *d) {
  hersh_report r = {.kind = HERSH_REPORT_RUN_FAILED,
                    .error = err,
                    .trigger = &w->ctx.trigger,
                    .message = w->ctx.msg,
                    .failures = failures,
                    .decided = d != NULL,
                    .retry_at = hersh_watcher_next_retry(w)};
  if (d) r.decision = *d;
  emit(w, &r);
}

void hersh_report_cleanup_failed(hersh_watcher *w, const char *err) {
  emit(w, &(hersh_report){.kind = HERSH_REPORT_CLEANUP_FAILED, .error = err});
}

void hersh_report_watch_error(hersh_watcher *w, const char *name, const char *phase, const char *err) {
  emit(w, &(hersh_report){.kind = HERSH_REPORT_WATCH_ERROR, .error = err, .watch = name, .phase = phase});
}

void hersh_report_crashed(hersh_watcher *w, const char *reason, int failures) {
  emit(w, &(hersh_report){
              .kind = HERSH_REPORT_CRASHED, .level = HERSH_REPORT_ERROR, .error = reason, .failures = failures});
}
