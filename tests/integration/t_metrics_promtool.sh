#!/bin/bash
#
# The metrics endpoint follows Prometheus conventions and the Grafana
# dashboard matches it:
# - "promtool check metrics" (Debian's prometheus package) finds nothing
#   to say about a live scrape of MetricsListen, taken after a message
#   went through (so the counters are not all 0); a scrape with a
#   convention broken (a counter without _total) is reported, so the
#   check is not vacuous.
# - every family has HELP and TYPE counter, and its name is
#   bulkmilter_..._total; deferrals are one family labelled by cause:
#   after 3 messages deferred for a rate (messages 1/1h),
#   bulkmilter_deferrals_total{cause="rate"} is 3 and the other causes 0,
#   and bulkmilterctl --json stats is still valid JSON;
# - deferrals by class: with two classes, standard deferring 1 message
#   and news 2, bulkmilter_class_deferrals_total is exactly
#   {class="standard"} 1, {class="news"} 2, {class="other"} 0, in the
#   order the classes first deferred, and its HELP and TYPE are written
#   once;
# - scripts/grafana/bulkmilter.json is valid JSON; each of its queries,
#   with Grafana's variables given values, parses as PromQL ("promtool
#   check rules" on them as recording rules), and names only metrics the
#   live endpoint serves. A served metric missing from the dashboard is
#   listed as a diagnostic, not a failure (metrics are added by other
#   work than the dashboard's).

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

command -v promtool >/dev/null || h_fatal "promtool missing (scripts/deps installs prometheus)"
dashboard=$H_SRCDIR/scripts/grafana/bulkmilter.json
port=$(h_port 17)
h_redis_start
h_conf "MetricsListen 127.0.0.1:$port"
h_policy 'class standard {' '    account sasl sender' '    messages 1/1h' '    over-limit tempfail' '}' \
	'class news {' '    account sasl sender' '    messages 1/1h' '    over-limit tempfail' '}' \
	'assign sender news@example.com news' 'assign outbound standard'
h_milter_start
h_sasl_user alice@example.com wonderland
h_sasl_user news@example.com headlines
h_postfix_start
h_send --sasl alice@example.com wonderland --from alice@example.com --to bob@example.net
h_ok "a message is accepted" test -n "$H_QID"
h_ok "it arrives at the sink" h_wait_sink main 1 20
h_send --sasl alice@example.com wonderland --from alice@example.com --to bob@example.net
h_assert_grep "$H_SEND_LOG" '^<\*\* +451 ' "the next message goes over messages 1/1h: 451"
h_wait_log "$H_MILTER_LOG" 'class=standard .*decision=tempfail-rate' 10
h_send --sasl news@example.com headlines --from news@example.com --to bob@example.net
h_ok "news's first message arrives at the sink" h_wait_sink main 2 20
for i in 1 2; do
	h_send --sasl news@example.com headlines --from news@example.com --to bob@example.net
	h_assert_grep "$H_SEND_LOG" '^<\*\* +451 ' "news's message $((i + 1)) goes over its messages 1/1h: 451"
done
h__wait_for 10 bash -c "[ \$(grep -c 'class=news .*decision=tempfail-rate' '$H_MILTER_LOG') = 2 ]" ||
	h_diag "the milter did not log 2 deferrals of class news"

scrape=$H_TMP/scrape.txt
curl -s --max-time 10 "http://127.0.0.1:$port/metrics" >"$scrape"
h_ok "the endpoint answers a scrape" grep -q '^bulkmilter_messages_accepted_total 2$' "$scrape"
h_assert_eq "$(printf '%s\n' 'bulkmilter_deferrals_total{cause="rate"} 3' 'bulkmilter_deferrals_total{cause="spf"} 0' \
	'bulkmilter_deferrals_total{cause="suspended"} 0' 'bulkmilter_deferrals_total{cause="other"} 0')" \
	"$(grep '^bulkmilter_deferrals_total' "$scrape")" "deferrals by cause: the rate's 3, no other"
