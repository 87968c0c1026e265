/*
 * spf_helper - the SPF helper process: libspf2 behind a socket.
 *
 * What it does: runs as "EXE --spf-helper ..." (spf_wire.h), drops root,
 * and answers check_host() and DMARC-record questions one at a time with
 * libspf2 over our DNS layer (spf_budget.c, over the resolver of dns.c,
 * whose cache lives as long as the process). What it does not: decide
 * anything about mail; it reports results and the milter acts on them.
 *
 * Decisions:
 * - Everything that could leak in from the milter is shed first: file
 *   descriptors other than stdio and the socket, the signal mask; stdout
 *   becomes /dev/null, so libspf2 can never print into a mail session.
 * - libspf2 calls its error handler and then abort()s on internal
 *   errors; ours logs the message and exits, so the milter sees the
 *   socket close and answers temperror.
 * - Each evaluation has a budget (SPF_BUDGET_TIMEOUTS DNS timeouts,
 *   SPF_LOOKUPS_MAX lookups and SPF_VOID_LOOKUPS_MAX void lookups,
 *   enforced in the DNS layer, spf_budget.c, as libspf2 has no
 *   void-lookup limit), so the helper answers before the milter gives
 *   up on it; a blown budget is temperror (time) or permerror (lookups,
 *   void lookups) whatever libspf2 concluded.
 * - Detail texts are ours, not libspf2's header comments, and are cut to
 *   printable ASCII without '%': they end up in SMTP replies.
 * - An answer to a check also says whether the milter may reuse it
 *   (spf_wire.h). The DNS layer shows us every answer libspf2 gets, so
 *   we learn the least TTL and see every SPF record fetched, includes and
 *   redirects too, without parsing records a second time: a macro test
 *   on the text is enough, as a false "sender specific" costs only a
 *   round trip.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "align.h"
#include "dns.h"
#include "log.h"
#include "spf.h"
#include "spf_budget.h"
#include "spf_wire.h"

/* Exit status when libspf2 reports an internal error (EX_SOFTWARE). */
#define HELPER_EXIT_LIBSPF2 70
/* Where close_range is missing, descriptors are closed up to this. */
#define HELPER_FD_SCAN_MAX 65536
/* The user name part of "user[:group]". */
#define HELPER_USER_MAX 256

/* What one evaluation's DNS answers say about reusing its result. */
struct helper_evaluation {
	long ttl;			/* least seen so far; -1 before the first */
	bool sender_specific;		/* an SPF record used %{l}, %{s} or %{h} */
};

struct helper {
	int fd;
	struct dns_resolver *dns;
	struct spf_budget *budget;	/* libspf2's layer, over dns */
	SPF_server_t *spf;
	long budget_ms;
	struct helper_evaluation evaluation;	/* of the request being served */
};

static void helper_spf_error(const char *file, int line, const char *msg)
	__attribute__((noreturn));

static void helper_spf_error(const char *file, int line, const char *msg)
{
	log_error("SPF helper: libspf2 internal error at %s:%d: %s; exiting",
		  file != NULL ? file : "?", line, msg);
	_exit(HELPER_EXIT_LIBSPF2);
}

/* libspf2's warnings are about remote records: useful when debugging only. */
static void helper_spf_note(const char *file, int line, const char *msg)
{
	(void)file;
	(void)line;
	log_debug("SPF helper: libspf2: %s", msg);
}

/* Printable ASCII without '%': fit for log lines and SMTP reply texts. */
static void helper_clean(char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '%')
			*s = '?';
}

/* Only fd and stdio stay open; stdout becomes /dev/null. Returns the new fd. */
static int helper_shed_descriptors(int fd)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	/* A socket sitting on 0-2 would receive stray stdio output: move it. */
	if (fd <= STDERR_FILENO) {
		int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
		if (moved < 0)
			return -1;
		close(fd);
		fd = moved;
	}
	if (null >= 0) {
		for (int i = STDIN_FILENO; i <= STDERR_FILENO; i++)
			if (i == STDOUT_FILENO || fcntl(i, F_GETFD) < 0)
				dup2(null, i);
		if (null > STDERR_FILENO && null != fd)
			close(null);
	}
	if (fd > STDERR_FILENO + 1 && close_range(STDERR_FILENO + 1, (unsigned)fd - 1, 0) < 0)
		for (int i = STDERR_FILENO + 1; i < fd; i++)
			close(i);
	if (close_range((unsigned)fd + 1, ~0U, 0) < 0)
		for (int i = fd + 1; i < HELPER_FD_SCAN_MAX; i++)
			close(i);
	return fd;
}

