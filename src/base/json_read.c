/* json_read.c -- a strict JSON parser (RFC 8259) into hersh_values, safe on hostile input. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnum.h"
#include "json.h"
#include "utf8.h"

typedef struct parser {
  const unsigned char *s;
  size_t len, pos;
  char *err;
  size_t errlen;
  char *buf; /* scratch for decoded strings and number text, reused */
  size_t buf_len, buf_cap;
} parser;

/* Records the first failure; returns the code so callers can `return fail(...)`. */
static int fail_at(parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(parser *p, size_t at, const char *fmt, ...) {
  if (p->err && p->errlen) {
    int n = snprintf(p->err, p->errlen, "invalid JSON at byte %zu: ", at);
    if (n >= 0 && (size_t)n < p->errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return HERSH_E_INVAL;
}

static int fail_nomem(parser *p) {
  if (p->err && p->errlen) snprintf(p->err, p->errlen, "out of memory parsing JSON");
  return HERSH_E_NOMEM;
}

/* What stands at p->pos, for messages: a printable char or a hex byte. */
static const char *found(const parser *p, char tmp[8]) {
  if (p->pos >= p->len) return "end of input";
  unsigned char c = p->s[p->pos];
  if (c >= 0x20 && c < 0x7f) snprintf(tmp, 8, "'%c'", c);
  else snprintf(tmp, 8, "0x%02x", c);
  return tmp;
}

static int fail_expected(parser *p, const char *what) {
  char tmp[8];
  return fail_at(p, p->pos, "expected %s, found %s", what, found(p, tmp));
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static int buf_reserve(parser *p, size_t extra) {
  if (p->buf_cap - p->buf_len > extra) return HERSH_OK; /* room for a NUL too */
  if (extra > SIZE_MAX / 2 - p->buf_len) return fail_nomem(p);
  size_t cap = p->buf_cap ? p->buf_cap : 64;
  while (cap - p->buf_len <= extra) cap *= 2;
  char *b = realloc(p->buf, cap);
  if (!b) return fail_nomem(p);
  p->buf = b;
  p->buf_cap = cap;
  return HERSH_OK;
}

static void buf_utf8(parser *p, uint32_t cp) {
  char *o = p->buf + p->buf_len;
  if (cp < 0x80) {
    o[0] = (char)cp;
    p->buf_len += 1;
  } else if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    p->buf_len += 2;
  } else if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    p->buf_len += 3;
  } else {
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    p->buf_len += 4;
  }
}

/* The four hex digits at `at` (after "\u"), or -1. */
static long hex4(const parser *p, size_t at) {
  if (p->len - at < 4) return -1;
  long v = 0;
  for (size_t i = at; i < at + 4; i++) {
    unsigned char c = p->s[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Decodes the string at p->pos (its opening quote) into p->buf[0..buf_len), NUL-ended. */
static int parse_string(parser *p) {
  size_t start = p->pos++;
  p->buf_len = 0;
  for (;;) {
    if (p->pos >= p->len) return fail_at(p, p->pos, "unterminated string (opened at byte %zu)", start);
    /* 4 bytes is the most any one step below appends. */
    if (buf_reserve(p, 4)) return HERSH_E_NOMEM;
    unsigned char c = p->s[p->pos];
    if (c == '"') {
      p->pos++;
      p->buf[p->buf_len] = '\0';
      return HERSH_OK;
    }
    if (c < 0x20) return fail_at(p, p->pos, "control character 0x%02x in string", c);
    if (c >= 0x80) {
      size_t n = hersh_utf8_seq(p->s + p->pos, p->len - p->pos);
      if (!n) return fail_at(p, p->pos, "invalid UTF-8 byte 0x%02x in string", c);
      memcpy(p->buf + p->buf_len, p->s + p->pos, n);
      p->buf_len += n;
      p->pos += n;
      continue;
    }
    if (c != '\\') {
      p->buf[p->buf_len++] = (char)c;
      p->pos++;
      continue;
    }
    size_t esc = p->pos;
    if (p->len - esc < 2) return fail_at(p, p->len, "unterminated string (opened at byte %zu)", start);
    char out;
    switch (p->s[esc + 1]) {
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case '/': out = '/'; break;
    case 'b': out = '\b'; break;
    case 'f': out = '\f'; break;
    case 'n': out = '\n'; break;
    case 'r': out = '\r'; break;
    case 't': out = '\t'; break;
    case 'u': {
      long cp = hex4(p, esc + 2);
      if (cp < 0) return fail_at(p, esc, "\\u needs four hex digits");
      p->pos = esc + 6;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return fail_at(p, esc, "lone low surrogate \\u%04lX", cp);
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high surrogate must be followed at once by an escaped low one. */
        long lo = p->len - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u'
                      ? hex4(p, p->pos + 2)
                      : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return fail_at(p, esc, "lone high surrogate \\u%04lX", cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p->pos += 6;
      }
      buf_utf8(p, (uint32_t)cp);
      continue;
    }
    default: {
      char tmp[8];
      p->pos = esc + 1;
      return fail_at(p, esc, "invalid escape, backslash followed by %s", found(p, tmp));
    }
    }
    p->buf[p->buf_len++] = out;
    p->pos = esc + 2;
  }
}

static bool is_digit(const parser *p) { return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'; }

static int parse_number(parser *p, hersh_value *out) {
  size_t start = p->pos;
  bool neg = false, integral = true, fits = true;
  uint64_t mag = 0;
  if (p->s[p->pos] == '-') {
    neg = true;
    p->pos++;
  }
  if (!is_digit(p)) return fail_expected(p, "a digit");
  if (p->s[p->pos] == '0') {
    p->pos++;
    if (is_digit(p)) return fail_at(p, p->pos - 1, "leading zero in number");
  } else {
    /* |INT64_MIN| = INT64_MAX + 1 is the largest magnitude that can still fit. */
    const uint64_t limit = (uint64_t)INT64_MAX + (neg ? 1u : 0u);
    while (is_digit(p)) {
      unsigned d = (unsigned)(p->s[p->pos++] - '0');
      if (mag > (limit - d) / 10) fits = false;
      else mag = mag * 10 + d;
    }
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    integral = false;
    p->pos++;
    if (!is_digit(p)) return fail_expected(p, "a digit after '.'");
    while (is_digit(p)) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    integral = false;
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (!is_digit(p)) return fail_expected(p, "a digit in the exponent");
    while (is_digit(p)) p->pos++;
  }
  if (integral && fits) {
    /* Negate in unsigned arithmetic: -(2^63) has no positive int64. */
    *out = hersh_int(neg ? (int64_t)(0 - mag) : (int64_t)mag);
    return HERSH_OK;
  }
  size_t n = p->pos - start;
  p->buf_len = 0;
  if (buf_reserve(p, n)) return HERSH_E_NOMEM;
  memcpy(p->buf, p->s + start, n);
  p->buf[n] = '\0';
  double d = hersh_strtod_c(p->buf, NULL);
  if (isinf(d)) return fail_at(p, start, "number out of range");
  *out = hersh_num(d);
  return HERSH_OK;
}

static int parse_literal(parser *p, const char *word, hersh_value v, hersh_value *out) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) {
    /* Say "end of input" for a truncated literal, else point at the first wrong byte. */
    size_t i = 0;
    while (p->pos + i < p->len && i < n && p->s[p->pos + i] == (unsigned char)word[i]) i++;
    p->pos += i;
    char what[16];
    snprintf(what, sizeof what, "'%s'", word);
    return fail_expected(p, what);
  }
  p->pos += n;
  *out = v;
  return HERSH_OK;
}

static int parse_value(parser *p, hersh_value *out, int depth);

static int parse_array(parser *p, hersh_value *out, int depth) {
  if (depth >= HERSH_JSON_MAX_DEPTH)
    return fail_at(p, p->pos, "nesting deeper than %d levels", HERSH_JSON_MAX_DEPTH);
  p->pos++;
  hersh_value list = hersh_list();
  if (list.type != HERSH_T_LIST) return fail_nomem(p);
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == ']') {
    p->pos++;
    *out = list;
    return HERSH_OK;
  }
  for (;;) {
    hersh_value item = hersh_nil();
    int rc = parse_value(p, &item, depth + 1);
    if (rc == HERSH_OK && hersh_list_push(&list, &item) != HERSH_OK) rc = fail_nomem(p);
    if (rc) {
      hersh_value_free(&item);
      hersh_value_free(&list);
      return rc;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == ']') {
      p->pos++;
      *out = list;
      return HERSH_OK;
    }
    hersh_value_free(&list);
    return fail_expected(p, "',' or ']'");
  }
}

static int parse_object(parser *p, hersh_value *out, int depth) {
  if (depth >= HERSH_JSON_MAX_DEPTH)
    return fail_at(p, p->pos, "nesting deeper than %d levels", HERSH_JSON_MAX_DEPTH);
  p->pos++;
  hersh_value map = hersh_map();
  if (map.type != HERSH_T_MAP) return fail_nomem(p);
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == '}') {
    p->pos++;
    *out = map;
    return HERSH_OK;
  }
  for (;;) {
    int rc;
    char *key = NULL;
    hersh_value item = hersh_nil();
    skip_ws(p);
    size_t key_at = p->pos;
    if (p->pos >= p->len || p->s[p->pos] != '"') {
      rc = fail_expected(p, "a string key");
    } else if ((rc = parse_string(p)) == HERSH_OK) {
      if (memchr(p->buf, '\0', p->buf_len)) {
        rc = fail_at(p, key_at, "object key contains \\u0000");
      } else if (!(key = malloc(p->buf_len + 1))) { /* the value reuses p->buf */
        rc = fail_nomem(p);
      } else {
        memcpy(key, p->buf, p->buf_len + 1);
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ':') {
          p->pos++;
          rc = parse_value(p, &item, depth + 1);
          if (rc == HERSH_OK && hersh_map_set(&map, key, &item) != HERSH_OK) rc = fail_nomem(p);
        } else {
          rc = fail_expected(p, "':'");
        }
      }
    }
    free(key);
    if (rc) {
      hersh_value_free(&item);
      hersh_value_free(&map);
      return rc;
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == '}') {
      p->pos++;
      *out = map;
      return HERSH_OK;
    }
    hersh_value_free(&map);
    return fail_expected(p, "',' or '}'");
  }
}

/* depth: arrays and objects open around this value. */
static int parse_value(parser *p, hersh_value *out, int depth) {
  skip_ws(p);
  if (p->pos >= p->len) return fail_expected(p, "a value");
  switch (p->s[p->pos]) {
  case '{': return parse_object(p, out, depth);
  case '[': return parse_array(p, out, depth);
  case 't': return parse_literal(p, "true", hersh_bool(true), out);
  case 'f': return parse_literal(p, "false", hersh_bool(false), out);
  case 'n': return parse_literal(p, "null", hersh_nil(), out);
  case '"': {
    int rc = parse_string(p);
    if (rc) return rc;
    *out = hersh_strn(p->buf, p->buf_len);
    return out->type == HERSH_T_STR ? HERSH_OK : fail_nomem(p);
  }
  case '-':
  case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return parse_number(p, out);
  default: return fail_expected(p, "a value");
  }
}

int hersh_json_parse(const char *text, size_t len, hersh_value *out, char *err, size_t errlen) {
  parser p = {.s = (const unsigned char *)text, .len = len, .err = err, .errlen = errlen};
  if (err && errlen) err[0] = '\0';
  if (!out) return fail_at(&p, 0, "no output value");
  *out = hersh_nil();
  if (!text && len) return fail_at(&p, 0, "NULL text");
  if (len == 0) return fail_at(&p, 0, "empty input");
  int rc = parse_value(&p, out, 0);
  if (rc == HERSH_OK) {
    skip_ws(&p);
    if (p.pos < p.len) {
      char tmp[8];
      rc = fail_at(&p, p.pos, "unexpected %s after the document", found(&p, tmp));
    }
  }
  if (rc) hersh_value_free(out);
  free(p.buf);
  return rc;
}
