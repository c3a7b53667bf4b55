/*
** trace.c -- the trace of a watcher's runs, for deterministic replay (docs/replay.md).
**
** Each run is one record: its trigger, the inputs it read through the engine (the run's
** time, random numbers, watch values, what its waits resumed with) and its checkpoint
** (outcome, state before and after, the retry it scheduled, its context writes). The
** records sit in a ring of the last N runs; a record leaving the ring folds its writes
** into a snapshot of the context, so the ring always starts from a known store.
** The hot path stores pointers and texts the engine already made (a message reference,
** the context log's JSON); lines are encoded only when the trace is read.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

int hersh_trace_init(hersh_trace *tr, size_t max_runs, uint64_t seed) {
  memset(tr, 0, sizeof *tr);
  if (pthread_mutex_init(&tr->mu, NULL) != 0) return hersh_fail_with(HERSH_E_SYS, "pthread_mutex_init failed");
  tr->max = max_runs;
  tr->next_seq = 1;
  hersh_strmap_init(&tr->snapshot);
  for (int i = 0; i < 4; i++) { /* splitmix64 spreads the seed over xoshiro's state */
    uint64_t z = (seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    tr->rng[i] = z ^ (z >> 31);
  }
  return HERSH_OK;
}

/* Empties a record, keeping its arrays for the next run that reuses it. */
static void run_clear(hersh_trace_run *r) {
  if (r->msg) hersh_message_unref(r->msg);
  if (r->vars) free(r->vars); /* tested first: most runs have neither, and this is per run */
  if (r->error) free(r->error);
  for (size_t i = 0; i < r->n_inputs; i++) free(r->inputs[i]);
  for (size_t i = 0; i < r->n_writes; i++) {
    free(r->writes[i].key);
    free(r->writes[i].json);
  }
  char **inputs = r->inputs;
  hersh_trace_write *writes = r->writes;
  size_t cap_inputs = r->cap_inputs, cap_writes = r->cap_writes;
  *r = (hersh_trace_run){.inputs = inputs, .cap_inputs = cap_inputs, .writes = writes, .cap_writes = cap_writes};
}

static void run_free(hersh_trace_run *r) {
  run_clear(r);
  free(r->inputs);
  free(r->writes);
}

void hersh_trace_free(hersh_trace *tr) {
  for (size_t i = 0; i < tr->cap; i++) run_free(&tr->ring[i]); /* emptied slots keep arrays */
  free(tr->ring);
  hersh_strmap_free(&tr->snapshot, free);
  pthread_mutex_destroy(&tr->mu);
}

bool hersh_trace_on(const hersh_trace *tr) { return tr->max > 0; }

/* ---- recording (loop thread) ----------------------------------------------------------- */

/*
** The ring has slots beyond the runs it keeps: the open run is written in place in the
** slot after the newest, which readers do not see (count leaves it out), and ending the
** run only publishes the new count. The oldest runs are dropped (under the lock) a batch
** at a time, once the spare slots are used up; readers show only the newest `max` runs
** and fold the writes of the older ones still held into the snapshot they show.
*/
static size_t slots_wanted(const hersh_trace *tr) {
  size_t spare = tr->max / 16 + 1;
  return tr->max > SIZE_MAX - spare ? SIZE_MAX : tr->max + spare;
}

static size_t count_of(hersh_trace *tr) { return atomic_load_explicit(&tr->count, memory_order_acquire); }

/* Makes room for the open run's slot; false when out of memory. Loop thread. */
static bool room_for_open(hersh_trace *tr) {
  if (count_of(tr) < tr->cap) return true;
  size_t cap = tr->cap ? tr->cap * 2 : 64, most = slots_wanted(tr); /* not full: head is 0 */
  if (cap > most || cap < tr->cap) cap = most;
  hersh_trace_run *p = NULL;
  pthread_mutex_lock(&tr->mu); /* a reader may be walking the ring */
  if (cap > tr->cap && cap <= SIZE_MAX / sizeof *p) p = realloc(tr->ring, cap * sizeof *p);
  if (p) {
    memset(p + tr->cap, 0, (cap - tr->cap) * sizeof *p);
    tr->ring = p;
    tr->cap = cap;
  } else {
    tr->snapshot_lost = true; /* a run goes unrecorded: the trace says it is incomplete */
  }
  pthread_mutex_unlock(&tr->mu);
  return p != NULL;
}

