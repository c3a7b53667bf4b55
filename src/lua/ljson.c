/*
** ljson.c -- hersh.json: JSON text to Lua values and back, on the C reader and writer
** of src/base/json.h that the WatcherAPI writes with too, so the Host and the programs
** answer in one style: object keys sorted bytewise, `/` as is, integers exact.
**
** Lua has one table for arrays and objects. Decoded arrays carry the metatable
** hersh.json.array (json.array(t) puts it on a table of one's own), so that an empty
** one encodes as [] again; an unmarked table is an array when its keys are exactly
** 1..n (n > 0), an object when they are all strings (or it is empty). json.null (a
** NULL light userdata) stands for null where Lua's nil cannot: in tables.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "lhersh.h"

#define JSON_ARRAY_MT "hersh.json.array"

/* ---- encode ----------------------------------------------------------------------- */

/* One step from a table to a value in it: a key, or an array index when key is NULL. */
typedef struct path_step {
  const char *key;
  size_t n;
  lua_Integer index;
} path_step;

typedef struct encoder {
  hersh_json w;
  hersh_buf out;
  const void *tables[HERSH_JSON_MAX_DEPTH]; /* the tables on the path: one seen twice is a cycle */
  /* The steps to the value being written, kept (not formatted) for an error message. */
  path_step path[HERSH_JSON_MAX_DEPTH + 1];
} encoder;

/* A key of the object being written; its string and value are held in a Lua table. */
typedef struct key_ref {
  const char *s;
  size_t n;
  lua_Integer slot; /* the key at slot, its value at slot + 1 */
} key_ref;

static void encode_value(encoder *e, lua_State *L, int idx, int depth);

/* A key that reads well after a dot; any other is shown in brackets. */
static bool plain_key(const char *s, size_t n) {
  if (n == 0 || !(s[0] == '_' || ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))) return false;
  for (size_t i = 1; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) return false;
  }
  return true;
}

/* A caller's bug: the value at `depth` cannot be JSON. Raises with where it is, e.g.
** "$.env[2]" (keys past 64 bytes cut, "..."); the caller frees the buffer. */
HERSH_MAY_RAISE static void refuse(encoder *e, lua_State *L, int depth, const char *why) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "hersh.json.encode: cannot encode ");
  luaL_addstring(&b, why);
  luaL_addstring(&b, " at $");
  for (int d = 0; d < depth; d++) {
    const path_step *st = &e->path[d];
    if (!st->key) {
      lua_pushfstring(L, "[%I]", st->index);
      luaL_addvalue(&b);
      continue;
    }
    bool plain = plain_key(st->key, st->n);
    luaL_addstring(&b, plain ? "." : "[\"");
    luaL_addlstring(&b, st->key, st->n > 64 ? 64 : st->n);
    if (st->n > 64) luaL_addstring(&b, "...");
    if (!plain) luaL_addstring(&b, "\"]");
  }
  luaL_pushresult(&b);
  lua_error(L);
}

static int key_order(const void *a, const void *b) {
  const key_ref *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

static bool is_marked(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return false;
  luaL_getmetatable(L, JSON_ARRAY_MT);
  bool marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

/* The keys of the table at idx: how many, of which kind, and the integer range. */
typedef struct key_census {
  lua_Integer count, strings, ints, min, max;
  const char *other; /* the type of a key that is neither, or "number" for a float */
} key_census;

static key_census census(lua_State *L, int idx) {
  key_census c = {0, 0, 0, 0, 0, NULL};
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1); /* the value */
    c.count++;
    if (lua_type(L, -1) == LUA_TSTRING) {
      c.strings++;
    } else if (lua_isinteger(L, -1)) {
      lua_Integer k = lua_tointeger(L, -1);
      if (c.ints == 0 || k < c.min) c.min = k;
      if (c.ints == 0 || k > c.max) c.max = k;
      c.ints++;
    } else if (!c.other) {
      c.other = luaL_typename(L, -1);
    }
  }
  return c;
}

HERSH_MAY_RAISE static void encode_array(encoder *e, lua_State *L, int idx, lua_Integer n, int depth) {
  hersh_json_array(&e->w);
  for (lua_Integer i = 1; i <= n; i++) {
    e->path[depth] = (path_step){NULL, 0, i};
    lua_rawgeti(L, idx, i);
    encode_value(e, L, -1, depth + 1);
    lua_pop(L, 1);
  }
  hersh_json_end(&e->w);
}

