/*
** upstream_head.c -- the response head parser and the chunked decoder of upstream_head.h.
*/
#include "http/upstream_head.h"

#include <string.h>
#include <strings.h>

#include "http/client.h"

enum {
  MAX_LENGTH_DIGITS = 18, /* fits an int64: a longer Content-Length is refused */
  MAX_CHUNK_DIGITS = 15,  /* fits an int64 too */
  MAX_SKIPPED = 16 << 10, /* bytes of chunk extensions, or of trailers */
};

/* The end of the head: the offset past its empty line, or 0 when it is not in buf yet. */
static size_t head_end(const char *buf, size_t n) {
  for (const char *lf = memchr(buf, '\n', n); lf; lf = memchr(lf + 1, '\n', n - (size_t)(lf + 1 - buf))) {
    const char *next = lf + 1;
    size_t rest = n - (size_t)(next - buf);
    if (rest >= 1 && next[0] == '\n') return (size_t)(next + 1 - buf);
    if (rest >= 2 && next[0] == '\r' && next[1] == '\n') return (size_t)(next + 2 - buf);
    if (rest == 0 || (rest == 1 && next[0] == '\r')) return 0;
  }
  return 0;
}

/* The line at *at without its line end (LF, or CR LF); advances *at past it. */
static const char *take_line(const char **at, const char *end, size_t *len) {
  const char *line = *at;
  const char *lf = memchr(line, '\n', (size_t)(end - line));
  *at = lf + 1; /* head_end found an LF for every line */
  *len = (size_t)(lf - line);
  if (*len > 0 && line[*len - 1] == '\r') (*len)--;
  return line;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* "HTTP/1.x SSS[ reason]": the status, or -1. */
static int status_line(const char *line, size_t len, bool *http11) {
  if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
      !is_digit(line[9]) || !is_digit(line[10]) || !is_digit(line[11]) || (len > 12 && line[12] != ' '))
    return -1;
  *http11 = line[7] == '1';
  int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  return status >= 100 && status <= 599 ? status : -1;
}

/* Whether the n bytes at s, a comma-separated list, hold the token tok. */
static bool has_token(const char *s, size_t n, const char *tok) {
  size_t t = strlen(tok);
  for (size_t i = 0; i < n;) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) i++;
    size_t start = i;
    while (i < n && s[i] != ',') i++;
    size_t end = i;
    while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
    if (end - start == t && strncasecmp(s + start, tok, t) == 0) return true;
  }
  return false;
}

static int refuse(const char **why, const char *text) {
  *why = text;
  return -1;
}

int hersh_upstream_parse_head(const char *buf, size_t n, bool head_request, hersh_upstream_head *h,
                              const char **why) {
  size_t total = head_end(buf, n);
  if (total == 0) return 0;
  const char *at = buf, *end = buf + total;
  size_t len;
  const char *line = take_line(&at, end, &len);
  bool http11 = false;
  int status = status_line(line, len, &http11);
  if (status < 0) return refuse(why, "the status line is not \"HTTP/1.x NNN reason\"");
  bool has_length = false, chunked = false, close = !http11;
  uint64_t length = 0;
  for (;;) {
    line = take_line(&at, end, &len);
    if (len == 0) break;
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)line[i];
      if (c == '\r' || c == '\0') return refuse(why, "a header line holds a CR or NUL");
    }
    if (line[0] == ' ' || line[0] == '\t') return refuse(why, "a header line is folded (obs-fold)");
    const char *colon = memchr(line, ':', len);
    if (!colon || !hersh_http_is_token(line, (size_t)(colon - line)))
      return refuse(why, "a header line is not \"name: value\"");
    size_t name_len = (size_t)(colon - line);
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    while (value_len && (*value == ' ' || *value == '\t')) value++, value_len--;
    while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t')) value_len--;
    if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
      uint64_t v = 0;
      if (value_len == 0 || value_len > MAX_LENGTH_DIGITS) return refuse(why, "a Content-Length is no length");
      for (size_t i = 0; i < value_len; i++) {
        if (!is_digit(value[i])) return refuse(why, "a Content-Length is no length");
        v = v * 10 + (uint64_t)(value[i] - '0');
      }
      if (has_length && v != length) return refuse(why, "two Content-Length values differ");
      has_length = true;
      length = v;
    } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
      if (chunked || value_len != 7 || strncasecmp(value, "chunked", 7) != 0)
        return refuse(why, "a Transfer-Encoding other than chunked");
      chunked = true;
    } else if (name_len == 10 && strncasecmp(line, "connection", 10) == 0) {
      if (has_token(value, value_len, "close")) close = true;
    }
  }
  if (chunked && (has_length || !http11)) return refuse(why, "Transfer-Encoding beside Content-Length, or in HTTP/1.0");
  if (status == 101) return refuse(why, "a protocol switch the proxy did not ask for");
  *h = (hersh_upstream_head){.status = status, .len = total, .length = length, .reusable = !close};
  if (head_request || status < 200 || status == 204 || status == 304) h->body = HERSH_UPSTREAM_BODY_NONE;
  else if (chunked) h->body = HERSH_UPSTREAM_BODY_CHUNKED;
  else if (has_length) h->body = HERSH_UPSTREAM_BODY_LENGTH;
  else {
    h->body = HERSH_UPSTREAM_BODY_CLOSE;
    h->reusable = false;
  }
  return 1;
}