void hersh_trace_begin(hersh_trace *tr, const hersh_trigger *t, hersh_message *msg, int failures, hersh_state prev) {
  if (!tr->max) return;
  if (tr->cur) run_clear(tr->cur); /* a run abandoned in its wait never ended */
  tr->cur = NULL;
  uint64_t seq = tr->next_seq++;
  if (!room_for_open(tr)) return;
  hersh_trace_run *r = tr->cur = &tr->ring[(tr->head + count_of(tr)) % tr->cap];
  r->seq = seq;
  r->trigger = t->reason;
  if ((r->msg = msg)) msg->refs++;
  r->failures = failures;
  r->prev = prev;
  if (t->n_vars) { /* the names, NUL-separated: a name may hold any other byte */
    hersh_buf b = {0};
    for (size_t i = 0; i < t->n_vars; i++) hersh_buf_put(&b, t->vars[i], strlen(t->vars[i]) + 1);
    r->vars = hersh_buf_take(&b);
    r->n_vars = r->vars ? t->n_vars : 0;
    r->lost = r->lost || !r->vars;
  }
}

void hersh_trace_input(hersh_trace *tr, char *json) {
  hersh_trace_run *r = tr->cur;
  if (!r || !json) {
    free(json);
    return;
  }
  if (r->n_inputs == r->cap_inputs) {
    size_t cap = r->cap_inputs ? r->cap_inputs * 2 : 4;
    char **p = realloc(r->inputs, cap * sizeof *p);
    if (!p) {
      free(json);
      r->lost = true;
      return;
    }
    r->inputs = p;
    r->cap_inputs = cap;
  }
  r->inputs[r->n_inputs++] = json;
}

void hersh_trace_context_write(hersh_trace *tr, const char *key, char *json) {
  hersh_trace_run *r = tr->cur;
  char *k = r && json ? hersh_strdup(key) : NULL;
  if (k && r->n_writes == r->cap_writes) {
    size_t cap = r->cap_writes ? r->cap_writes * 2 : 4;
    hersh_trace_write *p = realloc(r->writes, cap * sizeof *p);
    if (p) {
      r->writes = p;
      r->cap_writes = cap;
    } else {
      free(k);
      k = NULL;
    }
  }
  if (!k) {
    if (r) r->lost = true;
    free(json);
    return;
  }
  r->writes[r->n_writes++] = (hersh_trace_write){k, json};
}

void hersh_trace_retry(hersh_trace *tr, double delay) {
  if (tr->cur) tr->cur->retry_in = delay;
}

void hersh_trace_outcome(hersh_trace *tr, hersh_run_outcome o, const char *error) {
  if (!tr->cur) return;
  tr->cur->outcome = o;
  if (error && !(tr->cur->error = hersh_strdup(error))) tr->cur->lost = true;
}

/* Folds the oldest record's writes into the snapshot, then empties it. Under mu; the
** loop thread only (the one that changes count). */
static void evict_oldest(hersh_trace *tr) {
  hersh_trace_run *old = &tr->ring[tr->head];
  for (size_t i = 0; i < old->n_writes; i++) {
    hersh_trace_write *wr = &old->writes[i];
    void **slot = hersh_strmap_find(&tr->snapshot, wr->key);
    if (!slot && !(slot = hersh_strmap_insert(&tr->snapshot, wr->key))) {
      tr->snapshot_lost = true; /* out of memory: the trace says it cannot be replayed */
      continue;
    }
    free(*slot);
    *slot = wr->json;
    wr->json = NULL;
  }
  run_clear(old);
  tr->head = (tr->head + 1) % tr->cap;
  atomic_store_explicit(&tr->count, count_of(tr) - 1, memory_order_release);
}

void hersh_trace_end(hersh_trace *tr, hersh_state next) {
  if (!tr->cur) return;
  tr->cur->next = next;
  tr->cur = NULL;
  size_t n = count_of(tr) + 1;
  atomic_store_explicit(&tr->count, n, memory_order_release); /* the record is complete */
  if (n < tr->cap || n <= tr->max) return;
  pthread_mutex_lock(&tr->mu);
  while (count_of(tr) > tr->max) evict_oldest(tr);
  pthread_mutex_unlock(&tr->mu);
}

