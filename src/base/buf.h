/* buf.h -- a growable text buffer: appends never fail loudly, an OOM sticks. */
#ifndef HERSH_BASE_BUF_H
#define HERSH_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hersh_buf {
  char *p;
  size_t len, cap;
  bool oom; /* an append failed: the text is incomplete */
} hersh_buf;

void hersh_buf_put(hersh_buf *b, const char *s, size_t n);
void hersh_buf_puts(hersh_buf *b, const char *s);
/* Plain text only (messages, headers): JSON goes through json.h's writer. */
void hersh_buf_printf(hersh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (NUL-terminated, caller frees), or NULL if an append failed. */
char *hersh_buf_take(hersh_buf *b);
/* Frees the text and empties the buffer (after a failed build). */
void hersh_buf_free(hersh_buf *b);

#endif
