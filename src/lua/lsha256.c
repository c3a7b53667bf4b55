/*
** lsha256.c -- SHA-256 (FIPS 180-4) for Lua as core.sha256: hex(s), digest(s), and a
** streaming new():update(s):hex() / :digest(). Build ids hash whole uploads (up to
** 16 MiB) on the loop thread, where a Lua implementation took two seconds.
*/
#include <stdint.h>
#include <string.h>

#include "lhersh.h"

#define HERSH_SHA256_MT "hersh.Sha256"

typedef struct sha256 {
  uint32_t h[8];
  uint64_t length; /* bytes so far */
  unsigned char block[64];
  size_t used;
} sha256;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(sha256 *s, const unsigned char *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
  s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void init(sha256 *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->length = 0;
  s->used = 0;
}

static void update(sha256 *s, const unsigned char *p, size_t n) {
  s->length += n;
  while (n) {
    size_t take = 64 - s->used < n ? 64 - s->used : n;
    memcpy(s->block + s->used, p, take);
    s->used += take, p += take, n -= take;
    if (s->used == 64) {
      compress(s, s->block);
      s->used = 0;
    }
  }
}

static void finish(sha256 s, unsigned char out[32]) { /* by value: a digest may be asked twice */
  uint64_t bits = s.length * 8;
  unsigned char pad = 0x80, zero = 0, len[8];
  update(&s, &pad, 1);
  while (s.used != 56) update(&s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
  update(&s, len, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (unsigned char)(s.h[i] >> 24), out[4 * i + 1] = (unsigned char)(s.h[i] >> 16);
    out[4 * i + 2] = (unsigned char)(s.h[i] >> 8), out[4 * i + 3] = (unsigned char)s.h[i];
  }
}

static int push_result(lua_State *L, const sha256 *s, bool hex) {
  unsigned char d[32];
  finish(*s, d);
  if (!hex) {
    lua_pushlstring(L, (const char *)d, 32);
    return 1;
  }
  char text[65];
  for (int i = 0; i < 32; i++) {
    text[2 * i] = "0123456789abcdef"[d[i] >> 4];
    text[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
  }
  lua_pushlstring(L, text, 64);
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
  sha256 s;
  init(&s);
  update(&s, (const unsigned char *)p, n);
  return push_result(L, &s, hex);
}

static int l_sha256_hex(lua_State *L) { return one_shot(L, true); }
static int l_sha256_digest(lua_State *L) { return one_shot(L, false); }

static int l_sha256_new(lua_State *L) {
  sha256 *s = lua_newuserdatauv(L, sizeof *s, 0);
  init(s);
  luaL_setmetatable(L, HERSH_SHA256_MT);
  return 1;
}

static int l_sha256_update(lua_State *L) {
  sha256 *s = luaL_checkudata(L, 1, HERSH_SHA256_MT);
  size_t n;
  const char *p = check_bytes(L, 2, &n);
  update(s, (const unsigned char *)p, n);
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
  luaL_newmetatable(L, HERSH_SHA256_MT);
  luaL_newlib(L, sha256_meth);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, sha256_funcs);
  lua_setfield(L, -2, "sha256");
  return 0;
}
