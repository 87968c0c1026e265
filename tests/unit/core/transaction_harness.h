/*
 * NAME
 *	transaction_harness - whole transactions for the unit tests: an
 *	in-memory store, an SPF double, one class per rule and action, the
 *	log captured, and the stages driven as the milter layer drives them
 * SYNOPSIS
 *	int th_group_setup(void **state); int th_group_teardown(void **state);
 *	int th_setup(void **state); int th_teardown(void **state);
 *	void th_connect(enum th_way way, const char *cls);
 *	enum verdict th_mail(enum th_way way, const char *cls);
 *	enum verdict th_rcpt(void);
 *	enum verdict th_rcpt_to(const char *rcpt);
 *	void th_header(const char *name, const char *value);
 *	enum verdict th_content(const char *const *headers,
 *		const struct transaction_result **res);
 *	void th_end(enum verdict v);
 *	void th_disconnect(void);
 *	void th_log_capture(bool on);
 *	bool th_logged(const char *text);
 *	void th_assert_logged(const char *text);
 *	void th_assert_edits(const struct th_edit *want, size_t max,
 *		const char *hold, const struct transaction_result *res);
 * DESCRIPTION
 *	th_group_setup loads a bulkmilter.conf (AuthservID
 *	mx.test.example, InternalHosts 10.0.0.0/8) and a policy with the
 *	classes of th_classes: over_ACTION (messages 1/1h, recipients 2/1h,
 *	recipients 1/day to gmail.test, over-limit ACTION), bulk_ACTION (bulk always, bulk-require
 *	list-unsubscribe, bulk-noncompliant ACTION), spf_ACTION (spf-fail
 *	ACTION), ACTION being tempfail, reject, hold or tag (spf: none, tag,
 *	tempfail, reject). Outbound mail of class C comes from the SASL
 *	login C (client 198.51.100.7, sender alice@example.com), local
 *	submission from sendmail(1) with sender C@local.example, inbound
 *	mail from 192.0.2.N, N being C's place in th_classes from 1 (sender
 *	bob@example.net). th_snap's store is th_store; th_spf answers SPF.
 *
 *	th_store holds token buckets that never refill (a calendar window
 *	counts per window it names, on the caller's clock); a bucket whose key
 *	contains th_store.full is empty; th_store.down fails every call
 *	("redis unavailable: connection refused"). It counts its round
 *	trips (charges, refunds). th_spf answers inbound, with detail, and
 *	counts the checks; egress checks pass, DMARC records are published.
 *
 *	th_setup empties the store, resets the SPF double, Mode enforce and
 *	OnStoreFailure accept, and starts an empty log; th_teardown removes
 *	it. Every th_ stage captures what it logs; th_logged and
 *	th_assert_logged look for text in it.
 *
 *	The stages pass the queue ID "QID1". th_content sends the headers
 *	(name, value pairs, NULL-terminated), end of headers, a one-line
 *	body, and end of message. th_end ends the message as the milter
 *	layer does once it made the edits; th_disconnect closes the
 *	connection.
 *
 *	th_assert_edits checks res against want (up to max, or to the first
 *	entry without a name): the same edits in the same order, no
 *	signatures, and the hold reason (NULL: none).
 */
#ifndef BM_TRANSACTION_HARNESS_H
#define BM_TRANSACTION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "snapshot.h"
#include "spf.h"
#include "transaction.h"

#define TH_KEYS 64
#define TH_CLASSES 12

#define TH_AR(result) { EDIT_INSERT_TOP, "Authentication-Results", \
	" mx.test.example;\n\tspf=" result " smtp.mailfrom=example.net", 0, 0 }
#define TH_ADD(name, value) { EDIT_ADD, name, value, 0, 0 }

enum th_way { INBOUND, OUTBOUND, LOCAL };

struct th_store {
	struct { char key[256]; unsigned long used; } bucket[TH_KEYS];
	size_t buckets;
	const char *full;		/* buckets whose key holds this are empty */
	bool down;			/* every call fails */
	unsigned charges, refunds;	/* round trips */
};

struct th_spf {
	enum spf_outcome inbound;
	const char *detail;
	unsigned checks;
};

struct th_edit {
	enum transaction_edit_op op;
	const char *name, *value;
	unsigned index, count;
};

extern struct th_store th_store;
extern struct th_spf th_spf;
extern struct snapshot th_snap;
extern struct transaction th_t;
extern const char *const th_classes[TH_CLASSES];
extern const char *const th_plain_headers[];

int th_group_setup(void **state);
int th_group_teardown(void **state);
int th_setup(void **state);
int th_teardown(void **state);
void th_log_capture(bool on);
bool th_logged(const char *text);
void th_assert_logged(const char *text);
void th_connect(enum th_way way, const char *cls);
enum verdict th_mail(enum th_way way, const char *cls);
enum verdict th_rcpt(void);
enum verdict th_rcpt_to(const char *rcpt);
void th_header(const char *name, const char *value);
enum verdict th_content(const char *const *headers, const struct transaction_result **res);
void th_end(enum verdict v);
void th_disconnect(void);
void th_assert_edits(const struct th_edit *want, size_t max, const char *hold,
	const struct transaction_result *res);

#endif
