#!/usr/bin/python3
"""
NAME
    smtp_driver.py - the SMTP client of the integration tests: sessions
    that record every reply

SYNOPSIS
    smtp_driver.py --port PORT --from ADDR [--host ADDR] [--timeout S]
                   [--to ADDR]... [--rcpts K] [--messages M] [--until FILE]
                   [--sessions N] [--serial] [--start-at EPOCH]
                   [--helo NAME] [--xclient ADDR] [--auth USER:PASS]
                   [--tag TAG] [--domain DOMAIN] [--header 'Name: value']...
                   [--size BYTES] [--end data|rset|quit|drop] [--mid-cmd CMD]

    import smtp_driver
    s = smtp_driver.open_session(port, helo="client.example",
                                 xclient="192.0.2.10", auth=("u", "p"))
    code, text = s.mail("alice@example.com")
    code, text = s.rcpt("bob@example.net")
    code, text = s.data(message_bytes)   # DATA, content, final dot
    s.quit()

DESCRIPTION
    Opens N sessions (default 1) with the server on HOST:PORT (default
    127.0.0.1), all at once in threads that wait for each other before
    their first MAIL FROM, so that their transactions overlap (and, with
    --start-at, until that wall-clock time, so that two runs overlap
    too); with --serial one after another instead. Each session says
    EHLO NAME (--helo, default client.example), then XCLIENT ADDR=ADDR
    (IPv6 as IPV6:...) and EHLO again when --xclient is given, then AUTH
    PLAIN when --auth is given, then sends M messages (default 1) one
    after another; with --until, messages until FILE exists. Then QUIT.

    Each message goes from --from ("" is the null sender) to the --to
    addresses, or else to K generated recipients (--rcpts, default 1)
    TAG.S.M.R@example.net (S, M, R count from 1). Its header: Message-ID
    <TAG.S.M@DOMAIN>, Subject "TAG S M", From <ADDR> (postmaster@DOMAIN
    for the null sender; none when a --header gives a From), To <first
    recipient>, then the --header fields; its body "message TAG S M",
    padded to about --size bytes. TAG defaults to "smtp", DOMAIN to
    smtp-driver.test.

    A message whose MAIL FROM is refused goes on with the next one (after
    RSET with --end rset). Otherwise, after its RCPTs, --mid-cmd CMD runs
    through the shell (its output is printed as "# " lines), then the
    transaction ends as --end says: data (default; DATA when a RCPT was
    accepted, else RSET), rset (RSET), quit (QUIT, and the session is
    over), drop (the TCP connection is closed without a word, and the
    session is over).

    Output, one line per reply:

        S M STAGE CODE TEXT

    STAGE is mail, rcptR, data (the reply after the final dot, or to
    DATA itself when that is refused), rset, quit or drop ("0 connection
    closed"); TEXT is the reply text with its enhanced status code, its
    lines joined and white space runs made one space. After each
    message, one more line:

        S M ms MS CODE QID TEXT

    MS is the time from MAIL FROM to the message's last reply in
    milliseconds; CODE and TEXT are those of the reply that decided the
    message: the refused MAIL FROM, the last RCPT reply when none was
    accepted, the refused DATA, else the last reply (to the final dot,
    or the rset, quit or drop line); QID is the queue ID of "queued as"
    in a 250, else "-". Exits 1 when a session could not be opened or
    broke off (the reason on stderr), else 0.

MODULE
    Session(host, port, timeout) connects and reads the greeting
    (.greeting = (code, text)); its methods send one command and return
    its reply as (code, text): cmd(line), ehlo(name), xclient(addr,
    **attrs), auth_plain(user, password), mail(sender), rcpt(addr),
    data(content) (DATA's reply when it is not 354, else the reply to
    the final dot; content is dot-stuffed here), rset(), quit(). reply()
    reads one reply, send(bytes) sends raw bytes, close(reset=False)
    closes the connection (with reset, by a TCP RST). Text joins the
    reply lines with Session.joiner (default " "). A reply that is not
    SMTP, or a closed connection, raises SmtpError; socket errors and
    timeouts raise OSError.

    open_session(port, host, helo, xclient, auth, helo_after_xclient,
    timeout, xclient_attrs) is a Session past EHLO, XCLIENT and AUTH, or
    SmtpError. message(...) builds the message above; dot_stuff(bytes);
    queue_id(code, text) is the "queued as" ID of a 250, or None.

    The one SMTP client of the tests and tools: h_smtp (harness.sh), the
    integration tests' helpers and scripts/soak's load
    (tests/lib/soak_client.py, which sets joiner to " | ") use it.
"""
import argparse
import base64
import os
import socket
import struct
import subprocess
import sys
import threading
import time

