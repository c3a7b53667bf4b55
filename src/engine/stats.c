/*
** stats.c -- a watcher's runs counted as they end: by trigger and outcome, and a
** histogram of their durations. Plain increments on the loop thread; observers read a
** copy through hersh_watcher_snapshot there.
*/
#include <string.h>

#include "engine.h"

/* From a fast reducer (a Lua table update, well under a millisecond) up past the 10 s
** where a run is more likely stuck than slow. */
const double hersh_run_bucket_bounds[HERSH_RUN_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1,   0.25,   0.5,   1,    2.5,   10};

static const char *const trigger_names[HERSH_RUN_TRIGGERS] = {"init", "retry", "recover", "message", "vars"};
static const char *const outcome_names[HERSH_RUN_OUTCOMES] = {"ok",     "failed",  "timeout", "stopped",
                                                              "killed", "crashed", "limit"};

const char *hersh_run_trigger_name(hersh_run_trigger t) {
  return (unsigned)t < HERSH_RUN_TRIGGERS ? trigger_names[t] : "unknown";
}

const char *hersh_run_outcome_name(hersh_run_outcome o) {
  return (unsigned)o < HERSH_RUN_OUTCOMES ? outcome_names[o] : "unknown";
}

/* The trigger's reason names its kind; the engine sets only these five. */
static hersh_run_trigger trigger_kind(const hersh_trigger *t) {
  if (t->user) return HERSH_RUN_MESSAGE;
  if (!t->watcher) return HERSH_RUN_VARS;
  for (int k = HERSH_RUN_INIT; k <= HERSH_RUN_RECOVER; k++)
    if (strcmp(t->reason, trigger_names[k]) == 0) return (hersh_run_trigger)k;
  return HERSH_RUN_INIT;
}

void hersh_stats_count_run(hersh_run_stats *s, const hersh_trigger *t, hersh_run_outcome o, double seconds) {
  if (seconds < 0) seconds = 0;
  s->runs[trigger_kind(t)][o]++;
  size_t b = 0;
  while (b < HERSH_RUN_BUCKETS && seconds > hersh_run_bucket_bounds[b]) b++;
  s->duration_buckets[b]++;
  s->duration_sum += seconds;
  s->duration_count++;
}