/* Keys sorted bytewise, as hersh_json_value sorts a map's: one order for both layers. */
HERSH_MAY_RAISE static void encode_object(encoder *e, lua_State *L, int idx, lua_Integer n, int depth) {
  lua_createtable(L, (int)(2 * n), 0); /* keeps the keys and values alive while `keys` points at them */
  int held = lua_gettop(L);
  key_ref *keys = lua_newuserdatauv(L, (size_t)n * sizeof *keys, 0);
  lua_Integer i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    key_ref *k = &keys[i++];
    k->slot = 2 * i - 1;
    lua_rawseti(L, held, k->slot + 1); /* pops the value */
    lua_pushvalue(L, -1);
    lua_rawseti(L, held, k->slot);
    k->s = lua_tolstring(L, -1, &k->n);
  }
  qsort(keys, (size_t)n, sizeof *keys, key_order);
  hersh_json_object(&e->w);
  for (i = 0; i < n; i++) {
    e->path[depth] = (path_step){keys[i].s, keys[i].n, 0};
    hersh_json_keyn(&e->w, keys[i].s, keys[i].n);
    lua_rawgeti(L, held, keys[i].slot + 1);
    encode_value(e, L, -1, depth + 1);
    lua_pop(L, 1);
  }
  hersh_json_end(&e->w);
  lua_pop(L, 2); /* keys, held */
}

HERSH_MAY_RAISE static void encode_table(encoder *e, lua_State *L, int idx, int depth) {
  if (depth >= HERSH_JSON_MAX_DEPTH) {
    char why[64];
    snprintf(why, sizeof why, "tables nested deeper than %d levels", HERSH_JSON_MAX_DEPTH);
    refuse(e, L, depth, why);
  }
  luaL_checkstack(L, 8, "hersh.json.encode: tables nested too deep");
  idx = lua_absindex(L, idx);
  e->tables[depth] = lua_topointer(L, idx);
  for (int d = 0; d < depth; d++) {
    if (e->tables[d] == e->tables[depth]) refuse(e, L, depth, "a cycle (a table that contains itself)");
  }

  bool marked = is_marked(L, idx);
  key_census c = census(L, idx);
  if (c.other) {
    char why[80];
    snprintf(why, sizeof why, "a %s key (object keys are strings, array keys 1..n)", c.other);
    refuse(e, L, depth, why);
  }
  if (c.strings && c.ints) refuse(e, L, depth, "a table with both string and integer keys");
  if (c.strings && marked) refuse(e, L, depth, "string keys in a table marked as an array");
  if (c.ints && (c.min != 1 || c.max != c.count)) refuse(e, L, depth, "a sparse array (its keys are not exactly 1..n)");
  if (c.ints || marked) encode_array(e, L, idx, c.count, depth);
  else encode_object(e, L, idx, c.count, depth);
}

HERSH_MAY_RAISE static void encode_value(encoder *e, lua_State *L, int idx, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: hersh_json_null(&e->w); break;
  case LUA_TBOOLEAN: hersh_json_bool(&e->w, lua_toboolean(L, idx)); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      hersh_json_int(&e->w, (int64_t)lua_tointeger(L, idx));
    } else {
      double d = (double)lua_tonumber(L, idx);
      if (!isfinite(d)) refuse(e, L, depth, isnan(d) ? "NaN (JSON has no such number)" : "an infinity (JSON has no such number)");
      hersh_json_number(&e->w, d);
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    hersh_json_string(&e->w, s, n);
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL) refuse(e, L, depth, "a light userdata other than json.null");
    hersh_json_null(&e->w);
    break;
  case LUA_TTABLE: encode_table(e, L, idx, depth); break;
  default: {
    char why[48];
    snprintf(why, sizeof why, "a %s", luaL_typename(L, idx));
    refuse(e, L, depth, why);
  }
  }
}

/* Runs protected, so that l_json_encode frees the buffer whatever is raised here.
** Stack: the encoder (light userdata), the value; leaves the text. */
static int encode_protected(lua_State *L) {
  encoder *e = lua_touserdata(L, 1);
  encode_value(e, L, 2, 0);
  int rc = hersh_json_finish(&e->w);
  if (rc == HERSH_E_NOMEM) return luaL_error(L, "hersh.json.encode: not enough memory");
  if (rc != HERSH_OK) return luaL_error(L, "hersh.json.encode: %s", hersh_json_error(&e->w));
  lua_pushlstring(L, e->out.p, e->out.len);
  return 1;
}

