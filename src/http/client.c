/*
** client.c -- the HTTP client: libcurl's multi interface on the libuv loop.
**
** curl tells us which sockets to watch (on_socket) and when to wake it (on_timer);
** libuv tells curl what happened (curl_multi_socket_action), and finished transfers
** are collected after each action. Keep-alive connections live in the multi handle's
** connection cache; finished easy handles go back to a free pool, reset, for the next
** request. Only the loop thread touches any of it.
*/
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "engine/binding.h"
#include "http/client.h"
#include "http/curl.h"
#include "http/list.h"

enum {
  MAX_CONNECTS = 64,  /* idle keep-alive connections the cache keeps: a burst of polls */
  /* Seconds an idle connection may be reused: below the WatcherAPI's idle timeout (10 s),
  ** so a request is never sent on a connection the server is closing. */
  MAX_IDLE_S = 5,
  MAX_POOLED = 64,    /* idle easy handles kept for reuse */
  DEFAULT_TIMEOUT_MS = 30000,
  MAX_TIMEOUT_S = 1000000, /* longer is "forever", and must still fit a long of ms */
};
#define DEFAULT_MAX_RESPONSE ((size_t)16 << 20)
#define LOOPBACK_NOPROXY "localhost,127.0.0.1,::1"

typedef struct hersh_http_req http_req;
typedef struct sock_ctx sock_ctx;

struct hersh_http_client {
  hersh_loop *loop;
  CURLM *multi;
  uv_timer_t timer;
  uv_timer_t sweep;   /* ends cancelled requests outside curl's callbacks */
  int open_handles;   /* of timer and sweep: c is freed when both closed */
  bool closing;
  http_req *active;   /* requests in the multi handle */
  http_req *touched;  /* got head or body in this drive: their `settled` is due */
  sock_ctx *socks;    /* the sockets being polled */
  CURL *pool[MAX_POOLED];
  size_t n_pool;
  char *noproxy; /* loopback, plus the environment's no_proxy list */
};

/* A socket curl asked us to watch. */
struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  hersh_http_client *c;
  sock_ctx *prev, *next;
};

struct hersh_http_req {
  hersh_http_client *c;
  CURL *easy;
  struct curl_slist *headers;
  hersh_buf head, body;
  size_t max;
  bool too_large;
  const hersh_http_stream_fns *fns; /* NULL: the answer is collected */
  bool aborted;                     /* a stream callback said HERSH_HTTP_ABORT */
  bool cancelled;                   /* hersh_http_cancel: the sweep ends it */
  bool touched;                     /* in c->touched */
  http_req *next_touched;
  hersh_http_done done;
  void *ud;
  http_req *prev, *next;
  char errbuf[CURL_ERROR_SIZE];
};

/* ---- curl_global_init, once per process ---------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- sockets and the timer -------------------------------------------------------------- */

static void collect_done(hersh_http_client *c);
static void fail_all(hersh_http_client *c, const char *what, CURLMcode mc);

static void sock_closed(uv_handle_t *h) { free(h->data); }

static void sock_close(hersh_http_client *c, sock_ctx *sc) {
  LIST_UNLINK(c->socks, sc);
  uv_close((uv_handle_t *)&sc->poll, sock_closed);
}

/* A streamed request got something: its `settled` comes after this drive. */
static void touch(http_req *r) {
  if (r->touched || !r->fns->settled) return;
  r->touched = true;
  r->next_touched = r->c->touched;
  r->c->touched = r;
}

/* Tells curl about activity (or a timeout), then hands out what finished, then what
** goes on. */
static void drive(hersh_http_client *c, curl_socket_t fd, int flags) {
  int running = 0;
  CURLMcode mc = curl_multi_socket_action(c->multi, fd, flags, &running);
  /* BAD_SOCKET: curl dropped the socket before our poll event came in: harmless. */
  collect_done(c);
  while (c->touched) { /* settled may cancel any request: each leaves the list first */
    http_req *r = c->touched;
    c->touched = r->next_touched;
    r->touched = false;
    if (!r->cancelled) r->fns->settled(r->ud);
  }
  if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET) fail_all(c, "curl_multi_socket_action", mc);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx *sc = h->data;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  drive(sc->c, sc->fd, flags);
}

