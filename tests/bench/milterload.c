/*
 * milterload - drive one milter with many concurrent MTA-side connections.
 *
 * What it does: plays the MTA towards one milter over unix: or inet:
 * (session.c speaks the protocol). --conns threads each hold a
 * connection, send --per-conn messages over it and reconnect, until
 * --messages messages have gone through. It reports what the milter
 * alone sustains: messages per second and the latency of each stage,
 * the time from a command to the milter's final reply to it. With --pid
 * it reads the milter's CPU time and memory from /proc (procstat.c); the
 * CPU time covers the process and all its descendants, so bulkmilter's
 * SPF helper processes count. With --hold N it first opens N
 * connections, takes each through CONNECT and HELO, and reports the
 * milter's RSS while they stay open (the load, if any, then runs beside
 * them).
 *
 *	milterload --socket unix:/PATH|inet:PORT@HOST
 *	  --conns N (20)  --messages N (1000)  --per-conn N (1)
 *	  --rcpts N (1; rcpt1@..., rcpt2@... from --to)  --size BODY-BYTES (4096)
 *	  --from ADDR (sender@bench.example)  --to ADDR (rcpt@dest.example)
 *	  --sasl USER ({auth_authen})  --client-addr IP (127.0.0.1)  --helo NAME
 *	  --hold N  --pid MILTER-PID  --nodelay  --write-size BYTES (4096; 0: any)
 *	  --max-seconds S (600)  -v
 *
 * What it does not: judge the milter's decisions. Replies and
 * modification actions are counted and printed, so a milter that
 * tempfails everything shows, but it is not an error here.
 *
 * Decisions:
 * - One thread per connection, blocking I/O. A milter answers one
 *   command at a time per connection, so there is nothing to overlap
 *   inside a connection, and each thread reads as the transcript of an
 *   SMTP session.
 * - Behave like Postfix wherever the milter could notice: honour every
 *   SMFIP_NO* and SMFIP_NR_* bit it negotiates, send the macros it asks
 *   for (else Postfix 3.7's defaults), fold headers with a bare LF, send
 *   SMFIC_ABORT after a transaction that does not end at EOM, buffer
 *   what needs no answer and write it in Postfix's 4096-byte pieces
 *   (--write-size), and leave Nagle on (--nodelay turns it off), so an
 *   inet: socket costs what it costs under Postfix.
 * - Latencies are kept as every sample (a few per message) and sorted
 *   once at the end: exact percentiles, and memory is no concern at the
 *   message counts a benchmark uses.
 * - The last line is "RESULT key=value ...", for scripts.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"
#include "session.h"

/* Body lines: 76 characters and CRLF, like ordinary text mail. */
#define BODY_LINE 76
/* Stop the run after this many failed sessions: the milter is gone. */
#define ERRORS_MAX 50
/* Distinct error texts kept for the report. */
#define ERROR_TEXTS 5
/* Postfix's VSTREAM_BUFSIZE: it writes to the milter in pieces of this. */
#define POSTFIX_WRITE_SIZE 4096
/* Seconds the held connections sit before their RSS is read, so the
 * milter's threads and allocations have settled. */
#define HOLD_SETTLE_S 1

struct options {
	const char *socket;
	unsigned conns;
	unsigned long messages;
	unsigned per_conn;
	unsigned rcpts;
	size_t size;
	const char *from;
	const char *to;
	const char *sasl;
	const char *client_addr;
	const char *helo;
	unsigned hold;
	long pid;
	bool nodelay;
	size_t write_size;
	unsigned max_seconds;
	bool verbose;
};

static struct options opt = {
	.conns = 20, .messages = 1000, .per_conn = 1, .rcpts = 1,
	.size = 4096, .from = "sender@bench.example", .to = "rcpt@dest.example",
	.client_addr = "127.0.0.1", .helo = "client.bench.example",
	.write_size = POSTFIX_WRITE_SIZE, .max_seconds = 600,
};

/* The MTA every session plays, made from the options. */
static struct mta_profile mta;

