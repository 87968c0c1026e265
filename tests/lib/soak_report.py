#!/usr/bin/python3
"""
NAME
    soak_report.py - check scripts/soak's ledger against what was
    delivered and queued, and print the soak's table

SYNOPSIS
    soak_report.py --ledger FILE --sink DIR --queue FILE --facts FILE
                   [--samples FILE] [--problems FILE] [--verify-max N]
                   [--txt SELECTOR._domainkey.DOMAIN=FILE]...

DESCRIPTION
    --ledger is soak_client.py's ledger, --sink the directory of sink.py
    (NNNNNN.eml + NNNNNN.env), --queue what "postqueue -j" printed once
    the queue had drained, --facts the "name value" lines scripts/soak
    wrote (faults injected, milter starts, crashes, reloads...),
    --samples its /proc samples of the milter (TSV: epoch pid rss_kb
    hwm_kb fds threads helpers helpers_rss_kb).

    For every message of the ledger, by its X-Soak-Id:
      - final 250: each recipient that got 250 at RCPT delivered exactly
        once, the others never; or the whole message in the hold queue;
      - any other outcome (4xx, 5xx, dropped mid-DATA, connection lost
        before the final dot): never delivered; "unknown" (the
        connection failed between the final dot and the reply) may be
        delivered once;
      - each delivered copy: the header fields sent, in order and byte
        for byte (minus the ones the milter adds or must remove), and the
        body (its SHA-256); no forged X-Bulk-Class or Authentication-
        Results of ours kept; the bulk tag present exactly when the class
        makes the message bulk;
      - signatures: where the ledger says which signatures (d=, s=) a
        message must carry, each copy carries exactly those and each
        verifies (tests/lib/dkim_verify.py, python3-dkim; all copies, or
        an evenly spread --verify-max of them); no other copy carries
        any.
    Then: no sink file without a ledger id, nothing in the queue but
    held messages, and every held message one the policy holds (kind
    "hold").

    Prints the table (faults, messages, checks, the milter) and writes
    the first 50 problems of each kind to --problems. Exit status 1 when
    any check failed or the facts say the milter crashed, logged a
    sanitizer report, left an SPF helper behind or did not answer a
    reload; else 0.
"""

import argparse
import collections
import hashlib
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ADDED = {"received", "dkim-signature", "authentication-results", "x-bulk-class",
         "x-bulk-unchecked", "x-bulk-over-limit", "x-bulk-spf", "x-bulk-noncompliant",
         "x-bulk-unauthorized", "feedback-id"}
FAULT_KINDS = [
    ("redis-kill", "Redis SIGKILLed, restarted after a pause"),
    ("redis-freeze", "Redis SIGSTOPped, SIGCONT after a pause"),
    ("dns-stop", "DNS server stopped (SIGTERM), restarted after a pause"),
    ("dns-freeze", "DNS server SIGSTOPped (queries time out), SIGCONT"),
    ("spf-kill", "SPF helpers SIGKILLed (found among the milter's descendants)"),
    ("hup", "bulkmilter SIGHUPed (1-4 in a row)"),
    ("hup-broken", "broken policy, SIGHUP (refused), good one back, SIGHUP"),
    ("milter-kill", "bulkmilter SIGKILLed, restarted after a pause"),
    ("client-drop", "client closes mid-DATA (3 messages, half with RST)"),
]


def fields(block):
    """Header block (bytes, CRLF) -> list of raw fields with folding."""
    out = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b"\r\n" + line
        else:
            out.append(line)
    return out


def fname(field):
    return field.split(b":", 1)[0].strip().lower().decode("ascii", "replace")


def fvalue(field):
    return field.split(b":", 1)[1].strip() if b":" in field else b""


class Problems:
    def __init__(self):
        self.count = collections.Counter()
        self.samples = collections.defaultdict(list)

    def add(self, kind, text, n=1):
        self.count[kind] += n
        if len(self.samples[kind]) < 50:
            self.samples[kind].append(text)