/* ---- chunked bodies ------------------------------------------------------------------------ */

enum { SIZE, EXTENSION, SIZE_LF, DATA, DATA_CR, DATA_LF, TRAILER, TRAILER_LINE, LAST_LF, DONE };

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The size line ended: its data follows, or the trailers after the last chunk. */
static void sized(hersh_upstream_chunks *c) {
  c->state = c->left ? DATA : TRAILER;
  c->digits = 0;
  c->skipped = 0;
}

int hersh_upstream_chunks_next(hersh_upstream_chunks *c, const char *in, size_t n, size_t *used, const char **data,
                               size_t *len, const char **why) {
  *data = in;
  *len = 0;
  *used = 0;
  if (c->state == DONE) return 1;
  if (c->state == DATA) {
    size_t take = c->left < n ? (size_t)c->left : n;
    *len = take;
    *used = take;
    c->left -= take;
    if (c->left == 0) c->state = DATA_CR;
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    char ch = in[i];
    *used = i + 1;
    switch (c->state) {
    case SIZE:
      if (hex(ch) >= 0) {
        if (++c->digits > MAX_CHUNK_DIGITS) return refuse(why, "a chunk size is too large");
        c->left = c->left * 16 + (uint64_t)hex(ch);
      } else if (c->digits && ch == ';') {
        c->state = EXTENSION;
      } else if (c->digits && ch == '\r') {
        c->state = SIZE_LF;
      } else if (c->digits && ch == '\n') {
        sized(c);
      } else {
        return refuse(why, "a chunk size is no hexadecimal number");
      }
      break;
    case EXTENSION:
      if (ch == '\n') sized(c);
      else if (ch == '\0' || ++c->skipped > MAX_SKIPPED) return refuse(why, "a chunk extension is too long");
      break;
    case SIZE_LF:
      if (ch != '\n') return refuse(why, "a chunk size line does not end with CR LF");
      sized(c);
      break;
    case DATA_CR:
      if (ch == '\n') c->state = SIZE;
      else if (ch == '\r') c->state = DATA_LF;
      else return refuse(why, "a chunk's data is longer than its size");
      break;
    case DATA_LF:
      if (ch != '\n') return refuse(why, "a chunk's data does not end with CR LF");
      c->state = SIZE;
      break;
    case TRAILER:
      if (ch == '\n') {
        c->state = DONE;
        return 1;
      }
      c->state = ch == '\r' ? LAST_LF : TRAILER_LINE;
      if (++c->skipped > MAX_SKIPPED) return refuse(why, "the trailers are too long");
      break;
    case TRAILER_LINE:
      if (++c->skipped > MAX_SKIPPED) return refuse(why, "the trailers are too long");
      if (ch == '\n') c->state = TRAILER;
      break;
    case LAST_LF:
      if (ch != '\n') return refuse(why, "the last chunk does not end with CR LF");
      c->state = DONE;
      return 1;
    default:
      return refuse(why, "a chunked body in a state it cannot be in");
    }
    if (c->state == DATA) return 0; /* the data comes in the next call, as one piece */
  }
  return 0;
}
