/*
** lhttpd.c -- core.http_serve: HTTP requests served by libmicrohttpd, answered by a
** Lua handler on the loop thread.
**
** The server runs on the loop (server.c's on_loop mode): a uv_poll watches its fd and
** a uv_timer its next deadline, and both run it; the request reaches
** handler(req, res) (through the one pcall wrapper) inside that run, with no thread
** hand-off, and an answer given there is queued in the same run. `res` answers once,
** now or later: res:send, or res:stream for a chunked body. A handler that raises gets
** a 500; a `res` collected unanswered gets a 500. A handler that closes the server
** closes it once the run is over (a server cannot stop inside its own callbacks).
**
** With proxy_routes (httpd.routes), a request for a Ready program's proxy is forwarded
** from its headers in C (http/proxy_route.c), and GET /health and GET /programs/{id} are
** answered from the text Lua gave last (http/fixed_route.c): neither reaches Lua. The
** Host keeps the table current at each change of a program. With them, the listening
** socket is the front's (http/front.c): it serves the proxy's requests it is sure of
** without libmicrohttpd, and hands every other connection to it.
**
** A stream learns that its client left from the server (its connection ended): the
** close callback queues that and a uv_async_t delivers it outside the run. Quiet
** streams are suspended, and MHD does not watch suspended sockets, so a timer looks at
** them while any stream is open.
*/
#include <ctype.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/fixed_route.h"
#include "http/front.h"
#include "http/proxy_route.h"
#include "http/route_table.h"
#include "http/server.h"
#include "http/upstream.h"
#include "lhersh.h"

#define HERSH_HTTPD_MT "hersh.HttpServer"
#define HERSH_HTTPD_RES_MT "hersh.HttpResponse"
#define HERSH_HTTPD_STREAM_MT "hersh.HttpStream"
#define HERSH_HTTPD_ROUTES_MT "hersh.HttpRoutes"

enum { DEFAULT_MAX_BODY = 16 << 20, CHECK_MS = 250 };

typedef struct lstream lstream;

typedef enum { EV_REQUEST, EV_CLOSED } event_kind;

/* A request (with the owner's hold on it) on its way to its handler, or the end of a
** stream's connection (with a hold on the stream) on its way to its on_close. */
typedef struct event {
  struct event *next;
  event_kind kind;
  hersh_http_pending *p;
  char *meta; /* "method\0path\0", then records: 'q' or 'h', key\0, value\0 */
  size_t meta_len;
  char *body;
  size_t body_len;
  int res_ref; /* the res made for it, while its handler runs */
  /* on_headers: the request, deferred only if the Lua side answers or takes it, and
  ** the answer server.c sends from the headers (a 500 when on_headers raised) */
  const hersh_http_request *early;
  hersh_http_response *early_res;
} event;

typedef struct lserver lserver;

/* The server's side of the loop; freed at shutdown, once no handler of its is running. */
typedef struct bridge {
  pthread_mutex_t mu; /* head, tail */
  event *head, *tail;
  hersh_lhandle *wake;  /* owns handler_ref and self_ref */
  hersh_lhandle *check; /* looks at the sockets of quiet streams */
  hersh_lhandle *poll;  /* the server's fd: runs it */
  hersh_lhandle *tick;  /* the server's next deadline: runs it */
  hersh_http_server *http;
  hersh_lmod *m;
  lserver *server; /* its Lua object, until shutdown */
  int handler_ref, self_ref;
  int on_headers_ref; /* owned by tick */
  bool closed;
  bool dispatching; /* on_wake is calling handlers: it frees the bridge if one closed it */
  bool running;     /* in hersh_http_server_run: a close waits for its end */
  bool rerun;       /* a connection resumed: run the server again at once */
  bool close_later; /* close() came during the run */
  lstream *streams; /* open Lua streams (loop thread) */
  hersh_route_table *routes; /* a hold, or NULL: the fast paths (proxy, fixed routes) */
  hersh_front *front;        /* with routes: the listening socket, and the proxy's requests */
} bridge;

struct lserver {
  bridge *b; /* NULL once closed */
  int port;
};

typedef struct lres {
  hersh_http_pending *p;           /* the owner's hold; NULL once answered */
  const hersh_http_request *early; /* in on_headers, not deferred yet (see take_hold) */
} lres;

struct lstream {
  hersh_http_stream *s; /* a hold kept until __gc, so closed() works after finish */
  bridge *b;            /* while in its list of open streams */
  lstream *prev, *next;
  int on_close_ref;
  bool finished;   /* finish() gave up the owner's hold */
  bool closed;     /* known to be closed */
  bool close_seen; /* the connection's end reached the loop */
  bool fired;      /* on_close ran */
};

#define check_server(L, i) ((lserver *)luaL_checkudata((L), (i), HERSH_HTTPD_MT))
#define check_res(L, i) ((lres *)luaL_checkudata((L), (i), HERSH_HTTPD_RES_MT))
#define check_stream(L, i) ((lstream *)luaL_checkudata((L), (i), HERSH_HTTPD_STREAM_MT))

/* ---- the queue (any thread) ------------------------------------------------------------ */

