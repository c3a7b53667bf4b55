/*
** capture.c -- a child's output, line by line: each line goes to the log file as
** "<time> <stream> <text>" (rotated when it would pass log_max) and into a ring of
** the most recent lines. Lines longer than MAX_LINE are cut into pieces.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proc/proc.h"

enum { MAX_LINE = 16 * 1024 };

typedef struct tail_line {
  double time;
  int stream;
  char *text;
  size_t len;
} tail_line;

struct hersh_capture {
  char *log_path;
  int log_fd; /* -1 when there is no log, or it could not be opened */
  size_t log_size, log_max;
  int log_keep;
  tail_line *tail;
  size_t tail_cap, tail_head, tail_count;
  char partial[3][MAX_LINE]; /* per stream: a line still waiting for its newline */
  size_t partial_len[3];
};

static int open_log(const char *path, size_t *size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  struct stat st;
  *size = (fd >= 0 && fstat(fd, &st) == 0) ? (size_t)st.st_size : 0;
  return fd;
}

hersh_capture *hersh_capture_new(const char *log_path, size_t log_max, int log_keep, size_t tail_lines) {
  hersh_capture *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->log_fd = -1;
  c->log_max = log_max;
  c->log_keep = log_keep;
  c->tail_cap = tail_lines;
  if (tail_lines && !(c->tail = calloc(tail_lines, sizeof *c->tail))) {
    free(c);
    return NULL;
  }
  if (log_path) {
    if (!(c->log_path = hersh_strdup(log_path))) {
      hersh_capture_free(c);
      return NULL;
    }
    c->log_fd = open_log(log_path, &c->log_size);
    if (c->log_fd < 0) {
      hersh_fail_with(HERSH_E_SYS, "cannot open %s: %s", log_path, strerror(errno));
      hersh_capture_free(c);
      return NULL;
    }
  }
  return c;
}

void hersh_capture_free(hersh_capture *c) {
  if (!c) return;
  if (c->log_fd >= 0) close(c->log_fd);
  for (size_t i = 0; i < c->tail_count; i++) free(c->tail[(c->tail_head + i) % c->tail_cap].text);
  free(c->tail);
  free(c->log_path);
  free(c);
}

/* runtime.log -> runtime.log.1 -> ... -> runtime.log.N (the oldest is dropped). */
static void rotate(hersh_capture *c) {
  close(c->log_fd);
  c->log_fd = -1;
  size_t n = strlen(c->log_path) + 16;
  char *from = malloc(n), *to = malloc(n);
  if (from && to) {
    for (int i = c->log_keep; i >= 1; i--) {
      snprintf(to, n, "%s.%d", c->log_path, i);
      if (i == 1) snprintf(from, n, "%s", c->log_path);
      else snprintf(from, n, "%s.%d", c->log_path, i - 1);
      if (rename(from, to) != 0 && errno != ENOENT) break;
    }
    if (c->log_keep <= 0) unlink(c->log_path);
  }
  free(from);
  free(to);
  c->log_fd = open_log(c->log_path, &c->log_size);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* a full disk loses log lines, not the program */
    p += w;
    n -= (size_t)w;
  }
}

static void log_line(hersh_capture *c, double now, int stream, const char *line, size_t len) {
  if (c->log_fd < 0) return;
  time_t secs = (time_t)now;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char head[64];
  size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  h += (size_t)snprintf(head + h, sizeof head - h, ".%03dZ %s ", (int)((now - (double)secs) * 1000),
                        stream == HERSH_STDERR ? "stderr" : "stdout");
  if (c->log_max && c->log_size + h + len + 1 > c->log_max && c->log_size > 0) rotate(c);
  if (c->log_fd < 0) return;
  write_all(c->log_fd, head, h);
  write_all(c->log_fd, line, len);
  write_all(c->log_fd, "\n", 1);
  c->log_size += h + len + 1;
}

static void keep_line(hersh_capture *c, double now, int stream, const char *line, size_t len) {
  if (!c->tail_cap) return;
  char *text = malloc(len + 1);
  if (!text) return;
  memcpy(text, line, len);
  text[len] = '\0';
  tail_line *slot;
  if (c->tail_count < c->tail_cap) {
    slot = &c->tail[(c->tail_head + c->tail_count++) % c->tail_cap];
  } else {
    slot = &c->tail[c->tail_head];
    free(slot->text);
    c->tail_head = (c->tail_head + 1) % c->tail_cap;
  }
  *slot = (tail_line){now, stream, text, len};
}

static void emit(hersh_capture *c, int stream, const char *line, size_t len,
                 void (*on_line)(int, const char *, size_t, void *), void *ud) {
  double now = hersh_wall_now();
  log_line(c, now, stream, line, len);
  keep_line(c, now, stream, line, len);
  if (on_line) on_line(stream, line, len, ud);
}

void hersh_capture_feed(hersh_capture *c, int stream, const char *data, size_t len,
                        void (*on_line)(int stream, const char *line, size_t len, void *ud), void *ud) {
  char *buf = c->partial[stream];
  size_t *have = &c->partial_len[stream];
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\n') {
      emit(c, stream, buf, *have, on_line, ud);
      *have = 0;
    } else {
      if (*have == MAX_LINE) { /* an endless line: log it in pieces */
        emit(c, stream, buf, *have, on_line, ud);
        *have = 0;
      }
      buf[(*have)++] = data[i];
    }
  }
}

void hersh_capture_flush(hersh_capture *c, int stream,
                         void (*on_line)(int stream, const char *line, size_t len, void *ud), void *ud) {
  if (c->partial_len[stream]) emit(c, stream, c->partial[stream], c->partial_len[stream], on_line, ud);
  c->partial_len[stream] = 0;
}

void hersh_capture_tail(const hersh_capture *c, size_t n,
                        void (*fn)(double time, int stream, const char *line, size_t len, void *ud), void *ud) {
  size_t skip = (n && n < c->tail_count) ? c->tail_count - n : 0;
  for (size_t i = skip; i < c->tail_count; i++) {
    const tail_line *l = &c->tail[(c->tail_head + i) % c->tail_cap];
    fn(l->time, l->stream, l->text, l->len, ud);
  }
}
