/*
 * NAME
 *	address - mail addresses from envelopes and From headers
 * SYNOPSIS
 *	int address_from_envelope(const char *arg, char *buf, size_t len);
 *	int address_from_header(const char *value, char *buf, size_t len);
 *	const char *address_domain(const char *addr);
 *	const char *address_skip_comment(const char *p);
 * DESCRIPTION
 *	address_from_envelope takes a MAIL FROM/RCPT TO argument ("<a@b>",
 *	"a@b", "<>") and writes the bare address, "" for the null sender.
 *	address_from_header takes a From header value ("Alice <a@b>",
 *	"a@b (Alice)", "\"x, y\" <a@b>", folded) and writes the one
 *	addr-spec it holds. Both return 0, or -1 when the input holds no
 *	single valid address or it does not fit in len (ADDRESS_MAX).
 *	address_domain returns the part after the last '@', or NULL.
 *	address_skip_comment skips an RFC 5322 comment starting at p ('('),
 *	nested and with quoted-pairs, and returns the char after it, or NULL
 *	when it is not closed.
 */
#ifndef BM_ADDRESS_H
#define BM_ADDRESS_H

#include <stddef.h>

/* RFC 5321: 64 local + '@' + 255 domain */
#define ADDRESS_MAX 321

int address_from_envelope(const char *arg, char *buf, size_t len);
int address_from_header(const char *value, char *buf, size_t len);
const char *address_domain(const char *addr);
const char *address_skip_comment(const char *p);

#endif