static void push_event(bridge *b, event *ev) {
  pthread_mutex_lock(&b->mu);
  if (b->tail) b->tail->next = ev;
  else b->head = ev;
  b->tail = ev;
  pthread_mutex_unlock(&b->mu);
  uv_async_send(&b->wake->uv.async);
}

static event *take_events(bridge *b) {
  pthread_mutex_lock(&b->mu);
  event *list = b->head;
  b->head = b->tail = NULL;
  pthread_mutex_unlock(&b->mu);
  return list;
}

/* Frees an event; a request nobody took is answered 503. */
static void drop_event(event *ev) {
  if (ev->p && ev->kind == EV_REQUEST) {
    hersh_http_response res = {0};
    hersh_http_error(&res, 503, "the server is closed");
    hersh_http_complete(ev->p, &res);
  } else if (ev->p) {
    hersh_http_stream_release(ev->p);
  }
  free(ev->meta);
  free(ev->body);
  free(ev);
}

/* ---- requests, inside the server's run (loop thread) ---------------------------------- */

static enum MHD_Result copy_value(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  hersh_buf *meta = cls;
  bool header = kind == MHD_HEADER_KIND;
  hersh_buf_put(meta, header ? "h" : "q", 1);
  size_t n = strlen(key), at = meta->len;
  hersh_buf_put(meta, key, n + 1);
  for (size_t i = at; header && !meta->oom && i < at + n; i++) meta->p[i] = (char)tolower((unsigned char)meta->p[i]);
  if (!value) value = ""; /* "?flag" */
  hersh_buf_put(meta, value, strlen(value) + 1);
  return MHD_YES;
}

static void deliver_request(bridge *b, event *ev, int handler_ref);

/* The event of a request (its headers, query and body copied); NULL when out of memory. */
static event *new_event(const hersh_http_request *req) {
  event *ev = calloc(1, sizeof *ev);
  hersh_buf meta = {0};
  hersh_buf_put(&meta, req->method, strlen(req->method) + 1);
  hersh_buf_put(&meta, req->path, strlen(req->path) + 1);
  MHD_get_connection_values(req->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, copy_value, &meta);
  size_t meta_len = meta.len;
  char *text = hersh_buf_take(&meta);
  char *body = req->body_len ? malloc(req->body_len) : NULL;
  if (!ev || !text || (req->body_len && !body)) {
    free(ev);
    free(text);
    free(body);
    return NULL;
  }
  if (body) memcpy(body, req->body, req->body_len);
  *ev = (event){.kind = EV_REQUEST, .meta = text, .meta_len = meta_len, .body = body, .body_len = req->body_len,
                .res_ref = LUA_NOREF};
  return ev;
}

static void on_http(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  bridge *b = ud;
  if (b->closed || b->close_later) return hersh_http_error(res, 503, "the server is closed");
  if (b->routes && hersh_fixed_route_try(b->routes, req, res)) return;
  event *ev = new_event(req);
  if (!ev) return hersh_http_error(res, 500, "out of memory");
  ev->p = hersh_http_defer(req);
  if (!ev->p) {
    drop_event(ev);
    return hersh_http_error(res, 503, "the server is stopping");
  }
  deliver_request(b, ev, b->handler_ref); /* an answer given now goes out when this call returns */
  drop_event(ev);
}

/* on_headers(req, res) before the body is read: a res left alone goes on as usual. */
static void on_http_headers(const hersh_http_request *req, hersh_http_response *res, void *ud) {
  bridge *b = ud;
  if (b->closed || b->close_later) return; /* on_http answers 503 */
  if (b->routes && hersh_proxy_route_try(b->m->loop, b->routes, req)) return;
  /* with routes, the Lua on_headers is only for the proxy's requests C left to it */
  if (b->on_headers_ref == LUA_NOREF || (b->routes && !hersh_proxy_route_match(req->path))) return;
  event *ev = new_event(req);
  if (!ev) return hersh_http_error(res, 500, "out of memory");
  ev->early = req;
  ev->early_res = res;
  deliver_request(b, ev, b->on_headers_ref);
  drop_event(ev);
}

/* A stream's connection ended: in the server's run or stop, or at registration. */
static void on_stream_closed(hersh_http_stream *s, void *ud) {
  bridge *b = ud;
  event *ev = calloc(1, sizeof *ev);
  if (!ev) return; /* its on_close will not run; closed() still tells */
  hersh_http_stream_retain(s);
  ev->kind = EV_CLOSED;
  ev->p = s;
  ev->res_ref = LUA_NOREF;
  push_event(b, ev);
}

/* ---- streams (loop thread) ------------------------------------------------------------- */

static void on_check(uv_timer_t *t) {
  bridge *b = t->data;
  for (lstream *ls = b->streams; ls; ls = ls->next) hersh_http_stream_closed(ls->s); /* a leaver's end is queued */
}

static void link_stream(bridge *b, lstream *ls) {
  ls->b = b;
  ls->prev = NULL;
  ls->next = b->streams;
  if (b->streams) b->streams->prev = ls;
  b->streams = ls;
  if (!uv_is_active(&b->check->uv.handle)) uv_timer_start(&b->check->uv.timer, on_check, CHECK_MS, CHECK_MS);
}

