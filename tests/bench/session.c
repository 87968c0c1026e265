/*
 * session - the MTA side of one milter connection (see session.h).
 *
 * Packets are a 4-byte big-endian length (command byte included), the
 * command byte and its data (libmilter's mfdef.h). Each outgoing packet
 * is built in session->out and written with one write(), as Postfix's
 * buffered stream sends it; body chunks go straight from the shared
 * body text. Replies are read until a final one (continue, accept,
 * reject, tempfail, discard, reply code, skip); what comes before it
 * (header changes, quarantine, progress) is counted by kind.
 *
 * Macros: the lists the milter asked for in its SMFIC_OPTNEG answer,
 * else Postfix 3.7's defaults; a macro we have no value for (a TLS
 * cipher, {auth_authen} without --sasl) is left out, as Postfix does.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "session.h"

/* Postfix's milter_command_timeout is 30 s; a milter that has not
 * answered in 30 s has failed the run. */
#define REPLY_TIMEOUT_S 30
/* Largest reply packet we accept: a milter never needs more than a
 * replaced body chunk (SMFIP_MDS_1M). */
#define SESSION_PACKET_IN (1024 * 1024 + 64)
/* Body chunks, as libmilter's MILTER_CHUNK_SIZE. */
#define BODY_CHUNK MILTER_CHUNK_SIZE
/* First size of the output buffer; it doubles when a chunk needs more. */
#define SESSION_OUT_INITIAL 4096

static void session_out_of_memory(void)
{
	fputs("milterload: out of memory\n", stderr);
	exit(2);
}


struct code_name {
	int code;
	const char *name;
};

static const struct code_name command_names[] = {
	{SMFIC_ABORT, "SMFIC_ABORT"}, {SMFIC_BODY, "SMFIC_BODY"},
	{SMFIC_CONNECT, "SMFIC_CONNECT"}, {SMFIC_MACRO, "SMFIC_MACRO"},
	{SMFIC_BODYEOB, "SMFIC_BODYEOB"}, {SMFIC_HELO, "SMFIC_HELO"},
	{SMFIC_HEADER, "SMFIC_HEADER"}, {SMFIC_MAIL, "SMFIC_MAIL"},
	{SMFIC_EOH, "SMFIC_EOH"}, {SMFIC_OPTNEG, "SMFIC_OPTNEG"},
	{SMFIC_QUIT, "SMFIC_QUIT"}, {SMFIC_RCPT, "SMFIC_RCPT"},
	{SMFIC_DATA, "SMFIC_DATA"}, {0, NULL},
};

/* Replies that end a command's answer. */
static const struct code_name final_names[] = {
	{SMFIR_CONTINUE, "SMFIR_CONTINUE"}, {SMFIR_ACCEPT, "SMFIR_ACCEPT"},
	{SMFIR_REJECT, "SMFIR_REJECT"}, {SMFIR_TEMPFAIL, "SMFIR_TEMPFAIL"},
	{SMFIR_DISCARD, "SMFIR_DISCARD"}, {SMFIR_REPLYCODE, "SMFIR_REPLYCODE"},
	{SMFIR_SKIP, "SMFIR_SKIP"}, {SMFIR_CONN_FAIL, "SMFIR_CONN_FAIL"},
	{SMFIR_SHUTDOWN, "SMFIR_SHUTDOWN"}, {0, NULL},
};

/* Replies that come before the final one: modifications (after EOM)
 * and progress. Their index is their counter in struct stats. */
