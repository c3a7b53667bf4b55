/*
** route_table.c -- the fast paths' table: a chained hash of keys (program ids and
** names) to routes and record texts, the text of /health, the allowed Host header
** values, and the tally of what went through.
*/
#include "http/route_table.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "hersh.h"
#include "http/upstream.h"

typedef struct entry {
  struct entry *next;
  hersh_route route;
  char *record; /* GET /programs/{key}'s answer, or NULL */
  size_t record_len;
  size_t len;
  char key[]; /* NUL-terminated */
} entry;

struct hersh_route_table {
  unsigned refs;
  entry **slots;
  size_t nslots, count;
  char **hosts;
  size_t nhosts;
  char *health;
  size_t health_len;
  double bounds[HERSH_ROUTE_MAX_BUCKETS];
  size_t nbounds;
  hersh_route_tally tally;
};

enum { FIRST_SLOTS = 64 };

static size_t hash(const char *s, size_t n) { /* FNV-1a */
  size_t h = (size_t)14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * (size_t)1099511628211ULL;
  return h;
}

hersh_route_table *hersh_route_table_new(const double *bounds, size_t n) {
  if (n > HERSH_ROUTE_MAX_BUCKETS) n = HERSH_ROUTE_MAX_BUCKETS;
  hersh_route_table *t = calloc(1, sizeof *t);
  entry **slots = calloc(FIRST_SLOTS, sizeof *slots);
  if (!t || !slots) {
    free(t);
    free(slots);
    return NULL;
  }
  t->refs = 1;
  t->slots = slots;
  t->nslots = FIRST_SLOTS;
  if (n) memcpy(t->bounds, bounds, n * sizeof *bounds);
  t->nbounds = n;
  return t;
}

void hersh_route_table_retain(hersh_route_table *t) { t->refs++; }

static void free_hosts(hersh_route_table *t) {
  for (size_t i = 0; i < t->nhosts; i++) free(t->hosts[i]);
  free(t->hosts);
  t->hosts = NULL;
  t->nhosts = 0;
}

void hersh_route_table_release(hersh_route_table *t) {
  if (!t || --t->refs > 0) return;
  for (size_t i = 0; i < t->nslots; i++) {
    for (entry *e = t->slots[i], *next; e; e = next) {
      next = e->next;
      free(e->record);
      free(e);
    }
  }
  free(t->slots);
  free_hosts(t);
  free(t->health);
  free(t);
}

static entry **find(const hersh_route_table *t, const char *key, size_t n) {
  entry **at = &t->slots[hash(key, n) & (t->nslots - 1)];
  while (*at && ((*at)->len != n || memcmp((*at)->key, key, n) != 0)) at = &(*at)->next;
  return at;
}

/* Doubles the slots at a load of 1; staying as it is when out of memory is only slower. */
static void grow(hersh_route_table *t) {
  if (t->count < t->nslots) return;
  size_t n = t->nslots * 2;
  entry **slots = calloc(n, sizeof *slots);
  if (!slots) return;
  for (size_t i = 0; i < t->nslots; i++) {
    for (entry *e = t->slots[i], *next; e; e = next) {
      next = e->next;
      entry **head = &slots[hash(e->key, e->len) & (n - 1)];
      e->next = *head;
      *head = e;
    }
  }
  free(t->slots);
  t->slots = slots;
  t->nslots = n;
}

int hersh_route_table_set(hersh_route_table *t, const char *key, const hersh_route *r) {
  size_t n = strlen(key);
  entry **at = find(t, key, n);
  hersh_route route = *r;
  route.changed = hersh_upstream_epoch();
  if (*at) {
    (*at)->route = route;
    free((*at)->record);
    (*at)->record = NULL;
    return HERSH_OK;
  }
  entry *e = malloc(sizeof *e + n + 1);
  if (!e) return hersh_fail_with(HERSH_E_NOMEM, "out of memory in the proxy's route table");
  e->next = NULL;
  e->route = route;
  e->record = NULL;
  e->record_len = 0;
  e->len = n;
  memcpy(e->key, key, n + 1);
  *at = e;
  t->count++;
  grow(t);
  return HERSH_OK;
}

