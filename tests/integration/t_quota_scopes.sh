#!/bin/bash
#
# Quota scopes and destination rates end to end (real Postfix and Redis):
#   - mailbox and domain together: two mailboxes of cust.example with
#     recipients 5/1h each and recipients 8/1h by domain: the ninth
#     recipient of the domain gets 451 although its mailbox has room,
#     and the refused recipient was charged in neither scope;
#   - by class: three accounts in parallel share one class ceiling of 6
#     exactly;
#   - to gmail.com: a message to 3 gmail.com, 2 example.net and 2 more
#     gmail.com recipients: the last 2 get 451 naming gmail.com, the
#     other 5 are delivered;
#   - two milters on one Redis share the account (calendar window),
#     domain and class buckets exactly;
#   - bulkmilterctl explain lists the scopes and destination rates,
#     reset --scope domain empties the domain's bucket only;
#   - -n refuses "by domain" where accounts are addresses of clients.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class cust {
    account     sasl sender
    recipients  5/1h
    recipients  8/1h by domain
}
class shared {
    account     sasl sender
    recipients  6/1h by class
}
class gm {
    account     sasl sender
    recipients  100/1h
    recipients  3/1h to gmail.com googlemail.com
}
class fleet2 {
    account     sasl sender
    recipients  7/day
    recipients  9/1h by class
}
class fleet {
    account     sasl sender
    recipients  6/1h 20/day
    recipients  10/1h by domain
    recipients  12/day by class
}
assign domain  cust.example   cust
assign domain  shared.example shared
assign sender  gm@example.com gm
assign domain  fleet.example  fleet
assign domain  f2.example     fleet2
EOF_POLICY
h_conf </dev/null
h_milter_start

PORT_B=$(h_port 15)
SOCK_B=unix:$H_TMP/milter2.sock
sed -e "s|^Socket .*|Socket $SOCK_B|" -e "s|^PidFile .*|PidFile $H_TMP/milter2.pid|" \
	"$H_TMP/bulkmilter.conf" >"$H_TMP/bulkmilter2.conf"
rl_milter2_start "$H_TMP/bulkmilter2.conf" "$SOCK_B"
h_postfix_master "127.0.0.1:$PORT_B inet n - n - - smtpd -o smtpd_milters=$SOCK_B"
h_postfix_start
h__wait_for 10 h__port_busy "$PORT_B" || h_fatal "second smtpd does not listen on $PORT_B"

over() {
	echo "451 4.7.1 Sending rate limit exceeded for $1, try again later"
}

# ---- 1. mailbox and domain together -------------------------------------
rl_smtp custa --rcpts 5 --tag custa --from a@cust.example
h_assert_eq "5 250 2.1.5 Ok" "$(rl_replies custa 'rcpt[0-9]+')" "domain: mailbox a sends 5 (its own 5/1h)"
rl_smtp custb --rcpts 4 --tag custb --from b@cust.example
h_assert_eq "250 250 250 451" "$(awk '$3 ~ /^rcpt/ {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-custb.out")" \
	"domain: mailbox b's 4th recipient, the domain's 9th, gets 451 although b has room"
h_assert_eq "1 $(over b@cust.example)" "$(rl_replies custb 'rcpt4')" "domain: the reply names the account"
# (the buckets refill a token in 12 minutes: rounded, the used counts are exact)
h_assert_eq "5 3" "$(printf '%.0f %.0f' "$(rl_used a@cust.example recipients 5/1h)" "$(rl_used b@cust.example recipients 5/1h)")" \
	"domain: a used 5, b used 3 (the refused recipient charged b nothing)"
rl_ctl -c "$H_TMP/bulkmilter.conf" --json usage b@cust.example >"$H_TMP/usage-b.json"
h_assert_eq "8" "$(/usr/bin/python3 -c '
import json, sys
for b in json.load(open(sys.argv[1]))["buckets"]:
    if b["scope"] == "domain":
        print("%.0f" % b["used"])' "$H_TMP/usage-b.json")" \
	"domain: usage shows the domain bucket at 8 (the refused recipient charged it nothing)"
h_assert_eq 8 "$(( $(rl_delivered custa 5) + $(rl_delivered custb 3) ))" "domain: 8 recipients delivered"

