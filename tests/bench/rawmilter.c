/*
 * rawmilter - the do-nothing filter of nullmilter.c without libmilter:
 * what the milter protocol itself costs, for scripts/bench's variant
 * "raw".
 *
 * It speaks the milter protocol itself, as leanly as this author knows
 * how: THREADS threads (default 64) each block in accept() on the one
 * listening socket, so no thread hands a connection to another; each
 * connection is read into a buffer as far as the socket has data, so a
 * run of commands that need no reply (macros, connect, HELO, headers,
 * end of headers) costs one recv(); the reply at end of message (the
 * inserted header and "continue") is one send(). It negotiates what
 * nullmilter and bulkmilter negotiate and answers what nullmilter
 * answers: continue to MAIL and RCPT, skip at the first body chunk, a
 * header "X-Null-Milter: seen" at end of message. It asks for no macros
 * and looks at nothing.
 *
 * It exists to measure, not to filter mail: a malformed command closes
 * the connection, and there is no configuration, logging or signal
 * handling.
 *
 *	rawmilter SOCKET [THREADS]	(unix:/PATH or inet:PORT@HOST)
 */
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "session.h"

#define RAW_WANTED_PROTOCOL (SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR | SMFIP_NR_HELO | \
			     SMFIP_NR_CONN | SMFIP_NR_EOH | SMFIP_NOUNKNOWN | SMFIP_NODATA)
/* A command's data: Postfix sends body chunks of at most 64 KB. */
#define RAW_DATA_MAX 65536
#define RAW_BUF_BYTES (2 * (RAW_DATA_MAX + 5))

static int listen_fd;

/* Appends one reply packet (command, data) to out; returns its new length. */
static size_t put_reply(unsigned char *out, size_t at, char cmd, const void *data, uint32_t len)
{
	uint32_t wire = htonl(len + 1);
	memcpy(out + at, &wire, 4);
	out[at + 4] = (unsigned char)cmd;
	if (len > 0)
		memcpy(out + at + 5, data, len);
	return at + 5 + len;
}

static int send_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The reply to one command into out (0 bytes: none); -1 ends the session. */
static long answer(char cmd, const unsigned char *data, uint32_t len, bool *skip_offered,
		   unsigned char *out)
{
	static const char header[] = "\0\0\0\0X-Null-Milter\0 seen";	/* index 0, name, value */
	switch (cmd) {
	case SMFIC_OPTNEG: {
		uint32_t v[3];
		if (len < sizeof(v))
			return -1;
		memcpy(v, data, sizeof(v));
		uint32_t offered = ntohl(v[2]);
		*skip_offered = offered & SMFIP_SKIP;
		v[0] = htonl(SMFI_PROT_VERSION);
		v[1] = htonl(ntohl(v[1]) & SMFIF_ADDHDRS);
		v[2] = htonl(offered & RAW_WANTED_PROTOCOL);
		return (long)put_reply(out, 0, SMFIC_OPTNEG, v, sizeof(v));
	}
	case SMFIC_MAIL:
	case SMFIC_RCPT:
		return (long)put_reply(out, 0, SMFIR_CONTINUE, NULL, 0);
	case SMFIC_BODY:
		return (long)put_reply(out, 0, *skip_offered ? SMFIR_SKIP : SMFIR_CONTINUE, NULL, 0);
	case SMFIC_BODYEOB: {
		size_t n = put_reply(out, 0, SMFIR_INSHEADER, header, sizeof(header));
		return (long)put_reply(out, n, SMFIR_CONTINUE, NULL, 0);
	}
	case SMFIC_QUIT:
		return -1;
	default:		/* macros, connect, HELO, headers, EOH, abort, QUIT_NC */
		return 0;
	}
}

static void serve(int fd)
{
	static _Thread_local unsigned char in[RAW_BUF_BYTES], out[256];
	size_t have = 0;
	bool skip_offered = false;

	for (;;) {
		ssize_t n = recv(fd, in + have, sizeof(in) - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		have += (size_t)n;
		size_t at = 0;
		while (have - at >= 5) {
			uint32_t len;
			memcpy(&len, in + at, 4);
			len = ntohl(len);
			if (len < 1 || len > RAW_DATA_MAX + 1)
				return;
			if (have - at < 4 + (size_t)len)
				break;
			long r = answer((char)in[at + 4], in + at + 5, len - 1, &skip_offered, out);
			if (r < 0 || (r > 0 && send_all(fd, out, (size_t)r) != 0))
				return;
			at += 4 + (size_t)len;
		}
		memmove(in, in + at, have - at);
		have -= at;
	}
}

static void *acceptor(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(listen_fd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("rawmilter: accept");
			exit(1);
		}
		serve(fd);
		close(fd);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t ss_len;
	int threads = argc > 2 ? atoi(argv[2]) : 64;
	int one = 1;

	if (argc < 2 || argc > 3 || threads < 1 || !session_parse_socket(argv[1], &ss, &ss_len)) {
		fprintf(stderr, "usage: rawmilter unix:/PATH|inet:PORT@HOST [THREADS]\n");
		return 2;
	}
	if (ss.ss_family == AF_UNIX)
		unlink(((struct sockaddr_un *)&ss)->sun_path);
	listen_fd = socket(ss.ss_family, SOCK_STREAM, 0);
	if (listen_fd < 0) {
		perror("rawmilter: socket");
		return 1;
	}
	if (ss.ss_family != AF_UNIX) {
		setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(listen_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	umask(0);
	if (bind(listen_fd, (struct sockaddr *)&ss, ss_len) != 0 || listen(listen_fd, 128) != 0) {
		perror("rawmilter: bind/listen");
		return 1;
	}
	for (int i = 1; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, acceptor, NULL) != 0) {
			perror("rawmilter: pthread_create");
			return 1;
		}
	}
	acceptor(NULL);
	return 0;
}
