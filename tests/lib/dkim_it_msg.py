#!/usr/bin/python3
"""
NAME
    dkim_it_msg.py - messages and header look-ups for the t_dkim_* tests

SYNOPSIS
    dkim_it_msg.py corpus DIR TAG
    dkim_it_msg.py message FILE MSGID ['Name: value'...]
    dkim_it_msg.py headers FILE [N]
    dkim_it_msg.py sigs FILE
    dkim_it_msg.py add-from IN OUT VALUE

DESCRIPTION
    corpus writes the DKIM corpus as DIR/NAME.eml, exact bytes with CRLF
    line ends, each with Message-ID <NAME.TAG@example.com> and From
    alice@example.com, and prints the NAMEs in order:

        empty                 no body at all
        blank-lines           a body of three empty lines
        trailing-blank-lines  two lines, then three empty lines
        spaces-and-tabs       trailing, leading and inner spaces and tabs
        long-line             a line of 990 characters, one of 998 (the
                              most Postfix's SMTP client sends unbroken)
        utf8-and-8bit         RFC 2047 From and Subject, UTF-8 and bare
                              8-bit bytes in the body
        utf8-headers          raw UTF-8 in From, To and Subject
        folded-headers        From, To, Subject and Cc folded (tabs,
                              spaces)
        tight-and-padded      signed headers written "Name:value" (no
                              space), "Name:   value  \t", "Name:\tvalue "
        repeated-headers      two Received, two To
        bare-lf               a body with LF line ends (the MTA makes
                              them CRLF before the milter sees them)
        five-megabytes        5 MB of lines, some with trailing blanks
                              and 8-bit bytes

    message writes a small message: Date, the header fields given (in
    order), Message-ID <MSGID>, an empty line and a two-line body.

    headers prints FILE's header fields in order (the first N), one a
    line, unfolded (CRLF and the white space after it become one space).

    sigs prints one line per DKIM-Signature of FILE, top first:
    "a=A d=D s=S c=C h=H" with H lower case, ':'-separated as in the
    signature.

    add-from copies IN to OUT with "From: VALUE" inserted just above the
    first From header field; exit 1 when IN has none.
"""
import re
import sys

CRLF = b"\r\n"


def head(name, tag, *fields):
    lines = [b"Date: Mon, 02 Mar 2026 10:00:00 +0000"]
    lines += [f if isinstance(f, bytes) else f.encode() for f in fields]
    lines.append(b"Message-ID: <%s.%s@example.com>" % (name.encode(), tag.encode()))
    return CRLF.join(lines) + CRLF


STD = (b"From: Alice <alice@example.com>", b"To: Bob <bob@example.net>")


def big_body():
    out = []
    size = 0
    line = 0
    while size < 5 * 1024 * 1024:
        if line % 7 == 0:
            text = b"line %d of a large body with trailing blanks \t " % line
        elif line % 11 == 0:
            text = b"line %d of a large body 8-bit \xc3\xa9\xc3\xa0" % line
        else:
            text = b"line %d of a large body ordinary text ..........." % line
        out.append(text + CRLF)
        size += len(text) + 2
        line += 1
    return b"".join(out)


