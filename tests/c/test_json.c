/*
** The JSON of src/base: the strict reader (valid documents, every kind of bad input)
** and the structured writer (nesting, commas, escapes, invalid UTF-8, numbers, misuse),
** whose output an independent decoder, Python's json module, checks.
*/
#include <fcntl.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "hersh.h"
/* Relative, so it builds whether or not the test target has src/ on its include path. */
#include "../../src/base/json.h"

typedef struct doc {
  const char *text;
  size_t len;
} doc;

/* sizeof, not strlen: some documents hold a NUL byte. */
#define J(s) {s, sizeof(s) - 1}

/* Parses a copy in a block of exactly len bytes, so ASan sees any read past the end. */
static int parse_exact(const char *text, size_t len, hersh_value *out, char *err, size_t errlen) {
  char *copy = malloc(len ? len : 1);
  if (!copy) return HERSH_E_NOMEM;
  if (len) memcpy(copy, text, len);
  int rc = hersh_json_parse(copy, len, out, err, errlen);
  free(copy);
  return rc;
}

/* The writer's text with whitespace outside strings removed (its layout is free). */
static char *json_compact(const hersh_value *v) {
  char *s = hersh_value_json(v);
  if (s) check_json_squeeze(s);
  return s;
}

/* Counts one failed check per bad document, naming it, rather than one per test. */
static void expect_invalid(const char *text, size_t len) {
  char err[256];
  hersh_value v = hersh_int(7); /* must come back nil */
  memset(err, 0, sizeof err);
  int rc = parse_exact(text, len, &v, err, sizeof err);
  if (rc != HERSH_E_INVAL || v.type != HERSH_T_NIL || strncmp(err, "invalid JSON at byte ", 21) != 0 ||
      strlen(err) <= 30) {
    check_fail_at(__FILE__, __LINE__);
    printf("expected HERSH_E_INVAL for [%.*s] (%zu bytes): rc %d, type %d, err \"%s\"\n", (int)len, text,
           len, rc, (int)v.type, err);
  }
  hersh_value_free(&v);
}

static void expect_valid(const char *text, size_t len, const char *want_json) {
  char err[256] = "";
  hersh_value v = hersh_nil();
  int rc = parse_exact(text, len, &v, err, sizeof err);
  char *got = rc == HERSH_OK ? json_compact(&v) : NULL;
  if (rc != HERSH_OK || !got || (want_json && strcmp(got, want_json) != 0)) {
    check_fail_at(__FILE__, __LINE__);
    printf("[%.*s]: rc %d, err \"%s\", got %s, want %s\n", (int)len, text, rc, err, got ? got : "(none)",
           want_json ? want_json : "(any)");
  }
  free(got);
  hersh_value_free(&v);
}

/* n arrays inside each other: "[[...]]". */
static char *nested_arrays(size_t n, size_t *len) {
  char *s = malloc(2 * n + 1);
  if (!s) return NULL;
  memset(s, '[', n);
  memset(s + n, ']', n);
  s[2 * n] = '\0';
  *len = 2 * n;
  return s;
}

/* n objects inside each other: {"a":{"a":...{}...}}. */
static char *nested_objects(size_t n, size_t *len) {
  char *s = malloc(6 * n + 1);
  if (!s) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n) memcpy(s + k, "{\"a\":", 5), k += 5;
    else s[k++] = '{';
  }
  memset(s + k, '}', n);
  k += n;
  s[k] = '\0';
  *len = k;
  return s;
}

TEST(scalars) {
  static const struct {
    doc d;
    hersh_type type;
    const char *json;
  } cases[] = {
      {J("null"), HERSH_T_NIL, "null"},
      {J("true"), HERSH_T_BOOL, "true"},
      {J("false"), HERSH_T_BOOL, "false"},
      {J("0"), HERSH_T_INT, "0"},
      {J("-0"), HERSH_T_INT, "0"},
      {J("42"), HERSH_T_INT, "42"},
      {J("-7"), HERSH_T_INT, "-7"},
      {J(" \t\r\n 12 \n"), HERSH_T_INT, "12"},
      {J("9223372036854775807"), HERSH_T_INT, "9223372036854775807"},
      {J("-9223372036854775808"), HERSH_T_INT, "-9223372036854775808"},
      {J("9223372036854775808"), HERSH_T_NUM, NULL},
      {J("-9223372036854775809"), HERSH_T_NUM, NULL},
      {J("18446744073709551616"), HERSH_T_NUM, NULL},
      {J("123456789012345678901234567890"), HERSH_T_NUM, NULL},
      {J("1.5"), HERSH_T_NUM, "1.5"},
      {J("-0.25"), HERSH_T_NUM, "-0.25"},
      {J("0.0"), HERSH_T_NUM, "0"},
      {J("1e3"), HERSH_T_NUM, "1000"},
      {J("1E3"), HERSH_T_NUM, "1000"},
      {J("1e+2"), HERSH_T_NUM, "100"},
      {J("25e-2"), HERSH_T_NUM, "0.25"},
      {J("-1.5E-1"), HERSH_T_NUM, "-0.15"},
      {J("0e0"), HERSH_T_NUM, "0"},
      {J("1e-400"), HERSH_T_NUM, "0"}, /* underflow rounds to zero; only overflow is refused */
      {J("\"\""), HERSH_T_STR, "\"\""},
      {J("\"tick\""), HERSH_T_STR, "\"tick\""},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char err[256] = "";
    hersh_value v = hersh_nil();
    int rc = parse_exact(cases[k].d.text, cases[k].d.len, &v, err, sizeof err);
    CHECK_EQ_INT(rc, HERSH_OK);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(v.type, cases[k].type);
    if (cases[k].json) {
      char *s = json_compact(&v);
      CHECK_EQ_STR(s, cases[k].json);
      free(s);
    }
    hersh_value_free(&v);
  }
}

