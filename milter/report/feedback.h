/*
 * NAME
 *	feedback - the Feedback-ID header that ties a report to the account
 *	that sent the original
 * SYNOPSIS
 *	int feedback_key_file(const char *path, struct feedback_key *k,
 *		char *err, size_t errlen);
 *	void feedback_key_secret(const void *secret, size_t len,
 *		struct feedback_key *k);
 *	int feedback_make(const struct feedback_key *k, const char *cls,
 *		const char *account, char *buf, size_t len);
 *	int feedback_read(const struct feedback_key *k, const char *value,
 *		char *cls, size_t clen, char *account, size_t alen);
 * DESCRIPTION
 *	Mail of a class with "suppress" carries "Feedback-ID:
 *	CLASS:TOKEN:bulkmilter" (the shape Gmail's feedback loop reads:
 *	colon-separated, the sender's id last). Reports quote it back; the
 *	token names the account without a lookup, so writing it costs no
 *	Redis round trip, and without exposing it, so the header says
 *	nothing to its readers:
 *
 *	    TOKEN = base64url(TAG || AES-256-CTR(Kenc, IV = TAG, ACCOUNT))
 *	    TAG   = HMAC-SHA256(Kmac, CLASS NUL ACCOUNT), first 16 octets
 *
 *	This is SIV (RFC 5297's construction, HMAC as its PRF): the tag is
 *	the keyed hash of class and account, and also the IV, so a token is
 *	the same for every message of an account (feedback loops group by
 *	it), reveals nothing but the account's length, and cannot be made
 *	or altered without the keys: feedback_read decrypts and recomputes
 *	the tag, and any other token, class or account fails. A keyed hash
 *	alone could not be read back without a table of every account's
 *	hash, kept per message.
 *
 *	Kmac and Kenc are HMAC-SHA256 of the secret with two labels
 *	(feedback_key_secret). The secret is FeedbackKeyFile's content
 *	(feedback_key_file: at least FEEDBACK_SECRET_MIN octets, one
 *	trailing line end dropped) or, without that setting, a random one
 *	the fleet shares in Redis.
 *
 *	feedback_make writes the header value (no leading space) into buf;
 *	feedback_read takes a value as a report quotes it (white space
 *	around it allowed) and writes the class and account it names.
 * DIAGNOSTICS
 *	feedback_key_file: 0, or -1 with err (unreadable, too short, too
 *	long; the secret never appears in it). feedback_make: 0, or -1 when
 *	buf is too small or OpenSSL fails. feedback_read: 0 for a verified
 *	value, -1 for anything else (not ours, forged, cut, other keys).
 */
#ifndef BM_FEEDBACK_H
#define BM_FEEDBACK_H

#include <stddef.h>

#define FEEDBACK_SECRET_MIN 16		/* octets of FeedbackKeyFile at least */
#define FEEDBACK_SECRET_MAX 4096
#define FEEDBACK_TAG_LEN 16
/* A whole value: class (64), token of a 320-octet account, suffix. */
#define FEEDBACK_VALUE_MAX 600
#define FEEDBACK_SUFFIX "bulkmilter"

struct feedback_key {
	unsigned char mac[32];
	unsigned char enc[32];
};

int feedback_key_file(const char *path, struct feedback_key *k, char *err, size_t errlen);
void feedback_key_secret(const void *secret, size_t len, struct feedback_key *k);
int feedback_make(const struct feedback_key *k, const char *cls, const char *account, char *buf,
	size_t len);
int feedback_read(const struct feedback_key *k, const char *value, char *cls, size_t clen,
	char *account, size_t alen);

#endif