static void on_timeout(uv_timer_t *t) { drive(t->data, CURL_SOCKET_TIMEOUT, 0); }

/* curl's socket callback: watch s for `what`. -1 makes curl fail the transfers. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy;
  hersh_http_client *c = userp;
  sock_ctx *sc = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (sc) {
      sock_close(c, sc);
      if (curl_multi_assign(c->multi, s, NULL) != CURLM_OK) return -1;
    }
    return 0;
  }
  if (!sc) {
    sc = calloc(1, sizeof *sc);
    if (!sc) return -1;
    if (uv_poll_init_socket(hersh_loop_uv(c->loop), &sc->poll, s) != 0) {
      free(sc);
      return -1;
    }
    sc->fd = s;
    sc->c = c;
    sc->poll.data = sc;
    LIST_LINK(c->socks, sc);
    if (curl_multi_assign(c->multi, s, sc) != CURLM_OK) {
      sock_close(c, sc);
      return -1;
    }
  }
  int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  int rc = events ? uv_poll_start(&sc->poll, events, on_poll) : uv_poll_stop(&sc->poll);
  return rc == 0 ? 0 : -1;
}

/* curl's timer callback: call it back in timeout_ms (-1: never). Not from inside it. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  hersh_http_client *c = userp;
  int rc = timeout_ms < 0 ? uv_timer_stop(&c->timer)
                          : uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return rc == 0 ? 0 : -1;
}

/* ---- the client ------------------------------------------------------------------------- */

static void client_release(hersh_http_client *c) {
  free(c->noproxy);
  free(c);
}

static void client_closed(uv_handle_t *h) {
  hersh_http_client *c = h->data;
  if (--c->open_handles == 0) client_release(c);
}

static void client_free_cb(void *c) { hersh_http_client_free(c); }

/* Loopback never goes through a proxy; other hosts follow the environment. */
static char *make_noproxy(void) {
  const char *env = getenv("no_proxy");
  if (!env || !*env) env = getenv("NO_PROXY");
  hersh_buf b = {0};
  hersh_buf_puts(&b, LOOPBACK_NOPROXY);
  if (env && *env) {
    hersh_buf_puts(&b, ",");
    hersh_buf_puts(&b, env);
  }
  return hersh_buf_take(&b);
}

#define MSETOPT(c, opt, val) (curl_multi_setopt((c)->multi, (opt), (val)) == CURLM_OK)

hersh_http_client *hersh_http_client_get(hersh_loop *loop) {
  if (!loop) {
    hersh_fail_with(HERSH_E_INVAL, "hersh_http_client_get: NULL loop");
    return NULL;
  }
  hersh_http_client *found = hersh_loop_on_free_find(loop, client_free_cb);
  if (found) return found;
  if (hersh_curl_load() != HERSH_OK) return NULL;
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    hersh_fail_with(HERSH_E_SYS, "curl_global_init: %s", curl_easy_strerror(global_rc));
    return NULL;
  }
  hersh_http_client *c = calloc(1, sizeof *c);
  if (!c || !(c->noproxy = make_noproxy())) {
    free(c);
    hersh_fail_with(HERSH_E_NOMEM, "out of memory creating the HTTP client");
    return NULL;
  }
  c->loop = loop;
  c->multi = curl_multi_init();
  if (!c->multi) {
    client_release(c);
    hersh_fail_with(HERSH_E_SYS, "curl_multi_init failed");
    return NULL;
  }
  if (!MSETOPT(c, CURLMOPT_SOCKETFUNCTION, on_socket) || !MSETOPT(c, CURLMOPT_SOCKETDATA, c) ||
      !MSETOPT(c, CURLMOPT_TIMERFUNCTION, on_timer) || !MSETOPT(c, CURLMOPT_TIMERDATA, c) ||
      !MSETOPT(c, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTS)) {
    curl_multi_cleanup(c->multi);
    client_release(c);
    hersh_fail_with(HERSH_E_SYS, "curl_multi_setopt failed");
    return NULL;
  }
  int rc = uv_timer_init(hersh_loop_uv(loop), &c->timer);
  if (rc != 0) {
    curl_multi_cleanup(c->multi);
    client_release(c);
    hersh_fail_with(HERSH_E_SYS, "uv_timer_init: %s", uv_strerror(rc));
    return NULL;
  }
  c->timer.data = c;
  c->open_handles = 1;
  if ((rc = uv_timer_init(hersh_loop_uv(loop), &c->sweep)) != 0) {
    curl_multi_cleanup(c->multi);
    uv_close((uv_handle_t *)&c->timer, client_closed); /* frees c */
    hersh_fail_with(HERSH_E_SYS, "uv_timer_init: %s", uv_strerror(rc));
    return NULL;
  }
  c->sweep.data = c;
  c->open_handles = 2;
  if (hersh_loop_on_free(loop, client_free_cb, c) != HERSH_OK) {
    hersh_http_client_free(c);
    return NULL;
  }
  return c;
}

