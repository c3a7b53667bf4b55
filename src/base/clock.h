/* clock.h -- wall time for logs and messages, monotonic time for deadlines. */
#ifndef HERSH_BASE_CLOCK_H
#define HERSH_BASE_CLOCK_H

#include <stdint.h>

double hersh_wall_now(void);    /* seconds since the epoch */
double hersh_wall_coarse(void); /* the same, to a few ms: for stamps on hot paths */
int64_t hersh_mono_ns(void);    /* monotonic nanoseconds (coarse: a few ms) */
int64_t hersh_mono_tick_ns(void); /* how far hersh_mono_ns may lag the precise clock */

#endif
