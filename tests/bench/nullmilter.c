/*
 * nullmilter - a libmilter filter that does nothing: the floor under
 * every milter's cost.
 *
 * What it does: negotiates what bulkmilter negotiates (leading spaces,
 * SKIP, no replies to connect, HELO, headers and end of headers, no DATA
 * and unknown commands), answers nothing where no reply was negotiated
 * (libmilter logs an error through syslog for every reply given there,
 * which would add its cost to the floor), continue to MAIL and RCPT,
 * skips the body, and inserts one header
 * at end of message, so the MTA's side of the conversation is the same
 * as with a milter that signs. scripts/bench runs it as the variant
 * "null": what libmilter's threads, sockets and the MTA's milter client
 * cost per message before the filter does any work. bulkmilter's CPU
 * per message minus this is what bulkmilter itself spends.
 *
 * What it does not: look at anything. There is no configuration.
 *
 *	nullmilter SOCKET		(unix:/PATH or inet:PORT@HOST)
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* The protocol steps bulkmilter negotiates away or leaves unanswered. */
#define NULL_WANTED_PROTOCOL (SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR | SMFIP_NR_HELO | \
			      SMFIP_NR_CONN | SMFIP_NR_EOH | SMFIP_NOUNKNOWN | SMFIP_NODATA)

static sfsistat null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			       unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			       unsigned long *pf2, unsigned long *pf3)
{
	(void)ctx;
	(void)f2;
	(void)f3;
	*pf0 = f0 & SMFIF_ADDHDRS;
	*pf1 = f1 & NULL_WANTED_PROTOCOL;
	*pf2 = *pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	(void)ctx;
	(void)chunk;
	(void)len;
	return SMFIS_SKIP;
}

static sfsistat null_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	(void)ctx;
	(void)hostname;
	(void)hostaddr;
	return SMFIS_NOREPLY;
}

static sfsistat null_helo(SMFICTX *ctx, char *helo)
{
	(void)ctx;
	(void)helo;
	return SMFIS_NOREPLY;
}

static sfsistat null_eoh(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_NOREPLY;
}

static sfsistat null_header(SMFICTX *ctx, char *name, char *value)
{
	(void)ctx;
	(void)name;
	(void)value;
	return SMFIS_NOREPLY;
}

static sfsistat null_eom(SMFICTX *ctx)
{
	return smfi_insheader(ctx, 0, "X-Null-Milter", " seen") == MI_SUCCESS ? SMFIS_CONTINUE
									     : SMFIS_TEMPFAIL;
}

int main(int argc, char **argv)
{
	struct smfiDesc desc = {
		.xxfi_name = "nullmilter",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS,
		.xxfi_connect = null_connect,
		.xxfi_helo = null_helo,
		.xxfi_header = null_header,
		.xxfi_eoh = null_eoh,
		.xxfi_body = null_body,
		.xxfi_eom = null_eom,
		.xxfi_negotiate = null_negotiate,
	};

	if (argc != 2) {
		fprintf(stderr, "usage: nullmilter unix:/PATH|inet:PORT@HOST\n");
		return 2;
	}
	umask(0);	/* the MTA runs as another user */
	if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
	    smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, "nullmilter: cannot listen on %s\n", argv[1]);
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
