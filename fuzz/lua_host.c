/*
** lua_host.c -- fuzzes the Host's Lua input checks: the Dockerfile parser
** (lua/host/dockerfile.lua: parse, command, copy_targets) and the create-request
** validation (host.validate in lua/host/host.lua, with paths.check_files), on
** Dockerfiles, JSON bodies and file lists built from the input (fuzz/lua_host.lua).
** Beyond "no crash" it asserts that every refusal is a clean one: nil and a message
** that names the Dockerfile line, or nil and {status = 4xx, message}; any Lua error
** is a finding (abort).
*/
#include <stdint.h>

#include "common.h"
#include "lua_embed.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) L = fuzz_lua_open("lua_host.lua");
  fuzz_lua_call(L, "one", (const char *)data, size, 0);
  return 0;
}
