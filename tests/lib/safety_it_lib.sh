# shellcheck shell=bash
#
# NAME
#	safety_it_lib.sh - helpers of the account-safety integration tests
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/rl_it_lib.sh"
#	. "$(dirname "$0")/../lib/safety_it_lib.sh"
#
#	sf_webhook_start; sf_webhook_mode ok|500|hang; sf_webhook_stop
#	sf_events [FIELD=VALUE...]; sf_wait_events COUNT [FIELD=VALUE...]
#	sf_second_milter
#	sf_ctl ARGS...
# DESCRIPTION
#	sf_webhook_start runs tests/lib/webhook_receiver.py on $SF_WEBHOOK_PORT
#	(h_port 17); SF_NOTIFY is the NotifyURL line for h_conf. Received
#	events are JSON lines in $SF_EVENTS; the receiver's mode (ok, 500,
#	hang) is read per request from $SF_MODE. The EXIT trap stops it by
#	PID before the harness's clean-up.
#
#	sf_events prints how many received events have every FIELD=VALUE
#	(top-level JSON fields compared as strings); sf_wait_events waits
#	up to 10 s for that count to reach COUNT and prints it.
#
#	sf_second_milter starts a second bulkmilter (config
#	$H_TMP/bulkmilter2.conf: the first one's with its own socket) behind a
#	second smtpd listener on $SF_PORT_B, like t_ratelimit_exact.sh. Call
#	it after h_milter_start and before h_postfix_start.
#
#	sf_ctl runs bulkmilterctl on the first milter's config.

SF_WEBHOOK_PID=
SF_WEBHOOK_PORT=$(h_port 17)
SF_EVENTS=$H_TMP/events.jsonl
SF_MODE=$H_TMP/webhook.mode
SF_NOTIFY="NotifyURL http://127.0.0.1:$SF_WEBHOOK_PORT/hook"
SF_PORT_B=$(h_port 15)

sf_webhook_start() {
	: >"$SF_EVENTS"
	echo ok >"$SF_MODE"
	/usr/bin/python3 "$H_LIB/webhook_receiver.py" "$SF_WEBHOOK_PORT" "$SF_EVENTS" "$SF_MODE" \
		>"$H_TMP/webhook.out" 2>&1 </dev/null &
	SF_WEBHOOK_PID=$!
	h__wait_for 10 grep -q ready "$H_TMP/webhook.out" ||
		h_fatal "webhook receiver did not start: $(cat "$H_TMP/webhook.out")"
}

sf_webhook_mode() {
	echo "$1" >"$SF_MODE"
}

sf_webhook_stop() {
	[ -n "$SF_WEBHOOK_PID" ] || return 0
	kill -TERM "$SF_WEBHOOK_PID" 2>/dev/null
	wait "$SF_WEBHOOK_PID" 2>/dev/null
	SF_WEBHOOK_PID=
}

sf_events() {
	/usr/bin/python3 -c '
import json, sys
want = [a.split("=", 1) for a in sys.argv[2:]]
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if all(str(e.get(k)) == v for k, v in want):
        n += 1
print(n)' "$SF_EVENTS" "$@"
}

sf__enough() {
	local want=$1
	shift
	[ "$(sf_events "$@")" -ge "$want" ]
}

sf_wait_events() {
	local want=$1
	shift
	h__wait_for 10 sf__enough "$want" "$@" >/dev/null
	sf_events "$@"
}

sf_second_milter() {
	local sock=unix:$H_TMP/milter2.sock
	sed -e "s|^Socket .*|Socket $sock|" -e "s|^PidFile .*|PidFile $H_TMP/milter2.pid|" \
		"$H_TMP/bulkmilter.conf" >"$H_TMP/bulkmilter2.conf"
	rl_milter2_start "$H_TMP/bulkmilter2.conf" "$sock"
	h_postfix_master "127.0.0.1:$SF_PORT_B inet n - n - - smtpd -o smtpd_milters=$sock"
}

sf_ctl() {
	"$BM_BUILDDIR/milter/bulkmilterctl" -c "$H_TMP/bulkmilter.conf" "$@"
}

# Chain the EXIT trap of rl_it_lib.sh: the receiver goes first.
sf__exit() {
	local rc=$?
	sf_webhook_stop
	(exit "$rc")
	rl__exit
}
trap sf__exit EXIT
