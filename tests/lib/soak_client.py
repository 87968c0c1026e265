#!/usr/bin/python3
"""
NAME
    soak_client.py - the load of scripts/soak: parallel SMTP sessions that
    write a ledger of every message they try

SYNOPSIS
    soak_client.py --port PORT --ledger FILE --seconds N [--rate N]
                   [--threads N] [--seed N] [--max-messages N]
                   [--password PASS]
    soak_client.py --policy
    soak_client.py --logins

DESCRIPTION
    Runs --threads workers against the Postfix smtpd on 127.0.0.1:PORT
    for --seconds, starting messages at --rate a minute in all (paced
    from one shared clock; when every worker is busy the rate falls
    short, and the ledger shows by how much). Each worker opens a
    session, sends one to four messages in it and says QUIT. What a
    session is, is drawn (from --seed and the worker's number) among
    these kinds:

        sasl      AUTH PLAIN as userN@example.com, From at example.com
                  (RSA), example.org (Ed25519 and RSA) or unsigned.example
        flood     AUTH as flood@example.com, over its recipients rate
                  (some recipients get 451 4.7.1)
        hold      AUTH as holdme@example.com, over-limit hold
        strict    AUTH as strict@example.com, over-limit reject (550)
        tagger    AUTH as tagger@example.com, over-limit tag
        internal  no AUTH from 127.0.0.1 (InternalHosts): news@example.org
                  (bulk always) or app@example.com
        inbound   XCLIENT ADDR= an outside address, MAIL FROM at a domain
                  whose SPF passes (ip4 or mx) for most of the addresses
                  used with it, fails (550 5.7.23), softfails, or has no
                  record; a From at example.com now and then (never to
                  be signed: inbound)

    The classes those kinds assume are the policy --policy prints (the
    one scripts/soak loads); --logins prints the SASL logins to create,
    one a line.

    Messages: 1 to 60 recipients (distinct), bodies from a few hundred
    bytes to ~600 KB, with lines that start with a dot, 8-bit lines,
    trailing blank lines, sometimes List-Unsubscribe, a Precedence, a
    forged X-Bulk-Class or (inbound) a forged Authentication-Results of
    our authserv-id, which the milter must remove. Every message carries
    X-Soak-Id (unique), a Message-ID made from it and X-Soak-Body (the
    SHA-256 of the body as sent).

    SIGUSR1 asks for three mid-DATA drops: the next three messages to
    reach DATA send part of their content (or none) and close the
    connection, half of them with a TCP reset.

    The ledger has one JSON object a line per message tried, written
    when its outcome is known:
        id, kind, t (start, epoch s), login, ip, sender, from, rcpts,
        mail (reply code), rcpt (codes, one per recipient), data (final
        code or null), text (last reply), qid, outcome, sign (DKIM
        signatures the message must carry, "d=D,s=S"), bulk (whether it
        must be tagged bulk; null: not known here), forged (a forged tag
        or A-R was sent), hdr (the header block as sent), body (SHA-256)
    outcome is one of: accepted (final 250), deferred (a 4xx ended it),
    rejected (a 5xx ended it), dropped (we closed mid-DATA on purpose),
    error (the connection failed before the final dot: not queued),
    unknown (the connection failed after the final dot, before the
    reply: it may or may not have been queued).

    The last line of the ledger is {"summary": ...}: messages tried,
    sessions, seconds, and the rate achieved. Exits 0 unless it could
    not run at all. It stops by itself: no session starts after
    --seconds, and every socket has a 180 s timeout.

    The SMTP client is tests/lib/smtp_driver.py's Session (open_session,
    dot_stuff, queue_id); the ledger's reply texts join the lines of a
    multi-line reply with " | ".
"""

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtp_driver import SmtpError, dot_stuff, open_session, queue_id  # noqa: E402

PASSWORD = "soak-pw"
AUTHSERV = "soak.bm.test"
TIMEOUT = 180

