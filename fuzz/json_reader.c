/*
** json_reader.c -- fuzzes the C JSON reader (src/base/json_read.c) with arbitrary bytes.
** Beyond "no crash, no leak, no UB" it asserts:
**  - a refusal says where: "invalid JSON at byte N: ..." with N <= the input length;
**  - an accepted document nests at most HERSH_JSON_MAX_DEPTH levels;
**  - round trip: what parsed encodes (hersh_value_json) to valid UTF-8 that parses
**    again to an equal value (hersh_value_equal), and after that one normalization,
**    encoding what was read gives the same text again (a fixed point).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "base/json.h"

static void check_refusal(const char *err, size_t len) {
  unsigned long long at;
  int used = 0;
  if (sscanf(err, "invalid JSON at byte %llu: %n", &at, &used) != 1 || used == 0)
    fuzz_fail("a refusal without \"invalid JSON at byte N: \"", err, strlen(err));
  if (at > len) fuzz_fail("a refusal points past the end of the input", err, strlen(err));
  if (err[used] == '\0') fuzz_fail("a refusal that does not say what is wrong", err, strlen(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  char err[256];
  hersh_value v;
  int rc = hersh_json_parse(text, size, &v, err, sizeof err);
  if (rc == HERSH_E_INVAL) {
    if (v.type != HERSH_T_NIL) fuzz_fail("a refusal left a value behind", text, size);
    check_refusal(err, size);
    return 0;
  }
  if (rc != HERSH_OK) fuzz_fail("an error other than HERSH_E_INVAL", err, strlen(err));
  if (fuzz_value_depth(&v) > HERSH_JSON_MAX_DEPTH) fuzz_fail("accepted nesting over the limit", text, size);

  char *once = fuzz_json(&v);
  size_t once_len = strlen(once);
  if (!fuzz_utf8_valid((const unsigned char *)once, once_len)) fuzz_fail("encoded to invalid UTF-8", once, once_len);
  hersh_value again;
  if (hersh_json_parse(once, once_len, &again, err, sizeof err) != HERSH_OK)
    fuzz_fail("the encoding of an accepted document does not parse", err, strlen(err));
  if (!hersh_value_equal(&v, &again)) fuzz_fail("re-parsing the encoding gives another value", once, once_len);
  /* Spellings may change once (-0.0 is written "-0", which reads back as the integer
  ** 0): from then on, encoding what was read must give the same text. */
  char *twice = fuzz_json(&again);
  hersh_value third;
  if (hersh_json_parse(twice, strlen(twice), &third, err, sizeof err) != HERSH_OK)
    fuzz_fail("the encoding of a re-parsed document does not parse", err, strlen(err));
  char *thrice = fuzz_json(&third);
  if (strcmp(twice, thrice) != 0) fuzz_fail("encoding is not a fixed point", thrice, strlen(thrice));

  free(thrice);
  hersh_value_free(&third);
  free(twice);
  free(once);
  hersh_value_free(&again);
  hersh_value_free(&v);
  return 0;
}
