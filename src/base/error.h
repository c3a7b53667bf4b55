/*
** error.h -- the calling thread's last failure message (read by hersh_errmsg) and the
** small string helpers every layer uses to build one.
*/
#ifndef HERSH_BASE_ERROR_H
#define HERSH_BASE_ERROR_H

#include <stdarg.h>

/* Forgets the calling thread's last message (before calling user code whose own
** failure should not be mistaken for an older one). */
void hersh_errclear(void);
/* Records the message of a failure for hersh_errmsg() and returns `err`. */
int hersh_fail_with(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *hersh_strdup(const char *s);                /* malloc'd, NULL on failure */
char *hersh_vformat(const char *fmt, va_list ap); /* malloc'd, NULL on failure */

#endif