/* Logs go to stderr, unless it is /dev/null (a daemon): then to syslog. */
static void helper_open_log(int level)
{
	struct stat err, null;
	bool to_stderr = fstat(STDERR_FILENO, &err) == 0 &&
			 !(stat("/dev/null", &null) == 0 && S_ISCHR(err.st_mode) &&
			   err.st_rdev == null.st_rdev);

	log_open("bulkmilter-spf", to_stderr);
	if (level >= LOG_LEVEL_ERROR && level <= LOG_LEVEL_DEBUG)
		log_set_level((enum log_level)level);
}

/* As root, become spec ("user[:group]", "" = nobody); 0 or -1 with err. */
static int helper_drop_privileges(const char *spec, char *err, size_t len)
{
	char user[HELPER_USER_MAX];
	const char *group = strchr(spec, ':');
	struct passwd *pw;
	gid_t gid;

	if (geteuid() != 0)
		return 0;
	snprintf(user, sizeof(user), "%.*s",
		 group != NULL ? (int)(group - spec) : (int)strlen(spec), spec);
	if (user[0] == '\0')
		snprintf(user, sizeof(user), "%s", SPF_HELPER_DEFAULT_USER);
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, len, "unknown user %.64s", user);
		return -1;
	}
	gid = pw->pw_gid;
	if (group != NULL) {
		struct group *gr = getgrnam(group + 1);
		if (gr == NULL) {
			snprintf(err, len, "unknown group %.64s", group + 1);
			return -1;
		}
		gid = gr->gr_gid;
	}
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, len, "cannot become %.64s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(err, len, "could become root again after switching to %.64s", user);
		return -1;
	}
	return 0;
}

/* An SPF record (RFC 7208 4.5), "v=spf1" in any case, then a space or the end. */
static bool helper_is_spf(const char *txt)
{
	return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == ' ' || txt[6] == '\0');
}

/*
 * Whether a record uses a macro whose value is the sender's local part
 * (%{l}), whole address (%{s}) or HELO name (%{h}), in any case and with
 * any transformers (%{l1r-}). "%%" is a literal percent sign.
 */
static bool helper_sender_macro(const char *txt)
{
	for (const char *p = strchr(txt, '%'); p != NULL; p = strchr(p + 1, '%')) {
		if (p[1] == '{' && p[2] != '\0' && strchr("lLsShH", p[2]) != NULL)
			return true;
		if (p[1] == '%')
			p++;
	}
	return false;
}

/* The DNS layer's observer (spf_budget.h): folds each answer into the evaluation. */
static void helper_observe(void *arg, const SPF_dns_rr_t *answer, long ttl)
{
	struct helper_evaluation *e = arg;

	if (e->ttl < 0 || ttl < e->ttl)
		e->ttl = ttl;
	if (answer == NULL || answer->rr_type != ns_t_txt || answer->herrno != NETDB_SUCCESS)
		return;
	for (int i = 0; i < answer->num_rr; i++)
		if (helper_is_spf(answer->rr[i]->txt) && helper_sender_macro(answer->rr[i]->txt))
			e->sender_specific = true;
}

/*
 * The answer to a request: code is an enum spf_outcome and e its
 * evaluation for an 'S', an enum dmarc_record and NULL for a 'D'.
 */
static void helper_answer(struct helper *h, const char *seq, int code, char *detail,
	const struct helper_evaluation *e)
{
	char pkt[SPF_WIRE_MAX];
	int n;

	helper_clean(detail);
	if (e != NULL) {
		long ttl = e->ttl < 0 ? 0 : e->ttl < SPF_WIRE_TTL_MAX ? e->ttl : SPF_WIRE_TTL_MAX;
		n = snprintf(pkt, sizeof(pkt), "%c%s%c%d%c%.*s%c%ld%c%d", SPF_WIRE_ANSWER, seq, 0,
			     code, 0, SPF_DETAIL_MAX - 1, detail, 0, ttl, 0,
			     e->sender_specific ? 1 : 0);
	} else {
		n = snprintf(pkt, sizeof(pkt), "%c%s%c%d%c%.*s", SPF_WIRE_ANSWER, seq, 0, code, 0,
			     SPF_DETAIL_MAX - 1, detail);
	}
	if (n >= (int)sizeof(pkt))
		n = (int)sizeof(pkt) - 1;
	pkt[n] = '\0';
	if (send(h->fd, pkt, (size_t)n + 1, MSG_NOSIGNAL) < 0)
		log_warning("SPF helper: cannot answer: %s", strerror(errno));
}