/* ---- one request ------------------------------------------------------------------------ */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  http_req *r = ud;
  size_t n = size * nmemb;
  if (r->cancelled) return 0; /* CURLE_WRITE_ERROR: done says "cancelled" */
  if (r->fns) {
    touch(r);
    hersh_http_take t = r->fns->data(ptr, n, r->ud);
    if (r->cancelled) return 0;
    if (t == HERSH_HTTP_TAKEN) return n;
    if (t == HERSH_HTTP_PAUSE) return CURL_WRITEFUNC_PAUSE;
    r->aborted = true;
    return 0; /* CURLE_WRITE_ERROR */
  }
  if (n > r->max - r->body.len) {
    r->too_large = true;
    return 0; /* CURLE_WRITE_ERROR */
  }
  hersh_buf_put(&r->body, ptr, n);
  return r->body.oom ? 0 : n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud) {
  http_req *r = ud;
  if (r->cancelled) return CURL_READFUNC_ABORT;
  size_t n = r->fns->read(buf, size * nitems, r->ud);
  if (r->cancelled) return CURL_READFUNC_ABORT;
  if (n == HERSH_HTTP_READ_PAUSE) return CURL_READFUNC_PAUSE;
  if (n == HERSH_HTTP_READ_ABORT) {
    r->aborted = true;
    return CURL_READFUNC_ABORT;
  }
  return n;
}

/* Keeps the header block of the last response only (a 100 Continue comes first). */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
  http_req *r = ud;
  size_t n = size * nmemb;
  if (r->cancelled) return 0;
  if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) r->head.len = 0;
  if (n > r->max - r->head.len) {
    r->too_large = true;
    return 0;
  }
  hersh_buf_put(&r->head, ptr, n);
  if (r->head.oom) return 0;
  bool blank = (n == 2 && ptr[0] == '\r' && ptr[1] == '\n') || (n == 1 && ptr[0] == '\n');
  long status = 0;
  if (r->fns && blank && curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 200) {
    touch(r);
    hersh_http_take t = r->fns->head((int)status, r->head.p, r->head.len, r->ud);
    if (r->cancelled) return 0;
    if (t != HERSH_HTTP_TAKEN) {
      r->aborted = true;
      return 0;
    }
  }
  return n;
}

static void req_free(http_req *r) {
  curl_slist_free_all(r->headers);
  free(r->head.p);
  free(r->body.p);
  free(r);
}

/* Returns a removed easy handle to the pool, or cleans it up. */
static void easy_recycle(hersh_http_client *c, CURL *easy) {
  if (!easy) return;
  if (c->closing || c->n_pool == MAX_POOLED) {
    curl_easy_cleanup(easy);
    return;
  }
  curl_easy_reset(easy);
  c->pool[c->n_pool++] = easy;
}

/* Takes the request out of the multi handle and the active list and gives its easy
** handle back. An unfinished transfer's connection is closed, never reused. */
static void req_detach(http_req *r) {
  hersh_http_client *c = r->c;
  CURLMcode mc = curl_multi_remove_handle(c->multi, r->easy);
  LIST_UNLINK(c->active, r);
  if (r->touched) {
    http_req **t = &c->touched;
    while (*t != r) t = &(*t)->next_touched;
    *t = r->next_touched;
    r->touched = false;
  }
  if (mc == CURLM_OK) {
    easy_recycle(c, r->easy);
  } else { /* it may still be attached: never reuse or free it under the multi */
    fprintf(stderr, "hersh: http: curl_multi_remove_handle: %s\n", curl_multi_strerror(mc));
  }
  r->easy = NULL;
}

