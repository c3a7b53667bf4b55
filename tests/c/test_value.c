/* The tagged value type: constructors, lists, maps, deep copy, equality, JSON. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hersh.h"

/* The JSON text of v with whitespace outside strings removed (the layout is free). */
static char *json_compact(const hersh_value *v) {
  char *s = hersh_value_json(v);
  if (s) check_json_squeeze(s);
  return s;
}

#define CHECK_JSON(v, want)                                                               \
  do {                                                                                    \
    char *json_ = json_compact(v);                                                        \
    CHECK(json_ != NULL);                                                                 \
    CHECK_EQ_STR(json_, want);                                                            \
    free(json_);                                                                          \
  } while (0)

/* A list [1, "two", [true]] built with the API. */
static hersh_value sample_list(void) {
  hersh_value list = hersh_list(), item = hersh_int(1), inner = hersh_list();
  hersh_list_push(&list, &item);
  item = hersh_str("two");
  hersh_list_push(&list, &item);
  item = hersh_bool(true);
  hersh_list_push(&inner, &item);
  hersh_list_push(&list, &inner);
  return list;
}

TEST(scalars) {
  hersh_value zero;
  memset(&zero, 0, sizeof zero);
  CHECK_EQ_INT(zero.type, HERSH_T_NIL);
  hersh_value nil = hersh_nil();
  CHECK_EQ_INT(nil.type, HERSH_T_NIL);
  CHECK(hersh_value_equal(&zero, &nil));

  hersh_value b = hersh_bool(true);
  CHECK_EQ_INT(b.type, HERSH_T_BOOL);
  CHECK(b.as.b);

  hersh_value i = hersh_int(INT64_MIN);
  CHECK_EQ_INT(i.type, HERSH_T_INT);
  CHECK(i.as.i == INT64_MIN);

  hersh_value n = hersh_num(1.5);
  CHECK_EQ_INT(n.type, HERSH_T_NUM);
  CHECK(n.as.n == 1.5);

  const char src[] = "hello";
  hersh_value s = hersh_str(src);
  CHECK_EQ_INT(s.type, HERSH_T_STR);
  CHECK_EQ_STR(s.as.s.ptr, "hello");
  CHECK_EQ_INT(s.as.s.len, 5);
  CHECK_EQ_INT(hersh_value_len(&s), 5);
  CHECK(s.as.s.ptr != src); /* copied */

  hersh_value z = hersh_strn("a\0b", 3);
  CHECK_EQ_INT(z.type, HERSH_T_STR);
  CHECK_EQ_INT(z.as.s.len, 3);
  CHECK_EQ_INT(hersh_value_len(&z), 3);
  CHECK(memcmp(z.as.s.ptr, "a\0b", 4) == 0); /* NUL-terminated after len */

  hersh_value e = hersh_str("");
  CHECK_EQ_INT(e.type, HERSH_T_STR);
  CHECK_EQ_INT(hersh_value_len(&e), 0);

  hersh_value_free(&s);
  hersh_value_free(&z);
  hersh_value_free(&e);
  hersh_value_free(&i);
}

TEST(free_leaves_nil) {
  hersh_value s = hersh_str("x");
  hersh_value_free(&s);
  CHECK_EQ_INT(s.type, HERSH_T_NIL);
  hersh_value_free(&s); /* a second free is harmless */
  CHECK_EQ_INT(s.type, HERSH_T_NIL);

  hersh_value l = sample_list();
  hersh_value_free(&l);
  CHECK_EQ_INT(l.type, HERSH_T_NIL);

  hersh_value nil = hersh_nil();
  hersh_value_free(&nil);
  CHECK_EQ_INT(nil.type, HERSH_T_NIL);
}