# kind, weight
KINDS = [("sasl", 41), ("flood", 3), ("hold", 2), ("strict", 2), ("tagger", 2),
         ("internal", 18), ("inbound", 32)]
SASL_USERS = ["user%d@example.com" % i for i in range(1, 9)]
SPECIAL = {"flood": "flood@example.com", "hold": "holdme@example.com",
           "strict": "strict@example.com", "tagger": "tagger@example.com"}
# The signatures a From domain gets (KeyTable/SigningTable of scripts/soak).
SIGN = {"example.com": ["d=example.com,s=rsa"],
        "example.org": ["d=example.org,s=ed", "d=example.org,s=rsa"]}
# Sender domain, weight, the addresses its SPF lets send (see scripts/soak).
INBOUND_DOMAINS = [("pass.example", 35, ["192.0.2.10", "192.0.2.77", "192.0.2.200"]),
                   ("mx.example", 15, ["198.51.100.7"]),
                   ("soft.example", 15, []), ("none.example", 25, []),
                   ("fail.example", 10, [])]
OTHER_IPS = ["198.51.100.9", "203.0.113.5", "203.0.113.66"]

POLICY = """\
# The policy of scripts/soak (tests/lib/soak_client.py --policy): the
# kinds of soak_client.py rely on these classes.
class standard {
    account     sasl sender
    messages    100000/1h
    recipients  1000000/1h
    bulk        recipients >= 10
    bulk        header List-Unsubscribe
    bulk        precedence
}
class tight {
    account     sasl sender
    messages    100/1m
    recipients  60/1m
    over-limit  tempfail
}
class holdy {
    account     sasl sender
    messages    5/1m
    over-limit  hold
}
class strict {
    account     sasl sender
    messages    5/1m
    over-limit  reject
}
class tagged {
    account     sasl sender
    messages    5/1m
    over-limit  tag
}
class news {
    account     sender
    messages    100000/1h
    bulk        always
    bulk-require dkim-aligned spf-aligned list-unsubscribe
    bulk-noncompliant tag
}
class inbound {
    account     ip
    messages    100000/1h
    spf-fail    reject
}
assign sasl     flood@example.com    tight
assign sasl     holdme@example.com   holdy
assign sasl     strict@example.com   strict
assign sasl     tagger@example.com   tagged
assign sender   news@example.org     news
assign outbound standard
assign inbound  inbound
"""
# Classes whose bulk tag is known from the message alone.
STANDARD_KINDS = ("sasl",)

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua quota bucket relay "
         "queue milter postfix signature header envelope").split()
UTF8_LINE = "Grüße aus Zürich, ça va très bien — 日本語のテキスト, ελληνικά."


class Pacer:
    """Hands out start times at a fixed rate from one clock."""

    def __init__(self, rate_per_min, seconds, max_messages):
        self.interval = 60.0 / rate_per_min
        self.t0 = time.monotonic()
        self.end = self.t0 + seconds
        self.max = max_messages
        self.n = 0
        self.lock = threading.Lock()

    def take(self):
        """Waits for the next slot; False when the run is over."""
        with self.lock:
            if self.n >= self.max:
                return False
            slot = self.t0 + self.n * self.interval
            now = time.monotonic()
            if slot < now - 2.0:	# behind: do not make up for it in a burst
                slot = now
                self.t0 = now - self.n * self.interval
            if slot >= self.end:
                return False
            self.n += 1
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return True

    def over(self):
        return time.monotonic() >= self.end or self.n >= self.max


class Ledger:
    def __init__(self, path):
        self.f = open(path, "w", encoding="utf-8")
        self.lock = threading.Lock()
        self.counts = {}
        self.sessions = 0
        self.setup_failures = {}

    def setup_failed(self, why):
        """A session that ended before any message (AUTH refused...)."""
        with self.lock:
            self.setup_failures[why] = self.setup_failures.get(why, 0) + 1

    def write(self, rec):
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()
            self.counts[rec["outcome"]] = self.counts.get(rec["outcome"], 0) + 1

    def close(self, summary):
        with self.lock:
            self.f.write(json.dumps({"summary": summary}) + "\n")
            self.f.close()


