/* buf.c -- a growable text buffer. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static bool buf_reserve(hersh_buf *b, size_t extra) {
  if (b->oom) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  if (extra > SIZE_MAX / 4 - b->len) { /* the doubling below would overflow */
    b->oom = true;
    return false;
  }
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

void hersh_buf_put(hersh_buf *b, const char *s, size_t n) {
  if (!buf_reserve(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void hersh_buf_puts(hersh_buf *b, const char *s) { hersh_buf_put(b, s, strlen(s)); }

void hersh_buf_printf(hersh_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[128];
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(small, sizeof small, fmt, copy);
  va_end(copy);
  if (n >= 0 && (size_t)n < sizeof small) {
    hersh_buf_put(b, small, (size_t)n);
  } else if (n >= 0 && buf_reserve(b, (size_t)n)) {
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
  }
  va_end(ap);
}

char *hersh_buf_take(hersh_buf *b) {
  if (b->oom || !buf_reserve(b, 0)) {
    free(b->p);
    *b = (hersh_buf){0};
    return NULL;
  }
  char *p = b->p;
  *b = (hersh_buf){0};
  return p;
}

void hersh_buf_free(hersh_buf *b) {
  free(b->p);
  *b = (hersh_buf){0};
}