TEST(list_ops) {
  hersh_value list = hersh_list();
  CHECK_EQ_INT(list.type, HERSH_T_LIST);
  CHECK_EQ_INT(hersh_value_len(&list), 0);

  hersh_value item = hersh_str("a");
  CHECK_EQ_INT(hersh_list_push(&list, &item), HERSH_OK);
  CHECK_EQ_INT(item.type, HERSH_T_NIL); /* ownership taken */
  item = hersh_int(2);
  CHECK_EQ_INT(hersh_list_push(&list, &item), HERSH_OK);
  item = hersh_nil();
  CHECK_EQ_INT(hersh_list_push(&list, &item), HERSH_OK);

  CHECK_EQ_INT(hersh_value_len(&list), 3);
  const hersh_value *a = hersh_list_at(&list, 0);
  REQUIRE(a != NULL);
  CHECK_EQ_STR(a->as.s.ptr, "a");
  const hersh_value *two = hersh_list_at(&list, 1);
  REQUIRE(two != NULL);
  CHECK_EQ_INT(two->type, HERSH_T_INT);
  CHECK_EQ_INT(two->as.i, 2);
  const hersh_value *third = hersh_list_at(&list, 2);
  REQUIRE(third != NULL);
  CHECK_EQ_INT(third->type, HERSH_T_NIL);
  CHECK(hersh_list_at(&list, 3) == NULL);

  /* Pushing onto something that is not a list is the caller's bug. */
  hersh_value not_list = hersh_int(1);
  item = hersh_int(5);
  CHECK_EQ_INT(hersh_list_push(&not_list, &item), HERSH_E_INVAL);
  hersh_value_free(&item);

  /* Many items: the list grows. */
  for (int k = 0; k < 1000; k++) {
    item = hersh_int(k);
    CHECK_EQ_INT(hersh_list_push(&list, &item), HERSH_OK);
  }
  CHECK_EQ_INT(hersh_value_len(&list), 1003);
  const hersh_value *last = hersh_list_at(&list, 1002);
  REQUIRE(last != NULL);
  CHECK_EQ_INT(last->as.i, 999);
  hersh_value_free(&list);
}

TEST(map_ops) {
  hersh_value map = hersh_map();
  CHECK_EQ_INT(map.type, HERSH_T_MAP);
  CHECK_EQ_INT(hersh_value_len(&map), 0);
  CHECK(hersh_map_get(&map, "x") == NULL);

  const char *keys[] = {"zeta", "alpha", "mid"};
  for (int k = 0; k < 3; k++) {
    hersh_value item = hersh_int(k);
    CHECK_EQ_INT(hersh_map_set(&map, keys[k], &item), HERSH_OK);
    CHECK_EQ_INT(item.type, HERSH_T_NIL);
  }
  CHECK_EQ_INT(hersh_value_len(&map), 3);
  for (size_t k = 0; k < 3; k++) { /* insertion order kept */
    CHECK_EQ_STR(hersh_map_key(&map, k), keys[k]);
    const hersh_value *v = hersh_map_value(&map, k);
    REQUIRE(v != NULL);
    CHECK_EQ_INT(v->as.i, (long long)k);
  }
  CHECK(hersh_map_key(&map, 3) == NULL);
  CHECK(hersh_map_value(&map, 3) == NULL);

  /* Setting a key again replaces its value; no new pair. */
  hersh_value item = hersh_str("new");
  CHECK_EQ_INT(hersh_map_set(&map, "alpha", &item), HERSH_OK);
  CHECK_EQ_INT(hersh_value_len(&map), 3);
  const hersh_value *alpha = hersh_map_get(&map, "alpha");
  REQUIRE(alpha != NULL);
  CHECK_EQ_INT(alpha->type, HERSH_T_STR);
  CHECK_EQ_STR(alpha->as.s.ptr, "new");
  CHECK(hersh_map_get(&map, "missing") == NULL);

  /* The key is copied. */
  char key[] = "temp";
  item = hersh_bool(false);
  CHECK_EQ_INT(hersh_map_set(&map, key, &item), HERSH_OK);
  key[0] = 'X';
  CHECK(hersh_map_get(&map, "temp") != NULL);
  CHECK(hersh_map_get(&map, "Xemp") == NULL);

  hersh_value not_map = hersh_list();
  item = hersh_int(1);
  CHECK_EQ_INT(hersh_map_set(&not_map, "k", &item), HERSH_E_INVAL);
  hersh_value_free(&item);
  hersh_value_free(&not_map);
  hersh_value_free(&map);
}

TEST(deep_copy_is_independent) {
  hersh_value orig = hersh_map();
  hersh_value list = sample_list(), s = hersh_str("text");
  hersh_map_set(&orig, "list", &list);
  hersh_map_set(&orig, "s", &s);

  hersh_value copy = hersh_nil();
  CHECK_EQ_INT(hersh_value_copy(&copy, &orig), HERSH_OK);
  CHECK(hersh_value_equal(&copy, &orig));
  CHECK(copy.as.agg != orig.as.agg);
  const hersh_value *cs = hersh_map_get(&copy, "s"), *os = hersh_map_get(&orig, "s");
  REQUIRE(cs != NULL && os != NULL);
  CHECK(cs->as.s.ptr != os->as.s.ptr);
  const hersh_value *cl = hersh_map_get(&copy, "list"), *ol = hersh_map_get(&orig, "list");
  REQUIRE(cl != NULL && ol != NULL);
  CHECK(cl->as.agg != ol->as.agg);

  /* Changing the original leaves the copy alone. */
  hersh_value extra = hersh_int(9);
  hersh_map_set(&orig, "extra", &extra);
  CHECK(!hersh_value_equal(&copy, &orig));
  CHECK_EQ_INT(hersh_value_len(&copy), 2);
  CHECK(hersh_map_get(&copy, "extra") == NULL);

  /* Freeing the original leaves the copy whole (ASan would see a shared block). */
  hersh_value_free(&orig);
  hersh_value expect = hersh_map();
  list = sample_list();
  s = hersh_str("text");
  hersh_map_set(&expect, "list", &list);
  hersh_map_set(&expect, "s", &s);
  CHECK(hersh_value_equal(&copy, &expect));
  CHECK_JSON(&copy, "{\"list\":[1,\"two\",[true]],\"s\":\"text\"}");

  /* Scalars and strings with NULs copy too. */
  hersh_value z = hersh_strn("a\0b", 3), zc = hersh_nil();
  CHECK_EQ_INT(hersh_value_copy(&zc, &z), HERSH_OK);
  CHECK_EQ_INT(zc.as.s.len, 3);
  CHECK(memcmp(zc.as.s.ptr, "a\0b", 3) == 0);
  CHECK(hersh_value_equal(&z, &zc));

  hersh_value_free(&z);
  hersh_value_free(&zc);
  hersh_value_free(&expect);
  hersh_value_free(&copy);
}

