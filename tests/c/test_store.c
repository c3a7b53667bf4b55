/*
** The SQLite store (src/store): opening with WAL and durable commits, schema scripts,
** binding and reading back every value type, error codes, the statement cache,
** transactions, and committed rows surviving a child that exits or is killed without
** closing its database.
*/
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "hersh.h"
/* Relative, so it builds whether or not the test target has src/ on its include path. */
#include "../../src/store/store.h"

static char dir[64];

/* A path in the test's temporary directory (one static buffer per slot). */
static const char *path_of(const char *name) {
  static char buf[4][128];
  static int slot;
  char *p = buf[slot++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static void remove_db(const char *name) {
  char p[160];
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
    snprintf(p, sizeof p, "%s/%s%s", dir, name, suffix[i]);
    unlink(p);
  }
}

static bool file_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* Opens name afresh (any old file removed) with a table t. */
static hersh_store *fresh(const char *name) {
  remove_db(name);
  hersh_store *db = NULL;
  if (hersh_store_open(path_of(name), &db) != HERSH_OK) {
    printf("open %s: %s\n", name, hersh_errmsg());
    return NULL;
  }
  if (hersh_store_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, v);") != HERSH_OK) {
    printf("schema: %s\n", hersh_errmsg());
    hersh_store_close(db);
    return NULL;
  }
  return db;
}

/* The single value of a one-row, one-column query (caller frees), nil on failure. */
static hersh_value scalar(hersh_store *db, const char *sql) {
  hersh_store_stmt *st;
  hersh_value v = hersh_nil();
  if (hersh_store_prepare(db, sql, NULL, 0, &st) != HERSH_OK) return v;
  if (hersh_store_step(st) == HERSH_STORE_ROW) hersh_store_column(st, 0, &v);
  hersh_store_done(st);
  return v;
}

static int64_t count_rows(hersh_store *db, const char *sql) {
  hersh_value v = scalar(db, sql);
  return v.type == HERSH_T_INT ? v.as.i : -1;
}

/* ---- opening --------------------------------------------------------------------- */

TEST(open_close) {
  hersh_store *db = fresh("open.db");
  REQUIRE(db);
  CHECK(file_exists(path_of("open.db")));
  CHECK_EQ_INT(hersh_store_close(db), HERSH_OK);
  CHECK_EQ_INT(hersh_store_close(NULL), HERSH_OK);

  hersh_store *bad = NULL;
  int err = hersh_store_open(path_of("no/such/dir/x.db"), &bad);
  CHECK_EQ_INT(err, HERSH_STORE_E_IO);
  CHECK_EQ_STR(hersh_store_errcode(err), "EIO");
  CHECK(strstr(hersh_errmsg(), "unable to open") != NULL);
  CHECK(bad == NULL);

  /* Not a database: refused at open, with the file untouched. */
  FILE *f = fopen(path_of("junk.db"), "w");
  REQUIRE(f);
  fputs("this is not a database file, not even close to one; long enough to have a header", f);
  fclose(f);
  err = hersh_store_open(path_of("junk.db"), &bad);
  CHECK_EQ_STR(hersh_store_errcode(err), "EIO");
  CHECK(bad == NULL);
  remove_db("junk.db");
  remove_db("open.db");
}

TEST(wal_and_durability_settings) {
  hersh_store *db = fresh("wal.db");
  REQUIRE(db);
  hersh_value v = scalar(db, "PRAGMA journal_mode");
  CHECK(v.type == HERSH_T_STR && strcmp(v.as.s.ptr, "wal") == 0);
  hersh_value_free(&v);
  CHECK_EQ_INT(count_rows(db, "PRAGMA synchronous"), 2); /* FULL */
  CHECK_EQ_INT(count_rows(db, "PRAGMA foreign_keys"), 1);
  CHECK(count_rows(db, "PRAGMA busy_timeout") > 0);
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (name) VALUES ('x')", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK(file_exists(path_of("wal.db-wal")));
  hersh_store_close(db);
  remove_db("wal.db");
}

