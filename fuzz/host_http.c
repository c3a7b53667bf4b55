/*
** host_http.c -- fuzzes the Host's REST API (host.api on hersh.httpd.serve, that is
** src/lua/lhttpd.c on src/http/server.c) with raw bytes sent as an HTTP request over
** loopback. The Host (fuzz/host_server.lua) has a temporary storage, removed at exit,
** and serves on 127.0.0.1, port 0; its handlers run on the Lua loop, which this thread
** drives while it waits for the answer. Beyond "no crash" it asserts what http_check.c
** checks: a well-formed HTTP answer, a body on every 4xx/5xx, no silence on a plain
** complete request, no hang (bounded wait); and that no Lua error escapes.
*/
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "http_check.h"
#include "lua_embed.h"

static lua_State *L;
static int port;
static char storage[4096];

static void pump(int ms) {
  char arg[16];
  int n = snprintf(arg, sizeof arg, "%d", ms);
  fuzz_lua_call(L, "pump", arg, (size_t)n, 0);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path) == 0 ? 0 : -1;
}

static void remove_storage(void) { nftw(storage, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Under $TMPDIR: fuzz/run.sh gives one it removes, so that a run that crashed (and
** never reached atexit) leaves nothing behind either. */
static void start(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(storage, sizeof storage, "%s/hersh-fuzz-host-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(storage)) fuzz_fail("mkdtemp failed", storage, 0);
  atexit(remove_storage);
  if (chmod(storage, 0755) != 0) fuzz_fail("chmod of the storage failed", storage, 0); /* the sandbox user walks it */
  L = fuzz_lua_open("host_server.lua");
  fuzz_lua_call(L, "start", storage, strlen(storage), 1);
  port = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (port <= 0) fuzz_fail("the Host API has no port", NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) start();
  fuzz_http_exchange(port, data, size, pump);
  fuzz_lua_call(L, "reset", NULL, 0, 0);
  return 0;
}