TEST(numbers) {
  static const struct {
    doc d;
    double want;
  } nums[] = {
      {J("9223372036854775808"), 9223372036854775808.0},
      {J("-9223372036854775809"), -9223372036854775809.0},
      {J("1e308"), 1e308},
      {J("1.7976931348623157e308"), 1.7976931348623157e308},
      {J("-2.5e-7"), -2.5e-7},
      {J("0.1"), 0.1},
      {J("3.141592653589793"), 3.141592653589793},
      {J("5e-324"), 5e-324},
      {J("100000000000000000000000"), 1e23},
  };
  for (size_t k = 0; k < sizeof nums / sizeof *nums; k++) {
    hersh_value v = hersh_nil();
    CHECK_EQ_INT(parse_exact(nums[k].d.text, nums[k].d.len, &v, NULL, 0), HERSH_OK);
    CHECK_EQ_INT(v.type, HERSH_T_NUM);
    CHECK(v.as.n == nums[k].want);
  }
  hersh_value v = hersh_nil();
  CHECK_EQ_INT(hersh_json_parse("-9223372036854775808", 20, &v, NULL, 0), HERSH_OK);
  CHECK_EQ_INT(v.type, HERSH_T_INT);
  CHECK(v.as.i == INT64_MIN);
  CHECK_EQ_INT(hersh_json_parse("9223372036854775807", 19, &v, NULL, 0), HERSH_OK);
  CHECK(v.type == HERSH_T_INT && v.as.i == INT64_MAX);
  /* Only `len` bytes count: the digits after it are not part of the number. */
  CHECK_EQ_INT(hersh_json_parse("12345", 2, &v, NULL, 0), HERSH_OK);
  CHECK(v.type == HERSH_T_INT && v.as.i == 12);
}