static void unlink_stream(lstream *ls) {
  bridge *b = ls->b;
  if (!b) return;
  if (ls->prev) ls->prev->next = ls->next;
  else b->streams = ls->next;
  if (ls->next) ls->next->prev = ls->prev;
  ls->b = NULL;
  ls->prev = ls->next = NULL;
  if (!b->streams && b->check) uv_timer_stop(&b->check->uv.timer);
}

static void fire_on_close(hersh_lmod *m, lstream *ls) {
  if (ls->on_close_ref == LUA_NOREF || ls->fired || ls->finished) return;
  ls->fired = true;
  lua_State *L = m->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) return;
  hersh_lua_push_handler(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ls->on_close_ref);
  hersh_lua_status rc = hersh_lua_pcall(m, L, 0, 0, 0);
  if (rc != HERSH_LUA_OK) {
    const char *msg = rc == HERSH_LUA_NOMEM ? "out of memory" : lua_tostring(L, -1);
    fprintf(stderr, "hersh: http stream on_close: %s\n", msg ? msg : "(error object is not a string)");
  }
  lua_settop(L, top);
}

static void deliver_closed(bridge *b, hersh_http_stream *s) {
  lstream *ls = b->streams;
  while (ls && ls->s != s) ls = ls->next;
  if (!ls) return; /* finished or collected: nobody waits for it */
  unlink_stream(ls);
  ls->closed = ls->close_seen = true;
  fire_on_close(b->m, ls);
}

/* ---- requests (loop thread) ------------------------------------------------------------ */

/* Pushes the request table of the event. */
static void push_request(lua_State *L, const event *ev) HERSH_MAY_RAISE {
  const char *p = ev->meta, *end = ev->meta + ev->meta_len;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, p);
  lua_setfield(L, -2, "method");
  p += strlen(p) + 1;
  lua_pushstring(L, p);
  lua_setfield(L, -2, "path");
  p += strlen(p) + 1;
  lua_newtable(L);
  int query = lua_gettop(L);
  lua_newtable(L);
  int headers = lua_gettop(L);
  while (p < end) {
    bool header = *p++ == 'h';
    const char *key = p;
    p += strlen(p) + 1;
    const char *value = p;
    p += strlen(p) + 1;
    int t = header ? headers : query;
    lua_pushstring(L, key);
    if (lua_rawget(L, t) == LUA_TSTRING) { /* again: a header joins, a query keeps its first */
      if (header) {
        lua_pushfstring(L, "%s, %s", lua_tostring(L, -1), value);
        lua_setfield(L, t, key);
      }
      lua_pop(L, 1);
      continue;
    }
    lua_pop(L, 1);
    lua_pushstring(L, value);
    lua_setfield(L, t, key);
  }
  lua_pushvalue(L, headers);
  lua_setfield(L, query - 1, "headers");
  lua_pushvalue(L, query);
  lua_setfield(L, query - 1, "query");
  lua_settop(L, query - 1);
  lua_pushlstring(L, ev->body ? ev->body : "", ev->body_len);
  lua_setfield(L, -2, "body");
}

/* Runs under hersh_lua_pcall: (event, server, handler) -> handler(req, res). The res
** takes the event's hold first, so from then on a raise leaves the answer to it. */
static int l_dispatch(lua_State *L) {
  event *ev = lua_touserdata(L, 1);
  lres *r = lua_newuserdatauv(L, sizeof *r, 1);
  r->p = NULL;
  luaL_setmetatable(L, HERSH_HTTPD_RES_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1); /* the server, for res:stream */
  r->p = ev->p;
  r->early = ev->early;
  ev->p = NULL;
  int res = lua_gettop(L);
  lua_pushvalue(L, res);
  ev->res_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  push_request(L, ev);
  lua_pushvalue(L, res);
  lua_call(L, 2, 1);
  return 1;
}

/* {"error": text} in res, with text's first line only: no traceback. */
static void error_line(hersh_http_response *res, int status, const char *text) {
  const char *nl = strchr(text, '\n');
  int n = nl ? (int)(nl - text) : (int)strlen(text);
  hersh_http_error(res, status, "%.*s", n, text);
}

/* Answers {"error": text} and gives up the hold. */
static int answer_error(lres *r, int status, const char *text) {
  hersh_http_pending *p = r->p;
  r->p = NULL;
  hersh_http_response res = {0};
  error_line(&res, status, text);
  return hersh_http_complete(p, &res);
}

/* The res's hold, taken from it: an on_headers request is deferred now. NULL when the
** server is stopping (hersh_errmsg). */
static hersh_http_pending *take_hold(lres *r) {
  hersh_http_pending *p = r->early ? hersh_http_defer(r->early) : r->p;
  r->early = NULL;
  r->p = NULL;
  return p;
}

