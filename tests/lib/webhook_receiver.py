#!/usr/bin/env python3
"""webhook_receiver - a NotifyURL for the tests, on loopback.

    webhook_receiver.py PORT LOGFILE [MODEFILE]

Every POST whose body is one JSON object is answered by the mode that
MODEFILE holds when it arrives (read per request, so a test switches it
while the receiver runs; no file or an empty one: "ok"):

    ok      200, and the object is appended to LOGFILE as one line
    500     500, nothing logged
    hang    no answer for 30 s (the sender's timeout), nothing logged

Any other request is answered 404. A line "ready" goes to stdout once
the port is bound. Loopback only.
"""
import http.server
import json
import sys
import threading
import time

port, logfile = int(sys.argv[1]), sys.argv[2]
modefile = sys.argv[3] if len(sys.argv) > 3 else None
lock = threading.Lock()


def mode():
    if not modefile:
        return "ok"
    try:
        with open(modefile) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        m = mode()
        if m == "hang":
            time.sleep(30)
            return
        if m == "500":
            self.send_response(500)
            self.end_headers()
            return
        try:
            obj = json.loads(body)
            assert isinstance(obj, dict)
        except Exception:
            self.send_response(400)
            self.end_headers()
            return
        with lock, open(logfile, "a") as f:
            f.write(json.dumps(obj, sort_keys=True) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