TEST(strings) {
  static const struct {
    doc d;
    doc want;
  } cases[] = {
      {J("\"plain\""), J("plain")},
      {J("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), J("\"\\/\b\f\n\r\t")},
      {J("\"\\u0041\\u00e9\\u00E9\""), J("A\xc3\xa9\xc3\xa9")},
      {J("\"\\u20ac\\u20AC\""), J("\xe2\x82\xac\xe2\x82\xac")},
      {J("\"\\u07ff\\u0800\\uffff\""), J("\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf")},
      {J("\"\\uD83D\\uDE00\""), J("\xf0\x9f\x98\x80")},
      {J("\"\\ud800\\udc00\""), J("\xf0\x90\x80\x80")},
      {J("\"\\uDBFF\\uDFFF\""), J("\xf4\x8f\xbf\xbf")},
      {J("\"a\\u0000b\""), J("a\0b")},
      {J("\"\\u0000\""), J("\0")},
      {J("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""), J("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")},
      {J("\"\xf4\x8f\xbf\xbf\xef\xbf\xbf\""), J("\xf4\x8f\xbf\xbf\xef\xbf\xbf")},
      {J("\"\x7f\""), J("\x7f")},
      {J("\"'\""), J("'")},
      {J("\"\\u0022\""), J("\"")},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char err[256] = "";
    hersh_value v = hersh_nil();
    CHECK_EQ_INT(parse_exact(cases[k].d.text, cases[k].d.len, &v, err, sizeof err), HERSH_OK);
    CHECK_EQ_STR(err, "");
    REQUIRE(v.type == HERSH_T_STR);
    CHECK_EQ_INT(v.as.s.len, cases[k].want.len);
    CHECK(memcmp(v.as.s.ptr, cases[k].want.text, cases[k].want.len + 1) == 0); /* NUL-ended too */
    hersh_value_free(&v);
  }

  /* A long string grows the scratch buffer many times. */
  size_t n = 1 << 20;
  char *big = malloc(n + 2);
  REQUIRE(big != NULL);
  big[0] = '"';
  for (size_t i = 1; i <= n; i++) big[i] = (char)('a' + i % 26);
  big[n + 1] = '"';
  hersh_value v = hersh_nil();
  CHECK_EQ_INT(parse_exact(big, n + 2, &v, NULL, 0), HERSH_OK);
  CHECK(v.type == HERSH_T_STR && v.as.s.len == n && memcmp(v.as.s.ptr, big + 1, n) == 0);
  hersh_value_free(&v);
  free(big);
}

TEST(containers) {
  static const struct {
    doc d;
    const char *json;
  } cases[] = {
      {J("[]"), "[]"},
      {J("{}"), "{}"},
      {J(" [ ] "), "[]"},
      {J("{ }"), "{}"},
      {J("[1,2,3]"), "[1,2,3]"},
      {J("[ 1 , \"a\" , null , true , false , [ ] , { } ]"), "[1,\"a\",null,true,false,[],{}]"},
      {J("{\"content\": \"tick\"}"), "{\"content\":\"tick\"}"},
      {J("\r\n{\t\"a\" :\n[ {\"b\" : [[ 1 ]] } ] ,\"c\":{}}\n"), "{\"a\":[{\"b\":[[1]]}],\"c\":{}}"},
      {J("{\"a\":1,\"b\":2,\"a\":3}"), "{\"a\":3,\"b\":2}"}, /* last wins */
      {J("{\"\":0}"), "{\"\":0}"},
      {J("{\"\\u00e9\\n\":true}"), "{\"\xc3\xa9\\n\":true}"},
      {J("[\"\\uD83D\\uDE00\",-1.5e0]"), "[\"\xf0\x9f\x98\x80\",-1.5]"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
    expect_valid(cases[k].d.text, cases[k].d.len, cases[k].json);

  hersh_value v = hersh_nil();
  const char body[] = "{\"content\": \"tick\", \"n\": 2}";
  REQUIRE(hersh_json_parse(body, sizeof body - 1, &v, NULL, 0) == HERSH_OK);
  CHECK_EQ_INT(v.type, HERSH_T_MAP);
  const hersh_value *content = hersh_map_get(&v, "content");
  REQUIRE(content != NULL);
  CHECK_EQ_INT(content->type, HERSH_T_STR);
  CHECK_EQ_STR(content->as.s.ptr, "tick");
  CHECK_EQ_STR(hersh_map_key(&v, 1), "n");
  hersh_value_free(&v);

  /* A repeated key: the last value wins, in the first one's place (written sorted). */
  const char dup[] = "{\"b\":1,\"a\":2,\"b\":3}";
  REQUIRE(hersh_json_parse(dup, sizeof dup - 1, &v, NULL, 0) == HERSH_OK);
  CHECK_EQ_INT(hersh_value_len(&v), 2);
  CHECK_EQ_STR(hersh_map_key(&v, 0), "b");
  CHECK_EQ_INT(hersh_map_value(&v, 0)->as.i, 3);
  CHECK_EQ_STR(hersh_map_key(&v, 1), "a");
  hersh_value_free(&v);

  /* A wide array. */
  size_t items = 100000, len = 0;
  char *wide = malloc(items * 2 + 2);
  REQUIRE(wide != NULL);
  wide[len++] = '[';
  for (size_t i = 0; i < items; i++) {
    wide[len++] = (char)('0' + i % 10);
    wide[len++] = ',';
  }
  wide[len - 1] = ']';
  CHECK_EQ_INT(parse_exact(wide, len, &v, NULL, 0), HERSH_OK);
  CHECK_EQ_INT(hersh_value_len(&v), items);
  const hersh_value *last = hersh_list_at(&v, items - 1);
  REQUIRE(last != NULL);
  CHECK_EQ_INT(last->as.i, (items - 1) % 10);
  hersh_value_free(&v);
  free(wide);
}

TEST(depth_limit) {
  for (int objects = 0; objects < 2; objects++) {
    size_t len;
    char *ok = objects ? nested_objects(HERSH_JSON_MAX_DEPTH, &len) : nested_arrays(HERSH_JSON_MAX_DEPTH, &len);
    REQUIRE(ok != NULL);
    expect_valid(ok, len, NULL);
    free(ok);
    char *deep = objects ? nested_objects(HERSH_JSON_MAX_DEPTH + 1, &len)
                         : nested_arrays(HERSH_JSON_MAX_DEPTH + 1, &len);
    REQUIRE(deep != NULL);
    char err[256] = "";
    hersh_value v = hersh_nil();
    CHECK_EQ_INT(parse_exact(deep, len, &v, err, sizeof err), HERSH_E_INVAL);
    CHECK(strstr(err, "nesting deeper than 64") != NULL);
    CHECK_EQ_INT(v.type, HERSH_T_NIL);
    free(deep);
  }
  /* Far deeper than any stack could take, had the parser no limit. */
  size_t len;
  char *abyss = nested_arrays(1000000, &len);
  REQUIRE(abyss != NULL);
  expect_invalid(abyss, len);
  expect_invalid(abyss, len / 2); /* only openings */
  free(abyss);
  /* Mixed: 32 arrays then 33 objects is 65. */
  char mixed[512];
  size_t k = 0;
  for (int i = 0; i < 32; i++) mixed[k++] = '[';
  for (int i = 0; i < 33; i++) memcpy(mixed + k, "{\"k\":", 5), k += 5;
  memcpy(mixed + k, "1", 1), k += 1;
  memset(mixed + k, '}', 33), k += 33;
  memset(mixed + k, ']', 32), k += 32;
  expect_invalid(mixed, k);
}

TEST(invalid_documents) {
  static const doc bad[] = {
      /* empty and whitespace only */
      J(""), J(" "), J("\t\r\n "), J("\n"),
      /* not JSON whitespace */
      J("\f1"), J("\v1"), J("\xc2\xa0" "1"), J("\xef\xbb\xbf{}"), J("\x00"), J("1\x00"),
      /* literals */
      J("tru"), J("t"), J("nul"), J("fals"), J("True"), J("NULL"), J("nil"), J("truee"), J("nulll"),
      J("falsey"), J("undefined"), J("none"),
      /* numbers */
      J("01"), J("-01"), J("00"), J("007"), J("-00"), J("+1"), J(".5"), J("-.5"), J("1."), J("-1."), J("0."),
      J("1.e3"), J("1e"), J("1E"), J("1e+"), J("1e-"), J("1e+-1"), J("-"), J("--1"), J("- 1"), J("0x10"),
      J("1.5.2"), J("1e2e3"), J("1_000"), J("1,000"), J("NaN"), J("-NaN"), J("nan"), J("Infinity"),
      J("-Infinity"), J("inf"), J("-inf"), J("1e400"), J("-1e400"), J("1e99999999999999999999"),
      J("\xd9\xa1"), J("1 2"), J("0 0"), J("[01]"), J("[1.]"), J("{\"a\":-}"), J("[+1]"), J("[.5]"),
      /* strings */
      J("\""), J("\"abc"), J("\"abc\\\""), J("'a'"), J("\"a\"\""), J("\"\\"), J("\"\\\\"),
      /* bad escapes */
      J("\"\\x41\""), J("\"\\a\""), J("\"\\0\""), J("\"\\'\""), J("\"\\ \""), J("\"\\U0041\""),
      J("\"\\u\""), J("\"\\u1\""), J("\"\\u12\""), J("\"\\u123\""), J("\"\\u12G4\""), J("\"\\u 123\""),
      J("\"\\u-123\""), J("\"\\u+123\""), J("\"\\u0x12\""), J("\"\\u123"), J("\"\\\xc3\xa9\""), J("\"\\\n\""),
      /* lone surrogates */
      J("\"\\uD800\""), J("\"\\uDBFF\""), J("\"\\uDC00\""), J("\"\\uDFFF\""), J("\"\\ud800x\""),
      J("\"\\uD800\\u0041\""), J("\"\\uD800\\uD800\""), J("\"\\uDBFF\\n\""), J("\"\\uD800\\\""),
      J("\"\\uDFFF\\uD800\""), J("\"\\uD800\\uE000\""), J("\"\\uD800\\u\""), J("\"\\uD800\\uDC0\""),
      J("\"\\uD800\\uDCxx\""), J("\"\\uD800"), J("\"\\uD800\\"), J("\"\\uD800\\u"), J("\"\\uD800 \\uDC00\""),
      J("{\"\\uD800\":1}"),
      /* invalid UTF-8 in strings */
      J("\"\x80\""), J("\"\xbf\""), J("\"\xc0\xaf\""), J("\"\xc1\xbf\""), J("\"\xc3\""), J("\"\xc3x\""),
      J("\"\xc3\xc3\xa9\""), J("\"\xe0\x80\xaf\""), J("\"\xe0\x9f\xbf\""), J("\"\xe2\x82\""),
      J("\"\xed\xa0\x80\""), J("\"\xed\xbf\xbf\""), J("\"\xf0\x80\x80\xaf\""), J("\"\xf0\x8f\xbf\xbf\""),
      J("\"\xf0\x9f\x98\""), J("\"\xf4\x90\x80\x80\""), J("\"\xf5\x80\x80\x80\""), J("\"\xf8\x88\x80\x80\x80\""),
      J("\"\xfc\x84\x80\x80\x80\x80\""), J("\"\xfe\""), J("\"\xff\""), J("\"a\xe2\x82\"b"),
      J("{\"\xff\":1}"), J("\xff"), J("[\xc3\xa9]"),
      /* arrays */
      J("["), J("]"), J("[1"), J("[1,"), J("[1,]"), J("[,1]"), J("[,]"), J("[1 2]"), J("[1,,2]"), J("[[]"),
      J("[]]"), J("[1}"), J("[\"a\":1]"), J("[true false]"), J("[null,]"), J("[1;2]"),
      /* objects */
      J("{"), J("}"), J("{\"a\""), J("{\"a\":"), J("{\"a\":1"), J("{\"a\":1,"), J("{\"a\":1,}"), J("{,}"),
      J("{,\"a\":1}"), J("{\"a\" 1}"), J("{\"a\":}"), J("{a:1}"), J("{'a':1}"), J("{\"a\":1 \"b\":2}"),
      J("{1:2}"), J("{null:1}"), J("{\"a\":1]"), J("{}}"), J("{\"a\"::1}"), J("{\"a\"=1}"), J("{\"a\",1}"),
      J("{\"a\":1;\"b\":2}"), J("{[]:1}"), J("{\"a\\u0000b\":1}"), J("{\"\\u0000\":1}"),
      /* punctuation alone */
      J(","), J(":"), J("\\"), J("/"), J("#"),
      /* trailing garbage */
      J("{\"a\":1}x"), J("[] []"), J("{}{}"), J("\"a\" \"b\""), J("1 x"), J("truex"), J("null,"), J("[],"),
      J("{} // comment"), J("/* c */ 1"), J("1 /* c */"), J("[]\x00"), J("\"a\"\x00"), J("0]"), J("1}"),
      /* control characters unescaped */
      J("\"a\tb\""), J("\"a\nb\""), J("\"\r\""), J("\"\x1f\""), J("\"\x01\""), J("{\"a\nb\":1}"),
  };
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) expect_invalid(bad[k].text, bad[k].len);

  /* Every byte below 0x20 raw inside a string. */
  for (int c = 0; c < 0x20; c++) {
    char s[4] = {'"', (char)c, '"', 0};
    expect_invalid(s, 3);
  }
  /* Every byte that cannot start a value. */
  for (int c = 0; c < 256; c++) {
    if (strchr("{[\"tfn-0123456789 \t\r\n", c) && c != 0) continue;
    char s[1] = {(char)c};
    expect_invalid(s, 1);
  }
}

TEST(truncated_prefixes) {
  /* Each strict prefix of these is invalid (none starts with a complete value). */
  static const doc docs[] = {
      J("{\"content\": \"tick\"}"),
      J("[1, -2.5e+3, \"a\\u00e9\\uD83D\\uDE00\\n\", true, false, null, {\"k\": [{}], \"\": []}]"),
      J("{\"a\":{\"b\":{\"c\":[9223372036854775807,-9223372036854775808,1e308,0.5]}}}"),
      J("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\\"\\\\\\/\\b\\f\\n\\r\\t\""),
      J("  [ \"x\" ,\n{ \"y\" : null } ]"),
      J("true"), J("false"), J("null"),
  };
  for (size_t k = 0; k < sizeof docs / sizeof *docs; k++) {
    expect_valid(docs[k].text, docs[k].len, NULL);
    for (size_t n = 0; n < docs[k].len; n++) {
      /* Whitespace-only prefixes of the leading blanks are fine to test too: invalid. */
      expect_invalid(docs[k].text, n);
    }
  }
}

TEST(messages) {
  static const struct {
    doc d;
    const char *want;
  } cases[] = {
      {J(""), "invalid JSON at byte 0: empty input"},
      {J("   "), "invalid JSON at byte 3: expected a value, found end of input"},
      {J("{\"content\" \"tick\"}"), "invalid JSON at byte 11: expected ':', found '\"'"},
      {J("[1,]"), "invalid JSON at byte 3: expected a value, found ']'"},
      {J("{\"a\":1,}"), "invalid JSON at byte 7: expected a string key, found '}'"},
      {J("[1 2]"), "invalid JSON at byte 3: expected ',' or ']', found '2'"},
      {J("{} x"), "invalid JSON at byte 3: unexpected 'x' after the document"},
      {J("01"), "invalid JSON at byte 0: leading zero in number"},
      {J("1."), "invalid JSON at byte 2: expected a digit after '.', found end of input"},
      {J("tru"), "invalid JSON at byte 3: expected 'true', found end of input"},
      {J("nulL"), "invalid JSON at byte 3: expected 'null', found 'L'"},
      {J("1e400"), "invalid JSON at byte 0: number out of range"},
      {J("\"ab"), "invalid JSON at byte 3: unterminated string (opened at byte 0)"},
      {J("\"a\\qb\""), "invalid JSON at byte 2: invalid escape, backslash followed by 'q'"},
      {J("\"\\uD800\""), "invalid JSON at byte 1: lone high surrogate \\uD800"},
      {J("[\"\\udc00\"]"), "invalid JSON at byte 2: lone low surrogate \\uDC00"},
      {J("\"a\nb\""), "invalid JSON at byte 2: control character 0x0a in string"},
      {J("\"a\xffz\""), "invalid JSON at byte 2: invalid UTF-8 byte 0xff in string"},
      {J("{\"a\\u0000\":1}"), "invalid JSON at byte 1: object key contains \\u0000"},
      {J("\x01"), "invalid JSON at byte 0: expected a value, found 0x01"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char err[256] = "";
    hersh_value v = hersh_nil();
    CHECK_EQ_INT(parse_exact(cases[k].d.text, cases[k].d.len, &v, err, sizeof err), HERSH_E_INVAL);
    CHECK_EQ_STR(err, cases[k].want);
  }

  /* A short buffer gets a truncated, terminated message; no buffer at all is fine. */
  char small[12];
  memset(small, 'x', sizeof small);
  hersh_value v = hersh_nil();
  CHECK_EQ_INT(hersh_json_parse("[1,]", 4, &v, small, sizeof small), HERSH_E_INVAL);
  CHECK_EQ_INT(strlen(small), sizeof small - 1);
  CHECK_EQ_INT(hersh_json_parse("[1,]", 4, &v, NULL, 0), HERSH_E_INVAL);
  CHECK_EQ_INT(hersh_json_parse("[1,]", 4, &v, small, 0), HERSH_E_INVAL);
  /* A message from an earlier call does not survive a success. */
  CHECK_EQ_INT(hersh_json_parse("[]", 2, &v, small, sizeof small), HERSH_OK);
  CHECK_EQ_STR(small, "");
  hersh_value_free(&v);
  /* Misuse. */
  CHECK_EQ_INT(hersh_json_parse(NULL, 0, &v, NULL, 0), HERSH_E_INVAL);
  CHECK_EQ_INT(hersh_json_parse(NULL, 3, &v, NULL, 0), HERSH_E_INVAL);
  CHECK_EQ_INT(v.type, HERSH_T_NIL);
  CHECK_EQ_INT(hersh_json_parse("1", 1, NULL, NULL, 0), HERSH_E_INVAL);
}

TEST(round_trip) {
  /* Texts the writer prints back exactly (compact, keys sorted). */
  static const doc same[] = {
      J("{\"content\":\"tick\"}"),
      J("[1,-2,\"two\",[true,false,null],{},[]]"),
      J("{\"a\":{\"list\":[9223372036854775807,-9223372036854775808]},\"b\":1,\"s\":\"x\\ny\\t\\\"q\\\"\\\\\"}"),
      J("\"caf\xc3\xa9 \xf0\x9f\x98\x80 a\\u0000b\""),
      J("[0.5,-1.25,1e+300]"),
  };
  for (size_t k = 0; k < sizeof same / sizeof *same; k++) expect_valid(same[k].text, same[k].len, same[k].text);

  /* Texts whose spelling changes but whose value must survive parse, write, parse. */
  static const doc docs[] = {
      J("{\"a\": [1, 2.5e-7, 0.1, 1.7976931348623157e308, 5e-324, 12345678901234567890],"
        " \"\\u00e9\\/\": \"\\uD83D\\uDE00\\b\\f\\u001f\", \"a\": {\"x\": [[[]]]}}"),
      J(" [ \"\\u0000\\u0001\" , -0.0, 1E2 ] "),
  };
  for (size_t k = 0; k < sizeof docs / sizeof *docs; k++) {
    hersh_value a = hersh_nil(), b = hersh_nil();
    REQUIRE(parse_exact(docs[k].text, docs[k].len, &a, NULL, 0) == HERSH_OK);
    char *s = hersh_value_json(&a);
    REQUIRE(s != NULL);
    char err[256] = "";
    CHECK_EQ_INT(parse_exact(s, strlen(s), &b, err, sizeof err), HERSH_OK);
    CHECK_EQ_STR(err, "");
    CHECK(hersh_value_equal(&a, &b));
    free(s);
    hersh_value_free(&a);
    hersh_value_free(&b);
  }
}

/* ---- the writer, checked by Python's json ------------------------------------------------ */

extern char **environ;

/*
** Decodes `json` with Python's json module (strictly: NaN and Infinity refused, the
** bytes must be UTF-8) with objects as ('obj', (key, value), ...) tuples so that key
** order counts, and runs `check`, Python code that sees the document as `doc` and
** `arg`, and exits non-zero on a mismatch (printing why). True if it passed.
*/
static bool python_check(const char *json, size_t len, const char *check, const char *arg) {
  static const char prelude[] =
      "import json, sys\n"
      "def refuse(c): raise ValueError('not JSON: ' + c)\n"
      "raw = open(sys.argv[1], 'rb').read()\n"
      "doc = json.loads(raw.decode('utf-8'), parse_constant=refuse,\n"
      "                 object_pairs_hook=lambda pairs: ('obj',) + tuple(pairs))\n"
      "arg = sys.argv[2]\n";
  char path[] = "/tmp/hersh-test-json-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return false;
  bool wrote = write(fd, json, len) == (ssize_t)len;
  close(fd);
  size_t code_len = sizeof prelude + strlen(check) + 1;
  char *code = malloc(code_len);
  bool ok = false;
  if (wrote && code) {
    snprintf(code, code_len, "%s%s\n", prelude, check);
    char *argv[] = {"python3", "-c", code, path, (char *)arg, NULL};
    pid_t pid;
    int status = 0;
    if (posix_spawnp(&pid, "python3", NULL, NULL, argv, environ) != 0) {
      printf("python3 not found (scripts/setup installs it): the writer cannot be checked\n");
    } else if (waitpid(pid, &status, 0) == pid) {
      ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
  }
  free(code);
  unlink(path);
  return ok;
}

/* The document equals the Python literal in `arg` (repr compared: 1, 1.0, True differ). */
static const char same_as_literal[] =
    "import ast\n"
    "want = ast.literal_eval(arg)\n"
    "if repr(doc) != repr(want):\n"
    "    print('decoded', repr(doc), '\\nwanted ', repr(want)); sys.exit(1)\n";

#define CHECK_PY(text, literal)                                                           \
  do {                                                                                    \
    const char *t_ = (text);                                                              \
    if (!t_ || !python_check(t_, strlen(t_), same_as_literal, (literal))) {               \
      check_fail_at(__FILE__, __LINE__);                                                  \
      printf("Python reads [%s] otherwise than %s\n", t_ ? t_ : "(null)", (literal));      \
    }                                                                                     \
  } while (0)

typedef struct writer {
  hersh_buf b;
  hersh_json j;
} writer;

static hersh_json *writer_begin(writer *w) {
  w->b = (hersh_buf){0};
  hersh_json_init(&w->j, &w->b);
  return &w->j;
}

TEST(writer_nesting) {
  writer w;
  hersh_json *j = writer_begin(&w);
  hersh_json_object(j);
  hersh_json_key(j, "z");
  hersh_json_int(j, 1);
  hersh_json_key(j, "a");
  hersh_json_array(j);
  hersh_json_array(j);
  hersh_json_end(j);
  hersh_json_object(j);
  hersh_json_end(j);
  hersh_json_null(j);
  hersh_json_bool(j, true);
  hersh_json_bool(j, false);
  hersh_json_cstr(j, NULL);
  hersh_json_cstr(j, "s");
  hersh_json_object(j);
  hersh_json_key(j, "in");
  hersh_json_array(j);
  hersh_json_int(j, -3);
  hersh_json_end(j);
  hersh_json_end(j);
  hersh_json_end(j);
  hersh_json_keyn(j, "k\0ey", 4);
  hersh_json_raw(j, "{\"x\":[1,2]}", 11);
  hersh_json_end(j);
  char *s = hersh_json_take(j);
  CHECK_EQ_STR(s, "{\"z\":1,\"a\":[[],{},null,true,false,null,\"s\",{\"in\":[-3]}],\"k\\u0000ey\":{\"x\":[1,2]}}");
  CHECK_PY(s, "('obj', ('z', 1), ('a', [[], ('obj',), None, True, False, None, 's', ('obj', ('in', [-3]))]),"
              " ('k\\x00ey', ('obj', ('x', [1, 2]))))");
  free(s);

  /* A scalar is a document too; so is a lone empty container. */
  j = writer_begin(&w);
  hersh_json_cstr(j, "only");
  s = hersh_json_take(j);
  CHECK_EQ_STR(s, "\"only\"");
  free(s);
  j = writer_begin(&w);
  hersh_json_array(j);
  hersh_json_end(j);
  s = hersh_json_take(j);
  CHECK_EQ_STR(s, "[]");
  free(s);

  /* As deep as the writer goes, and a document still. */
  j = writer_begin(&w);
  for (int d = 0; d < HERSH_JSON_WRITE_DEPTH; d++) hersh_json_array(j);
  for (int d = 0; d < HERSH_JSON_WRITE_DEPTH; d++) hersh_json_end(j);
  s = hersh_json_take(j);
  REQUIRE(s != NULL);
  CHECK(python_check(s, strlen(s), "sys.exit(0 if repr(doc).count('[') == 128 else 1)", ""));
  free(s);
}

/* Every misuse leaves a reason, and finish refuses the document. */
TEST(writer_misuse) {
  enum { VALUE_IN_OBJECT, KEY_IN_ARRAY, KEY_AT_TOP, END_AT_TOP, END_AFTER_KEY, TWO_KEYS, SECOND_TOP,
         UNFINISHED, NOTHING, NAN_NUMBER, INF_NUMBER, TOO_DEEP, EMPTY_RAW, N_CASES };
  for (int c = 0; c < N_CASES; c++) {
    writer w;
    hersh_json *j = writer_begin(&w);
    switch (c) {
    case VALUE_IN_OBJECT: hersh_json_object(j), hersh_json_int(j, 1), hersh_json_end(j); break;
    case KEY_IN_ARRAY: hersh_json_array(j), hersh_json_key(j, "k"), hersh_json_int(j, 1), hersh_json_end(j); break;
    case KEY_AT_TOP: hersh_json_key(j, "k"), hersh_json_int(j, 1); break;
    case END_AT_TOP: hersh_json_int(j, 1), hersh_json_end(j); break;
    case END_AFTER_KEY: hersh_json_object(j), hersh_json_key(j, "k"), hersh_json_end(j); break;
    case TWO_KEYS: hersh_json_object(j), hersh_json_key(j, "a"), hersh_json_key(j, "b"), hersh_json_null(j), hersh_json_end(j); break;
    case SECOND_TOP: hersh_json_int(j, 1), hersh_json_int(j, 2); break;
    case UNFINISHED: hersh_json_array(j), hersh_json_int(j, 1); break;
    case NOTHING: break;
    case NAN_NUMBER: hersh_json_array(j), hersh_json_number(j, NAN), hersh_json_end(j); break;
    case INF_NUMBER: hersh_json_array(j), hersh_json_number(j, -INFINITY), hersh_json_end(j); break;
    case TOO_DEEP:
      for (int d = 0; d <= HERSH_JSON_WRITE_DEPTH; d++) hersh_json_array(j);
      for (int d = 0; d <= HERSH_JSON_WRITE_DEPTH; d++) hersh_json_end(j);
      break;
    case EMPTY_RAW: hersh_json_raw(j, "", 0); break;
    }
    int rc = hersh_json_finish(j);
    if (rc != HERSH_E_INVAL || !hersh_json_error(j) || !*hersh_json_error(j)) {
      check_fail_at(__FILE__, __LINE__);
      printf("misuse %d: finish gave %d, error \"%s\", text [%s]\n", c, rc,
             hersh_json_error(j) ? hersh_json_error(j) : "(none)", w.b.p ? w.b.p : "");
    }
    CHECK(hersh_json_take(j) == NULL); /* and take frees the partial text */
    CHECK(w.b.p == NULL);
  }
}

TEST(writer_escapes) {
  /* Every control character, the quote and the backslash escaped; `/`, DEL, U+2028 and
  ** other valid UTF-8 as they are. */
  char all[40];
  for (int c = 0; c < 0x20; c++) all[c] = (char)c;
  memcpy(all + 0x20, "\"\\/\x7f", 4);
  writer w;
  hersh_json *j = writer_begin(&w);
  hersh_json_array(j);
  hersh_json_string(j, all, 0x24);
  hersh_json_cstr(j, "</script> a/b caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80");
  hersh_json_end(j);
  char *s = hersh_json_take(j);
  REQUIRE(s != NULL);
  CHECK(strstr(s, "\\\\/") != NULL); /* the backslash escaped, the slash after it as is */
  CHECK(strstr(s, "\"</script> a/b caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80\"") != NULL);
  CHECK(strstr(s, "\\b\\t\\n\\u000b\\f\\r") != NULL);
  for (const char *p = s; *p; p++) CHECK((unsigned char)*p >= 0x20);
  CHECK(python_check(s, strlen(s),
                     "want = ''.join(chr(c) for c in range(32)) + '\"\\\\/\\x7f'\n"
                     "sys.exit(0 if doc == [want, '</script> a/b caf\\u00e9 \\u2028 \\U0001F600'] else 1)",
                     ""));
  free(s);
}

TEST(writer_invalid_utf8) {
  /* Each byte that starts no valid sequence becomes one U+FFFD; what follows is kept. */
  static const struct {
    doc in;
    const char *want; /* Python literal of the decoded string */
  } cases[] = {
      {J("a\x80" "b"), "'a\\ufffdb'"},                 /* a lone continuation byte */
      {J("\xc0\xaf"), "'\\ufffd\\ufffd'"},             /* an overlong '/' */
      {J("\xe0\x80\xaf"), "'\\ufffd\\ufffd\\ufffd'"},  /* overlong in three bytes */
      {J("\xed\xa0\x80"), "'\\ufffd\\ufffd\\ufffd'"},  /* a surrogate */
      {J("\xf4\x90\x80\x80"), "'\\ufffd' * 4"},        /* past U+10FFFF */
      {J("\xe2\x82"), "'\\ufffd\\ufffd'"},             /* cut short at the end */
      {J("\xe2\x82x"), "'\\ufffd\\ufffdx'"},           /* cut short before ASCII */
      {J("\xff\xfe"), "'\\ufffd\\ufffd'"},
      {J("ok\xe2\x82\xac"), "'ok\\u20ac'"},            /* valid: kept */
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    writer w;
    hersh_json *j = writer_begin(&w);
    hersh_json_object(j);
    hersh_json_keyn(j, cases[k].in.text, cases[k].in.len); /* keys too */
    hersh_json_string(j, cases[k].in.text, cases[k].in.len);
    hersh_json_end(j);
    char *s = hersh_json_take(j);
    REQUIRE(s != NULL);
    char check[160];
    snprintf(check, sizeof check, "import ast\nw = eval(arg)\nsys.exit(0 if doc == ('obj', (w, w)) else 1)");
    if (!python_check(s, strlen(s), check, cases[k].want)) {
      check_fail_at(__FILE__, __LINE__);
      printf("case %zu: [%s] is not %s\n", k, s, cases[k].want);
    }
    free(s);
  }
}

/* Doubles: read back to the same bits, in as few digits as Python's repr (the shortest). */
TEST(writer_numbers) {
  double fixed[] = {0.1, 1.0 / 3, -2.5e-7, 1e21, 1e-300, 5e-324, DBL_MAX, -DBL_MAX, DBL_MIN, 2.2250738585072009e-308,
                    9007199254740993.0, 123456789012345.0, 0.30000000000000004, 100.0, -0.0, 1e16, 4.35, 1e15};
  enum { N_FIXED = sizeof fixed / sizeof *fixed, N_RANDOM = 2000 };
  writer w, hex;
  hersh_json *j = writer_begin(&w);
  hersh_json *h = writer_begin(&hex);
  hersh_json_array(j);
  hersh_json_array(h);
  uint64_t state = 0x9E3779B97F4A7C15u;
  for (int k = 0; k < N_FIXED + N_RANDOM; k++) {
    double d;
    if (k < N_FIXED) {
      d = fixed[k];
    } else {
      do { /* any finite bit pattern */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        memcpy(&d, &state, sizeof d);
      } while (!isfinite(d));
    }
    hersh_json_number(j, d);
    char text[40];
    snprintf(text, sizeof text, "%a", d);
    hersh_json_cstr(h, text);
  }
  hersh_json_end(j);
  hersh_json_end(h);
  char *nums = hersh_json_take(j), *hexes = hersh_json_take(h);
  REQUIRE(nums != NULL && hexes != NULL);
  CHECK(strstr(nums, "\"") == NULL); /* numbers, never strings */
  /* Python's float.fromhex reads C's %a; the raw text gives each number's spelling. */
  static const char check[] =
      "import re\n"
      "hexes = json.loads(arg)\n"
      "texts = re.findall(r'[^,\\[\\]]+', raw.decode())\n"
      "def digits(t):\n"
      "    m = t.lower().split('e')[0].lstrip('-').replace('.', '')\n"
      "    return len(m.strip('0')) or 1\n"
      "bad = 0\n"
      "for x, hx, t in zip(doc, hexes, texts):\n"
      "    want = float.fromhex(hx.replace('0x-', '-0x'))\n"
      "    if float(x) != want or digits(t) > digits(repr(want)):\n"
      "        print('wrote', t, 'for', repr(want)); bad += 1\n"
      "sys.exit(1 if bad or len(doc) != len(hexes) else 0)\n";
  CHECK(python_check(nums, strlen(nums), check, hexes));
  free(nums);
  free(hexes);

  /* Integers exact at both ends. */
  j = writer_begin(&w);
  hersh_json_array(j);
  hersh_json_int(j, INT64_MIN);
  hersh_json_int(j, INT64_MAX);
  hersh_json_uint(j, UINT64_MAX);
  hersh_json_int(j, 0);
  hersh_json_end(j);
  char *s = hersh_json_take(j);
  CHECK_EQ_STR(s, "[-9223372036854775808,9223372036854775807,18446744073709551615,0]");
  CHECK_PY(s, "[-9223372036854775808, 9223372036854775807, 18446744073709551615, 0]");
  free(s);
}

/* hersh_json_value (logs, snapshots): map keys sorted, tags for what JSON lacks. */
TEST(writer_values) {
  hersh_value map = hersh_map(), list = hersh_list(), item;
  const char *keys[] = {"b", "a/", "c"};
  for (int k = 0; k < 3; k++) {
    item = hersh_int(k);
    REQUIRE(hersh_map_set(&map, keys[k], &item) == HERSH_OK);
  }
  double odd[] = {NAN, INFINITY, -INFINITY, 0.5};
  for (int k = 0; k < 4; k++) {
    item = hersh_num(odd[k]);
    REQUIRE(hersh_list_push(&list, &item) == HERSH_OK);
  }
  item = hersh_strn("x\0y\xff", 4);
  REQUIRE(hersh_list_push(&list, &item) == HERSH_OK);
  REQUIRE(hersh_map_set(&map, "list", &list) == HERSH_OK);
  char *s = hersh_value_json(&map);
  CHECK_EQ_STR(s, "{\"a/\":1,\"b\":0,\"c\":2,\"list\":[\"<nan>\",\"<inf>\",\"<-inf>\",0.5,\"x\\u0000y\xef\xbf\xbd\"]}");
  CHECK_PY(s, "('obj', ('a/', 1), ('b', 0), ('c', 2), ('list', ['<nan>', '<inf>', '<-inf>', 0.5, 'x\\x00y\\ufffd']))");
  free(s);
  hersh_value_free(&map);

  /* Bytewise: a prefix first, '/' (0x2f) before letters, UTF-8 after ASCII. */
  map = hersh_map();
  const char *more[] = {"z", "caf\xc3\xa9", "ab", "a", "a/", "B"};
  for (int k = 0; k < 6; k++) {
    item = hersh_bool(true);
    REQUIRE(hersh_map_set(&map, more[k], &item) == HERSH_OK);
  }
  s = hersh_value_json(&map);
  CHECK_EQ_STR(s, "{\"B\":true,\"a\":true,\"a/\":true,\"ab\":true,\"caf\xc3\xa9\":true,\"z\":true}");
  free(s);
  hersh_value_free(&map);
}

/* Runs argv to its end with its output discarded; true if it exited 0. */
static bool run_quiet(char *const argv[]) {
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa) != 0) return false;
  bool ok = false;
  pid_t pid;
  int status;
  if (posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) == 0 &&
      posix_spawn_file_actions_adddup2(&fa, 1, 2) == 0 && posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) == 0)
    ok = waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  posix_spawn_file_actions_destroy(&fa);
  return ok;
}

static char locale_dir[] = "/tmp/hersh-test-locale-XXXXXX";

/* A locale with a decimal comma for LC_NUMERIC (compiled with localedef into a temporary
** LOCPATH: the machine need not have one installed); false, saying why, if none. */
static bool comma_locale(void) {
  if (!mkdtemp(locale_dir)) {
    printf("skipped writer_locale: mkdtemp failed\n");
    return false;
  }
  char out[sizeof locale_dir + 16];
  snprintf(out, sizeof out, "%s/de_DE.UTF-8", locale_dir);
  char *argv[] = {"localedef", "-i", "de_DE", "-f", "UTF-8", out, NULL};
  char text[16];
  if (run_quiet(argv) && setenv("LOCPATH", locale_dir, 1) == 0 && setlocale(LC_NUMERIC, "de_DE.UTF-8") &&
      snprintf(text, sizeof text, "%.1f", 1.5) > 0 && strcmp(text, "1,5") == 0)
    return true;
  printf("skipped writer_locale: no locale with a decimal comma (localedef -i de_DE failed)\n");
  return false;
}

static void comma_locale_done(void) {
  setlocale(LC_NUMERIC, "C");
  unsetenv("LOCPATH");
  char *argv[] = {"rm", "-rf", locale_dir, NULL};
  if (!run_quiet(argv)) printf("could not remove %s\n", locale_dir);
}

/* Under a decimal-comma LC_NUMERIC (Lua's os.setlocale can set one) numbers keep '.'. */
TEST(writer_locale) {
  writer w;
  hersh_json *j = writer_begin(&w);
  hersh_json_array(j);
  hersh_json_number(j, 0.5);
  hersh_json_number(j, -1.25e-7);
  hersh_json_number(j, 5e-324);
  hersh_json_end(j);
  char *s = hersh_json_take(j);
  CHECK_EQ_STR(s, "[0.5,-1.25e-07,5e-324]");
  hersh_value v = hersh_nil();
  REQUIRE(s != NULL);
  REQUIRE(hersh_json_parse(s, strlen(s), &v, NULL, 0) == HERSH_OK);
  CHECK(hersh_list_at(&v, 0)->as.n == 0.5);
  CHECK(hersh_list_at(&v, 1)->as.n == -1.25e-7);
  hersh_value_free(&v);
  free(s);
}

int main(void) {
  RUN(scalars);
  RUN(numbers);
  RUN(strings);
  RUN(containers);
  RUN(depth_limit);
  RUN(invalid_documents);
  RUN(truncated_prefixes);
  RUN(messages);
  RUN(round_trip);
  RUN(writer_nesting);
  RUN(writer_misuse);
  RUN(writer_escapes);
  RUN(writer_invalid_utf8);
  RUN(writer_numbers);
  RUN(writer_values);
  if (comma_locale()) {
    RUN(writer_locale);
    comma_locale_done();
  }
  return check_summary();
}
