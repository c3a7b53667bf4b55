/* map.h -- string keys to pointers, in insertion order, with a hash index. */
#ifndef HERSH_BASE_MAP_H
#define HERSH_BASE_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hersh_map_entry {
  char *key;
  void *val;
} hersh_map_entry;

typedef struct hersh_strmap {
  hersh_map_entry *entries; /* insertion order; removed entries compacted */
  size_t count, cap;
  uint32_t *index; /* open addressing over entries, 0 = empty, i+1 = entry i */
  size_t index_cap;
} hersh_strmap;

void hersh_strmap_init(hersh_strmap *m);
void hersh_strmap_free(hersh_strmap *m, void (*free_val)(void *));
void **hersh_strmap_find(hersh_strmap *m, const char *key);
/* Inserts a new key (must be absent); returns the value slot or NULL on no memory. */
void **hersh_strmap_insert(hersh_strmap *m, const char *key);
/* Removes a key, returning its value (NULL if absent). */
void *hersh_strmap_remove(hersh_strmap *m, const char *key);

#endif
