/*
** front_head.c -- the request heads the front takes (front_head.h). Strict on purpose:
** whatever libmicrohttpd could read another way (a decoding, a repeat it resolves, a
** line end it tolerates) is refused here, so the front and libmicrohttpd never disagree
** on a request: the refused one is read by libmicrohttpd alone.
*/
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/front_head.h"

typedef hersh_front_head_result result;

static bool is_tchar(unsigned char c) { return isalnum(c) || (c && strchr("!#$&'*+-.^_`|~", c)); }

/* A target's characters: no '%' or '+' (decoded by libmicrohttpd), no '#'. */
static bool is_target_char(unsigned char c) { return isalnum(c) || (c && strchr("-._~!$&'()*,;=:@/?", c)); }

static bool is_token(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s)) return false;
  return true;
}

/* Whether the comma-separated list holds `close`. */
static bool lists_close(const char *v) {
  while (*v) {
    v += strspn(v, " \t,");
    size_t n = strcspn(v, ",");
    size_t end = n;
    while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end == 5 && strncasecmp(v, "close", 5) == 0) return true;
    v += n;
  }
  return false;
}

/* The query after '?', split in place as libmicrohttpd splits it; false for an empty
** part or name, whose reading it resolves in its own way. */
static bool split_query(char *q, hersh_proxy_pairs *qs) {
  while (q) {
    char *amp = strchr(q, '&');
    if (amp) *amp = '\0';
    char *eq = strchr(q, '=');
    if (eq) *eq = '\0';
    if (!*q || qs->n == HERSH_PROXY_MAX_PAIRS) return false;
    qs->at[qs->n++] = (hersh_proxy_pair){q, eq ? eq + 1 : ""};
    q = amp ? amp + 1 : NULL;
  }
  return true;
}

/* The request line, cut in place: METHOD SP /target SP HTTP/1.1. */
static bool request_line(char *line, hersh_front_head *h) {
  char *sp = strchr(line, ' ');
  if (!sp) return false;
  *sp = '\0';
  char *target = sp + 1, *sp2 = strchr(target, ' ');
  if (!sp2 || strcmp(sp2 + 1, "HTTP/1.1") != 0 || !is_token(line) || target[0] != '/') return false;
  *sp2 = '\0';
  for (const char *c = target; *c; c++)
    if (!is_target_char((unsigned char)*c)) return false;
  h->req.method = line;
  h->req.path = target;
  h->head_method = strcmp(line, "HEAD") == 0;
  char *q = strchr(target, '?');
  if (!q) return true;
  *q = '\0';
  return q[1] == '\0' ? false : split_query(q + 1, &h->req.query);
}

/* One header line, cut in place; counts what the front must see once at most. */
static bool header_line(char *line, hersh_front_head *h, unsigned *hosts, unsigned *lengths, unsigned *conns) {
  char *colon = strchr(line, ':');
  if (!colon) return false;
  *colon = '\0';
  char *v = colon + 1;
  v += strspn(v, " \t");
  size_t n = strlen(v);
  if (!is_token(line) || (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))) return false;
  for (const char *c = v; *c; c++)
    if ((unsigned char)*c < 0x20 && *c != '\t') return false;
  if (strcasecmp(line, "transfer-encoding") == 0 || strcasecmp(line, "expect") == 0 ||
      strcasecmp(line, "upgrade") == 0)
    return false;
  if (strcasecmp(line, "host") == 0) (*hosts)++;
  if (strcasecmp(line, "connection") == 0) {
    (*conns)++;
    h->close = lists_close(v);
  }
  if (strcasecmp(line, "authorization") == 0) {
    if (h->authorization) return false;
    h->authorization = v;
  }
  if (strcasecmp(line, "content-length") == 0) {
    if (!*v || n > 18 || strspn(v, "0123456789") != n) return false;
    h->content_length = strtoull(v, NULL, 10);
    (*lengths)++;
  }
  if (h->req.headers.n == HERSH_PROXY_MAX_PAIRS) return false;
  h->req.headers.at[h->req.headers.n++] = (hersh_proxy_pair){line, v};
  return true;
}

result hersh_front_head_parse(const char *in, size_t n, hersh_front_head *h) {
  memset(&h->req, 0, sizeof h->req);
  h->authorization = NULL;
  h->content_length = 0;
  h->close = h->head_method = false;
  if (n > HERSH_FRONT_HEAD_MAX) n = HERSH_FRONT_HEAD_MAX;
  const char *end = NULL;
  for (size_t i = 0; i + 3 < n && !end; i++)
    if (memcmp(in + i, "\r\n\r\n", 4) == 0) end = in + i + 4;
  if (!end) return HERSH_FRONT_HEAD_PARTIAL;
  h->len = (size_t)(end - in);
  memcpy(h->text, in, h->len);
  h->text[h->len] = '\0';
  /* every CR before an LF, every LF after a CR, no NUL: the lines then cut cleanly */
  for (size_t i = 0; i < h->len; i++) {
    char c = h->text[i];
    if (c == '\0' || (c == '\r' && h->text[i + 1] != '\n') || (c == '\n' && (i == 0 || h->text[i - 1] != '\r')))
      return HERSH_FRONT_HEAD_OTHER;
  }
  unsigned hosts = 0, lengths = 0, conns = 0;
  char *line = h->text;
  for (bool first = true;; first = false) {
    char *cr = strstr(line, "\r\n");
    *cr = '\0';
    if (!*line) break; /* the empty line */
    if (first ? !request_line(line, h) : !header_line(line, h, &hosts, &lengths, &conns))
      return HERSH_FRONT_HEAD_OTHER;
    line = cr + 2;
  }
  if (hosts != 1 || lengths > 1 || conns > 1) return HERSH_FRONT_HEAD_OTHER;
  return HERSH_FRONT_HEAD_WHOLE;
}