static void deliver_request(bridge *b, event *ev, int handler_ref) {
  lua_State *L = b->m->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 8)) return; /* dropped: answered 503 */
  hersh_lua_push_handler(L);
  lua_pushcfunction(L, l_dispatch);
  lua_pushlightuserdata(L, ev);
  lua_rawgeti(L, LUA_REGISTRYINDEX, b->self_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, handler_ref);
  hersh_lua_status rc = hersh_lua_pcall(b->m, L, 3, 1, 0);
  const char *msg = NULL;
  if (rc != HERSH_LUA_OK) {
    msg = rc == HERSH_LUA_NOMEM ? "out of memory" : lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    fprintf(stderr, "hersh: http handler: %s\n", msg);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ev->res_ref);
  lres *r = lua_touserdata(L, -1); /* NULL if the dispatch failed before making it */
  if (msg && r && r->p) answer_error(r, 500, msg);
  if (msg && (!r || r->early) && ev->early_res) error_line(ev->early_res, 500, msg);
  if (r && r->early && !msg && lua_toboolean(L, -2)) { /* on_headers keeps it: answered later */
    r->p = take_hold(r);
    if (!r->p) error_line(ev->early_res, 503, "the server is stopping");
  }
  if (r) r->early = NULL; /* the request is gone once on_headers returns */
  luaL_unref(L, LUA_REGISTRYINDEX, ev->res_ref);
  ev->res_ref = LUA_NOREF;
  lua_settop(L, top);
}