static const struct code_name action_names[] = {
	{SMFIR_ADDHEADER, "SMFIR_ADDHEADER"}, {SMFIR_INSHEADER, "SMFIR_INSHEADER"},
	{SMFIR_CHGHEADER, "SMFIR_CHGHEADER"}, {SMFIR_QUARANTINE, "SMFIR_QUARANTINE"},
	{SMFIR_ADDRCPT, "SMFIR_ADDRCPT"}, {SMFIR_ADDRCPT_PAR, "SMFIR_ADDRCPT_PAR"},
	{SMFIR_DELRCPT, "SMFIR_DELRCPT"}, {SMFIR_CHGFROM, "SMFIR_CHGFROM"},
	{SMFIR_REPLBODY, "SMFIR_REPLBODY"}, {SMFIR_PROGRESS, "SMFIR_PROGRESS"},
	{0, NULL},
};
_Static_assert(sizeof action_names / sizeof action_names[0] - 1 == SESSION_ACTION_KINDS,
	       "session.h's SESSION_ACTION_KINDS counts action_names");

const char *session_action_name(int i)
{
	return action_names[i].name;
}

static int code_index(const struct code_name *t, int code)
{
	for (int i = 0; t[i].name; i++)
		if (t[i].code == code)
			return i;
	return -1;
}

static const char *code_name(const struct code_name *t, int code)
{
	static const char unknown[] = "unknown";
	int i = code_index(t, code);
	return i < 0 ? unknown : t[i].name;
}

/* Postfix 3.7's milter_*_macros defaults, used for a stage the milter
 * asked nothing for. */
static const char *const default_macros[SESSION_MACRO_STAGES] = {
	[SMFIM_CONNECT] = "j {daemon_name} {daemon_addr} v _",
	[SMFIM_HELO] = "",
	[SMFIM_ENVFROM] = "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
	[SMFIM_ENVRCPT] = "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
	[SMFIM_DATA] = "i",
	[SMFIM_EOM] = "i",
	[SMFIM_EOH] = "i",
};

/* The command each macro stage goes with. */
static const char macro_stage_command[SESSION_MACRO_STAGES] = {
	[SMFIM_CONNECT] = SMFIC_CONNECT, [SMFIM_HELO] = SMFIC_HELO,
	[SMFIM_ENVFROM] = SMFIC_MAIL, [SMFIM_ENVRCPT] = SMFIC_RCPT,
	[SMFIM_DATA] = SMFIC_DATA, [SMFIM_EOM] = SMFIC_BODYEOB,
	[SMFIM_EOH] = SMFIC_EOH,
};

const char *const session_stage_names[STAGE_COUNT] = {
	"open", "connect", "helo", "mail", "rcpt", "data", "header", "eoh",
	"body", "eom", "message",
};

const char *const session_outcome_names[OUT_COUNT] = {
	"delivered", "accepted-early", "rejected", "tempfailed", "discarded",
	"no-recipient", "failed",
};

double session_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void session_sample(struct samples *s, double v)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
		if (!s->v)
			session_out_of_memory();
	}
	s->v[s->n++] = v;
}

void session_stats_free(struct stats *st)
{
	for (int i = 0; i < STAGE_COUNT; i++) {
		free(st->lat[i].v);
		st->lat[i] = (struct samples){0};
	}
}

static bool session_fail(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->error, sizeof s->error, fmt, ap);
	va_end(ap);
	return false;
}

/* ------------------------------------------------------------- wire */

/* Packets are appended to s->out (out_begin, out_bytes..., out_end)
 * and written by out_flush(), which runs only when a reply is awaited
 * or the connection ends: this is how Postfix's buffered stream sends
 * macros with their command and a run of unanswered commands (headers)
 * together, and it matters: how the bytes are cut into write() calls
 * decides whether Nagle's algorithm and delayed ACKs stall an inet:
 * socket. */
static void out_reserve(struct session *s, size_t n)
{
	if (s->out_len + n <= s->out_cap)
		return;
	size_t cap = s->out_cap ? s->out_cap : SESSION_OUT_INITIAL;
	while (cap < s->out_len + n)
		cap *= 2;
	unsigned char *grown = realloc(s->out, cap);
	if (!grown)
		session_out_of_memory();
	s->out = grown;
	s->out_cap = cap;
}

