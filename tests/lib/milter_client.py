#!/usr/bin/python3
"""The MTA side of the milter protocol, for tests that need to see what a
milter negotiates and which steps it answers, which Postfix does not show.

    milter_client.py SOCKET --protocol HEX [--client IP] [--chunks N]

SOCKET is unix:PATH or inet:PORT@HOST. The client offers protocol version
6, every action and the protocol flags HEX, then runs one message (connect
from IP, MAIL, RCPT, two headers, end of headers, N body chunks, end of
message, QUIT) and prints one line a step:

    protocol 0xFLAGS            what the milter asked for
    mail c / rcpt c             the reply to MAIL and RCPT (a command letter)
    body 1 s                    the reply to body chunk 1, when one is due
    body none                   no reply to any chunk, when "no reply" is
                                negotiated for body (checked for 0.5 s)
    eom h,c                     the replies to end of message, in order

Steps for which "no reply" is negotiated are not waited for; a reply that
comes anyway shows up in the line of the next step that reads one.
"""

import argparse
import select
import socket
import struct
import sys

SMFIP_NR_CONN = 0x1000
SMFIP_NR_HDR = 0x80
SMFIP_NR_EOH = 0x40000
SMFIP_NR_BODY = 0x80000
ALL_ACTIONS = 0x1FF
FINAL_REPLIES = set("acdrtys")  # accept continue discard reject tempfail replycode skip
TIMEOUT = 10


def connect(spec):
    if spec.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(spec[5:])
    elif spec.startswith("inet:"):
        port, host = spec[5:].split("@")
        s = socket.create_connection((host, int(port)))
    else:
        sys.exit("milter_client: bad socket " + spec)
    s.settimeout(TIMEOUT)
    return s


def send(s, cmd, data=b""):
    s.sendall(struct.pack(">I", len(data) + 1) + cmd.encode() + data)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        part = s.recv(n - len(buf))
        if not part:
            sys.exit("milter_client: the milter closed the connection")
        buf += part
    return buf


def recv(s):
    (length,) = struct.unpack(">I", recv_exact(s, 4))
    data = recv_exact(s, length)
    return chr(data[0]), data[1:]


def macros(s, stage, pairs):
    send(s, "D", stage.encode() + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs))


def replies_until_final(s):
    got = []
    while True:
        cmd, _ = recv(s)
        got.append(cmd)
        if cmd in FINAL_REPLIES:
            return got


def quiet(s, seconds):
    return not select.select([s], [], [], seconds)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--protocol", required=True, type=lambda v: int(v, 16))
    ap.add_argument("--client", default="127.0.0.1")
    ap.add_argument("--chunks", type=int, default=3)
    a = ap.parse_args()

    s = connect(a.socket)
    send(s, "O", struct.pack(">III", 6, ALL_ACTIONS, a.protocol))
    cmd, data = recv(s)
    if cmd != "O" or len(data) < 12:
        sys.exit("milter_client: no option negotiation reply (%r)" % cmd)
    _, _, proto = struct.unpack(">III", data[:12])
    print("protocol 0x%x" % proto)

    def step(name, cmd, payload, no_reply_flag):
        send(s, cmd, payload)
        if not proto & no_reply_flag:
            print(name, ",".join(replies_until_final(s)))

    macros(s, "C", [("j", "mx.test.example"), ("{daemon_name}", "smtpd")])
    step("connect", "C", b"client.example\0" + b"4" + struct.pack(">H", 4711) +
         a.client.encode() + b"\0", SMFIP_NR_CONN)
    macros(s, "M", [("i", "4ABC123")])
    step("mail", "M", b"<alice@example.com>\0", 0)
    step("rcpt", "R", b"<bob@example.net>\0", 0)
    for name, value in (("From", " alice@example.com"), ("Subject", " protocol")):
        step("header " + name, "L", name.encode() + b"\0" + value.encode() + b"\0", SMFIP_NR_HDR)
    step("eoh", "N", b"", SMFIP_NR_EOH)
    for i in range(1, a.chunks + 1):
        send(s, "B", b"line %d\r\n" % i * 100)
        if not proto & SMFIP_NR_BODY:
            reply = replies_until_final(s)
            print("body %d %s" % (i, ",".join(reply)))
            if reply == ["s"]:
                break
    if proto & SMFIP_NR_BODY:
        print("body none" if quiet(s, 0.5) else "body replied")
    send(s, "E")
    print("eom", ",".join(replies_until_final(s)))
    send(s, "Q")
    s.close()


if __name__ == "__main__":
    main()
