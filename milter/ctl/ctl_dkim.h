/*
 * NAME
 *	ctl_dkim - bulkmilterctl dkim check|keygen, and explain's signing
 *	authority
 * SYNOPSIS
 *	int ctl_dkim(const char *config, bool json, int argc, char **argv);
 *	void ctl_dkim_explain(const struct snapshot *s, bool outbound,
 *		const char *sasl, const char *from, bool json);
 * DESCRIPTION
 *	ctl_dkim runs "dkim check [DOMAIN]" or "dkim keygen --algorithm
 *	rsa-2048|ed25519 DOMAIN SELECTOR DIR" (argv[0] is "dkim") and
 *	returns the exit status: 0 all ok, 1 an entry not ok or a failure,
 *	2 a usage error.
 *
 *	ctl_dkim_explain prints whether the From address or domain from may
 *	be signed for the SASL login sasl under SigningAuthority, and why
 *	(inbound mail: never signed):
 *	a "signing authority: ..." line, or with json a ",\"signing_authority\":
 *	{...}" member to go inside explain's object.
 */
#ifndef BM_CTL_DKIM_H
#define BM_CTL_DKIM_H

#include <stdbool.h>

#include "snapshot.h"

int ctl_dkim(const char *config, bool json, int argc, char **argv);
void ctl_dkim_explain(const struct snapshot *s, bool outbound, const char *sasl, const char *from,
	bool json);

#endif
