/*
** counter.c -- the Hersh engine embedded in a C program.
**
** A C reducer counts "tick" messages in the watcher's context store and stops on
** "stop". main sends the messages itself, then runs the loop until the watcher is done.
*/
#include <stdio.h>
#include <string.h>

#include <hersh.h>

static int add_one(hersh_value *count, void *ud, hersh_errbuf *err) {
  (void)ud;
  if (count->type == HERSH_T_NIL) *count = hersh_int(0); /* the first tick */
  if (count->type != HERSH_T_INT) return hersh_errorf(err, "count is not an integer");
  count->as.i++;
  return HERSH_OK;
}

static int reduce(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ud;
  if (!msg) return HERSH_OK; /* the init run has no message */
  if (strcmp(msg->content, "stop") == 0) return hersh_stop(ctx, "asked to stop");
  if (strcmp(msg->content, "tick") != 0) return HERSH_OK;

  int rc = hersh_ctx_update(ctx, "count", add_one, NULL);
  if (rc != HERSH_OK) return rc;
  char line[64];
  snprintf(line, sizeof line, "Counter: %lld", (long long)hersh_ctx_get(ctx, "count")->as.i);
  return hersh_ctx_print(ctx, line);
}

static int fail(const char *what) {
  fprintf(stderr, "counter: %s: %s\n", what, hersh_errmsg());
  return 1;
}

int main(void) {
  hersh_loop *loop = hersh_loop_new();
  if (!loop) return fail("hersh_loop_new");

  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = "counter";
  hersh_watcher *w;
  if (hersh_watcher_new(loop, &cfg, &w) != HERSH_OK) return fail("hersh_watcher_new");
  if (hersh_watcher_manage(w, reduce, NULL) != HERSH_OK) return fail("hersh_watcher_manage");
  if (hersh_watcher_start(w) != HERSH_OK) return fail("hersh_watcher_start");

  static const char *messages[] = {"tick", "tick", "tick", "stop"};
  for (size_t i = 0; i < sizeof messages / sizeof *messages; i++)
    if (hersh_watcher_send(w, messages[i], strlen(messages[i])) != HERSH_OK)
      return fail("hersh_watcher_send");

  hersh_loop_run(loop); /* returns once the watcher is terminal */
  int status = hersh_watcher_state(w) == HERSH_STOPPED ? 0 : 1;
  hersh_watcher_free(w);
  hersh_loop_free(loop);
  return status;
}