static void bridge_free(bridge *b) {
  hersh_route_table_release(b->routes);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

static void on_wake(uv_async_t *h) {
  bridge *b = h->data;
  event *ev = take_events(b);
  b->dispatching = true;
  while (ev) {
    event *next = ev->next;
    if (!b->closed) deliver_closed(b, ev->p);
    drop_event(ev);
    ev = next;
  }
  b->dispatching = false;
  if (b->closed) bridge_free(b); /* an on_close closed the server */
}

static void bridge_shutdown(bridge *b, lua_State *L);
static void on_tick(uv_timer_t *t);

/* Runs the server; then it runs again when its fd wakes or its deadline comes. */
static void run_server(bridge *b) {
  b->running = true;
  b->rerun = false;
  int ms = hersh_http_server_run(b->http);
  b->running = false;
  if (b->close_later) return bridge_shutdown(b, b->m->L);
  if (b->rerun) ms = 0;
  if (ms >= 0) uv_timer_start(&b->tick->uv.timer, on_tick, (uint64_t)ms, 0);
  else uv_timer_stop(&b->tick->uv.timer);
}

/* A connection resumed (an answer or a stream's data came): a zero timer runs the
** server. The loop turns with UV_RUN_ONCE, which ends by running the timers due, so a
** resume from an I/O callback is sent before the loop polls again. Not from here: the
** caller holds the request's mutex, which the access handler takes. */
static void on_resume(void *ud) {
  bridge *b = ud;
  b->rerun = true;
  if (!b->running && b->tick) uv_timer_start(&b->tick->uv.timer, on_tick, 0, 0);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status, (void)events; /* an error too: the run finds what it is */
  run_server(h->data);
}

static void on_tick(uv_timer_t *t) { run_server(t->data); }

/* ---- the server ------------------------------------------------------------------------ */

/* Stops the server, tells the streams whose connection ended (with L; without, the Lua
** state is closing), closes the handles and frees the bridge. */
static void bridge_shutdown(bridge *b, lua_State *L) {
  if (b->closed) return;
  if (b->running) { /* in one of its callbacks: after the run */
    b->close_later = true;
    if (b->server) b->server->b = NULL;
    b->server = NULL;
    return;
  }
  b->closed = true;
  hersh_front_stop(b->front); /* before the server closes the socket it watches */
  b->front = NULL;
  hersh_lhandle_close(b->poll); /* while the fd it watches is still open */
  hersh_lhandle_close(b->tick);
  hersh_http_server_stop(b->http); /* every connection ends: their closes are queued */
  b->http = NULL;
  for (event *ev; (ev = take_events(b)) != NULL;) { /* an on_close may queue more */
    while (ev) {
      event *next = ev->next;
      if (L && ev->kind == EV_CLOSED) deliver_closed(b, ev->p);
      drop_event(ev);
      ev = next;
    }
  }
  while (b->streams) {
    b->streams->closed = true;
    unlink_stream(b->streams);
  }
  if (b->server) b->server->b = NULL;
  hersh_lhandle_close(b->check);
  hersh_lhandle_close(b->wake); /* the server object is collectable from now on */
  if (!b->dispatching) bridge_free(b);
}

/* The loop's teardown (hersh_lhandle_close_all): no Lua is called. */
static void bridge_close(void *b) { bridge_shutdown(b, NULL); }

static int opt_int(lua_State *L, const char *key, lua_Integer def, lua_Integer min, lua_Integer max) HERSH_MAY_RAISE {
  lua_Integer v = def;
  int type = lua_getfield(L, 1, key);
  if (type != LUA_TNIL) {
    if (!lua_isinteger(L, -1)) luaL_error(L, "http_serve: %s must be an integer, not %s", key, luaL_typename(L, -1));
    v = lua_tointeger(L, -1);
    if (v < min || v > max) luaL_error(L, "http_serve: %s %d is out of range", key, (int)v);
  }
  lua_pop(L, 1);
  return (int)v;
}

/* The string field `key` of the options (pushed: it stays valid while on the stack), or NULL. */
static const char *opt_string(lua_State *L, const char *key) HERSH_MAY_RAISE {
  int type = lua_getfield(L, 1, key);
  if (type != LUA_TNIL && type != LUA_TSTRING) luaL_error(L, "http_serve: %s must be a string, not %s", key, luaL_typename(L, -1));
  return lua_tostring(L, -1);
}

/* core.http_serve{bind, port, fd, max_body, max_buffered, token, public_path, public_prefix,
** max_connections, max_per_client, idle_timeout, request_timeout, handler, on_headers} -> server
** | nil, err, code (the limits as in hersh_http_options; 0 or nil: the default). on_headers(req,
** res), if given, sees each request before its body is read (req.body ""): if it answers res,
** hands it to C (hersh_lhttpd_take) or returns true (res answers later; the body is
** dropped), the handler is not called for it. proxy_routes: an httpd.routes() table
** for the fast paths; with it, on_headers sees only the requests for a program's proxy
** (/programs/{id}/proxy[/...]) that C did not forward. */
static int l_httpd_serve(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  hersh_http_options o = {.listen_fd = -1};
  if (lua_getfield(L, 1, "handler") != LUA_TFUNCTION) /* 2 */
    luaL_error(L, "http_serve: handler must be a function, not %s", luaL_typename(L, -1));
  o.bind = opt_string(L, "bind");               /* 3 */
  o.token = opt_string(L, "token");             /* 4 */
  o.public_path = opt_string(L, "public_path"); /* 5 */
  o.public_prefix = opt_string(L, "public_prefix"); /* 6 */
  int early_type = lua_getfield(L, 1, "on_headers");  /* 7 */
  if (early_type != LUA_TNIL && early_type != LUA_TFUNCTION)
    luaL_error(L, "http_serve: on_headers must be a function, not %s", luaL_typename(L, -1));
  lua_getfield(L, 1, "proxy_routes"); /* 8 */
  hersh_route_table **routes = lua_isnil(L, -1) ? NULL : luaL_checkudata(L, -1, HERSH_HTTPD_ROUTES_MT);
  o.port = opt_int(L, "port", 0, 0, 65535);
  o.listen_fd = opt_int(L, "fd", -1, 0, 1 << 30);
  o.max_body = (size_t)opt_int(L, "max_body", DEFAULT_MAX_BODY, 0, 1 << 30);
  o.max_buffered = (size_t)opt_int(L, "max_buffered", 0, 0, 1 << 30);
  o.max_connections = (unsigned)opt_int(L, "max_connections", 0, 0, 1 << 20);
  o.max_per_client = (unsigned)opt_int(L, "max_per_client", 0, 0, 1 << 20);
  o.idle_timeout = (unsigned)opt_int(L, "idle_timeout", 0, 0, 1 << 20);
  o.request_timeout = (unsigned)opt_int(L, "request_timeout", 0, 0, 1 << 20);
  hersh_lmod *m = hersh_lmod_get(L);
  lserver *ls = lua_newuserdatauv(L, sizeof *ls, 0); /* 9 */
  *ls = (lserver){0};
  luaL_setmetatable(L, HERSH_HTTPD_MT);
  bridge *b = calloc(1, sizeof *b);
  if (!b) return hersh_lua_push_failure(L, hersh_fail_with(HERSH_E_NOMEM, "out of memory starting the HTTP server"));
  pthread_mutex_init(&b->mu, NULL);
  b->m = m;
  b->server = ls;
  b->handler_ref = b->self_ref = b->on_headers_ref = LUA_NOREF;
  if (routes && *routes) {
    b->routes = *routes;
    hersh_route_table_retain(b->routes);
  }
  ls->b = b; /* from here its __gc shuts it down */
  uv_loop_t *uv = hersh_loop_uv(m->loop);
  hersh_lhandle *h = hersh_lhandle_new(m, b, bridge_close);
  bool ok = hersh_lhandle_open(h, h ? uv_async_init(uv, &h->uv.async, on_wake) : UV_ENOMEM, &b->wake);
  h = ok ? hersh_lhandle_new(m, b, bridge_close) : NULL;
  ok = ok && hersh_lhandle_open(h, h ? uv_timer_init(uv, &h->uv.timer) : UV_ENOMEM, &b->check);
  h = ok ? hersh_lhandle_new(m, b, bridge_close) : NULL;
  ok = ok && hersh_lhandle_open(h, h ? uv_timer_init(uv, &h->uv.timer) : UV_ENOMEM, &b->tick);
  o.on_loop = true;
  o.front = b->routes != NULL;
  o.wake = on_resume;
  if (early_type == LUA_TFUNCTION || b->routes) o.on_headers = on_http_headers;
  int rc = ok ? hersh_http_server_start(&o, on_http, b, &b->http)
              : hersh_fail_with(HERSH_E_SYS, "cannot make the loop handles of the HTTP server");
  h = rc ? NULL : hersh_lhandle_new(m, b, bridge_close);
  if (!rc && !hersh_lhandle_open(h, h ? uv_poll_init(uv, &h->uv.poll, hersh_http_server_fd(b->http)) : UV_ENOMEM,
                                 &b->poll))
    rc = hersh_fail_with(HERSH_E_SYS, "cannot watch the HTTP server's descriptor");
  if (!rc && uv_poll_start(&b->poll->uv.poll, UV_READABLE, on_poll) != 0)
    rc = hersh_fail_with(HERSH_E_SYS, "cannot watch the HTTP server's descriptor");
  if (!rc && o.front) rc = hersh_front_start(m->loop, b->http, b->routes, &o, &b->front);
  if (rc) {
    bridge_shutdown(b, NULL);
    return hersh_lua_push_failure(L, rc);
  }
  uv_unref(&b->check->uv.handle); /* the server's fd keeps the loop */
  uv_unref(&b->tick->uv.handle);
  ls->port = hersh_http_server_port(b->http);
  lua_pushvalue(L, 2);
  b->handler_ref = hersh_lhandle_keep(b->wake, L);
  lua_pushvalue(L, 9);
  b->self_ref = hersh_lhandle_keep(b->wake, L); /* serving keeps it alive until close() */
  if (early_type == LUA_TFUNCTION) {
    lua_pushvalue(L, 7);
    b->on_headers_ref = hersh_lhandle_keep(b->tick, L);
  }
  lua_settop(L, 9);
  run_server(b); /* once the handlers are in: a socket handed over may have requests waiting */
  return 1;
}

static int l_server_port(lua_State *L) {
  lua_pushinteger(L, check_server(L, 1)->port);
  return 1;
}

static int l_server_close(lua_State *L) {
  lserver *ls = check_server(L, 1);
  bridge *b = ls->b;
  ls->b = NULL;
  if (b) bridge_shutdown(b, L);
  return 0;
}

/* Only reached after close(), or when the Lua state closes: no Lua is called then. */
static int l_server_gc(lua_State *L) {
  lserver *ls = check_server(L, 1);
  bridge *b = ls->b;
  ls->b = NULL;
  if (b) bridge_shutdown(b, NULL);
  return 0;
}

/* ---- res ---------------------------------------------------------------------------------- */

/* The headers table at idx as "Name: value\r\n" lines (pushed), or NULL for nil.
** Raises on a malformed header: a caller's bug. */
static const char *header_lines(lua_State *L, int idx) HERSH_MAY_RAISE {
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_newtable(L);
  int lines = lua_gettop(L);
  lua_Integer n = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
    size_t kn, vn;
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
      luaL_error(L, "headers must map names to strings");
    const char *name = lua_tolstring(L, -2, &kn);
    lua_pushvalue(L, -1); /* a copy: lua_tolstring may turn a number into a string */
    const char *value = lua_tolstring(L, -1, &vn);
    bool bad = kn == 0 || strlen(name) != kn || strpbrk(name, " \t\r\n:") || strpbrk(value, "\r\n") || strlen(value) != vn;
    if (bad) luaL_error(L, "bad header '%s'", name);
    lua_pushfstring(L, "%s: %s\r\n", name, value);
    lua_rawseti(L, lines, ++n);
    lua_pop(L, 1);
  }
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, lines, i);
    luaL_addvalue(&buf);
  }
  luaL_pushresult(&buf);
  lua_remove(L, lines);
  return lua_tostring(L, -1);
}

