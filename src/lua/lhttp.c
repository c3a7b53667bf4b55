/*
** lhttp.c -- the loop's HTTP client for Lua, answered three ways over one request path:
** the Host's hersh.http.request(opts, callback) and hersh.http.stream(opts, handlers),
** and hersh.core.fetch(opts), which a task (a poll, a flow producer, a reducer, a
** cleanup) waits on: it yields, and the loop resumes it with the answer (the yield
** protocol of ltask.c). lua/hersh/fetch.lua makes it the user-facing hersh.http.
**
** A callback (or a stream's handlers) waits in the registry until the answer comes in
** (or each piece of it), then is called through the one pcall wrapper, with no deadline.
** A task that ends while it waits (deadline, kill, watcher end) abandons its request:
** the transfer stops and its connection closes. Pending requests are listed in a
** per-state userdata: when the Lua state closes before the loop frees its client, its
** __gc orphans the callbacks' requests (and cancels the streams), and they finish later
** without touching Lua; a task's request is its task's to end. hersh.http.proxy hands
** a Host request to the proxy in C (http/proxy.c) and is kept the same way.
*/
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/client.h"
#include "http/proxy.h"
#include "http/upstream.h"
#include "lhersh.h"

#define HERSH_HTTP_STATE_MT "hersh.HttpState"
#define HERSH_HTTP_STREAM_MT "hersh.HttpClientStream"

typedef struct lhttp_req lhttp_req;

/* One per Lua state, anchored in the registry until the state closes. */
typedef struct lhttp_state {
  hersh_lmod *m;
  lhttp_req *pending;
} lhttp_state;

struct lhttp_req {
  lhttp_state *st;   /* NULL once the Lua state is gone */
  hersh_http_client *c;
  int cb_ref;        /* the callback, or a stream's handlers; LUA_NOREF when a task waits */
  hersh_ltask *task; /* the task waiting on it, or NULL */
  lhttp_req *prev, *next;
  /* a stream only: its handle, and its Lua object (anchored by self_ref until done) */
  hersh_http_req *handle;
  struct lhttp_stream *obj;
  int self_ref;
};

/* The object hersh.http.stream returns; q is NULL once the stream has ended. */
typedef struct lhttp_stream {
  lhttp_req *q;
} lhttp_stream;

static const char state_key = 'h';

static void unlink_req(lhttp_state *st, lhttp_req *q) {
  if (q->prev) q->prev->next = q->next;
  else st->pending = q->next;
  if (q->next) q->next->prev = q->prev;
}

/* Orphans the callbacks' requests and cancels the streams. A task's request stays: its
** task ends it (cancel), even when the state closes, so a program calling this early
** breaks nothing. */
static int l_http_state_gc(lua_State *L) {
  lhttp_state *st = luaL_checkudata(L, 1, HERSH_HTTP_STATE_MT);
  for (lhttp_req *q = st->pending, *next; q; q = next) {
    next = q->next;
    if (q->task) continue;
    unlink_req(st, q);
    q->st = NULL;
    if (q->handle) hersh_http_cancel(q->handle); /* a stream may never end by itself */
  }
  return 0;
}

static const luaL_Reg state_metameth[] = {{"__gc", l_http_state_gc}, {NULL, NULL}};

/* Made on first use, after hersh.core's own state: finalizers run in reverse order of
** creation, so at lua_close the orphaning comes before the loop (and client) go. */
static lhttp_state *get_state(lua_State *L) HERSH_MAY_RAISE {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key) == LUA_TUSERDATA) {
    lhttp_state *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
  }
  lua_pop(L, 1);
  hersh_lmod *m = hersh_lmod_get(L);
  lhttp_state *st = lua_newuserdatauv(L, sizeof *st, 0);
  *st = (lhttp_state){.m = m};
  hersh_lclass_register(L, HERSH_HTTP_STATE_MT, NULL, state_metameth);
  luaL_setmetatable(L, HERSH_HTTP_STATE_MT);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  return st;
}

/* ---- the answer ------------------------------------------------------------------------ */

