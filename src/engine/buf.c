/* buf.c -- a growable text buffer and the JSON writer built on it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static bool buf_reserve(hersh_buf *b, size_t extra) {
  if (b->oom) return false;
  if (b->len + extra + 1 <= b->cap) return true;
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

size_t hersh_utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  static const unsigned min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

void hersh_buf_json_string(hersh_buf *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  hersh_buf_put(b, "\"", 1);
  size_t i = 0;
  while (i < n) {
    unsigned char c = u[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      hersh_buf_put(b, esc, 2);
      i++;
    } else if (c < 0x20) {
      switch (c) {
      case '\n': hersh_buf_put(b, "\\n", 2); break;
      case '\r': hersh_buf_put(b, "\\r", 2); break;
      case '\t': hersh_buf_put(b, "\\t", 2); break;
      default: hersh_buf_printf(b, "\\u%04x", c); break;
      }
      i++;
    } else {
      size_t len = hersh_utf8_seq(u + i, n - i);
      if (len == 0) {
        hersh_buf_puts(b, "\\ufffd");
        i++;
      } else {
        hersh_buf_put(b, s + i, len);
        i += len;
      }
    }
  }
  hersh_buf_put(b, "\"", 1);
}

static void json_number(hersh_buf *b, double d) {
  if (isnan(d)) {
    hersh_buf_puts(b, "\"<nan>\"");
  } else if (isinf(d)) {
    hersh_buf_puts(b, d > 0 ? "\"<inf>\"" : "\"<-inf>\"");
  } else {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d) snprintf(tmp, sizeof tmp, "%.17g", d);
    hersh_buf_puts(b, tmp);
  }
}

void hersh_buf_json_value(hersh_buf *b, const hersh_value *v) {
  switch (v->type) {
  case HERSH_T_NIL: hersh_buf_puts(b, "null"); break;
  case HERSH_T_BOOL: hersh_buf_puts(b, v->as.b ? "true" : "false"); break;
  case HERSH_T_INT: hersh_buf_printf(b, "%lld", (long long)v->as.i); break;
  case HERSH_T_NUM: json_number(b, v->as.n); break;
  case HERSH_T_STR: hersh_buf_json_string(b, v->as.s.ptr, v->as.s.len); break;
  case HERSH_T_LIST: {
    hersh_buf_put(b, "[", 1);
    size_t n = hersh_value_len(v);
    for (size_t i = 0; i < n; i++) {
      if (i) hersh_buf_put(b, ",", 1);
      hersh_buf_json_value(b, hersh_list_at(v, i));
    }
    hersh_buf_put(b, "]", 1);
    break;
  }
  case HERSH_T_MAP: {
    hersh_buf_put(b, "{", 1);
    size_t n = hersh_value_len(v);
    for (size_t i = 0; i < n; i++) {
      if (i) hersh_buf_put(b, ",", 1);
      const char *k = hersh_map_key(v, i);
      hersh_buf_json_string(b, k, strlen(k));
      hersh_buf_put(b, ":", 1);
      hersh_buf_json_value(b, hersh_map_value(v, i));
    }
    hersh_buf_put(b, "}", 1);
    break;
  }
  case HERSH_T_EXT: {
    const hersh_ext_type *t = v->as.ext->type;
    hersh_value plain = {0};
    if (t->to_plain && t->to_plain(v->as.ext->ptr, &plain)) {
      hersh_buf_json_value(b, &plain);
      hersh_value_free(&plain);
    } else {
      hersh_buf_printf(b, "\"<%s>\"", t->name);
    }
    break;
  }
  }
}
