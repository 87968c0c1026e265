#!/bin/bash
#
# A message passes through Postfix and bulkmilter and arrives at the sink
# byte for byte as it was sent, apart from the Received header Postfix
# prepends; the milter logs one decision line naming its queue ID,
# direction, class, account and decision; connections are served by our
# threads (shim_libmilter.c), not libmilter's worker pool; the start-up
# line reports every interposition (milter/shim/shim.h) active.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class standard {
    account sasl sender
}
class other { }
assign outbound standard
assign inbound other
EOF_POLICY
h_conf </dev/null
h_milter_start
h_postfix_start

orig=$H_TMP/original.eml
/usr/bin/python3 "$H_LIB/mkmsg.py" passthrough "$orig" passthrough.1@example.com ||
	h_fatal "cannot write the test message"

h_send --from alice@example.com --to bob@example.net,carol@example.net --raw "$orig"
h_ok "message is accepted (250 queued as ID)" test -n "$H_QID"
qid=$H_QID

h_ok "message arrives at the sink" h_wait_sink main 1 20
got=$(h_sink_grep main 'passthrough.1@example.com' | head -n 1)
h_ok "sink copy found by its Message-ID" test -n "$got"
h_assert_grep "$got" "^Received: from client\.example .*" \
	"first header is Postfix's Received"
h_assert_grep "$got" "with ESMTP id $qid" "Received names the queue ID $qid"

rest=$H_TMP/delivered-without-received.eml
/usr/bin/python3 "$H_LIB/mkmsg.py" strip-received "$got" "$rest"
if h_ok "body and all original headers are byte-for-byte intact" cmp -s "$orig" "$rest"; then
	:
else
	h_diag "$(diff <(cat -A "$orig") <(cat -A "$rest") | head -n 20)"
fi

env=${got%.eml}.env
h_assert_grep "$env" '^mail_from: <alice@example\.com>$' "envelope sender kept"
h_assert_grep "$env" '^rcpt_to: <bob@example\.net>$' "first recipient kept"
h_assert_grep "$env" '^rcpt_to: <carol@example\.net>$' "second recipient kept"

h_assert_eq outbound "$(h_milter_field "$qid" direction)" "milter log: $qid direction=outbound"
h_assert_eq standard "$(h_milter_field "$qid" class)" "milter log: $qid class=standard"
h_assert_eq alice@example.com "$(h_milter_field "$qid" account)" \
	"milter log: $qid account=alice@example.com (the sender)"
h_assert_eq accept "$(h_milter_field "$qid" decision)" "milter log: $qid decision=accept"
h_assert_eq 1 "$(h_milter_line "$qid" | wc -l)" "one decision line for $qid"

# libmilter's worker pool is replaced (milter/shim/shim_libmilter.c): if the
# interposition stops binding, mail still flows but this line is missing
h_assert_grep "$H_MILTER_LOG" 'serving each MTA connection on a thread of its own' \
	"connections are served on threads of their own, not libmilter's pool"
# the start-up check found both interpositions bound; one that fell back
# would be named with its reason ("libmilter fell back to ...")
h_assert_grep "$H_MILTER_LOG" 'shims: libmilter active \(libmilter 1\.0\.[0-9]+\); openssl active \(libopendkim 2\.11\.[0-9]+\)$' \
	"start-up line: libmilter and openssl interpositions active"
