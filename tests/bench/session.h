/*
 * session - the MTA side of one milter connection, for milterload.
 *
 * session_open() connects, negotiates (SMFIC_OPTNEG, protocol version
 * 6) and takes the connection through CONNECT and HELO;
 * session_message() sends one message (MAIL, RCPT..., DATA, headers,
 * EOH, body, EOM) and reads the milter's answers; session_quit() ends
 * the connection. Each step honours what the milter negotiated: steps
 * it asked not to see are not sent, replies it said it would not give
 * are not awaited, and, as in Postfix, unanswered packets wait in a
 * buffer until the next one that is answered. Every awaited reply is timed into struct stats, and
 * every modification action is counted there.
 *
 * A session is used by one thread at a time; struct stats belongs to
 * the thread that passes it. Errors: a function that fails returns
 * false (or OUT_FAILED) and leaves the reason in session->error; the
 * connection is then unusable and only session_close() is left.
 */
#ifndef BENCH_SESSION_H
#define BENCH_SESSION_H

#include <libmilter/mfapi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Macro stages a milter may ask for (SMFIM_CONNECT..SMFIM_EOH). */
#define SESSION_MACRO_STAGES (SMFIM_LAST + 1)

enum stage {
	STAGE_OPEN,		/* socket connect and SMFIC_OPTNEG */
	STAGE_CONNECT, STAGE_HELO, STAGE_MAIL, STAGE_RCPT, STAGE_DATA,
	STAGE_HEADER, STAGE_EOH, STAGE_BODY, STAGE_EOM,
	STAGE_MESSAGE,		/* SMFIC_MAIL sent to the EOM reply */
	STAGE_COUNT
};
extern const char *const session_stage_names[STAGE_COUNT];

enum outcome {
	OUT_DELIVERED,		/* the EOM reply was continue or accept */
	OUT_ACCEPTED_EARLY,	/* accept before EOM: the milter let it go */
	OUT_REJECTED, OUT_TEMPFAILED, OUT_DISCARDED,
	OUT_NO_RCPT,		/* every recipient was refused */
	OUT_FAILED,		/* the connection broke */
	OUT_COUNT
};
extern const char *const session_outcome_names[OUT_COUNT];

/* Replies a milter sends before its final one (modifications after
 * EOM, progress); struct stats counts them by index, and
 * session_action_name(index) is "SMFIR_INSHEADER" and the like. */
#define SESSION_ACTION_KINDS 10
const char *session_action_name(int index);

struct samples {
	double *v;		/* milliseconds */
	size_t n, cap;
};

struct stats {
	struct samples lat[STAGE_COUNT];
	unsigned long outcome[OUT_COUNT];
	unsigned long action[SESSION_ACTION_KINDS];
	unsigned long rcpt_refused;
	unsigned long sessions;
};

/* What the simulated MTA and its client look like; shared, read-only. */
struct mta_profile {
	struct sockaddr_storage milter;	/* where the milter listens */
	socklen_t milter_len;
	const char *milter_name;	/* as given, for messages */
	bool nodelay;			/* TCP_NODELAY on inet: sockets */
	size_t write_size;		/* largest write(), 0 = any */
	const char *client_addr, *helo;
	const char *sasl;		/* {auth_authen}, or NULL */
	const char *from, *to;		/* to: numbered per recipient */
	unsigned rcpts;
	const char *body;		/* CRLF lines */
	size_t body_len;
	unsigned run_id;		/* makes queue IDs unique across runs */
	bool trace;			/* print the first session's packets */
};

struct session {
	int fd;
	const struct mta_profile *mta;
	uint32_t actions, protocol;	/* what the milter negotiated */
	char *macros[SESSION_MACRO_STAGES];	/* lists it asked for, or NULL */
	unsigned char *in;		/* the last reply packet; grows as needed, */
	size_t in_len, in_cap;		/* the owner free()s in and out when done */
	unsigned char *out;		/* packets not yet written; grows */
	size_t out_len, out_cap;
	size_t packet_at;		/* where the packet being built starts */
	bool trace;			/* print packets on stderr */
	char error[200];
	/* the message in flight, for macro values */
	char qid[32];
	unsigned rcpt_index;
	char rcpt[320];
};

/* Parses unix:/PATH, local:/PATH, inet:PORT@HOST or inet6:PORT@HOST. */
bool session_parse_socket(const char *spec, struct sockaddr_storage *ss, socklen_t *len);

/* Connects, negotiates, sends CONNECT and HELO. S starts zeroed with
 * fd -1, or is one closed by session_close(). */
bool session_open(struct session *s, const struct mta_profile *mta, struct stats *st);

/* Sends message NUMBER; returns how it ended. */
enum outcome session_message(struct session *s, struct stats *st, unsigned long number);

/* Writes what is buffered. Like Postfix, a session writes only when it
 * awaits a reply; a held connection needs this to deliver its HELO. */
bool session_flush(struct session *s);

/* Sends SMFIC_QUIT if connected, then session_close(). */
void session_quit(struct session *s);

/* Closes the connection and frees what session_open allocated. */
void session_close(struct session *s);

/* Appends a latency sample (milliseconds). */
void session_sample(struct samples *s, double ms);

/* Frees the latency samples of st (the counters stay). */
void session_stats_free(struct stats *st);

/* Milliseconds on the monotonic clock. */
double session_now_ms(void);

#endif
