# The program of spec/attack_proxy_spec.lua that takes requests and never answers: on
# the socket the Host hands over (fd 3) it answers GET /watcher/status, so that the Host
# finds it Ready, and keeps every other request open, unanswered, for as long as it
# runs. Python, not hersh: a hersh program has no HTTP server of its own to hold
# requests with (spec/boundary_spec.lua).
import socket

listener = socket.socket(fileno=3)
listener.setblocking(True)  # handed over non-blocking, for an event loop
held = []  # a closed connection would be an answer: keep them all
print("silent: serving", flush=True)
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
    if head.startswith(b"GET /watcher/status "):
        body = b'{"state":"Running"}\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        conn.close()
    else:
        held.append(conn)