def read_facts(path):
    facts = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition(" ")
                if k:
                    facts[k] = v
    except OSError:
        pass
    return facts


def fint(facts, key):
    try:
        return int(facts.get(key, "0") or 0)
    except ValueError:
        return 0


def read_ledger(path):
    recs, summary = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                continue	# a line cut short: the client was killed
            if "summary" in o:
                summary = o["summary"]
            else:
                recs.append(o)
    return recs, summary


def read_sink(directory):
    """id -> list of (path, [rcpts], header bytes, body bytes); strays."""
    by_id = collections.defaultdict(list)
    strays = []
    names = sorted(n for n in os.listdir(directory) if n.endswith(".eml"))
    for n in names:
        path = os.path.join(directory, n)
        with open(path, "rb") as f:
            raw = f.read()
        rcpts = []
        try:
            with open(path[:-4] + ".env", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("rcpt_to: "):
                        rcpts.append(line[9:].strip().strip("<>").lower())
        except OSError:
            pass
        sep = raw.find(b"\r\n\r\n")
        head, body = (raw[:sep + 2], raw[sep + 4:]) if sep >= 0 else (raw, b"")
        sid = None
        for fld in fields(head):
            if fname(fld) == "x-soak-id":
                sid = fvalue(fld).decode("ascii", "replace")
                break
        if sid is None:
            strays.append(path)
        else:
            by_id[sid].append((path, rcpts, head, body))
    return by_id, strays, len(names)


def read_queue(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def check_copy(rec, path, head, body, probs, stats):
    sent = fields(rec["hdr"].encode("utf-8"))
    got = fields(head)
    drop = set(ADDED)
    if not any(fname(f) == "precedence" for f in sent):
        drop.add("precedence")
    a = [f for f in sent if fname(f) not in drop]
    b = [f for f in got if fname(f) not in drop]
    if a != b:
        missing = [f for f in a if f not in b][:2]
        extra = [f for f in b if f not in a][:2]
        probs.add("altered", "%s %s: headers differ: missing %r, extra %r"
                  % (rec["id"], path, missing, extra))
    elif hashlib.sha256(body).hexdigest() != rec["body"]:
        probs.add("altered", "%s %s: body differs (%d bytes)" % (rec["id"], path, len(body)))
    tags = [fvalue(f) for f in got if fname(f) == "x-bulk-class"]
    ars = [fvalue(f) for f in got if fname(f) == "authentication-results"]
    if b"forged-by-client" in tags or any(b"forged.example" in v for v in ars):
        probs.add("forged", "%s %s: a forged X-Bulk-Class or A-R is still there" % (rec["id"], path))
    if rec.get("bulk") is not None and bool(tags) != rec["bulk"]:
        probs.add("bulk", "%s %s: kind %s, %d recipient(s): bulk tag %s, expected %s"
                  % (rec["id"], path, rec["kind"], len(rec["rcpts"]),
                     tags or "none", "one" if rec["bulk"] else "none"))
    if any(fname(f) == "x-bulk-unchecked" for f in got):
        stats["unchecked"] += 1
    if any(fname(f) == "x-bulk-over-limit" for f in got):
        stats["over_tag"] += 1
    if rec["kind"] == "inbound":
        for v in ars:
            m = re.search(rb"spf=(\w+)", v)
            if m:
                stats["spf_" + m.group(1).decode()] += 1
    sigs = [f for f in got if fname(f) == "dkim-signature"]
    if not rec["sign"] and sigs:
        probs.add("signed_wrongly", "%s %s: kind %s From %s carries %d DKIM-Signature(s)"
                  % (rec["id"], path, rec["kind"], rec["from"], len(sigs)))
    return bool(rec["sign"])


def verify(paths, txt_args, probs, expected):
    """dkim_verify.py over paths in batches; counts unsigned and bad."""
    checked = 0
    line_re = re.compile(r"^(\S+): (?:sig \d+ d=(\S+) s=(\S+) a=\S+ python: (pass|fail)(.*)|no DKIM-Signature)$")
    batch = 400
    procs = []

    def collect(proc, files):
        nonlocal checked
        out, _ = proc.communicate()
        seen = collections.defaultdict(list)
        for line in out.splitlines():
            m = line_re.match(line)
            if not m:
                continue
            if m.group(2):
                seen[m.group(1)].append(("d=%s,s=%s" % (m.group(2), m.group(3)), m.group(4), m.group(5)))
            else:
                seen[m.group(1)] = []
        for p in files:
            checked += 1
            rid, want = expected[p]
            got = seen.get(p)
            if got is None:
                probs.add("verify_error", "%s %s: dkim_verify.py said nothing" % (rid, p))
                continue
            names = sorted(g[0] for g in got)
            if any(w not in names for w in want):
                probs.add("unsigned", "%s %s: signatures %s, expected %s" % (rid, p, names or "none", want))
            elif sorted(want) != names:
                probs.add("wrong_sigs", "%s %s: signatures %s, expected %s" % (rid, p, names, want))
            for name, verdict, why in got:
                if verdict != "pass":
                    probs.add("bad_sig", "%s %s: %s: %s%s" % (rid, p, name, verdict, why))

    for i in range(0, len(paths), batch):
        files = paths[i:i + batch]
        proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "dkim_verify.py")] + txt_args + files,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append((proc, files))
        if len(procs) >= 2:
            collect(*procs.pop(0))
    for proc, files in procs:
        collect(proc, files)
    return checked


