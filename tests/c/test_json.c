/* The strict JSON parser of the HTTP layer: valid documents, every kind of bad input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hersh.h"
/* Relative, so it builds whether or not the test target has src/ on its include path. */
#include "../../src/http/json.h"

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
      {J("{\"a\":1,\"b\":2,\"a\":3}"), "{\"a\":3,\"b\":2}"}, /* last wins, first place kept */
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
  /* Texts the writer prints back exactly (compact). */
  static const doc same[] = {
      J("{\"content\":\"tick\"}"),
      J("[1,-2,\"two\",[true,false,null],{},[]]"),
      J("{\"b\":1,\"a\":{\"list\":[9223372036854775807,-9223372036854775808]},\"s\":\"x\\ny\\t\\\"q\\\"\\\\\"}"),
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
  return check_summary();
}