static int check_status(lua_State *L, int idx) HERSH_MAY_RAISE {
  lua_Integer status = luaL_checkinteger(L, idx);
  luaL_argcheck(L, status >= 100 && status <= 999, idx, "not an HTTP status");
  return (int)status;
}

/* res:send(status, body, headers) -> true | nil, err, code */
static int l_res_send(lua_State *L) {
  lres *r = check_res(L, 1);
  int status = check_status(L, 2);
  size_t len;
  const char *body = luaL_optlstring(L, 3, "", &len);
  const char *lines = header_lines(L, 4);
  if (!r->p && !r->early) return luaL_error(L, "the response was already sent");
  char *copy = malloc(len + 1); /* nothing raises from here on */
  char *headers = lines ? hersh_strdup(lines) : NULL;
  if (!copy || (lines && !headers)) {
    free(copy);
    free(headers);
    return hersh_lua_push_failure(L, hersh_fail_with(HERSH_E_NOMEM, "out of memory answering a request"));
  }
  memcpy(copy, body, len);
  copy[len] = '\0';
  hersh_http_response res = {.status = status, .body = copy, .body_len = len, .headers = headers};
  hersh_http_pending *p = take_hold(r);
  if (!p) {
    free(copy);
    free(headers);
    return hersh_lua_push_failure(L, HERSH_E_STOPPED);
  }
  int rc = hersh_http_complete(p, &res);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* res:stream(status, headers) -> stream | nil, err, code */
static int l_res_stream(lua_State *L) {
  lres *r = check_res(L, 1);
  int status = check_status(L, 2);
  lua_settop(L, 3);
  const char *lines = header_lines(L, 3);
  if (!r->p && !r->early) return luaL_error(L, "the response was already sent");
  lua_getiuservalue(L, 1, 1);
  lserver *server = luaL_testudata(L, -1, HERSH_HTTPD_MT);
  bridge *b = server ? server->b : NULL;
  lstream *ls = lua_newuserdatauv(L, sizeof *ls, 0);
  *ls = (lstream){.on_close_ref = LUA_NOREF};
  luaL_setmetatable(L, HERSH_HTTPD_STREAM_MT);
  hersh_http_pending *p = take_hold(r); /* nothing raises from here on */
  hersh_http_stream *s = p ? hersh_http_stream_start(p, status, NULL, lines) : NULL;
  if (!s) {
    ls->finished = true;
    return hersh_lua_push_failure(L, p ? HERSH_E_NOMEM : HERSH_E_STOPPED);
  }
  hersh_http_stream_retain(s);
  ls->s = s;
  if (b && !b->closed) {
    link_stream(b, ls);
    hersh_http_stream_on_close(s, on_stream_closed, b);
  } else {
    ls->closed = true;
  }
  return 1;
}

hersh_http_pending *hersh_lhttpd_take(lua_State *L, int idx) HERSH_MAY_RAISE {
  lres *r = check_res(L, idx);
  if (!r->p && !r->early) luaL_error(L, "the response was already sent");
  return take_hold(r);
}

static int l_res_gc(lua_State *L) {
  lres *r = check_res(L, 1);
  if (r->p) answer_error(r, 500, "the handler never answered");
  return 0;
}

/* ---- stream --------------------------------------------------------------------------------- */

/* stream:write(data) -> true | nil, err, code */
static int l_stream_write(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (ls->finished) return luaL_error(L, "the stream is finished");
  int rc = hersh_http_stream_write(ls->s, data, len);
  if (rc) return hersh_lua_push_failure(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static void finish(lstream *ls) {
  if (ls->finished) return;
  ls->finished = true;
  unlink_stream(ls);
  hersh_http_stream_end(ls->s);
}

static int l_stream_finish(lua_State *L) {
  finish(check_stream(L, 1));
  return 0;
}

/* stream:waiting() -> the bytes written that the client has not taken yet */
static int l_stream_waiting(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  lua_pushinteger(L, ls->s ? (lua_Integer)hersh_http_stream_waiting(ls->s) : 0);
  return 1;
}

/* stream:cut(): ends it at once, dropping what waits (the client is too slow) */
static int l_stream_cut(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  if (ls->s) hersh_http_stream_cut(ls->s);
  return 0;
}

static int l_stream_closed(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  if (!ls->closed && ls->s && hersh_http_stream_closed(ls->s)) ls->closed = true;
  lua_pushboolean(L, ls->closed);
  return 1;
}

/* stream:on_close(fn): fn() when the client leaves before finish (at once if it left). */
static int l_stream_on_close(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->on_close_ref);
  ls->on_close_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (ls->close_seen || (ls->closed && !ls->b)) fire_on_close(hersh_lmod_get(L), ls);
  return 0;
}

static int l_stream_gc(lua_State *L) {
  lstream *ls = check_stream(L, 1);
  if (ls->s) {
    finish(ls); /* dropped unfinished: the client gets a proper end */
    hersh_http_stream_release(ls->s);
    ls->s = NULL;
  }
  unlink_stream(ls);
  luaL_unref(L, LUA_REGISTRYINDEX, ls->on_close_ref);
  ls->on_close_ref = LUA_NOREF;
  return 0;
}

/* ---- the fast paths' route table --------------------------------------------------------- */

#define check_routes(L, i) (*(hersh_route_table **)luaL_checkudata((L), (i), HERSH_HTTPD_ROUTES_MT))

/* httpd.routes(bounds) -> table, bounds: the proxy duration histogram's upper bounds. */
static int l_routes_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double bounds[HERSH_ROUTE_MAX_BUCKETS];
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n <= HERSH_ROUTE_MAX_BUCKETS, 1, "too many bounds");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    bounds[i - 1] = luaL_checknumber(L, -1);
    lua_pop(L, 1);
  }
  hersh_route_table **u = lua_newuserdatauv(L, sizeof *u, 0);
  *u = NULL;
  luaL_setmetatable(L, HERSH_HTTPD_ROUTES_MT);
  *u = hersh_route_table_new(bounds, (size_t)n);
  if (!*u) return luaL_error(L, "out of memory making the proxy's route table");
  return 1;
}

