#!/bin/bash
#
# Events never delay mail (issue 18, "Must show" 5). Each message of the
# class "noisy" makes 64 threshold events (8 messages and 8 recipients
# rates of 1 token, 4 thresholds each):
#   - receiver answering: a burst of 17 messages (1088 events), timed;
#     every event arrives;
#   - receiver answering 500: mail goes on, the events are retried
#     (bulkmilter_events_failed_total grows) and arrive once it answers
#     200 again;
#   - receiver hanging (no answer; each POST times out after 2 s): the
#     same burst takes about as long as with the receiver answering; the
#     queue (1024) fills and the 64 events beyond it are dropped, counted
#     in bulkmilter_events_dropped_total and logged once; when the receiver
#     answers again the 1024 queued events arrive.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class noisy {
    account     sender
    messages    1/1h 1/2h 1/3h 1/4h 1/5h 1/6h 1/7h 1/8h
    recipients  1/1h 1/2h 1/3h 1/4h 1/5h 1/6h 1/7h 1/8h
    notify      25% 50% 75% 100%
}
assign sender  *@burst.example  noisy
EOF_POLICY
sf_webhook_start
MPORT=$(h_port 18)
h_conf 'InternalHosts 198.51.100.0/24' "$SF_NOTIFY" "MetricsListen 127.0.0.1:$MPORT"
h_milter_start
h_postfix_start
XC=(--xclient 198.51.100.7)

metric() {
	curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

# burst NAME: 17 messages, each from its own account NAME1..NAME17; prints ms
burst() {
	local start=$(date +%s%N) i
	for i in $(seq 1 17); do
		rl_smtp "$1$i" "${XC[@]}" --tag "$1$i" --from "$1$i@burst.example"
	done
	echo $(( ($(date +%s%N) - start) / 1000000 ))
}

accepted() {
	cat "$H_TMP"/rl-"$1"*.out | awk '$3 == "data" && $4 == 250' | wc -l
}

# ---- receiver answering --------------------------------------------------
ms_ok=$(burst ok)
h_assert_eq 17 "$(accepted ok)" "answering: 17 messages accepted"
h__wait_for 30 sf__enough 1088 event=threshold
h_assert_eq 1088 "$(sf_events event=threshold)" "answering: all 1088 events arrive"

# ---- receiver answering 500 ------------------------------------------------
failed0=$(metric bulkmilter_events_failed_total)
sf_webhook_mode 500
rl_smtp e500 "${XC[@]}" --tag e500 --from e500@burst.example
h_assert_eq 1 "$(accepted e500)" "500: the message is accepted"
failed_grew() {
	[ "$(metric bulkmilter_events_failed_total)" -gt "$failed0" ]
}
h__wait_for 10 failed_grew
h_ok "500: the POSTs failed and are retried (events_failed_total grew)" failed_grew
h_assert_eq 0 "$(sf_events account=e500@burst.example)" "500: nothing delivered yet"
h_assert_grep "$H_MILTER_LOG" 'events: POST to NotifyURL failed: HTTP status 500; retrying' \
	"500: the failure is logged"
sf_webhook_mode ok
h__wait_for 20 sf__enough 64 account=e500@burst.example
h_assert_eq 64 "$(sf_events account=e500@burst.example)" "500: all 64 arrive once it answers again"
h_assert_grep "$H_MILTER_LOG" 'events: NotifyURL answers again' "500: the recovery is logged"

# ---- receiver hanging -----------------------------------------------------
dropped0=$(metric bulkmilter_events_dropped_total)
sf_webhook_mode hang
ms_hang=$(burst hang)
h_assert_eq 17 "$(accepted hang)" "hanging: 17 messages accepted"
h_ok "hanging: the burst takes about as long as with the receiver answering ($ms_hang ms vs $ms_ok ms)" \
	test "$ms_hang" -le $(( ms_ok * 3 / 2 + 500 ))
h_assert_eq 64 "$(( $(metric bulkmilter_events_dropped_total) - dropped0 ))" \
	"hanging: the 64 events beyond the queue of 1024 are dropped and counted"
h_assert_grep "$H_MILTER_LOG" 'warning: events: queue full \(1024\), threshold event for hang[0-9]+@burst.example dropped' \
	"hanging: drops are logged"
h_assert_eq 1 "$(grep -c 'events: queue full' "$H_MILTER_LOG")" \
	"hanging: a run of drops is logged once, not once per event"
h_assert_eq 0 "$(sf_events account=hang1@burst.example)" "hanging: nothing delivered meanwhile"
sf_webhook_mode ok
h__wait_for 40 sf__enough 2176 event=threshold
h_assert_eq 1024 "$(( $(sf_events event=threshold) - 1088 - 64 ))" \
	"hanging: the 1024 queued events arrive once it answers again"
h_assert_eq 64 "$(sf_events account=hang1@burst.example)" "hanging: the first account's 64 all arrive"
h_assert_eq "events_dropped_total 64
events_sent_total 2176" "$(sf_ctl stats | awk '$1 == "events_dropped_total" || $1 == "events_sent_total" {print $1, $2}' | sort)" \
	"bulkmilterctl stats shows events dropped (64) and sent (2176)"
