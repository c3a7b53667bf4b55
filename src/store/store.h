/*
** store.h -- the SQLite binding: one connection per file, prepared statements only.
**
** A database opens in WAL mode with synchronous=FULL (a commit that returned is on disk:
** it survives kill -9 and, within WAL's guarantees, power loss), foreign keys on and a
** busy timeout. Statements are prepared once per SQL text and kept in a small cache;
** parameters are always bound by position from hersh_values, never put into the text.
** Only fixed schema text goes through hersh_store_exec.
**
** Errors: HERSH_OK or a negative code with the message (sqlite3_errmsg's text) in
** hersh_errmsg(); hersh_store_errcode names it: "ECONSTRAINT", "EBUSY", "EIO", "ESQL",
** or a hersh_errcode name ("EINVAL" for a caller's bug, "ENOMEM").
** A connection belongs to one thread (the loop thread).
*/
#ifndef HERSH_STORE_H
#define HERSH_STORE_H

#include "hersh.h"

enum {
  HERSH_STORE_E_CONSTRAINT = -100, /* a UNIQUE, NOT NULL, CHECK or foreign key failed */
  HERSH_STORE_E_BUSY = -101,       /* another connection held the lock past the timeout */
  HERSH_STORE_E_IO = -102,         /* the file: cannot open, read, write, corrupt */
  HERSH_STORE_E_SQL = -103,        /* anything else SQLite refused (syntax, no table...) */
  HERSH_STORE_E_FULL = -104        /* the disk (or quota) is full: a write failed, nothing changed */
};

enum { HERSH_STORE_ROW = 1 };       /* hersh_store_step: a row is ready */
#define HERSH_STORE_CACHE 32        /* idle prepared statements kept per connection */
#define HERSH_STORE_BUSY_MS 5000    /* how long a statement waits for another writer */

typedef struct hersh_store hersh_store;
typedef struct hersh_store_stmt hersh_store_stmt;

/* "ECONSTRAINT", "EBUSY", "EIO", "ESQL", else hersh_errcode(err). */
const char *hersh_store_errcode(int err);

/* Opens (creating it if needed) the database file at `path`. */
int hersh_store_open(const char *path, hersh_store **out);
/* Finalizes every statement and closes; an open transaction is rolled back. NULL is
** fine. Returns an error only if SQLite refused to close (the memory goes anyway). */
int hersh_store_close(hersh_store *db);

/* Runs a script of fixed SQL (schema, migrations): never text built from input. */
int hersh_store_exec(hersh_store *db, const char *script);

/* ---- statements ------------------------------------------------------------------ */

/* The statement for one SQL statement (from the cache, or prepared now) with params[0..n)
** bound to its ?s: NIL as NULL, BOOL as 0/1, INT, NUM, STR as text (copied). A count
** that does not match the statement's, or a LIST/MAP/EXT, is HERSH_E_INVAL. Every
** statement handed out must be given back with hersh_store_done. */
int hersh_store_prepare(hersh_store *db, const char *sql, const hersh_value *params, size_t n,
                        hersh_store_stmt **out);
/* HERSH_STORE_ROW, HERSH_OK when there are no more rows, or an error. */
int hersh_store_step(hersh_store_stmt *st);
int hersh_store_columns(const hersh_store_stmt *st);
/* The column's name (NULL only when out of memory), valid until hersh_store_done. */
const char *hersh_store_column_name(hersh_store_stmt *st, int i);
/* Column i of the current row as an owned value (INTEGER -> INT, REAL -> NUM, TEXT and
** BLOB -> STR, NULL -> NIL): free it with hersh_value_free. */
int hersh_store_column(hersh_store_stmt *st, int i, hersh_value *out);
/* The same, borrowed: a STR points into SQLite's row, valid until the next step or
** hersh_store_done. Never free it. */
int hersh_store_column_view(hersh_store_stmt *st, int i, hersh_value *out);
/* Resets the statement and gives it back to the cache. NULL is fine. */
void hersh_store_done(hersh_store_stmt *st);

/* ---- one call each ------------------------------------------------------------------ */

/* Runs an INSERT, UPDATE or DELETE to the end; changes and rowid may be NULL. */
int hersh_store_run(hersh_store *db, const char *sql, const hersh_value *params, size_t n, int64_t *changes,
                    int64_t *rowid);
/* Every row of a query, as a LIST of MAPs keyed by column name (NULLs left out). */
int hersh_store_query(hersh_store *db, const char *sql, const hersh_value *params, size_t n, hersh_value *rows);

/* ---- transactions ---------------------------------------------------------------- */

/* BEGIN IMMEDIATE: the write lock is taken now, so a busy database fails here rather than
** half-way through. A COMMIT that fails rolls back, so no transaction is left open. */
int hersh_store_begin(hersh_store *db);
int hersh_store_commit(hersh_store *db);
int hersh_store_rollback(hersh_store *db);
bool hersh_store_in_transaction(hersh_store *db);

/* How many statements were compiled, and how many prepares the cache answered. */
void hersh_store_stats(const hersh_store *db, uint64_t *compiled, uint64_t *reused);

#endif