def norm_reason(code, text):
    text = re.sub(r"[\w.+-]+@[\w.-]+", "ADDR", text or "")
    text = re.sub(r"\d+(\.\d+)+", lambda m: m.group(0) if m.start() == 0 else "N", text)
    text = re.sub(r"queued as \w+", "queued as QID", text)
    return "%s %s" % (code, text[:70])


def kb(v):
    return "%.1f MB" % (v / 1024.0)


def samples_report(path, out):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                p = line.split()
                if len(p) >= 8 and p[0][0].isdigit():
                    rows.append([float(p[0])] + [int(x) for x in p[1:8]])
    except OSError:
        pass
    if not rows:
        out.append("  (no samples)")
        return
    inst = collections.OrderedDict()
    for r in rows:
        inst.setdefault(r[1], []).append(r)
    t0 = rows[0][0]
    out.append("  %-7s %9s %9s  %-28s  %-14s %-9s %s" % ("pid", "from (s)", "for (s)", "RSS first/peak/last",
                                                       "fds f/p/l", "threads", "SPF helpers (n, RSS)"))
    shown = list(inst.items())
    if len(shown) > 24:
        shown = shown[:12] + [(None, None)] + shown[-12:]
    for pid, rs in shown:
        if pid is None:
            out.append("  ...")
            continue
        rss = [r[2] for r in rs]
        fds = [r[4] for r in rs]
        thr = [r[5] for r in rs]
        out.append("  %-7d %9.0f %9.0f  %-28s  %-14s %-9s %d, %s" % (
            pid, rs[0][0] - t0, rs[-1][0] - rs[0][0],
            "%s/%s/%s" % (kb(rss[0]), kb(max(rss)), kb(rss[-1])),
            "%d/%d/%d" % (fds[0], max(fds), fds[-1]), "%d/%d" % (thr[0], max(thr)),
            rs[-1][6], kb(rs[-1][7])))
    longest = max(inst.values(), key=lambda rs: rs[-1][0] - rs[0][0])
    n = len(longest)
    if n >= 6:
        third = max(1, n // 3)
        early = sorted(r[2] for r in longest[:third])[third // 2]
        late = sorted(r[2] for r in longest[-third:])[third // 2]
        early_f = sorted(r[4] for r in longest[:third])[third // 2]
        late_f = sorted(r[4] for r in longest[-third:])[third // 2]
        out.append("  longest-lived instance (pid %d, %.0f s): median RSS first third %s, last third %s;"
                   " median fds %d, %d" % (longest[0][1], longest[-1][0] - longest[0][0],
                                           kb(early), kb(late), early_f, late_f))
    peak = max(r[3] for r in rows)
    out.append("  peak RSS (VmHWM) over all instances: %s; peak fds %d" % (kb(peak), max(r[4] for r in rows)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--queue", required=True)
    ap.add_argument("--facts", required=True)
    ap.add_argument("--samples")
    ap.add_argument("--problems")
    ap.add_argument("--verify-max", type=int, default=0)
    ap.add_argument("--txt", action="append", default=[])
    args = ap.parse_args()

    facts = read_facts(args.facts)
    recs, summary = read_ledger(args.ledger)
    by_id, strays, sink_files = read_sink(args.sink)
    queue = read_queue(args.queue)
    probs = Problems()
    stats = collections.Counter()
    reasons = collections.Counter()
    ledger_ids = {}
    by_qid = {}
    for r in recs:
        if r["id"] in ledger_ids:
            probs.add("ledger", "%s: twice in the ledger" % r["id"])
        ledger_ids[r["id"]] = r
        if r.get("qid"):
            by_qid[r["qid"]] = r

    held_ids = set()
    stuck = []
    for q in queue:
        qid = q.get("queue_id")
        r = by_qid.get(qid)
        if q.get("queue_name") == "hold":
            if r is not None and r["kind"] == "hold":
                held_ids.add(r["id"])
            else:
                probs.add("unexpected_hold", "%s (%s): held, not a message the policy holds"
                          % (qid, r["id"] if r else "not in the ledger"))
                if r is not None:
                    held_ids.add(r["id"])
        else:
            stuck.append(q)
            probs.add("stuck", "%s in queue %s (%s): %s" % (
                qid, q.get("queue_name"), r["id"] if r else "not in the ledger",
                "; ".join(x.get("delay_reason", "") for x in q.get("recipients", []))[:200]))

    to_verify, expected = [], {}
    rcpts_accepted = rcpts_delivered = 0
    for r in recs:
        out = r["outcome"]
        stats[out] += 1
        copies = by_id.pop(r["id"], [])
        got = collections.Counter()
        for _, rc, _, _ in copies:
            got.update(rc)
        if out == "accepted":
            acc = [x.lower() for x, c in zip(r["rcpts"], r["rcpt"]) if c < 300]
            if len(acc) < len(r["rcpts"]):
                stats["partial"] += 1
            if r["id"] not in held_ids:
                rcpts_accepted += len(acc)
            else:
                stats["held"] += 1
                if copies:
                    probs.add("ghost", "%s: held, yet delivered %d time(s)" % (r["id"], len(copies)))
                continue
            lost = [x for x in acc if got[x] == 0]
            dup = [x for x in acc if got[x] > 1]
            extra = [x for x in got if x not in acc]
            if lost:
                probs.add("lost", "%s (%s, qid %s): %d of %d accepted recipient(s) not delivered, e.g. %s"
                          % (r["id"], r["kind"], r.get("qid"), len(lost), len(acc), lost[0]), len(lost))
                stats["lost_msgs"] += 1
            if dup:
                probs.add("dup", "%s (qid %s): %s delivered %d times" % (r["id"], r.get("qid"), dup[0], got[dup[0]]),
                          len(dup))
                stats["dup_msgs"] += 1
            if extra:
                probs.add("ghost", "%s: delivered to %s, which got %s at RCPT" % (r["id"], extra[0], "no 250"))
            rcpts_delivered += sum(min(got[x], 1) for x in acc)
        else:
            code = r.get("data") or (max(r["rcpt"]) if r["rcpt"] else None) or r.get("mail")
            if out in ("deferred", "rejected"):
                reasons[norm_reason(code, r.get("text"))] += 1
            if out == "unknown":
                dup = [x for x in got if got[x] > 1]
                if dup:
                    probs.add("dup", "%s (outcome unknown): %s delivered %d times" % (r["id"], dup[0], got[dup[0]]))
                stats["unknown_delivered" if copies else "unknown_not_delivered"] += 1
            elif copies:
                probs.add("ghost", "%s: outcome %s (%s), yet delivered %d time(s)"
                          % (r["id"], out, (r.get("text") or "")[:80], len(copies)))
        for path, _, head, body in copies:
            if check_copy(r, path, head, body, probs, stats):
                to_verify.append(path)
                expected[path] = (r["id"], r["sign"])
    for sid, copies in by_id.items():
        for c in copies:
            probs.add("stray", "%s: X-Soak-Id %s is not in the ledger" % (c[0], sid))
    for s in strays:
        probs.add("stray", "%s: no X-Soak-Id" % s)

    sample = to_verify
    if args.verify_max and len(to_verify) > args.verify_max:
        step = len(to_verify) / float(args.verify_max)
        sample = [to_verify[int(i * step)] for i in range(args.verify_max)]
    txt_args = []
    for t in args.txt:
        txt_args += ["--txt", t]
    verified = verify(sample, txt_args, probs, expected) if sample else 0

    # ---------------------------------------------------------------- the table
    o = []
    secs = summary.get("seconds", 0)
    o.append("bulkmilter soak: %s s of load, seed %s, %s build (%s)" % (
        secs, facts.get("seed", "?"), facts.get("build_kind", "?"), facts.get("builddir", "?")))
    o.append("machine: %s cores, load average %s at the start, %s at the end" % (
        facts.get("cores", "?"), facts.get("load_start", "?"), facts.get("load_end", "?")))
    o.append("")
    o.append("Faults injected")
    total_faults = 0
    for k, what in FAULT_KINDS:
        n = fint(facts, "fault." + k)
        total_faults += n
        o.append("  %-13s %5d  %s" % (k, n, what))
    o.append("  %-13s %5d" % ("total", total_faults))
    o.append("")
    tried = len(recs)
    o.append("Messages (one ledger line each)")
    o.append("  tried          %7d  in %d sessions, %.0f/min achieved (asked %s/min)" % (
        tried, summary.get("sessions", 0), summary.get("rate_per_min", 0), facts.get("rate", "?")))
    setup = summary.get("setup_failures") or {}
    if setup:
        o.append("  sessions that ended before MAIL FROM: %d (%s)" % (
            sum(setup.values()), "; ".join("%d x %s" % (n, w) for w, n in
                                           sorted(setup.items(), key=lambda x: -x[1])[:3])))
    o.append("  accepted       %7d  250 at end of DATA (%d with some recipients deferred)" % (
        stats["accepted"], stats["partial"]))
    o.append("    of which held %6d  in the hold queue, as the policy asked (over-limit hold)" % stats["held"])
    o.append("  deferred       %7d  4xx" % stats["deferred"])
    o.append("  rejected       %7d  5xx" % stats["rejected"])
    o.append("  dropped        %7d  client closed mid-DATA on purpose" % stats["dropped"])
    o.append("  conn. errors   %7d  connection lost before the final dot" % stats["error"])
    o.append("  unknown        %7d  connection lost after the final dot (%d delivered, %d not)" % (
        stats["unknown"], stats["unknown_delivered"], stats["unknown_not_delivered"]))
    o.append("  recipients     %7d  accepted and not held; %d of them delivered" % (
        rcpts_accepted, rcpts_delivered))
    o.append("  sink files     %7d  (%d verified DKIM copies of %d signed-expected)" % (
        sink_files, verified, len(to_verify)))
    o.append("  X-Bulk-Unchecked %5d  accepted unchecked (Redis down or frozen: OnStoreFailure accept)" % stats["unchecked"])
    o.append("  X-Bulk-Over-Limit %4d  (over-limit tag)" % stats["over_tag"])
    spf = ", ".join("%s %d" % (k[4:], v) for k, v in sorted(stats.items()) if k.startswith("spf_"))
    o.append("  inbound SPF    %s" % (spf or "-"))
    if reasons:
        o.append("  deferred/rejected replies (most common):")
        for text, n in reasons.most_common(8):
            o.append("    %6d  %s" % (n, text))
    o.append("")
    checks = [
        ("lost", "lost (250, accepted recipient not delivered, not held)"),
        ("dup", "duplicated (a recipient delivered more than once)"),
        ("ghost", "delivered though refused, dropped or held"),
        ("altered", "headers or body altered"),
        ("unsigned", "unsigned but should be signed"),
        ("bad_sig", "bad signatures (python3-dkim)"),
        ("wrong_sigs", "signatures other than the SigningTable's"),
        ("verify_error", "copies the verifier could not read"),
        ("signed_wrongly", "signed but should not be (inbound, unsigned.example)"),
        ("forged", "forged X-Bulk-Class / Authentication-Results kept"),
        ("bulk", "bulk tag wrong (missing or unexpected)"),
        ("stray", "sink messages not in the ledger"),
        ("stuck", "left in the queue (not held)"),
        ("unexpected_hold", "held without the policy asking"),
        ("ledger", "ledger errors"),
    ]
    o.append("Checks                                                   count  verdict")
    failed = False
    for key, what in checks:
        n = probs.count[key]
        failed = failed or n > 0
        o.append("  %-54s %6d  %s" % (what, n, "ok" if n == 0 else "FAIL"))
    milter = [
        ("crashes", "milter deaths not caused by our SIGKILL"),
        ("sanitizer", "sanitizer reports (ASan, UBSan, LSan at exit) in its log"),
        ("orphans", "its processes left behind by a killed milter"),
        ("helper_crashes", "SPF helpers that ended other than by our SIGKILL"),
        ("hup_unanswered", "SIGHUPs with no reloaded/refused line in 20 s"),
        ("broken_accepted", "broken policies the milter accepted"),
        ("exit_status", "milter exit status on SIGTERM once idle (0 expected)"),
    ]
    for key, what in milter:
        n = fint(facts, key)
        failed = failed or n > 0
        o.append("  %-54s %6d  %s" % (what, n, "ok" if n == 0 else "FAIL"))
    if fint(facts, "drain_timeout"):
        o.append("  the queue did not drain within %s s (see 'left in the queue')" % facts.get("drain_limit", "?"))
    o.append("")
    o.append("Milter")
    o.append("  starts %d: restarts %d (%d after an injected SIGKILL, %d after a crash)" % (
        fint(facts, "milter_starts"), max(fint(facts, "milter_starts") - 1, 0),
        fint(facts, "milter_kills"), fint(facts, "crashes")))
    o.append("  reloads: %d reloaded, %d refused (broken policy)" % (
        fint(facts, "reloads_ok"), fint(facts, "reloads_refused")))
    o.append("  SPF helpers: %d SIGKILLed by us, %d of them noticed dead by the milter (the others"
             % (fint(facts, "helpers_killed"), fint(facts, "helpers_noticed")))
    o.append("    went with a reload or a killed milter first); %d stopped by the milter itself for"
             % fint(facts, "helpers_overran"))
    o.append("    overrunning its deadline (DNS down or frozen: temperror)")
    o.append("  queue drained in %s s after the load stopped" % facts.get("drain_seconds", "?"))
    o.append("  /proc samples every %s s, per milter instance:" % facts.get("sample_every", "?"))
    if args.samples:
        samples_report(args.samples, o)
    if facts.get("build_kind") == "sanitizer":
        o.append("  (sanitizer build: ASan's quarantine holds freed memory, so RSS grows by design;"
                 " judge RSS on the plain build)")
    o.append("")
    o.append("Result: %s" % ("FAIL" if failed else "PASS"))
    print("\n".join(o))

    if args.problems:
        with open(args.problems, "w", encoding="utf-8") as f:
            for key in sorted(probs.samples):
                f.write("== %s (%d)\n" % (key, probs.count[key]))
                for s in probs.samples[key]:
                    f.write("  %s\n" % s)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
