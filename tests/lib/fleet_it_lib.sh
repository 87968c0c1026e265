# shellcheck shell=bash
#
# NAME
#	fleet_it_lib.sh - a Redis Sentinel set or Cluster for an integration
#	test (scripts/redis-fleet), stopped with the test
# SYNOPSIS
#	. "$(dirname "$0")/../lib/harness.sh"
#	. "$(dirname "$0")/../lib/rl_it_lib.sh"
#	. "$(dirname "$0")/../lib/fleet_it_lib.sh"
#
#	fl_start sentinel|cluster	(sets FL_URL, FL_DIR)
#	fl_pid MEMBER; fl_port MEMBER; fl_cli MEMBER ARGS... (redis-cli)
#	fl_master_port			(sentinel: the master the sentinels name)
#	fl_owner_port KEY		(cluster: port of the master of KEY's slot)
# DESCRIPTION
#	fl_start runs scripts/redis-fleet in $H_TMP/fleet on this test's
#	ports (sentinel: h_port 14 to 18; cluster: h_port 6 to 11, its bus
#	on h_port 12 to 17; h_port 5 is free for a second smtpd) and
#	bails out when it does not come up. The EXIT trap stops the fleet
#	(by the PIDs redis-fleet wrote) after the milters (rl_it_lib.sh) and
#	before the harness looks for leftovers.

FL_DIR=
FL_URL=
FL_FLEET=$H_SRCDIR/scripts/redis-fleet

fl_start() {
	FL_DIR=$H_TMP/fleet
	case $1 in
	sentinel) FL_URL=$(FLEET_WAIT=40 "$FL_FLEET" sentinel "$FL_DIR" "$(h_port 14)" 2>"$H_TMP/fleet.err") ;;
	cluster) FL_URL=$(FLEET_WAIT=40 "$FL_FLEET" cluster "$FL_DIR" "$(h_port 6)" "$(h_port 12)" 2>"$H_TMP/fleet.err") ;;
	esac || h_fatal "redis-fleet $1 did not come up: $(cat "$H_TMP/fleet.err")"
	export FL_URL
}

fl_pid() { cat "$FL_DIR/$1.pid"; }
fl_port() { cat "$FL_DIR/$1.port"; }
fl_cli() {
	local m=$1
	shift
	redis-cli -h 127.0.0.1 -p "$(fl_port "$m")" "$@"
}

fl_master_port() {
	redis-cli -h 127.0.0.1 -p "$(fl_port s1)" sentinel get-master-addr-by-name bm 2>/dev/null | tail -n 1
}

# The port of the master holding KEY's slot (CLUSTER NODES of a live node).
fl_owner_port() {
	local slot m
	for m in n0 n1 n2 n3 n4 n5; do
		slot=$(fl_cli $m cluster keyslot "$1" 2>/dev/null) && [ -n "$slot" ] && break
	done
	for m in n0 n1 n2 n3 n4 n5; do
		fl_cli $m cluster nodes 2>/dev/null | awk -v s="$slot" '
			$3 ~ /master/ && $3 !~ /fail/ {
				for (i = 9; i <= NF; i++) {
					if ($i ~ /^\[/) continue
					n = split($i, r, "-")
					if (s >= r[1] + 0 && s <= r[n] + 0) {
						split($2, a, "[:@]"); print a[2]; found = 1; exit
					}
				}
			}
			END { exit !found }' && return 0
	done
	return 1
}

# Stops the fleet, then the milters' and the harness's clean-up.
fl__exit() {
	local rc=$?
	[ -n "$FL_DIR" ] && [ "${H_DETACHED:-0}" != 1 ] && "$FL_FLEET" stop "$FL_DIR"
	(exit "$rc")
	rl__exit
}
trap fl__exit EXIT
