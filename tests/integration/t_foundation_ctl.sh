#!/bin/bash
#
# bulkmilterctl: check (as bulkmilter -n, text and JSON), explain (class,
# matched line, account, rates, bulk or not and why, the checks that
# apply; text and JSON; --local as the daemon treats sendmail(1) mail)
# and stats (the running daemon's counters through
# MetricsListen, which also serves Prometheus text); --json after the
# command (and not taken as an option's value), extra arguments exit 2;
# usage of an account that sent nothing lists its class's buckets (used
# 0); reset --json says its scope, and --scope domain of an account
# without a domain exits 1; with --json an error is {"error":...} on
# stdout (stats without MetricsListen, reset, a usage error).

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
h_assert_eq 'outbound standard messages 200/1h 0.000 200.000 0.000
standard recipients 1000/1h 0.000 1000.000 0.000
standard recipients 10000/1d 0.000 10000.000 0.000' \
	"$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["direction"], "\n".join(
		"%s %s %s %.3f %.3f %.3f" % (b["class"], b["kind"], b["rate"], b["used"], b["left"], b["full_in_seconds"])
		for b in d["buckets"]))' "$H_TMP/ctl.out")" \
	"usage --json ACCOUNT that sent nothing: the buckets of its class, used 0, left = count"
ctl usage alice@example.com
h_assert_eq 0 "$?" "usage ACCOUNT that sent nothing: exits 0"
h_assert_eq 'standard messages account 200/1h 0.00 200.00 0.0s
standard recipients account 1000/1h 0.00 1000.00 0.0s
standard recipients account 10000/1d 0.00 10000.00 0.0s' \
	"$(awk 'NR > 1 {print $1, $2, $3, $4, $5, $6, $7}' "$H_TMP/ctl.out")" \
	"usage ACCOUNT that sent nothing: its class's buckets as a table, used 0"
ctl usage --inbound 198.51.100.9
h_assert_eq '0 198.51.100.9 (inbound): no buckets (class inbound has no rates)' "$? $(cat "$H_TMP/ctl.out")" \
	"usage --inbound of an account whose class has no rates says so"

# ---- reset: the scope reset, and a domain scope needs a domain
"$CTL" -c "$H_TMP/bulkmilter.conf" --json reset --scope class alice@example.com >"$H_TMP/ctl.out"
h_assert_eq '0 {"account":"alice@example.com","direction":"outbound","scope":"class","reset":true}' \
	"$? $(cat "$H_TMP/ctl.out")" "reset --json --scope class: says the scope"
ctl reset --scope domain alice
h_assert_eq '1 reset: alice has no domain' "$? $(cat "$H_TMP/ctl.out")" \
	"reset --scope domain of an account without a domain: exit 1, no claim of success"

# ---- with --json, an error is a JSON object on stdout, exit status unchanged
grep -v '^MetricsListen' "$H_TMP/bulkmilter.conf" >"$H_TMP/nometrics.conf"
"$CTL" -c "$H_TMP/nometrics.conf" --json stats >"$H_TMP/ctl.out" 2>"$H_TMP/ctl.err"
h_assert_eq '1 {"error":"stats: set MetricsListen in the config to read the daemon'"'"'s counters"}' \
	"$? $(cat "$H_TMP/ctl.out")" "stats --json without MetricsListen: exit 1, the error as JSON on stdout"
h_assert_grep "$H_TMP/ctl.err" '^stats: set MetricsListen' "stats --json without MetricsListen: the error on stderr too"
"$CTL" -c "$H_TMP/bulkmilter.conf" --json reset --scope domain alice >"$H_TMP/ctl.out" 2>/dev/null
h_assert_eq '1 {"error":"reset: alice has no domain"}' "$? $(cat "$H_TMP/ctl.out")" \
	"reset --json --scope domain without a domain: exit 1, the error as JSON"
"$CTL" -c "$H_TMP/bulkmilter.conf" --json explain --ip not-an-ip >"$H_TMP/ctl.out" 2>/dev/null
h_assert_eq '2 {"error":"explain: not an IP address: not-an-ip"}' "$? $(cat "$H_TMP/ctl.out")" \
	"explain --json with a usage error: exit 2, the error as JSON"
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