/* Pushes {lowercased name = value}; repeated names are joined with ", ". */
static void push_headers(lua_State *L, const char *p, size_t n) HERSH_MAY_RAISE {
  lua_newtable(L);
  int t = lua_gettop(L);
  const char *end = p + n;
  const char *line = memchr(p, '\n', n); /* the status line is not a header */
  line = line ? line + 1 : end;
  while (line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) eol = end;
    const char *stop = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
    const char *colon = memchr(line, ':', (size_t)(stop - line));
    if (colon && colon > line && *line != ' ' && *line != '\t') { /* obs-fold lines are dropped */
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *c = line; c < colon; c++) luaL_addchar(&b, (char)tolower((unsigned char)*c));
      luaL_pushresult(&b); /* name */
      const char *v = colon + 1, *ve = stop;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, t) == LUA_TSTRING) { /* name, earlier value */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, t); /* pops name and value */
    }
    line = eol + 1;
  }
}

/* Pushes res ({status, headers, body}), or nil, err, code; returns how many. */
static int push_answer(lua_State *L, const hersh_http_result *r) HERSH_MAY_RAISE {
  if (r->error) {
    lua_pushnil(L);
    lua_pushstring(L, r->error);
    lua_pushstring(L, r->code ? r->code : "EHTTP");
    return 3;
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status");
  push_headers(L, r->headers, r->headers_len);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, r->body, r->body_len);
  lua_setfield(L, -2, "body");
  return 1;
}

/* Runs under hersh_lua_pcall: (result lightuserdata, callback) -> callback(res) or
** callback(nil, err, code). Building the answer here keeps a memory error protected. */
static int deliver(lua_State *L) {
  lua_settop(L, 2);
  lua_call(L, push_answer(L, lua_touserdata(L, 1)), 0);
  return 0;
}

/* Runs under hersh_lua_pcall: (result lightuserdata) -> the answer, padded to 3. */
static int build_answer(lua_State *L) {
  int n = push_answer(L, lua_touserdata(L, 1));
  for (; n < 3; n++) lua_pushnil(L);
  return 3;
}

/* The waiting task gets the answer as the results of its yield; none when there was no
** memory to build it (lua/hersh/fetch.lua says "out of memory" then). */
static void answer_task(hersh_lmod *m, hersh_ltask *t, const hersh_http_result *r) {
  lua_State *L = m->L, *co = hersh_ltask_thread(t);
  int top = lua_gettop(L);
  int n = 0;
  if (lua_checkstack(L, 4) && lua_checkstack(co, 3)) {
    hersh_lua_push_handler(L);
    lua_pushcfunction(L, build_answer);
    lua_pushlightuserdata(L, (void *)r);
    if (hersh_lua_pcall(m, L, 1, 3, 0) == HERSH_LUA_OK) {
      n = lua_isnil(L, -3) ? 3 : 1;
      lua_pop(L, 3 - n);
      lua_xmove(L, co, n);
    }
  }
  lua_settop(L, top);
  hersh_ltask_wake(t, n);
}

/* Calls fn(payload, the callback or handlers of ref) through the pcall wrapper;
** false (said on stderr) when it raised. */
static bool invoke(hersh_lmod *m, int ref, lua_CFunction fn, void *payload) {
  lua_State *L = m->L;
  int top = lua_gettop(L);
  if (!lua_checkstack(L, 4)) {
    fprintf(stderr, "hersh: http callback: Lua stack overflow\n");
    return false;
  }
  hersh_lua_push_handler(L);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, payload);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  hersh_lua_status rc = hersh_lua_pcall(m, L, 2, 0, 0);
  if (rc != HERSH_LUA_OK) {
    const char *msg = rc == HERSH_LUA_NOMEM ? "out of memory" : lua_tostring(L, -1);
    fprintf(stderr, "hersh: http callback: %s\n", msg ? msg : "(error object is not a string)");
  }
  lua_settop(L, top);
  return rc == HERSH_LUA_OK;
}

static void on_done(const hersh_http_result *r, void *ud) {
  lhttp_req *q = ud;
  lhttp_state *st = q->st;
  int ref = q->cb_ref;
  hersh_ltask *task = q->task;
  if (st) unlink_req(st, q);
  free(q);
  if (!st) return; /* the Lua state closed: nobody to tell */
  if (task) {
    answer_task(st->m, task, r);
    return;
  }
  invoke(st->m, ref, deliver, (void *)r);
  luaL_unref(st->m->L, LUA_REGISTRYINDEX, ref);
}

/* The task ended while it waited: the transfer stops, the request goes. */
static void on_task_cancel(void *ud) {
  lhttp_req *q = ud;
  hersh_http_abandon(q->c, on_done, q);
  if (q->st) unlink_req(q->st, q);
  free(q);
}

