#!/usr/bin/env python3
"""A load client for a program's port: `hammer.py PORT STOPFILE [CLIENTS]`.

CLIENTS threads (default 4) each GET /watcher/status one after the other until STOPFILE
exists (checked between requests; at most 600 s in all): half of them on a fresh
connection each time, half on one kept alive (a new one when the server closes it).
Then it prints one JSON line: {"ok": n, "errors": n, "first_errors": [...]}. An error
is a refused or reset connection, a timeout, or any status but 200: a request the
program did not serve. Used by spec/update_spec.lua and bench/update/run.sh.
"""
import http.client
import json
import os
import sys
import threading
import time

LIMIT = 600  # seconds: a forgotten stop file cannot leave it running


def client(port, stopfile, counts, lock, end, keep_alive):
    conn = None
    while not os.path.exists(stopfile) and time.monotonic() < end:
        err = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {} if keep_alive else {"Connection": "close"}
            conn.request("GET", "/watcher/status", headers=headers)
            res = conn.getresponse()
            res.read()
            if res.status != 200:
                err = "status %d" % res.status
            if not keep_alive or res.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            err = "%s: %s" % (type(e).__name__, e)
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            if err is None:
                counts["ok"] += 1
            else:
                counts["errors"] += 1
                if len(counts["first_errors"]) < 10:
                    counts["first_errors"].append("%.3f %s%s" % (time.time(), "kept-alive " if keep_alive else "", err))


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: hammer.py PORT STOPFILE [CLIENTS]")
    port, stopfile = int(sys.argv[1]), sys.argv[2]
    clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    counts = {"ok": 0, "errors": 0, "first_errors": []}
    lock = threading.Lock()
    end = time.monotonic() + LIMIT
    threads = [threading.Thread(target=client, args=(port, stopfile, counts, lock, end, i % 2 == 1))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