/* Detaches the request, calls done with `res`, and frees it. */
static void req_end(http_req *r, hersh_http_result *res) {
  req_detach(r);
  if (res->error) {
    res->status = 0;
    res->headers = "";
    res->headers_len = 0;
    res->body = "";
    res->body_len = 0;
  }
  r->done(res, r->ud);
  req_free(r);
}

static void req_fail(http_req *r, const char *error, const char *code) {
  hersh_http_result res = {.error = error, .code = code};
  req_end(r, &res);
}

/* Maps a finished transfer to its result. */
static void req_finish(http_req *r, CURLcode cc) {
  hersh_http_result res = {0};
  long status = 0, os_errno = 0;
  char text[CURL_ERROR_SIZE + 64];
  if (r->cancelled) { /* whatever came meanwhile, it was cancelled first */
    req_fail(r, "cancelled", "ECANCELLED");
    return;
  }
  switch (cc) {
  case CURLE_OK:
    if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK) status = 0;
    res.status = (int)status;
    res.headers = r->head.p ? r->head.p : "";
    res.headers_len = r->head.len;
    res.body = r->body.p ? r->body.p : "";
    res.body_len = r->body.len;
    break;
  case CURLE_COULDNT_CONNECT:
    if (curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno) != CURLE_OK) os_errno = 0;
    if (os_errno == ECONNREFUSED) {
      res.error = "connection refused";
      res.code = "ECONNREFUSED";
    } else {
      snprintf(text, sizeof text, "cannot connect: %s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
      res.error = text;
      res.code = "ECONNECT";
    }
    break;
  case CURLE_OPERATION_TIMEDOUT: {
    long sent = 0; /* bytes of request headers sent: none when the connection never came */
    if (curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK) sent = 1;
    res.error = sent > 0 ? "timeout" : "connect timeout";
    res.code = "ETIMEOUT";
    break;
  }
  case CURLE_FILESIZE_EXCEEDED:
    res.error = "response too large";
    res.code = "ETOOLARGE";
    break;
  case CURLE_COULDNT_RESOLVE_HOST:
    snprintf(text, sizeof text, "host not found: %s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    res.error = text;
    res.code = "ENOTFOUND";
    break;
  case CURLE_OUT_OF_MEMORY:
    res.error = "out of memory";
    res.code = "ENOMEM";
    break;
  case CURLE_TOO_MANY_REDIRECTS:
    res.error = "too many redirects";
    res.code = "EREDIRECT";
    break;
  default:
    if (r->aborted) { /* a write error, or aborted by the read callback */
      res.error = "aborted";
      res.code = "ECANCELLED";
    } else if (cc == CURLE_WRITE_ERROR && r->too_large) {
      res.error = "response too large";
      res.code = "ETOOLARGE";
    } else if (cc == CURLE_WRITE_ERROR && (r->head.oom || r->body.oom)) {
      res.error = "out of memory";
      res.code = "ENOMEM";
    } else {
      snprintf(text, sizeof text, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
      res.error = text;
      res.code = "EHTTP";
    }
  }
  req_end(r, &res);
}

/* Hands out every finished transfer. done may start new requests meanwhile. */
static void collect_done(hersh_http_client *c) {
  CURLMsg *msg;
  int left = 0;
  while ((msg = curl_multi_info_read(c->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURLcode cc = msg->data.result; /* msg is gone once the handle is removed */
    char *priv = NULL;
    if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv) continue;
    req_finish((http_req *)priv, cc);
  }
}

/* The multi handle failed as a whole: no transfer can be trusted to finish. */
static void fail_all(hersh_http_client *c, const char *what, CURLMcode mc) {
  char text[160];
  snprintf(text, sizeof text, "%s: %s", what, curl_multi_strerror(mc));
  while (c->active) req_fail(c->active, text, mc == CURLM_OUT_OF_MEMORY ? "ENOMEM" : "EHTTP");
}

/* ---- starting a request ----------------------------------------------------------------- */

bool hersh_http_is_token(const char *s, size_t n) {
  if (!s || n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch)) return false;
  }
  return true;
}

