/* A Lua module for spec/attack_sandbox_spec.lua: loading it puts the spec's process in
** a session keyring of its own (as a Host started in a login session has one) and adds
** a secret key there; it returns the key's id. */
#include <linux/keyctl.h>
#include <lua.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int luaopen_spec_keyring(lua_State *L);

int luaopen_spec_keyring(lua_State *L) {
  const char *name = lua_tostring(L, 1);
  if (!name || syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, "hersh-spec-session") < 0) return 0;
  long id = syscall(SYS_add_key, "user", name, "hersh-spec-secret", strlen("hersh-spec-secret"),
                    KEY_SPEC_SESSION_KEYRING);
  if (id < 0) return 0;
  lua_pushinteger(L, id);
  return 1;
}
