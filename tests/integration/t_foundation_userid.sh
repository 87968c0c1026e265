#!/bin/bash
#
# UserID: bulkmilter opens its socket and writes its PidFile as root, then
# runs as the configured user; the socket belongs to that user and group
# (so the MTA's group can connect), the SPF helpers run unprivileged too,
# and mail flows. A reload still works as that user.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

# the unprivileged user must reach the config and policy
chmod 755 "$H_TMP"
h_policy 'class standard { account sasl sender }' 'assign outbound standard'
h_conf "UserID postfix:postfix"
chmod 644 "$H_TMP/bulkmilter.policy" "$H_TMP/bulkmilter.conf"
h_milter_start
h_postfix_start

pid=$(cat "$H_TMP/milter.pid")
h_assert_eq "$H_MILTER_PID" "$pid" "PidFile holds the daemon's pid"
h_assert_eq "postfix" "$(ps -o user= -p "$pid" | tr -d ' ')" "the daemon runs as postfix"
h_assert_eq "postfix:postfix" "$(stat -c %U:%G "${H_MILTER_SOCKET#unix:}")" \
	"the socket belongs to postfix:postfix"
helpers=$(ps -o user=,args= --ppid "$pid" | grep -c '^postfix *bulkmilter-spf')
h_assert_eq "4" "$helpers" "four SPF helpers, all running as postfix"
h_assert_eq "0" "$(ps -o user= --ppid "$pid" | grep -vc '^postfix')" "no helper runs as root"

h_send --from alice@example.com
h_assert_eq standard "$(h_milter_field "$H_QID" class)" "mail is classified as user postfix"
h_wait_sink main 1

h_policy 'class renamed { account sasl sender }' 'assign outbound renamed'
chmod 644 "$H_TMP/bulkmilter.policy"
h_log_mark "$H_MILTER_LOG"
h_milter_hup
h_wait_log "$H_MILTER_LOG" 'reloaded' 10
h_send --from alice@example.com
h_assert_eq renamed "$(h_milter_field "$H_QID" class)" "a reload as user postfix applies"