static struct {
	atomic_ulong next_message;	/* the next message number to take */
	atomic_bool stop;
	atomic_uint errors;		/* failed sessions */
	atomic_bool traced;		/* -v traced one session already */
	pthread_mutex_t lock;		/* guards error_text */
	char error_text[ERROR_TEXTS][256];
	unsigned error_texts;
	struct timespec deadline;
} run = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("milterload: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* --------------------------------------------------------- threads */

static void note_error(const char *text)
{
	unsigned n = atomic_fetch_add(&run.errors, 1) + 1;
	pthread_mutex_lock(&run.lock);
	bool seen = false;
	for (unsigned i = 0; i < run.error_texts; i++)
		seen |= !strcmp(run.error_text[i], text);
	if (!seen && run.error_texts < ERROR_TEXTS)
		snprintf(run.error_text[run.error_texts++], sizeof run.error_text[0], "%s", text);
	pthread_mutex_unlock(&run.lock);
	if (n >= ERRORS_MAX)
		atomic_store(&run.stop, true);
}

static bool past_deadline(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec > run.deadline.tv_sec ||
	       (ts.tv_sec == run.deadline.tv_sec && ts.tv_nsec >= run.deadline.tv_nsec);
}

static void *worker(void *arg)
{
	struct stats *st = arg;
	struct session s = {.fd = -1};

	while (!atomic_load(&run.stop) && !past_deadline()) {
		unsigned long first = atomic_fetch_add(&run.next_message, opt.per_conn);
		unsigned long n;
		if (first >= opt.messages)
			break;
		n = opt.messages - first < opt.per_conn ? opt.messages - first : opt.per_conn;
		s.trace = opt.verbose && !atomic_exchange(&run.traced, true);
		if (!session_open(&s, &mta, st)) {
			st->outcome[OUT_FAILED] += n;
			note_error(s.error);
			session_close(&s);
			continue;
		}
		for (unsigned long i = 0; i < n; i++) {
			enum outcome o = session_message(&s, st, first + i);
			st->outcome[o]++;
			if (o == OUT_FAILED) {
				st->outcome[OUT_FAILED] += n - i - 1;
				note_error(s.error);
				break;
			}
			s.trace = false;
		}
		session_quit(&s);
	}
	free(s.in);
	free(s.out);
	return NULL;
}

/* ----------------------------------------------------------- report */

static void print_usage_line(const char *what, const struct proc_usage *u)
{
	printf("%s: milter pid %ld: VmRSS %.1f MB, VmHWM %.1f MB, with %u-process tree %.1f MB\n",
	       what, opt.pid, u->rss_kb / 1024.0, u->hwm_kb / 1024.0, u->procs, u->tree_rss_kb / 1024.0);
}


static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static double percentile(const struct samples *s, double p)
{
	size_t rank = (size_t)(p * (double)s->n + 0.999999);
	if (rank < 1)
		rank = 1;
	return s->v[rank - 1];
}

static void merge(struct stats *into, const struct stats *from)
{
	for (int i = 0; i < STAGE_COUNT; i++)
		for (size_t k = 0; k < from->lat[i].n; k++)
			session_sample(&into->lat[i], from->lat[i].v[k]);
	for (int i = 0; i < OUT_COUNT; i++)
		into->outcome[i] += from->outcome[i];
	for (size_t i = 0; i < SESSION_ACTION_KINDS; i++)
		into->action[i] += from->action[i];
	into->rcpt_refused += from->rcpt_refused;
	into->sessions += from->sessions;
}

static void report(struct stats *all, double seconds, const struct proc_usage *before,
		   const struct proc_usage *after)
{
	unsigned long done = all->outcome[OUT_DELIVERED] + all->outcome[OUT_ACCEPTED_EARLY] +
			     all->outcome[OUT_REJECTED] + all->outcome[OUT_TEMPFAILED] +
			     all->outcome[OUT_DISCARDED] + all->outcome[OUT_NO_RCPT];
	double rate = seconds > 0 ? done / seconds : 0;
	double cpu_ms = -1;

	printf("milterload: %lu messages (%u rcpt, %zu body bytes) over %u connections, %u per connection, %s: %.3f s, %.1f msgs/s\n",
	       done, opt.rcpts, opt.size, opt.conns, opt.per_conn, opt.socket, seconds, rate);
	printf("outcomes:");
	for (int i = 0; i < OUT_COUNT; i++)
		if (all->outcome[i])
			printf(" %s=%lu", session_outcome_names[i], all->outcome[i]);
	if (all->rcpt_refused)
		printf(" rcpt-refused=%lu", all->rcpt_refused);
	printf(" sessions=%lu\n", all->sessions);
	printf("actions:");
	for (size_t i = 0; i < SESSION_ACTION_KINDS; i++)
		if (all->action[i])
			printf(" %s=%lu", session_action_name((int)i), all->action[i]);
	printf("\n%-8s %8s %9s %9s %9s %9s\n", "stage", "count", "p50 ms", "p90 ms", "p99 ms", "max ms");
	for (int i = 0; i < STAGE_COUNT; i++) {
		struct samples *s = &all->lat[i];
		if (!s->n)
			continue;
		qsort(s->v, s->n, sizeof *s->v, cmp_double);
		printf("%-8s %8zu %9.3f %9.3f %9.3f %9.3f\n", session_stage_names[i], s->n,
		       percentile(s, 0.5), percentile(s, 0.9), percentile(s, 0.99), s->v[s->n - 1]);
	}
	if (opt.pid && done) {
		cpu_ms = (after->cpu_s - before->cpu_s) * 1e3 / (double)done;
		printf("milter CPU: %.3f ms/msg (%.2f s over %u processes; %.0f%% of one core)\n",
		       cpu_ms, after->cpu_s - before->cpu_s, after->procs,
		       seconds > 0 ? 100.0 * (after->cpu_s - before->cpu_s) / seconds : 0);
		print_usage_line("after load", after);
	}
	for (unsigned i = 0; i < run.error_texts; i++)
		printf("error: %s\n", run.error_text[i]);
	if (run.errors)
		printf("errors: %u failed sessions\n", atomic_load(&run.errors));
	printf("RESULT msgs_per_s=%.1f messages=%lu failed=%lu seconds=%.3f", rate, done,
	       all->outcome[OUT_FAILED], seconds);
	for (int i = 0; i < STAGE_COUNT; i++)
		if (all->lat[i].n)
			printf(" %s_p50_ms=%.3f %s_p99_ms=%.3f", session_stage_names[i], percentile(&all->lat[i], 0.5),
			       session_stage_names[i], percentile(&all->lat[i], 0.99));
	if (cpu_ms >= 0)
		printf(" cpu_ms_per_msg=%.3f rss_kb=%ld hwm_kb=%ld tree_rss_kb=%ld", cpu_ms, after->rss_kb,
		       after->hwm_kb, after->tree_rss_kb);
	printf("\n");
}

/* ------------------------------------------------------------ main */

static void usage(void)
{
	fputs("usage: milterload --socket unix:/PATH|inet:PORT@HOST [--conns N] [--messages N]\n"
	      "                  [--per-conn N] [--rcpts N] [--size BYTES] [--from ADDR] [--to ADDR]\n"
	      "                  [--sasl USER] [--client-addr IP] [--helo NAME] [--hold N] [--pid PID]\n"
	      "                  [--nodelay] [--write-size BYTES] [--max-seconds S] [-v]\n", stderr);
	exit(2);
}

static unsigned long number_arg(const char *name, const char *v, unsigned long min, unsigned long max)
{
	char *end;
	unsigned long n;
	errno = 0;
	n = strtoul(v, &end, 10);
	if (errno || end == v || *end || n < min || n > max)
		die("%s: want a number from %lu to %lu, not '%s'", name, min, max, v);
	return n;
}

/* The value after option argv[*i]; steps *i over it. */
static const char *option_value(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		die("%s needs a value", argv[*i]);
	return argv[++*i];
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--socket"))
			opt.socket = option_value(argc, argv, &i);
		else if (!strcmp(a, "--conns"))
			opt.conns = (unsigned)number_arg(a, option_value(argc, argv, &i), 1, 10000);
		else if (!strcmp(a, "--messages"))
			opt.messages = number_arg(a, option_value(argc, argv, &i), 0, 100000000);
		else if (!strcmp(a, "--per-conn"))
			opt.per_conn = (unsigned)number_arg(a, option_value(argc, argv, &i), 1, 1000000);
		else if (!strcmp(a, "--rcpts"))
			opt.rcpts = (unsigned)number_arg(a, option_value(argc, argv, &i), 1, 10000);
		else if (!strcmp(a, "--size"))
			opt.size = number_arg(a, option_value(argc, argv, &i), 0, 100 * 1024 * 1024);
		else if (!strcmp(a, "--from"))
			opt.from = option_value(argc, argv, &i);
		else if (!strcmp(a, "--to"))
			opt.to = option_value(argc, argv, &i);
		else if (!strcmp(a, "--sasl"))
			opt.sasl = option_value(argc, argv, &i);
		else if (!strcmp(a, "--client-addr"))
			opt.client_addr = option_value(argc, argv, &i);
		else if (!strcmp(a, "--helo"))
			opt.helo = option_value(argc, argv, &i);
		else if (!strcmp(a, "--hold"))
			opt.hold = (unsigned)number_arg(a, option_value(argc, argv, &i), 0, 100000);
		else if (!strcmp(a, "--pid"))
			opt.pid = (long)number_arg(a, option_value(argc, argv, &i), 1, LONG_MAX);
		else if (!strcmp(a, "--max-seconds"))
			opt.max_seconds = (unsigned)number_arg(a, option_value(argc, argv, &i), 1, 86400);
		else if (!strcmp(a, "--write-size"))
			opt.write_size = number_arg(a, option_value(argc, argv, &i), 0, 1 << 30);
		else if (!strcmp(a, "--nodelay"))
			opt.nodelay = true;
		else if (!strcmp(a, "-v"))
			opt.verbose = true;
		else
			usage();
	}
	if (!opt.socket)
		usage();
	if (strlen(opt.from) > 256 || strlen(opt.to) > 256 || strlen(opt.helo) > 200)
		die("--from, --to or --helo is too long");
}

