# The program of spec/health_spec.lua. On the socket the Host hands over (fd 3) it
# answers GET /watcher/status (503 to the first $NOT_READY of them, then 200: the Host
# finds it Ready) and GET /health as $HEALTH says: "ok" 200, "fail" 500, "hang" never
# (the connection is kept open, unanswered). It prints one line per request, so the
# spec reads from the runtime log what the Host asked and in which order. Python, not
# hersh: a hersh program has no HTTP server of its own to hold requests with.
import os
import socket

mode = os.environ.get("HEALTH", "ok")
not_ready = int(os.environ.get("NOT_READY", "0"))
codes = {"ok": 200, "fail": 500}

listener = socket.socket(fileno=3)
listener.setblocking(True)  # handed over non-blocking, for an event loop
held = []  # a closed connection would be an answer: keep the hung ones
statuses = 0
print("health: serving", flush=True)
while True:
    conn, _ = listener.accept()
    conn.settimeout(5)  # the Host's clients send whole requests; nothing else may wedge us
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        pass
    parts = head.split(b" ", 2)
    path = parts[1].decode("latin-1") if len(parts) > 2 else ""
    if path == "/watcher/status":
        statuses += 1
        code = 503 if statuses <= not_ready else 200
    elif path == "/health":
        code = codes.get(mode)
    else:
        code = 404
    print("request %s %s" % (path, code or "held"), flush=True)
    if code is None:
        held.append(conn)
        continue
    body = b'{"state":"Running"}\n'
    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (code, len(body), body))
    conn.close()
