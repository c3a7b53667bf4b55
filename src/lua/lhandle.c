/*
** lhandle.c -- libuv handles owned by Lua objects (lhersh.h says how they live). One
** helper for what every object with a handle needs: its own allocation, the Lua
** references released at close while the state is alive, and a close callback that
** touches no Lua. The open ones are listed per Lua state, so the loop can close them
** all before it closes the state (docs/architecture.md, "Shutdown order").
*/
#include <stdlib.h>

#include "lhersh.h"

hersh_lhandle *hersh_lhandle_new(hersh_lmod *m, void *owner, void (*shutdown)(void *owner)) {
  hersh_lhandle *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->uv.handle.data = owner;
  h->m = m;
  h->shutdown = shutdown;
  for (int i = 0; i < HERSH_LHANDLE_REFS; i++) h->refs[i] = LUA_NOREF;
  return h;
}

bool hersh_lhandle_open(hersh_lhandle *h, int init_rc, hersh_lhandle **slot) {
  if (!h) return false;
  if (init_rc != 0) { /* libuv never saw it */
    free(h);
    return false;
  }
  h->slot = slot;
  *slot = h;
  h->next = h->m->handles;
  if (h->next) h->next->prev = h;
  h->m->handles = h;
  return true;
}

int hersh_lhandle_keep(hersh_lhandle *h, lua_State *L) HERSH_MAY_RAISE {
  for (int i = 0; i < HERSH_LHANDLE_REFS; i++) {
    if (h->refs[i] == LUA_NOREF) return h->refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  return luaL_error(L, "hersh: a handle keeps at most %d references", HERSH_LHANDLE_REFS);
}

static void closed(uv_handle_t *uvh) { free(uvh); } /* uv is the first member */

void hersh_lhandle_close(hersh_lhandle *h) {
  if (!h || !h->slot) return;
  lua_State *L = h->m->L;
  for (int i = 0; i < HERSH_LHANDLE_REFS; i++) luaL_unref(L, LUA_REGISTRYINDEX, h->refs[i]);
  *h->slot = NULL;
  h->slot = NULL;
  if (h->prev) h->prev->next = h->next;
  else h->m->handles = h->next;
  if (h->next) h->next->prev = h->prev;
  h->uv.handle.data = NULL;
  uv_close(&h->uv.handle, closed);
}

void hersh_lhandle_close_all(hersh_lmod *m) {
  while (m->handles) {
    hersh_lhandle *h = m->handles;
    if (h->shutdown) h->shutdown(h->uv.handle.data);
    if (m->handles == h) hersh_lhandle_close(h); /* a shutdown that left it open */
  }
}
