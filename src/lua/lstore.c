/*
** lstore.c -- hersh.Database: SQLite for Lua (the Host's registry), as hersh.store.open.
** Values always go in as bound parameters, never into the SQL text; rows come out as
** tables keyed by column name. Failures return nil, message, code ("ECONSTRAINT",
** "EBUSY", "EIO", "EFULL" for a full disk, "ESQL"); misuse (a table as a parameter,
** the wrong number of parameters, a closed database) raises.
*/
#include "lhersh.h"
#include "store/store.h"

#define HERSH_DATABASE_MT "hersh.Database"
#define LSTORE_FAST_PARAMS 16 /* parameters bound from a C array; more take a userdata */

typedef struct ldb {
  hersh_store *db; /* NULL once closed */
} ldb;

#define check_ldb(L, i) ((ldb *)luaL_checkudata((L), (i), HERSH_DATABASE_MT))

/* A caller's bug raises; a runtime failure returns nil, message, code. */
static int push_failure(lua_State *L, int err) HERSH_MAY_RAISE {
  if (err == HERSH_E_INVAL) return luaL_error(L, "%s", hersh_errmsg());
  lua_pushnil(L);
  lua_pushstring(L, hersh_errmsg());
  lua_pushstring(L, hersh_store_errcode(err));
  return 3;
}

static hersh_store *check_open(lua_State *L) HERSH_MAY_RAISE {
  ldb *d = check_ldb(L, 1);
  if (!d->db) luaL_error(L, "the database is closed");
  return d->db;
}

/* The arguments from `first` on as values to bind. Strings are borrowed from the stack
** (the store copies them); anything but nil, boolean, number or string raises. */
static hersh_value *check_params(lua_State *L, int first, hersh_value *fast, size_t *n) HERSH_MAY_RAISE {
  int top = lua_gettop(L);
  size_t count = top >= first ? (size_t)(top - first + 1) : 0;
  hersh_value *v = count <= LSTORE_FAST_PARAMS ? fast : lua_newuserdatauv(L, count * sizeof *v, 0);
  for (size_t k = 0; k < count; k++) {
    int i = first + (int)k;
    switch (lua_type(L, i)) {
    case LUA_TNIL: v[k] = hersh_nil(); break;
    case LUA_TBOOLEAN: v[k] = hersh_bool(lua_toboolean(L, i)); break;
    case LUA_TNUMBER:
      v[k] = lua_isinteger(L, i) ? hersh_int(lua_tointeger(L, i)) : hersh_num(lua_tonumber(L, i));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, i, &len);
      v[k] = (hersh_value){.type = HERSH_T_STR, .as.s = {(char *)s, len}};
      break;
    }
    default: luaL_typeerror(L, i, "nil, boolean, number or string");
    }
  }
  *n = count;
  return v;
}

/* hersh.store.open(path) -> db | nil, err, code */
static int l_db_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  ldb *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->db = NULL;
  luaL_setmetatable(L, HERSH_DATABASE_MT);
  int err = hersh_store_open(path, &d->db);
  if (err) return push_failure(L, err);
  return 1;
}