TEST(schema_scripts) {
  hersh_store *db = fresh("schema.db");
  REQUIRE(db);
  const char *schema = "CREATE TABLE IF NOT EXISTS a (id INTEGER PRIMARY KEY);\n"
                       "CREATE INDEX IF NOT EXISTS a_id ON a (id); -- a comment\n";
  CHECK_EQ_INT(hersh_store_exec(db, schema), HERSH_OK);
  CHECK_EQ_INT(hersh_store_exec(db, schema), HERSH_OK); /* idempotent */
  int err = hersh_store_exec(db, "CREATE TABLEE oops (x);");
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");
  CHECK(strstr(hersh_errmsg(), "syntax error") != NULL);
  /* A script whose BEGIN is followed by a failure leaves no transaction open. */
  err = hersh_store_exec(db, "BEGIN; CREATE TABLE b (x); INSERT INTO nowhere VALUES (1); COMMIT;");
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");
  CHECK(strstr(hersh_errmsg(), "no such table") != NULL);
  CHECK(!hersh_store_in_transaction(db));
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'b'"), 0);
  hersh_store_close(db);
  remove_db("schema.db");
}

/* ---- values ---------------------------------------------------------------------- */

TEST(round_trip_every_type) {
  hersh_store *db = fresh("types.db");
  REQUIRE(db);
  REQUIRE(hersh_store_exec(db, "CREATE TABLE v (i INTEGER, n REAL, s TEXT, b INTEGER, z, big INTEGER, small INTEGER);") ==
          HERSH_OK);
  static const char text[] = "h\xc3\xa9llo\0wor'ld\"; DROP TABLE v; --";
  hersh_value params[] = {hersh_int(42),
                          hersh_num(3.25),
                          {.type = HERSH_T_STR, .as.s = {(char *)text, sizeof text - 1}},
                          hersh_bool(true),
                          hersh_nil(),
                          hersh_int(INT64_MAX),
                          hersh_int(INT64_MIN)};
  int64_t changes = 0, rowid = 0;
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)", params, 7, &changes, &rowid), HERSH_OK);
  CHECK_EQ_INT(changes, 1);
  CHECK_EQ_INT(rowid, 1);
  hersh_value f = hersh_bool(false), e = hersh_str("");
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO v (b, s) VALUES (?, ?)", (hersh_value[]){f, e}, 2, NULL, &rowid),
               HERSH_OK);
  CHECK_EQ_INT(rowid, 2);
  hersh_value_free(&e);

  hersh_value rows;
  REQUIRE(hersh_store_query(db, "SELECT * FROM v ORDER BY rowid", NULL, 0, &rows) == HERSH_OK);
  REQUIRE(rows.type == HERSH_T_LIST && hersh_value_len(&rows) == 2);
  const hersh_value *r = hersh_list_at(&rows, 0);
  const hersh_value *x = hersh_map_get(r, "i");
  CHECK(x && x->type == HERSH_T_INT && x->as.i == 42);
  x = hersh_map_get(r, "n");
  CHECK(x && x->type == HERSH_T_NUM && x->as.n == 3.25);
  x = hersh_map_get(r, "s");
  CHECK(x && x->type == HERSH_T_STR && x->as.s.len == sizeof text - 1 && memcmp(x->as.s.ptr, text, sizeof text - 1) == 0);
  x = hersh_map_get(r, "b");
  CHECK(x && x->type == HERSH_T_INT && x->as.i == 1);
  CHECK(hersh_map_get(r, "z") == NULL); /* NULL columns are left out */
  x = hersh_map_get(r, "big");
  CHECK(x && x->type == HERSH_T_INT && x->as.i == INT64_MAX);
  x = hersh_map_get(r, "small");
  CHECK(x && x->type == HERSH_T_INT && x->as.i == INT64_MIN);
  r = hersh_list_at(&rows, 1);
  x = hersh_map_get(r, "b");
  CHECK(x && x->type == HERSH_T_INT && x->as.i == 0);
  x = hersh_map_get(r, "s");
  CHECK(x && x->type == HERSH_T_STR && x->as.s.len == 0);
  hersh_value_free(&rows);

  /* The same through the statement, column by column, with a bound parameter. */
  hersh_store_stmt *st;
  hersh_value key = hersh_int(42);
  REQUIRE(hersh_store_prepare(db, "SELECT i, n, s, z, x'00ff' AS blob FROM v WHERE i = ?", &key, 1, &st) == HERSH_OK);
  CHECK_EQ_INT(hersh_store_columns(st), 5);
  CHECK_EQ_STR(hersh_store_column_name(st, 4), "blob");
  REQUIRE(hersh_store_step(st) == HERSH_STORE_ROW);
  hersh_value v;
  CHECK_EQ_INT(hersh_store_column_view(st, 3, &v), HERSH_OK);
  CHECK(v.type == HERSH_T_NIL);
  CHECK_EQ_INT(hersh_store_column_view(st, 4, &v), HERSH_OK);
  CHECK(v.type == HERSH_T_STR && v.as.s.len == 2 && (unsigned char)v.as.s.ptr[1] == 0xff);
  CHECK_EQ_INT(hersh_store_column_view(st, 5, &v), HERSH_E_INVAL);
  CHECK_EQ_INT(hersh_store_step(st), HERSH_OK);
  hersh_store_done(st);
  hersh_store_close(db);
  remove_db("types.db");
}

