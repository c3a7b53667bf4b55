/* utf8.h -- UTF-8 validation, shared by the JSON reader and writer. */
#ifndef HERSH_BASE_UTF8_H
#define HERSH_BASE_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (1..4); 0 for a bad one (overlong, surrogate,
** past U+10FFFF, cut short). n > 0. */
size_t hersh_utf8_seq(const unsigned char *s, size_t n);

#endif
