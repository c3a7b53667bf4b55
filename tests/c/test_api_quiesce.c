/*
** The WatcherAPI's quiesce (hersh_watcher_api_quiesce), as an update in place uses it:
** two watchers serve one listening socket, the old one quiesces, and from then on every
** new connection is the new one's, while the old one still answers a connection it
** had, with Connection: close, and then has none open. Real sockets over loopback;
** every wait is bounded; nothing asserts how long anything took.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "net.h"
#include "hersh.h"

#define WAIT_S 30 /* upper bound of any wait: reached only when something is broken */

static int reducer(hersh_ctx *ctx, const hersh_msg *msg, void *ud) {
  (void)ctx, (void)msg, (void)ud;
  return HERSH_OK;
}

/* A watcher named id serving fd. */
static hersh_watcher *served(hersh_loop *loop, const char *id, int fd) {
  hersh_config cfg;
  hersh_config_init(&cfg);
  cfg.id = id;
  hersh_watcher *w = NULL;
  if (hersh_watcher_new(loop, &cfg, &w) != HERSH_OK || hersh_watcher_manage(w, reducer, NULL) != HERSH_OK) {
    printf("watcher %s: %s\n", id, hersh_errmsg());
    if (w) hersh_watcher_free(w);
    return NULL;
  }
  hersh_api_options o;
  hersh_api_options_init(&o);
  o.listen_fd = fd;
  if (hersh_watcher_serve(w, &o) != HERSH_OK) {
    printf("serve %s: %s\n", id, hersh_errmsg());
    hersh_watcher_free(w);
    return NULL;
  }
  return w;
}

/* One GET /watcher/status on fd; its whole answer (head and body) into out, or false. */
static bool get_status(int fd, bool keep_alive, char *out, size_t cap) {
  char req[128];
  int n = snprintf(req, sizeof req, "GET /watcher/status HTTP/1.1\r\nHost: t\r\n%s\r\n",
                   keep_alive ? "" : "Connection: close\r\n");
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) return false;
  size_t got = 0;
  while (got + 1 < cap) { /* the body is one line of JSON: read until its newline */
    ssize_t k = recv(fd, out + got, cap - 1 - got, 0);
    if (k <= 0) break;
    got += (size_t)k;
    out[got] = '\0';
    const char *body = strstr(out, "\r\n\r\n");
    if (body && strchr(body + 4, '\n')) return true;
  }
  out[got] = '\0';
  return false;
}

static bool closed_by_peer(int fd) {
  char c;
  return recv(fd, &c, 1, 0) == 0;
}

TEST(a_quiesced_api_takes_no_new_connection_and_closes_those_it_answers) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  int port = 0;
  int fd = net_listener(&port);
  REQUIRE(fd >= 0);
  int fd2 = dup(fd); /* each server closes the descriptor it was given */
  REQUIRE(fd2 >= 0);
  hersh_watcher *old = served(loop, "old", fd);
  REQUIRE(old);
  char res[4096];
  int kept = net_connect(port, WAIT_S); /* only the old one serves yet: this is its connection */
  REQUIRE(kept >= 0);
  REQUIRE(get_status(kept, true, res, sizeof res));
  CHECK(strstr(res, "\"watcherID\":\"old\"") != NULL);
  CHECK(strstr(res, "Connection: close") == NULL);

  hersh_watcher *fresh = served(loop, "new", fd2);
  REQUIRE(fresh);
  CHECK(hersh_watcher_api_quiesce(old) >= 1); /* `kept` is open */
  int to_new = 0;
  for (int i = 0; i < 20; i++) {
    int c = net_connect(port, WAIT_S);
    REQUIRE(c >= 0);
    if (get_status(c, false, res, sizeof res) && strstr(res, "\"watcherID\":\"new\"")) to_new++;
    else printf("connection %d: %s\n", i, res);
    close(c);
  }
  CHECK_EQ_INT(to_new, 20);

  /* the connection it had is still answered, and closed after that answer */
  REQUIRE(get_status(kept, true, res, sizeof res));
  CHECK(strstr(res, "\"watcherID\":\"old\"") != NULL);
  CHECK(strstr(res, "Connection: close") != NULL);
  CHECK(closed_by_peer(kept));
  close(kept);
  unsigned open = 1; /* MHD's thread closes it after the answer: wait for that, bounded */
  for (int i = 0; i < WAIT_S * 100 && open; i++) {
    open = hersh_watcher_api_quiesce(old);
    if (open) nanosleep(&(struct timespec){0, 10000000L}, NULL);
  }
  CHECK_EQ_INT(open, 0);
  hersh_watcher_free(old);
  hersh_watcher_free(fresh);
  hersh_loop_free(loop);
}

TEST(quiescing_a_watcher_that_does_not_serve_is_nothing) {
  hersh_loop *loop = hersh_loop_new();
  REQUIRE(loop);
  hersh_config cfg;
  hersh_config_init(&cfg);
  hersh_watcher *w = NULL;
  REQUIRE(hersh_watcher_new(loop, &cfg, &w) == HERSH_OK);
  CHECK_EQ_INT(hersh_watcher_api_quiesce(w), 0);
  CHECK_EQ_INT(hersh_watcher_api_quiesce(NULL), 0);
  hersh_watcher_free(w);
  hersh_loop_free(loop);
}

int main(void) {
  RUN(a_quiesced_api_takes_no_new_connection_and_closes_those_it_answers);
  RUN(quiescing_a_watcher_that_does_not_serve_is_nothing);
  return check_summary();
}
