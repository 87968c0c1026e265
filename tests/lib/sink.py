#!/usr/bin/python3
"""
NAME
    sink.py - SMTP sink for the integration tests

SYNOPSIS
    sink.py --port PORT --dir DIR [--host 127.0.0.1] [--name NAME]
            [--rcpt-reply 'CODE TEXT'] [--data-reply 'CODE TEXT']
            [--rcpt-reply-for 'ADDR=CODE TEXT']...

DESCRIPTION
    Accepts SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) from any
    number of concurrent clients and keeps every message it accepts:

        DIR/NNNNNN.eml  the DATA bytes exactly as received (CRLF line ends),
                        dot-unstuffed, without the terminating "."
        DIR/NNNNNN.env  the envelope, one "key: value" a line:
                            peer: ADDR PORT
                            helo: NAME
                            mail_from: <ADDR>
                            mail_params: PARAMS      (may be empty)
                            rcpt_to: <ADDR>          (one line per recipient)

    NNNNNN counts up from 000001 in arrival order. Both files are written
    under DIR/.tmp and renamed into DIR, the .env before the .eml, so a
    reader that sees NNNNNN.eml always sees the whole message and its
    envelope. Count messages by counting *.eml.

    It advertises PIPELINING and 8BITMIME (so Postfix never converts
    8-bit bodies) and SMTPUTF8, but not CHUNKING, DSN or STARTTLS.

    --rcpt-reply / --data-reply make it answer every RCPT / DATA-end with
    that reply instead of 250 (to test the MTA's retries and bounces); a
    message refused at DATA-end is not stored. --rcpt-reply-for
    'ADDR=CODE TEXT' (repeatable) answers RCPT TO:<ADDR> only (case
    ignored) with that reply.

    When it listens, it writes DIR/.ready. SIGTERM stops it.
"""

import argparse
import asyncio
import itertools
import os
import signal
import sys

# A line longer than this ends the session: RFC 5321 allows 1000 octets,
# Postfix splits its lines at 2048 (line_length_limit); a real client
# never sends more.
MAX_LINE = 1 << 20
# Largest message we store; SIZE is advertised with this value.
MAX_MESSAGE = 256 << 20


class Sink:
    def __init__(self, directory, name, rcpt_reply, data_reply):
        self.dir = directory
        self.tmp = os.path.join(directory, ".tmp")
        self.name = name
        self.rcpt_reply = rcpt_reply
        self.replies_for = {}
        self.data_reply = data_reply
        self.seq = itertools.count(1)
        os.makedirs(self.tmp, exist_ok=True)

    def store(self, envelope_lines, data):
        n = "%06d" % next(self.seq)
        for suffix, content in ((".env", "".join(envelope_lines).encode()),
                                (".eml", data)):
            tmp = os.path.join(self.tmp, n + suffix)
            with open(tmp, "wb") as f:
                f.write(content)
            os.rename(tmp, os.path.join(self.dir, n + suffix))
        return n

    def reply_for(self, arg):
        """The --rcpt-reply-for reply of a RCPT TO argument, or None."""
        addr = arg[3:].strip().partition(" ")[0].strip("<>").lower()
        return self.replies_for.get(addr)

    async def session(self, reader, writer):
        peer = writer.get_extra_info("peername") or ("?", 0)

        async def reply(text):
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        helo = ""
        mail = None
        params = ""
        rcpts = []
        try:
            await reply("220 %s ESMTP bm-sink" % self.name)
            while True:
                line = await reader.readline()
                if not line:
                    return
                if not line.endswith(b"\n") or len(line) > MAX_LINE:
                    await reply("500 5.5.2 line too long")
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    helo, mail, rcpts = arg, None, []
                    await reply("250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                "250-SMTPUTF8\r\n250 SIZE %d"
                                % (self.name, MAX_MESSAGE))
                elif verb == "HELO":
                    helo, mail, rcpts = arg, None, []
                    await reply("250 %s" % self.name)
                elif verb == "MAIL" and arg.upper().startswith("FROM:"):
                    rest = arg[5:].strip()
                    addr, _, params = rest.partition(" ")
                    mail, rcpts = addr, []
                    await reply("250 2.1.0 Ok")
                elif verb == "RCPT" and arg.upper().startswith("TO:"):
                    if mail is None:
                        await reply("503 5.5.1 need MAIL first")
                    elif self.rcpt_reply:
                        await reply(self.rcpt_reply)
                    elif self.reply_for(arg):
                        await reply(self.reply_for(arg))
                    else:
                        rcpts.append(arg[3:].strip().partition(" ")[0])
                        await reply("250 2.1.5 Ok")
                elif verb == "DATA":
                    if mail is None or not rcpts:
                        await reply("554 5.5.1 no valid recipients")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    data = await self.read_data(reader)
                    if data is None:
                        return
                    if self.data_reply:
                        await reply(self.data_reply)
                    else:
                        env = ["peer: %s %s\n" % (peer[0], peer[1]),
                               "helo: %s\n" % helo,
                               "mail_from: %s\n" % mail,
                               "mail_params: %s\n" % params]
                        env += ["rcpt_to: %s\n" % r for r in rcpts]
                        n = self.store(env, data)
                        await reply("250 2.0.0 Ok: stored as %s" % n)
                    mail, rcpts = None, []
                elif verb == "RSET":
                    mail, rcpts = None, []
                    await reply("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await reply("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    return
                else:
                    await reply("502 5.5.2 command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def read_data(self, reader):
        """The DATA lines up to "." alone, dot-unstuffed; None on EOF."""
        chunks = []
        size = 0
        while True:
            line = await reader.readline()
            if not line:
                return None
            if line in (b".\r\n", b".\n"):
                return b"".join(chunks)
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size > MAX_MESSAGE:
                return None
            chunks.append(line)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--name", default="bm-sink.localdomain")
    ap.add_argument("--rcpt-reply")
    ap.add_argument("--data-reply")
    ap.add_argument("--rcpt-reply-for", action="append", default=[],
                    metavar="ADDR=CODE TEXT")
    args = ap.parse_args()

    sink = Sink(args.dir, args.name, args.rcpt_reply, args.data_reply)
    for spec in args.rcpt_reply_for:
        addr, _, text = spec.partition("=")
        sink.replies_for[addr.strip("<>").lower()] = text
    server = await asyncio.start_server(sink.session, args.host, args.port,
                                        limit=MAX_LINE, reuse_address=True,
                                        backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(os.path.join(args.dir, ".ready"), "w") as f:
        f.write("%d\n" % os.getpid())
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except OSError as e:
        print("sink: %s" % e, file=sys.stderr)
        sys.exit(1)
