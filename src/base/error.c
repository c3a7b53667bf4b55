/* error.c -- error codes, their stable names, and the per-thread last message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hersh.h"

static _Thread_local char last_message[512];

const char *hersh_errcode(int err) {
  switch (err) {
  case HERSH_OK: return "OK";
  case HERSH_E_INVAL: return "EINVAL";
  case HERSH_E_NOMEM: return "ENOMEM";
  case HERSH_E_QUEUE_FULL: return "EQUEUEFULL";
  case HERSH_E_STOPPED: return "ESTOPPED";
  case HERSH_E_STATE: return "ESTATE";
  case HERSH_E_TIMEOUT: return "ETIMEOUT";
  case HERSH_E_RUNTIME: return "ERUNTIME";
  case HERSH_E_LIMIT: return "ELIMIT";
  case HERSH_E_NOTFOUND: return "ENOTFOUND";
  case HERSH_E_SYS: return "ESYS";
  case HERSH_E_LUA: return "ELUA";
  default: return "EUNKNOWN";
  }
}

const char *hersh_errmsg(void) { return last_message; }

void hersh_errclear(void) { last_message[0] = '\0'; }

int hersh_fail_with(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_message, sizeof last_message, fmt, ap);
  va_end(ap);
  return err;
}

int hersh_errorf(hersh_errbuf *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return HERSH_E_RUNTIME;
}

char *hersh_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

char *hersh_vformat(const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return NULL;
  char *p = malloc((size_t)n + 1);
  if (p) vsnprintf(p, (size_t)n + 1, fmt, ap);
  return p;
}
