/*
** prom.c -- the Prometheus text exposition format 0.0.4
** (https://prometheus.io/docs/instrumenting/exposition_formats/). Label values escape
** backslash, double quote and newline; HELP text escapes backslash and newline.
*/
#include "http/prom.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

/* Appends s with a backslash before each character of `special` and newline as \n;
** a byte that is not valid UTF-8 becomes U+FFFD, which the format requires. */
static void put_escaped(hersh_buf *b, const char *s, const char *special) {
  const unsigned char *p = (const unsigned char *)s;
  size_t left = strlen(s);
  while (left) {
    size_t n = hersh_utf8_seq(p, left);
    if (n == 0) {
      hersh_buf_puts(b, "\xEF\xBF\xBD");
      n = 1;
    } else if (*p == '\n') {
      hersh_buf_put(b, "\\n", 2);
    } else {
      if (strchr(special, *p)) hersh_buf_put(b, "\\", 1);
      hersh_buf_put(b, (const char *)p, n);
    }
    p += n;
    left -= n;
  }
}

/* Go ParseFloat's syntax, the shortest text that reads back as the same double. */
static void format_number(char out[32], double v) {
  if (isnan(v)) return (void)snprintf(out, 32, "NaN");
  if (isinf(v)) return (void)snprintf(out, 32, "%s", v > 0 ? "+Inf" : "-Inf");
  snprintf(out, 32, "%.15g", v);
  if (strtod(out, NULL) != v) snprintf(out, 32, "%.17g", v);
}

void hersh_prom_family(hersh_buf *b, const char *name, const char *type, const char *help) {
  hersh_buf_printf(b, "# HELP %s ", name);
  put_escaped(b, help, "\\");
  hersh_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

void hersh_prom_sample(hersh_buf *b, const char *name, const hersh_prom_label *labels, size_t n_labels,
                       double value) {
  hersh_buf_puts(b, name);
  for (size_t i = 0; i < n_labels; i++) {
    hersh_buf_puts(b, i ? "," : "{");
    hersh_buf_puts(b, labels[i].name);
    hersh_buf_put(b, "=\"", 2);
    put_escaped(b, labels[i].value, "\\\"");
    hersh_buf_put(b, "\"", 1);
  }
  if (n_labels) hersh_buf_put(b, "}", 1);
  char number[32];
  format_number(number, value);
  hersh_buf_printf(b, " %s\n", number);
}

void hersh_prom_histogram(hersh_buf *b, const char *name, const hersh_prom_label *labels, size_t n_labels,
                          const double *bounds, const uint64_t *counts, size_t n_bounds, double sum) {
  if (n_labels >= HERSH_PROM_MAX_LABELS) return hersh_buf_puts(b, "# too many labels\n");
  char series[128];
  hersh_prom_label with_le[HERSH_PROM_MAX_LABELS];
  if (n_labels) memcpy(with_le, labels, n_labels * sizeof *labels);
  snprintf(series, sizeof series, "%s_bucket", name);
  uint64_t cumulative = 0;
  char le[32];
  for (size_t i = 0; i <= n_bounds; i++) {
    cumulative += counts[i];
    if (i < n_bounds) format_number(le, bounds[i]);
    else snprintf(le, sizeof le, "+Inf");
    with_le[n_labels] = (hersh_prom_label){"le", le};
    hersh_prom_sample(b, series, with_le, n_labels + 1, (double)cumulative);
  }
  snprintf(series, sizeof series, "%s_sum", name);
  hersh_prom_sample(b, series, labels, n_labels, sum);
  snprintf(series, sizeof series, "%s_count", name);
  hersh_prom_sample(b, series, labels, n_labels, (double)cumulative);
}