TEST(equality) {
  hersh_value a = sample_list(), b = sample_list();
  CHECK(hersh_value_equal(&a, &b));
  hersh_value item = hersh_int(4);
  hersh_list_push(&b, &item);
  CHECK(!hersh_value_equal(&a, &b));
  hersh_value_free(&b);

  hersh_value s1 = hersh_str("x"), s2 = hersh_str("y"), s3 = hersh_str("x");
  CHECK(hersh_value_equal(&s1, &s3));
  CHECK(!hersh_value_equal(&s1, &s2));
  hersh_value n1 = hersh_strn("a\0b", 3), n2 = hersh_strn("a\0c", 3);
  CHECK(!hersh_value_equal(&n1, &n2)); /* compares len bytes, not up to the NUL */

  hersh_value i1 = hersh_int(3), i2 = hersh_int(4), t = hersh_bool(true), f = hersh_bool(false);
  CHECK(!hersh_value_equal(&i1, &i2));
  CHECK(!hersh_value_equal(&t, &f));
  CHECK(!hersh_value_equal(&i1, &s1));
  hersh_value nil = hersh_nil(), empty = hersh_list();
  CHECK(!hersh_value_equal(&nil, &empty));

  hersh_value m1 = hersh_map(), m2 = hersh_map();
  item = hersh_int(1);
  hersh_map_set(&m1, "k", &item);
  item = hersh_int(2);
  hersh_map_set(&m2, "k", &item);
  CHECK(!hersh_value_equal(&m1, &m2));

  hersh_value_free(&a);
  hersh_value_free(&s1);
  hersh_value_free(&s2);
  hersh_value_free(&s3);
  hersh_value_free(&n1);
  hersh_value_free(&n2);
  hersh_value_free(&empty);
  hersh_value_free(&m1);
  hersh_value_free(&m2);
}

TEST(json_scalars) {
  hersh_value v = hersh_nil();
  CHECK_JSON(&v, "null");
  v = hersh_bool(true);
  CHECK_JSON(&v, "true");
  v = hersh_bool(false);
  CHECK_JSON(&v, "false");
  v = hersh_int(42);
  CHECK_JSON(&v, "42");
  v = hersh_int(-7);
  CHECK_JSON(&v, "-7");
  v = hersh_int(INT64_MAX);
  CHECK_JSON(&v, "9223372036854775807");
  v = hersh_int(INT64_MIN);
  CHECK_JSON(&v, "-9223372036854775808");

  v = hersh_num(1.5);
  char *s = hersh_value_json(&v);
  REQUIRE(s != NULL);
  CHECK(strtod(s, NULL) == 1.5);
  free(s);
  v = hersh_num(-0.25);
  s = hersh_value_json(&v);
  REQUIRE(s != NULL);
  CHECK(strtod(s, NULL) == -0.25);
  free(s);
}

TEST(json_not_finite) {
  /* JSON has no NaN or infinity: null or a short quoted tag, never a bare word. */
  double bad[] = {NAN, INFINITY, -INFINITY};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
    hersh_value v = hersh_num(bad[k]);
    char *s = hersh_value_json(&v);
    REQUIRE(s != NULL);
    CHECK(strcmp(s, "null") == 0 || (s[0] == '"' && s[strlen(s) - 1] == '"' && strlen(s) > 2));
    free(s);
  }
  /* ...and inside containers the document stays valid. */
  hersh_value list = hersh_list(), item = hersh_num(NAN);
  hersh_list_push(&list, &item);
  item = hersh_int(1);
  hersh_list_push(&list, &item);
  char *s = json_compact(&list);
  REQUIRE(s != NULL);
  size_t n = strlen(s);
  CHECK(strcmp(s, "[null,1]") == 0 ||
        (n > 7 && s[1] == '"' && s[2] != '"' && strcmp(s + n - 4, "\",1]") == 0));
  free(s);
  hersh_value_free(&list);
}

