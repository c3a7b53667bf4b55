/*
** store.c -- SQLite through prepared statements: open with the durable settings, a
** cache of compiled statements keyed by their SQL text, binding from hersh_values,
** rows out as hersh_values, transactions.
*/
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "store.h"

struct hersh_store_stmt {
  hersh_store *db;
  sqlite3_stmt *stmt;
  char *sql;         /* the cache key */
  uint64_t last_use; /* for evicting the least recently used idle statement */
  bool busy;         /* handed out: not to be handed out again before hersh_store_done */
};

struct hersh_store {
  sqlite3 *db;
  hersh_store_stmt **stmts; /* every statement, idle or handed out */
  size_t count, cap, idle;
  uint64_t clock;
  uint64_t compiled, reused;
};

const char *hersh_store_errcode(int err) {
  switch (err) {
  case HERSH_STORE_E_CONSTRAINT: return "ECONSTRAINT";
  case HERSH_STORE_E_BUSY: return "EBUSY";
  case HERSH_STORE_E_IO: return "EIO";
  case HERSH_STORE_E_SQL: return "ESQL";
  case HERSH_STORE_E_FULL: return "EFULL";
  default: return hersh_errcode(err);
  }
}

/* Maps an SQLite result code to ours and records sqlite3_errmsg's text (after `what: `
** when what is given). */
static int fail(sqlite3 *db, int rc, const char *what) {
  int err;
  switch (rc & 0xff) { /* the primary code of an extended one */
  case SQLITE_CONSTRAINT: err = HERSH_STORE_E_CONSTRAINT; break;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: err = HERSH_STORE_E_BUSY; break;
  case SQLITE_NOMEM: err = HERSH_E_NOMEM; break;
  case SQLITE_FULL: err = HERSH_STORE_E_FULL; break;
  case SQLITE_IOERR: /* a write the disk refused for want of space is a full disk too */
    err = db && (sqlite3_system_errno(db) == ENOSPC || sqlite3_system_errno(db) == EDQUOT) ? HERSH_STORE_E_FULL
                                                                                              : HERSH_STORE_E_IO;
    break;
  case SQLITE_CANTOPEN:
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_READONLY:
  case SQLITE_PROTOCOL:
  case SQLITE_PERM: err = HERSH_STORE_E_IO; break;
  default: err = HERSH_STORE_E_SQL; break;
  }
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  if (what) return hersh_fail_with(err, "%s: %s", what, msg);
  return hersh_fail_with(err, "%s", msg);
}

static int nomem(const char *what) { return hersh_fail_with(HERSH_E_NOMEM, "out of memory %s", what); }

/* ---- opening ----------------------------------------------------------------------- */

/* Runs one PRAGMA; when `want` is given, its first row must read so (case aside). */
static int pragma(sqlite3 *db, const char *sql, const char *want) {
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, sql);
  int err = HERSH_OK;
  rc = sqlite3_step(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = fail(db, rc, sql);
  } else if (want) {
    const char *got = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    if (!got || strcasecmp(got, want) != 0)
      err = hersh_fail_with(HERSH_STORE_E_IO, "%s: the database reports %s, not %s", sql, got ? got : "nothing", want);
  }
  sqlite3_finalize(stmt); /* repeats the step's error, which err already holds */
  return err;
}

static int configure(sqlite3 *db, const char *path) {
  int rc = sqlite3_extended_result_codes(db, 1);
  if (rc != SQLITE_OK) return fail(db, rc, path);
  rc = sqlite3_busy_timeout(db, HERSH_STORE_BUSY_MS);
  if (rc != SQLITE_OK) return fail(db, rc, path);
  /* An in-memory database has no WAL; it says "memory". */
  const char *journal = strcmp(path, ":memory:") == 0 ? "memory" : "wal";
  int err = pragma(db, "PRAGMA journal_mode=WAL", journal);
  /* FULL syncs the WAL at every commit: what COMMIT acknowledged is on disk. */
  if (!err) err = pragma(db, "PRAGMA synchronous=FULL", NULL);
  if (!err) err = pragma(db, "PRAGMA synchronous", "2");
  if (!err) err = pragma(db, "PRAGMA foreign_keys=ON", NULL);
  if (!err) err = pragma(db, "PRAGMA foreign_keys", "1");
  return err;
}