class Drops:
    """Mid-DATA drops asked for by SIGUSR1."""

    def __init__(self):
        self.pending = 0
        self.done = 0
        self.lock = threading.Lock()

    def ask(self, n):
        with self.lock:
            self.pending += n

    def take(self):
        with self.lock:
            if self.pending > 0:
                self.pending -= 1
                self.done += 1
                return True
            return False


def body_text(rng, size):
    """CRLF lines of about size bytes, some dot-led or 8-bit."""
    out = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.03:
            line = "." + " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 8)))
        elif r < 0.05:
            line = UTF8_LINE
        elif r < 0.07:
            line = ""
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 13)))
        out.append(line)
        n += len(line.encode()) + 2
    if rng.random() < 0.1:
        out += [""] * rng.randint(1, 3)
    text = "\r\n".join(out)
    return (text + "\r\n").encode() if out else b""


def pick_size(rng):
    r = rng.random()
    if r < 0.02:
        return 0
    if r < 0.55:
        return rng.randint(200, 3000)
    if r < 0.85:
        return rng.randint(3000, 20000)
    if r < 0.97:
        return rng.randint(20000, 100000)
    return rng.randint(100000, 600000)


def pick_rcpts(rng, kind, domains):
    r = rng.random()
    if r < 0.55:
        n = 1
    elif r < 0.85:
        n = rng.randint(2, 4)
    elif r < 0.97:
        n = rng.randint(5, 15)
    else:
        n = rng.randint(30, 60)
    picked = set()
    while len(picked) < n:
        picked.add("r%d@%s" % (rng.randint(1, 5000), rng.choice(domains)))
    return sorted(picked)


class Message:
    pass


