#!/bin/bash
#
# Each bulk condition, alone (one class per condition, picked by the
# envelope sender), decides whether a message is bulk:
#   recipients >= 3      2 recipients: not bulk; 3: bulk
#   header NAME          present (any case of the name): bulk; absent: not
#   precedence           Precedence: list: bulk, and it gets no second
#                        Precedence; first-class or none: not bulk
#   volume >= 5/1m       a burst of six: the first five are not bulk, the
#                        sixth is (the account's volume before it is 5)
#   always               bulk
#   never                not bulk, even with every other trigger present
# Bulk mail gets X-Bulk-Class: CLASS and, where it has none, Precedence:
# bulk; other mail gets neither. Only bulk mail is checked against
# bulk-require: a non-bulk message of such a class gets no
# X-Bulk-Noncompliant, its bulk sibling does.

# shellcheck source=../lib/harness.sh
. "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=../lib/bulk_it_lib.sh
. "$(dirname "$0")/../lib/bulk_it_lib.sh"

h_redis_start
h_policy <<'EOF_POLICY'
class by_rcpts {
    bulk        recipients >= 3
}
class by_header {
    bulk        header List-Unsubscribe
}
class by_precedence {
    bulk        precedence
}
class by_volume {
    account     sender
    bulk        volume >= 5/1m
}
class by_always {
    bulk        always
}
class by_never {
    bulk        never
}
class checked {
    bulk        recipients >= 3
    bulk-require list-unsubscribe
    bulk-noncompliant tag
}
assign sender   rcpts@example.com       by_rcpts
assign sender   header@example.com      by_header
assign sender   prec@example.com        by_precedence
assign sender   vol@example.com         by_volume
assign sender   always@example.com      by_always
assign sender   never@example.com       by_never
assign sender   checked@example.com     checked
EOF_POLICY
h_conf </dev/null
h_milter_start
h_postfix_start

N=0
# send NAME SENDER RCPTS ['Header: value'...]: one message; its sink copy
# in $got, its queue ID in $qid.
send() {
	local name=$1 sender=$2 rcpts=$3
	shift 3
	N=$((N + 1))
	bulk_msg "$H_TMP/m$N.eml" "m$N.$name@example.com" "$sender" "$@"
	h_send --from "$sender" --to "$rcpts" --raw "$H_TMP/m$N.eml"
	qid=$H_QID
	got=
	[ -n "$qid" ] && got=$(bulk_sink_file main "$qid")
	h_ok "$name: accepted and delivered" test -n "$got"
}

# is_bulk NAME CLASS PRECEDENCE WHY-ERE: tagged with CLASS, exactly one
# Precedence (PRECEDENCE), and the log line says bulk=yes ... bulk_reason="WHY".
is_bulk() {
	h_assert_eq "$2" "$(bulk_header "$got" X-Bulk-Class)" "$1: bulk: X-Bulk-Class: $2"
	h_assert_eq "$3" "$(bulk_header "$got" Precedence)" "$1: one Precedence: $3"
	h_milter_line "$qid" >"$H_TMP/line"
	h_assert_grep "$H_TMP/line" " bulk=yes .* bulk_reason=\"$4\"" "$1: log says bulk=yes, bulk_reason=\"$4\""
}

# not_bulk NAME [PRECEDENCE]: no tag, the Precedence it was sent with
# (or none), and bulk=no in the log.
not_bulk() {
	h_assert_eq 0 "$(bulk_header_count "$got" X-Bulk-Class)" "$1: not bulk: no X-Bulk-Class"
	h_assert_eq "${2:-}" "$(bulk_header "$got" Precedence)" "$1: Precedence: '${2:-}' (none added)"
	h_assert_eq no "$(h_milter_field "$qid" bulk)" "$1: log says bulk=no"
}

R2=r1@example.net,r2@example.net
R3=r1@example.net,r2@example.net,r3@example.net

# -- recipients >= 3
send "recipients 2" rcpts@example.com "$R2"
not_bulk "recipients 2"
send "recipients 3" rcpts@example.com "$R3"
is_bulk "recipients 3" by_rcpts bulk 'recipients 3 >= 3'

# -- header List-Unsubscribe
send "no List-Unsubscribe" header@example.com bob@example.net
not_bulk "no List-Unsubscribe"
send "List-Unsubscribe" header@example.com bob@example.net \
	"List-Unsubscribe: <mailto:unsub@example.com>"
is_bulk "List-Unsubscribe" by_header bulk 'header List-Unsubscribe'
send "list-unsubscribe (lower case)" header@example.com bob@example.net \
	"list-unsubscribe: <https://example.com/u>"
is_bulk "list-unsubscribe (lower case)" by_header bulk 'header List-Unsubscribe'
send "List-Unsubscribe + Precedence: first-class" header@example.com bob@example.net \
	"List-Unsubscribe: <mailto:unsub@example.com>" "Precedence: first-class"
is_bulk "List-Unsubscribe + Precedence: first-class" by_header first-class 'header List-Unsubscribe'

# -- precedence
send "no Precedence" prec@example.com bob@example.net
not_bulk "no Precedence"
send "Precedence: first-class" prec@example.com bob@example.net "Precedence: first-class"
not_bulk "Precedence: first-class" first-class
send "Precedence: list" prec@example.com bob@example.net "Precedence: list"
is_bulk "Precedence: list" by_precedence list 'precedence'

# -- volume >= 5/1m: a burst of six
for i in 1 2 3 4 5; do
	send "volume: message $i of 6" vol@example.com bob@example.net
	not_bulk "volume: message $i of 6"
done
send "volume: message 6 of 6" vol@example.com bob@example.net
is_bulk "volume: message 6 of 6" by_volume bulk 'volume 5 >= 5/1m'

# -- always, never
send "always" always@example.com bob@example.net
is_bulk "always" by_always bulk 'always'
send "never" never@example.com "$R3" "List-Unsubscribe: <mailto:unsub@example.com>" \
	"Precedence: bulk"
not_bulk "never" bulk

# -- only bulk mail is checked against bulk-require
send "bulk-require, not bulk" checked@example.com "$R2"
not_bulk "bulk-require, not bulk"
h_assert_eq 0 "$(bulk_header_count "$got" X-Bulk-Noncompliant)" \
	"bulk-require, not bulk: no X-Bulk-Noncompliant"
h_assert_no_grep "$H_MILTER_LOG" "$qid: .*noncompliant=" "bulk-require, not bulk: log names no noncompliant checks"
send "bulk-require, bulk" checked@example.com "$R3"
is_bulk "bulk-require, bulk" checked bulk 'recipients 3 >= 3'
h_assert_eq list-unsubscribe "$(bulk_header "$got" X-Bulk-Noncompliant)" \
	"bulk-require, bulk: X-Bulk-Noncompliant: list-unsubscribe"
