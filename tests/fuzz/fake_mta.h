/*
 * NAME
 *	fake_mta - the MTA's side of libmilter, for the fuzz targets that
 *	drive bulkmilter's callbacks (callbacks_desc) through a message
 * SYNOPSIS
 *	#include "fake_mta.h"
 *
 *	void fake_mta_start(void);
 *	sfsistat fake_mta_run(const struct fake_mta_message *m,
 *		struct fake_mta_result *r);
 *	size_t fake_mta_parse(const char *text, char *arena,
 *		struct fake_mta_message *m);
 *	bool fake_mta_ar_claims(const char *value, const char *authserv_id);
void fake_mta_check_removals(const struct fake_mta_message *m, const struct fake_mta_result *r);
 *	void fake_mta_check_removals(const struct fake_mta_message *m,
 *		const struct fake_mta_result *r);
 *	extern const char fake_mta_authserv_id[];
 * DESCRIPTION
 *	fake_mta_start (once per process) writes a configuration to the
 *	scratch directory and installs it as the daemon's snapshot: AuthservID
 *	fake_mta_authserv_id, a policy whose outbound class has bulk rules
 *	and every bulk-require check but no rate limit (so no Redis is ever
 *	asked), and a KeyTable and refile: SigningTable that sign every
 *	outbound From domain with an Ed25519 key. No SPF helpers run: SPF
 *	of inbound mail is skipped, egress SPF answers temperror.
 *
 *	fake_mta_run plays one connection: negotiate (all the steps and
 *	flags Postfix offers), connect, HELO, MAIL FROM, each RCPT TO, each
 *	header, end of headers, the body in chunks, end of message, close;
 *	an outbound message comes from a SASL client, an inbound one from an
 *	outside address. A stage that ends the transaction (reject,
 *	tempfail) ends it as Postfix would: abort, then close. It returns
 *	the final reply and records in r what the milter asked the MTA to
 *	do. This libmilter replacement checks what every MTA relies on and
 *	aborts (a fuzz crash) when the milter breaks it: a reply is a 4xx or
 *	5xx code with a text without line breaks or controls; a header added
 *	or inserted has a valid name and a value whose every line break is
 *	a fold (no header injection); a removal names a header the message
 *	has; a hold reason is one line.
 *
 *	fake_mta_parse splits a message text (headers, an empty line, the
 *	body; LF or CRLF) into m's headers and body the way Postfix's
 *	cleanup passes them: a header is NAME ':' value, continuation lines
 *	start with white space, and the first line that is neither starts
 *	the body. Names and values are copied into arena (strlen(text) + 1
 *	bytes), the body is left in text. It returns the number of headers
 *	(at most FAKE_MTA_HEADERS_MAX; the rest then goes to the body).
 *
 *	fake_mta_ar_claims is RFC 8601's reading of an
 *	Authentication-Results value: whether its authserv-id (after CFWS,
 *	comments nested and with quoted-pairs; a token or a quoted-string)
 *	is authserv_id, ignoring case: a header the milter must remove.
 *	fake_mta_check_removals checks what the milter removed from a
 *	message it accepted at end of message: every TagHeader (X-Bulk-Class)
 *	copy, and exactly the Authentication-Results headers that claim our
 *	authserv-id; when more than HEADER_FACTS_FORGED_AR_MAX claim it, the
 *	message must have been rejected instead.
 */
#ifndef BM_FAKE_MTA_H
#define BM_FAKE_MTA_H

#include <stdbool.h>
#include <stddef.h>

#include <libmilter/mfapi.h>

#define FAKE_MTA_HEADERS_MAX 256
#define FAKE_MTA_RCPTS_MAX 8
#define FAKE_MTA_EDITS_MAX 512

extern const char fake_mta_authserv_id[];

struct fake_mta_message {
	bool outbound;
	const char *helo;
	const char *mail_from;		/* the MAIL FROM argument, "<a@b>" */
	const char *rcpts[FAKE_MTA_RCPTS_MAX];
	size_t rcpt_count;
	const char *names[FAKE_MTA_HEADERS_MAX];
	const char *values[FAKE_MTA_HEADERS_MAX];
	size_t header_count;
	const char *body;		/* LF line ends; sent as CRLF */
	size_t body_len;
};

/* One header change: 'a' added, 'i' inserted, 'r' removed (index of its name). */
struct fake_mta_edit {
	char op;
	int index;
	char name[64];
};

struct fake_mta_result {
	sfsistat reply;				/* final: of the stage that ended it */
	char stage[16];				/* "envfrom", ..., "eom" */
	struct fake_mta_edit edits[FAKE_MTA_EDITS_MAX];
	size_t edit_count;
	bool held;
};

void fake_mta_start(void);
sfsistat fake_mta_run(const struct fake_mta_message *m, struct fake_mta_result *r);
size_t fake_mta_parse(const char *text, char *arena, struct fake_mta_message *m);
bool fake_mta_ar_claims(const char *value, const char *authserv_id);
void fake_mta_check_removals(const struct fake_mta_message *m, const struct fake_mta_result *r);

#endif