h_assert_eq "$(printf '%s\n' 'bulkmilter_class_deferrals_total{class="standard"} 1' \
	'bulkmilter_class_deferrals_total{class="news"} 2' 'bulkmilter_class_deferrals_total{class="other"} 0')" \
	"$(grep '^bulkmilter_class_deferrals_total' "$scrape")" "deferrals by class: standard 1, news 2, other 0"
h_assert_eq "1 1" "$(grep -c '^# HELP bulkmilter_class_deferrals_total ' "$scrape") $(grep -c \
	'^# TYPE bulkmilter_class_deferrals_total counter$' "$scrape")" "the class family: HELP and TYPE once"
h_ok "bulkmilterctl --json stats is valid JSON with the labelled samples" \
	bash -c "'$H_BULKMILTERCTL' -c '$H_TMP/bulkmilter.conf' --json stats |
		python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(d[\"deferrals_total{cause=\\\"rate\\\"}\"] != 3 or d[\"class_deferrals_total{class=\\\"news\\\"}\"] != 2)'"

promtool check metrics <"$scrape" >"$H_TMP/promtool.out" 2>&1
h_ok "promtool check metrics: exit 0" test $? = 0
h_assert_eq "" "$(cat "$H_TMP/promtool.out")" "promtool check metrics: nothing to report"

# The check is not vacuous: a counter without _total is reported.
{ cat "$scrape"; printf '# HELP bulkmilter_bad Bad\n# TYPE bulkmilter_bad counter\nbulkmilter_bad 1\n'; } |
	promtool check metrics >"$H_TMP/promtool-bad.out" 2>&1
h_assert_grep "$H_TMP/promtool-bad.out" 'bulkmilter_bad.*_total' \
	"promtool reports a counter named without _total"

names=$(sed -n 's/^\(bulkmilter_[a-z_]*\)\({[^}]*}\)\{0,1\} [0-9][0-9]*$/\1/p' "$scrape" | sort -u)
h_ok "the scrape has 15 or more metrics" test "$(wc -l <<<"$names")" -ge 15
bad=
for n in $names; do
	grep -q "^# HELP $n [^ ]" "$scrape" && grep -qx "# TYPE $n counter" "$scrape" &&
		[[ $n =~ ^bulkmilter_[a-z_]+_total$ ]] || bad="$bad $n"
done
h_assert_eq "" "$bad" "every metric: HELP, TYPE counter, name bulkmilter_..._total"
h_assert_eq "" "$(grep '^[^#]' "$scrape" | grep -Ev '^bulkmilter_[a-z_]+(\{[a-z_]+="[a-z0-9_-]+"\})? [0-9]+$')" \
	"every sample: NAME or NAME{label=\"value\"}, then its value"

# ---- the dashboard
h_ok "the dashboard is valid JSON" python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$dashboard"
# Its queries, with $__rate_interval, $__range and $instance given values,
# as recording rules for promtool.
python3 - "$dashboard" >"$H_TMP/rules.yml" <<'EOF' || h_fatal "cannot read the dashboard's queries"
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
exprs += [v["query"]["query"] for v in d["templating"]["list"] if v["type"] == "query"]
print("groups:\n- name: dashboard\n  rules:")
for i, e in enumerate(exprs):
    if e.startswith("label_values("):      # Grafana's, not PromQL: its metric
        e = e[len("label_values("):].split(",")[0]
    e = e.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$instance", ".*")
    print("  - record: dashboard:query%d\n    expr: %s" % (i, json.dumps(e)))
EOF
h_ok "the dashboard has 15 or more queries" test "$(grep -c 'record:' "$H_TMP/rules.yml")" -ge 15
promtool check rules "$H_TMP/rules.yml" >"$H_TMP/rules.out" 2>&1
h_ok "every dashboard query parses as PromQL (promtool check rules)" test $? = 0 ||
	h_diag "$(cat "$H_TMP/rules.out")"
used=$(grep -o 'bulkmilter_[a-z_]*' "$dashboard" | sort -u)
h_assert_eq "" "$(comm -23 <(echo "$used") <(echo "$names") | tr '\n' ' ')" \
	"the dashboard names only metrics the endpoint serves"
missing=$(comm -13 <(echo "$used") <(echo "$names") | tr '\n' ' ')
[ -z "$missing" ] || h_diag "served but not on the dashboard: $missing"
