/*
** prom.h -- a writer of the Prometheus text exposition format 0.0.4: metric families
** with HELP and TYPE, samples with escaped label values, histograms.
*/
#ifndef HERSH_HTTP_PROM_H
#define HERSH_HTTP_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define HERSH_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define HERSH_PROM_MAX_LABELS 8

typedef struct hersh_prom_label {
  const char *name, *value; /* the name a valid label name; the value any UTF-8 text */
} hersh_prom_label;

/* Starts a family: its HELP (escaped) and TYPE ("counter", "gauge", "histogram") lines. */
void hersh_prom_family(hersh_buf *b, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. */
void hersh_prom_sample(hersh_buf *b, const char *name, const hersh_prom_label *labels, size_t n_labels,
                       double value);
/* A histogram's samples: name_bucket{labels,le} cumulative for each bound and +Inf, then
** name_sum and name_count. counts[] holds n_bounds + 1 per-bucket (not cumulative)
** counts, the last one above every bound; n_labels < HERSH_PROM_MAX_LABELS. */
void hersh_prom_histogram(hersh_buf *b, const char *name, const hersh_prom_label *labels, size_t n_labels,
                          const double *bounds, const uint64_t *counts, size_t n_bounds, double sum);

#endif
