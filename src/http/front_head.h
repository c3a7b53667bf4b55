/*
** front_head.h -- the front's reading of a request head (front.c). It takes only a head
** it reads exactly as libmicrohttpd with server.c's decoding would: HTTP/1.1, CR LF line
** ends, a target of plain characters (no '%' or '+' to decode), one Host, no body framing
** but one Content-Length, no Expect or Upgrade, no folded or odd line. Anything else is
** HERSH_FRONT_HEAD_OTHER and goes to libmicrohttpd, unread. Pure: no I/O, no allocation.
*/
#ifndef HERSH_HTTP_FRONT_HEAD_H
#define HERSH_HTTP_FRONT_HEAD_H

#include <stdbool.h>
#include <stddef.h>

#include "http/proxy_route.h"

/* The longest head the front reads (a longer one is libmicrohttpd's). */
enum { HERSH_FRONT_HEAD_MAX = 8192 };

typedef enum {
  HERSH_FRONT_HEAD_WHOLE,   /* a head the front takes: its bytes are h->len */
  HERSH_FRONT_HEAD_PARTIAL, /* no empty line yet */
  HERSH_FRONT_HEAD_OTHER    /* one the front is not sure of */
} hersh_front_head_result;

typedef struct hersh_front_head {
  size_t len;                          /* the head's bytes, its empty line included */
  char text[HERSH_FRONT_HEAD_MAX + 1]; /* a copy, cut into the strings below */
  hersh_proxy_request req;             /* method, path, headers, query: into text */
  const char *authorization;           /* its value, or NULL */
  unsigned long long content_length;   /* 0: none */
  bool close;                          /* Connection: close */
  bool head_method;                    /* HEAD: the answer has no body */
} hersh_front_head;

/* Reads the head at the start of in[0, n). */
hersh_front_head_result hersh_front_head_parse(const char *in, size_t n, hersh_front_head *h);

#endif