/* ---- errors ------------------------------------------------------------------------ */

TEST(constraint_violations) {
  hersh_store *db = fresh("constraint.db");
  REQUIRE(db);
  REQUIRE(hersh_store_exec(db, "CREATE TABLE child (id INTEGER PRIMARY KEY, t_id INTEGER NOT NULL REFERENCES t(id));") ==
          HERSH_OK);
  hersh_value name = hersh_str("dup");
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (name) VALUES (?)", &name, 1, NULL, NULL), HERSH_OK);
  int err = hersh_store_run(db, "INSERT INTO t (name) VALUES (?)", &name, 1, NULL, NULL);
  CHECK_EQ_INT(err, HERSH_STORE_E_CONSTRAINT);
  CHECK_EQ_STR(hersh_store_errcode(err), "ECONSTRAINT");
  CHECK_EQ_STR(hersh_errmsg(), "UNIQUE constraint failed: t.name");
  hersh_value_free(&name);

  hersh_value none = hersh_nil(), missing = hersh_int(999);
  err = hersh_store_run(db, "INSERT INTO child (t_id) VALUES (?)", &none, 1, NULL, NULL);
  CHECK_EQ_STR(hersh_store_errcode(err), "ECONSTRAINT");
  CHECK(strstr(hersh_errmsg(), "NOT NULL") != NULL);
  err = hersh_store_run(db, "INSERT INTO child (t_id) VALUES (?)", &missing, 1, NULL, NULL);
  CHECK_EQ_STR(hersh_store_errcode(err), "ECONSTRAINT");
  CHECK(strstr(hersh_errmsg(), "FOREIGN KEY") != NULL);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 1);
  hersh_store_close(db);
  remove_db("constraint.db");
}

TEST(caller_and_sql_errors) {
  hersh_store *db = fresh("errors.db");
  REQUIRE(db);
  hersh_value one = hersh_int(1);
  int err = hersh_store_run(db, "INSERT INTO t (id, name) VALUES (?, ?)", &one, 1, NULL, NULL);
  CHECK_EQ_INT(err, HERSH_E_INVAL);
  CHECK(strstr(hersh_errmsg(), "takes 2 parameters, 1 given") != NULL);
  err = hersh_store_run(db, "SELECT 1", &one, 1, NULL, NULL);
  CHECK_EQ_INT(err, HERSH_E_INVAL);
  hersh_value list = hersh_list();
  err = hersh_store_run(db, "INSERT INTO t (v) VALUES (?)", &list, 1, NULL, NULL);
  CHECK_EQ_INT(err, HERSH_E_INVAL);
  hersh_value_free(&list);

  hersh_value rows;
  err = hersh_store_query(db, "SELEC * FROM t", NULL, 0, &rows);
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");
  CHECK(rows.type == HERSH_T_NIL);
  err = hersh_store_query(db, "SELECT * FROM nowhere", NULL, 0, &rows);
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");
  CHECK_EQ_STR(hersh_errmsg(), "no such table: nowhere");
  err = hersh_store_query(db, "  -- nothing\n", NULL, 0, &rows);
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");

  /* A second statement after the first is refused, not run. */
  err = hersh_store_run(db, "INSERT INTO t (name) VALUES ('a'); DROP TABLE t", NULL, 0, NULL, NULL);
  CHECK_EQ_STR(hersh_store_errcode(err), "ESQL");
  CHECK(strstr(hersh_errmsg(), "one statement at a time") != NULL);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 0);
  /* Trailing blanks, semicolons and comments are fine. */
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (name) VALUES ('a');  -- done\n", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t;"), 1);
  hersh_store_close(db);
  remove_db("errors.db");
}

/* ---- the statement cache --------------------------------------------------------- */

