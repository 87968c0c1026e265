#!/usr/bin/python3
"""
NAME
    spf_it_smtp.py - send many messages through XCLIENT, timing each

SYNOPSIS
    spf_it_smtp.py --port PORT --xclient ADDR --from ADDR [--to ADDR]
                   [--count N] [--sessions S] [--helo NAME]
                   [--header 'Name: value']... [--tag TEXT]

DESCRIPTION
    Opens S SMTP sessions one after another (default 1) with the server
    on 127.0.0.1:PORT; each says EHLO, XCLIENT ADDR=ADDR (IPv6 as
    IPV6:...), EHLO again, then sends its share of the N messages
    (default 1) over the same session. --from "" is the null sender.

    For every message it prints one line:

        SEQ CODE QID MS TEXT

    SEQ counts from 1, CODE is the first reply that was not a success
    (or the 250 that queued it), QID the queue ID ("-" when not queued),
    MS the wall time from MAIL FROM to that reply in milliseconds, TEXT
    the reply text (its lines joined by spaces). Each
    message carries a Message-ID <TAG.SEQ@spf-it.test> and a Subject
    with TAG and SEQ. Exits 1 when a session cannot be opened.
"""
import argparse
import re
import smtplib
import sys
import time


def message(args, seq):
    lines = ["Message-ID: <%s.%d@spf-it.test>" % (args.tag, seq),
             "Subject: %s %d" % (args.tag, seq)]
    if not any(h.lower().startswith("from:") for h in args.header):
        lines.append("From: <%s>" % (args.sender or "postmaster@spf-it.test"))
    lines.append("To: <%s>" % args.to)
    lines.extend(args.header)
    lines.extend(["", "message %d" % seq, ""])
    return "\r\n".join(lines).encode()


def send_one(s, args, seq):
    start = time.monotonic()

    def done(code, text):
        ms = int((time.monotonic() - start) * 1000)
        m = re.search(rb"queued as ([0-9A-Za-z]+)", text or b"")
        qid = m.group(1).decode() if m and code == 250 else "-"
        text = (text or b"").decode(errors="replace").replace("\n", " ")
        print("%d %d %s %d %s" % (seq, code, qid, ms, text), flush=True)

    code, text = s.mail("<%s>" % args.sender if args.sender else "<>")
    if code != 250:
        done(code, text)
        s.rset()
        return
    code, text = s.rcpt(args.to)
    if code not in (250, 251):
        done(code, text)
        s.rset()
        return
    try:
        code, text = s.data(message(args, seq))
    except smtplib.SMTPDataError as e:	# DATA itself refused
        code, text = e.smtp_code, e.smtp_error
    done(code, text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--xclient", required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", default="bob@example.net")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--helo", default="client.example")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--tag", default="spf-it")
    args = p.parse_args()

    addr = args.xclient
    if ":" in addr and not addr.upper().startswith("IPV6:"):
        addr = "IPV6:" + addr
    seq = 0
    per = -(-args.count // args.sessions)
    for _ in range(args.sessions):
        if seq >= args.count:
            break
        try:
            s = smtplib.SMTP("127.0.0.1", args.port, local_hostname=args.helo, timeout=60)
            s.ehlo()
            code, text = s.docmd("XCLIENT", "ADDR=%s" % addr)
            if code != 220:
                print("XCLIENT refused: %d %s" % (code, text.decode(errors="replace")),
                      file=sys.stderr)
                return 1
            s.ehlo()
        except (OSError, smtplib.SMTPException) as e:
            print("cannot open a session: %s" % e, file=sys.stderr)
            return 1
        for _ in range(min(per, args.count - seq)):
            seq += 1
            send_one(s, args, seq)
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
