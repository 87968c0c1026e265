#!/bin/bash
#
# UserID and SpfUserID: bulkmilter opens its socket and writes its PidFile
# as root, then runs as UserID; the socket belongs to that user and group
# (so the MTA's group can connect). The SPF helpers run as SpfUserID
# (default nobody), a user and group of their own, every helper a child
# of the spawner, which alone stays root: a helper cannot read the
# daemon's DKIM key (0600, owned by UserID), while the daemon signs with
# it. SPF still works, a helper killed with SIGKILL comes back as
# SpfUserID too, and a reload still works as UserID.

# shellcheck shell=bash disable=SC2317
# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/spf_it_lib.sh
. "$(dirname "$0")/../lib/spf_it_lib.sh"
# shellcheck source=../lib/dkim_it_lib.sh
. "$(dirname "$0")/../lib/dkim_it_lib.sh"

nobody_uid=$(id -u nobody)
postfix_gid=$(id -g postfix)

# the unprivileged user must reach the config, the policy and its key
chmod 755 "$H_TMP" "$DKIM_KEYS"
dkim_ed_key k
chown postfix:postfix "$DKIM_KEYS/k.key"
echo "k._domainkey.example.com example.com:k:$DKIM_KEYS/k.key" >"$H_TMP/KeyTable"
echo '*@example.com k._domainkey.example.com' >"$H_TMP/SigningTable"
spf_dns_start '--txt-record=spf.example,v=spf1 ip4:192.0.2.0/24 -all'
h_policy 'class standard { account sasl sender }' 'assign outbound standard'
h_conf "UserID postfix:postfix" "AuthservID mx.test.example" \
	"KeyTable $H_TMP/KeyTable" "SigningTable refile:$H_TMP/SigningTable"
chmod 644 "$H_TMP/bulkmilter.policy" "$H_TMP/bulkmilter.conf" "$H_TMP/KeyTable" \
	"$H_TMP/SigningTable"
h_log_mark "$H_MILTER_LOG"
h_milter_start
h_wait_log "$H_MILTER_LOG" 'info: bulkmilter .* started on' 20	# its helpers are up
h_postfix_start

pid=$(cat "$H_TMP/milter.pid")
h_assert_eq "$H_MILTER_PID" "$pid" "PidFile holds the daemon's pid"
h_assert_eq "postfix" "$(ps -o user= -p "$pid" | tr -d ' ')" "the daemon runs as postfix"
h_assert_eq "postfix:postfix" "$(stat -c %U:%G "${H_MILTER_SOCKET#unix:}")" \
	"the socket belongs to postfix:postfix"

# proc_ids PID FIELD: the four ids of a "Uid:" or "Gid:" line, or Groups
proc_ids() {
	awk -v f="$2:" '$1 == f { $1 = ""; sub(/^ /, ""); print }' "/proc/$1/status"
}

# helpers_are_nobody LABEL COUNT: COUNT helpers (or at least one with
# COUNT "some"), each with every uid nobody's, no group of postfix's or
# root's, and the spawner as its parent.
helpers_are_nobody() {
	local pids p n=0 bad=0
	pids=$(spf_helper_pids)
	for p in $pids; do
		n=$((n + 1))
		if [ "$(ps -o user= -p "$p" | tr -d ' ')" != nobody ] ||
		   [ "$(proc_ids "$p" Uid)" != "$nobody_uid $nobody_uid $nobody_uid $nobody_uid" ] ||
		   [ "$(ps -o ppid= -p "$p" | tr -d ' ')" != "$spawner" ]; then
			bad=$((bad + 1))
			h_diag "helper $p: user $(ps -o user= -p "$p"), parent $(ps -o ppid= -p "$p"), Uid: $(proc_ids "$p" Uid)"
		fi
		case " $(proc_ids "$p" Gid) $(proc_ids "$p" Groups) " in
		*" $postfix_gid "*|*" 0 "*)
			bad=$((bad + 1))
			h_diag "helper $p: Gid: $(proc_ids "$p" Gid), Groups: $(proc_ids "$p" Groups)" ;;
		esac
	done
	[ "$2" = some ] && [ "$n" -ge 1 ] && n=some
	h_assert_eq "$2 0" "$n $bad" "$1: $2 SPF helpers, each running as nobody (uid $nobody_uid), in no group of postfix's or root's"
}