/* ---- a stream's pieces ------------------------------------------------------------------ */

/* handlers[name] pushed, or false when it is not set (nothing to call). */
static bool get_handler(lua_State *L, const char *name) {
  if (lua_getfield(L, 2, name) == LUA_TFUNCTION) return true;
  lua_pop(L, 1);
  return false;
}

typedef struct piece {
  const char *data;
  size_t len;
} piece;

typedef struct stream_head {
  int status;
  piece lines;
} stream_head;

/* (head, handlers) -> handlers.head({status, headers}). */
static int deliver_head(lua_State *L) {
  const stream_head *h = lua_touserdata(L, 1);
  if (!get_handler(L, "head")) return 0;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, h->status);
  lua_setfield(L, -2, "status");
  push_headers(L, h->lines.data, h->lines.len);
  lua_setfield(L, -2, "headers");
  lua_call(L, 1, 0);
  return 0;
}

/* (piece, handlers) -> handlers.data(text). */
static int deliver_chunk(lua_State *L) {
  const piece *p = lua_touserdata(L, 1);
  if (!get_handler(L, "data")) return 0;
  lua_pushlstring(L, p->data, p->len);
  lua_call(L, 1, 0);
  return 0;
}

/* (result, handlers) -> handlers.done(true), or handlers.done(nil, err, code). */
static int deliver_end(lua_State *L) {
  const hersh_http_result *r = lua_touserdata(L, 1);
  if (!get_handler(L, "done")) return 0;
  if (r->error) {
    lua_call(L, push_answer(L, r), 0);
  } else {
    lua_pushboolean(L, 1);
    lua_call(L, 1, 0);
  }
  return 0;
}

/* A handler that raises ends its stream: nobody is reading what follows. */
static hersh_http_take on_stream_head(int status, const char *headers, size_t len, void *ud) {
  lhttp_req *q = ud;
  stream_head h = {status, {headers, len}};
  return !q->st || invoke(q->st->m, q->cb_ref, deliver_head, &h) ? HERSH_HTTP_TAKEN : HERSH_HTTP_ABORT;
}

static hersh_http_take on_stream_chunk(const char *data, size_t len, void *ud) {
  lhttp_req *q = ud;
  piece p = {data, len};
  return !q->st || invoke(q->st->m, q->cb_ref, deliver_chunk, &p) ? HERSH_HTTP_TAKEN : HERSH_HTTP_ABORT;
}

static void on_stream_done(const hersh_http_result *r, void *ud) {
  lhttp_req *q = ud;
  lhttp_state *st = q->st;
  int ref = q->cb_ref, self_ref = q->self_ref;
  if (st) {
    unlink_req(st, q);
    q->obj->q = NULL;
  }
  free(q);
  if (!st) return; /* the Lua state closed: nobody to tell */
  invoke(st->m, ref, deliver_end, (void *)r);
  luaL_unref(st->m->L, LUA_REGISTRYINDEX, ref);
  luaL_unref(st->m->L, LUA_REGISTRYINDEX, self_ref);
}

/* stream:cancel(): no piece comes after it; done follows with "cancelled" (from the loop,
** also when called from one of the stream's own handlers). */
static int l_stream_cancel(lua_State *L) {
  lhttp_stream *s = luaL_checkudata(L, 1, HERSH_HTTP_STREAM_MT);
  if (s->q) hersh_http_cancel(s->q->handle);
  return 0;
}

static const luaL_Reg stream_meth[] = {{"cancel", l_stream_cancel}, {NULL, NULL}};

/* ---- the request ----------------------------------------------------------------------- */

