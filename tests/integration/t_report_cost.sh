#!/bin/bash
#
# What suppression costs on the mail path, counted with redis-cli INFO
# commandstats (a script's commands are counted with it): 20 messages of
# 3 recipients from an account of a class without "suppress", then from
# one of the same class with it. Both make exactly one script call
# (EVALSHA) per recipient and none per message (the class has recipients
# rates only): 60 each, and the commands the script runs are the same but
# for one ZSCORE per recipient in the class with suppress. The Feedback-ID
# costs no command (FeedbackKeyFile set; without it, one EVAL per milter
# process, once).

. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class plain {
    account     sender
    recipients  1000/1h
}
class listed {
    account     sender
    recipients  1000/1h
    suppress    hard-bounce complaint
}
assign sender  plain@example.com   plain
assign sender  listed@example.com  listed
EOF_POLICY
printf 'a fleet secret of the test, 32 octets\n' >"$H_TMP/feedback.key"
h_conf "FeedbackKeyFile $H_TMP/feedback.key"
h_milter_start
h_postfix_start

stat() { h_redis INFO commandstats | sed -n "s/^cmdstat_$1:calls=\([0-9]*\),.*/\1/p"; }
total() { h_redis INFO commandstats | sed -n 's/^cmdstat_[a-z|]*:calls=\([0-9]*\),.*/\1/p' | paste -sd+ | bc; }

# run ACCOUNT: "EVALSHA ZSCORE other-commands" for its 20 messages
run() {
	local e0 z0 t0 e1 z1 t1
	e0=$(stat evalsha); z0=$(stat zscore); t0=$(total)
	h_smtp --from "$1" --rcpts 3 --messages 20 --serial >"$H_TMP/smtp-$1.log" 2>&1 ||
		h_fatal "sending as $1 failed: $(tail -n 3 "$H_TMP/smtp-$1.log")"
	e1=$(stat evalsha); z1=$(stat zscore); t1=$(total)
	# INFO itself is counted: 3 per reading
	echo "$(( ${e1:-0} - ${e0:-0} )) $(( ${z1:-0} - ${z0:-0} )) $(( t1 - t0 - 3 - (e1 - e0) - (z1 - z0) ))"
}
run plain@example.com >/dev/null	# loads the script; the first connection's SELECT
read -r e_plain z_plain o_plain <<<"$(run plain@example.com)"
read -r e_list z_list o_list <<<"$(run listed@example.com)"
h_diag "plain: $e_plain EVALSHA, $z_plain ZSCORE, $o_plain other; listed: $e_list EVALSHA, $z_list ZSCORE, $o_list other (script commands included)"
h_assert_eq 60 "$e_plain" "without suppress: one script call per recipient"
h_assert_eq 60 "$e_list" "with suppress: the same script calls"
h_assert_eq 60 "$z_list" "... each looking its recipient up once"
h_assert_eq 0 "$z_plain" "without suppress no lookup"
h_assert_eq $(( o_plain )) "$(( o_list ))" "the other commands (run by the script) are the same"
h_wait_sink main 40 30
h_assert_grep "$(h_sink_files main | tail -n 1)" '^Feedback-ID: listed:' "the listed class's mail carries the Feedback-ID"
