#!/usr/bin/python3
"""dkim_verify.py - verify every DKIM-Signature of messages without DNS.

usage: dkim_verify.py [--txt SELECTOR._domainkey.DOMAIN=FILE]... [--opendkim]
                      [--no-python] [--expect-fail] [--require-h HEADER]...
                      MESSAGE...

Each --txt gives the DNS TXT record of one key: FILE holds either the
record itself ("v=DKIM1; k=rsa; p=...") or the zone snippet that
opendkim-genkey writes (its quoted strings are joined).

Every DKIM-Signature of every MESSAGE is verified with python3-dkim and,
with --opendkim, also with OpenDKIM's own verifier (opendkim -t, one
copy of the message per signature, keys from a TestDNSData file);
--no-python leaves python3-dkim out (it fails every message with two
From headers, signed or not, so only OpenDKIM can tell whether a
signature covers an added From). One line per signature and verifier
is printed:

    MESSAGE: sig 1 d=example.com s=rsa a=rsa-sha256 python: pass

--require-h HEADER makes a signature fail unless HEADER is in its h=.
Exit status: 0 when every message has at least one signature and all
verify (with --expect-fail: when every message has at least one
signature that does not verify), 1 otherwise, 2 on usage errors, 77
when a verifier is not installed (the automake "skipped" status).

Run it with /usr/bin/python3: that interpreter has the dkim module.
"""

import os
import re
import subprocess
import sys
import tempfile

try:
    import dkim
except ImportError:
    print("dkim_verify.py: python3-dkim is not installed", file=sys.stderr)
    sys.exit(77)

OPENDKIM = "/usr/sbin/opendkim"


def read_txt(path):
    text = open(path, encoding="ascii").read()
    quoted = re.findall(r'"([^"]*)"', text)
    record = "".join(quoted) if quoted else text
    return " ".join(record.split())


def split_message(raw):
    """Returns (list of raw header fields, body), headers with their CRLFs."""
    sep = raw.find(b"\r\n\r\n")
    if sep < 0:
        head = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
        body = b""
    else:
        head, body = raw[:sep + 2], raw[sep + 4:]
    fields = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields, body


def tags(field):
    value = field.split(b":", 1)[1]
    value = re.sub(rb"\s+", b"", value)
    out = {}
    for part in value.split(b";"):
        if b"=" in part:
            k, v = part.split(b"=", 1)
            out[k.decode()] = v.decode(errors="replace")
    return out


def is_sig(field):
    return field.split(b":", 1)[0].strip().lower() == b"dkim-signature"


def opendkim_verify(fields, body, index, records, workdir):
    """Verifies signature number index alone with opendkim -t."""
    kept = []
    n = 0
    for f in fields:
        if is_sig(f):
            if n == index:
                kept.append(f)
            n += 1
        else:
            kept.append(f)
    msg = os.path.join(workdir, "msg%d.eml" % index)
    with open(msg, "wb") as fp:
        fp.write(b"".join(kept) + b"\r\n" + body)
    dns = os.path.join(workdir, "testdns")
    with open(dns, "w", encoding="ascii") as fp:
        for name, rec in records.items():
            fp.write("%s %s\n" % (name, rec))
    conf = os.path.join(workdir, "verify.conf")
    with open(conf, "w", encoding="ascii") as fp:
        fp.write("Mode v\nSyslog no\nTestDNSData file:%s\n" % dns)
    run = subprocess.run([OPENDKIM, "-x", conf, "-t", msg], capture_output=True,
                         text=True, timeout=60)
    out = (run.stdout + run.stderr).strip()
    ok = run.returncode == 0 and re.search(r"verification \(.*\) succeeded", out) is not None
    return ok, out


def main(argv):
    records = {}
    use_opendkim = False
    use_python = True
    expect_fail = False
    required = []
    messages = []
    args = iter(argv)
    for a in args:
        if a == "--txt":
            spec = next(args, None)
            if spec is None or "=" not in spec:
                print("dkim_verify.py: --txt NAME=FILE", file=sys.stderr)
                return 2
            name, path = spec.split("=", 1)
            try:
                records[name.lower().rstrip(".")] = read_txt(path)
            except OSError as e:
                print("dkim_verify.py: %s" % e, file=sys.stderr)
                return 2
        elif a == "--opendkim":
            use_opendkim = True
        elif a == "--no-python":
            use_python = False
        elif a == "--expect-fail":
            expect_fail = True
        elif a == "--require-h":
            h = next(args, None)
            if h is None:
                print("dkim_verify.py: --require-h HEADER", file=sys.stderr)
                return 2
            required.append(h.lower())
        elif a.startswith("-"):
            print(__doc__, file=sys.stderr)
            return 2
        else:
            messages.append(a)
    if not messages or not (use_python or use_opendkim):
        print(__doc__, file=sys.stderr)
        return 2
    if use_opendkim and not os.access(OPENDKIM, os.X_OK):
        print("dkim_verify.py: %s is not installed" % OPENDKIM, file=sys.stderr)
        return 77

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        rec = records.get(key.lower().rstrip("."))
        return rec.encode() if rec is not None else None

    all_ok = True
    with tempfile.TemporaryDirectory() as workdir:
        for path in messages:
            try:
                raw = open(path, "rb").read()
            except OSError as e:
                print("%s: %s" % (path, e))
                all_ok = False
                continue
            if b"\r\n" not in raw:
                # a file with Unix line ends: the message on the wire had CRLF
                raw = raw.replace(b"\n", b"\r\n")
            fields, body = split_message(raw)
            sigs = [f for f in fields if is_sig(f)]
            if not sigs:
                print("%s: no DKIM-Signature" % path)
                all_ok = False
                continue
            failed = 0
            for i, field in enumerate(sigs):
                t = tags(field)
                label = "%s: sig %d d=%s s=%s a=%s" % (path, i + 1, t.get("d"), t.get("s"),
                                                       t.get("a"))
                hlist = [h.lower() for h in t.get("h", "").split(":")]
                missing = [h for h in required if h not in hlist]
                ok = True
                if missing:
                    print("%s h=: missing %s" % (label, ",".join(missing)))
                    ok = False
                if use_python:
                    try:
                        good = dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc)
                        why = ""
                    except dkim.DKIMException as e:
                        good, why = False, " (%s)" % e
                    print("%s python: %s%s" % (label, "pass" if good else "fail", why))
                    ok = ok and good
                if use_opendkim:
                    good, out = opendkim_verify(fields, body, i, records, workdir)
                    print("%s opendkim: %s (%s)" % (label, "pass" if good else "fail", out))
                    ok = ok and good
                if not ok:
                    failed += 1
            if expect_fail:
                all_ok = all_ok and failed > 0
            else:
                all_ok = all_ok and failed == 0
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
