/* log.c -- the six ring logs: bounded, oldest dropped first, ids never reused. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* The WatcherAPI's names (?type=), so Lua, C and HTTP say the same. */
static const char *const kind_names[HERSH_LOG_KINDS] = {"reduce",      "effect",  "effect_result",
                                                        "watch_error", "context", "state_fault"};

const char *hersh_log_kind_name(hersh_log_kind k) {
  return (unsigned)k < HERSH_LOG_KINDS ? kind_names[k] : "unknown";
}

bool hersh_log_kind_parse(const char *name, hersh_log_kind *out) {
  static const struct {
    const char *alias;
    hersh_log_kind kind;
  } aliases[] = {{"result", HERSH_LOG_RESULT}, {"fault", HERSH_LOG_FAULT}}; /* the first Lua names */
  for (int k = 0; k < HERSH_LOG_KINDS; k++)
    if (strcmp(name, kind_names[k]) == 0) return *out = (hersh_log_kind)k, true;
  for (size_t a = 0; a < sizeof aliases / sizeof *aliases; a++)
    if (strcmp(name, aliases[a].alias) == 0) return *out = aliases[a].kind, true;
  return false;
}

int hersh_logs_init(hersh_logs *logs, size_t max_entries) {
  memset(logs, 0, sizeof *logs);
  if (pthread_mutex_init(&logs->mu, NULL) != 0) return hersh_fail_with(HERSH_E_SYS, "pthread_mutex_init failed");
  for (int k = 0; k < HERSH_LOG_KINDS; k++) {
    logs->rings[k].max = max_entries;
    logs->rings[k].next_id = 1;
  }
  return HERSH_OK;
}

/* The text fields each kind owns; the others point at static names. */
static size_t owned_fields(hersh_log_kind kind, hersh_log_entry *e, const char **fields[3]) {
  size_t n = 0;
  switch (kind) {
  case HERSH_LOG_REDUCE: fields[n++] = &e->u.reduce.detail; break;
  case HERSH_LOG_EFFECT: fields[n++] = &e->u.effect.text; break;
  case HERSH_LOG_RESULT: fields[n++] = &e->u.result.error; break;
  case HERSH_LOG_WATCH_ERROR:
    fields[n++] = &e->u.watch_error.name;
    fields[n++] = &e->u.watch_error.error;
    break;
  case HERSH_LOG_CONTEXT:
    fields[n++] = &e->u.context.key;
    fields[n++] = &e->u.context.old_json;
    fields[n++] = &e->u.context.new_json;
    break;
  case HERSH_LOG_FAULT: fields[n++] = &e->u.fault.reason; break;
  default: break;
  }
  return n;
}

static void item_release(hersh_log_kind kind, hersh_ring_item *it) {
  if (it->msg) {
    hersh_message_unref(it->msg);
    it->msg = NULL;
    return;
  }
  const char **fields[3];
  size_t n = owned_fields(kind, &it->e, fields);
  for (size_t i = 0; i < n; i++) free((char *)*fields[i]);
}

void hersh_logs_free(hersh_logs *logs) {
  for (int k = 0; k < HERSH_LOG_KINDS; k++) {
    hersh_ring *r = &logs->rings[k];
    for (size_t i = 0; i < r->count; i++) item_release((hersh_log_kind)k, &r->items[(r->head + i) % r->cap]);
    free(r->items);
  }
  pthread_mutex_destroy(&logs->mu);
}

/* The slot for a new entry: grows the ring up to max, then reuses the oldest slot. */
static hersh_ring_item *ring_slot(hersh_ring *r, hersh_log_kind kind) {
  if (r->max == 0) return NULL;
  if (r->count == r->cap && r->cap < r->max) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    if (cap > r->max) cap = r->max;
    hersh_ring_item *items = malloc(cap * sizeof *items);
    if (items) {
      for (size_t i = 0; i < r->count; i++) items[i] = r->items[(r->head + i) % r->cap];
      free(r->items);
      r->items = items;
      r->cap = cap;
      r->head = 0;
    }
  }
  if (r->count < r->cap) return &r->items[(r->head + r->count++) % r->cap];
  if (r->cap == 0) return NULL;
  hersh_ring_item *oldest = &r->items[r->head];
  item_release(kind, oldest);
  r->head = (r->head + 1) % r->cap;
  return oldest;
}

