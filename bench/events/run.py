#!/usr/bin/env python3
"""bench/events/run.py -- an event reaching 100 SSE subscribers of a real `hersh host`.

The Host (no program started) gets SUBSCRIBERS raw connections on GET /events. Each
round makes one state change over a kept-alive control connection (POST /programs, then
DELETE of that program: the events `created` and `deleted`) and waits until every
subscriber has read the event's frame. The latency of one delivery is the time the
subscriber read it (time.time() right after recv) minus the event's `at`, the time the
Host recorded it (the same wall clock). Beside it, in the same run and alternating
round by round, the baseline: a plain loopback server (this file with --baseline, its
own process) that stamps the same frame with time.time() and writes it to its own
SUBSCRIBERS connections, read by the same client loop. Prints median, p99 and max.

  python3 bench/events/run.py BUILD_DIR TMP_DIR      (through bench/events/run.sh)
"""
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time

SUBSCRIBERS = int(os.environ.get("BENCH_EVENTS_SUBSCRIBERS", "100"))
ROUNDS = int(os.environ.get("BENCH_EVENTS_ROUNDS", "100"))  # two events each
WAIT = 10.0  # seconds one event may take to reach everyone before the bench fails
FIXTURE = "spec/programs/host_counter"


class Dechunk:
    """The body of a chunked HTTP response, fed in pieces."""

    def __init__(self):
        self.raw = b""
        self.head_done = False

    def feed(self, data):
        self.raw += data
        if not self.head_done:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return b""
            if not self.raw.startswith(b"HTTP/1.1 200"):
                raise RuntimeError("the stream was refused: %r" % self.raw[:200])
            self.raw = self.raw[end + 4:]
            self.head_done = True
        out = []
        while True:
            nl = self.raw.find(b"\r\n")
            if nl < 0:
                break
            size = int(self.raw[:nl].split(b";")[0], 16)
            if len(self.raw) < nl + 2 + size + 2:
                break
            out.append(self.raw[nl + 2:nl + 2 + size])
            self.raw = self.raw[nl + 2 + size + 2:]
        return b"".join(out)


