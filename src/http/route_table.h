/*
** route_table.h -- what the Host's fast paths (proxy_route.c, fixed_route.c) know of the
** programs: each program's id and name -> its port, whether it is Ready, its proxy
** timeouts, and the text of its record once Lua has encoded it; the text of /health;
** the Host header values the Host answers to; and a tally of the requests answered
** (statuses, and the proxy's durations) until the Lua side takes it for GET /metrics.
**
** The Lua side (host.lua) keeps it current at every change of a program; the table is
** only read by the loop thread, which also writes it: no lock.
*/
#ifndef HERSH_HTTP_ROUTE_TABLE_H
#define HERSH_HTTP_ROUTE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hersh_route {
  int port;
  bool ready;
  double timeout, connect_timeout; /* seconds */
  /* Set by the table: the epoch (hersh_upstream_epoch) of the key's last set. Every
  ** change of a program sets it (a restart, the swap of an update in place): the proxy
  ** reuses no connection opened before, which could reach the old process. */
  uint64_t changed;
} hersh_route;

/* The statuses and durations of forwarded requests, buckets as the Lua histogram's; the
** 200s of the fixed routes. */
enum { HERSH_ROUTE_MAX_BUCKETS = 32, HERSH_ROUTE_STATUSES = 1000 };
typedef struct hersh_route_tally {
  uint64_t status[HERSH_ROUTE_STATUSES];
  uint64_t health, record; /* GET /health, GET /programs/{id} */
  double sum;
  uint64_t count;
  uint64_t le[HERSH_ROUTE_MAX_BUCKETS]; /* cumulative: durations <= bound[i] */
} hersh_route_tally;

typedef struct hersh_route_table hersh_route_table;

/* NULL when out of memory. bounds: the histogram's upper bounds, ascending (n <=
** HERSH_ROUTE_MAX_BUCKETS). Reference-counted: one hold for the caller. */
hersh_route_table *hersh_route_table_new(const double *bounds, size_t n);
void hersh_route_table_retain(hersh_route_table *t);
void hersh_route_table_release(hersh_route_table *t);

/* HERSH_E_NOMEM, or HERSH_OK. The key's record text is forgotten, and r->changed is a
** new epoch: something changed. */
int hersh_route_table_set(hersh_route_table *t, const char *key, const hersh_route *r);
/* The JSON answer of GET /programs/{key} (copied), until the next set of key;
** HERSH_E_NOMEM, HERSH_E_INVAL for a key not in the table. */
int hersh_route_table_set_record(hersh_route_table *t, const char *key, const char *text, size_t len);
/* The record text of key (n bytes) and its length, or NULL. Valid until the next change. */
const char *hersh_route_table_record(const hersh_route_table *t, const char *key, size_t n, size_t *len);
/* The answer of GET /health (copied; NULL: unknown until set again); HERSH_E_NOMEM. */
int hersh_route_table_set_health(hersh_route_table *t, const char *text, size_t len);
const char *hersh_route_table_health(const hersh_route_table *t, size_t *len);
void hersh_route_table_remove(hersh_route_table *t, const char *key);
/* The route of key (n bytes), or NULL. Valid until the next set or remove. */
const hersh_route *hersh_route_table_get(const hersh_route_table *t, const char *key, size_t n);

/* The Host header values to answer to (lower-case "name:port"), replacing the last;
** HERSH_E_NOMEM. Until given, no value is allowed. */
int hersh_route_table_set_hosts(hersh_route_table *t, const char *const *names, size_t n);
/* Whether value (compared without case) is one of them. */
bool hersh_route_table_host_allowed(const hersh_route_table *t, const char *value);

/* A forwarded request's status and duration (seconds < 0: none, for one the proxy
** refused at once). */
void hersh_route_table_count(hersh_route_table *t, int status, double seconds);
/* A 200 of GET /health (health true) or of GET /programs/{id}. */
void hersh_route_table_count_fixed(hersh_route_table *t, bool health);
/* The tally since the last take, and a fresh one begins; the bounds and their number. */
void hersh_route_table_take(hersh_route_table *t, hersh_route_tally *out);
const double *hersh_route_table_bounds(const hersh_route_table *t, size_t *n);

#endif