TEST(json_string_escaping) {
  hersh_value v = hersh_str("a\"b\\c/");
  char *s = json_compact(&v);
  REQUIRE(s != NULL);
  CHECK(strcmp(s, "\"a\\\"b\\\\c/\"") == 0 || strcmp(s, "\"a\\\"b\\\\c\\/\"") == 0);
  free(s);
  hersh_value_free(&v);

  v = hersh_str("line\nnext\ttab");
  CHECK_JSON(&v, "\"line\\nnext\\ttab\"");
  hersh_value_free(&v);

  v = hersh_str("\x01-\x10");
  CHECK_JSON(&v, "\"\\u0001-\\u0010\"");
  hersh_value_free(&v);

  v = hersh_str("\x1f");
  s = hersh_value_json(&v);
  REQUIRE(s != NULL);
  CHECK(strcmp(s, "\"\\u001f\"") == 0 || strcmp(s, "\"\\u001F\"") == 0);
  free(s);
  hersh_value_free(&v);

  /* An embedded NUL is part of the string. */
  v = hersh_strn("a\0b", 3);
  CHECK_JSON(&v, "\"a\\u0000b\"");
  hersh_value_free(&v);

  /* UTF-8 passes through raw or as \u escapes. */
  v = hersh_str("caf\xc3\xa9 \xe2\x82\xac");
  s = hersh_value_json(&v);
  REQUIRE(s != NULL);
  CHECK(strcmp(s, "\"caf\xc3\xa9 \xe2\x82\xac\"") == 0 ||
        strcmp(s, "\"caf\\u00e9 \\u20ac\"") == 0 || strcmp(s, "\"caf\\u00E9 \\u20AC\"") == 0);
  free(s);
  hersh_value_free(&v);

  /* A byte that is not UTF-8 still gives a quoted string. */
  v = hersh_str("x\xffy");
  s = hersh_value_json(&v);
  REQUIRE(s != NULL);
  size_t n = strlen(s);
  CHECK(n >= 4 && s[0] == '"' && s[n - 1] == '"' && s[1] == 'x' && s[n - 2] == 'y');
  free(s);
  hersh_value_free(&v);

  /* Keys are escaped like strings. */
  hersh_value map = hersh_map(), item = hersh_int(1);
  hersh_map_set(&map, "k\"\n", &item);
  CHECK_JSON(&map, "{\"k\\\"\\n\":1}");
  hersh_value_free(&map);
}

TEST(json_containers) {
  hersh_value list = hersh_list(), map = hersh_map();
  CHECK_JSON(&list, "[]");
  CHECK_JSON(&map, "{}");

  hersh_value l = sample_list();
  hersh_value item = hersh_nil();
  hersh_list_push(&l, &item);
  CHECK_JSON(&l, "[1,\"two\",[true],null]");

  const char *keys[] = {"b", "a", "c"};
  for (int k = 0; k < 3; k++) {
    item = hersh_int(k + 1);
    hersh_map_set(&map, keys[k], &item);
  }
  hersh_map_set(&map, "list", &l);
  hersh_map_set(&map, "empty", &list);
  /* Keys sorted bytewise (the map keeps insertion order: b, a, c, list, empty). */
  CHECK_EQ_STR(hersh_map_key(&map, 0), "b");
  CHECK_EQ_STR(hersh_map_key(&map, 4), "empty");
  CHECK_JSON(&map, "{\"a\":2,\"b\":1,\"c\":3,\"empty\":[],\"list\":[1,\"two\",[true],null]}");

  /* Deep nesting still makes a document. */
  hersh_value deep = hersh_list();
  for (int k = 0; k < 50; k++) {
    hersh_value outer = hersh_list();
    hersh_list_push(&outer, &deep);
    deep = outer;
  }
  char *s = json_compact(&deep);
  REQUIRE(s != NULL);
  CHECK_EQ_INT(strlen(s), 102);
  CHECK(s[0] == '[' && s[50] == '[' && s[51] == ']' && s[101] == ']');
  free(s);

  hersh_value_free(&deep);
  hersh_value_free(&map);
}

int main(void) {
  RUN(scalars);
  RUN(free_leaves_nil);
  RUN(list_ops);
  RUN(map_ops);
  RUN(deep_copy_is_independent);
  RUN(equality);
  RUN(json_scalars);
  RUN(json_not_finite);
  RUN(json_string_escaping);
  RUN(json_containers);
  return check_summary();
}
