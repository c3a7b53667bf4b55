/*
** snapshot.c -- JSON of a watcher's live sections (context, memo, watch variables,
** watch names, pending signals, the trigger), for observers such as the WatcherAPI.
** The section builders run on the loop thread: foreign values convert only there.
*/
#include <stdlib.h>
#include <string.h>

#include "engine.h"

char *hersh_watcher_json_store(hersh_watcher *w, bool memo) {
  const hersh_strmap *m = memo ? &w->memo : &w->context;
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  for (size_t i = 0; i < m->count; i++) {
    hersh_json_key(&j, m->entries[i].key);
    hersh_json_value(&j, m->entries[i].val);
  }
  hersh_json_end(&j);
  return hersh_json_take(&j);
}

char *hersh_watcher_json_vars(hersh_watcher *w) {
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_object(&j);
  for (size_t i = 0; i < w->watches.count; i++) {
    const hersh_watch *wt = w->watches.entries[i].val;
    hersh_json_key(&j, wt->name);
    if (wt->err) { /* the original's shape for a variable that holds an error */
      hersh_json_object(&j);
      hersh_json_key(&j, "value");
      hersh_json_value(&j, &wt->value);
      hersh_json_key(&j, "error");
      hersh_json_cstr(&j, wt->err);
      hersh_json_end(&j);
    } else {
      hersh_json_value(&j, &wt->value);
    }
  }
  hersh_json_end(&j);
  return hersh_json_take(&j);
}

char *hersh_watcher_json_watching(hersh_watcher *w) {
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_array(&j);
  for (size_t i = 0; i < w->watches.count; i++) hersh_json_cstr(&j, w->watches.entries[i].key);
  hersh_json_end(&j);
  return hersh_json_take(&j);
}

void hersh_json_trigger(hersh_json *j, const hersh_trigger *t) {
  hersh_json_object(j);
  hersh_json_key(j, "watcher");
  hersh_json_bool(j, t->watcher);
  hersh_json_key(j, "user");
  hersh_json_bool(j, t->user);
  hersh_json_key(j, "vars");
  hersh_json_array(j);
  for (size_t i = 0; i < t->n_vars; i++) hersh_json_cstr(j, t->vars[i]);
  hersh_json_end(j);
  hersh_json_key(j, "reason");
  hersh_json_cstr(j, t->reason);
  hersh_json_end(j);
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