/* opts[key] as a string (anchored in opts), or def when absent; raises on another type. */
static const char *opt_string(lua_State *L, const char *key, const char *def, size_t *len) HERSH_MAY_RAISE {
  int type = lua_getfield(L, 1, key);
  const char *s = def;
  if (len) *len = def ? strlen(def) : 0;
  if (type == LUA_TSTRING) s = lua_tolstring(L, -1, len);
  else if (type != LUA_TNIL) luaL_error(L, "hersh.http: opts.%s must be a string, not %s", key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return s;
}

static double opt_number(lua_State *L, const char *key) HERSH_MAY_RAISE {
  int type = lua_getfield(L, 1, key);
  double v = 0;
  if (type == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (type != LUA_TNIL) luaL_error(L, "hersh.http: opts.%s must be a number, not %s", key, luaL_typename(L, -1));
  if (!(v >= 0)) luaL_error(L, "hersh.http: opts.%s must not be negative", key);
  lua_pop(L, 1);
  return v;
}

/* One header line "Name: value" from a list entry (value at -1) or a map entry (key at
** -2, value at -1); pushes it. Raises on a malformed header: a caller's bug. */
static void push_header_line(lua_State *L) HERSH_MAY_RAISE {
  size_t n;
  if (lua_type(L, -2) == LUA_TNUMBER) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "hersh.http: opts.headers entries must be strings");
    const char *s = lua_tolstring(L, -1, &n);
    const char *colon = memchr(s, ':', n);
    if (!colon || !hersh_http_is_token(s, (size_t)(colon - s)) || strpbrk(s, "\r\n") || strlen(s) != n)
      luaL_error(L, "hersh.http: bad header '%s': expected \"Name: value\"", s);
    lua_pushvalue(L, -1);
    return;
  }
  if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
    luaL_error(L, "hersh.http: opts.headers must map names to strings");
  const char *name = lua_tolstring(L, -2, &n);
  if (!hersh_http_is_token(name, n)) luaL_error(L, "hersh.http: bad header name '%s'", name);
  size_t vn;
  lua_pushvalue(L, -1); /* a copy: lua_tolstring may turn a number into a string */
  const char *value = lua_tolstring(L, -1, &vn);
  if (strpbrk(value, "\r\n") || strlen(value) != vn) luaL_error(L, "hersh.http: bad value of header '%s'", name);
  lua_pushfstring(L, "%s: %s", name, value);
  lua_remove(L, -2);
}

/* The header lines as a NULL-terminated array in a userdata (pushed), their strings
** anchored in a table (pushed below it). Everything stays on the stack: a raise frees it. */
static const char *const *collect_headers(lua_State *L) HERSH_MAY_RAISE {
  int type = lua_getfield(L, 1, "headers");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (type != LUA_TTABLE) luaL_error(L, "hersh.http: opts.headers must be a table, not %s", luaL_typename(L, -1));
  int src = lua_gettop(L);
  size_t count = 0;
  for (lua_pushnil(L); lua_next(L, src); lua_pop(L, 1)) count++;
  lua_createtable(L, (int)count, 0); /* the anchors */
  int anchors = src + 1;
  const char **lines = lua_newuserdatauv(L, (count + 1) * sizeof *lines, 0);
  size_t i = 0;
  for (lua_pushnil(L); lua_next(L, src); lua_pop(L, 1)) { /* key, value */
    push_header_line(L);
    lines[i] = lua_tostring(L, -1);
    lua_rawseti(L, anchors, (lua_Integer)++i); /* pops the line */
  }
  lines[i] = NULL;
  return lines;
}

enum { MAX_REDIRECTS = 20 };

/* The request of opts (at 1), its strings anchored on the stack. Raises for a caller's
** bug (bad opts). */
static void read_call(lua_State *L, hersh_http_call *call) HERSH_MAY_RAISE {
  *call = (hersh_http_call){0};
  size_t method_len;
  call->method = opt_string(L, "method", "GET", &method_len);
  if (!hersh_http_is_token(call->method, method_len)) luaL_error(L, "hersh.http: bad method '%s'", call->method);
  call->url = opt_string(L, "url", NULL, NULL);
  if (!call->url) luaL_error(L, "hersh.http: opts.url is required");
  call->body = opt_string(L, "body", NULL, &call->body_len);
  call->timeout = opt_number(L, "timeout");
  call->connect_timeout = opt_number(L, "connect_timeout");
  double max = opt_number(L, "max_response");
  call->max_response = max >= (double)SIZE_MAX ? SIZE_MAX : (size_t)max;
  double redirects = opt_number(L, "redirects");
  if (redirects > MAX_REDIRECTS) luaL_error(L, "hersh.http: opts.redirects must be at most %d", (int)MAX_REDIRECTS);
  call->max_redirects = (int)redirects;
  size_t unix_len;
  call->unix_socket = opt_string(L, "unix_socket", NULL, &unix_len);
  if (call->unix_socket && (unix_len == 0 || strlen(call->unix_socket) != unix_len))
    luaL_error(L, "hersh.http: opts.unix_socket must be a path without NUL bytes");
  call->headers = collect_headers(L);
}