/* The ring item for *e: its text copied, or its detail pointing into msg. */
static hersh_ring_item make_item(hersh_log_kind kind, const hersh_log_entry *e, hersh_message *msg) {
  hersh_ring_item item = {.e = *e, .msg = NULL};
  if (item.e.time == 0) item.e.time = hersh_wall_now();
  if (msg) {
    msg->refs++;
    item.msg = msg;
    item.e.u.reduce.detail = msg->msg.content;
  } else {
    const char **fields[3];
    size_t n = owned_fields(kind, &item.e, fields);
    for (size_t i = 0; i < n; i++)
      if (*fields[i]) *fields[i] = hersh_strdup(*fields[i]); /* NULL on no memory: the field is dropped */
  }
  return item;
}

/* Under the lock: numbers and stores the item; false if the ring keeps nothing. */
static bool store_item(hersh_logs *logs, hersh_log_kind kind, hersh_ring_item *item) {
  hersh_ring *r = &logs->rings[kind];
  item->e.id = r->next_id++;
  hersh_ring_item *slot = ring_slot(r, kind);
  if (slot) *slot = *item;
  return slot != NULL;
}

void hersh_logs_add(hersh_logs *logs, hersh_log_kind kind, const hersh_log_entry *e, hersh_message *msg) {
  hersh_ring_item item = make_item(kind, e, msg);
  pthread_mutex_lock(&logs->mu);
  bool stored = store_item(logs, kind, &item);
  pthread_mutex_unlock(&logs->mu);
  if (!stored) item_release(kind, &item);
}

void hersh_logs_add_two(hersh_logs *logs, hersh_log_kind k1, const hersh_log_entry *e1, hersh_log_kind k2,
                        const hersh_log_entry *e2, hersh_message *msg2) {
  hersh_ring_item a = make_item(k1, e1, NULL), b = make_item(k2, e2, msg2);
  pthread_mutex_lock(&logs->mu);
  bool stored_a = store_item(logs, k1, &a), stored_b = store_item(logs, k2, &b);
  pthread_mutex_unlock(&logs->mu);
  if (!stored_a) item_release(k1, &a);
  if (!stored_b) item_release(k2, &b);
}

int hersh_log_entry_copy(hersh_log_kind kind, const hersh_log_entry *src, hersh_log_entry *dst) {
  if ((unsigned)kind >= HERSH_LOG_KINDS || !src || !dst) return hersh_fail_with(HERSH_E_INVAL, "bad log entry copy");
  *dst = *src;
  const char **fields[3];
  size_t n = owned_fields(kind, dst, fields);
  for (size_t i = 0; i < n; i++) {
    if (*fields[i] && !(*fields[i] = hersh_strdup(*fields[i]))) {
      for (size_t j = 0; j < i; j++) free((char *)*fields[j]);
      return hersh_fail_with(HERSH_E_NOMEM, "out of memory copying a log entry");
    }
  }
  return HERSH_OK;
}

void hersh_log_entry_free(hersh_log_kind kind, hersh_log_entry *e) {
  if (!e || (unsigned)kind >= HERSH_LOG_KINDS) return;
  const char **fields[3];
  size_t n = owned_fields(kind, e, fields);
  for (size_t i = 0; i < n; i++) free((char *)*fields[i]);
  memset(e, 0, sizeof *e);
}

int hersh_watcher_logs(hersh_watcher *w, hersh_log_kind kind, size_t limit,
                       bool (*fn)(const hersh_log_entry *e, void *ud), void *ud) {
  if (!w || (unsigned)kind >= HERSH_LOG_KINDS || !fn)
    return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_logs: bad argument");
  pthread_mutex_lock(&w->logs.mu);
  hersh_ring *r = &w->logs.rings[kind];
  size_t skip = (limit && limit < r->count) ? r->count - limit : 0;
  for (size_t i = skip; i < r->count; i++)
    if (!fn(&r->items[(r->head + i) % r->cap].e, ud)) break;
  pthread_mutex_unlock(&w->logs.mu);
  return HERSH_OK;
}

size_t hersh_watcher_log_count(hersh_watcher *w, hersh_log_kind kind) {
  if (!w || (unsigned)kind >= HERSH_LOG_KINDS) return 0;
  pthread_mutex_lock(&w->logs.mu);
  size_t n = w->logs.rings[kind].count;
  pthread_mutex_unlock(&w->logs.mu);
  return n;
}
