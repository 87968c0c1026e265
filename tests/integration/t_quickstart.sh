#!/bin/bash
#
# scripts/quickstart, end to end (with the build in BM_BUILDDIR and the
# packages already installed), in under 2 minutes, shows the four jobs:
# - DKIM: message 1 is signed, and the quickstart says on screen that its
#   signature verified with the key from its private DNS; the delivered
#   copy verifies here too, with python3-dkim and OpenDKIM, against the
#   record opendkim-genkey wrote;
# - bulk: message 2 (the newsletter) is at the second sink, "bulk", and
#   only there, tagged X-Bulk-Class: newsletter, delivered by the shipped
#   bulk-pool1 transport (its HELO news-out.example.com);
# - rate limits: message 3 had 2 of its 4 recipients refused with 451;
# - SPF: message 4 arrives with Authentication-Results spf=pass;
# - the last lines say what bulkmilter decided for each message, and
#   nothing the quickstart started is left running.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

qdir=
# shellcheck disable=SC2154
trap 'rc=$?; [ -n "$qdir" ] && rm -rf "$qdir"; (exit $rc); h__exit' EXIT

out=$H_TMP/quickstart.out
start=$(date +%s)
BM_KEEP=1 timeout 170 "$H_SRCDIR/scripts/quickstart" >"$out" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
h_assert_eq 0 "$rc" "scripts/quickstart exits 0" || h_diag "$(tail -n 30 "$out")"
h_ok "it takes under 2 minutes (${secs}s)" test "$secs" -lt 120
qdir=$(sed -n 's/^# kept \(\/tmp\/bm-quickstart\.[A-Za-z0-9]*\)$/\1/p' "$out" | tail -n 1)
[ -d "$qdir" ] || { h_diag "$(tail -n 30 "$out")"; h_fatal "no kept quickstart dir in its output"; }

# message N's file in SINK, found by its Message-Id
msgfile() {
	grep -lF "<quickstart-$2@" "$qdir/sink-$1"/*.eml 2>/dev/null | head -n 1
}

# ---- 1. DKIM
h_assert_grep "$out" '^    DKIM: key quickstart\._domainkey\.example\.com from the DNS at 127\.0\.0\.1:[0-9]+: signature verified$' \
	"on screen: message 1's signature verified with the key from the private DNS"
m1=$(msgfile main 1)
h_ok "message 1 is at the sink main" test -n "$m1"
h_ok "message 1 verifies with python3-dkim and OpenDKIM" \
	/usr/bin/python3 "$H_LIB/dkim_verify.py" --opendkim \
	--txt "quickstart._domainkey.example.com=$qdir/keys/quickstart.txt" "$m1"

# ---- 2. bulk
m2=$(msgfile bulk 2)
h_ok "message 2 (newsletter) is at the second sink, bulk" test -n "$m2"
h_assert_eq 1 "$(ls "$qdir"/sink-bulk/*.eml 2>/dev/null | wc -l)" "the bulk sink holds that one message"
h_assert_eq "" "$(msgfile main 2)" "message 2 is not at the sink main"
h_assert_grep "$m2" '^X-Bulk-Class: newsletter' "message 2 is tagged X-Bulk-Class: newsletter"
h_assert_grep "${m2%.eml}.env" '^helo: news-out\.example\.com$' \
	"message 2 came by the bulk-pool1 transport (HELO news-out.example.com)"

# ---- 3. rate limits
m3=$(msgfile main 3)
h_ok "message 3 is at the sink main" test -n "$m3"
h_assert_eq "r1@example.net r2@example.net" \
	"$(sed -n 's/^rcpt_to: <\(.*\)>$/\1/p' "${m3%.eml}.env" | paste -sd' ' -)" \
	"message 3 was delivered to its first 2 recipients only"

# ---- 4. SPF
m4=$(msgfile main 4)
h_ok "message 4 is at the sink main" test -n "$m4"
h_ok "message 4 has Authentication-Results spf=pass" \
	bash -c "tr -d '\r' <'$m4' | grep -A1 '^Authentication-Results: bm-test.localdomain;' | grep -q 'spf=pass smtp.mailfrom=example.org'"

# ---- the summary: one line per message
summary=$H_TMP/summary
sed -n '/^== What bulkmilter decided$/,/^== /p' "$out" | sed '1d;$d' | grep -v '^$' >"$summary"
h_assert_eq 4 "$(wc -l <"$summary")" "summary: one line per message"
h_assert_grep "$summary" '^1 DKIM +[0-9A-F]+: direction=outbound class=standard decision=accept rcpts=1 bulk=no signed=d=example\.com,s=quickstart,a=rsa-sha256 spf=- -> sink main ' \
	"summary 1: outbound, accepted, signed d=example.com s=quickstart, at the sink main"
h_assert_grep "$summary" '^2 bulk +[0-9A-F]+: direction=outbound class=newsletter decision=accept rcpts=1 bulk=yes signed=d=example\.com,[^ ]* spf=- -> sink bulk \(helo news-out\.example\.com\)$' \
	"summary 2: newsletter, bulk, signed, at the sink bulk by bulk-pool1"
h_assert_grep "$summary" '^3 rate limits +[0-9A-F]+: direction=outbound class=quickstart-demo decision=accept rcpts=2 .* -> sink main \(helo [^)]*\), 2 recipients got 451$' \
	"summary 3: 2 recipients accepted, 2 got 451"
h_assert_grep "$summary" '^4 SPF +[0-9A-F]+: direction=inbound class=inbound decision=accept rcpts=1 bulk=no signed=no spf=pass -> sink main ' \
	"summary 4: inbound, spf=pass, at the sink main"
# leftover: a process (not this shell) whose command line names $qdir
leftover() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		[ "$f" = "/proc/$BASHPID/cmdline" ] && continue
		tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$qdir/" && return 0
	done
	return 1
}
h_ok "nothing the quickstart started is left running" eval '! leftover'