/* The first error libspf2 recorded, else its first warning, else NULL. */
static const char *helper_first_message(SPF_response_t *rs)
{
	const char *warning = NULL;

	for (int i = 0; i < SPF_response_messages(rs); i++) {
		SPF_error_t *e = SPF_response_message(rs, i);
		if (e == NULL || SPF_error_message(e) == NULL)
			continue;
		if (SPF_error_errorp(e))
			return SPF_error_message(e);
		if (warning == NULL)
			warning = SPF_error_message(e);
	}
	return warning;
}

/*
 * libspf2's result in our terms. It leaves the result "invalid" when the
 * top-level record does not compile (a permerror, RFC 7208 4.6) or DNS
 * failed in a way it does not classify (a temperror); err tells which.
 */
static enum spf_outcome helper_outcome(SPF_result_t r, SPF_errcode_t err)
{
	switch (r) {
	case SPF_RESULT_PASS: return SPF_OUTCOME_PASS;
	case SPF_RESULT_FAIL: return SPF_OUTCOME_FAIL;
	case SPF_RESULT_SOFTFAIL: return SPF_OUTCOME_SOFTFAIL;
	case SPF_RESULT_NEUTRAL: return SPF_OUTCOME_NEUTRAL;
	case SPF_RESULT_NONE: return SPF_OUTCOME_NONE;
	case SPF_RESULT_PERMERROR: return SPF_OUTCOME_PERMERROR;
	case SPF_RESULT_TEMPERROR: return SPF_OUTCOME_TEMPERROR;
	default:
		return err == SPF_E_SUCCESS || err == SPF_E_DNS_ERROR || err == SPF_E_NO_MEMORY
			? SPF_OUTCOME_TEMPERROR : SPF_OUTCOME_PERMERROR;
	}
}

/* Our words for a result, naming the domain and the address. */
static void helper_describe(enum spf_outcome o, SPF_response_t *rs, const char *domain,
	const char *ip, unsigned exceeded, char *detail, size_t len)
{
	const char *why = rs != NULL ? helper_first_message(rs) : NULL;

	/* Some limits (too many DNS terms) set only the response's code. */
	if (why == NULL && rs != NULL && SPF_response_errcode(rs) != SPF_E_SUCCESS)
		why = SPF_strerror(SPF_response_errcode(rs));

	switch (o) {
	case SPF_OUTCOME_PASS:
		snprintf(detail, len, "%s designates %s as permitted sender", domain, ip);
		break;
	case SPF_OUTCOME_FAIL:
		snprintf(detail, len, "%s does not designate %s as permitted sender", domain, ip);
		break;
	case SPF_OUTCOME_SOFTFAIL:
		snprintf(detail, len, "%s does not designate %s as permitted sender (softfail)",
			 domain, ip);
		break;
	case SPF_OUTCOME_NEUTRAL:
		snprintf(detail, len, "%s neither permits nor denies %s", domain, ip);
		break;
	case SPF_OUTCOME_NONE:
		snprintf(detail, len, "%s publishes no SPF record", domain);
		break;
	case SPF_OUTCOME_PERMERROR:
		if (exceeded & SPF_BUDGET_OVER_LOOKUPS)
			snprintf(detail, len, "SPF record of %s needs more than %d DNS lookups",
				 domain, SPF_LOOKUPS_MAX);
		else if (exceeded & SPF_BUDGET_OVER_VOID)
			snprintf(detail, len, "SPF record of %s leads to more than %d void DNS lookups",
				 domain, SPF_VOID_LOOKUPS_MAX);
		else
			snprintf(detail, len, "SPF record of %s is invalid: %s", domain,
				 why != NULL ? why : "permanent error");
		break;
	default:
		if (exceeded & SPF_BUDGET_OVER_TIME)
			snprintf(detail, len, "SPF evaluation for %s ran out of time", domain);
		else
			snprintf(detail, len, "DNS failure for %s: %s", domain,
				 why != NULL ? why : "temporary error");
		break;
	}
}