TEST(prepared_cache_reuse) {
  hersh_store *db = fresh("cache.db");
  REQUIRE(db);
  uint64_t compiled0, reused0, compiled, reused;
  hersh_store_stats(db, &compiled0, &reused0);
  const char *sql = "INSERT INTO t (name) VALUES (?)";
  hersh_store_stmt *first = NULL;
  for (int i = 0; i < 50; i++) {
    char name[16];
    snprintf(name, sizeof name, "n%d", i);
    hersh_value v = hersh_str(name);
    hersh_store_stmt *st;
    REQUIRE(hersh_store_prepare(db, sql, &v, 1, &st) == HERSH_OK);
    if (!first) first = st;
    CHECK(st == first);
    CHECK_EQ_INT(hersh_store_step(st), HERSH_OK);
    hersh_store_done(st);
    hersh_value_free(&v);
  }
  hersh_store_stats(db, &compiled, &reused);
  CHECK_EQ_INT(compiled - compiled0, 1);
  CHECK_EQ_INT(reused - reused0, 49);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 50);

  /* The same SQL twice at once: the second is a statement of its own. */
  hersh_store_stmt *a, *b;
  const char *q = "SELECT name FROM t ORDER BY id";
  REQUIRE(hersh_store_prepare(db, q, NULL, 0, &a) == HERSH_OK);
  REQUIRE(hersh_store_prepare(db, q, NULL, 0, &b) == HERSH_OK);
  CHECK(a != b);
  CHECK_EQ_INT(hersh_store_step(a), HERSH_STORE_ROW);
  CHECK_EQ_INT(hersh_store_step(b), HERSH_STORE_ROW);
  CHECK_EQ_INT(hersh_store_step(b), HERSH_STORE_ROW);
  hersh_value va, vb;
  CHECK_EQ_INT(hersh_store_column(a, 0, &va), HERSH_OK);
  CHECK_EQ_INT(hersh_store_column(b, 0, &vb), HERSH_OK);
  CHECK(va.type == HERSH_T_STR && strcmp(va.as.s.ptr, "n0") == 0);
  CHECK(vb.type == HERSH_T_STR && strcmp(vb.as.s.ptr, "n1") == 0);
  hersh_value_free(&va);
  hersh_value_free(&vb);
  hersh_store_done(a);
  hersh_store_done(b);
  hersh_store_done(NULL);

  /* More distinct statements than the cache holds: the oldest are dropped, all work. */
  for (int i = 0; i < 3 * HERSH_STORE_CACHE; i++) {
    char s[64];
    snprintf(s, sizeof s, "SELECT count(*) + %d FROM t", i);
    CHECK_EQ_INT(count_rows(db, s), 50 + i);
  }
  hersh_store_stats(db, &compiled0, &reused0);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) + 0 FROM t"), 50); /* evicted long ago */
  hersh_store_stats(db, &compiled, &reused);
  CHECK_EQ_INT(compiled - compiled0, 1);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) + 0 FROM t"), 50); /* cached again */
  hersh_store_stats(db, &compiled0, &reused0);
  CHECK_EQ_INT(compiled0, compiled);
  hersh_store_close(db);
  remove_db("cache.db");
}

/* ---- transactions ------------------------------------------------------------------ */

