/* json_write.c -- the structured JSON writer: nesting and commas tracked, one number format. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnum.h"
#include "json.h"
#include "utf8.h"
#include "value.h"

void hersh_json_init(hersh_json *j, hersh_buf *out) {
  j->out = out;
  j->error = NULL;
  j->depth = 0;
  j->key_written = false;
  j->done = false;
}

static bool misuse(hersh_json *j, const char *why) {
  if (!j->error) j->error = why;
  return false;
}

static bool in_object(const hersh_json *j) { return j->depth > 0 && j->open[j->depth - 1] == '}'; }

/* Before any value: checks that one may stand here and writes the comma it needs. */
static bool begin_value(hersh_json *j) {
  if (j->error) return false;
  if (j->depth == 0) {
    if (j->done) return misuse(j, "a second top-level value");
    return true;
  }
  if (in_object(j)) {
    if (!j->key_written) return misuse(j, "a value where an object key is due");
    j->key_written = false;
    return true;
  }
  if (j->members[j->depth - 1]) hersh_buf_put(j->out, ",", 1);
  j->members[j->depth - 1] = true;
  return true;
}

/* After a scalar or a closed container: the top-level document may be complete. */
static void end_value(hersh_json *j) {
  if (j->depth == 0) j->done = true;
}

static void open_container(hersh_json *j, char open, char close) {
  if (!begin_value(j)) return;
  if (j->depth == HERSH_JSON_WRITE_DEPTH) {
    misuse(j, "nesting too deep");
    return;
  }
  j->open[j->depth] = (unsigned char)close;
  j->members[j->depth] = false;
  j->depth++;
  hersh_buf_put(j->out, &open, 1);
}

void hersh_json_object(hersh_json *j) { open_container(j, '{', '}'); }
void hersh_json_array(hersh_json *j) { open_container(j, '[', ']'); }

void hersh_json_end(hersh_json *j) {
  if (j->error) return;
  if (j->depth == 0) {
    misuse(j, "an end with no object or array open");
    return;
  }
  if (j->key_written) {
    misuse(j, "an object key with no value");
    return;
  }
  j->depth--;
  char close = (char)j->open[j->depth];
  hersh_buf_put(j->out, &close, 1);
  end_value(j);
}

/* The string literal of n bytes: quotes, escapes, U+FFFD for invalid UTF-8, `/` as is. */
static void put_string(hersh_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *u = (const unsigned char *)s;
  hersh_buf_put(b, "\"", 1);
  size_t i = 0, plain = 0; /* u[plain..i) waits to be copied as is */
  while (i < n) {
    unsigned char c = u[i];
    size_t len = c >= 0x20 && c != '"' && c != '\\' ? hersh_utf8_seq(u + i, n - i) : 0;
    if (len) {
      i += len;
      continue;
    }
    hersh_buf_put(b, s + plain, i - plain);
    char esc[6] = {'\\', (char)c};
    size_t esc_len = 2;
    switch (c) {
    case '"': case '\\': break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    default:
      if (c < 0x20) {
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        esc_len = 6;
      } else {
        memcpy(esc, "\xef\xbf\xbd", 3); /* U+FFFD for a byte that starts no valid sequence */
        esc_len = 3;
      }
    }
    hersh_buf_put(b, esc, esc_len);
    plain = ++i;
  }
  hersh_buf_put(b, s + plain, n - plain);
  hersh_buf_put(b, "\"", 1);
}

void hersh_json_keyn(hersh_json *j, const char *key, size_t n) {
  if (j->error) return;
  if (!in_object(j)) {
    misuse(j, "an object key outside an object");
    return;
  }
  if (j->key_written) {
    misuse(j, "two object keys in a row");
    return;
  }
  if (j->members[j->depth - 1]) hersh_buf_put(j->out, ",", 1);
  j->members[j->depth - 1] = true;
  put_string(j->out, key, n);
  hersh_buf_put(j->out, ":", 1);
  j->key_written = true;
}

void hersh_json_key(hersh_json *j, const char *key) { hersh_json_keyn(j, key, strlen(key)); }

/* A scalar's text: checked, written, and the document possibly complete. */
static void scalar(hersh_json *j, const char *text, size_t n) {
  if (!begin_value(j)) return;
  hersh_buf_put(j->out, text, n);
  end_value(j);
}

void hersh_json_string(hersh_json *j, const char *s, size_t n) {
  if (!begin_value(j)) return;
  put_string(j->out, s, n);
  end_value(j);
}

void hersh_json_cstr(hersh_json *j, const char *s) {
  if (s) hersh_json_string(j, s, strlen(s));
  else hersh_json_null(j);
}