DEFAULT_TIMEOUT = 60
MAX_REPLY_LINE = 4096


class SmtpError(Exception):
    pass


class Session:
    """One SMTP connection, commands and replies as (code, text)."""

    joiner = " "

    def __init__(self, host="127.0.0.1", port=25, timeout=DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self):
        lines = []
        while True:
            line = self.rfile.readline(MAX_REPLY_LINE)
            if not line:
                raise SmtpError("connection closed")
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            code = int(lines[-1][:3])
        except ValueError:
            raise SmtpError("not an SMTP reply: %r" % lines[-1]) from None
        return code, self.joiner.join(l[4:] for l in lines)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def ehlo(self, name):
        return self.cmd("EHLO %s" % name)

    def xclient(self, addr=None, **attrs):
        """XCLIENT ADDR=addr (an IPv6 address gets IPV6:) NAME=... ."""
        args = []
        if addr is not None:
            if ":" in addr and not addr.upper().startswith("IPV6:"):
                addr = "IPV6:" + addr
            args.append("ADDR=%s" % addr)
        args.extend("%s=%s" % kv for kv in attrs.items())
        return self.cmd("XCLIENT " + " ".join(args))

    def auth_plain(self, user, password):
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        return self.cmd("AUTH PLAIN %s" % token)

    def mail(self, sender):
        return self.cmd("MAIL FROM:<%s>" % sender)

    def rcpt(self, addr):
        return self.cmd("RCPT TO:<%s>" % addr)

    def data(self, content):
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        self.send(dot_stuff(content) + b".\r\n")
        return self.reply()

    def rset(self):
        return self.cmd("RSET")

    def quit(self):
        return self.cmd("QUIT")

    def close(self, reset=False):
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


def dot_stuff(data):
    out = data.replace(b"\r\n.", b"\r\n..")
    return b"." + out if out.startswith(b".") else out


def queue_id(code, text):
    if code != 250 or "queued as " not in text:
        return None
    return text.split("queued as ")[-1].split()[0]


def open_session(port, host="127.0.0.1", helo="client.example", xclient=None,
                 auth=None, helo_after_xclient=None, timeout=DEFAULT_TIMEOUT,
                 xclient_attrs=None):
    """A Session past EHLO, [XCLIENT, EHLO,] [AUTH PLAIN]; SmtpError if refused."""
    s = Session(host, port, timeout)
    try:
        steps = [(220, "greeting", lambda: s.greeting),
                 (250, "EHLO", lambda: s.ehlo(helo))]
        if xclient:
            steps.append((220, "XCLIENT", lambda: s.xclient(xclient, **(xclient_attrs or {}))))
            steps.append((250, "EHLO after XCLIENT",
                          lambda: s.ehlo(helo_after_xclient or helo)))
        if auth:
            steps.append((235, "AUTH", lambda: s.auth_plain(*auth)))
        for want, what, step in steps:
            code, text = step()
            if code != want:
                raise SmtpError("%s refused: %d %s" % (what, code, text))
    except (OSError, SmtpError):
        s.close()
        raise
    return s


def message(tag, s, m, sender, rcpts, domain="smtp-driver.test", headers=(), size=0):
    """The message of the CLI (see DESCRIPTION), CRLF lines."""
    lines = ["Message-ID: <%s.%d.%d@%s>" % (tag, s, m, domain),
             "Subject: %s %d %d" % (tag, s, m)]
    if not any(h.lower().startswith("from:") for h in headers):
        lines.append("From: <%s>" % (sender or "postmaster@" + domain))
    lines.append("To: <%s>" % rcpts[0])
    lines.extend(headers)
    lines.append("")
    lines.append("message %s %d %d" % (tag, s, m))
    pad = "x" * 76
    while size and sum(len(x) + 2 for x in lines) < size:
        lines.append(pad)
    lines.append("")
    return "\r\n".join(lines).encode()


# ------------------------------------------------------------------ the CLI

out_lock = threading.Lock()


