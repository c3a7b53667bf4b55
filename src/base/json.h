/*
** json.h -- the one JSON of the C side: a strict reader (json_read.c) into hersh_values
** and a structured writer (json_write.c) that cannot produce invalid JSON. The
** WatcherAPI, the engine's snapshots and logs, the HTTP error bodies and the Lua module
** hersh.json all go through these two.
*/
#ifndef HERSH_BASE_JSON_H
#define HERSH_BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "hersh.h"

/* ---- reading ------------------------------------------------------------------------ */

/* Arrays and objects nested deeper than this are refused: the parser recurses. */
#define HERSH_JSON_MAX_DEPTH 64

/*
** Parses exactly one JSON document (RFC 8259) of `len` bytes into *out.
** Returns HERSH_OK, or HERSH_E_INVAL with a message in `err` naming what is wrong
** and where, e.g. "invalid JSON at byte 12: expected ':'" (bytes count from 0), or
** HERSH_E_NOMEM. *out is nil on error. `text` need not be NUL-terminated.
** Integers that fit in int64 become INT, other numbers NUM; numbers too large for a
** double are refused. Duplicate keys: the last wins. Object keys cannot contain
** \u0000 (map keys are C strings); string values can. Safe on any thread.
*/
int hersh_json_parse(const char *text, size_t len, hersh_value *out, char *err, size_t errlen);

/* ---- writing ------------------------------------------------------------------------ */

/* The writer nests deeper than the reader: a section wraps values of up to
** HERSH_JSON_MAX_DEPTH levels in a few levels of its own. */
#define HERSH_JSON_WRITE_DEPTH 128

/*
** One JSON document written call by call into a hersh_buf. The writer tracks nesting,
** puts the commas and colons, escapes strings (never `\/`; invalid UTF-8 becomes
** U+FFFD) and formats numbers one way: integers exact, doubles in the shortest form
** that reads back to the same double. Keys come out in the order written: records in
** their documented order, maps sorted by key (hersh_json_value does it; a map's own
** order, such as a Lua table's, is not stable).
** A misuse (a value where a key is due, an end with nothing open, a second top-level
** value, NaN or infinity, nesting past HERSH_JSON_WRITE_DEPTH) writes nothing more
** and is kept in `error`; hersh_json_finish reports it. Not thread-safe: one writer
** per document. Fields are private.
*/
typedef struct hersh_json {
  hersh_buf *out;
  const char *error; /* the first misuse (a static string), NULL if none */
  unsigned depth;    /* containers open */
  bool key_written;  /* inside an object: a key waits for its value */
  bool done;         /* the top-level value is complete */
  unsigned char open[HERSH_JSON_WRITE_DEPTH]; /* per level: '}' or ']' to close it */
  bool members[HERSH_JSON_WRITE_DEPTH];       /* per level: a member already written */
} hersh_json;

void hersh_json_init(hersh_json *j, hersh_buf *out);
void hersh_json_object(hersh_json *j); /* { */
void hersh_json_array(hersh_json *j);  /* [ */
void hersh_json_end(hersh_json *j);    /* closes the innermost object or array */
/* An object key: a C string, or `n` bytes (may hold NUL). */
void hersh_json_key(hersh_json *j, const char *key);
void hersh_json_keyn(hersh_json *j, const char *key, size_t n);
/* Values. */
void hersh_json_string(hersh_json *j, const char *s, size_t n);
void hersh_json_cstr(hersh_json *j, const char *s); /* NULL writes null */
void hersh_json_int(hersh_json *j, int64_t i);
void hersh_json_uint(hersh_json *j, uint64_t u);
void hersh_json_number(hersh_json *j, double d); /* NaN and infinities are a misuse */
void hersh_json_bool(hersh_json *j, bool b);
void hersh_json_null(hersh_json *j);
/*
** A hersh_value: lists as arrays, maps as objects with keys sorted bytewise, foreign
** values through their to_plain. For logs and snapshots, what JSON cannot hold is
** written as a short quoted tag ("<nan>", "<inf>", "<-inf>", "<function>") instead of
** failing; a value nested past the writer's depth is a misuse.
*/
void hersh_json_value(hersh_json *j, const hersh_value *v);
/* A complete JSON value that an earlier writer produced (a published snapshot). */
void hersh_json_raw(hersh_json *j, const char *json, size_t n);

/*
** Ends the document: HERSH_OK if exactly one complete value was written, else
** HERSH_E_INVAL (hersh_json_error says why) or HERSH_E_NOMEM (the buffer's append
** failed). The text stays in the buffer either way.
*/
int hersh_json_finish(hersh_json *j);
const char *hersh_json_error(const hersh_json *j); /* NULL if no misuse */
/* hersh_json_finish, then the text (caller frees) or NULL on failure (buffer freed). */
char *hersh_json_take(hersh_json *j);

#endif
