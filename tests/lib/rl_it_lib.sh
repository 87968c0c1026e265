# shellcheck shell=bash
#
# NAME
#	rl_it_lib.sh - helpers of the rate-limit integration tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/rl_it_lib.sh"
#
#	rl_smtp NAME [smtp_driver.py options...]
#	rl_count NAME STAGE-ERE CODE; rl_replies NAME STAGE-ERE
#	rl_sink_rcpts TAG; rl_delivered TAG EXPECTED [TIMEOUT]
#	rl_queue_settled; rl_held_count [SENDER]
#	rl_ctl ARGS...; rl_used ACCOUNT KIND RATE [CONF]; rl_used_json KIND RATE
#	rl_milter2_start CONF SOCKET; rl_milter2_stop
# DESCRIPTION
#	rl_smtp runs tests/lib/smtp_driver.py (h_smtp) against the private
#	Postfix ($H_SMTP_PORT unless --port is given), saying EHLO
#	rl-client.example, with Message-IDs <TAG.S.M@rl-it.test> (TAG "rl"
#	unless --tag is given); its reply lines ("S M STAGE CODE TEXT", and
#	"S M ms MS ..." per message) go to $H_TMP/rl-NAME.out, its
#	complaints to $H_TMP/rl-NAME.err. rl_count and rl_replies read the
#	.out: the number of replies of a stage (rcpt[0-9]+, mail, data, ...)
#	with that code, and "COUNT CODE TEXT" per distinct reply.
#
#	rl_sink_rcpts counts the recipients TAG.* in the envelopes the sink
#	"main" stored: one message the sink got for three recipients counts
#	three. rl_delivered waits until that count reaches EXPECTED and the
#	Postfix queue holds nothing but held mail (so that nothing more can
#	come), then prints the count.
#
#	rl_used prints the "used" tokens of one bucket of ACCOUNT (KIND
#	messages or recipients, RATE as written in the policy) from
#	"bulkmilterctl --json usage", rounded to two decimals; 0.00 when the
#	bucket is not in use (full).
#
#	rl_milter2_start runs a second bulkmilter (own config, own socket,
#	log $H_TMP/milter2.log); the EXIT trap stops it (by PID) before the
#	harness's own clean-up runs.

RL_MILTER2_PID=

rl_smtp() {
	local name=$1
	shift
	RL_OUT=$H_TMP/rl-$name.out
	h_smtp --helo rl-client.example --domain rl-it.test --tag rl "$@" \
		>"$RL_OUT" 2>"$H_TMP/rl-$name.err"
}

rl_count() {
	awk -v st="^($2)\$" -v code="$3" '$3 ~ st && $4 == code {n++} END {print n + 0}' \
		"$H_TMP/rl-$1.out"
}

rl_replies() {
	awk -v st="^($2)\$" '$3 ~ st {$1 = $2 = $3 = ""; sub(/^ +/, ""); print}' "$H_TMP/rl-$1.out" |
		sort | uniq -c | sed 's/^ *//'
}

rl_sink_rcpts() {
	cat "$H_TMP"/sink-main/*.env 2>/dev/null | grep -c "^rcpt_to: <$1\\."
}

# Messages in the queue that are not on hold.
rl__unsettled() {
	h_postqueue_json | grep -v '"queue_name": *"hold"' | grep -c '"queue_id"'
}

rl_queue_settled() {
	[ "$(rl__unsettled)" = 0 ]
}

rl__delivered_enough() {
	[ "$(rl_sink_rcpts "$1")" -ge "$2" ] && rl_queue_settled
}

rl_delivered() {
	h__wait_for "${3:-30}" rl__delivered_enough "$1" "$2" >/dev/null
	h__wait_for 10 rl_queue_settled
	rl_sink_rcpts "$1"
}

# rl_held_count [SENDER]: messages in the hold queue (from SENDER).
rl_held_count() {
	h_postqueue_json | grep '"queue_name": *"hold"' | grep -cF -- "\"sender\": \"${1:-}"
}

rl_ctl() {
	"$BM_BUILDDIR/milter/bulkmilterctl" "$@"
}

rl_used() {
	local conf=${4:-$H_TMP/bulkmilter.conf}
	rl_ctl -c "$conf" --json usage "$1" 2>"$H_TMP/rl-ctl.err" | rl_used_json "$2" "$3"
}

# rl_used_json KIND RATE < JSON: the same, from saved usage --json output.
rl_used_json() {
	/usr/bin/python3 -c '
import json, sys
kind, rate = sys.argv[1], sys.argv[2]
used = 0.0
for b in json.load(sys.stdin)["buckets"]:
    if b["kind"] == kind and b["rate"] == rate:
        used = b["used"]
print("%.2f" % used)' "$1" "$2"
}

rl_milter2_start() {
	local sock=${2#unix:}
	rm -f "$sock"
	echo "--- rl_milter2_start $(date +%T.%N)" >>"$H_TMP/milter2.log"
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		"$BM_BUILDDIR/milter/bulkmilter" -f -c "$1" 2>>"$H_TMP/milter2.log" </dev/null &
	RL_MILTER2_PID=$!
	h__wait_for 20 test -S "$sock" ||
		h_fatal "second bulkmilter did not open $sock: $(tail -n 5 "$H_TMP/milter2.log")"
}

rl_milter2_stop() {
	[ -n "$RL_MILTER2_PID" ] || return 0
	h__stop "$RL_MILTER2_PID" 15
	RL_MILTER2_PID=
}

# Chain the harness's EXIT trap. Both milters get SIGTERM at once (each
# takes a few seconds to stop); first the harness's crash check for the
# first one, and the same for the second.
rl__exit() {
	local rc=$?
	if [ -n "$RL_MILTER2_PID" ]; then
		[ "$H_DETACHED" = 1 ] && exit "$rc"
		h__check_crash
		if ! h__alive "$RL_MILTER2_PID"; then
			wait "$RL_MILTER2_PID" 2>/dev/null
			h__result 1 "second bulkmilter is still running at the end (it exited with status $?)"
			RL_MILTER2_PID=
		fi
		[ -n "$H_MILTER_PID" ] && kill -TERM "$H_MILTER_PID" 2>/dev/null
		[ -n "$RL_MILTER2_PID" ] && kill -TERM "$RL_MILTER2_PID" 2>/dev/null
		h_milter_stop
		rl_milter2_stop
	fi
	(exit "$rc")
	h__exit
}
trap rl__exit EXIT
