#!/bin/bash
#
# bulkmilterctl: check (as bulkmilter -n, text and JSON), explain (class,
# matched line, account, rates, bulk or not and why, the checks that
# apply; text and JSON; --local as the daemon treats sendmail(1) mail)
# and stats (the running daemon's counters through
# MetricsListen, which also serves Prometheus text); --json after the
# command (and not taken as an option's value), extra arguments exit 2.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

CTL=$BM_BUILDDIR/milter/bulkmilterctl
ctl() { "$CTL" -c "$H_TMP/bulkmilter.conf" "$@" >"$H_TMP/ctl.out" 2>&1; }

h_redis_start
h_policy <<'EOF_POLICY'
class standard {
    account     sasl sender
    messages    200/1h
    recipients  1000/1h 10000/1d
    over-limit  reject "Plan quota reached"
    bulk        recipients >= 50
    bulk        header List-Unsubscribe
}
class newsletter {
    account     sasl
    bulk        always
    bulk-require dkim-aligned list-unsubscribe
    bulk-noncompliant hold
}
class inbound { spf-fail reject }
assign sasl     news@example.com   newsletter
assign outbound                    standard
assign inbound                     inbound
EOF_POLICY
metrics_port=$(h_port 17)
h_conf "MetricsListen 127.0.0.1:$metrics_port"

# ---- check
ctl check
h_assert_eq "0" "$?" "check: a valid set exits 0"
h_assert_grep "$H_TMP/ctl.out" '^config OK$' "check: prints config OK"
ctl --json check
h_assert_grep "$H_TMP/ctl.out" '^\{"ok":true\}$' "check --json: {\"ok\":true}"

cp "$H_TMP/bulkmilter.policy" "$H_TMP/good.policy"
printf 'class broken {\n  messages 10/1w\n' >>"$H_TMP/bulkmilter.policy"
ctl check
h_assert_eq "1" "$?" "check: an invalid set exits 1"
h_assert_grep "$H_TMP/ctl.out" "^$H_TMP/bulkmilter.policy:20: messages: bad rate 10/1w" "check: FILE:LINE of the bad rate"
h_assert_grep "$H_TMP/ctl.out" "^$H_TMP/bulkmilter.policy:19: class broken: missing '}'" "check: FILE:LINE of the open class"
ctl --json check
h_assert_grep "$H_TMP/ctl.out" '^\{"ok":false,"errors":\[".*bulkmilter.policy:20: messages: bad rate 10/1w' "check --json: errors listed"
cp "$H_TMP/good.policy" "$H_TMP/bulkmilter.policy"

# ---- explain
ctl explain --sasl alice@example.com --rcpts 60
h_assert_eq "0" "$?" "explain: exits 0"
h_assert_grep "$H_TMP/ctl.out" '^direction: outbound$' "explain sasl: outbound"
h_assert_grep "$H_TMP/ctl.out" '^class: standard \(line 17: assign outbound standard\)$' "explain sasl: class and the line that matched"
h_assert_grep "$H_TMP/ctl.out" '^account: alice@example.com$' "explain sasl: account"
h_assert_grep "$H_TMP/ctl.out" '^  recipients 10000/1d ' "explain sasl: every rate listed"
h_assert_grep "$H_TMP/ctl.out" '^over-limit: reject Plan quota reached$' "explain sasl: over-limit action and text"
h_assert_grep "$H_TMP/ctl.out" '^bulk: yes \(recipients 60 >= 50, with 60 recipients\)$' "explain --rcpts 60: bulk, and why"
ctl explain --sasl alice@example.com --rcpts 2
h_assert_grep "$H_TMP/ctl.out" '^bulk: no ' "explain --rcpts 2: not bulk"
h_assert_grep "$H_TMP/ctl.out" '^  bulk when: header List-Unsubscribe$' "explain: the bulk conditions that depend on the message"

ctl --json explain --sasl news@example.com
h_assert_grep "$H_TMP/ctl.out" '"class":"newsletter"' "explain --json: class"
h_assert_grep "$H_TMP/ctl.out" '"bulk":true,"bulk_reason":"always"' "explain --json: bulk, always"
h_assert_grep "$H_TMP/ctl.out" '"bulk_require":\["dkim-aligned","list-unsubscribe"\],"bulk_noncompliant":"hold"' \
	"explain --json: the compliance checks that apply, and the action"
/usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$H_TMP/ctl.out"
h_assert_eq "0" "$?" "explain --json: valid JSON"

ctl explain --ip 192.0.2.10 --sender bob@example.net
h_assert_grep "$H_TMP/ctl.out" '^direction: inbound$' "explain --ip outside: inbound"
h_assert_grep "$H_TMP/ctl.out" '^class: inbound ' "explain --ip outside: class inbound"
h_assert_grep "$H_TMP/ctl.out" '^spf-fail: reject$' "explain inbound: spf-fail action"
ctl explain --ip 127.0.0.1 --sender bob@example.net
h_assert_grep "$H_TMP/ctl.out" '^direction: outbound$' "explain --ip internal: outbound"
h_assert_grep "$H_TMP/ctl.out" '^account: bob@example.net$' "explain --ip internal: account from the sender"
ctl explain --local --sender www@example.com
h_assert_grep "$H_TMP/ctl.out" '^direction: outbound$' "explain --local: outbound"
h_assert_grep "$H_TMP/ctl.out" '^local submission: recipients are charged at end of message$' \
	"explain --local: recipients charged at end of message"
h_assert_grep "$H_TMP/ctl.out" '^over-limit: hold Plan quota reached \(local submission: reject becomes hold\)$' \
	"explain --local: over-limit reject becomes hold, as the daemon does"
ctl --json explain --local --sender www@example.com
h_assert_grep "$H_TMP/ctl.out" '^\{"direction":"outbound",.*"over_limit":"hold",.*,"local_submission":true[,}]' \
	"explain --local --json: outbound, over-limit hold, local submission"
ctl explain --ip not-an-ip
h_assert_eq "2" "$?" "explain --ip not-an-ip: usage error (exit 2)"

# ---- --json after the command, extra arguments
ctl check --json
h_assert_grep "$H_TMP/ctl.out" '^\{"ok":true\}$' "check --json (after the command): {\"ok\":true}"
ctl explain --sasl news@example.com --json
h_assert_grep "$H_TMP/ctl.out" '^\{"direction":"outbound",.*"class":"newsletter"' "explain ... --json: JSON"
ctl usage --json alice@example.com
h_assert_grep "$H_TMP/ctl.out" '^\{"account":"alice@example.com","direction":"outbound","buckets":\[\]\}$' \
	"usage --json ACCOUNT: JSON"
ctl suspend mallory@example.com --json --reason --json
h_assert_grep "$H_TMP/ctl.out" '^\{"account":"mallory@example.com","suspended":true,.*"reason":"--json"\}$' \
	"suspend ... --json --reason --json: JSON, and the reason is --json"
ctl release mallory@example.com --json
h_assert_grep "$H_TMP/ctl.out" '^\{"account":"mallory@example.com","released":true\}$' "release ... --json: JSON"
ctl check extra
h_assert_eq "2" "$?" "check with an argument: usage error (exit 2)"
ctl explain --sasl alice@example.com --rcpts -1
h_assert_eq "2" "$?" "explain --rcpts -1: usage error (exit 2), not 2^64-1 recipients"

# ---- stats, from the running daemon
h_milter_start
h_postfix_start
h_send --to a@example.net,b@example.net
h_wait_sink main 1
ctl stats
h_assert_grep "$H_TMP/ctl.out" '^messages_accepted_total +1$' "stats: one message accepted"
ctl --json stats
h_assert_grep "$H_TMP/ctl.out" '"messages_accepted_total":1' "stats --json: one message accepted"
/usr/bin/python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$H_TMP/ctl.out"
h_assert_eq "0" "$?" "stats --json: valid JSON"
curl_out=$(/usr/bin/python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
	"http://127.0.0.1:$metrics_port/metrics")
h_ok "MetricsListen serves Prometheus text" grep -q '^# TYPE bulkmilter_messages_accepted_total counter$' <<<"$curl_out"
h_ok "MetricsListen: the accepted counter is 1" grep -q '^bulkmilter_messages_accepted_total 1$' <<<"$curl_out"
