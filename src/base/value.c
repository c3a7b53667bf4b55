/* value.c -- the tagged value that crosses C and Lua: build, copy, compare, free. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "value.h"

/* LIST and MAP share one representation; a MAP also has a key per item. */
struct hersh_agg {
  hersh_value *items;
  char **keys; /* MAP only */
  size_t count, cap;
};

hersh_value hersh_nil(void) { return (hersh_value){.type = HERSH_T_NIL}; }
hersh_value hersh_bool(bool b) { return (hersh_value){.type = HERSH_T_BOOL, .as.b = b}; }
hersh_value hersh_int(int64_t i) { return (hersh_value){.type = HERSH_T_INT, .as.i = i}; }
hersh_value hersh_num(double n) { return (hersh_value){.type = HERSH_T_NUM, .as.n = n}; }

hersh_value hersh_strn(const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (!p) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory copying a string of %zu bytes", len);
    return hersh_nil();
  }
  if (len) memcpy(p, s, len);
  p[len] = '\0';
  return (hersh_value){.type = HERSH_T_STR, .as.s = {p, len}};
}

hersh_value hersh_str(const char *s) { return hersh_strn(s, strlen(s)); }

static hersh_value agg_new(hersh_type type) {
  hersh_agg *a = calloc(1, sizeof *a);
  if (!a) {
    hersh_fail_with(HERSH_E_NOMEM, "out of memory creating a %s", type == HERSH_T_MAP ? "map" : "list");
    return hersh_nil();
  }
  return (hersh_value){.type = type, .as.agg = a};
}

hersh_value hersh_list(void) { return agg_new(HERSH_T_LIST); }
hersh_value hersh_map(void) { return agg_new(HERSH_T_MAP); }

hersh_value hersh_ext_value(const hersh_ext_type *type, void *ptr) {
  hersh_ext *e = malloc(sizeof *e);
  if (!e) {
    type->release(ptr);
    hersh_fail_with(HERSH_E_NOMEM, "out of memory wrapping a %s", type->name);
    return hersh_nil();
  }
  e->type = type;
  e->ptr = ptr;
  return (hersh_value){.type = HERSH_T_EXT, .as.ext = e};
}

static int agg_grow(hersh_agg *a, bool with_keys) {
  if (a->count < a->cap) return HERSH_OK;
  size_t cap = a->cap ? a->cap * 2 : 4;
  hersh_value *items = realloc(a->items, cap * sizeof *items);
  if (!items) return hersh_fail_with(HERSH_E_NOMEM, "out of memory growing a list");
  a->items = items;
  if (with_keys) {
    char **keys = realloc(a->keys, cap * sizeof *keys);
    if (!keys) return hersh_fail_with(HERSH_E_NOMEM, "out of memory growing a map");
    a->keys = keys;
  }
  a->cap = cap;
  return HERSH_OK;
}

int hersh_list_push(hersh_value *list, hersh_value *item) {
  if (!list || list->type != HERSH_T_LIST || !item)
    return hersh_fail_with(HERSH_E_INVAL, "hersh_list_push: not a list");
  hersh_agg *a = list->as.agg;
  int rc = agg_grow(a, false);
  if (rc) return rc;
  a->items[a->count++] = *item;
  *item = hersh_nil();
  return HERSH_OK;
}

int hersh_map_set(hersh_value *map, const char *key, hersh_value *item) {
  if (!map || map->type != HERSH_T_MAP || !key || !item)
    return hersh_fail_with(HERSH_E_INVAL, "hersh_map_set: not a map, or no key");
  hersh_agg *a = map->as.agg;
  for (size_t i = 0; i < a->count; i++) {
    if (strcmp(a->keys[i], key) == 0) {
      hersh_value_free(&a->items[i]);
      a->items[i] = *item;
      *item = hersh_nil();
      return HERSH_OK;
    }
  }
  int rc = agg_grow(a, true);
  if (rc) return rc;
  char *k = hersh_strdup(key);
  if (!k) return hersh_fail_with(HERSH_E_NOMEM, "out of memory copying a map key");
  a->keys[a->count] = k;
  a->items[a->count++] = *item;
  *item = hersh_nil();
  return HERSH_OK;
}

size_t hersh_value_len(const hersh_value *v) {
  switch (v->type) {
  case HERSH_T_STR: return v->as.s.len;
  case HERSH_T_LIST:
  case HERSH_T_MAP: return v->as.agg->count;
  default: return 0;
  }
}

const hersh_value *hersh_list_at(const hersh_value *list, size_t i) {
  if (list->type != HERSH_T_LIST || i >= list->as.agg->count) return NULL;
  return &list->as.agg->items[i];
}

const hersh_value *hersh_map_get(const hersh_value *map, const char *key) {
  if (map->type != HERSH_T_MAP) return NULL;
  hersh_agg *a = map->as.agg;
  for (size_t i = 0; i < a->count; i++)
    if (strcmp(a->keys[i], key) == 0) return &a->items[i];
  return NULL;
}

const char *hersh_map_key(const hersh_value *map, size_t i) {
  if (map->type != HERSH_T_MAP || i >= map->as.agg->count) return NULL;
  return map->as.agg->keys[i];
}