/* Checks the URL (curl would only find out when connecting): http or https only. */
static int check_url(const char *url) {
  if (!url || !*url) return hersh_fail_with(HERSH_E_INVAL, "bad URL: empty");
  CURLU *u = curl_url();
  if (!u) return hersh_fail_with(HERSH_E_NOMEM, "out of memory parsing a URL");
  char *scheme = NULL;
  int rc = HERSH_OK;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
  if (uc != CURLUE_OK) {
    rc = hersh_fail_with(HERSH_E_INVAL, "bad URL '%s': %s", url, curl_url_strerror(uc));
  } else if ((uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0)) != CURLUE_OK) {
    rc = hersh_fail_with(HERSH_E_INVAL, "bad URL '%s': %s", url, curl_url_strerror(uc));
  } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
    rc = hersh_fail_with(HERSH_E_INVAL, "bad URL '%s': only http and https are supported", url);
  }
  curl_free(scheme);
  curl_url_cleanup(u);
  return rc;
}

/* The request headers as curl takes them, with Expect turned off unless given: the
** 100-continue wait would cost a round trip (or a second) on every larger body. */
static int build_headers(http_req *r, const char *const *headers) {
  bool has_expect = false;
  for (const char *const *h = headers; h && *h; h++) {
    const char *colon = strchr(*h, ':');
    const char *semi = strchr(*h, ';'); /* curl's "Name;" sends an empty value */
    const char *end = colon ? colon : semi;
    if (!end || end == *h || strpbrk(*h, "\r\n"))
      return hersh_fail_with(HERSH_E_INVAL, "bad request header '%s': expected \"Name: value\"", *h);
    if ((size_t)(end - *h) == 6 && strncasecmp(*h, "expect", 6) == 0) has_expect = true;
    struct curl_slist *l = curl_slist_append(r->headers, *h);
    if (!l) return hersh_fail_with(HERSH_E_NOMEM, "out of memory for request headers");
    r->headers = l;
  }
  if (!has_expect) {
    struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
    if (!l) return hersh_fail_with(HERSH_E_NOMEM, "out of memory for request headers");
    r->headers = l;
  }
  return HERSH_OK;
}

#define SETOPT(easy, opt, val) (curl_easy_setopt((easy), (opt), (val)) == CURLE_OK)

/* Seconds as curl's milliseconds: at least 1, and "forever" past MAX_TIMEOUT_S. */
static long timeout_ms(double seconds) {
  long ms = seconds < MAX_TIMEOUT_S ? (long)(seconds * 1000.0 + 0.5) : MAX_TIMEOUT_S * 1000L;
  return ms < 1 ? 1 : ms;
}