TEST(transactions) {
  hersh_store *db = fresh("tx.db");
  REQUIRE(db);
  CHECK(!hersh_store_in_transaction(db));
  CHECK_EQ_INT(hersh_store_begin(db), HERSH_OK);
  CHECK(hersh_store_in_transaction(db));
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (name) VALUES ('kept')", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK_EQ_INT(hersh_store_commit(db), HERSH_OK);
  CHECK(!hersh_store_in_transaction(db));

  CHECK_EQ_INT(hersh_store_begin(db), HERSH_OK);
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (name) VALUES ('dropped')", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 2); /* seen inside */
  CHECK_EQ_INT(hersh_store_rollback(db), HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 1);
  CHECK_EQ_INT(hersh_store_rollback(db), HERSH_OK); /* nothing to roll back */

  CHECK_EQ_STR(hersh_store_errcode(hersh_store_commit(db)), "ESQL"); /* no transaction */
  CHECK_EQ_INT(hersh_store_begin(db), HERSH_OK);
  CHECK_EQ_STR(hersh_store_errcode(hersh_store_begin(db)), "ESQL"); /* no nesting */
  CHECK(hersh_store_in_transaction(db));

  /* A second connection cannot write while the first holds the write lock. */
  hersh_store *other = NULL;
  REQUIRE(hersh_store_open(path_of("tx.db"), &other) == HERSH_OK);
  CHECK_EQ_INT(hersh_store_exec(other, "PRAGMA busy_timeout = 50;"), HERSH_OK);
  int err = hersh_store_begin(other);
  CHECK_EQ_INT(err, HERSH_STORE_E_BUSY);
  CHECK_EQ_STR(hersh_store_errcode(err), "EBUSY");
  err = hersh_store_run(other, "INSERT INTO t (name) VALUES ('other')", NULL, 0, NULL, NULL);
  CHECK_EQ_STR(hersh_store_errcode(err), "EBUSY");
  CHECK_EQ_INT(count_rows(other, "SELECT count(*) FROM t"), 1); /* readers go on in WAL */
  CHECK_EQ_INT(hersh_store_rollback(db), HERSH_OK);
  CHECK_EQ_INT(hersh_store_run(other, "INSERT INTO t (name) VALUES ('other')", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 2);
  hersh_store_close(other);

  /* Closing with a transaction open rolls it back. */
  CHECK_EQ_INT(hersh_store_begin(db), HERSH_OK);
  CHECK_EQ_INT(hersh_store_run(db, "DELETE FROM t", NULL, 0, NULL, NULL), HERSH_OK);
  CHECK_EQ_INT(hersh_store_close(db), HERSH_OK);
  REQUIRE(hersh_store_open(path_of("tx.db"), &db) == HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 2);
  hersh_store_close(db);
  remove_db("tx.db");
}

TEST(reopen_sees_committed_data) {
  hersh_store *db = fresh("reopen.db");
  REQUIRE(db);
  for (int i = 0; i < 10; i++) {
    hersh_value v = hersh_int(i);
    CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO t (v) VALUES (?)", &v, 1, NULL, NULL), HERSH_OK);
  }
  hersh_store_stmt *held;
  REQUIRE(hersh_store_prepare(db, "SELECT v FROM t", NULL, 0, &held) == HERSH_OK);
  CHECK_EQ_INT(hersh_store_step(held), HERSH_STORE_ROW);
  CHECK_EQ_INT(hersh_store_close(db), HERSH_OK); /* finalizes even a statement still out */
  REQUIRE(hersh_store_open(path_of("reopen.db"), &db) == HERSH_OK);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM t"), 10);
  CHECK_EQ_INT(count_rows(db, "SELECT sum(v) FROM t"), 45);
  hersh_store_close(db);
  remove_db("reopen.db");
}

/* ---- crashes ----------------------------------------------------------------------- */

static bool write_all(int fd, const void *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p = (const char *)p + w;
    n -= (size_t)w;
  }
  return true;
}

/* In the child: inserts `batches` batches of `per` rows (one transaction each, or
** autocommit when per is 1), writing each batch number to fd once its commit returned.
** Then leaves without closing anything. */
static void child_writer(const char *path, int fd, int64_t batches, int per) {
  hersh_store *db = NULL;
  if (hersh_store_open(path, &db) != HERSH_OK) _exit(2);
  for (int64_t b = 0; b < batches; b++) {
    if (per > 1 && hersh_store_begin(db) != HERSH_OK) _exit(3);
    for (int k = 0; k < per; k++) {
      hersh_value params[] = {hersh_int(b), hersh_int(k)};
      if (hersh_store_run(db, "INSERT INTO rows (batch, k) VALUES (?, ?)", params, 2, NULL, NULL) != HERSH_OK) _exit(4);
    }
    if (per > 1 && hersh_store_commit(db) != HERSH_OK) _exit(5);
    if (!write_all(fd, &b, sizeof b)) _exit(6);
  }
  _exit(0);
}

/* Reads acknowledged batch numbers until EOF (or kills the child after kill_after). */
static int64_t read_acks(int fd, pid_t child, int64_t kill_after, int64_t *acked, int64_t max) {
  int64_t n = 0, b;
  size_t got = 0;
  char *p = (char *)&b;
  for (;;) {
    ssize_t r = read(fd, p + got, sizeof b - got);
    if (r <= 0) break;
    got += (size_t)r;
    if (got < sizeof b) continue;
    got = 0;
    if (n < max) acked[n++] = b;
    if (n == kill_after) kill(child, SIGKILL);
  }
  return n;
}