static void link_req(lhttp_state *st, lhttp_req *q) {
  q->next = st->pending;
  if (st->pending) st->pending->prev = q;
  st->pending = q;
}

/* Starts the request for a callback (cb_ref) or a waiting task: 0 and *out, or the
** failure pushed (nil, message, code) and its count; cb_ref is released then. Never raises. */
static int start(lua_State *L, lhttp_state *st, const hersh_http_call *call, int cb_ref, hersh_ltask *task,
                 lhttp_req **out) {
  hersh_http_client *c = hersh_http_client_get(st->m->loop);
  lhttp_req *q = c ? malloc(sizeof *q) : NULL;
  int rc = !c ? HERSH_E_SYS : !q ? hersh_fail_with(HERSH_E_NOMEM, "out of memory") : HERSH_OK;
  if (rc == HERSH_OK) {
    *q = (lhttp_req){.st = st, .c = c, .cb_ref = cb_ref, .task = task, .self_ref = LUA_NOREF};
    rc = hersh_http_request(c, call, on_done, q);
  }
  if (rc != HERSH_OK) {
    free(q);
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    return hersh_lua_push_failure(L, rc);
  }
  link_req(st, q);
  *out = q;
  return 0;
}

/* hersh.http.request(opts, callback) of the Host: true, or nil, message, code when the
** request cannot be started. Raises for a caller's bug (bad opts). */
int hersh_lhttp_request(lua_State *L) HERSH_MAY_RAISE {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  hersh_http_call call;
  read_call(L, &call);
  lhttp_state *st = get_state(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lhttp_req *q;
  int n = start(L, st, &call, ref, NULL, &q);
  if (n) return n;
  lua_pushboolean(L, 1);
  return 1;
}

/* hersh.core.fetch(opts): waits for the answer, then returns res ({status, headers,
** body}) or nil, message, code. Only a task may wait; raises for bad opts. */
int hersh_lhttp_fetch(lua_State *L) HERSH_MAY_RAISE {
  hersh_ltask *t = hersh_ltask_running(L);
  if (!t)
    return luaL_error(L, "hersh.http works only in a watch poll, a flow producer, a reducer or a cleanup "
                         "(elsewhere it would block the loop)");
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  hersh_http_call call;
  read_call(L, &call);
  lhttp_state *st = get_state(L);
  lhttp_req *q;
  int n = start(L, st, &call, LUA_NOREF, t, &q);
  if (n) return n;
  hersh_ltask_wait(t, on_task_cancel, q);
  return lua_yield(L, 0);
}

/* hersh.http.stream(opts, {head = fn(res), data = fn(text), done = fn(ok, err, code)}):
** a stream object (:cancel()), or nil, message, code when it cannot be started. */
int hersh_lhttp_stream(lua_State *L) HERSH_MAY_RAISE {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  for (const char *const *k = (const char *const[]){"head", "data", "done", NULL}; *k; k++) {
    int t = lua_getfield(L, 2, *k);
    if (t != LUA_TNIL && t != LUA_TFUNCTION) luaL_error(L, "hersh.http.stream: handlers.%s must be a function", *k);
    lua_pop(L, 1);
  }
  hersh_http_call call;
  read_call(L, &call);
  lhttp_state *st = get_state(L);
  hersh_lclass_register(L, HERSH_HTTP_STREAM_MT, stream_meth, NULL);
  lhttp_stream *obj = lua_newuserdatauv(L, sizeof *obj, 0);
  obj->q = NULL;
  luaL_setmetatable(L, HERSH_HTTP_STREAM_MT);
  int obj_idx = lua_gettop(L);
  lua_pushvalue(L, 2);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, obj_idx);
  int self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Nothing below raises: the request and the references are released on every path. */
  hersh_http_client *c = hersh_http_client_get(st->m->loop);
  lhttp_req *q = c ? malloc(sizeof *q) : NULL;
  int rc = !c ? HERSH_E_SYS : !q ? hersh_fail_with(HERSH_E_NOMEM, "out of memory") : HERSH_OK;
  if (q) {
    *q = (lhttp_req){.st = st, .c = c, .cb_ref = ref, .obj = obj, .self_ref = self_ref};
    static const hersh_http_stream_fns fns = {.head = on_stream_head, .data = on_stream_chunk};
    rc = hersh_http_request_stream(c, &call, &fns, on_stream_done, q, &q->handle);
  }
  if (rc != HERSH_OK) {
    free(q);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, self_ref);
    return hersh_lua_push_failure(L, rc);
  }
  obj->q = q;
  link_req(st, q);
  lua_pushvalue(L, obj_idx);
  return 1;
}

