# The program of spec/proxy_spec.lua, on the socket the Host hands over (fd 3): HTTP/1.1
# with keep-alive, a thread per connection. Python, not hersh: a hersh program's
# WatcherAPI has fixed routes (spec/boundary_spec.lua).
#   GET /watcher/status  200 (the Host's readiness check)
#   ANY /echo            200 JSON: the method, the header lines and the body it got,
#                        and how many connections it has accepted so far
#   ANY /count           200 JSON: the length and SHA-256 of the body it got
#   GET /big?mib=N       N MiB of "x" (Content-Length), with hop-by-hop headers of its own
#   GET /reset           closes the connection without an answer
#   GET /hang            never answers
import hashlib
import json
import socket
import threading

listener = socket.socket(fileno=3)
listener.setblocking(True)  # handed over non-blocking, for an event loop
lock = threading.Lock()
accepted = 0
held = []


def read_head(f):
    line = f.readline(65536)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        headers.append(h.decode("latin-1").rstrip("\r\n"))
    return method, target, headers


def value(headers, name):
    for h in headers:
        k, _, v = h.partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def read_body(f, headers):
    if (value(headers, "transfer-encoding") or "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int(f.readline(1024).split(b";")[0], 16)
            if size == 0:
                while f.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += f.read(size)
            f.readline(1024)
    n = int(value(headers, "content-length") or 0)
    return f.read(n) if n else b""


def answer(conn, status, body, extra=()):
    lines = ["HTTP/1.1 %s" % status, "Content-Length: %d" % len(body)] + list(extra)
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def serve(conn):
    f = conn.makefile("rb")
    while True:
        req = read_head(f)
        if req is None:
            break
        method, target, headers = req
        body = read_body(f, headers)
        path, _, query = target.partition("?")
        if path == "/watcher/status":
            answer(conn, "200 OK", b'{"state":"Running"}\n', ["Content-Type: application/json"])
        elif path == "/echo":
            with lock:
                n = accepted
            doc = {"method": method, "target": target, "headers": headers,
                   "body": body.decode("latin-1"), "connections": n}
            answer(conn, "200 OK", json.dumps(doc).encode(), ["Content-Type: application/json"])
        elif path == "/count":
            doc = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            answer(conn, "200 OK", json.dumps(doc).encode(), ["Content-Type: application/json"])
        elif path == "/big":
            mib = int(query.partition("mib=")[2] or 1)
            head = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream",
                    "Content-Length: %d" % (mib << 20), "Connection: keep-alive, X-Hop-Resp",
                    "X-Hop-Resp: secret", "Keep-Alive: timeout=5", "Proxy-Authenticate: Basic",
                    "X-End-To-End: kept"]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            block = b"x" * (1 << 20)
            for _ in range(mib):
                conn.sendall(block)
        elif path == "/reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
            return
        elif path == "/hang":
            held.append(conn)
            return
        else:
            answer(conn, "404 Not Found", b"no such path\n")
    conn.close()


def guarded(conn):
    try:
        serve(conn)
    except OSError:
        conn.close()


print("upstream: serving", flush=True)
while True:
    c, _ = listener.accept()
    with lock:
        accepted += 1
    threading.Thread(target=guarded, args=(c,), daemon=True).start()