uint64_t hersh_trace_rand64(hersh_trace *tr) { /* xoshiro256** */
  uint64_t *s = tr->rng;
  uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return result;
}

/* ---- reading (any thread) ----------------------------------------------------------------- */

/* The runs a reader shows: the newest `max` of those held (count and head are steady
** under mu: only eviction, under mu, moves head). */
typedef struct trace_view {
  size_t first, n; /* ring offsets from head */
} trace_view;

static trace_view view_of(hersh_trace *tr) {
  size_t held = count_of(tr);
  size_t n = held > tr->max ? tr->max : held;
  return (trace_view){held - n, n};
}

static const hersh_trace_run *run_at(const hersh_trace *tr, size_t i) { return &tr->ring[(tr->head + i) % tr->cap]; }

static void write_header(hersh_json *j, hersh_trace *tr, const char *id, trace_view v) {
  hersh_json_object(j);
  hersh_json_key(j, "hersh_trace");
  hersh_json_int(j, HERSH_TRACE_VERSION);
  hersh_json_key(j, "watcher");
  hersh_json_cstr(j, id);
  hersh_json_key(j, "from_run");
  hersh_json_uint(j, v.n ? run_at(tr, v.first)->seq : tr->next_seq);
  hersh_json_key(j, "runs");
  hersh_json_uint(j, v.n);
  hersh_json_key(j, "ring");
  hersh_json_uint(j, tr->max == HERSH_TRACE_ALL ? 0 : tr->max);
  /* the store before the first run shown: the snapshot, then the writes of the runs
  ** held but not shown (borrowed texts: nothing is freed but the map) */
  hersh_strmap before;
  hersh_strmap_init(&before);
  bool lost = false;
  for (size_t i = 0; i < tr->snapshot.count; i++) {
    void **slot = hersh_strmap_insert(&before, tr->snapshot.entries[i].key);
    if (slot) *slot = tr->snapshot.entries[i].val;
    lost = lost || !slot;
  }
  for (size_t r = 0; r < v.first; r++) {
    const hersh_trace_run *run = run_at(tr, r);
    for (size_t i = 0; i < run->n_writes; i++) {
      void **slot = hersh_strmap_find(&before, run->writes[i].key);
      if (!slot) slot = hersh_strmap_insert(&before, run->writes[i].key);
      if (slot) *slot = run->writes[i].json;
      lost = lost || !slot;
    }
  }
  if (lost || tr->snapshot_lost) {
    hersh_json_key(j, "incomplete");
    hersh_json_bool(j, true);
  }
  hersh_json_key(j, "context");
  hersh_json_object(j);
  for (size_t i = 0; i < before.count; i++) {
    hersh_json_key(j, before.entries[i].key);
    const char *json = before.entries[i].val;
    hersh_json_raw(j, json, strlen(json));
  }
  hersh_json_end(j);
  hersh_json_end(j);
  hersh_strmap_free(&before, NULL);
}