const hersh_value *hersh_map_value(const hersh_value *map, size_t i) {
  if (map->type != HERSH_T_MAP || i >= map->as.agg->count) return NULL;
  return &map->as.agg->items[i];
}

void hersh_value_free(hersh_value *v) {
  if (!v) return;
  switch (v->type) {
  case HERSH_T_STR: free(v->as.s.ptr); break;
  case HERSH_T_LIST:
  case HERSH_T_MAP: {
    hersh_agg *a = v->as.agg;
    for (size_t i = 0; i < a->count; i++) {
      hersh_value_free(&a->items[i]);
      if (a->keys) free(a->keys[i]);
    }
    free(a->items);
    free(a->keys);
    free(a);
    break;
  }
  case HERSH_T_EXT:
    v->as.ext->type->release(v->as.ext->ptr);
    free(v->as.ext);
    break;
  default: break;
  }
  *v = hersh_nil();
}

/* deep: EXT values are converted to plain ones; otherwise they are retained. */
static int value_copy(hersh_value *dst, const hersh_value *src, bool deep) {
  *dst = hersh_nil();
  switch (src->type) {
  case HERSH_T_STR:
    *dst = hersh_strn(src->as.s.ptr, src->as.s.len);
    return dst->type == HERSH_T_STR ? HERSH_OK : HERSH_E_NOMEM;
  case HERSH_T_LIST:
  case HERSH_T_MAP: {
    hersh_value out = agg_new(src->type);
    if (out.type == HERSH_T_NIL) return HERSH_E_NOMEM;
    hersh_agg *a = src->as.agg;
    for (size_t i = 0; i < a->count; i++) {
      hersh_value item;
      int rc = value_copy(&item, &a->items[i], deep);
      if (rc == HERSH_OK)
        rc = src->type == HERSH_T_MAP ? hersh_map_set(&out, a->keys[i], &item) : hersh_list_push(&out, &item);
      if (rc) {
        hersh_value_free(&item);
        hersh_value_free(&out);
        return rc;
      }
    }
    *dst = out;
    return HERSH_OK;
  }
  case HERSH_T_EXT: {
    const hersh_ext_type *t = src->as.ext->type;
    if (deep) {
      if (t->to_plain && t->to_plain(src->as.ext->ptr, dst)) return HERSH_OK;
      char tag[64];
      snprintf(tag, sizeof tag, "<%s>", t->name);
      *dst = hersh_str(tag);
      return dst->type == HERSH_T_STR ? HERSH_OK : HERSH_E_NOMEM;
    }
    void *ptr = t->retain(src->as.ext->ptr);
    if (!ptr) return hersh_fail_with(HERSH_E_NOMEM, "cannot retain a %s", t->name);
    *dst = hersh_ext_value(t, ptr);
    return dst->type == HERSH_T_EXT ? HERSH_OK : HERSH_E_NOMEM;
  }
  default:
    *dst = *src;
    return HERSH_OK;
  }
}

int hersh_value_copy(hersh_value *dst, const hersh_value *src) {
  if (!dst || !src) return hersh_fail_with(HERSH_E_INVAL, "hersh_value_copy: NULL argument");
  return value_copy(dst, src, true);
}

int hersh_value_retain_copy(hersh_value *dst, const hersh_value *src) { return value_copy(dst, src, false); }

bool hersh_value_equal(const hersh_value *a, const hersh_value *b) {
  if (a->type != b->type) {
    if (a->type == HERSH_T_INT && b->type == HERSH_T_NUM) return (double)a->as.i == b->as.n;
    if (a->type == HERSH_T_NUM && b->type == HERSH_T_INT) return a->as.n == (double)b->as.i;
    return false;
  }
  switch (a->type) {
  case HERSH_T_NIL: return true;
  case HERSH_T_BOOL: return a->as.b == b->as.b;
  case HERSH_T_INT: return a->as.i == b->as.i;
  case HERSH_T_NUM: return a->as.n == b->as.n;
  case HERSH_T_STR: return a->as.s.len == b->as.s.len && memcmp(a->as.s.ptr, b->as.s.ptr, a->as.s.len) == 0;
  case HERSH_T_LIST:
  case HERSH_T_MAP: {
    hersh_agg *x = a->as.agg, *y = b->as.agg;
    if (x->count != y->count) return false;
    for (size_t i = 0; i < x->count; i++) {
      const hersh_value *other = a->type == HERSH_T_MAP ? hersh_map_get(b, x->keys[i]) : &y->items[i];
      if (!other || !hersh_value_equal(&x->items[i], other)) return false;
    }
    return true;
  }
  case HERSH_T_EXT: return a->as.ext->type == b->as.ext->type && a->as.ext->ptr == b->as.ext->ptr;
  }
  return false;
}

char *hersh_value_json(const hersh_value *v) {
  hersh_buf b = {0};
  hersh_json j;
  hersh_json_init(&j, &b);
  hersh_json_value(&j, v);
  char *s = hersh_json_take(&j);
  if (!s && hersh_json_error(&j)) hersh_fail_with(HERSH_E_INVAL, "cannot encode as JSON: %s", hersh_json_error(&j));
  else if (!s) hersh_fail_with(HERSH_E_NOMEM, "out of memory encoding JSON");
  return s;
}