static int set_options(http_req *r, const hersh_http_call *call, const char *method) {
  CURL *e = r->easy;
  long whole_ms = call->timeout > 0 ? timeout_ms(call->timeout) : r->fns ? 0 : DEFAULT_TIMEOUT_MS;
  long connect_ms = call->connect_timeout > 0 ? timeout_ms(call->connect_timeout) : 0; /* 0: curl's own (300 s) */
  bool ok = SETOPT(e, CURLOPT_URL, call->url) && SETOPT(e, CURLOPT_PRIVATE, (void *)r) &&
            SETOPT(e, CURLOPT_NOSIGNAL, 1L) && SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https") &&
            SETOPT(e, CURLOPT_NOPROXY, r->c->noproxy) && SETOPT(e, CURLOPT_ERRORBUFFER, r->errbuf) &&
            SETOPT(e, CURLOPT_WRITEFUNCTION, on_body) && SETOPT(e, CURLOPT_WRITEDATA, (void *)r) &&
            SETOPT(e, CURLOPT_HEADERFUNCTION, on_header) && SETOPT(e, CURLOPT_HEADERDATA, (void *)r) &&
            SETOPT(e, CURLOPT_TIMEOUT_MS, whole_ms) && SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) &&
            SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(r->fns ? 0 : r->max)) &&
            SETOPT(e, CURLOPT_MAXAGE_CONN, (long)MAX_IDLE_S) && SETOPT(e, CURLOPT_HTTPHEADER, r->headers);
  if (ok && call->unix_socket) ok = SETOPT(e, CURLOPT_UNIX_SOCKET_PATH, call->unix_socket);
  if (ok && call->max_redirects > 0)
    ok = SETOPT(e, CURLOPT_FOLLOWLOCATION, 1L) && SETOPT(e, CURLOPT_MAXREDIRS, (long)call->max_redirects) &&
         SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  bool has_body = call->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                  strcmp(method, "PATCH") == 0;
  if (ok && r->fns && r->fns->read) { /* POST's way of sending a body, with the method named */
    ok = SETOPT(e, CURLOPT_POST, 1L) && SETOPT(e, CURLOPT_READFUNCTION, on_read) &&
         SETOPT(e, CURLOPT_READDATA, (void *)r) &&
         SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(call->stream_len < 0 ? -1 : call->stream_len)) &&
         (strcmp(method, "POST") == 0 || SETOPT(e, CURLOPT_CUSTOMREQUEST, method));
  } else if (ok && strcmp(method, "HEAD") == 0) {
    ok = SETOPT(e, CURLOPT_NOBODY, 1L);
  } else if (ok && has_body) {
    /* The size first: COPYPOSTFIELDS then copies exactly that many bytes. */
    ok = SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len) &&
         SETOPT(e, CURLOPT_COPYPOSTFIELDS, call->body_len ? call->body : "") &&
         (strcmp(method, "POST") == 0 || SETOPT(e, CURLOPT_CUSTOMREQUEST, method));
  } else if (ok) {
    ok = SETOPT(e, CURLOPT_HTTPGET, 1L) && (strcmp(method, "GET") == 0 || SETOPT(e, CURLOPT_CUSTOMREQUEST, method));
  }
  return ok ? HERSH_OK : hersh_fail_with(HERSH_E_SYS, "curl_easy_setopt failed for %s %s", method, call->url);
}

static int start(hersh_http_client *c, const hersh_http_call *call, const hersh_http_stream_fns *fns,
                 hersh_http_done done, void *ud, http_req **out) {
  if (!c || !call || !done) return hersh_fail_with(HERSH_E_INVAL, "hersh_http_request: NULL argument");
  if (c->closing) return hersh_fail_with(HERSH_E_STATE, "the HTTP client is closing");
  if (!hersh_loop_on_thread(c->loop))
    return hersh_fail_with(HERSH_E_INVAL, "HTTP requests can only be made on the loop thread");
  const char *method = call->method ? call->method : "GET";
  if (!hersh_http_is_token(method, strlen(method))) return hersh_fail_with(HERSH_E_INVAL, "bad HTTP method '%s'", method);
  if (call->body_len && !call->body) return hersh_fail_with(HERSH_E_INVAL, "hersh_http_request: NULL body");
  int rc = check_url(call->url);
  if (rc) return rc;
  http_req *r = calloc(1, sizeof *r);
  if (!r) return hersh_fail_with(HERSH_E_NOMEM, "out of memory starting an HTTP request");
  r->c = c;
  r->done = done;
  r->ud = ud;
  r->fns = fns;
  r->max = call->max_response ? call->max_response : DEFAULT_MAX_RESPONSE;
  rc = build_headers(r, call->headers);
  if (rc) {
    req_free(r);
    return rc;
  }
  r->easy = c->n_pool ? c->pool[--c->n_pool] : curl_easy_init();
  if (!r->easy) {
    req_free(r);
    return hersh_fail_with(HERSH_E_SYS, "curl_easy_init failed");
  }
  rc = set_options(r, call, method);
  CURLMcode mc = CURLM_OK;
  if (rc == HERSH_OK && (mc = curl_multi_add_handle(c->multi, r->easy)) != CURLM_OK)
    rc = hersh_fail_with(mc == CURLM_OUT_OF_MEMORY ? HERSH_E_NOMEM : HERSH_E_SYS, "curl_multi_add_handle: %s",
                         curl_multi_strerror(mc));
  if (rc) {
    easy_recycle(c, r->easy);
    req_free(r);
    return rc;
  }
  LIST_LINK(c->active, r);
  if (out) *out = r;
  return HERSH_OK;
}

