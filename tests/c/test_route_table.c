/*
** The fast paths' route table (src/http/route_table.c): ids and names to routes through
** growth and removal, a set forgetting the record text and stamping a new epoch, the
** Host names compared without case, and the tally taken once. The paths themselves are proved end to end by
** spec/proxy_fast_spec.lua.
*/
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "hersh.h"
#include "http/route_table.h"
#include "http/upstream.h"

static const double BOUNDS[] = {0.001, 0.01, 0.1};

TEST(keys_through_growth_and_removal) {
  hersh_route_table *t = hersh_route_table_new(BOUNDS, 3);
  REQUIRE(t);
  char key[32];
  for (int i = 0; i < 5000; i++) { /* well past the first slots: grows several times */
    snprintf(key, sizeof key, "prog-%d", i);
    hersh_route r = {.port = 20000 + i, .ready = i % 2 == 0, .timeout = 30, .connect_timeout = 10};
    CHECK_EQ_INT(hersh_route_table_set(t, key, &r), HERSH_OK);
  }
  for (int i = 0; i < 5000; i += 2) {
    snprintf(key, sizeof key, "prog-%d", i);
    hersh_route_table_remove(t, key);
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "prog-%d", i);
    const hersh_route *r = hersh_route_table_get(t, key, strlen(key));
    if (i % 2 == 0) {
      CHECK(r == NULL);
    } else {
      REQUIRE(r);
      CHECK_EQ_INT(r->port, 20000 + i);
      CHECK(!r->ready);
    }
  }
  /* a prefix or a longer key is another key */
  CHECK(hersh_route_table_get(t, "prog-1", 5) == NULL);
  CHECK(hersh_route_table_get(t, "prog-1x", 7) == NULL);
  hersh_route_table_remove(t, "never-there");
  hersh_route_table_release(t);
}

TEST(a_set_forgets_the_record) {
  hersh_route_table *t = hersh_route_table_new(NULL, 0);
  REQUIRE(t);
  hersh_route r = {.port = 20001, .ready = true, .timeout = 1, .connect_timeout = 1};
  CHECK_EQ_INT(hersh_route_table_set_record(t, "a", "{}\n", 3), HERSH_E_INVAL); /* no route yet */
  CHECK_EQ_INT(hersh_route_table_set(t, "a", &r), HERSH_OK);
  CHECK_EQ_INT(hersh_route_table_set_record(t, "a", "{\"state\":\"Ready\"}\n", 18), HERSH_OK);
  size_t len = 0;
  const char *text = hersh_route_table_record(t, "a", 1, &len);
  REQUIRE(text);
  CHECK_EQ_INT((int)len, 18);
  CHECK_EQ_STR(text, "{\"state\":\"Ready\"}\n");
  r.ready = false;
  CHECK_EQ_INT(hersh_route_table_set(t, "a", &r), HERSH_OK); /* a change: the text is stale */
  CHECK(hersh_route_table_record(t, "a", 1, &len) == NULL);
  CHECK_EQ_INT(hersh_route_table_set_health(t, "{\"programs\":1}\n", 15), HERSH_OK);
  CHECK_EQ_STR(hersh_route_table_health(t, &len), "{\"programs\":1}\n");
  CHECK_EQ_INT(hersh_route_table_set_health(t, NULL, 0), HERSH_OK);
  CHECK(hersh_route_table_health(t, &len) == NULL);
  CHECK_EQ_INT(hersh_route_table_set_record(t, "a", "x", 1), HERSH_OK); /* freed at release */
  hersh_route_table_release(t);
}

/* Each set (a restart, an update's swap: any change) is a new epoch, after every
** connection the proxy opened before it: none of those is reused for the route. */
TEST(a_set_stamps_a_new_epoch) {
  hersh_route_table *t = hersh_route_table_new(BOUNDS, 3);
  REQUIRE(t);
  hersh_route r = {.port = 20000, .ready = true, .timeout = 30, .connect_timeout = 10, .changed = 0};
  CHECK_EQ_INT(hersh_route_table_set(t, "p", &r), HERSH_OK);
  const hersh_route *got = hersh_route_table_get(t, "p", 1);
  REQUIRE(got);
  uint64_t first = got->changed;
  uint64_t opened = hersh_upstream_epoch(); /* a connection opened meanwhile */
  CHECK(first > 0 && first < opened);
  CHECK_EQ_INT(hersh_route_table_set(t, "p", &r), HERSH_OK); /* the same route again */
  got = hersh_route_table_get(t, "p", 1);
  REQUIRE(got);
  CHECK(got->changed > opened);
  hersh_route_table_release(t);
}

TEST(host_names_without_case) {
  hersh_route_table *t = hersh_route_table_new(NULL, 0);
  REQUIRE(t);
  CHECK(!hersh_route_table_host_allowed(t, "127.0.0.1:9000")); /* none until given */
  const char *names[] = {"127.0.0.1:9000", "localhost:9000"};
  CHECK_EQ_INT(hersh_route_table_set_hosts(t, names, 2), HERSH_OK);
  CHECK(hersh_route_table_host_allowed(t, "LocalHost:9000"));
  CHECK(!hersh_route_table_host_allowed(t, "localhost:90001"));
  CHECK(!hersh_route_table_host_allowed(t, "localhost"));
  CHECK(!hersh_route_table_host_allowed(t, ""));
  CHECK_EQ_INT(hersh_route_table_set_hosts(t, names, 1), HERSH_OK); /* replaced */
  CHECK(!hersh_route_table_host_allowed(t, "localhost:9000"));
  hersh_route_table_release(t);
}

TEST(the_tally_is_taken_once) {
  hersh_route_table *t = hersh_route_table_new(BOUNDS, 3);
  REQUIRE(t);
  hersh_route_table_retain(t); /* an exchange in flight holds it */
  hersh_route_table_count(t, 200, 0.005);
  hersh_route_table_count(t, 200, 0.5);
  hersh_route_table_count(t, 502, -1); /* refused at once: no duration */
  hersh_route_table_count(t, 1000, 0.0001); /* no such status: only its duration */
  hersh_route_table_count_fixed(t, true);
  hersh_route_table_count_fixed(t, false);
  hersh_route_table_count_fixed(t, false);
  hersh_route_tally y;
  hersh_route_table_take(t, &y);
  CHECK_EQ_INT((int)y.status[200], 2);
  CHECK_EQ_INT((int)y.status[502], 1);
  CHECK_EQ_INT((int)y.count, 3);
  CHECK_EQ_INT((int)y.le[0], 1); /* <= 0.001 */
  CHECK_EQ_INT((int)y.le[1], 2); /* <= 0.01 */
  CHECK_EQ_INT((int)y.le[2], 2); /* <= 0.1 */
  CHECK_EQ_INT((int)y.health, 1);
  CHECK_EQ_INT((int)y.record, 2);
  hersh_route_table_take(t, &y);
  CHECK_EQ_INT((int)y.count, 0);
  CHECK_EQ_INT((int)y.status[200], 0);
  hersh_route_table_release(t);
  hersh_route_table_release(t);
}

int main(void) {
  RUN(keys_through_growth_and_removal);
  RUN(a_set_forgets_the_record);
  RUN(a_set_stamps_a_new_epoch);
  RUN(host_names_without_case);
  RUN(the_tally_is_taken_once);
  return check_summary();
}