int hersh_store_open(const char *path, hersh_store **out) {
  if (!out) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_open: no result pointer");
  *out = NULL;
  if (!path) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_open: no path");
  hersh_store *s = calloc(1, sizeof *s);
  if (!s) return nomem("opening a database");
  int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  int err = rc == SQLITE_OK ? configure(s->db, path) : s->db ? fail(s->db, rc, path) : nomem("opening a database");
  if (err) {
    sqlite3_close(s->db); /* the handle exists even when opening failed; NULL is fine */
    free(s);
    return err;
  }
  *out = s;
  return HERSH_OK;
}

int hersh_store_close(hersh_store *s) {
  if (!s) return HERSH_OK;
  for (size_t i = 0; i < s->count; i++) {
    sqlite3_finalize(s->stmts[i]->stmt); /* returns the last step's error, not its own */
    free(s->stmts[i]->sql);
    free(s->stmts[i]);
  }
  free(s->stmts);
  int err = HERSH_OK;
  int rc = sqlite3_close(s->db);
  if (rc != SQLITE_OK) {
    err = fail(s->db, rc, "close");
    sqlite3_close_v2(s->db); /* frees the connection once nothing holds it */
  }
  free(s);
  return err;
}

int hersh_store_exec(hersh_store *s, const char *script) {
  if (!s || !script) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_exec: no database or no script");
  bool was_open = hersh_store_in_transaction(s);
  int rc = sqlite3_exec(s->db, script, NULL, NULL, NULL);
  if (rc == SQLITE_OK) return HERSH_OK;
  int err = fail(s->db, rc, NULL);
  if (!was_open && hersh_store_in_transaction(s)) { /* the script's BEGIN, left open by its failure */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", hersh_errmsg());
    hersh_store_rollback(s);
    hersh_fail_with(err, "%s", msg);
  }
  return err;
}

/* ---- the statement cache ------------------------------------------------------------- */

static hersh_store_stmt *cache_find(hersh_store *s, const char *sql) {
  for (size_t i = 0; i < s->count; i++)
    if (!s->stmts[i]->busy && strcmp(s->stmts[i]->sql, sql) == 0) return s->stmts[i];
  return NULL;
}

/* Finalizes the least recently used idle statements beyond the cache's size. */
static void cache_trim(hersh_store *s) {
  while (s->idle > HERSH_STORE_CACHE) {
    size_t old = s->count;
    for (size_t i = 0; i < s->count; i++)
      if (!s->stmts[i]->busy && (old == s->count || s->stmts[i]->last_use < s->stmts[old]->last_use)) old = i;
    hersh_store_stmt *st = s->stmts[old];
    s->stmts[old] = s->stmts[--s->count];
    s->idle--;
    sqlite3_finalize(st->stmt); /* the statement was reset: nothing to report */
    free(st->sql);
    free(st);
  }
}

/* The text after the first statement must hold no other: a second one would run
** unbound and unseen (the way "...; DROP TABLE" gets in). */
static int check_single(sqlite3 *db, const char *tail) {
  sqlite3_stmt *more = NULL;
  int rc = sqlite3_prepare_v2(db, tail, -1, &more, NULL);
  if (rc == SQLITE_OK && !more) return HERSH_OK; /* only blanks, semicolons, comments */
  sqlite3_finalize(more);
  return hersh_fail_with(HERSH_STORE_E_SQL, "one statement at a time: the text goes on with \"%.60s\"", tail);
}

static int compile(hersh_store *s, const char *sql, hersh_store_stmt **out) {
  if (s->count == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : HERSH_STORE_CACHE;
    hersh_store_stmt **stmts = realloc(s->stmts, cap * sizeof *stmts);
    if (!stmts) return nomem("growing the statement cache");
    s->stmts = stmts;
    s->cap = cap;
  }
  sqlite3_stmt *stmt = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) return fail(s->db, rc, NULL);
  if (!stmt) return hersh_fail_with(HERSH_STORE_E_SQL, "no SQL statement in \"%.60s\"", sql);
  int err = check_single(s->db, tail);
  hersh_store_stmt *st = err ? NULL : calloc(1, sizeof *st);
  char *key = st ? hersh_strdup(sql) : NULL;
  if (!err && !key) err = nomem("caching a statement");
  if (err) {
    free(st);
    sqlite3_finalize(stmt);
    return err;
  }
  *st = (hersh_store_stmt){.db = s, .stmt = stmt, .sql = key};
  s->stmts[s->count++] = st;
  s->idle++; /* hersh_store_prepare takes it at once */
  s->compiled++;
  *out = st;
  return HERSH_OK;
}

