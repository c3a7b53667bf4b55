/*
** watcher_http.c -- fuzzes the WatcherAPI (src/http/watcher_api.c on src/http/server.c)
** with raw bytes sent as an HTTP request over loopback. One watcher serves on
** 127.0.0.1, port 0, for the whole run; its C reducer copies each message into the
** context ("last"), so the bytes of POST /watcher/message come back out through
** /watcher/context and /watcher/logs. Beyond "no crash" it asserts what http_check.c
** checks: a well-formed HTTP answer, a body on every 4xx/5xx, no silence on a plain
** complete request, no hang (bounded wait).
*/
#include <stdint.h>
#include <stdlib.h>

#include "common.h"
#include "http_check.h"

static hersh_loop *loop;
static int port;

static int reduce(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ud;
  if (!msg) return HERSH_OK;
  hersh_value last = hersh_strn(msg->content, msg->len);
  return hersh_ctx_set(ctx, "last", &last);
}

/* The reduces of the messages run on this thread, the loop's. */
static void pump(int ms) {
  if (hersh_loop_run_for(loop, ms / 1000.0) != HERSH_OK) fuzz_fail("the loop failed", hersh_errmsg(), 0);
}

static void start(void) {
  hersh_watcher *w;
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "fuzz";
  hersh_api_options o;
  hersh_api_options_init(&o);
  o.port = 0;
  loop = hersh_loop_new();
  if (!loop || hersh_watcher_new(loop, &cfg, &w) != HERSH_OK || hersh_watcher_manage(w, reduce, NULL) != HERSH_OK ||
      hersh_watcher_serve(w, &o) != HERSH_OK || hersh_watcher_start(w) != HERSH_OK)
    fuzz_fail("cannot start the watcher and its API", hersh_errmsg(), 0);
  port = hersh_watcher_api_port(w);
  if (port <= 0) fuzz_fail("the WatcherAPI has no port", NULL, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!loop) start();
  fuzz_http_exchange(port, data, size, pump);
  return 0;
}