void hersh_route_table_remove(hersh_route_table *t, const char *key) {
  entry **at = find(t, key, strlen(key));
  entry *e = *at;
  if (!e) return;
  *at = e->next;
  free(e->record);
  free(e);
  t->count--;
}

/* A copy of the n bytes of text, NUL-terminated; NULL when out of memory. */
static char *copy(const char *text, size_t n) {
  char *c = malloc(n + 1);
  if (!c) return NULL;
  memcpy(c, text, n);
  c[n] = '\0';
  return c;
}

int hersh_route_table_set_record(hersh_route_table *t, const char *key, const char *text, size_t len) {
  entry *e = *find(t, key, strlen(key));
  if (!e) return hersh_fail_with(HERSH_E_INVAL, "no route for %s", key);
  char *c = copy(text, len);
  if (!c) return hersh_fail_with(HERSH_E_NOMEM, "out of memory in the proxy's route table");
  free(e->record);
  e->record = c;
  e->record_len = len;
  return HERSH_OK;
}

const char *hersh_route_table_record(const hersh_route_table *t, const char *key, size_t n, size_t *len) {
  entry *e = *find(t, key, n);
  if (!e || !e->record) return NULL;
  *len = e->record_len;
  return e->record;
}

int hersh_route_table_set_health(hersh_route_table *t, const char *text, size_t len) {
  char *c = text ? copy(text, len) : NULL;
  if (text && !c) return hersh_fail_with(HERSH_E_NOMEM, "out of memory in the proxy's route table");
  free(t->health);
  t->health = c;
  t->health_len = len;
  return HERSH_OK;
}

const char *hersh_route_table_health(const hersh_route_table *t, size_t *len) {
  *len = t->health_len;
  return t->health;
}

const hersh_route *hersh_route_table_get(const hersh_route_table *t, const char *key, size_t n) {
  entry *e = *find(t, key, n);
  return e ? &e->route : NULL;
}

int hersh_route_table_set_hosts(hersh_route_table *t, const char *const *names, size_t n) {
  char **hosts = calloc(n ? n : 1, sizeof *hosts);
  for (size_t i = 0; hosts && i < n; i++) {
    hosts[i] = hersh_strdup(names[i]);
    if (!hosts[i]) {
      while (i > 0) free(hosts[--i]);
      free(hosts);
      hosts = NULL;
    }
  }
  if (!hosts) return hersh_fail_with(HERSH_E_NOMEM, "out of memory in the proxy's route table");
  free_hosts(t);
  t->hosts = hosts;
  t->nhosts = n;
  return HERSH_OK;
}

bool hersh_route_table_host_allowed(const hersh_route_table *t, const char *value) {
  for (size_t i = 0; i < t->nhosts; i++)
    if (strcasecmp(t->hosts[i], value) == 0) return true;
  return false;
}

void hersh_route_table_count(hersh_route_table *t, int status, double seconds) {
  hersh_route_tally *y = &t->tally;
  if (status >= 0 && status < HERSH_ROUTE_STATUSES) y->status[status]++;
  if (seconds < 0) return;
  y->sum += seconds;
  y->count++;
  for (size_t i = 0; i < t->nbounds; i++)
    if (seconds <= t->bounds[i]) y->le[i]++;
}

void hersh_route_table_count_fixed(hersh_route_table *t, bool health) {
  if (health) t->tally.health++;
  else t->tally.record++;
}

void hersh_route_table_take(hersh_route_table *t, hersh_route_tally *out) {
  *out = t->tally;
  memset(&t->tally, 0, sizeof t->tally);
}

const double *hersh_route_table_bounds(const hersh_route_table *t, size_t *n) {
  *n = t->nbounds;
  return t->bounds;
}