/* The body: --size bytes of CRLF-terminated text lines. */
static char *make_body(size_t size)
{
	char *b = malloc(size + 1);
	size_t col = 0;
	if (!b)
		die("out of memory");
	for (size_t i = 0; i < size; i++) {
		if (size - i <= 2 && col > 0) {
			b[i] = size - i == 2 ? '\r' : '\n';
			continue;
		}
		if (col == BODY_LINE) {
			b[i] = '\r';
			col++;
		} else if (col == BODY_LINE + 1) {
			b[i] = '\n';
			col = 0;
		} else {
			b[i] = (char)('a' + (i * 7 + col) % 26);
			col++;
		}
	}
	b[size] = '\0';
	return b;
}

/* Opens --hold connections through HELO and leaves them open. */
static struct session *hold_open(struct stats *st)
{
	struct session *held = calloc(opt.hold, sizeof *held);
	unsigned ok = 0;
	if (!held)
		die("out of memory");
	for (unsigned i = 0; i < opt.hold; i++) {
		held[i].fd = -1;
		if (!session_open(&held[i], &mta, st) || !session_flush(&held[i])) {
			fprintf(stderr, "milterload: held connection %u: %s\n", i + 1, held[i].error);
			session_close(&held[i]);
		} else
			ok++;
		/* a held connection reads nothing more */
		free(held[i].in);
		held[i].in = NULL;
	}
	printf("hold: %u of %u connections open after CONNECT and HELO\n", ok, opt.hold);
	return held;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct proc_usage base = {0}, before = {0}, after = {0};
	struct stats all = {0}, *per;
	struct session *held = NULL;
	pthread_t *threads;
	double t0, t1;

