/* lua_embed.h -- a Lua 5.4 state with the repository's Lua modules, for the Lua-side targets. */
#ifndef HERSH_FUZZ_LUA_EMBED_H
#define HERSH_FUZZ_LUA_EMBED_H

#include <stddef.h>

#include <lua.h>

/* A state with the standard libraries, hersh.core and hersh.json preloaded and the
** repository's lua/ on package.path, that has run fuzz/<script> and keeps the table
** it returned. Aborts when any of that fails. */
lua_State *fuzz_lua_open(const char *script);

/* Calls the script's function `fn` with one string argument (NULL: none) and leaves
** `nresults` results on the stack. Any Lua error is a finding: it prints the message
** with its traceback and aborts. */
void fuzz_lua_call(lua_State *L, const char *fn, const char *arg, size_t len, int nresults);

#endif