static int bind_one(hersh_store_stmt *st, int i, const hersh_value *v) {
  sqlite3_stmt *stmt = st->stmt;
  int rc;
  switch (v->type) {
  case HERSH_T_NIL: rc = sqlite3_bind_null(stmt, i); break;
  case HERSH_T_BOOL: rc = sqlite3_bind_int(stmt, i, v->as.b ? 1 : 0); break;
  case HERSH_T_INT: rc = sqlite3_bind_int64(stmt, i, v->as.i); break;
  case HERSH_T_NUM: rc = sqlite3_bind_double(stmt, i, v->as.n); break;
  case HERSH_T_STR:
    rc = sqlite3_bind_text64(stmt, i, v->as.s.ptr ? v->as.s.ptr : "", v->as.s.len, SQLITE_TRANSIENT, SQLITE_UTF8);
    break;
  default: return hersh_fail_with(HERSH_E_INVAL, "parameter %d: only nil, booleans, numbers and strings bind", i);
  }
  return rc == SQLITE_OK ? HERSH_OK : fail(st->db->db, rc, NULL);
}

int hersh_store_prepare(hersh_store *s, const char *sql, const hersh_value *params, size_t n,
                        hersh_store_stmt **out) {
  if (!out) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_prepare: no result pointer");
  *out = NULL;
  if (!s || !sql || (n && !params)) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_prepare: no database, SQL or parameters");
  hersh_store_stmt *st = cache_find(s, sql);
  if (st) {
    s->reused++;
  } else {
    int err = compile(s, sql, &st);
    if (err) return err;
  }
  st->busy = true;
  s->idle--;
  st->last_use = ++s->clock;
  int want = sqlite3_bind_parameter_count(st->stmt);
  int err = (size_t)want == n ? HERSH_OK
                              : hersh_fail_with(HERSH_E_INVAL, "the statement takes %d parameters, %zu given", want, n);
  for (size_t i = 0; !err && i < n; i++) err = bind_one(st, (int)i + 1, &params[i]);
  if (err) {
    hersh_store_done(st);
    return err;
  }
  *out = st;
  return HERSH_OK;
}

int hersh_store_step(hersh_store_stmt *st) {
  int rc = sqlite3_step(st->stmt);
  if (rc == SQLITE_ROW) return HERSH_STORE_ROW;
  if (rc == SQLITE_DONE) return HERSH_OK;
  return fail(st->db->db, rc, NULL);
}

int hersh_store_columns(const hersh_store_stmt *st) { return sqlite3_column_count(st->stmt); }

const char *hersh_store_column_name(hersh_store_stmt *st, int i) { return sqlite3_column_name(st->stmt, i); }

int hersh_store_column_view(hersh_store_stmt *st, int i, hersh_value *out) {
  *out = hersh_nil();
  if (i < 0 || i >= sqlite3_column_count(st->stmt))
    return hersh_fail_with(HERSH_E_INVAL, "no column %d in this statement", i);
  switch (sqlite3_column_type(st->stmt, i)) {
  case SQLITE_NULL: return HERSH_OK;
  case SQLITE_INTEGER: *out = hersh_int(sqlite3_column_int64(st->stmt, i)); return HERSH_OK;
  case SQLITE_FLOAT: *out = hersh_num(sqlite3_column_double(st->stmt, i)); return HERSH_OK;
  default: break; /* TEXT and BLOB: the bytes, NUL-terminated by column_text */
  }
  const char *p = (const char *)sqlite3_column_text(st->stmt, i);
  size_t len = (size_t)sqlite3_column_bytes(st->stmt, i);
  if (!p) {
    if (sqlite3_errcode(st->db->db) == SQLITE_NOMEM) return nomem("reading a column");
    p = ""; /* an empty BLOB */
    len = 0;
  }
  out->type = HERSH_T_STR;
  out->as.s.ptr = (char *)p;
  out->as.s.len = len;
  return HERSH_OK;
}

