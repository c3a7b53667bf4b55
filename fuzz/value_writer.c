/*
** value_writer.c -- fuzzes the JSON writer (hersh_json_value and the string escaper
** in src/base/json_write.c, reached through hersh_value_json) with values built from the
** input: strings of arbitrary bytes (NULs and invalid UTF-8 included), map keys of
** arbitrary bytes, nested lists and maps, any int64, any double (NaN, +-inf, -0,
** subnormals). Beyond "no crash" it asserts that the output is valid UTF-8, that the
** reader (src/base/json_read.c) accepts it, and that encoding what it read gives the same
** text again; and, for values the writer need not change (finite numbers, strings
** and keys that are valid UTF-8, no repeated keys), that the reader gives back an
** equal value.
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "base/json.h"

typedef struct input {
  const uint8_t *p;
  size_t left;
  bool exact; /* the value survives a round trip unchanged */
} input;

static uint8_t take_byte(input *in) {
  if (!in->left) return 0;
  in->left--;
  return *in->p++;
}

static void take(input *in, void *out, size_t n) {
  memset(out, 0, n);
  size_t k = n < in->left ? n : in->left;
  memcpy(out, in->p, k);
  in->p += k;
  in->left -= k;
}

/* A length byte, then that many bytes (fewer at the end of the input). */
static size_t take_bytes(input *in, const uint8_t **out) {
  size_t n = take_byte(in);
  if (n > in->left) n = in->left;
  *out = in->p;
  in->p += n;
  in->left -= n;
  return n;
}

static hersh_value build(input *in, int depth);

static void add_items(input *in, hersh_value *agg, int depth) {
  size_t n = take_byte(in) % 8;
  for (size_t i = 0; i < n && in->left; i++) {
    hersh_value item = build(in, depth + 1);
    int rc;
    if (agg->type == HERSH_T_LIST) {
      rc = hersh_list_push(agg, &item);
    } else {
      const uint8_t *k;
      size_t klen = take_bytes(in, &k);
      char key[256];
      memcpy(key, k, klen);
      key[klen] = '\0'; /* keys are C strings: they end at a NUL */
      size_t before = hersh_value_len(agg);
      if (hersh_map_get(agg, key)) in->exact = false; /* replaced: fine, but not a plain round trip */
      if (!fuzz_utf8_valid((const unsigned char *)key, strlen(key))) in->exact = false;
      rc = hersh_map_set(agg, key, &item);
      if (rc == HERSH_OK && hersh_value_len(agg) < before) fuzz_fail("hersh_map_set lost a pair", key, strlen(key));
    }
    if (rc != HERSH_OK) fuzz_fail("adding an item failed", NULL, 0);
  }
}

static hersh_value build(input *in, int depth) {
  uint8_t op = take_byte(in);
  /* Deeper than the reader takes is refused by it: stay within its limit. */
  if (depth >= HERSH_JSON_MAX_DEPTH - 1) op %= 5;
  switch (op % 7) {
  case 0: return hersh_nil();
  case 1: return hersh_bool(take_byte(in) & 1);
  case 2: {
    int64_t i;
    take(in, &i, sizeof i);
    return hersh_int(i);
  }
  case 3: {
    double d;
    take(in, &d, sizeof d);
    if (!isfinite(d)) in->exact = false; /* written as "<nan>", "<inf>", "<-inf>" */
    return hersh_num(d);
  }
  case 4: {
    const uint8_t *s;
    size_t n = take_bytes(in, &s);
    if (!fuzz_utf8_valid(s, n)) in->exact = false; /* bad bytes become U+FFFD */
    hersh_value v = hersh_strn((const char *)s, n);
    if (v.type != HERSH_T_STR) fuzz_fail("hersh_strn failed", NULL, 0);
    return v;
  }
  default: {
    hersh_value agg = op % 7 == 5 ? hersh_list() : hersh_map();
    if (agg.type == HERSH_T_NIL) fuzz_fail("cannot make a list or map", NULL, 0);
    add_items(in, &agg, depth);
    return agg;
  }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size, true};
  hersh_value v = build(&in, 0);
  char *once = fuzz_json(&v);
  size_t once_len = strlen(once);
  if (!fuzz_utf8_valid((const unsigned char *)once, once_len)) fuzz_fail("the writer wrote invalid UTF-8", once, once_len);
  char err[256];
  hersh_value back;
  if (hersh_json_parse(once, once_len, &back, err, sizeof err) != HERSH_OK)
    fuzz_fail("the reader refuses what the writer wrote", err, strlen(err));
  if (in.exact && !hersh_value_equal(&v, &back)) fuzz_fail("the round trip changed the value", once, once_len);
  char *twice = fuzz_json(&back);
  hersh_value again;
  if (hersh_json_parse(twice, strlen(twice), &again, err, sizeof err) != HERSH_OK)
    fuzz_fail("the reader refuses its own round trip", err, strlen(err));
  char *thrice = fuzz_json(&again);
  if (strcmp(twice, thrice) != 0) fuzz_fail("encoding what was read is not a fixed point", thrice, strlen(thrice));
  free(thrice);
  free(twice);
  free(once);
  hersh_value_free(&again);
  hersh_value_free(&back);
  hersh_value_free(&v);
  return 0;
}
