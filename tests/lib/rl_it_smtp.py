#!/usr/bin/python3
"""
NAME
    rl_it_smtp.py - SMTP sessions for the rate-limit integration tests,
    recording every reply

SYNOPSIS
    rl_it_smtp.py --port PORT --from ADDR [--sessions N] [--messages M]
                  [--rcpts K] [--tag TAG] [--auth USER:PASS]
                  [--xclient ADDR] [--end data|rset|quit|drop]
                  [--size BYTES] [--header 'Name: value']...
                  [--mid-cmd CMD] [--start-at EPOCH]

DESCRIPTION
    Opens N sessions (default 1) with the server on 127.0.0.1:PORT, in
    parallel threads that wait for each other before their first MAIL
    FROM, so that their transactions overlap (and, with --start-at, until
    that wall-clock time, so that two runs overlap too). Each session says EHLO,
    then XCLIENT ADDR=ADDR and EHLO again when --xclient is given, then
    AUTH PLAIN when --auth is given, then sends M messages (default 1)
    one after another, each with K recipients (default 1) named
    TAG.S.M.R@example.net (S, M, R count from 1).

    A message whose MAIL FROM is refused goes on with the next one (no
    RSET). Otherwise, after its RCPTs, --mid-cmd CMD runs through the
    shell (its output is printed as "# " lines), then the transaction
    ends as --end says: data (default; DATA when a RCPT was accepted,
    else RSET), rset (RSET), quit (QUIT, and the session is over), drop
    (the TCP connection is closed without a word, and the session is
    over). --size pads the body to about BYTES bytes.

    One line per reply:

        S M STAGE CODE TEXT

    STAGE is mail, rcptR, data (the reply after the final dot, or to
    DATA itself when that is refused), rset or quit; TEXT is the reply
    text with its enhanced status code, as one line. After each message
    that reached its end: "S M ms MILLISECONDS" (MAIL FROM to the last
    reply). Exits 1 when a session cannot be opened.
"""
import argparse
import socket
import smtplib
import subprocess
import sys
import threading
import time

out_lock = threading.Lock()


def say(*fields):
    line = " ".join(str(f) for f in fields)
    with out_lock:
        print(line, flush=True)


def text_of(msg):
    if isinstance(msg, bytes):
        msg = msg.decode(errors="replace")
    return " ".join(str(msg).split())


def message(args, s, m, rcpts):
    lines = ["Message-ID: <%s.%d.%d@rl-it.test>" % (args.tag, s, m),
             "Subject: %s %d %d" % (args.tag, s, m),
             "From: <%s>" % (args.sender or "postmaster@rl-it.test"),
             "To: <%s>" % rcpts[0]]
    lines.extend(args.header)
    lines.append("")
    lines.append("message %s %d %d" % (args.tag, s, m))
    pad = "x" * 76
    while args.size and sum(len(x) + 2 for x in lines) < args.size:
        lines.append(pad)
    lines.append("")
    return "\r\n".join(lines).encode()


def one_message(conn, args, s, m):
    """Returns False when the session is over."""
    start = time.monotonic()

    def done():
        say(s, m, "ms", int((time.monotonic() - start) * 1000))

    code, msg = conn.mail("<%s>" % args.sender if args.sender else "<>")
    say(s, m, "mail", code, text_of(msg))
    if code != 250:
        done()
        return True
    accepted = []
    for r in range(1, args.rcpts + 1):
        rcpt = "%s.%d.%d.%d@example.net" % (args.tag, s, m, r)
        code, msg = conn.rcpt(rcpt)
        say(s, m, "rcpt%d" % r, code, text_of(msg))
        if code in (250, 251):
            accepted.append(rcpt)
    if args.mid_cmd:
        res = subprocess.run(args.mid_cmd, shell=True, capture_output=True, text=True)
        with out_lock:
            for line in (res.stdout + res.stderr).splitlines():
                print("# " + line, flush=True)
    if args.end == "quit":
        code, msg = conn.docmd("QUIT")
        say(s, m, "quit", code, text_of(msg))
        conn.close()
        done()
        return False
    if args.end == "drop":
        conn.sock.close()
        conn.sock = None
        conn.file = None
        say(s, m, "drop", 0, "connection closed")
        done()
        return False
    if args.end == "rset" or not accepted:
        code, msg = conn.docmd("RSET")
        say(s, m, "rset", code, text_of(msg))
        done()
        return True
    try:
        code, msg = conn.data(message(args, s, m, accepted))
    except smtplib.SMTPDataError as e:
        code, msg = e.smtp_code, e.smtp_error
    say(s, m, "data", code, text_of(msg))
    done()
    return True


def session(args, s, barrier, failures):
    try:
        conn = smtplib.SMTP("127.0.0.1", args.port, local_hostname="rl-client.example",
                            timeout=60)
        conn.ehlo()
        if args.xclient:
            addr = args.xclient
            if ":" in addr and not addr.upper().startswith("IPV6:"):
                addr = "IPV6:" + addr
            code, msg = conn.docmd("XCLIENT", "ADDR=%s" % addr)
            if code != 220:
                raise smtplib.SMTPException("XCLIENT refused: %d %s" % (code, text_of(msg)))
            conn.ehlo()
        if args.auth:
            user, _, password = args.auth.partition(":")
            conn.login(user, password)
    except (OSError, smtplib.SMTPException) as e:
        print("session %d: cannot open: %s" % (s, e), file=sys.stderr, flush=True)
        failures.append(s)
        barrier.abort()
        return
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        failures.append(s)
        return
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    try:
        for m in range(1, args.messages + 1):
            if not one_message(conn, args, s, m):
                return
        code, msg = conn.docmd("QUIT")
        conn.close()
    except (OSError, smtplib.SMTPException) as e:
        print("session %d: %s" % (s, e), file=sys.stderr, flush=True)
        failures.append(s)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--messages", type=int, default=1)
    p.add_argument("--rcpts", type=int, default=1)
    p.add_argument("--tag", default="rl")
    p.add_argument("--auth")
    p.add_argument("--xclient")
    p.add_argument("--end", choices=["data", "rset", "quit", "drop"], default="data")
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--mid-cmd")
    p.add_argument("--start-at", type=float, default=0.0)
    args = p.parse_args()

    barrier = threading.Barrier(args.sessions)
    failures = []
    threads = [threading.Thread(target=session, args=(args, s, barrier, failures))
               for s in range(1, args.sessions + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 1 if failures else 0


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    sys.exit(main())
