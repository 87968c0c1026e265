#!/usr/bin/python3
"""
NAME
    mkmsg.py - write test messages with exact bytes

SYNOPSIS
    mkmsg.py passthrough FILE [MESSAGE-ID]
    mkmsg.py strip-received IN OUT

DESCRIPTION
    passthrough: a message that exercises what an MTA and a milter must
    leave alone: folded headers (tab and spaces), an empty header value,
    no space after the colon, trailing white space, 8-bit UTF-8 in
    headers and body, body lines that begin with dots, a long line
    (900 octets, under RFC 5321's 1000), and trailing empty lines. Lines
    end in CRLF.

    strip-received: copy IN to OUT without its first header field (the
    Received: header Postfix prepends, with its continuation lines);
    exit 1 when IN does not start with "Received:".
"""
import sys


def passthrough(path, msgid):
    headers = [
        b"Date: Mon, 02 Mar 2026 10:00:00 +0000",
        b'From: "Alice Example" <alice@example.com>',
        b"To: Bob <bob@example.net>,",
        b"\tcarol@example.net",
        b"Subject: pass-through \xc3\xa9t\xc3\xa9 test",
        b"Message-ID: <" + msgid.encode() + b">",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"X-Folded: first part",
        b"\tsecond part after a tab",
        b"    third part after spaces",
        b"X-Trailing-Space: value with trailing space   ",
        b"X-Empty:",
        b"X-No-Space:value",
    ]
    body = [
        b"Line one",
        b".a line that begins with a dot",
        b"..two dots",
        b".",
        b"",
        b"tabs\tand trailing spaces  ",
        b"8-bit: h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93",
        b"x" * 900,
        b"last line, then two empty lines",
        b"",
        b"",
    ]
    with open(path, "wb") as f:
        f.write(b"\r\n".join(headers + [b""] + body) + b"\r\n")


def strip_received(src, dst):
    data = open(src, "rb").read()
    if not data.startswith(b"Received:"):
        return 1
    end = data.index(b"\r\n") + 2
    while data[end:end + 1] in (b" ", b"\t"):
        end = data.index(b"\r\n", end) + 2
    with open(dst, "wb") as f:
        f.write(data[end:])
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "passthrough":
        passthrough(sys.argv[2], sys.argv[3] if len(sys.argv) > 3
                    else "passthrough.1@example.com")
    elif sys.argv[1] == "strip-received":
        sys.exit(strip_received(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(2)
