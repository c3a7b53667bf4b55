/* map.c -- string keys to pointers, in insertion order, with a hash index. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "map.h"

static uint32_t hash_key(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

void hersh_strmap_init(hersh_strmap *m) { memset(m, 0, sizeof *m); }

void hersh_strmap_free(hersh_strmap *m, void (*free_val)(void *)) {
  for (size_t i = 0; i < m->count; i++) {
    free(m->entries[i].key);
    if (free_val) free_val(m->entries[i].val);
  }
  free(m->entries);
  free(m->index);
  memset(m, 0, sizeof *m);
}

/* The index slot holding `key`, or the empty slot where it would go. */
static size_t slot_of(const hersh_strmap *m, const char *key) {
  size_t mask = m->index_cap - 1, i = hash_key(key) & mask;
  while (m->index[i] && strcmp(m->entries[m->index[i] - 1].key, key) != 0) i = (i + 1) & mask;
  return i;
}

static void rebuild_index(hersh_strmap *m) {
  memset(m->index, 0, m->index_cap * sizeof *m->index);
  for (size_t e = 0; e < m->count; e++) m->index[slot_of(m, m->entries[e].key)] = (uint32_t)e + 1;
}

static bool grow_index(hersh_strmap *m, size_t cap) {
  uint32_t *index = calloc(cap, sizeof *index);
  if (!index) return false;
  free(m->index);
  m->index = index;
  m->index_cap = cap;
  rebuild_index(m);
  return true;
}

void **hersh_strmap_find(hersh_strmap *m, const char *key) {
  if (!m->count) return NULL;
  uint32_t e = m->index[slot_of(m, key)];
  return e ? &m->entries[e - 1].val : NULL;
}

void **hersh_strmap_insert(hersh_strmap *m, const char *key) {
  if (m->count == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 8;
    hersh_map_entry *entries = realloc(m->entries, cap * sizeof *entries);
    if (!entries) return NULL;
    m->entries = entries;
    m->cap = cap;
  }
  if ((m->count + 1) * 2 > m->index_cap && !grow_index(m, m->index_cap ? m->index_cap * 2 : 16)) return NULL;
  char *k = hersh_strdup(key);
  if (!k) return NULL;
  size_t e = m->count++;
  m->entries[e] = (hersh_map_entry){k, NULL};
  m->index[slot_of(m, k)] = (uint32_t)e + 1;
  return &m->entries[e].val;
}

void *hersh_strmap_remove(hersh_strmap *m, const char *key) {
  if (!m->count) return NULL;
  uint32_t found = m->index[slot_of(m, key)];
  if (!found) return NULL;
  size_t e = found - 1;
  void *val = m->entries[e].val;
  free(m->entries[e].key);
  memmove(&m->entries[e], &m->entries[e + 1], (m->count - e - 1) * sizeof *m->entries);
  m->count--;
  rebuild_index(m); /* removal is rare (clear_memo): rebuild rather than keep tombstones */
  return val;
}