/* json.encode(value) -> text. A value JSON cannot hold raises an error naming it and
** where it sits (a function, a cycle, NaN, a sparse array...). */
static int l_json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  encoder e;
  e.out = (hersh_buf){0};
  hersh_json_init(&e.w, &e.out);
  lua_pushcfunction(L, encode_protected);
  lua_pushlightuserdata(L, &e);
  lua_pushvalue(L, 1);
  int status = lua_pcall(L, 2, 1, 0);
  hersh_buf_free(&e.out);
  if (status != LUA_OK) {
    if (lua_type(L, -1) == LUA_TSTRING) { /* say where the caller is, as luaL_error would */
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return 1;
}

/* ---- decode ----------------------------------------------------------------------- */

/* The reader's depth limit bounds this recursion; lua_checkstack still guards it. */
HERSH_MAY_RAISE static void push_decoded(lua_State *L, const hersh_value *v) {
  luaL_checkstack(L, 3, "hersh.json.decode: nested too deep");
  switch (v->type) {
  case HERSH_T_BOOL: lua_pushboolean(L, v->as.b); break;
  case HERSH_T_INT: lua_pushinteger(L, (lua_Integer)v->as.i); break;
  case HERSH_T_NUM: lua_pushnumber(L, (lua_Number)v->as.n); break;
  case HERSH_T_STR: lua_pushlstring(L, v->as.s.ptr, v->as.s.len); break;
  case HERSH_T_LIST: {
    size_t n = hersh_value_len(v);
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      push_decoded(L, hersh_list_at(v, i));
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    luaL_setmetatable(L, JSON_ARRAY_MT);
    break;
  }
  case HERSH_T_MAP: {
    size_t n = hersh_value_len(v);
    lua_createtable(L, 0, n > INT32_MAX ? 0 : (int)n);
    for (size_t i = 0; i < n; i++) {
      lua_pushstring(L, hersh_map_key(v, i));
      push_decoded(L, hersh_map_value(v, i));
      lua_rawset(L, -3);
    }
    break;
  }
  case HERSH_T_NIL:
  case HERSH_T_EXT: lua_pushlightuserdata(L, NULL); break; /* null (the reader makes no EXT) */
  }
}

static int decode_protected(lua_State *L) {
  push_decoded(L, lua_touserdata(L, 1));
  return 1;
}

/* json.decode(text) -> value, or nil, "invalid JSON at byte N: ...", "EINVAL". */
static int l_json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  hersh_value v = hersh_nil();
  char err[192];
  int rc = hersh_json_parse(text, len, &v, err, sizeof err);
  if (rc != HERSH_OK) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    lua_pushstring(L, hersh_errcode(rc));
    return 3;
  }
  lua_pushcfunction(L, decode_protected);
  lua_pushlightuserdata(L, &v);
  int status = lua_pcall(L, 1, 1, 0);
  hersh_value_free(&v);
  if (status != LUA_OK) return lua_error(L);
  return 1;
}

/* ---- arrays ----------------------------------------------------------------------- */

/* json.array([t]) -> t marked as an array (a new table without t). */
static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (lua_getmetatable(L, 1) && !is_marked(L, 1)) luaL_argerror(L, 1, "the table has a metatable of its own");
  lua_settop(L, 1);
  luaL_setmetatable(L, JSON_ARRAY_MT);
  return 1;
}

/* json.is_array(v) -> whether v is a table marked as an array (decoded or json.array). */
static int l_json_is_array(lua_State *L) {
  lua_pushboolean(L, lua_type(L, 1) == LUA_TTABLE && is_marked(L, 1));
  return 1;
}

static const luaL_Reg json_funcs[] = {
  {"encode", l_json_encode},
  {"decode", l_json_decode},
  {"array", l_json_array},
  {"is_array", l_json_is_array},
  {NULL, NULL},
};

int luaopen_hersh_json(lua_State *L) {
  hersh_lclass_register(L, JSON_ARRAY_MT, NULL, NULL);
  luaL_newlib(L, json_funcs);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
