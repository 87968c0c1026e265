/*
 * ratelimit_bench - how many recipient checks per second the rate limiter
 * does against a Redis, and how long one check takes (p50, p99, max).
 *
 *	ratelimit_bench REDIS_URL SECONDS THREADS...
 *
 * Each run starts THREADS threads on one shared store (as libmilter's
 * workers share it); each thread does ratelimit_check_recipients with
 * count 1 for the SPEC's standard class (recipients 1000/1h 10000/1d,
 * two buckets per check) over its own 1000 accounts, so buckets rarely
 * run empty; an OVER costs the same round trip and is counted apart.
 * scripts/bench-ratelimit starts a private Redis and runs this.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"
#include "store.h"

/* Accounts each thread cycles through. */
#define BENCH_ACCOUNTS 1000
#define BENCH_THREADS_MAX 64

struct worker {
	pthread_t tid;
	int id;
	struct store *st;
	const struct policy_class *cls;
	double deadline;
	long *lat_ns;			/* one per check */
	size_t n, cap;
	unsigned long ok, over, failed;
	char last_error[128];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct ratelimit_receipt r = { 0 };
	struct ratelimit_verdict v;
	char account[64];

	for (unsigned long i = 0;; i++) {
		double t0 = now_s();
		if (t0 >= w->deadline)
			break;
		snprintf(account, sizeof(account), "bench-%d-%lu", w->id, i % BENCH_ACCOUNTS);
		enum ratelimit_status s = ratelimit_check_recipients(w->st, w->cls, DIRECTION_OUTBOUND,
								     account, NULL, 1, &r, &v);
		double t1 = now_s();
		ratelimit_receipt_clear(&r);
		if (s == RATELIMIT_OK)
			w->ok++;
		else if (s == RATELIMIT_OVER)
			w->over++;
		else {
			w->failed++;
			snprintf(w->last_error, sizeof(w->last_error), "%s", v.reason);
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 65536;
			w->lat_ns = realloc(w->lat_ns, w->cap * sizeof(*w->lat_ns));
			if (w->lat_ns == NULL) {
				fprintf(stderr, "out of memory\n");
				exit(1);
			}
		}
		w->lat_ns[w->n++] = (long)((t1 - t0) * 1e9);
	}
	return NULL;
}

static int by_value(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

static int run(struct store *st, const struct policy_class *cls, int threads, double seconds)
{
	struct worker w[BENCH_THREADS_MAX];
	memset(w, 0, sizeof(w));
	double start = now_s();
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){ .id = i, .st = st, .cls = cls, .deadline = start + seconds };
		if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	size_t total = 0;
	unsigned long ok = 0, over = 0, failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		total += w[i].n;
		ok += w[i].ok;
		over += w[i].over;
		failed += w[i].failed;
	}
	double elapsed = now_s() - start;
	long *all = malloc((total ? total : 1) * sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, w[i].lat_ns, w[i].n * sizeof(*all));
		k += w[i].n;
		free(w[i].lat_ns);
	}
	qsort(all, total, sizeof(*all), by_value);
	printf("threads %2d: %9.0f checks/s  p50 %7.1f us  p99 %7.1f us  max %8.1f us  "
	       "(%zu checks: %lu ok, %lu over, %lu failed)\n",
	       threads, total / elapsed, total ? all[total / 2] / 1e3 : 0,
	       total ? all[total * 99 / 100] / 1e3 : 0, total ? all[total - 1] / 1e3 : 0,
	       total, ok, over, failed);
	for (int i = 0; i < threads; i++)
		if (w[i].failed) {
			fprintf(stderr, "store failures, last: %s\n", w[i].last_error);
			break;
		}
	free(all);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: ratelimit_bench REDIS_URL SECONDS THREADS...\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct settings s;
	struct diag d = { 0 };
	memset(&s, 0, sizeof(s));
	s.path = (char *)"bench";
	s.redis_url = argv[1];
	s.redis_timeout_ms = 1000;
	s.redis_prefix = (char *)"bench:";
	struct store *st = store_open(&s, &d);
	if (st == NULL) {
		diag_print(&d, stderr);
		return 1;
	}

	struct policy_class cls;
	memset(&cls, 0, sizeof(cls));
	snprintf(cls.name, sizeof(cls.name), "standard");
	cls.recipients[0] = (struct policy_rate){ 1000, 3600000, "1000/1h" };
	cls.recipients[1] = (struct policy_rate){ 10000, 86400000, "10000/1d" };
	cls.recipients_count = 2;

	double seconds = atof(argv[2]);
	int rc = 0;
	for (int i = 3; i < argc; i++) {
		int threads = atoi(argv[i]);
		if (threads < 1 || threads > BENCH_THREADS_MAX) {
			fprintf(stderr, "threads must be 1..%d\n", BENCH_THREADS_MAX);
			return 2;
		}
		rc |= run(st, &cls, threads, seconds);
	}
	store_close(st);
	return rc;
}