void hersh_json_int(hersh_json *j, int64_t i) {
  char text[24];
  int n = snprintf(text, sizeof text, "%lld", (long long)i);
  scalar(j, text, (size_t)n);
}

void hersh_json_uint(hersh_json *j, uint64_t u) {
  char text[24];
  int n = snprintf(text, sizeof text, "%llu", (unsigned long long)u);
  scalar(j, text, (size_t)n);
}

void hersh_json_number(hersh_json *j, double d) {
  if (!isfinite(d)) {
    misuse(j, "NaN or infinity (JSON has no such number)");
    return;
  }
  /* The fewest digits that read back to the same double. For a normal double, %.15g
  ** (trailing zeros stripped) is that form whenever one of 15 digits or fewer exists;
  ** a subnormal has fewer bits, so its search starts at one digit. */
  char text[32];
  int n = 0;
  for (int prec = d != 0 && fabs(d) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
    n = hersh_format_g_c(text, sizeof text, prec, d);
    if (hersh_strtod_c(text, NULL) == d) break;
  }
  scalar(j, text, (size_t)n);
}

void hersh_json_bool(hersh_json *j, bool b) { scalar(j, b ? "true" : "false", b ? 4 : 5); }
void hersh_json_null(hersh_json *j) { scalar(j, "null", 4); }

void hersh_json_raw(hersh_json *j, const char *json, size_t n) {
  if (n == 0) {
    misuse(j, "an empty raw value");
    return;
  }
  scalar(j, json, n);
}

static void tag(hersh_json *j, const char *name) {
  char text[64];
  int n = snprintf(text, sizeof text, "<%s>", name);
  hersh_json_string(j, text, n < 0 ? 0 : (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

static int by_key(const void *a, const void *b, void *map) {
  return strcmp(hersh_map_key(map, *(const size_t *)a), hersh_map_key(map, *(const size_t *)b));
}

/* Keys sorted bytewise: a map's order (a Lua table's hash order) is not stable. */
static void write_map(hersh_json *j, const hersh_value *v) {
  size_t n = hersh_value_len(v);
  size_t *order = n ? malloc(n * sizeof *order) : NULL;
  if (n && !order) {
    j->out->oom = true; /* hersh_json_finish reports it */
    return;
  }
  for (size_t i = 0; i < n; i++) order[i] = i;
  if (n > 1) qsort_r(order, n, sizeof *order, by_key, (void *)v);
  hersh_json_object(j);
  for (size_t i = 0; i < n && !j->error; i++) {
    hersh_json_key(j, hersh_map_key(v, order[i]));
    hersh_json_value(j, hersh_map_value(v, order[i]));
  }
  hersh_json_end(j);
  free(order);
}

void hersh_json_value(hersh_json *j, const hersh_value *v) {
  switch (v->type) {
  case HERSH_T_NIL: hersh_json_null(j); break;
  case HERSH_T_BOOL: hersh_json_bool(j, v->as.b); break;
  case HERSH_T_INT: hersh_json_int(j, v->as.i); break;
  case HERSH_T_NUM:
    if (isfinite(v->as.n)) hersh_json_number(j, v->as.n);
    else tag(j, isnan(v->as.n) ? "nan" : v->as.n > 0 ? "inf" : "-inf");
    break;
  case HERSH_T_STR: hersh_json_string(j, v->as.s.ptr, v->as.s.len); break;
  case HERSH_T_LIST: {
    size_t n = hersh_value_len(v);
    hersh_json_array(j);
    for (size_t i = 0; i < n && !j->error; i++) hersh_json_value(j, hersh_list_at(v, i));
    hersh_json_end(j);
    break;
  }
  case HERSH_T_MAP: write_map(j, v); break;
  case HERSH_T_EXT: {
    const hersh_ext_type *t = v->as.ext->type;
    hersh_value plain = {0};
    if (t->to_plain && t->to_plain(v->as.ext->ptr, &plain)) {
      hersh_json_value(j, &plain);
      hersh_value_free(&plain);
    } else {
      tag(j, t->name);
    }
    break;
  }
  }
}

int hersh_json_finish(hersh_json *j) {
  if (!j->error && (j->depth > 0 || !j->done)) j->error = "an unfinished document";
  if (j->error) return HERSH_E_INVAL;
  return j->out->oom ? HERSH_E_NOMEM : HERSH_OK;
}

const char *hersh_json_error(const hersh_json *j) { return j->error; }

char *hersh_json_take(hersh_json *j) {
  if (hersh_json_finish(j) != HERSH_OK) {
    hersh_buf_free(j->out);
    return NULL;
  }
  return hersh_buf_take(j->out);
}
