# A loopback HTTP/1.1 server for the specs of hersh.http (spec/http_yield_spec.lua):
# keep-alive, one thread per connection. It prints its port on the first line of stdout,
# and for /slow one line "waiting /slow" when a request comes in, then "closed /slow" when
# its client goes away.
#   /price?n=N       200 {"price": 100 + N, "hits": hits of /price so far}
#   /slow            never answers: waits until the client closes the connection
#   /barrier?n=N     answers 200 once N requests wait here at the same time (503 after
#                    60 s): only a client that has N requests under way gets through
#   /big?bytes=N     200, N bytes of "x"
#   /redirect        302 to /price?n=7
#   /echo (any)      200 {"method", "body", "content_type"}
# Usage: python3 http_fixture.py  (runs until SIGTERM)
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Lock()
hits = 0
barriers = {}


def say(line):
    """One whole line on stdout: print() from several threads can interleave."""
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst of 100 connections at once
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", extra=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def route(self):
        global hits
        url = urlparse(self.path)
        q = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/price":
            with lock:
                hits += 1
                n = hits
            self.send(200, json.dumps({"price": 100 + int(q.get("n", ["0"])[0]), "hits": n}))
        elif url.path == "/slow":
            say("waiting /slow")
            while self.rfile.read(1):  # b"" once the client closed
                pass
            say("closed /slow")
            self.close_connection = True
        elif url.path == "/barrier":
            n = int(q["n"][0])
            with lock:
                barrier = barriers.setdefault(n, threading.Barrier(n, timeout=60))
            try:
                barrier.wait()
                self.send(200, json.dumps({"waited_with": n}))
            except threading.BrokenBarrierError:
                self.send(503, json.dumps({"error": "the barrier broke"}))
        elif url.path == "/big":
            self.send(200, "x" * int(q["bytes"][0]), "text/plain")
        elif url.path == "/redirect":
            self.send(302, "", "text/plain", {"Location": "/price?n=7"})
        elif url.path == "/echo":
            self.send(200, json.dumps({"method": self.command, "body": body.decode(),
                                       "content_type": self.headers.get("Content-Type")}))
        else:
            self.send(404, json.dumps({"error": "no route " + url.path}))

    do_GET = do_POST = do_PUT = do_DELETE = route


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()  # until the spec ends it (SIGTERM)