def make_message(rng, kind, sid, login, domain=None):
    m = Message()
    m.domain = domain
    m.id = sid
    m.kind = kind
    m.login = login
    m.ip = None
    forged = []
    if kind == "inbound":
        dom = m.domain
        m.sender = "sender%d@%s" % (rng.randint(1, 50), dom)
        m.from_addr = m.sender if rng.random() < 0.8 else "ceo@example.com"
        m.rcpts = pick_rcpts(rng, kind, ["dest.example", "mx2.dest.example"])
    elif kind == "internal":
        m.sender = rng.choice(["news@example.org", "app@example.com"])
        m.from_addr = m.sender
        m.rcpts = pick_rcpts(rng, kind, ["d%d.example" % i for i in range(1, 6)])
    else:
        m.sender = login
        if kind == "sasl":
            r = rng.random()
            local = login.split("@")[0]
            m.from_addr = (login if r < 0.6 else
                           "%s@example.org" % local if r < 0.9 else
                           "%s@unsigned.example" % local)
        else:
            m.from_addr = login
        m.rcpts = pick_rcpts(rng, kind, ["d%d.example" % i for i in range(1, 6)])
    body = body_text(rng, pick_size(rng))
    hdr = []
    hdr.append("From: Soak Sender <%s>" % m.from_addr)
    hdr.append("To: %s" % (m.rcpts[0] if len(m.rcpts) == 1 else "undisclosed-recipients:;"))
    hdr.append("Subject: soak %s %s" % (kind, sid))
    hdr.append("Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()))
    hdr.append("Message-ID: <%s@soak.bm.test>" % sid)
    hdr.append("X-Soak-Id: %s" % sid)
    hdr.append("X-Soak-Body: %s" % hashlib.sha256(body).hexdigest())
    listy = kind == "internal" and m.sender.startswith("news@") or rng.random() < 0.1
    if listy:
        hdr.append("List-Unsubscribe: <https://example.org/u/%s>,\r\n <mailto:u@example.org?subject=%s>"
                   % (sid, sid))
        hdr.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    precedence = rng.random() < 0.03
    if precedence:
        hdr.append("Precedence: list")
    if rng.random() < 0.05:
        hdr.append("X-Bulk-Class: forged-by-client")
        forged.append("tag")
    if kind == "inbound" and rng.random() < 0.1:
        hdr.append("Authentication-Results: %s; spf=pass smtp.mailfrom=forged.example" % AUTHSERV)
        forged.append("ar")
    hdr.append("MIME-Version: 1.0")
    hdr.append("Content-Type: text/plain; charset=utf-8")
    hdr.append("Content-Transfer-Encoding: 8bit")
    m.header = "\r\n".join(hdr) + "\r\n"
    m.body = body
    m.forged = forged
    m.listy = listy
    m.precedence = precedence
    outbound = kind != "inbound"
    dom = m.from_addr.split("@")[1]
    m.sign = SIGN.get(dom, []) if outbound else []
    return m


def record(m, t, mail, rcpt, data, text, qid, outcome):
    accepted = [r for r, c in zip(m.rcpts, rcpt) if 200 <= c < 300] if data and data < 300 else []
    bulk = None
    if m.kind in STANDARD_KINDS or (m.kind == "internal" and m.sender.startswith("app@")):
        bulk = len(accepted) >= 10 or m.listy or m.precedence
    elif m.kind == "internal":
        bulk = True
    elif m.kind in ("inbound", "flood", "hold", "strict", "tagger"):
        bulk = False
    return {"id": m.id, "kind": m.kind, "t": round(t, 3), "login": m.login, "ip": m.ip,
            "sender": m.sender, "from": m.from_addr, "rcpts": m.rcpts, "mail": mail,
            "rcpt": rcpt, "data": data, "text": text[:200], "qid": qid, "outcome": outcome,
            "sign": m.sign, "bulk": bulk, "forged": m.forged, "hdr": m.header,
            "body": hashlib.sha256(m.body).hexdigest(), "size": len(m.header) + 2 + len(m.body)}


def outcome_of(code):
    return "accepted" if code < 300 else "deferred" if code < 500 else "rejected"


class Worker(threading.Thread):
    def __init__(self, n, args, pacer, ledger, drops, seed):
        super().__init__(daemon=True)
        self.n = n
        self.args = args
        self.pacer = pacer
        self.ledger = ledger
        self.drops = drops
        self.rng = random.Random("%s-%d" % (seed, n))
        self.seq = 0
        self.seed = seed

    def run(self):
        names = [k for k, _ in KINDS]
        weights = [w for _, w in KINDS]
        while not self.pacer.over():
            kind = self.rng.choices(names, weights)[0]
            try:
                self.session(kind)
            except Exception as e:	# never let one session end the worker
                print("soak_client: worker %d: %s: %s" % (self.n, type(e).__name__, e),
                      file=sys.stderr)
                time.sleep(0.5)

    def next_id(self):
        self.seq += 1
        return "s%s-w%d-%d" % (self.seed, self.n, self.seq)

    def session(self, kind):
        rng = self.rng
        count = rng.choice([1, 1, 1, 2, 2, 3, 4])
        login = None
        if kind == "sasl":
            login = rng.choice(SASL_USERS)
        elif kind in SPECIAL:
            login = SPECIAL[kind]
        ip = domain = None
        if kind == "inbound":
            domain, _, ips = rng.choices(INBOUND_DOMAINS, [w for _, w, _ in INBOUND_DOMAINS])[0]
            ip = rng.choice(ips) if ips and rng.random() < 0.85 else rng.choice(OTHER_IPS)
        if not self.pacer.take():
            return
        with self.ledger.lock:
            self.ledger.sessions += 1
        try:
            conn = open_session(self.args.port, helo="soak-client.example", xclient=ip,
                                xclient_attrs={"NAME": "[UNAVAILABLE]"},
                                helo_after_xclient="mx.sender.example",
                                auth=(login, self.args.password) if login else None,
                                timeout=TIMEOUT)
        except (OSError, SmtpError) as e:
            print("soak_client: session setup (%s): %s" % (kind, e), file=sys.stderr)
            self.ledger.setup_failed(str(e))
            return
        conn.joiner = " | "
        try:
            for i in range(count):
                if i > 0 and not self.pacer.take():
                    break
                m = make_message(rng, kind, self.next_id(), login, domain)
                m.ip = ip
                if not self.transaction(conn, m):
                    return		# the connection is gone
            try:
                conn.quit()
            except (OSError, SmtpError):
                pass
        finally:
            conn.close()

    def transaction(self, conn, m):
        """One message; False when the connection can no longer be used."""
        t = time.time()
        mail, rcpt, data, text = None, [], None, ""
        stage = "mail"
        written = False

        def write(mail, rcpt, data, text, qid, outcome):
            nonlocal written
            self.ledger.write(record(m, t, mail, rcpt, data, text, qid, outcome))
            written = True

        try:
            mail, text = conn.mail(m.sender)
            if mail >= 300:
                write(mail, [], None, text, None, outcome_of(mail))
                conn.rset()
                return True
            stage = "rcpt"
            for r in m.rcpts:
                code, text = conn.rcpt(r)
                rcpt.append(code)
            if not [c for c in rcpt if c < 300]:
                worst = "deferred" if any(400 <= c < 500 for c in rcpt) else "rejected"
                write(mail, rcpt, None, text, None, worst)
                conn.rset()
                return True
            stage = "data"
            code, text = conn.cmd("DATA")
            if code != 354:
                write(mail, rcpt, code, text, None, outcome_of(code))
                if code < 300:	# cannot happen; do not go on with a confused server
                    return False
                conn.rset()
                return True
            payload = dot_stuff(m.header.encode() + b"\r\n" + m.body)
            if self.drops.take():
                reset = self.rng.random() < 0.5
                cut = self.rng.randint(0, len(payload))
                conn.send(payload[:cut])
                time.sleep(0.05)
                conn.close(reset=reset)
                write(mail, rcpt, None, "dropped after %d of %d bytes%s"
                      % (cut, len(payload), " (RST)" if reset else ""), None, "dropped")
                return False
            conn.send(payload + b".\r\n")
            stage = "final"
            data, text = conn.reply()
            write(mail, rcpt, data, text, queue_id(data, text), outcome_of(data))
            return True
        except (OSError, SmtpError) as e:
            if not written:
                outcome = "unknown" if stage == "final" else "error"
                write(mail, rcpt, data, "%s: %s" % (stage, e), None, outcome)
            return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--ledger")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rate", type=float, default=2400)
    ap.add_argument("--threads", type=int, default=12)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--max-messages", type=int, default=10 ** 9)
    ap.add_argument("--password", default=PASSWORD)
    ap.add_argument("--policy", action="store_true")
    ap.add_argument("--logins", action="store_true")
    args = ap.parse_args()
    if args.policy:
        sys.stdout.write(POLICY)
        return 0
    if args.logins:
        print("\n".join(SASL_USERS + sorted(SPECIAL.values())))
        return 0
    if not (args.port and args.ledger and args.seconds):
        ap.error("--port, --ledger and --seconds are required")
    ledger = Ledger(args.ledger)
    drops = Drops()
    signal.signal(signal.SIGUSR1, lambda *_: drops.ask(3))
    pacer = Pacer(args.rate, args.seconds, args.max_messages)
    started = time.monotonic()
    workers = [Worker(i + 1, args, pacer, ledger, drops, args.seed) for i in range(args.threads)]
    for w in workers:
        w.start()
    for w in workers:
        while w.is_alive():
            w.join(0.5)		# wakes up for signals
    seconds = time.monotonic() - started
    tried = sum(ledger.counts.values())
    ledger.close({"tried": tried, "sessions": ledger.sessions, "seconds": round(seconds, 1),
                  "rate_per_min": round(tried * 60 / max(seconds, 1), 1),
                  "drops_asked_done": drops.done, "outcomes": ledger.counts,
                  "setup_failures": ledger.setup_failures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
