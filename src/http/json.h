/* json.h -- a strict JSON parser (RFC 8259) into hersh_values, for request bodies. */
#ifndef HERSH_HTTP_JSON_H
#define HERSH_HTTP_JSON_H

#include <stddef.h>

#include "hersh.h"

/* Arrays and objects nested deeper than this are refused: the parser recurses. */
#define HERSH_JSON_MAX_DEPTH 64

/*
** Parses exactly one JSON document (RFC 8259) of `len` bytes into *out.
** Returns HERSH_OK, or HERSH_E_INVAL with a message in `err` naming what is wrong
** and where, e.g. "invalid JSON at byte 12: expected ':'" (bytes count from 0), or
** HERSH_E_NOMEM. *out is nil on error. `text` need not be NUL-terminated.
** Integers that fit in int64 become INT, other numbers NUM; numbers too large for a
** double are refused. Duplicate keys: the last wins. Object keys cannot contain
** \u0000 (map keys are C strings); string values can. Safe on any thread.
*/
int hersh_json_parse(const char *text, size_t len, hersh_value *out, char *err, size_t errlen);

#endif
