/*
** counter.c -- the Hersh engine embedded in a C program.
**
** A C reducer counts "tick" messages in the watcher's context store and stops on
** "stop". It runs in one of two ways:
**
**   ./counter              sends itself three ticks and a stop, runs the loop until
**                          the watcher is done, and exits 0 (make run, the install test)
**   LISTEN_FDS=1 ./counter a long-running program, as the Hersh Host starts it: it
**                          serves its WatcherAPI on the listening socket handed over
**   ./counter --port N     as fd 3 (or on 127.0.0.1:N), counts a tick of its own clock
**                          every second and every "tick" sent to /watcher/message,
**                          and stops cleanly on SIGTERM, SIGINT or a "stop" message.
*/
#define _POSIX_C_SOURCE 200809L /* uv.h needs the POSIX types */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <hersh.h>

static int add_one(hersh_value *count, void *ud, hersh_errbuf *err) {
  (void)ud;
  if (count->type == HERSH_T_NIL) *count = hersh_int(0); /* the first tick */
  if (count->type != HERSH_T_INT) return hersh_errorf(err, "count is not an integer");
  count->as.i++;
  return HERSH_OK;
}

static int count_tick(hersh_ctx *ctx) {
  int rc = hersh_ctx_update(ctx, "count", add_one, NULL);
  if (rc != HERSH_OK) return rc;
  char line[64];
  snprintf(line, sizeof line, "Counter: %lld", (long long)hersh_ctx_get(ctx, "count")->as.i);
  return hersh_ctx_print(ctx, line);
}

/* ud is non-NULL when the program serves: then a clock ticks once a second too. */
static int reduce(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  if (ud) {
    hersh_watch_value clock;
    int rc = hersh_ctx_watch_tick(ctx, "clock", 1.0, &clock);
    if (rc != HERSH_OK) return rc;
    if (clock.triggered && (rc = count_tick(ctx)) != HERSH_OK) return rc;
  }
  if (!msg) return HERSH_OK; /* the init run, a clock run */
  if (strcmp(msg->content, "stop") == 0) return hersh_stop(ctx, "asked to stop");
  if (strcmp(msg->content, "tick") != 0) return HERSH_OK;
  return count_tick(ctx);
}

static void cleanup(hersh_ctx *ctx, void *ud) {
  (void)ud;
  const hersh_value *count = hersh_ctx_get(ctx, "count");
  char line[64];
  snprintf(line, sizeof line, "Cleanup: stopped at %lld", count ? (long long)count->as.i : 0LL);
  hersh_ctx_print(ctx, line);
}

/* SIGTERM (the Host's stop) or SIGINT: stop the watcher, so its cleanup runs. */
static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  hersh_watcher_stop(sig->data); /* from a handle: queued, handled when this returns */
}

static int fail(const char *what) {
  fprintf(stderr, "counter: %s: %s\n", what, hersh_errmsg());
  return 1;
}

static int demo(hersh_loop *loop, hersh_watcher *w) {
  static const char *messages[] = {"tick", "tick", "tick", "stop"};
  for (size_t i = 0; i < sizeof messages / sizeof *messages; i++)
    if (hersh_watcher_send(w, messages[i], strlen(messages[i])) != HERSH_OK)
      return fail("hersh_watcher_send");
  hersh_loop_run(loop); /* returns once the watcher is terminal */
  return 0;
}

static int serve(hersh_loop *loop, hersh_watcher *w, const hersh_api_options *api) {
  if (hersh_watcher_serve(w, api) != HERSH_OK) return fail("hersh_watcher_serve");
  fprintf(stderr, "counter: WatcherAPI on http://127.0.0.1:%d\n", hersh_watcher_api_port(w));
  uv_signal_t sigs[2];
  int signums[2] = {SIGTERM, SIGINT};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(hersh_loop_uv(loop), &sigs[i]);
    sigs[i].data = w;
    uv_signal_start(&sigs[i], on_signal, signums[i]);
  }
  hersh_loop_run(loop); /* until a stop; hersh_loop_free finishes the closes below */
  for (int i = 0; i < 2; i++) uv_close((uv_handle_t *)&sigs[i], NULL);
  return 0;
}

int main(int argc, char **argv) {
  hersh_api_options api;
  hersh_api_options_init(&api);
  const char *fds = getenv("LISTEN_FDS");
  bool serving = fds && strcmp(fds, "1") == 0;
  if (serving) {
    api.listen_fd = 3; /* the systemd protocol, as the Host hands the published port over */
    unsetenv("LISTEN_FDS");
  } else if (argc == 3 && strcmp(argv[1], "--port") == 0) {
    serving = true;
    api.port = atoi(argv[2]);
  } else if (argc != 1) {
    fprintf(stderr, "usage: counter [--port N]   (or LISTEN_FDS=1 with a listening socket on fd 3)\n");
    return 2;
  }

  hersh_loop *loop = hersh_loop_new();
  if (!loop) return fail("hersh_loop_new");

  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "counter";
  hersh_watcher *w;
  if (hersh_watcher_new(loop, &cfg, &w) != HERSH_OK) return fail("hersh_watcher_new");
  if (hersh_watcher_manage(w, reduce, serving ? w : NULL) != HERSH_OK) return fail("hersh_watcher_manage");
  if (serving) hersh_watcher_on_cleanup(w, cleanup, NULL);
  if (hersh_watcher_start(w) != HERSH_OK) return fail("hersh_watcher_start");

  int rc = serving ? serve(loop, w, &api) : demo(loop, w);
  int status = rc == 0 && hersh_watcher_state(w) == HERSH_STOPPED ? 0 : 1;
  hersh_watcher_free(w);
  hersh_loop_free(loop);
  return status;
}