/* routes:set(key, port, ready, timeout, connect_timeout): key is a program's id or name. */
static int l_routes_set(lua_State *L) {
  hersh_route_table *t = check_routes(L, 1);
  const char *key = luaL_checkstring(L, 2);
  hersh_route r = {.port = (int)luaL_checkinteger(L, 3), .ready = lua_toboolean(L, 4),
                   .timeout = luaL_checknumber(L, 5), .connect_timeout = luaL_checknumber(L, 6)};
  if (hersh_route_table_set(t, key, &r) != HERSH_OK) return luaL_error(L, "%s", hersh_errmsg());
  /* What the proxy pooled to the program before this change is of no use any more. */
  hersh_upstream_retire(hersh_upstream_get(hersh_lmod_get(L)->loop), r.port);
  return 0;
}

/* routes:set_record(key, text): GET /programs/{key}'s answer, until key's next set. */
static int l_routes_set_record(lua_State *L) {
  hersh_route_table *t = check_routes(L, 1);
  size_t len;
  const char *key = luaL_checkstring(L, 2), *text = luaL_checklstring(L, 3, &len);
  int rc = hersh_route_table_set_record(t, key, text, len);
  if (rc == HERSH_E_NOMEM) return luaL_error(L, "%s", hersh_errmsg());
  return 0; /* a key not in the table: Lua keeps answering it */
}