static enum spf_outcome helper_check(struct helper *h, const char *ip, const char *helo,
	const char *mail_from, char *detail, size_t len)
{
	const char *at = strrchr(mail_from, '@');
	const char *domain = mail_from[0] == '\0' ? helo : at != NULL ? at + 1 : mail_from;
	SPF_request_t *rq = SPF_request_new(h->spf);
	SPF_response_t *rs = NULL;
	enum spf_outcome o = SPF_OUTCOME_TEMPERROR;
	SPF_errcode_t err;
	unsigned exceeded;
	int bad = rq == NULL;

	h->evaluation = (struct helper_evaluation){ .ttl = -1 };
	/* Order matters: env_from "" takes the HELO name set before it. */
	if (!bad)
		bad = strchr(ip, ':') != NULL ? SPF_request_set_ipv6_str(rq, ip)
					      : SPF_request_set_ipv4_str(rq, ip);
	if (!bad && helo[0] != '\0')
		bad = SPF_request_set_helo_dom(rq, helo);
	if (!bad)
		bad = SPF_request_set_env_from(rq, mail_from);
	if (bad) {
		snprintf(detail, len, "cannot evaluate SPF for %s from %s", domain, ip);
		if (rq != NULL)
			SPF_request_free(rq);
		return SPF_OUTCOME_TEMPERROR;
	}
	spf_budget_start(h->budget, h->budget_ms, SPF_LOOKUPS_MAX, SPF_VOID_LOOKUPS_MAX);
	err = SPF_request_query_mailfrom(rq, &rs);
	if (rs != NULL)
		o = helper_outcome(SPF_response_result(rs), err);
	exceeded = spf_budget_exceeded(h->budget);
	if (exceeded & (SPF_BUDGET_OVER_LOOKUPS | SPF_BUDGET_OVER_VOID))
		o = SPF_OUTCOME_PERMERROR;
	else if (exceeded & SPF_BUDGET_OVER_TIME)
		o = SPF_OUTCOME_TEMPERROR;
	helper_describe(o, rs, domain, ip, exceeded, detail, len);
	log_debug("SPF helper: %s from %s: %s (%s)", domain, ip, spf_outcome_name(o), detail);
	if (rs != NULL)
		SPF_response_free(rs);
	SPF_request_free(rq);
	return o;
}

/*
 * A DMARC record per RFC 7489 6.4: "v" *WSP "=" *WSP "DMARC1", then the
 * end, a ';' or WSP. "v" is case-insensitive in ABNF, "DMARC1" is not.
 */
static bool helper_is_dmarc(const char *txt)
{
	if (*txt != 'v' && *txt != 'V')
		return false;
	for (txt++; *txt == ' ' || *txt == '\t'; txt++)
		;
	if (*txt++ != '=')
		return false;
	while (*txt == ' ' || *txt == '\t')
		txt++;
	if (strncmp(txt, "DMARC1", 6) != 0)
		return false;
	txt += 6;
	return *txt == '\0' || *txt == ';' || *txt == ' ' || *txt == '\t';
}

/* Whether _dmarc.<domain> holds exactly one DMARC record: 1, 0, or -1 (DNS). */
static int helper_dmarc_at(struct helper *h, const char *domain)
{
	char name[ALIGN_NAME_MAX + sizeof("_dmarc.")];
	SPF_dns_rr_t *rr;
	int found = 0, rc;

	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	rr = spf_budget_lookup(h->budget, name, ns_t_txt);
	if (rr == NULL)
		return -1;
	if (rr->herrno == NETDB_SUCCESS) {
		for (int i = 0; i < rr->num_rr; i++)
			if (helper_is_dmarc(rr->rr[i]->txt))
				found++;
		rc = found == 1;
	} else {
		rc = rr->herrno == HOST_NOT_FOUND || rr->herrno == NO_DATA ? 0 : -1;
	}
	SPF_dns_rr_free(rr);
	return rc;
}

static enum dmarc_record helper_dmarc(struct helper *h, const char *domain, char *detail,
	size_t len)
{
	char org[ALIGN_NAME_MAX + 1];
	const char *where = domain;
	int rc;

	spf_budget_start(h->budget, h->budget_ms, 2, 0);
	rc = helper_dmarc_at(h, domain);
	if (rc == 0 && align_org_domain(domain, org, sizeof(org)) == 0 && strcmp(org, domain) != 0) {
		where = org;
		rc = helper_dmarc_at(h, org);
	}
	snprintf(detail, len, "_dmarc.%.150s: %s", where,
		 rc > 0 ? "DMARC record" : rc == 0 ? "no DMARC record" : "DNS failure");
	return rc > 0 ? DMARC_RECORD_FOUND : rc == 0 ? DMARC_RECORD_NONE : DMARC_RECORD_TEMPERROR;
}

/* Splits a request into its NUL-terminated fields after the kind byte. */
static int helper_fields(char *buf, size_t n, char *fields[], int max)
{
	int count = 0;

	for (size_t at = 1; at < n && count < max; at += strlen(buf + at) + 1)
		fields[count++] = buf + at;
	return count;
}