static void out_bytes(struct session *s, const void *p, size_t n)
{
	out_reserve(s, n);
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

static void out_begin(struct session *s, char cmd)
{
	unsigned char head[5] = {0, 0, 0, 0, (unsigned char)cmd};
	s->packet_at = s->out_len;
	out_bytes(s, head, sizeof head);
}

static void out_str(struct session *s, const char *str)
{
	out_bytes(s, str, strlen(str) + 1);
}

static void out_u32(struct session *s, uint32_t v)
{
	uint32_t be = htonl(v);
	out_bytes(s, &be, sizeof be);
}

/* Fills in the length of the packet begun last. */
static void out_end(struct session *s)
{
	uint32_t be = htonl((uint32_t)(s->out_len - s->packet_at - 4));
	memcpy(s->out + s->packet_at, &be, 4);
	if (s->trace)
		fprintf(stderr, "> %s (%zu bytes)\n", code_name(command_names, s->out[s->packet_at + 4]),
			s->out_len - s->packet_at - 5);
}

/* Writes what is buffered, in pieces of at most mta->write_size bytes:
 * Postfix's stream writes whenever its 4096-byte buffer is full. */
static bool out_flush(struct session *s)
{
	const unsigned char *p = s->out;
	size_t n = s->out_len, piece = s->mta->write_size ? s->mta->write_size : n;
	s->out_len = 0;
	while (n > 0) {
		ssize_t w = write(s->fd, p, n < piece ? n : piece);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return session_fail(s, "write: %s", w < 0 ? strerror(errno) : "closed");
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static bool read_all(struct session *s, void *p, size_t n)
{
	unsigned char *b = p;
	while (n > 0) {
		ssize_t r = read(s->fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return session_fail(s, "read: %s", r < 0 ? strerror(errno) : "milter closed the connection");
		b += r;
		n -= (size_t)r;
	}
	return true;
}

/* Reads one packet into s->in; returns its command byte, or -1. */
static int read_packet(struct session *s)
{
	uint32_t be, len;
	if (!read_all(s, &be, sizeof be))
		return -1;
	len = ntohl(be);
	if (len == 0 || len > SESSION_PACKET_IN) {
		session_fail(s, "bad packet length %lu", (unsigned long)len);
		return -1;
	}
	if (len > s->in_cap) {
		unsigned char *grown = realloc(s->in, len);
		if (!grown)
			session_out_of_memory();
		s->in = grown;
		s->in_cap = len;
	}
	if (!read_all(s, s->in, len))
		return -1;
	s->in_len = len;
	return s->in[0];
}

/* Reads replies up to the final one, counting the actions before it;
 * returns the final reply's code, or -1. */
static int await_reply(struct session *s, struct stats *st)
{
	for (;;) {
		int cmd = read_packet(s);
		int i;
		if (cmd < 0)
			return -1;
		if (s->trace)
			fprintf(stderr, "< %s\n", code_index(final_names, cmd) >= 0
				? code_name(final_names, cmd) : code_name(action_names, cmd));
		if (code_index(final_names, cmd) >= 0)
			return cmd;
		i = code_index(action_names, cmd);
		if (i < 0) {
			session_fail(s, "unknown reply '%c' (0x%02x)", isprint(cmd) ? cmd : '?', cmd);
			return -1;
		}
		st->action[i]++;
	}
}

/* Ends the packet begun last. Unless the milter negotiated
 * NOREPLY_FLAG away, sends what is buffered and times the answer into
 * STAGE. Returns the final reply (SMFIR_CONTINUE when none is
 * expected) or -1. */
static int exchange(struct session *s, struct stats *st, uint32_t noreply_flag, enum stage stage)
{
	double t0;
	int r;
	out_end(s);
	if (s->protocol & noreply_flag)
		return SMFIR_CONTINUE;
	t0 = session_now_ms();
	if (!out_flush(s))
		return -1;
	r = await_reply(s, st);
	if (r >= 0)
		session_sample(&st->lat[stage], session_now_ms() - t0);
	return r;
}

/* ----------------------------------------------------------- macros */

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* Our value of macro NAME ("{x}" or "x"), or NULL: we do not have it. */
static const char *macro_value(const struct session *s, const char *name, char *buf, size_t size)
{
	char bare[64];
	size_t n = strlen(name);
	if (n >= 2 && name[0] == '{' && name[n - 1] == '}') {
		name++;
		n -= 2;
	}
	if (n >= sizeof bare)
		return NULL;
	memcpy(bare, name, n);
	bare[n] = '\0';

	if (!strcmp(bare, "j"))
		return "mta.bench.example";
	if (!strcmp(bare, "daemon_name"))
		return "milterload";
	if (!strcmp(bare, "daemon_addr"))
		return "127.0.0.1";
	if (!strcmp(bare, "v"))
		return "milterload";
	if (!strcmp(bare, "_")) {
		snprintf(buf, size, "%s [%s]", s->mta->helo, s->mta->client_addr);
		return buf;
	}
	if (!strcmp(bare, "client_addr"))
		return s->mta->client_addr;
	if (!strcmp(bare, "client_name"))
		return s->mta->helo;
	if (!strcmp(bare, "i"))
		return s->qid[0] ? s->qid : NULL;
	if (!strcmp(bare, "auth_type"))
		return s->mta->sasl ? "PLAIN" : NULL;
	if (!strcmp(bare, "auth_authen"))
		return s->mta->sasl;
	if (!strcmp(bare, "mail_addr"))
		return s->mta->from;
	if (!strcmp(bare, "mail_host"))
		return domain_of(s->mta->from);
	if (!strcmp(bare, "mail_mailer") || !strcmp(bare, "rcpt_mailer"))
		return "smtp";
	if (!strcmp(bare, "rcpt_addr"))
		return s->rcpt_index ? s->rcpt : NULL;
	if (!strcmp(bare, "rcpt_host"))
		return s->rcpt_index ? domain_of(s->rcpt) : NULL;
	return NULL;
}

/* Buffers SMFIC_MACRO for a stage, if any of its macros has a value. */
static void send_macros(struct session *s, int stage)
{
	const char *list = s->macros[stage] ? s->macros[stage] : default_macros[stage];
	char copy[512], *save = NULL, *name;
	char buf[320];
	size_t start = s->out_len;
	bool any = false;

	snprintf(copy, sizeof copy, "%s", list);
	out_begin(s, SMFIC_MACRO);
	out_bytes(s, &macro_stage_command[stage], 1);
	for (name = strtok_r(copy, " ,", &save); name; name = strtok_r(NULL, " ,", &save)) {
		const char *v = macro_value(s, name, buf, sizeof buf);
		if (!v)
			continue;
		out_str(s, name);
		out_str(s, v);
		any = true;
	}
	if (any)
		out_end(s);
	else
		s->out_len = start;
}

/* ---------------------------------------------------------- session */

bool session_parse_socket(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	if (!strncmp(spec, "unix:", 5) || !strncmp(spec, "local:", 6)) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		const char *path = strchr(spec, ':') + 1;
		if (strlen(path) >= sizeof un->sun_path)
			return false;
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, path);
		*len = sizeof *un;
		return true;
	}
	if (!strncmp(spec, "inet:", 5) || !strncmp(spec, "inet6:", 6)) {
		/* inet:PORT@HOST, as libmilter writes it */
		char port[16], host[256];
		const char *p = strchr(spec, ':') + 1, *at = strchr(p, '@');
		struct addrinfo hints = {0}, *ai;
		if (!at || (size_t)(at - p) >= sizeof port || strlen(at + 1) >= sizeof host)
			return false;
		memcpy(port, p, (size_t)(at - p));
		port[at - p] = '\0';
		strcpy(host, at + 1);
		hints.ai_family = spec[4] == '6' ? AF_INET6 : AF_INET;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(host, port, &hints, &ai) != 0)
			return false;
		memcpy(ss, ai->ai_addr, ai->ai_addrlen);
		*len = ai->ai_addrlen;
		freeaddrinfo(ai);
		return true;
	}
	return false;
}

void session_close(struct session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->out_len = 0;
	for (int i = 0; i < SESSION_MACRO_STAGES; i++) {
		free(s->macros[i]);
		s->macros[i] = NULL;
	}
}

/* Reads the milter's SMFIC_OPTNEG answer: version, actions, protocol,
 * then (stage, "macro list") pairs. */
static bool parse_optneg(struct session *s)
{
	const unsigned char *p = s->in + 1, *end = s->in + s->in_len;
	uint32_t v[3];
	if (s->in_len < 1 + MILTER_OPTLEN)
		return session_fail(s, "short SMFIC_OPTNEG reply");
	for (int i = 0; i < 3; i++, p += 4) {
		memcpy(&v[i], p, 4);
		v[i] = ntohl(v[i]);
	}
	if (v[0] < 2 || v[0] > SMFI_PROT_VERSION)
		return session_fail(s, "milter protocol version %lu", (unsigned long)v[0]);
	s->actions = v[1];
	s->protocol = v[2];
	while (end - p >= 5) {
		uint32_t stage;
		const unsigned char *nul;
		memcpy(&stage, p, 4);
		stage = ntohl(stage);
		p += 4;
		nul = memchr(p, '\0', (size_t)(end - p));
		if (!nul)
			return session_fail(s, "unterminated macro list in SMFIC_OPTNEG");
		if (stage < SESSION_MACRO_STAGES) {
			free(s->macros[stage]);
			s->macros[stage] = strdup((const char *)p);
		}
		p = nul + 1;
	}
	if (s->trace) {
		fprintf(stderr, "negotiated: version %lu, actions 0x%lx, protocol 0x%lx\n",
			(unsigned long)v[0], (unsigned long)s->actions, (unsigned long)s->protocol);
		for (int i = 0; i < SESSION_MACRO_STAGES; i++)
			if (s->macros[i])
				fprintf(stderr, "  macros for %s: %s\n",
					code_name(command_names, macro_stage_command[i]), s->macros[i]);
	}
	return true;
}

/* Opens a connection and takes it through OPTNEG, CONNECT and HELO.
 * False when it failed or the milter refused the connection. */
bool session_open(struct session *s, const struct mta_profile *mta, struct stats *st)
{
	struct timeval tv = {REPLY_TIMEOUT_S, 0};
	double t0 = session_now_ms();
	int r, one = 1;
	uint16_t client_port = htons(54321);
	bool v6 = strchr(mta->client_addr, ':') != NULL;

	s->mta = mta;
	s->fd = socket(s->mta->milter.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		return session_fail(s, "socket: %s", strerror(errno));
	setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (s->mta->nodelay && s->mta->milter.ss_family != AF_UNIX)
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(s->fd, (struct sockaddr *)&s->mta->milter, s->mta->milter_len) < 0)
		return session_fail(s, "connect %s: %s", s->mta->milter_name, strerror(errno));
	st->sessions++;

	out_begin(s, SMFIC_OPTNEG);
	out_u32(s, SMFI_PROT_VERSION);
	out_u32(s, SMFI_CURR_ACTS);
	out_u32(s, SMFI_CURR_PROT);
	out_end(s);
	if (!out_flush(s))
		return false;
	if ((r = read_packet(s)) < 0)
		return false;
	if (r != SMFIC_OPTNEG)
		return session_fail(s, "expected SMFIC_OPTNEG, milter sent '%c'", isprint(r) ? r : '?');
	if (!parse_optneg(s))
		return false;
	session_sample(&st->lat[STAGE_OPEN], session_now_ms() - t0);

	if (!(s->protocol & SMFIP_NOCONNECT)) {
		char family = v6 ? SMFIA_INET6 : SMFIA_INET;
		send_macros(s, SMFIM_CONNECT);
		out_begin(s, SMFIC_CONNECT);
		out_str(s, s->mta->helo);
		out_bytes(s, &family, 1);
		out_bytes(s, &client_port, 2);
		out_str(s, s->mta->client_addr);
		r = exchange(s, st, SMFIP_NR_CONN, STAGE_CONNECT);
		if (r < 0)
			return false;
		if (r != SMFIR_CONTINUE && r != SMFIR_ACCEPT)
			return session_fail(s, "milter answered %s to SMFIC_CONNECT", code_name(final_names, r));
	}
	if (!(s->protocol & SMFIP_NOHELO)) {
		send_macros(s, SMFIM_HELO);
		out_begin(s, SMFIC_HELO);
		out_str(s, s->mta->helo);
		r = exchange(s, st, SMFIP_NR_HELO, STAGE_HELO);
		if (r < 0)
			return false;
	}
	return true;
}

bool session_flush(struct session *s)
{
	return out_flush(s);
}

void session_quit(struct session *s)
{
	if (s->fd >= 0) {
		out_begin(s, SMFIC_QUIT);
		out_end(s);
		out_flush(s);
	}
	session_close(s);
}

/* Whether a final reply ends the message (and how), or lets it go on. */
static bool reply_ends_message(int r, enum outcome *out)
{
	switch (r) {
	case SMFIR_CONTINUE: case SMFIR_SKIP:
		return false;
	case SMFIR_ACCEPT: *out = OUT_ACCEPTED_EARLY; return true;
	case SMFIR_DISCARD: *out = OUT_DISCARDED; return true;
	case SMFIR_REJECT: *out = OUT_REJECTED; return true;
	case SMFIR_REPLYCODE: *out = OUT_REJECTED; return true;	/* 4xx or 5xx text */
	default: *out = OUT_TEMPFAILED; return true;
	}
}

/* Sends one message; returns its outcome. OUT_FAILED leaves the
 * connection unusable. */
enum outcome session_message(struct session *s, struct stats *st, unsigned long number)
{
	static const char *const stamp = "Tue, 01 Oct 2024 12:00:00 +0000";
	enum outcome out = OUT_DELIVERED;
	double t_mail = session_now_ms();
	char line[1280], rcpt1[320];
	unsigned accepted = 0;
	int r;
	const char *at = strchr(s->mta->to, '@');

	snprintf(s->qid, sizeof s->qid, "%04X%08lX", s->mta->run_id & 0xffff, number);
	s->rcpt_index = 0;

	/* MAIL */
	if (!(s->protocol & SMFIP_NOMAIL)) {
		send_macros(s, SMFIM_ENVFROM);
		out_begin(s, SMFIC_MAIL);
		snprintf(line, sizeof line, "<%s>", s->mta->from);
		out_str(s, line);
		if ((r = exchange(s, st, SMFIP_NR_MAIL, STAGE_MAIL)) < 0)
			return OUT_FAILED;
		if (reply_ends_message(r, &out))
			goto ended;
	}

	/* RCPT, numbered like smtp-source's -r: rcpt1@..., rcpt2@... */
	for (unsigned i = 1; i <= s->mta->rcpts; i++) {
		int local_len = at ? (int)(at - s->mta->to) : (int)strlen(s->mta->to);
		snprintf(s->rcpt, sizeof s->rcpt, "%.*s%u%s", local_len, s->mta->to, i, at ? at : "");
		if (i == 1)
			snprintf(rcpt1, sizeof rcpt1, "%s", s->rcpt);
		s->rcpt_index = i;
		if (s->protocol & SMFIP_NORCPT) {
			accepted++;
			continue;
		}
		send_macros(s, SMFIM_ENVRCPT);
		out_begin(s, SMFIC_RCPT);
		snprintf(line, sizeof line, "<%s>", s->rcpt);
		out_str(s, line);
		if ((r = exchange(s, st, SMFIP_NR_RCPT, STAGE_RCPT)) < 0)
			return OUT_FAILED;
		if (r == SMFIR_CONTINUE || r == SMFIR_ACCEPT)
			accepted++;
		else if (r == SMFIR_DISCARD) {
			out = OUT_DISCARDED;
			goto ended;
		} else
			st->rcpt_refused++;
	}
	if (!accepted) {
		out = OUT_NO_RCPT;
		goto ended;
	}

	/* DATA */
	if (!(s->protocol & SMFIP_NODATA)) {
		send_macros(s, SMFIM_DATA);
		out_begin(s, SMFIC_DATA);
		if ((r = exchange(s, st, SMFIP_NR_DATA, STAGE_DATA)) < 0)
			return OUT_FAILED;
		if (reply_ends_message(r, &out))
			goto ended;
	}

	/* Headers: Postfix's Received first, folded with a bare LF. */
	if (!(s->protocol & SMFIP_NOHDRS)) {
		const char *lead = (s->protocol & SMFIP_HDR_LEADSPC) ? " " : "";
		char received[1024], subject[64], msgid[128], from[330], to[330];
		struct { const char *name, *value; } hdr[] = {
			{"Received", received}, {"From", from}, {"To", to},
			{"Subject", subject}, {"Date", stamp}, {"Message-ID", msgid},
			{"MIME-Version", "1.0"}, {"Content-Type", "text/plain; charset=us-ascii"},
		};
		snprintf(received, sizeof received, "from %s (%s [%s])\n\tby mta.bench.example (milterload) with ESMTP id %s\n\tfor <%s>; %s",
			 s->mta->helo, s->mta->helo, s->mta->client_addr, s->qid, rcpt1, stamp);
		snprintf(subject, sizeof subject, "milterload message %lu", number);
		snprintf(msgid, sizeof msgid, "<%s.%lu@bench.example>", s->qid, number);
		snprintf(from, sizeof from, "<%s>", s->mta->from);
		snprintf(to, sizeof to, "<%s>", rcpt1);
		for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++) {
			out_begin(s, SMFIC_HEADER);
			out_str(s, hdr[i].name);
			snprintf(line, sizeof line, "%s%s", lead, hdr[i].value);
			out_str(s, line);
			if ((r = exchange(s, st, SMFIP_NR_HDR, STAGE_HEADER)) < 0)
				return OUT_FAILED;
			if (reply_ends_message(r, &out))
				goto ended;
		}
	}

	if (!(s->protocol & SMFIP_NOEOH)) {
		send_macros(s, SMFIM_EOH);
		out_begin(s, SMFIC_EOH);
		if ((r = exchange(s, st, SMFIP_NR_EOH, STAGE_EOH)) < 0)
			return OUT_FAILED;
		if (reply_ends_message(r, &out))
			goto ended;
	}

	if (!(s->protocol & SMFIP_NOBODY)) {
		for (size_t off = 0; off < s->mta->body_len;) {
			size_t n = s->mta->body_len - off < BODY_CHUNK ? s->mta->body_len - off : BODY_CHUNK;
			out_begin(s, SMFIC_BODY);
			out_bytes(s, s->mta->body + off, n);
			off += n;
			if ((r = exchange(s, st, SMFIP_NR_BODY, STAGE_BODY)) < 0)
				return OUT_FAILED;
			if (r == SMFIR_SKIP)
				break;
			if (reply_ends_message(r, &out))
				goto ended;
		}
	}

	send_macros(s, SMFIM_EOM);
	out_begin(s, SMFIC_BODYEOB);
	if ((r = exchange(s, st, 0, STAGE_EOM)) < 0)
		return OUT_FAILED;
	session_sample(&st->lat[STAGE_MESSAGE], session_now_ms() - t_mail);
	if (r == SMFIR_CONTINUE || r == SMFIR_ACCEPT)
		return OUT_DELIVERED;
	reply_ends_message(r, &out);
	return out;

ended:
	/* The transaction ended before EOM: Postfix tells the milter (with
	 * whatever it sends next). */
	if (out != OUT_ACCEPTED_EARLY) {
		out_begin(s, SMFIC_ABORT);
		out_end(s);
	}
	return out;
}
