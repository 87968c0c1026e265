/*
 * NAME
 *	report - delivery status notifications (RFC 3464) and abuse
 *	reports (ARF, RFC 5965) read from a message
 * SYNOPSIS
 *	bool report_maybe(const char *content_type);
 *	enum report_kind report_parse(const char *content_type,
 *		const char *body, size_t len, struct report *r);
 *	enum report_kind report_parse_message(const char *msg, size_t len,
 *		struct report *r);
 *	const char *report_kind_name(enum report_kind k);
 * DESCRIPTION
 *	report_maybe says whether the milter should keep the body of a
 *	message whose top-level Content-Type value is content_type (NULL:
 *	none) to read it: multipart/report only (at most REPORT_BODY_MAX
 *	octets; a larger report is read in what was kept). The parser also
 *	finds a report nested in another multipart (a forwarded bounce),
 *	but keeping every multipart message would hold most newsletters.
 *
 *	report_parse reads the body of a message whose Content-Type is
 *	content_type; report_parse_message takes the whole message (its
 *	header block, an empty line, the body), as a file holds it. Both
 *	fill *r and return its kind:
 *
 *	REPORT_DSN: a message/delivery-status part (or RFC 6533's
 *	message/global-delivery-status). Each per-recipient field group
 *	gives one r->rcpt: the address of Final-Recipient (Original-
 *	Recipient when Final-Recipient is unusable), Action and Status as
 *	written (lower-cased). hard is true only for Action "failed" with
 *	a 5.x.x Status: a delayed, delivered or 4.x.x recipient is not a
 *	hard bounce.
 *
 *	REPORT_ARF: a message/feedback-report part. r->feedback_type is its
 *	Feedback-Type (lower-cased); complaint is true for abuse, fraud,
 *	virus and other (not for not-spam or auth-failure). The one
 *	recipient is Original-Rcpt-To, else the To address of the quoted
 *	original when it holds exactly one.
 *
 *	REPORT_NONE: no such part (a bounce written in prose, a message
 *	that is not a report at all); r holds nothing.
 *
 *	For both kinds, r->feedback_id is the first Feedback-ID header of
 *	the quoted original ending in ":bulkmilter", else its first one, (message/rfc822, text/rfc822-headers and their
 *	RFC 6533 "global" forms, or as a last resort any part whose text
 *	starts with a header block holding one), "" when there is none.
 *
 *	Shapes read: the report as the top-level multipart/report or nested
 *	in other multiparts (at most REPORT_DEPTH_MAX deep, REPORT_PARTS_MAX
 *	parts in all), report-type missing or wrong, CRLF or LF line ends,
 *	folded fields, base64 parts, "rfc822;" with or without angle
 *	brackets, the per-message group missing, blank lines with spaces.
 *	The parser never writes outside r and allocates only to decode
 *	base64, freed before it returns.
 * DIAGNOSTICS
 *	None: malformed input reads as REPORT_NONE or as the recipients that
 *	could be read. r->rcpts counts every per-recipient group; those past
 *	REPORT_RCPTS_MAX are counted, not kept.
 */
#ifndef BM_REPORT_H
#define BM_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "address.h"

/* Body octets of one message the milter keeps to read a report from:
 * Postfix's own bounces quote the original up to bounce_size_limit
 * (50 kB by default), the report parts come first. */
#define REPORT_BODY_MAX (256 * 1024)
/* Recipients of one report kept (the rest are counted only). */
#define REPORT_RCPTS_MAX 64
/* MIME nesting and parts looked at: reports are two or three parts. */
#define REPORT_DEPTH_MAX 4
#define REPORT_PARTS_MAX 64
/* A Feedback-ID value we keep (ours are far shorter). */
#define REPORT_FEEDBACK_ID_MAX 640

enum report_kind { REPORT_NONE = 0, REPORT_DSN, REPORT_ARF };

struct report_rcpt {
	char address[ADDRESS_MAX];
	char action[16];		/* "failed", "delayed", ... or "" */
	char status[16];		/* "5.1.1" or "" */
	bool hard;			/* failed with a 5.x.x status */
};

struct report {
	enum report_kind kind;
	struct report_rcpt rcpt[REPORT_RCPTS_MAX];
	size_t nrcpt;			/* kept */
	size_t rcpts;			/* seen */
	char feedback_type[32];		/* ARF */
	bool complaint;			/* ARF of a complaint type */
	char feedback_id[REPORT_FEEDBACK_ID_MAX];
};

bool report_maybe(const char *content_type);
enum report_kind report_parse(const char *content_type, const char *body, size_t len,
	struct report *r);
enum report_kind report_parse_message(const char *msg, size_t len, struct report *r);
const char *report_kind_name(enum report_kind k);

#endif