int hersh_store_column(hersh_store_stmt *st, int i, hersh_value *out) {
  int err = hersh_store_column_view(st, i, out);
  if (err || out->type != HERSH_T_STR) return err;
  *out = hersh_strn(out->as.s.ptr, out->as.s.len);
  return out->type == HERSH_T_STR ? HERSH_OK : HERSH_E_NOMEM;
}

void hersh_store_done(hersh_store_stmt *st) {
  if (!st || !st->busy) return;
  hersh_store *s = st->db;
  sqlite3_reset(st->stmt); /* repeats the last step's error, which its caller has had */
  sqlite3_clear_bindings(st->stmt); /* always SQLITE_OK */
  st->busy = false;
  s->idle++;
  cache_trim(s);
}

/* ---- one call each ------------------------------------------------------------------ */

int hersh_store_run(hersh_store *s, const char *sql, const hersh_value *params, size_t n, int64_t *changes,
                    int64_t *rowid) {
  hersh_store_stmt *st;
  int err = hersh_store_prepare(s, sql, params, n, &st);
  if (err) return err;
  while ((err = hersh_store_step(st)) == HERSH_STORE_ROW) continue; /* RETURNING rows: run to the end */
  if (!err && changes) *changes = sqlite3_changes64(s->db);
  if (!err && rowid) *rowid = sqlite3_last_insert_rowid(s->db);
  hersh_store_done(st);
  return err;
}

static int row_value(hersh_store_stmt *st, hersh_value *row) {
  *row = hersh_map();
  if (row->type != HERSH_T_MAP) return HERSH_E_NOMEM;
  int n = hersh_store_columns(st);
  for (int i = 0; i < n; i++) {
    const char *name = hersh_store_column_name(st, i);
    hersh_value v = hersh_nil();
    int err = name ? hersh_store_column(st, i, &v) : nomem("naming a column");
    if (!err && v.type != HERSH_T_NIL) err = hersh_map_set(row, name, &v);
    if (err) {
      hersh_value_free(&v);
      hersh_value_free(row);
      return err;
    }
  }
  return HERSH_OK;
}

int hersh_store_query(hersh_store *s, const char *sql, const hersh_value *params, size_t n, hersh_value *rows) {
  if (!rows) return hersh_fail_with(HERSH_E_INVAL, "hersh_store_query: no result pointer");
  *rows = hersh_nil();
  hersh_store_stmt *st;
  int err = hersh_store_prepare(s, sql, params, n, &st);
  if (err) return err;
  hersh_value list = hersh_list();
  err = list.type == HERSH_T_LIST ? HERSH_OK : HERSH_E_NOMEM;
  while (!err && (err = hersh_store_step(st)) == HERSH_STORE_ROW) {
    hersh_value row;
    err = row_value(st, &row);
    if (!err) err = hersh_list_push(&list, &row);
    hersh_value_free(&row);
  }
  hersh_store_done(st);
  if (err) {
    hersh_value_free(&list);
    return err;
  }
  *rows = list;
  return HERSH_OK;
}

/* ---- transactions ---------------------------------------------------------------- */

int hersh_store_begin(hersh_store *s) { return hersh_store_run(s, "BEGIN IMMEDIATE", NULL, 0, NULL, NULL); }

int hersh_store_commit(hersh_store *s) {
  int err = hersh_store_run(s, "COMMIT", NULL, 0, NULL, NULL);
  if (err && hersh_store_in_transaction(s)) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", hersh_errmsg());
    hersh_store_rollback(s);
    hersh_fail_with(err, "%s (rolled back)", msg);
  }
  return err;
}

/* Some failures (a full disk, an I/O error) roll back on their own: then nothing is left
** to roll back, and that is not an error. */
int hersh_store_rollback(hersh_store *s) {
  if (!hersh_store_in_transaction(s)) return HERSH_OK;
  return hersh_store_run(s, "ROLLBACK", NULL, 0, NULL, NULL);
}

bool hersh_store_in_transaction(hersh_store *s) { return s && s->db && !sqlite3_get_autocommit(s->db); }

void hersh_store_stats(const hersh_store *s, uint64_t *compiled, uint64_t *reused) {
  if (compiled) *compiled = s->compiled;
  if (reused) *reused = s->reused;
}