def corpus(directory, tag):
    items = [
        ("empty", STD + (b"Subject: empty body",), b""),
        ("blank-lines", STD + (b"Subject: only blank lines",), CRLF * 3),
        ("trailing-blank-lines", STD + (b"Subject: trailing blank lines",),
         b"line one\r\nline two\r\n\r\n\r\n\r\n"),
        ("spaces-and-tabs", STD + (b"Subject: spaces and tabs",),
         b"trailing spaces   \r\ntrailing tab\t\r\n\t leading blanks\r\n \t \r\n"
         b"inside \t  blanks\t \r\n"),
        ("long-line", STD + (b"Subject: a long line",),
         b"x" * 990 + b"\r\n" + b"y" * 998 + b"\r\nafter the long lines\r\n"),
        ("utf8-and-8bit", (
            b"From: =?UTF-8?Q?J=C3=BCrgen?= <alice@example.com>",
            b"To: bob@example.net",
            b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
            b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit"),
         b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\nlatin-1 \xe9t\xe9\r\n\x80\xff bytes\r\n"),
        ("utf8-headers", (
            b"From: J\xc3\xbcrgen M\xc3\xbcller <alice@example.com>",
            b"To: Bj\xc3\xb6rn <bob@example.net>",
            b"Subject: Gr\xc3\xbc\xc3\x9fe, raw UTF-8 in a header \xe2\x9c\x93",
            b"MIME-Version: 1.0",
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit"),
         b"Gr\xc3\xbc\xc3\x9fe\r\n"),
        ("folded-headers", (
            b"From: Alice\r\n <alice@example.com>",
            b"To: bob@example.net,\r\n\tcarol@example.net,\r\n  dave@example.net",
            b"Subject: a subject\r\n\tfolded over\r\n three lines",
            b"Cc: erin@example.net,\r\n \t frank@example.net"),
         b"body\r\n"),
        ("tight-and-padded", (
            b"From:alice@example.com",
            b"To: bob@example.net",
            b"Cc:erin@example.net",
            b"Reply-To:   alice@example.com  \t",
            b"Subject:\tpadded with a tab "),
         b"body\r\n"),
        ("repeated-headers", (
            b"Received: from a (a [192.0.2.1]) by b; Mon, 2 Mar 2026 09:59:00 +0000",
            b"Received: from c by a; Mon, 2 Mar 2026 09:58:00 +0000",
            b"From: alice@example.com",
            b"To: bob@example.net",
            b"To: carol@example.net",
            b"Cc: dave@example.net",
            b"Subject: two of some"),
         b"body\r\n"),
        ("bare-lf", STD + (b"Subject: bare LF line ends",),
         b"first\nsecond\n\nfourth, then CRLF\r\n"),
        ("five-megabytes", STD + (b"Subject: five megabytes",), big_body()),
    ]
    for name, fields, body in items:
        with open("%s/%s.eml" % (directory, name), "wb") as f:
            f.write(head(name, tag, *fields) + CRLF + body)
        print(name)
    return 0


def message(path, msgid, fields):
    lines = [b"Date: Mon, 02 Mar 2026 10:00:00 +0000"]
    lines += [f.encode("utf-8", "surrogateescape") for f in fields]
    lines.append(b"Message-ID: <%s>" % msgid.encode())
    with open(path, "wb") as f:
        f.write(CRLF.join(lines) + CRLF + CRLF + b"Hello,\r\nthis is " + msgid.encode() + b".\r\n")
    return 0


def fields_of(data):
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[:end + 2]
    out = []
    for line in block.split(CRLF)[:-1]:
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += CRLF + line
        else:
            out.append(line)
    return out


def unfold(field):
    return re.sub(rb"\r\n[ \t]+", b" ", field)


def headers(path, count=None):
    for f in fields_of(open(path, "rb").read())[:count]:
        sys.stdout.buffer.write(unfold(f) + b"\n")
    return 0


def sigs(path):
    for f in fields_of(open(path, "rb").read()):
        name, _, value = f.partition(b":")
        if name.strip().lower() != b"dkim-signature":
            continue
        tags = {}
        for part in re.sub(rb"\s+", b"", value).split(b";"):
            k, eq, v = part.partition(b"=")
            if eq:
                tags[k.decode()] = v.decode()
        print("a=%s d=%s s=%s c=%s h=%s" % (tags.get("a"), tags.get("d"), tags.get("s"),
                                            tags.get("c"), tags.get("h", "").lower()))
    return 0


def add_from(src, dst, value):
    data = open(src, "rb").read()
    m = re.search(rb"(?im)^from:", data)
    if m is None:
        return 1
    with open(dst, "wb") as f:
        f.write(data[:m.start()] + b"From: " + value.encode() + CRLF + data[m.start():])
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "corpus":
        return corpus(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == "message":
        return message(argv[1], argv[2], argv[3:])
    if len(argv) in (2, 3) and argv[0] == "headers":
        return headers(argv[1], int(argv[2]) if len(argv) == 3 else None)
    if len(argv) == 2 and argv[0] == "sigs":
        return sigs(argv[1])
    if len(argv) == 4 and argv[0] == "add-from":
        return add_from(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