/* Serves requests until the milter closes its end: 0, or 1 on an error. */
static int helper_serve(struct helper *h)
{
	char buf[SPF_WIRE_MAX + 1], detail[SPF_DETAIL_MAX], *f[4];

	for (;;) {
		ssize_t n = recv(h->fd, buf, SPF_WIRE_MAX, 0);

		if (n == 0)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("SPF helper: receive: %s", strerror(errno));
			return 1;
		}
		buf[n] = '\0';
		dns_resolver_refresh(h->dns);
		if (buf[0] == SPF_WIRE_CHECK && helper_fields(buf, (size_t)n, f, 4) == 4) {
			enum spf_outcome o = helper_check(h, f[1], f[2], f[3], detail, sizeof(detail));
			helper_answer(h, f[0], o, detail, &h->evaluation);
		} else if (buf[0] == SPF_WIRE_DMARC && helper_fields(buf, (size_t)n, f, 2) == 2) {
			enum dmarc_record r = helper_dmarc(h, f[1], detail, sizeof(detail));
			helper_answer(h, f[0], r, detail, NULL);
		} else {
			log_error("SPF helper: malformed request of %zd bytes", n);
			return 1;
		}
	}
}

/* Tells the milter why we cannot start, and fails. */
static int helper_refuse(int fd, const char *why)
{
	char pkt[SPF_WIRE_MAX];
	int n = snprintf(pkt, sizeof(pkt), "%c%s", SPF_WIRE_FAILED, why);

	log_error("SPF helper: %s", why);
	if (n >= (int)sizeof(pkt))
		n = (int)sizeof(pkt) - 1;
	if (send(fd, pkt, (size_t)n, MSG_NOSIGNAL) < 0)
		log_error("SPF helper: cannot report failure: %s", strerror(errno));
	return 1;
}

int spf_helper_run(int fd, const char *resolver, long timeout_ms)
{
	struct helper h = { .fd = fd };
	char err[256];
	int rc;

	SPF_error_handler = helper_spf_error;
	SPF_warning_handler = helper_spf_note;
	SPF_info_handler = helper_spf_note;
	SPF_debug_handler = NULL;
	h.budget_ms = SPF_BUDGET_TIMEOUTS * timeout_ms;
	h.dns = dns_resolver_new(resolver, timeout_ms, err, sizeof(err));
	if (h.dns == NULL)
		return helper_refuse(h.fd, err);
	h.budget = spf_budget_new(h.dns);
	if (h.budget == NULL) {
		dns_resolver_free(h.dns);
		return helper_refuse(h.fd, "out of memory");
	}
	spf_budget_observe(h.budget, helper_observe, &h.evaluation);
	h.spf = SPF_server_new_dns(spf_budget_layer(h.budget), 0);
	if (h.spf == NULL) {
		spf_budget_free(h.budget);
		dns_resolver_free(h.dns);
		return helper_refuse(h.fd, "cannot create the libspf2 server");
	}
	if (send(h.fd, (char[]){ SPF_WIRE_READY }, 1, MSG_NOSIGNAL) < 0) {
		rc = 1;
	} else {
		rc = helper_serve(&h);
	}
	SPF_server_free(h.spf);
	spf_budget_free(h.budget);
	dns_resolver_free(h.dns);
	return rc;
}

int spf_helper_main(int argc, char **argv)
{
	char err[256], *end;
	sigset_t none;
	long fd, timeout_ms, level;
	int sock, rc;

	if (argc != SPF_HELPER_ARGC || strcmp(argv[1], SPF_HELPER_ARG) != 0) {
		fprintf(stderr, "usage: %s " SPF_HELPER_ARG " FD RESOLVER TIMEOUT_MS USER LEVEL\n",
			argv[0]);
		return 1;
	}
	fd = strtol(argv[2], &end, 10);
	if (*end != '\0' || fd < 0 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0) {
		fprintf(stderr, "%s: bad socket %s\n", argv[0], argv[2]);
		return 1;
	}
	timeout_ms = strtol(argv[4], &end, 10);
	level = strtol(argv[6], NULL, 10);
	sock = helper_shed_descriptors((int)fd);
	if (sock < 0)
		return 1;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_IGN);
	helper_open_log((int)level);
	if (*end != '\0' || timeout_ms <= 0)
		return helper_refuse(sock, "bad DNS timeout");
	if (helper_drop_privileges(argv[5], err, sizeof(err)) < 0)
		return helper_refuse(sock, err);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	rc = spf_helper_run(sock, argv[3], timeout_ms);
	close(sock);
	return rc;
}
