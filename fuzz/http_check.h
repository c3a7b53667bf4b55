/* http_check.h -- sends a raw request to a loopback server and judges the answer;
** shared by the WatcherAPI and Host targets. */
#ifndef HERSH_FUZZ_HTTP_CHECK_H
#define HERSH_FUZZ_HTTP_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* How long one exchange may take before it counts as a hang. */
#define FUZZ_HTTP_WAIT_MS 10000

/* Runs the server's other half while the exchange waits (the Host's Lua loop), for at
** most about `ms` milliseconds; NULL when the server needs nothing. */
typedef void (*fuzz_http_pump)(int ms);

/*
** Connects to 127.0.0.1:port, sends the bytes, reads until the first answer is complete
** or the server closes, and checks it: a well-formed HTTP/1.x response (status line,
** headers, body framed by Content-Length, chunks or the close), not a 500, a non-empty
** body on a 4xx/5xx (but an answer to HEAD), and an answer at all to a whole, well-formed
** request. An incomplete request waits briefly for an early answer only. Aborts
** (through fuzz_fail) on a broken property, or when an answer due does not come
** within FUZZ_HTTP_WAIT_MS.
*/
void fuzz_http_exchange(int port, const uint8_t *data, size_t size, fuzz_http_pump pump);

#endif
