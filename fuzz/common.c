/* common.c -- the shared checks of the fuzz targets (see common.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void fuzz_fail(const char *what, const char *data, size_t len) {
  fprintf(stderr, "fuzz: property broken: %s\n", what);
  if (data && !len) len = strlen(data);
  if (data) fprintf(stderr, "fuzz: data (%zu bytes): %.*s\n", len, (int)(len < 200 ? len : 200), data);
  abort();
}

bool fuzz_utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t more;
    unsigned long cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      more = 1, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i - 1 < more) return false;
    for (size_t k = 1; k <= more; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += more + 1;
  }
  return true;
}

int fuzz_value_depth(const hersh_value *v) {
  if (v->type != HERSH_T_LIST && v->type != HERSH_T_MAP) return 0;
  int deepest = 0;
  size_t n = hersh_value_len(v);
  for (size_t i = 0; i < n; i++) {
    const hersh_value *item = v->type == HERSH_T_LIST ? hersh_list_at(v, i) : hersh_map_value(v, i);
    int d = fuzz_value_depth(item);
    if (d > deepest) deepest = d;
  }
  return deepest + 1;
}

char *fuzz_json(const hersh_value *v) {
  char *s = hersh_value_json(v);
  if (!s) fuzz_fail("hersh_value_json returned NULL", NULL, 0);
  return s;
}
