/* queue.c -- bounded FIFO queues of signals, growing on demand up to their capacity. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

hersh_message *hersh_message_new(const char *content, size_t len) {
  hersh_message *m = malloc(sizeof *m + len + 1);
  if (!m) return NULL;
  m->refs = 1;
  memcpy(m->data, content, len);
  m->data[len] = '\0';
  m->msg = (hersh_msg){.content = m->data, .len = len, .received_at = hersh_wall_now()};
  return m;
}

void hersh_message_unref(hersh_message *m) {
  if (m && --m->refs == 0) free(m);
}

void hersh_var_update_free(hersh_var_update *u) {
  if (!u) return;
  hersh_value_free(&u->value);
  if (u->free_ud) u->free_ud(u->ud);
  free(u->err);
  free(u);
}

void hersh_signal_release(hersh_signal *s) {
  switch (s->kind) {
  case SIG_WATCHER: free(s->u.w.reason); break;
  case SIG_USER: hersh_message_unref(s->u.user); break;
  case SIG_VAR: hersh_var_update_free(s->u.var); break;
  default: break;
  }
  memset(s, 0, sizeof *s);
}

void hersh_queue_init(hersh_queue *q, size_t max) {
  memset(q, 0, sizeof *q);
  q->max = max;
}

void hersh_queue_free(hersh_queue *q) {
  hersh_signal s;
  while (hersh_queue_pop(q, &s)) hersh_signal_release(&s);
  free(q->items);
  q->items = NULL;
}

int hersh_queue_push(hersh_queue *q, const hersh_signal *s) {
  if (q->count >= q->max) return HERSH_E_QUEUE_FULL;
  if (q->count == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 64;
    if (cap > q->max) cap = q->max;
    hersh_signal *items = malloc(cap * sizeof *items);
    if (!items) return HERSH_E_NOMEM;
    for (size_t i = 0; i < q->count; i++) items[i] = q->items[(q->head + i) % q->cap];
    free(q->items);
    q->items = items;
    q->cap = cap;
    q->head = 0;
  }
  q->items[(q->head + q->count++) % q->cap] = *s;
  return HERSH_OK;
}

bool hersh_queue_pop(hersh_queue *q, hersh_signal *out) {
  if (q->count == 0) return false;
  *out = q->items[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  return true;
}
