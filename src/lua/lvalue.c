/*
** lvalue.c -- Lua values as hersh_values and back. Scalars and strings are copied;
** tables, functions, userdata and threads stay in Lua as EXT values holding a
** registry reference, so a reducer gets the very table it stored.
*/
#include <stdio.h>
#include <stdlib.h>

#include "lhersh.h"

typedef struct lua_ref {
  lua_State *L; /* the main thread */
  int ref;
} lua_ref;

static void ref_release(void *p) {
  lua_ref *r = p;
  luaL_unref(r->L, LUA_REGISTRYINDEX, r->ref);
  free(r);
}

static void *ref_retain(void *p) {
  lua_ref *r = p, *copy = malloc(sizeof *copy);
  if (!copy) return NULL;
  copy->L = r->L;
  lua_rawgeti(r->L, LUA_REGISTRYINDEX, r->ref);
  copy->ref = luaL_ref(r->L, LUA_REGISTRYINDEX);
  return copy;
}

static bool ref_to_plain(void *p, hersh_value *out) {
  lua_ref *r = p;
  if (!lua_checkstack(r->L, 8)) return false;
  lua_rawgeti(r->L, LUA_REGISTRYINDEX, r->ref);
  int rc = hersh_lua_to_plain(r->L, -1, out);
  lua_pop(r->L, 1);
  return rc == HERSH_OK;
}

static const hersh_ext_type lua_ref_type = {"lua", ref_release, ref_retain, ref_to_plain};

static lua_State *main_thread(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return main;
}

int hersh_lua_to_value(lua_State *L, int idx, hersh_value *out) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE: *out = hersh_nil(); return HERSH_OK;
  case LUA_TBOOLEAN: *out = hersh_bool(lua_toboolean(L, idx)); return HERSH_OK;
  case LUA_TNUMBER:
    *out = lua_isinteger(L, idx) ? hersh_int(lua_tointeger(L, idx)) : hersh_num(lua_tonumber(L, idx));
    return HERSH_OK;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    *out = hersh_strn(s, len);
    return out->type == HERSH_T_STR ? HERSH_OK : HERSH_E_NOMEM;
  }
  default: {
    lua_ref *r = malloc(sizeof *r);
    if (!r) return HERSH_E_NOMEM;
    r->L = main_thread(L);
    lua_pushvalue(L, idx);
    r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *out = hersh_ext_value(&lua_ref_type, r);
    return out->type == HERSH_T_EXT ? HERSH_OK : HERSH_E_NOMEM;
  }
  }
}

void hersh_lua_push_value(lua_State *L, const hersh_value *v) {
  luaL_checkstack(L, 4, "hersh: value too deep");
  switch (v->type) {
  case HERSH_T_NIL: lua_pushnil(L); break;
  case HERSH_T_BOOL: lua_pushboolean(L, v->as.b); break;
  case HERSH_T_INT: lua_pushinteger(L, (lua_Integer)v->as.i); break;
  case HERSH_T_NUM: lua_pushnumber(L, v->as.n); break;
  case HERSH_T_STR: lua_pushlstring(L, v->as.s.ptr, v->as.s.len); break;
  case HERSH_T_LIST: {
    size_t n = hersh_value_len(v);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      hersh_lua_push_value(L, hersh_list_at(v, i));
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  }
  case HERSH_T_MAP: {
    size_t n = hersh_value_len(v);
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
      hersh_lua_push_value(L, hersh_map_value(v, i));
      lua_setfield(L, -2, hersh_map_key(v, i));
    }
    break;
  }
  case HERSH_T_EXT:
    if (v->as.ext->type == &lua_ref_type)
      lua_rawgeti(L, LUA_REGISTRYINDEX, ((lua_ref *)v->as.ext->ptr)->ref);
    else
      lua_pushfstring(L, "<%s>", v->as.ext->type->name);
    break;
  }
}

/* ---- plain conversion, for JSON and logs ------------------------------------------- */

enum { PLAIN_MAX_DEPTH = 64 };

static int tag(hersh_value *out, const char *name) {
  char buf[48];
  snprintf(buf, sizeof buf, "<%s>", name);
  *out = hersh_str(buf);
  return out->type == HERSH_T_STR ? HERSH_OK : HERSH_E_NOMEM;
}

/* A table is a list when its keys are exactly 1..n (n > 0). */
static bool is_sequence(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  if (n == 0) return false;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return false;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || k > n) {
      lua_pop(L, 1);
      return false;
    }
    count++;
  }
  return count == n;
}

/* `seen` (a table at seen_idx) holds the tables on the current path, to spot cycles. */
static int to_plain(lua_State *L, int idx, hersh_value *out, int seen_idx, int depth) {
  int type = lua_type(L, idx);
  if (type != LUA_TTABLE) {
    if (type <= LUA_TSTRING && type != LUA_TLIGHTUSERDATA) return hersh_lua_to_value(L, idx, out);
    return tag(out, lua_typename(L, type));
  }
  if (depth >= PLAIN_MAX_DEPTH) return tag(out, "deep");
  if (!lua_checkstack(L, 6)) return tag(out, "deep");
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, seen_idx) != LUA_TNIL) {
    lua_pop(L, 1);
    return tag(out, "cycle");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, seen_idx);
  bool list = is_sequence(L, idx);
  *out = list ? hersh_list() : hersh_map();
  int rc = out->type == HERSH_T_NIL ? HERSH_E_NOMEM : HERSH_OK;
  if (list) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n && rc == HERSH_OK; i++) {
      lua_rawgeti(L, idx, i);
      hersh_value item = hersh_nil();
      rc = to_plain(L, -1, &item, seen_idx, depth + 1);
      if (rc == HERSH_OK) rc = hersh_list_push(out, &item);
      hersh_value_free(&item);
      lua_pop(L, 1);
    }
  } else {
    lua_pushnil(L);
    while (rc == HERSH_OK && lua_next(L, idx)) {
      char keybuf[64];
      const char *key;
      if (lua_type(L, -2) == LUA_TSTRING) {
        key = lua_tostring(L, -2);
      } else if (lua_isinteger(L, -2)) {
        snprintf(keybuf, sizeof keybuf, "%lld", (long long)lua_tointeger(L, -2));
        key = keybuf;
      } else if (lua_type(L, -2) == LUA_TNUMBER) {
        snprintf(keybuf, sizeof keybuf, "%.14g", lua_tonumber(L, -2));
        key = keybuf;
      } else {
        snprintf(keybuf, sizeof keybuf, "<%s>", luaL_typename(L, -2));
        key = keybuf;
      }
      hersh_value item = hersh_nil();
      rc = to_plain(L, -1, &item, seen_idx, depth + 1);
      if (rc == HERSH_OK) rc = hersh_map_set(out, key, &item);
      hersh_value_free(&item);
      lua_pop(L, 1);
    }
    if (rc != HERSH_OK) lua_pop(L, 1); /* the key left by an interrupted lua_next */
  }
  lua_pushvalue(L, idx);
  lua_pushnil(L);
  lua_rawset(L, seen_idx);
  if (rc != HERSH_OK) hersh_value_free(out);
  return rc;
}

int hersh_lua_to_plain(lua_State *L, int idx, hersh_value *out) {
  idx = lua_absindex(L, idx);
  *out = hersh_nil();
  if (lua_type(L, idx) != LUA_TTABLE) return to_plain(L, idx, out, 0, 0);
  lua_newtable(L);
  int rc = to_plain(L, idx, out, lua_gettop(L), 0);
  lua_pop(L, 1);
  return rc;
}