/* routes:set_health(text | nil): GET /health's answer; nil: unknown. */
static int l_routes_set_health(lua_State *L) {
  hersh_route_table *t = check_routes(L, 1);
  size_t len = 0;
  const char *text = luaL_optlstring(L, 2, NULL, &len);
  if (hersh_route_table_set_health(t, text, len) != HERSH_OK) return luaL_error(L, "%s", hersh_errmsg());
  return 0;
}

static int l_routes_remove(lua_State *L) {
  hersh_route_table_remove(check_routes(L, 1), luaL_checkstring(L, 2));
  return 0;
}

/* routes:hosts{name...}: the Host header values the fast path lets through. */
static int l_routes_hosts(lua_State *L) {
  hersh_route_table *t = check_routes(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  luaL_argcheck(L, n >= 0 && n <= 4096, 2, "too many names");
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TSTRING) luaL_error(L, "routes:hosts: name %d is not a string", (int)i);
    names[i - 1] = lua_tostring(L, -1); /* anchored in the table at 2 */
    lua_pop(L, 1);
  }
  if (hersh_route_table_set_hosts(t, names, (size_t)n) != HERSH_OK) return luaL_error(L, "%s", hersh_errmsg());
  return 0;
}

/* routes:take() -> {[status] = count}, sum, count, {cumulative count per bound}, health,
** record: what the proxy's fast path forwarded since the last take, and the 200s of
** GET /health and GET /programs/{id} answered in C. */
static int l_routes_take(lua_State *L) {
  hersh_route_table *t = check_routes(L, 1);
  hersh_route_tally *y = lua_newuserdatauv(L, sizeof *y, 0); /* too big for the C stack's comfort */
  hersh_route_table_take(t, y);
  lua_newtable(L);
  for (int i = 0; i < HERSH_ROUTE_STATUSES; i++) {
    if (!y->status[i]) continue;
    lua_pushinteger(L, (lua_Integer)y->status[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushnumber(L, y->sum);
  lua_pushinteger(L, (lua_Integer)y->count);
  size_t n;
  hersh_route_table_bounds(t, &n);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, (lua_Integer)y->le[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushinteger(L, (lua_Integer)y->health);
  lua_pushinteger(L, (lua_Integer)y->record);
  return 6;
}

static int l_routes_gc(lua_State *L) {
  hersh_route_table **u = luaL_checkudata(L, 1, HERSH_HTTPD_ROUTES_MT);
  hersh_route_table_release(*u);
  *u = NULL;
  return 0;
}

static const luaL_Reg server_meth[] = {{"port", l_server_port}, {"close", l_server_close}, {NULL, NULL}};
static const luaL_Reg server_metameth[] = {{"__gc", l_server_gc}, {"__close", l_server_close}, {NULL, NULL}};
static const luaL_Reg res_meth[] = {{"send", l_res_send}, {"stream", l_res_stream}, {NULL, NULL}};
static const luaL_Reg res_metameth[] = {{"__gc", l_res_gc}, {NULL, NULL}};
static const luaL_Reg stream_meth[] = {{"write", l_stream_write},   {"finish", l_stream_finish},
                                       {"closed", l_stream_closed}, {"on_close", l_stream_on_close},
                                       {"waiting", l_stream_waiting}, {"cut", l_stream_cut},
                                       {NULL, NULL}};
static const luaL_Reg stream_metameth[] = {{"__gc", l_stream_gc}, {NULL, NULL}};
static const luaL_Reg routes_meth[] = {{"set", l_routes_set},
                                       {"remove", l_routes_remove},
                                       {"set_record", l_routes_set_record},
                                       {"set_health", l_routes_set_health},
                                       {"hosts", l_routes_hosts},
                                       {"take", l_routes_take},
                                       {NULL, NULL}};
static const luaL_Reg routes_metameth[] = {{"__gc", l_routes_gc}, {NULL, NULL}};

/* Adds serve to the module table at the stack top (hersh.httpd). */
int hersh_lhttpd_open(lua_State *L) {
  hersh_lclass_register(L, HERSH_HTTPD_MT, server_meth, server_metameth);
  hersh_lclass_register(L, HERSH_HTTPD_RES_MT, res_meth, res_metameth);
  hersh_lclass_register(L, HERSH_HTTPD_STREAM_MT, stream_meth, stream_metameth);
  hersh_lclass_register(L, HERSH_HTTPD_ROUTES_MT, routes_meth, routes_metameth);
  lua_pushcfunction(L, l_httpd_serve);
  lua_setfield(L, -2, "serve");
  lua_pushcfunction(L, l_routes_new);
  lua_setfield(L, -2, "routes");
  return 0;
}