static void write_run(hersh_json *j, const hersh_trace_run *r) {
  hersh_json_object(j);
  hersh_json_key(j, "run");
  hersh_json_uint(j, r->seq);
  hersh_json_key(j, "trigger");
  hersh_json_cstr(j, r->trigger);
  if (r->msg) {
    hersh_json_key(j, "message");
    hersh_json_object(j);
    hersh_json_key(j, "content");
    hersh_json_string(j, r->msg->msg.content, r->msg->msg.len);
    hersh_json_key(j, "received_at");
    hersh_json_number(j, r->msg->msg.received_at);
    hersh_json_end(j);
  }
  if (r->n_vars) {
    hersh_json_key(j, "vars");
    hersh_json_array(j);
    const char *name = r->vars;
    for (size_t i = 0; i < r->n_vars; i++, name += strlen(name) + 1) hersh_json_cstr(j, name);
    hersh_json_end(j);
  }
  hersh_json_key(j, "failures");
  hersh_json_int(j, r->failures);
  hersh_json_key(j, "inputs");
  hersh_json_array(j);
  for (size_t i = 0; i < r->n_inputs; i++) hersh_json_raw(j, r->inputs[i], strlen(r->inputs[i]));
  hersh_json_end(j);
  hersh_json_key(j, "outcome");
  hersh_json_cstr(j, hersh_run_outcome_name(r->outcome));
  if (r->error) {
    hersh_json_key(j, "error");
    hersh_json_cstr(j, r->error);
  }
  hersh_json_key(j, "state");
  hersh_json_array(j);
  hersh_json_cstr(j, hersh_state_name(r->prev));
  hersh_json_cstr(j, hersh_state_name(r->next));
  hersh_json_end(j);
  if (r->retry_in > 0) {
    hersh_json_key(j, "retry_in");
    hersh_json_number(j, r->retry_in);
  }
  hersh_json_key(j, "writes");
  hersh_json_array(j);
  for (size_t i = 0; i < r->n_writes; i++) {
    hersh_json_array(j);
    hersh_json_cstr(j, r->writes[i].key);
    hersh_json_raw(j, r->writes[i].json, strlen(r->writes[i].json));
    hersh_json_end(j);
  }
  hersh_json_end(j);
  if (r->lost) { /* out of memory dropped part of it: replay reports it, not a false divergence */
    hersh_json_key(j, "incomplete");
    hersh_json_bool(j, true);
  }
  hersh_json_end(j);
}

/* Encodes one line into b (emptied first) and hands it to fn. */
static int emit(hersh_buf *b, hersh_json *j, bool (*fn)(const char *line, size_t len, void *ud), void *ud,
                bool *go_on) {
  if (hersh_json_finish(j) != HERSH_OK) return hersh_fail_with(HERSH_E_NOMEM, "out of memory encoding the trace");
  hersh_buf_put(b, "\n", 1);
  if (b->oom) return hersh_fail_with(HERSH_E_NOMEM, "out of memory encoding the trace");
  *go_on = fn(b->p, b->len, ud);
  b->len = 0;
  return HERSH_OK;
}

int hersh_trace_read(hersh_trace *tr, const char *id, bool (*fn)(const char *line, size_t len, void *ud), void *ud) {
  hersh_buf b = {0};
  hersh_json j;
  bool go_on = true;
  pthread_mutex_lock(&tr->mu);
  hersh_json_init(&j, &b);
  trace_view v = view_of(tr);
  write_header(&j, tr, id, v);
  int rc = emit(&b, &j, fn, ud, &go_on);
  for (size_t i = 0; rc == HERSH_OK && go_on && i < v.n; i++) {
    hersh_json_init(&j, &b);
    write_run(&j, run_at(tr, v.first + i));
    rc = emit(&b, &j, fn, ud, &go_on);
  }
  pthread_mutex_unlock(&tr->mu);
  hersh_buf_free(&b);
  return rc;
}

/* ---- the public API ------------------------------------------------------------------------- */

int hersh_watcher_trace(hersh_watcher *w, bool (*fn)(const char *line, size_t len, void *ud), void *ud) {
  if (!w || !fn) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_trace: NULL watcher or function");
  return hersh_trace_read(&w->trace, w->id, fn, ud);
}

typedef struct file_sink {
  FILE *f;
  bool failed;
} file_sink;

static bool write_line(const char *line, size_t len, void *ud) {
  file_sink *s = ud;
  s->failed = fwrite(line, 1, len, s->f) != len;
  return !s->failed;
}

int hersh_watcher_trace_write(hersh_watcher *w, const char *path) {
  if (!w || !path) return hersh_fail_with(HERSH_E_INVAL, "hersh_watcher_trace_write: NULL watcher or path");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    int err = errno;
    if (fd >= 0) close(fd);
    return hersh_fail_with(HERSH_E_SYS, "cannot write the trace to %s: %s", path, strerror(err));
  }
  file_sink sink = {f, false};
  int rc = hersh_trace_read(&w->trace, w->id, write_line, &sink);
  int err = errno;
  bool closed = fclose(f) == 0;
  if (rc) return rc;
  if (sink.failed || !closed)
    return hersh_fail_with(HERSH_E_SYS, "cannot write the trace to %s: %s", path, strerror(sink.failed ? err : errno));
  return HERSH_OK;
}