/* db:exec(script) -> true | nil, err, code. Fixed schema text only. */
static int l_db_exec(lua_State *L) {
  hersh_store *db = check_open(L);
  const char *script = luaL_checkstring(L, 2);
  int err = hersh_store_exec(db, script);
  if (err) return push_failure(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct collect {
  hersh_store_stmt *st;
  int rc;
} collect;

/* Runs under hersh_lua_pcall: (collect lightuserdata) -> the rows. A memory error while
** building them unwinds to l_db_query, which still gives the statement back. */
static int collect_rows(lua_State *L) {
  collect *c = lua_touserdata(L, 1);
  int ncol = hersh_store_columns(c->st);
  luaL_checkstack(L, ncol + 4, "too many columns");
  lua_newtable(L);
  int rows = lua_gettop(L);
  for (int i = 0; i < ncol; i++) { /* the names at rows+1 .. rows+ncol, pushed once */
    const char *name = hersh_store_column_name(c->st, i);
    if (!name) return luaL_error(L, "out of memory naming a column");
    lua_pushstring(L, name);
  }
  lua_Integer count = 0;
  while ((c->rc = hersh_store_step(c->st)) == HERSH_STORE_ROW) {
    lua_createtable(L, 0, ncol);
    for (int i = 0; i < ncol; i++) {
      hersh_value v;
      if ((c->rc = hersh_store_column_view(c->st, i, &v)) != HERSH_OK) return 0;
      if (v.type == HERSH_T_NIL) continue;
      lua_pushvalue(L, rows + 1 + i);
      if (v.type == HERSH_T_INT) lua_pushinteger(L, v.as.i);
      else if (v.type == HERSH_T_NUM) lua_pushnumber(L, v.as.n);
      else lua_pushlstring(L, v.as.s.ptr, v.as.s.len);
      lua_rawset(L, -3); /* pops the name and the value */
    }
    lua_rawseti(L, rows, ++count); /* pops the row */
  }
  lua_settop(L, rows);
  return 1;
}

/* db:query(sql, ...) -> {row, ...} | nil, err, code */
static int l_db_query(lua_State *L) {
  hersh_store *db = check_open(L);
  const char *sql = luaL_checkstring(L, 2);
  hersh_lmod *m = hersh_lmod_get(L);
  hersh_value fast[LSTORE_FAST_PARAMS];
  size_t n;
  const hersh_value *params = check_params(L, 3, fast, &n);
  luaL_checkstack(L, 4, NULL);
  collect c = {NULL, HERSH_OK};
  int err = hersh_store_prepare(db, sql, params, n, &c.st);
  if (err) return push_failure(L, err);
  /* From here to hersh_store_done nothing may raise: the statement is out. */
  hersh_lua_push_handler(L);
  lua_pushcfunction(L, collect_rows);
  lua_pushlightuserdata(L, &c);
  hersh_lua_status st = hersh_lua_pcall(m, L, 1, 1, 0);
  hersh_store_done(c.st);
  if (st != HERSH_LUA_OK) return lua_error(L); /* the message is on the top */
  if (c.rc != HERSH_OK) return push_failure(L, c.rc);
  return 1;
}

/* db:run(sql, ...) -> changes, last_insert_rowid | nil, err, code */
static int l_db_run(lua_State *L) {
  hersh_store *db = check_open(L);
  const char *sql = luaL_checkstring(L, 2);
  hersh_value fast[LSTORE_FAST_PARAMS];
  size_t n;
  const hersh_value *params = check_params(L, 3, fast, &n);
  int64_t changes = 0, rowid = 0;
  int err = hersh_store_run(db, sql, params, n, &changes, &rowid);
  if (err) return push_failure(L, err);
  lua_pushinteger(L, changes);
  lua_pushinteger(L, rowid);
  return 2;
}

/* db:transaction(fn) -> fn's results (true if none) | nil, err, code
** fn runs between BEGIN IMMEDIATE and COMMIT. If it raises, the transaction rolls back
** and the error goes on (as text, with fn's traceback); if it returns nil (or false)
** and an error, it rolls back and its results are returned. fn must not yield. */
static int l_db_transaction(lua_State *L) {
  ldb *d = check_ldb(L, 1);
  check_open(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  hersh_lmod *m = hersh_lmod_get(L);
  luaL_checkstack(L, 2, NULL);
  int err = hersh_store_begin(d->db);
  if (err) return push_failure(L, err);
  hersh_lua_push_handler(L); /* 3 */
  lua_pushvalue(L, 2);
  hersh_lua_status st = hersh_lua_pcall(m, L, 0, LUA_MULTRET, 0);
  if (st != HERSH_LUA_OK) {
    if (d->db) hersh_store_rollback(d->db); /* fn's error matters more than the rollback's */
    return lua_error(L);
  }
  if (!d->db) return luaL_error(L, "the database was closed inside its transaction");
  int nres = lua_gettop(L) - 3; /* fn's results, above the handler */
  if (nres >= 2 && !lua_toboolean(L, 4) && !lua_isnil(L, 5)) {
    err = hersh_store_rollback(d->db);
    if (err) return push_failure(L, err);
    return nres;
  }
  err = hersh_store_commit(d->db);
  if (err) return push_failure(L, err);
  if (nres == 0) lua_pushboolean(L, 1);
  return nres ? nres : 1;
}

/* db:close() -> true | nil, err, code; a second close does nothing. */
static int l_db_close(lua_State *L) {
  ldb *d = check_ldb(L, 1);
  hersh_store *db = d->db;
  d->db = NULL;
  int err = hersh_store_close(db);
  if (err) return push_failure(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_db_gc(lua_State *L) {
  ldb *d = check_ldb(L, 1);
  hersh_store_close(d->db); /* nobody left to tell of a failure */
  d->db = NULL;
  return 0;
}

static int l_db_tostring(lua_State *L) {
  ldb *d = check_ldb(L, 1);
  lua_pushfstring(L, "%s (%s)", HERSH_DATABASE_MT, d->db ? "open" : "closed");
  return 1;
}

static const luaL_Reg db_meth[] = {{"exec", l_db_exec},   {"query", l_db_query}, {"run", l_db_run},
                                   {"transaction", l_db_transaction}, {"close", l_db_close},
                                   {NULL, NULL}};

static const luaL_Reg db_metameth[] = {
    {"__gc", l_db_gc}, {"__close", l_db_gc}, {"__tostring", l_db_tostring}, {NULL, NULL}};

static const luaL_Reg db_funcs[] = {{"open", l_db_open}, {NULL, NULL}};

/* Adds open to the module table on the stack top (hersh.store). */
int hersh_lstore_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_DATABASE_MT, db_meth, db_metameth);
  luaL_setfuncs(L, db_funcs, 0);
  return 0;
}
