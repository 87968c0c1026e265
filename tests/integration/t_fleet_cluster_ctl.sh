#!/bin/bash
#
# bulkmilterctl's key-less listing on Redis Cluster (3 masters, 3
# replicas; scripts/redis-fleet): "suspended" scans every master, not
# the one node a key-less call happens to reach.
#   - four accounts, their slots on all three masters (CLUSTER KEYSLOT:
#     redis-fleet gives the masters 0-5460, 5461-10922, 10923-16383),
#     two on the first; bulkmilterctl suspend puts each suspension on the
#     master of its account's slot (checked with EXISTS there);
#   - suspended --json lists exactly the four, by ctl, with their
#     reasons; after a release, exactly the other three.
# The other listings are per account (suppress list|export ACCOUNT: a
# key with the account's hash tag, routed to its slot's master), so
# they need no scan of every master.

. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/../lib/rl_it_lib.sh"
. "$(dirname "$0")/../lib/fleet_it_lib.sh"

fl_start cluster

declare -A by_third=()
accounts=()
second=
for i in $(seq 1 2000); do
	a=susp$i@example.com
	third=$(( $(fl_cli n0 cluster keyslot "$a") / 5461 ))
	if [ -z "${by_third[$third]:-}" ]; then
		by_third[$third]=$a
		accounts+=("$a")
	elif [ "$third" = 0 ] && [ -z "$second" ]; then
		second=$a
	fi
	[ ${#accounts[@]} -eq 3 ] && [ -n "$second" ] && break
done
h_assert_eq "0 1 2" "$(printf '%s\n' "${!by_third[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" \
	"three accounts whose slots are on the three masters"
[ -n "$second" ] || h_fatal "no second account on the first master"
accounts+=("$second")

h_policy 'class standard { account sasl sender }' 'assign outbound standard'
h_conf "Redis $FL_URL" 'RedisTimeout 500ms'
ctl() { rl_ctl -c "$H_TMP/bulkmilter.conf" "$@"; }

for a in "${accounts[@]}"; do
	ctl suspend "$a" --reason "r-${a%%@*}" >>"$H_TMP/ctl.out" 2>&1 ||
		h_diag "suspend $a failed: $(tail -n 3 "$H_TMP/ctl.out")"
done
# Each suspension is on the master of its account's slot.
onmaster=
for a in "${accounts[@]}"; do
	port=$(fl_owner_port "$a")
	key=$(redis-cli -h 127.0.0.1 -p "$port" -c --scan --pattern "*{$a}*" 2>/dev/null | head -n 1)
	[ -n "$key" ] && onmaster="$onmaster 1" || onmaster="$onmaster 0"
done
h_assert_eq " 1 1 1 1" "$onmaster" "each suspension key is on the master of its account's slot"
h_assert_eq 3 "$(for a in "${accounts[@]}"; do fl_owner_port "$a"; done | sort -u | wc -l)" \
	"the four suspensions are on three masters"

listed() {
	ctl --json suspended 2>>"$H_TMP/ctl.err" | python3 -c '
import json, sys
print(" ".join(sorted("%s/%s/%s" % (s["account"], s["by"], s["reason"])
                      for s in json.load(sys.stdin)["suspended"])))'
}
want() {
	local a
	for a in "$@"; do echo "$a/ctl/r-${a%%@*}"; done | sort | tr '\n' ' ' | sed 's/ $//'
}
h_assert_eq "$(want "${accounts[@]}")" "$(listed)" \
	"suspended --json lists the four suspensions of the three masters, by ctl, with their reasons"
h_assert_eq "" "$(grep -Ei 'error|warning' "$H_TMP/ctl.err" 2>/dev/null)" "suspended: no error or warning on stderr"

ctl release "${accounts[1]}" >>"$H_TMP/ctl.out" 2>&1
h_assert_eq "$(want "${accounts[0]}" "${accounts[2]}" "${accounts[3]}")" "$(listed)" \
	"after releasing the second master's account: exactly the other three"
