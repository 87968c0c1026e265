/*
 * direction - the inbound/outbound rule, in one place for the daemon and
 * bulkmilterctl explain.
 *
 * Local submission is told by the connect alone because that is all
 * Postfix's cleanup gives a milter for sendmail(1) mail: it pretends
 * "localhost [127.0.0.1]" with port 0, which no TCP client can have.
 */
#include "config.h"

#include <netinet/in.h>
#include <string.h>

#include "direction.h"

bool direction_local_submission(const char *hostname, const struct sockaddr *addr)
{
	if (hostname == NULL || addr == NULL || addr->sa_family != AF_INET)
		return false;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
	return sin->sin_port == 0 && strcmp(hostname, "localhost") == 0 &&
	       ntohl(sin->sin_addr.s_addr) == INADDR_LOOPBACK;
}

enum policy_direction direction_decide(const char *sasl, bool internal, bool local_submission)
{
	return (sasl && sasl[0]) || internal || local_submission ? DIRECTION_OUTBOUND
								 : DIRECTION_INBOUND;
}

const char *direction_name(enum policy_direction d)
{
	return d == DIRECTION_OUTBOUND ? "outbound" : "inbound";
}
