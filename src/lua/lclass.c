/*
** lclass.c -- the one way a binding file registers a Lua class: a metatable in the
** registry under its name, with the metamethods, and the methods as its __index.
*/
#include "lhersh.h"

void hersh_lclass_register(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods) {
  if (!luaL_newmetatable(L, name)) { /* a second module of the same state opens it again */
    lua_pop(L, 1);
    return;
  }
  if (metamethods) luaL_setfuncs(L, metamethods, 0);
  if (methods) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
