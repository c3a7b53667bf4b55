/* cnum.h -- doubles to and from text with '.', whatever the process locale (a host or
** Lua's os.setlocale may set LC_NUMERIC to one with a decimal comma). */
#ifndef HERSH_BASE_CNUM_H
#define HERSH_BASE_CNUM_H

#include <stddef.h>

/* strtod in the C locale. */
double hersh_strtod_c(const char *s, char **end);
/* snprintf(buf, n, "%.*g", prec, d) in the C locale; its return value. */
int hersh_format_g_c(char *buf, size_t n, int prec, double d);

#endif