class Subscriber:
    def __init__(self, sock, chunked):
        self.sock = sock
        self.body = Dechunk() if chunked else None
        self.text = b""
        self.got = []  # (frame data, receive time) since the last take()

    def read(self):
        data = self.sock.recv(1 << 16)
        now = time.time()
        if not data:
            raise RuntimeError("a subscriber's connection ended")
        self.text += self.body.feed(data) if self.body else data
        while b"\n\n" in self.text:
            frame, self.text = self.text.split(b"\n\n", 1)
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    self.got.append((json.loads(line[6:]), now))


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def baseline_server():
    """Accepts a control connection, then SUBSCRIBERS; for each JSON line on the control
    one, the frame of that event stamped now, written to every subscriber."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(SUBSCRIBERS + 8)
    print(ls.getsockname()[1], flush=True)
    ctl, _ = ls.accept()
    subs = []
    for _ in range(SUBSCRIBERS):
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        subs.append(s)
    buf, n = b"", 0
    while True:
        data = ctl.recv(1 << 16)
        if not data:
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            n += 1
            event = json.loads(line)
            event["id"], event["at"] = n, time.time()
            frame = "id: %d\nevent: %s\ndata: %s\n\n" % (n, event["kind"], json.dumps(event, separators=(",", ":")))
            for s in subs:
                s.sendall(frame.encode())


def http(sock, method, path, port, body=None):
    """One request on a kept-alive connection; the status and body."""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path, port)
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    sock.sendall((head + "\r\n").encode() + data)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(1 << 16)
    head, rest = raw.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        rest += sock.recv(1 << 16)
    return int(head.split(b" ")[1]), json.loads(rest) if rest else None


def await_all(sel, subs, trigger):
    """Runs trigger(), then reads until every subscriber has one frame more; the frame
    (of the first subscriber) and the latencies."""
    for s in subs:
        s.got.clear()
    trigger()
    deadline = time.time() + WAIT
    while any(not s.got for s in subs):
        if time.time() > deadline:
            raise RuntimeError("an event did not reach every subscriber in %g s" % WAIT)
        for key, _ in sel.select(timeout=0.5):
            key.data.read()
    lat = []
    for s in subs:
        if len(s.got) != 1:
            raise RuntimeError("a subscriber got %d frames for one event" % len(s.got))
        event, received = s.got[0]
        lat.append(received - event["at"])
    return subs[0].got[0][0], lat


def ms(v):
    return "%.3f ms" % (v * 1000)


def summary(name, lat):
    lat = sorted(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print("  %-58s median %s  p99 %s  max %s" % (name, ms(statistics.median(lat)), ms(p99), ms(lat[-1])))
    return statistics.median(lat), p99


def main():
    if sys.argv[1:] == ["--baseline"]:
        return baseline_server()
    build, tmp = sys.argv[1], sys.argv[2]
    storage = os.path.join(tmp, "storage")
    with open(os.path.join(FIXTURE, "Dockerfile")) as f:
        dockerfile = f.read()
    with open(os.path.join(FIXTURE, "main.lua")) as f:
        main_lua = f.read()
    err = open(os.path.join(tmp, "host.err"), "w+")
    host = subprocess.Popen([os.path.join(build, "hersh"), "host", "--port", "0", "--storage", storage],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    with open(os.path.join(tmp, "host.pid"), "w") as f:
        f.write("%d\n" % host.pid)
    base = subprocess.Popen([sys.executable, __file__, "--baseline"], stdout=subprocess.PIPE)
    try:
        port = None
        for _ in range(400):
            with open(err.name) as f:
                text = f.read()
            if "serving http://127.0.0.1:" in text:
                port = int(text.split("serving http://127.0.0.1:")[1].split()[0])
                break
            if host.poll() is not None:
                break
            time.sleep(0.05)
        if not port:
            raise RuntimeError("the Host did not start:\n" + open(err.name).read())
        base_port = int(base.stdout.readline())

        sel = selectors.DefaultSelector()
        ctl = connect(port)
        host_subs = []
        for _ in range(SUBSCRIBERS):
            s = connect(port)
            s.sendall(("GET /events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port).encode())
            sub = Subscriber(s, chunked=True)
            sel.register(s, selectors.EVENT_READ, sub)
            host_subs.append(sub)
        base_ctl = connect(base_port)
        base_subs = []
        for _ in range(SUBSCRIBERS):
            sub = Subscriber(connect(base_port), chunked=False)
            sel.register(sub.sock, selectors.EVENT_READ, sub)
            base_subs.append(sub)

        body = {"user_id": "bench", "dockerfile": dockerfile, "src_files": {"main.lua": main_lua}}
        host_lat, base_lat = [], []
        for _ in range(ROUNDS):
            created = {}

            def create():
                status, doc = http(ctl, "POST", "/programs", port, body)
                if status != 201:
                    raise RuntimeError("create: %d %r" % (status, doc))
                created["id"] = doc["program_id"]

            def delete():
                status, doc = http(ctl, "DELETE", "/programs/" + created["id"], port)
                if status != 200:
                    raise RuntimeError("delete: %d %r" % (status, doc))

            for trigger in (create, delete):
                event, lat = await_all(sel, host_subs, trigger)
                host_lat += lat
                line = (json.dumps(event) + "\n").encode()
                _, lat = await_all(sel, base_subs, lambda: base_ctl.sendall(line))
                base_lat += lat
        print("events: %d subscribers, %d events each way (created and deleted, alternating with the baseline)"
              % (SUBSCRIBERS, 2 * ROUNDS))
        h_med, h_p99 = summary("Host GET /events (record in SQLite, Lua fan-out, MHD)", host_lat)
        b_med, b_p99 = summary("baseline: the same frames, plain loopback server", base_lat)
        print("  Host / baseline: median %.1fx, p99 %.1fx" % (h_med / b_med, h_p99 / b_p99))
    finally:
        base.kill()
        base.wait()
        host.terminate()
        try:
            host.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait()


if __name__ == "__main__":
    main()
