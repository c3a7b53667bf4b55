/*
** value.h -- the parts of hersh_value (include/hersh.h) that only the library sees:
** foreign values and the copy that shares them.
*/
#ifndef HERSH_BASE_VALUE_H
#define HERSH_BASE_VALUE_H

#include <stdbool.h>

#include "hersh.h"

/* The vtable of a foreign value: the Lua binding keeps its tables and functions so. */
typedef struct hersh_ext_type {
  const char *name; /* "table", "function", ... */
  void (*release)(void *ptr);
  void *(*retain)(void *ptr); /* a second handle on the same object */
  /* A plain (no EXT) copy for JSON and logs; returns false if it cannot. */
  bool (*to_plain)(void *ptr, hersh_value *out);
} hersh_ext_type;

struct hersh_ext {
  const hersh_ext_type *type;
  void *ptr;
};

hersh_value hersh_ext_value(const hersh_ext_type *type, void *ptr);
/* A copy that keeps EXT values as handles on the same object (no deep copy). */
int hersh_value_retain_copy(hersh_value *dst, const hersh_value *src);

#endif