	parse_args(argc, argv);
	if (!session_parse_socket(opt.socket, &mta.milter, &mta.milter_len))
		die("bad --socket '%s' (unix:/PATH or inet:PORT@HOST)", opt.socket);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	mta.milter_name = opt.socket;
	mta.nodelay = opt.nodelay;
	mta.write_size = opt.write_size;
	mta.client_addr = opt.client_addr;
	mta.helo = opt.helo;
	mta.sasl = opt.sasl;
	mta.from = opt.from;
	mta.to = opt.to;
	mta.rcpts = opt.rcpts;
	mta.body = make_body(opt.size);
	mta.body_len = opt.size;
	mta.run_id = (unsigned)getpid();
	if (opt.pid && !procstat_read(opt.pid, &base))
		die("no process %ld", opt.pid);

	if (opt.hold) {
		struct proc_usage h;
		struct stats hs = {0};
		if (opt.pid)
			print_usage_line("before hold", &base);
		held = hold_open(&hs);
		sleep(HOLD_SETTLE_S);
		if (opt.pid) {
			procstat_read(opt.pid, &h);
			print_usage_line("holding", &h);
			printf("RESULT hold=%u rss_kb=%ld hwm_kb=%ld tree_rss_kb=%ld rss_per_conn_kb=%.1f\n",
			       opt.hold, h.rss_kb, h.hwm_kb, h.tree_rss_kb,
			       (double)(h.rss_kb - base.rss_kb) / opt.hold);
		}
		session_stats_free(&hs);
	}

	if (opt.messages) {
		clock_gettime(CLOCK_MONOTONIC, &run.deadline);
		run.deadline.tv_sec += opt.max_seconds;
		per = calloc(opt.conns, sizeof *per);
		threads = calloc(opt.conns, sizeof *threads);
		if (!per || !threads)
			die("out of memory");
		if (opt.pid)
			procstat_read(opt.pid, &before);
		t0 = session_now_ms();
		for (unsigned i = 0; i < opt.conns; i++)
			if (pthread_create(&threads[i], NULL, worker, &per[i]) != 0)
				die("pthread_create: %s", strerror(errno));
		for (unsigned i = 0; i < opt.conns; i++)
			pthread_join(threads[i], NULL);
		t1 = session_now_ms();
		if (opt.pid)
			procstat_read(opt.pid, &after);
		for (unsigned i = 0; i < opt.conns; i++) {
			merge(&all, &per[i]);
			session_stats_free(&per[i]);
		}
		report(&all, (t1 - t0) / 1e3, &before, &after);
		if (past_deadline())
			printf("stopped at --max-seconds %u\n", opt.max_seconds);
		session_stats_free(&all);
		free(per);
		free(threads);
	}

	for (unsigned i = 0; i < opt.hold; i++) {
		session_quit(&held[i]);
		free(held[i].out);
	}
	free(held);
	free((char *)mta.body);
	return run.errors ? 1 : 0;
}
