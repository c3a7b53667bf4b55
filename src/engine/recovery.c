/*
** recovery.c -- the built-in recovery policy, for C embedders. Lua watchers use
** lua/hersh/recovery.lua, which states the same rule; spec/recovery_spec.lua and
** tests/c/test_engine.c check both against the same sequence.
*/
#include <math.h>

#include "engine.h"

void hersh_recovery_defaults(hersh_recovery *p) {
  *p = (hersh_recovery){
      .min_failures = 3,
      .max_failures = 6,
      .base_delay = 5,
      .max_delay = 300,
      .light_delays = {15, 30, 60},
      .n_light_delays = 3,
  };
}

hersh_decision hersh_recovery_decide(int n, const hersh_recovery *p) {
  if (n >= p->max_failures) return (hersh_decision){HERSH_ACT_CRASH, 0};
  if (n >= p->min_failures) {
    double delay = p->base_delay * pow(2, n - p->min_failures);
    return (hersh_decision){HERSH_ACT_RECOVER, delay < p->max_delay ? delay : p->max_delay};
  }
  double delay = 0;
  if (p->n_light_delays > 0) {
    int i = n - 1 < p->n_light_delays ? n - 1 : p->n_light_delays - 1;
    delay = p->light_delays[i < 0 ? 0 : i];
  }
  return (hersh_decision){HERSH_ACT_RETRY, delay};
}
