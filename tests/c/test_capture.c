/*
** test_capture.c -- the Host's lines in a program's log (src/proc/capture.c,
** hersh_capture_note): written on the stream "host", in order with the program's own
** lines, kept out of the tail the Host quotes from the program, and rotated like them.
** Real files in a temporary folder.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "proc/proc.h"

/* A new temporary folder (removed by rm_dir); NULL when none can be made. */
static char *temp_dir(void) {
  char tmpl[] = "/tmp/hersh-capture-XXXXXX";
  char *dir = mkdtemp(tmpl);
  return dir ? strdup(dir) : NULL;
}

static void rm_dir(char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
  free(dir);
}

/* The file's text (at most 4 KiB here), "" when it cannot be read. */
static void read_text(const char *path, char *out, size_t cap) {
  out[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return;
  size_t n = fread(out, 1, cap - 1, f);
  out[n] = '\0';
  fclose(f);
}

/* The i-th line's part after "<time> ", into out. */
static void line_after_time(const char *text, int i, char *out, size_t cap) {
  out[0] = '\0';
  const char *at = text;
  for (; i > 0 && at; i--) {
    at = strchr(at, '\n');
    if (at) at++;
  }
  if (!at || !*at) return;
  const char *space = strchr(at, ' '), *end = strchr(at, '\n');
  if (!space || !end || space > end) return;
  snprintf(out, cap, "%.*s", (int)(end - space - 1), space + 1);
}

static void count_tail(double time, int stream, const char *line, size_t len, void *ud) {
  (void)time;
  (void)stream;
  (void)line;
  (void)len;
  (*(int *)ud)++;
}

TEST(a_note_is_a_host_line_in_order_and_not_in_the_tail) {
  char *dir = temp_dir();
  REQUIRE(dir != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/runtime.log", dir);
  hersh_capture *c = hersh_capture_new(path, 0, 3, 10);
  REQUIRE(c != NULL);
  hersh_capture_feed(c, HERSH_STDOUT, "one\n", 4, NULL, NULL);
  hersh_capture_note(c, "hersh: exited on signal 9", 25);
  hersh_capture_feed(c, HERSH_STDERR, "two\n", 4, NULL, NULL);
  int kept = 0;
  hersh_capture_tail(c, 0, count_tail, &kept);
  CHECK_EQ_INT(2, kept);
  hersh_capture_free(c);
  char text[4096], line[256];
  read_text(path, text, sizeof text);
  line_after_time(text, 0, line, sizeof line);
  CHECK_EQ_STR("stdout one", line);
  line_after_time(text, 1, line, sizeof line);
  CHECK_EQ_STR("host hersh: exited on signal 9", line);
  line_after_time(text, 2, line, sizeof line);
  CHECK_EQ_STR("stderr two", line);
  rm_dir(dir);
}

TEST(notes_rotate_like_the_programs_lines) {
  char *dir = temp_dir();
  REQUIRE(dir != NULL);
  char path[256], rotated[300];
  snprintf(path, sizeof path, "%s/runtime.log", dir);
  snprintf(rotated, sizeof rotated, "%s.1", path);
  /* Each entry is 25 ("<time> ") + 5 ("host ") + 10 + 1 = 41 bytes: two fit in 100, not three. */
  for (int i = 0; i < 3; i++) {
    hersh_capture *c = hersh_capture_new(path, 100, 1, 0);
    REQUIRE(c != NULL);
    hersh_capture_note(c, "hersh: abc", 10);
    hersh_capture_free(c);
  }
  char text[4096], line[256];
  read_text(rotated, text, sizeof text);
  line_after_time(text, 1, line, sizeof line);
  CHECK_EQ_STR("host hersh: abc", line);
  read_text(path, text, sizeof text);
  line_after_time(text, 0, line, sizeof line);
  CHECK_EQ_STR("host hersh: abc", line);
  CHECK(strchr(text, '\n') == text + strlen(text) - 1); /* one line only */
  rm_dir(dir);
}

int main(void) {
  RUN(a_note_is_a_host_line_in_order_and_not_in_the_tail);
  RUN(notes_rotate_like_the_programs_lines);
  return check_summary();
}
