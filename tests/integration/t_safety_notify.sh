#!/bin/bash
#
# notify thresholds (issue 18, "Must show" 4): notify 50% 100% with
# recipients 10/1h:
#   - one account, recipient by recipient: exactly one threshold event
#     at the 5th recipient (used 5, limit 10, 50%) and one at the 10th
#     (100%), none at the others, none for the refused 11th and 12th;
#   - two milters racing (10 sessions through two smtpd, 30 recipients
#     against the 10): exactly 10 accepted, exactly one 50% and one 100%
#     event for that account, none more in the window;
#   - bulkmilterctl reset empties the flags with the buckets: the 5th
#     recipient after it sends its 50% event again;
#   - a calendar window (messages 4/day): one event at the 2nd message,
#     "resets" at the next midnight (UTC), none at the 3rd.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/safety_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class watched {
    account     sasl sender
    recipients  10/1h
    notify      50% 100%
}
class daily {
    account     sasl sender
    messages    4/day
    notify      50%
}
assign sender  serial@example.com  watched
assign sender  daily@example.com   daily
assign sender  race@example.com    watched
EOF_POLICY
sf_webhook_start
h_conf 'InternalHosts 198.51.100.0/24' "$SF_NOTIFY"
h_milter_start
sf_second_milter
h_postfix_start
h__wait_for 10 h__port_busy "$SF_PORT_B" || h_fatal "second smtpd does not listen on $SF_PORT_B"
XC=(--xclient 198.51.100.7)

thresholds() {
	echo "$(sf_events event=threshold "account=$1" threshold=50%) $(sf_events event=threshold "account=$1" threshold=100%)"
}

# ---- one account, recipient by recipient ------------------------------
rl_smtp s4 "${XC[@]}" --rcpts 4 --tag s4 --from serial@example.com
sleep 0.5
h_assert_eq "0 0" "$(thresholds serial@example.com)" "serial: 4 recipients, no event"
rl_smtp s5 "${XC[@]}" --rcpts 1 --tag s5 --from serial@example.com
h_assert_eq 1 "$(sf_wait_events 1 event=threshold account=serial@example.com threshold=50% used=5 limit=10 rate=10/1h kind=recipients class=watched)" \
	"serial: the 5th recipient sends one 50% event (used 5, limit 10, rate 10/1h)"
rl_smtp s9 "${XC[@]}" --rcpts 4 --tag s9 --from serial@example.com
sleep 0.5
h_assert_eq "1 0" "$(thresholds serial@example.com)" "serial: 6th to 9th recipient, no new event"
rl_smtp s10 "${XC[@]}" --rcpts 1 --tag s10 --from serial@example.com
h_assert_eq 1 "$(sf_wait_events 1 event=threshold account=serial@example.com threshold=100% used=10 limit=10)" \
	"serial: the 10th recipient sends one 100% event"
rl_smtp s12 "${XC[@]}" --rcpts 2 --tag s12 --from serial@example.com
h_assert_eq 2 "$(rl_count s12 'rcpt[0-9]+' 451)" "serial: the 11th and 12th are refused (451)"
sleep 0.5
h_assert_eq "1 1" "$(thresholds serial@example.com)" "serial: exactly one event per threshold, none more"
h_ok "serial: every threshold event has resets and time in RFC 3339" /usr/bin/python3 -c '
import json, re, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if "threshold" in l]
ok = ev and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e[k]) for e in ev for k in ("time", "resets"))
sys.exit(0 if ok else 1)' "$SF_EVENTS"

# ---- reset empties the buckets and their flags ------------------------------
sf_ctl reset serial@example.com >/dev/null
rl_smtp s5again "${XC[@]}" --rcpts 5 --tag s5again --from serial@example.com
h_assert_eq 2 "$(sf_wait_events 2 event=threshold account=serial@example.com threshold=50%)" \
	"reset: after bulkmilterctl reset, the 5th recipient sends a 50% event again"

# ---- two milters racing ---------------------------------------------------
at=$(( $(date +%s) + 2 ))
rl_smtp raceA "${XC[@]}" --sessions 5 --rcpts 3 --tag raceA --from race@example.com --start-at "$at" &
pa=$!
rl_smtp raceB --port "$SF_PORT_B" "${XC[@]}" --sessions 5 --rcpts 3 --tag raceB --from race@example.com \
	--start-at "$at" &
pb=$!
wait "$pa" "$pb"
h_assert_eq 10 "$(( $(rl_count raceA 'rcpt[0-9]+' 250) + $(rl_count raceB 'rcpt[0-9]+' 250) ))" \
	"race: exactly 10 of 30 recipients accepted through the two milters"
h_assert_eq 1 "$(sf_wait_events 1 event=threshold account=race@example.com threshold=100%)" "race: a 100% event came"
sleep 1
h_assert_eq "1 1" "$(thresholds race@example.com)" "race: exactly one 50% and one 100% event"

# ---- a calendar window -------------------------------------------------------
rl_smtp d2 "${XC[@]}" --messages 3 --tag d2 --from daily@example.com
h_assert_eq 3 "$(rl_count d2 data 250)" "window: 3 messages accepted"
midnight=$(date -u -d 'tomorrow 00:00' +%Y-%m-%dT%H:%M:%SZ)
h_assert_eq 1 "$(sf_wait_events 1 event=threshold account=daily@example.com threshold=50% used=2 limit=4 rate=4/day kind=messages "resets=$midnight")" \
	"window: one 50% event at the 2nd message of 4/day, resets at the next midnight"
sleep 0.5
h_assert_eq 1 "$(sf_events account=daily@example.com)" "window: none at the 3rd"
h_assert_eq 6 "$(sf_events event=threshold)" "no other threshold event at all"
