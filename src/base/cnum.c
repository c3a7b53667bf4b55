/* cnum.c -- doubles to and from text in the C locale, for JSON. */
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cnum.h"

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void c_locale_init(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

static locale_t get_c_locale(void) {
  pthread_once(&c_locale_once, c_locale_init);
  return c_locale;
}

double hersh_strtod_c(const char *s, char **end) {
  locale_t c = get_c_locale();
  return c ? strtod_l(s, end, c) : strtod(s, end);
}

int hersh_format_g_c(char *buf, size_t n, int prec, double d) {
  locale_t c = get_c_locale();
  locale_t old = c ? uselocale(c) : (locale_t)0; /* this thread only, for this call */
  int len = snprintf(buf, n, "%.*g", prec, d);
  if (old) uselocale(old);
  return len;
}