int hersh_http_request(hersh_http_client *c, const hersh_http_call *call, hersh_http_done done, void *ud) {
  return start(c, call, NULL, done, ud, NULL);
}

int hersh_http_request_stream(hersh_http_client *c, const hersh_http_call *call, const hersh_http_stream_fns *fns,
                              hersh_http_done done, void *ud, hersh_http_req **out) {
  if (!fns || !fns->head || !fns->data) return hersh_fail_with(HERSH_E_INVAL, "hersh_http_request_stream: NULL fns");
  /* Each response's head would reach fns: the streamed answer is the first one. */
  if (call && call->max_redirects > 0)
    return hersh_fail_with(HERSH_E_INVAL, "a streamed request does not follow redirects");
  return start(c, call, fns, done, ud, out);
}

int hersh_http_resume(hersh_http_req *r) {
  if (r->cancelled) return hersh_fail_with(HERSH_E_STATE, "cancelled");
  /* curl offers the paused piece again at once, and asks (on_timer) to be driven. */
  CURLcode cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
  if (cc == CURLE_OK) return HERSH_OK;
  return hersh_fail_with(HERSH_E_SYS, "%s", r->aborted ? "aborted" : curl_easy_strerror(cc));
}

/* Ends the cancelled requests; done may start or cancel others meanwhile. */
static void on_sweep(uv_timer_t *t) {
  hersh_http_client *c = t->data;
  for (http_req *r = c->active; r;) {
    if (r->cancelled) {
      req_fail(r, "cancelled", "ECANCELLED");
      r = c->active;
    } else {
      r = r->next;
    }
  }
}

/* Only marks it: curl may be inside one of r's callbacks (or another request's), where
** removing r is not allowed; its callbacks see the mark and stop the transfer. */
void hersh_http_cancel(hersh_http_req *r) {
  if (!r || r->cancelled) return;
  r->cancelled = true;
  int rc = uv_timer_start(&r->c->sweep, on_sweep, 0, 0);
  if (rc != 0) fprintf(stderr, "hersh: http: cannot schedule a cancel: %s\n", uv_strerror(rc));
}

/* ---- abandoning and freeing --------------------------------------------------------------- */

void hersh_http_abandon(hersh_http_client *c, hersh_http_done done, void *ud) {
  if (!c) return;
  for (http_req *r = c->active; r; r = r->next) {
    if (r->done != done || r->ud != ud) continue;
    req_detach(r);
    req_free(r);
    return;
  }
}

void hersh_http_client_free(hersh_http_client *c) {
  if (!c) return;
  c->closing = true; /* done callbacks below cannot start new requests */
  hersh_loop_on_free_remove(c->loop, client_free_cb, c);
  while (c->active) req_fail(c->active, "cancelled", "ECANCELLED");
  for (size_t i = 0; i < c->n_pool; i++) curl_easy_cleanup(c->pool[i]);
  c->n_pool = 0;
  /* Stop polling while the cached connections' sockets are still open, then let curl
  ** close them without calling back into a client being freed. */
  while (c->socks) sock_close(c, c->socks);
  if (!MSETOPT(c, CURLMOPT_SOCKETFUNCTION, (curl_socket_callback)NULL) ||
      !MSETOPT(c, CURLMOPT_TIMERFUNCTION, (curl_multi_timer_callback)NULL))
    fprintf(stderr, "hersh: http: curl_multi_setopt failed while closing\n");
  CURLMcode mc = curl_multi_cleanup(c->multi);
  if (mc != CURLM_OK) fprintf(stderr, "hersh: http: curl_multi_cleanup: %s\n", curl_multi_strerror(mc));
  c->multi = NULL;
  uv_close((uv_handle_t *)&c->timer, client_closed);
  uv_close((uv_handle_t *)&c->sweep, client_closed); /* the second close frees c */
}