static const char *crash_schema = "CREATE TABLE IF NOT EXISTS rows (batch INTEGER NOT NULL, k INTEGER NOT NULL, "
                                  "PRIMARY KEY (batch, k));";

static bool has_batch(hersh_store *db, int64_t b, int per) {
  hersh_value key = hersh_int(b);
  hersh_value rows;
  if (hersh_store_query(db, "SELECT k FROM rows WHERE batch = ?", &key, 1, &rows) != HERSH_OK) return false;
  bool ok = hersh_value_len(&rows) == (size_t)per;
  hersh_value_free(&rows);
  return ok;
}

static pid_t start_writer(const char *name, int *fd, int64_t batches, int per) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    child_writer(path_of(name), p[1], batches, per);
  }
  close(p[1]);
  *fd = p[0];
  return pid;
}

TEST(crash_exit_without_close) {
  hersh_store *db = fresh("crash1.db");
  REQUIRE(db);
  REQUIRE(hersh_store_exec(db, crash_schema) == HERSH_OK);
  hersh_store_close(db);
  int fd;
  pid_t pid = start_writer("crash1.db", &fd, 200, 1);
  REQUIRE(pid > 0);
  static int64_t acked[200];
  int64_t n = read_acks(fd, pid, -1, acked, 200);
  close(fd);
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_EQ_INT(n, 200);
  CHECK(file_exists(path_of("crash1.db-wal"))); /* never closed: the WAL was left behind */
  REQUIRE(hersh_store_open(path_of("crash1.db"), &db) == HERSH_OK);
  int missing = 0;
  for (int64_t i = 0; i < n; i++) missing += !has_batch(db, acked[i], 1);
  CHECK_EQ_INT(missing, 0);
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM rows"), 200);
  hersh_value ok = scalar(db, "PRAGMA integrity_check");
  CHECK(ok.type == HERSH_T_STR && strcmp(ok.as.s.ptr, "ok") == 0);
  hersh_value_free(&ok);
  hersh_store_close(db);
  remove_db("crash1.db");
}

TEST(crash_sigkill_mid_way) {
  enum { PER = 5, KILL_AFTER = 40, MAX = 1000000 };
  hersh_store *db = fresh("crash2.db");
  REQUIRE(db);
  REQUIRE(hersh_store_exec(db, crash_schema) == HERSH_OK);
  hersh_store_close(db);
  int fd;
  pid_t pid = start_writer("crash2.db", &fd, MAX, PER);
  REQUIRE(pid > 0);
  static int64_t acked[4096];
  int64_t n = read_acks(fd, pid, KILL_AFTER, acked, 4096); /* what was in the pipe counts too */
  close(fd);
  int status;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  CHECK(n >= KILL_AFTER);
  REQUIRE(hersh_store_open(path_of("crash2.db"), &db) == HERSH_OK);
  int missing = 0;
  for (int64_t i = 0; i < n && i < 4096; i++) missing += !has_batch(db, acked[i], PER);
  CHECK_EQ_INT(missing, 0);
  int64_t total = count_rows(db, "SELECT count(*) FROM rows");
  CHECK(total >= n * PER);
  CHECK_EQ_INT(total % PER, 0); /* a transaction cut short left nothing behind */
  CHECK_EQ_INT(count_rows(db, "SELECT count(*) FROM (SELECT batch FROM rows GROUP BY batch HAVING count(*) != 5)"), 0);
  hersh_value ok = scalar(db, "PRAGMA integrity_check");
  CHECK(ok.type == HERSH_T_STR && strcmp(ok.as.s.ptr, "ok") == 0);
  hersh_value_free(&ok);
  /* The reopened database takes writes again. */
  hersh_value params[] = {hersh_int(-1), hersh_int(0)};
  CHECK_EQ_INT(hersh_store_run(db, "INSERT INTO rows (batch, k) VALUES (?, ?)", params, 2, NULL, NULL), HERSH_OK);
  hersh_store_close(db);
  remove_db("crash2.db");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/hersh-store-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  RUN(open_close);
  RUN(wal_and_durability_settings);
  RUN(schema_scripts);
  RUN(round_trip_every_type);
  RUN(constraint_violations);
  RUN(caller_and_sql_errors);
  RUN(prepared_cache_reuse);
  RUN(transactions);
  RUN(reopen_sees_committed_data);
  RUN(crash_exit_without_close);
  RUN(crash_sigkill_mid_way);
  rmdir(dir);
  return check_summary();
}
