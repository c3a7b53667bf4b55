/*
** snapshot.c -- JSON of a watcher's live sections (context, memo, watch variables,
** watch names, pending signals, the trigger), for observers such as the WatcherAPI.
** The section builders run on the loop thread: foreign values convert only there.
*/
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static void json_key(hersh_buf *b, const char *key) {
  hersh_buf_json_string(b, key, strlen(key));
  hersh_buf_put(b, ":", 1);
}

char *hersh_watcher_json_store(hersh_watcher *w, bool memo) {
  const hersh_strmap *m = memo ? &w->memo : &w->context;
  hersh_buf b = {0};
  hersh_buf_put(&b, "{", 1);
  for (size_t i = 0; i < m->count; i++) {
    if (i) hersh_buf_put(&b, ",", 1);
    json_key(&b, m->entries[i].key);
    hersh_buf_json_value(&b, m->entries[i].val);
  }
  hersh_buf_put(&b, "}", 1);
  return hersh_buf_take(&b);
}

char *hersh_watcher_json_vars(hersh_watcher *w) {
  hersh_buf b = {0};
  hersh_buf_put(&b, "{", 1);
  for (size_t i = 0; i < w->watches.count; i++) {
    const hersh_watch *wt = w->watches.entries[i].val;
    if (i) hersh_buf_put(&b, ",", 1);
    json_key(&b, wt->name);
    if (wt->err) { /* the original's shape for a variable that holds an error */
      hersh_buf_puts(&b, "{\"value\":");
      hersh_buf_json_value(&b, &wt->value);
      hersh_buf_puts(&b, ",\"error\":");
      hersh_buf_json_string(&b, wt->err, strlen(wt->err));
      hersh_buf_put(&b, "}", 1);
    } else {
      hersh_buf_json_value(&b, &wt->value);
    }
  }
  hersh_buf_put(&b, "}", 1);
  return hersh_buf_take(&b);
}

char *hersh_watcher_json_watching(hersh_watcher *w) {
  hersh_buf b = {0};
  hersh_buf_put(&b, "[", 1);
  for (size_t i = 0; i < w->watches.count; i++) {
    if (i) hersh_buf_put(&b, ",", 1);
    const char *name = w->watches.entries[i].key;
    hersh_buf_json_string(&b, name, strlen(name));
  }
  hersh_buf_put(&b, "]", 1);
  return hersh_buf_take(&b);
}

void hersh_buf_json_trigger(hersh_buf *b, const hersh_trigger *t) {
  hersh_buf_printf(b, "{\"watcher\":%s,\"user\":%s,\"vars\":[", t->watcher ? "true" : "false",
                   t->user ? "true" : "false");
  for (size_t i = 0; i < t->n_vars; i++) {
    if (i) hersh_buf_put(b, ",", 1);
    hersh_buf_json_string(b, t->vars[i], strlen(t->vars[i]));
  }
  hersh_buf_puts(b, "],\"reason\":");
  if (t->reason) hersh_buf_json_string(b, t->reason, strlen(t->reason));
  else hersh_buf_puts(b, "null");
  hersh_buf_put(b, "}", 1);
}

void hersh_buf_signal(hersh_buf *b, const hersh_signal *s) {
  static const char *const wsig_names[] = {"init", "stop", "kill", "retry", "recover", "crash"};
  switch (s->kind) {
  case SIG_USER: hersh_buf_put(b, s->u.user->msg.content, s->u.user->msg.len); break;
  case SIG_VAR:
    hersh_buf_printf(b, "VarSig{var=%s, type=%s}", s->u.var->watch->name,
                     s->u.var->independent ? "independent" : "dependent");
    break;
  case SIG_WATCHER: hersh_buf_printf(b, "WatcherSig{signal=%s}", wsig_names[s->u.w.what]); break;
  default: break;
  }
}
