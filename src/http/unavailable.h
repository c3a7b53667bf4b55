/*
** unavailable.h -- answering for a program that is not running. While a published port
** has no process serving it, the Host accepts its connections and answers each with a
** short 503, so clients neither hang in the backlog nor need the port to be given up
** (and maybe lost) in between. Loop thread.
*/
#ifndef HERSH_HTTP_UNAVAILABLE_H
#define HERSH_HTTP_UNAVAILABLE_H

#include <stddef.h>
#include <uv.h>

typedef struct hersh_http_unavailable hersh_http_unavailable;

/* The whole 503 response around a JSON body: malloc'd, its length in *len; NULL when
** out of memory (hersh_errmsg). */
char *hersh_http_unavailable_reply(const char *body, size_t n, size_t *len);

/* Answers at most max connections queued on the non-blocking listener fd with reply.
** 0 once none is left or max were answered; else the errno of a listener that cannot
** accept (shut down, out of descriptors, ...). */
int hersh_http_unavailable_answer(int fd, const char *reply, size_t len, int max);

/* Sends reply on the accepted connection c (reading what came first), then closes c. */
void hersh_http_unavailable_send(int c, const char *reply, size_t len);

/* Answers every connection on the listener fd (made non-blocking; still the caller's)
** with a 503 around body until stopped. HERSH_OK, or an error (hersh_errmsg). */
int hersh_http_unavailable_start(uv_loop_t *loop, int fd, const char *body, size_t n, hersh_http_unavailable **out);
/* Instead of the 503, each accepted connection c (non-blocking, now the callee's) goes
** to each(c, reply, len, ud), which may answer it with hersh_http_unavailable_send. */
typedef void (*hersh_http_accepted_fn)(int c, const char *reply, size_t len, void *ud);
int hersh_http_unavailable_start_with(uv_loop_t *loop, int fd, const char *body, size_t n, hersh_http_accepted_fn each,
                                      void *ud, hersh_http_unavailable **out);
/* Stops answering (once; NULL is fine); the memory goes when its handles have closed. */
void hersh_http_unavailable_stop(hersh_http_unavailable *u);

#endif
