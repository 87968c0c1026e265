/*
 * NAME
 *	direction - whether a message is inbound or outbound
 * SYNOPSIS
 *	bool direction_local_submission(const char *hostname, const struct sockaddr *addr);
 *	enum policy_direction direction_decide(const char *sasl, bool internal,
 *		bool local_submission);
 *	const char *direction_name(enum policy_direction d);
 * DESCRIPTION
 *	The one rule (SPEC, Direction), used by the daemon at MAIL FROM and
 *	by bulkmilterctl explain, so the two never disagree: a message is
 *	outbound when the client authenticated (sasl, the {auth_authen}
 *	login, not NULL or ""), its address is in InternalHosts (internal),
 *	or it was submitted locally; otherwise inbound.
 *
 *	direction_local_submission recognises mail from sendmail(1)
 *	(Postfix's non_smtpd_milters): the connect Postfix's cleanup
 *	emulates for it is "localhost", 127.0.0.1, port 0. hostname and
 *	addr may be NULL (not local).
 *
 *	direction_name is "inbound" or "outbound", for logs and explain.
 * DIAGNOSTICS
 *	None: pure functions of their arguments.
 */
#ifndef BM_DIRECTION_H
#define BM_DIRECTION_H

#include <stdbool.h>
#include <sys/socket.h>

#include "policy.h"

bool direction_local_submission(const char *hostname, const struct sockaddr *addr);
enum policy_direction direction_decide(const char *sasl, bool internal, bool local_submission);
const char *direction_name(enum policy_direction d);

#endif