# ---- 2. by class: three accounts share one ceiling ------------------------
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
for n in 1 2 3; do
	rl_smtp "shared$n" --sessions 2 --rcpts 2 --tag "shared$n" --from "s$n@shared.example" --start-at "$start" &
	eval "pid$n=$!"
done
wait "$pid1" "$pid2" "$pid3"
accepted=0 refused=0
for n in 1 2 3; do
	accepted=$(( accepted + $(rl_count "shared$n" 'rcpt[0-9]+' 250) ))
	refused=$(( refused + $(rl_count "shared$n" 'rcpt[0-9]+' 451) ))
done
h_assert_eq "6 6" "$accepted $refused" "by class: 12 recipients from three accounts, exactly 6 accepted"

# ---- 3. to gmail.com ------------------------------------------------------
rl_smtp gm --from gm@example.com --tag gm \
	--to g1@gmail.com --to g2@gmail.com --to g3@gmail.com --to n1@example.net --to n2@example.net \
	--to g4@gmail.com --to g5@gmail.com
h_assert_eq "250 250 250 250 250 451 451" "$(awk '$3 ~ /^rcpt/ {printf "%s%s", sep, $4; sep = " "}' "$H_TMP/rl-gm.out")" \
	"to gmail.com: the 4th and 5th gmail.com recipients get 451, the others 250"
h_assert_eq "2 451 4.7.1 Sending rate to gmail.com exceeded for gm@example.com, try again later" \
	"$(rl_replies gm 'rcpt[67]')" "to gmail.com: the reply names the domain and the account"
h_wait_sink main 1 >/dev/null
h__wait_for 20 rl_queue_settled
h_assert_eq "g1@gmail.com g2@gmail.com g3@gmail.com n1@example.net n2@example.net" \
	"$(cat "$H_TMP"/sink-main/*.env | sed -n 's/^rcpt_to: <\(.*@\(gmail.com\|example.net\)\)>$/\1/p' | grep -E '^(g|n)[0-9]@' | sort | tr '\n' ' ' | sed 's/ $//')" \
	"to gmail.com: the other 5 recipients are delivered"
h_assert_grep "$H_MILTER_LOG" 'account=gm@example.com over recipients 3/1h: 451 4.7.1 \(recipient\)' \
	"to gmail.com: the refusals are logged with the rate"

# ---- 4. two milters share every scope -----------------------------------
# fleet: per account 6/1h and 20/day, per domain 10/1h, per class 12/day.
# Four mailboxes, two on each milter, 4 recipients each: 16 asked, the
# domain's 10/1h governs: exactly 10 accepted across both milters.
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp fa1 --rcpts 4 --tag fa1 --from m1@fleet.example --start-at "$start" &
p1=$!
rl_smtp fa2 --rcpts 4 --tag fa2 --from m2@fleet.example --start-at "$start" &
p2=$!
rl_smtp fb1 --port "$PORT_B" --rcpts 4 --tag fb1 --from m3@fleet.example --start-at "$start" &
p3=$!
rl_smtp fb2 --port "$PORT_B" --rcpts 4 --tag fb2 --from m4@fleet.example --start-at "$start"
wait "$p1" "$p2" "$p3"
acc_a=$(( $(rl_count fa1 'rcpt[0-9]+' 250) + $(rl_count fa2 'rcpt[0-9]+' 250) ))
acc_b=$(( $(rl_count fb1 'rcpt[0-9]+' 250) + $(rl_count fb2 'rcpt[0-9]+' 250) ))
h_assert_eq 10 "$(( acc_a + acc_b ))" "two milters: exactly 10 of 16 accepted (the domain's 10/1h)"
h_ok "two milters: both accepted some" test "$acc_a" -gt 0 -a "$acc_b" -gt 0
rl_smtp fd --rcpts 4 --tag fd --from m5@fleet.example
h_assert_eq "0 4" "$(rl_count fd 'rcpt[0-9]+' 250) $(rl_count fd 'rcpt[0-9]+' 451)" \
	"two milters: the domain bucket is full for a fifth mailbox too"