/* ---- the proxy ------------------------------------------------------------------------- */

/* (status, callback) -> callback(status). */
static int deliver_proxied(lua_State *L) {
  const int *status = lua_touserdata(L, 1);
  lua_settop(L, 2);
  lua_pushinteger(L, *status);
  lua_call(L, 1, 0);
  return 0;
}

static void on_proxied(int status, void *ud) {
  lhttp_req *q = ud;
  lhttp_state *st = q->st;
  int ref = q->cb_ref;
  if (st) unlink_req(st, q);
  free(q);
  if (!st) return; /* the Lua state closed: nobody to tell */
  invoke(st->m, ref, deliver_proxied, &status);
  luaL_unref(st->m->L, LUA_REGISTRYINDEX, ref);
}

/* take_res(res): the hold of res as a light userdata (hersh_lhttpd_take), for a pcall. */
static int take_res(lua_State *L) HERSH_MAY_RAISE {
  lua_pushlightuserdata(L, hersh_lhttpd_take(L, 1));
  return 1;
}

/* hersh.http.proxy(opts, res, callback): forwards the request that res (a
** hersh.HttpResponse of hersh.httpd) answers to opts.url and streams the answer back
** (http/proxy.c); callback(status) once it is over. opts: method, url, headers
** as the client sent them, body, or stream_body = true for a res taken on its headers
** (the body goes as it comes), timeout, connect_timeout, program (named in errors),
** fresh_after: an epoch (hersh.http.epoch) at or before which no pooled connection is used.
** true; or nil, message, code when it could not start: the proxy has answered then
** (400 for what cannot be forwarded, else 502). Raises for a caller's bug (bad opts,
** res already answered). */
int hersh_lhttp_proxy(lua_State *L) HERSH_MAY_RAISE {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  hersh_proxy_call call = {0};
  size_t method_len;
  call.method = opt_string(L, "method", "GET", &method_len);
  if (!hersh_http_is_token(call.method, method_len)) luaL_error(L, "hersh.http: bad method '%s'", call.method);
  call.url = opt_string(L, "url", NULL, NULL);
  if (!call.url) luaL_error(L, "hersh.http: opts.url is required");
  call.body = opt_string(L, "body", NULL, &call.body_len);
  lua_getfield(L, 1, "stream_body");
  call.stream_body = lua_toboolean(L, -1);
  lua_pop(L, 1);
  call.timeout = opt_number(L, "timeout");
  call.connect_timeout = opt_number(L, "connect_timeout");
  call.program = opt_string(L, "program", NULL, NULL);
  lua_Integer fresh_after = 0;
  if (lua_getfield(L, 1, "fresh_after") != LUA_TNIL) {
    int exact;
    fresh_after = lua_tointegerx(L, -1, &exact);
    if (!exact || fresh_after < 0) luaL_error(L, "hersh.http: opts.fresh_after must be an epoch (hersh.http.epoch)");
  }
  lua_pop(L, 1);
  call.fresh_after = (uint64_t)fresh_after;
  call.headers = collect_headers(L);
  lhttp_state *st = get_state(L);
  lua_pushvalue(L, 3);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Taken in a protected call, the last that may raise: a res already answered (a
  ** caller's bug) must not keep the callback referenced forever. */
  lua_pushcfunction(L, take_res);
  lua_pushvalue(L, 2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return lua_error(L);
  }
  hersh_http_pending *p = lua_touserdata(L, -1);
  lua_pop(L, 1);
  lhttp_req *q = malloc(sizeof *q);
  if (q) *q = (lhttp_req){.st = st, .cb_ref = ref, .self_ref = LUA_NOREF};
  /* Without memory for q the request still goes (the hold must be given up): untold. */
  int rc = hersh_proxy_forward(st->m->loop, p, &call, q ? on_proxied : NULL, q);
  if (rc != HERSH_OK || !q) {
    free(q);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    if (rc) return hersh_lua_push_failure(L, rc);
  } else {
    link_req(st, q);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* hersh.http.epoch(): a new epoch of the upstream pools; given to hersh.http.proxy as
** fresh_after, no connection opened before this call is reused for that request. */
int hersh_lhttp_epoch(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)hersh_upstream_epoch());
  return 1;
}
