/* common.h -- what several fuzz targets check: valid UTF-8, value depth, failing loudly. */
#ifndef HERSH_FUZZ_COMMON_H
#define HERSH_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "hersh.h"

/* Prints the broken property (and up to 200 bytes of `data`) and aborts: libFuzzer
** then keeps the input as a crash. */
void fuzz_fail(const char *what, const char *data, size_t len) __attribute__((noreturn));

/* RFC 3629 UTF-8, written apart from hersh_utf8_seq so that it can disagree with it. */
bool fuzz_utf8_valid(const unsigned char *s, size_t n);

/* Levels of lists and maps: a scalar is 0, [] is 1, [[1]] is 2. */
int fuzz_value_depth(const hersh_value *v);

/* hersh_value_json, aborting when it fails (it only fails out of memory). */
char *fuzz_json(const hersh_value *v);

#endif