spawner=$(ps -o pid=,comm= --ppid "$pid" | awk '$2 == "bm-spf-spawner" {print $1}')
h_ok "the daemon has one child, the spawner" test "$(ps -o pid= --ppid "$pid" | wc -l)" = 1 -a -n "$spawner"
h_assert_eq root "$(ps -o user= -p "$spawner" | tr -d ' ')" "the spawner runs as root"
helpers_are_nobody "at start" 4

# The daemon's key: 0600, owned by postfix. A helper's user cannot read it.
h_assert_eq "600 postfix" "$(stat -c '%a %U' "$DKIM_KEYS/k.key")" "the DKIM key is 0600, owned by postfix"
h_ok "the helpers' user (nobody) cannot read the DKIM key" \
	bash -c "! setpriv --reuid=nobody --regid=nogroup --clear-groups cat '$DKIM_KEYS/k.key' >/dev/null 2>&1"
h_ok "postfix, the daemon's user, can" \
	bash -c "setpriv --reuid=postfix --regid=postfix --clear-groups cat '$DKIM_KEYS/k.key' >/dev/null"

# Outbound mail is signed with it; inbound mail gets its SPF result.
h_send --from alice@example.com
h_assert_eq standard "$(h_milter_field "$H_QID" class)" "mail is classified as user postfix"
h_assert_eq "d=example.com,s=k,a=ed25519-sha256" "$(dkim_signed "$H_QID")" "outbound mail is signed with postfix's key"
h_send --ip 192.0.2.10 --from bob@spf.example
spf_sink_file "$H_QID"
h_assert_eq "mx.test.example; spf=pass smtp.mailfrom=spf.example" \
	"$(spf_header "$SPF_FILE" Authentication-Results)" "inbound mail gets spf=pass from the helpers"

# A helper killed with SIGKILL is started again, as nobody.
victims=$(spf_helper_pids)
h_log_mark "$H_MILTER_LOG"
# shellcheck disable=SC2086 # one PID a word
kill -KILL $victims
h_send --ip 192.0.2.10 --from carol@spf.example
spf_sink_file "$H_QID"
h_assert_eq "mx.test.example; spf=pass smtp.mailfrom=spf.example" \
	"$(spf_header "$SPF_FILE" Authentication-Results)" "after SIGKILL: spf=pass again"
h_ok "the milter noticed the dead helpers" \
	h_wait_log "$H_MILTER_LOG" 'SPF helper [0-9]+ \(pid [0-9]+\) ended' 5
h_assert_eq "" "$(comm -12 <(tr ' ' '\n' <<<"$victims" | sort) <(spf_helper_pids | sort))" \
	"no killed helper is among the running ones"
helpers_are_nobody "after SIGKILL" some

h_policy 'class renamed { account sasl sender }' 'assign outbound renamed'
chmod 644 "$H_TMP/bulkmilter.policy"
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded' 10
h_send --from alice@example.com
h_assert_eq renamed "$(h_milter_field "$H_QID" class)" "a reload as user postfix applies"
helpers_are_nobody "after a reload" 4

# A daemon started as postfix, not root, cannot make its helpers nobody:
# they run as postfix, and it says so once.
h_milter_stop
rundir=$H_TMP/run-postfix
mkdir -m 755 "$rundir"
chown postfix:postfix "$rundir"
h_conf "Socket unix:$rundir/milter.sock" "PidFile $rundir/milter.pid" "AuthservID mx.test.example"
chmod 644 "$H_TMP/bulkmilter.conf"
h_log_mark "$H_MILTER_LOG"
ASAN_OPTIONS=$(h__milter_asan) setpriv --reuid=postfix --regid=postfix --init-groups \
	"$H_BULKMILTER" -f -c "$H_TMP/bulkmilter.conf" >>"$H_MILTER_LOG" 2>&1 </dev/null &
H_MILTER_PID=$!
h_wait_log "$H_MILTER_LOG" 'info: bulkmilter .* started on' 20
h_assert_eq 1 "$(h__log_since_mark "$H_MILTER_LOG" | grep -c "warning: not started as root: SPF helpers run as this process's user, not as SpfUserID nobody")" \
	"not root: one warning says the helpers cannot become SpfUserID"
h_assert_eq "postfix postfix postfix postfix" "$(for p in $(spf_helper_pids); do ps -o user= -p "$p"; done | tr -d ' ' | sort | xargs)" \
	"not root: the four helpers run as the daemon's user"