used=$(rl_ctl -c "$H_TMP/bulkmilter2.conf" --json usage m1@fleet.example | /usr/bin/python3 -c '
import json, sys
u = {b["scope"] + " " + b["rate"]: "%.0f" % b["used"] for b in json.load(sys.stdin)["buckets"]}
print(u.get("domain 10/1h"), u.get("class 12/day"))')
h_assert_eq "10 10" "$used" "two milters: usage (second config) shows domain 10/1h and class 12/day both at 10"

# One account through both milters at once against its 7/day window, then
# another account of the class through both against the 2 left of the
# class's 9/1h.
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp f2a --sessions 2 --rcpts 4 --tag f2a --from m@f2.example --start-at "$start" &
p1=$!
rl_smtp f2b --port "$PORT_B" --sessions 2 --rcpts 4 --tag f2b --from m@f2.example --start-at "$start"
wait "$p1"
h_assert_eq 7 "$(( $(rl_count f2a 'rcpt[0-9]+' 250) + $(rl_count f2b 'rcpt[0-9]+' 250) ))" \
	"two milters: one account's calendar window 7/day admits exactly 7 of 16 across both"
start=$(awk -v t="$(date +%s.%N)" 'BEGIN {printf "%.3f", t + 1}')
rl_smtp f2c --sessions 2 --rcpts 2 --tag f2c --from n@f2.example --start-at "$start" &
p1=$!
rl_smtp f2d --port "$PORT_B" --sessions 2 --rcpts 2 --tag f2d --from n@f2.example --start-at "$start"
wait "$p1"
h_assert_eq 2 "$(( $(rl_count f2c 'rcpt[0-9]+' 250) + $(rl_count f2d 'rcpt[0-9]+' 250) ))" \
	"two milters: the class's 9/1h admits exactly the 2 it has left across both"

# ---- 5. explain and reset --scope ------------------------------------------
rl_ctl -c "$H_TMP/bulkmilter.conf" explain --ip 127.0.0.1 --sender b@cust.example >"$H_TMP/explain.txt"
h_assert_grep "$H_TMP/explain.txt" 'recipients +8/1h by domain .*bucket of domain cust.example' \
	"explain: the domain scope names the customer's domain"
rl_ctl -c "$H_TMP/bulkmilter.conf" explain --ip 127.0.0.1 --sender gm@example.com >"$H_TMP/explain-gm.txt"
h_assert_grep "$H_TMP/explain-gm.txt" 'recipients +3/1h to gmail.com googlemail.com ' \
	"explain: the destination rate lists its domains"
rl_ctl -c "$H_TMP/bulkmilter.conf" --json explain --ip 127.0.0.1 --sender m1@fleet.example >"$H_TMP/explain.json"
h_assert_eq "account 6/1h None|account 20/day day|domain 10/1h None|class 12/day day" \
	"$(/usr/bin/python3 -c '
import json, sys
print("|".join("%s %s %s" % (r["scope"], r["rate"], r.get("window")) for r in json.load(open(sys.argv[1]))["rates"]))' "$H_TMP/explain.json")" \
	"explain --json: scope and window of each rate"
rl_ctl -c "$H_TMP/bulkmilter.conf" reset --scope domain b@cust.example >"$H_TMP/reset.out"
h_assert_eq "0 3" "$(printf '%.0f %.0f' "$(rl_used b@cust.example recipients 8/1h)" "$(rl_used b@cust.example recipients 5/1h)")" \
	"reset --scope domain: the domain's bucket is empty, the mailbox's kept"

# ---- 6. -n: by domain needs accounts with a domain -------------------------
printf 'class ips {\n    account ip\n    recipients 5/1h by domain\n}\n' >"$H_TMP/bad.policy"
sed -e "s|^Policy .*|Policy $H_TMP/bad.policy|" "$H_TMP/bulkmilter.conf" >"$H_TMP/bad.conf"
"$H_BULKMILTER" -n -c "$H_TMP/bad.conf" >"$H_TMP/n.out" 2>&1
h_assert_eq 1 $? "-n fails"
h_assert_grep "$H_TMP/n.out" "^$H_TMP/bad.policy:3: recipients: by domain: the accounts of class ips are client addresses" \
	"-n: by domain on a class of client addresses is FILE:LINE"
