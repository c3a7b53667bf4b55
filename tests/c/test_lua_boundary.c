/*
** Module boundaries for C embedders: the Lua state hersh_watcher_manage_lua runs a
** chunk in is a program's (docs/architecture.md, "Lua modules"). The chunk tries what an
** attacker would (the Host's modules by require, package.loadlib, the C searchers with
** a cpath naming this build's module files) and raises if anything answers, which
** manage_lua reports as HERSH_E_LUA with the message.
*/
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hersh.h"

static int manage(hersh_loop *loop, const char *chunk) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "boundary";
  hersh_watcher *w;
  if (hersh_watcher_new(loop, &cfg, &w) != HERSH_OK) return HERSH_E_INVAL;
  return hersh_watcher_manage_lua(w, chunk, strlen(chunk), "=boundary");
}

TEST(embedder_state_has_no_host_modules) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop != NULL);
  /* The module files beside this test (lua/hersh/ in its build): the cpath the chunk tries. */
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  REQUIRE(n > 0);
  exe[n] = '\0';
  char chunk[4096];
  int len = snprintf(chunk, sizeof chunk,
      "local got = {}\n"
      "for _, name in ipairs{'hersh.os', 'hersh.httpd', 'hersh.http', 'hersh.store'} do\n"
      "  if pcall(require, name) then got[#got + 1] = 'require ' .. name end\n"
      "end\n"
      "if package.loadlib then got[#got + 1] = 'package.loadlib' end\n"
      "package.cpath = '%s/lua/?.so'\n"
      "for _, name in ipairs{'hersh.os', 'hersh.store'} do\n"
      "  package.loaded[name] = nil\n"
      "  if pcall(require, name) then got[#got + 1] = 'require ' .. name .. ' on the cpath' end\n"
      "end\n"
      "local core = require 'hersh.core'\n"
      "for _, f in ipairs{'spawn', 'listen', 'fs', 'http_serve', 'http_request', 'db_open'} do\n"
      "  if core[f] ~= nil then got[#got + 1] = 'core.' .. f end\n"
      "end\n"
      "if not core.watcher or not core.timer then got[#got + 1] = 'no engine' end\n"
      "if #got > 0 then error('reached: ' .. table.concat(got, ', ')) end\n"
      "return function() end\n",
      dirname(exe));
  REQUIRE(len > 0 && (size_t)len < sizeof chunk);
  int rc = manage(loop, chunk);
  if (rc != HERSH_OK) printf("manage_lua: %s\n", hersh_errmsg());
  CHECK_EQ_INT(rc, HERSH_OK);
  hersh_loop_free(loop);
}

int main(void) {
  RUN(embedder_state_has_no_host_modules);
  return check_summary();
}
