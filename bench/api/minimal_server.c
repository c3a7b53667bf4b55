/*
** bench/api/minimal_server.c -- the baseline of bench/api: a minimal libmicrohttpd
** server in the WatcherAPI's mode (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL,
** the response queued on the second handler call, so keep-alive holds) that answers
** every request with a fixed body of the size and shape of a real /watcher/status
** answer, as application/json. It serves until SIGINT or SIGTERM.
**
**   build-bench/bench_minimal_server PORT     (0: any free port; prints the bound one)
*/
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A real answer of `hersh run bench/api/counter.lua` to GET /watcher/status: 121 bytes. */
static const char BODY[] = "{\"watcherID\":\"counter\",\"state\":\"Ready\",\"isRunning\":true,\"uptime\":\"1.007s\","
                           "\"lastUpdate\":\"2026-11-26T05:36:49.655685186Z\"}\n";

static int first_call_marker;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
  (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
  if (*con_cls != &first_call_marker) { /* the first call: only remember the request */
    *con_cls = &first_call_marker;
    return MHD_YES;
  }
  if (*upload_size) { /* a body: ignore it */
    *upload_size = 0;
    return MHD_YES;
  }
  *con_cls = NULL;
  struct MHD_Response *r = MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) {
    MHD_destroy_response(r);
    return MHD_NO;
  }
  enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT   (0: any free port)\n", argv[0]);
    return 2;
  }
  char *end;
  long port = strtol(argv[1], &end, 10);
  if (!*argv[1] || *end || port < 0 || port > 65535) {
    fprintf(stderr, "%s: PORT wants 0..65535, not '%s'\n", argv[0], argv[1]);
    return 2;
  }

  /* Block the stop signals before the MHD thread exists, so only sigwait sees them. */
  sigset_t stop;
  if (sigemptyset(&stop) != 0 || sigaddset(&stop, SIGINT) != 0 || sigaddset(&stop, SIGTERM) != 0) {
    perror("sigset");
    return 1;
  }
  int rc = pthread_sigmask(SIG_BLOCK, &stop, NULL);
  if (rc != 0) {
    fprintf(stderr, "%s: pthread_sigmask: %s\n", argv[0], strerror(rc));
    return 1;
  }

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) != 1) {
    fprintf(stderr, "%s: inet_pton failed\n", argv[0]);
    return 1;
  }
  struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port, NULL,
                                          NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "%s: cannot listen on 127.0.0.1:%ld\n", argv[0], port);
    return 1;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  if (!info) {
    fprintf(stderr, "%s: cannot read the bound port\n", argv[0]);
    MHD_stop_daemon(d);
    return 1;
  }
  if (printf("%u\n", (unsigned)info->port) < 0 || fflush(stdout) != 0) {
    perror("stdout");
    MHD_stop_daemon(d);
    return 1;
  }

  int sig = 0;
  rc = sigwait(&stop, &sig);
  MHD_stop_daemon(d);
  if (rc != 0) {
    fprintf(stderr, "%s: sigwait: %s\n", argv[0], strerror(rc));
    return 1;
  }
  return 0;
}
