/*
** lsha256.c -- SHA-256 (FIPS 180-4) for Lua as hersh.os.sha256: hex(s), digest(s), and a
** streaming new():update(s):hex() / :digest(). Build ids hash whole uploads (up to
** 16 MiB) on the loop thread, where a Lua implementation took two seconds. The
** compression is nettle's: its context is a plain struct, so it lives in the userdata
** with nothing to free, and a copy of it gives a digest without ending the stream.
*/
#include <nettle/sha2.h>
#include <string.h>

#include "lhersh.h"

#define HERSH_SHA256_MT "hersh.Sha256"

static int push_result(lua_State *L, const struct sha256_ctx *s, bool hex) {
  struct sha256_ctx done = *s; /* sha256_digest resets its context: a digest may be asked twice */
  unsigned char d[SHA256_DIGEST_SIZE];
  sha256_digest(&done, sizeof d, d);
  if (!hex) {
    lua_pushlstring(L, (const char *)d, sizeof d);
    return 1;
  }
  char text[2 * SHA256_DIGEST_SIZE];
  for (size_t i = 0; i < sizeof d; i++) {
    text[2 * i] = "0123456789abcdef"[d[i] >> 4];
    text[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
  }
  lua_pushlstring(L, text, sizeof text);
  return 1;
}

/* A string, not a number converted to one: hashing a number's text is a bug. */
static const char *check_bytes(lua_State *L, int idx, size_t *n) HERSH_MAY_RAISE {
  if (lua_type(L, idx) != LUA_TSTRING) luaL_error(L, "sha256: string expected, got %s", luaL_typename(L, idx));
  return lua_tolstring(L, idx, n);
}

static int one_shot(lua_State *L, bool hex) {
  size_t n;
  const char *p = check_bytes(L, 1, &n);
  struct sha256_ctx s;
  sha256_init(&s);
  sha256_update(&s, n, (const uint8_t *)p);
  return push_result(L, &s, hex);
}

static int l_sha256_hex(lua_State *L) { return one_shot(L, true); }
static int l_sha256_digest(lua_State *L) { return one_shot(L, false); }

static int l_sha256_new(lua_State *L) {
  struct sha256_ctx *s = lua_newuserdatauv(L, sizeof *s, 0);
  sha256_init(s);
  luaL_setmetatable(L, HERSH_SHA256_MT);
  return 1;
}

static int l_sha256_update(lua_State *L) {
  struct sha256_ctx *s = luaL_checkudata(L, 1, HERSH_SHA256_MT);
  size_t n;
  const char *p = check_bytes(L, 2, &n);
  sha256_update(s, n, (const uint8_t *)p);
  lua_settop(L, 1);
  return 1;
}

static int l_sha256_state_hex(lua_State *L) { return push_result(L, luaL_checkudata(L, 1, HERSH_SHA256_MT), true); }
static int l_sha256_state_digest(lua_State *L) { return push_result(L, luaL_checkudata(L, 1, HERSH_SHA256_MT), false); }

static const luaL_Reg sha256_meth[] = {
    {"update", l_sha256_update}, {"hex", l_sha256_state_hex}, {"digest", l_sha256_state_digest}, {NULL, NULL}};

static const luaL_Reg sha256_funcs[] = {
    {"hex", l_sha256_hex}, {"digest", l_sha256_digest}, {"new", l_sha256_new}, {NULL, NULL}};

/* Sets module.sha256 on the module table at the stack top. */
int hersh_lsha256_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_SHA256_MT, sha256_meth, NULL);
  luaL_newlib(L, sha256_funcs);
  lua_setfield(L, -2, "sha256");
  return 0;
}
