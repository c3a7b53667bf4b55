/*
** capture.c -- a child's output, line by line: each line goes to the log file as
** "<time> <stream> <text>" (rotated when it would pass log_max) and into a ring of
** the most recent lines. Lines longer than MAX_LINE are cut into pieces. A line the
** log cannot take (a full disk) is dropped whole, never half-written; the first loss is
** said once on stderr, later lines try again, and the first line written afterwards
** says in the log how many were lost. The Host's own lines about the child
** (hersh_capture_note) go to the log alone, on the stream "host".
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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
  size_t lost;   /* lines the log could not take since the last one it did */
  int lost_errno; /* why the first of them was lost */
  char partial[3][MAX_LINE]; /* per stream: a line still waiting for its newline */
  size_t partial_len[3];
};

/* O_NONBLOCK: whatever `path` turns out to be, the open never waits (a FIFO would). */
static int open_log(const char *path, size_t *size) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
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

/* One whole entry or nothing: a write cut short (a full disk) is cut off the file again,
** so the next entry does not start in the middle of a line. */
static int write_entry(hersh_capture *c, const char *head, size_t h, const char *line, size_t len) {
  struct iovec iov[3] = {{(void *)head, h}, {(void *)line, len}, {(void *)"\n", 1}};
  size_t total = h + len + 1, done = 0;
  int i = 0;
  while (done < total) {
    ssize_t w = writev(c->log_fd, iov + i, 3 - i);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = w < 0 ? errno : ENOSPC;
      if (done && ftruncate(c->log_fd, (off_t)c->log_size) != 0) c->log_size += done; /* keep the count true */
      errno = e;
      return -1;
    }
    done += (size_t)w;
    for (size_t left = (size_t)w; left;) { /* skip what was written */
      size_t step = left < iov[i].iov_len ? left : iov[i].iov_len;
      iov[i].iov_base = (char *)iov[i].iov_base + step;
      iov[i].iov_len -= step;
      left -= step;
      if (!iov[i].iov_len) i++;
    }
  }
  c->log_size += total;
  return 0;
}

static int log_entry(hersh_capture *c, double now, int stream, const char *line, size_t len) {
  time_t secs = (time_t)now;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char head[64];
  size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
  static const char *const label[] = {[HERSH_STDOUT] = "stdout", [HERSH_STDERR] = "stderr", [HERSH_HOST] = "host"};
  h += (size_t)snprintf(head + h, sizeof head - h, ".%03dZ %s ", (int)((now - (double)secs) * 1000), label[stream]);
  if (c->log_max && c->log_size + h + len + 1 > c->log_max && c->log_size > 0) rotate(c);
  if (c->log_fd < 0) c->log_fd = open_log(c->log_path, &c->log_size); /* a reopen that failed before */
  if (c->log_fd < 0) return -1;
  return write_entry(c, head, h, line, len);
}

static void log_line(hersh_capture *c, double now, int stream, const char *line, size_t len) {
  if (!c->log_path) return;
  if (c->lost) {
    char note[160];
    int n = snprintf(note, sizeof note, "[hersh: %zu log line%s lost: %s]", c->lost, c->lost == 1 ? "" : "s",
                     strerror(c->lost_errno));
    if (n > 0 && log_entry(c, now, HERSH_STDERR, note, (size_t)n < sizeof note ? (size_t)n : sizeof note - 1) == 0)
      c->lost = 0;
  }
  if (!c->lost && log_entry(c, now, stream, line, len) == 0) return;
  if (!c->lost++) {
    c->lost_errno = errno;
    fprintf(stderr, "hersh: cannot write %s: %s; its lines are dropped until it can be written\n", c->log_path,
            strerror(c->lost_errno));
  }
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

void hersh_capture_note(hersh_capture *c, const char *line, size_t len) {
  log_line(c, hersh_wall_now(), HERSH_HOST, line, len);
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