def say(*fields):
    line = " ".join(str(f) for f in fields)
    with out_lock:
        print(line, flush=True)


def one_line(text):
    return " ".join(text.split())


class Transaction:
    """One message of the CLI: its replies, printed as they come."""

    def __init__(self, s, m):
        self.s, self.m = s, m
        self.start = time.monotonic()
        self.decided = None

    def got(self, stage, code, text, deciding=False):
        say(self.s, self.m, stage, code, one_line(text))
        if deciding or self.decided is None:
            self.decided = (code, text)

    def done(self):
        code, text = self.decided
        say(self.s, self.m, "ms", int((time.monotonic() - self.start) * 1000),
            code, queue_id(code, text) or "-", one_line(text))


def run_message(conn, args, s, m):
    """One message; False when the session is over."""
    t = Transaction(s, m)
    code, text = conn.mail(args.sender)
    t.got("mail", code, text)
    if code != 250:
        if args.end == "rset":
            code, text = conn.rset()
            say(s, m, "rset", code, one_line(text))
        t.done()
        return True
    rcpts = args.to or ["%s.%d.%d.%d@example.net" % (args.tag, s, m, r)
                        for r in range(1, args.rcpts + 1)]
    accepted = []
    for r, rcpt in enumerate(rcpts, 1):
        code, text = conn.rcpt(rcpt)
        t.got("rcpt%d" % r, code, text, deciding=True)
        if code in (250, 251):
            accepted.append(rcpt)
    # With one recipient accepted, the RCPT replies decide nothing.
    if accepted:
        t.decided = None
    if args.mid_cmd:
        res = subprocess.run(args.mid_cmd, shell=True, capture_output=True, text=True)
        with out_lock:
            for line in (res.stdout + res.stderr).splitlines():
                print("# " + line, flush=True)
    if args.end == "quit":
        code, text = conn.quit()
        t.got("quit", code, text)
        conn.close()
        t.done()
        return False
    if args.end == "drop":
        conn.close()
        t.got("drop", 0, "connection closed")
        t.done()
        return False
    if args.end == "rset" or not accepted:
        code, text = conn.rset()
        t.got("rset", code, text)
        t.done()
        return True
    code, text = conn.data(message(args.tag, s, m, args.sender, accepted, args.domain,
                                   args.header, args.size))
    t.got("data", code, text)
    t.done()
    return True


def run_session(args, s, barrier, failures):
    try:
        conn = open_session(args.port, args.host, args.helo, args.xclient,
                            args.auth.partition(":")[::2] if args.auth else None,
                            timeout=args.timeout)
    except (OSError, SmtpError) as e:
        print("session %d: cannot open: %s" % (s, e), file=sys.stderr, flush=True)
        failures.append(s)
        if barrier:
            barrier.abort()
        return
    try:
        if barrier:
            try:
                barrier.wait(timeout=args.timeout)
            except threading.BrokenBarrierError:
                failures.append(s)
                return
        if args.start_at:
            time.sleep(max(0.0, args.start_at - time.time()))
        m = 0
        while True:
            if args.until:
                if os.path.exists(args.until):
                    break
            elif m >= args.messages:
                break
            m += 1
            if not run_message(conn, args, s, m):
                return
        conn.quit()
    except (OSError, SmtpError) as e:
        print("session %d: %s" % (s, e), file=sys.stderr, flush=True)
        failures.append(s)
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser(description="SMTP sessions recording every reply "
                                "(see the header of this file)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", default=[])
    p.add_argument("--rcpts", type=int, default=1)
    p.add_argument("--messages", type=int, default=1)
    p.add_argument("--until", metavar="FILE")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--serial", action="store_true")
    p.add_argument("--start-at", type=float, default=0.0)
    p.add_argument("--helo", default="client.example")
    p.add_argument("--xclient")
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--tag", default="smtp")
    p.add_argument("--domain", default="smtp-driver.test")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--end", choices=["data", "rset", "quit", "drop"], default="data")
    p.add_argument("--mid-cmd")
    args = p.parse_args()

    failures = []
    if args.serial:
        for s in range(1, args.sessions + 1):
            run_session(args, s, None, failures)
            if failures:
                break
    else:
        barrier = threading.Barrier(args.sessions)
        threads = [threading.Thread(target=run_session, args=(args, s, barrier, failures))
                   for s in range(1, args.sessions + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
