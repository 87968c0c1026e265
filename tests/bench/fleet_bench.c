/*
 * fleet_bench - the fleet figures: how long a store fails after a master
 * dies, how many charges the new master lost, and checks per second.
 *
 *	fleet_bench REDIS_URL SECONDS THREADS [KILLFILE]
 *
 * THREADS threads share one store (as a milter's workers do) and charge
 * one token per call, each over its own 1000 accounts (so a Cluster
 * spreads them over its masters), for SECONDS. Buckets hold 10^9 tokens
 * over 10^9 hours: a charge is never refused, and refill (a token in
 * about an hour) is nothing beside the counts compared. Output, one line:
 *
 *	threads N checks C ok K failed F rate R/s p50 X ms p99 Y ms max Z ms
 *
 * With KILLFILE (scripts/bench-fleet writes it when it kills a master,
 * holding that moment as epoch seconds), it also prints
 *
 *	window S s lost L
 *
 * S: from the kill to the first admitted charge after the last failure
 * (the time without enforcement); L: charges admitted (acknowledged)
 * that the store no longer holds afterwards (sum over the accounts of
 * admitted minus used): what asynchronous replication lost.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

#define BENCH_ACCOUNTS 1000
#define BENCH_THREADS_MAX 64
#define BENCH_COUNT 1000000000UL
#define BENCH_PERIOD_MS (1000000000UL * 3600 * 1000)

struct worker {
	pthread_t tid;
	int id;
	struct store *st;
	double deadline;
	long *lat_us;
	size_t n, cap;
	unsigned long ok, failed;
	unsigned long admitted[BENCH_ACCOUNTS];
	double last_fail, first_ok_after;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void key_of(char *buf, size_t size, int id, int a)
{
	snprintf(buf, size, "bench:{fb-%d-%d}:r", id, a);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char key[64], err[256];

	for (unsigned long i = 0;; i++) {
		double t0 = now_s();
		if (t0 >= w->deadline)
			break;
		int a = (int)(i % BENCH_ACCOUNTS);
		key_of(key, sizeof(key), w->id, a);
		struct store_bucket b = { .key = key, .count = BENCH_COUNT, .period_ms = BENCH_PERIOD_MS,
			.cost = 1 };
		struct store_charge_result res;
		bool ok = store_charge(w->st, &b, 1, NULL, 0, &res, err, sizeof(err)) == STORE_OK
			&& res.admitted;
		double t1 = now_s();
		if (ok) {
			w->ok++;
			w->admitted[a]++;
			if (w->last_fail > 0 && w->first_ok_after < w->last_fail)
				w->first_ok_after = t1;
		} else {
			w->failed++;
			w->last_fail = t1;
			usleep(1000);	/* a failing store answers at once: do not spin */
		}
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 65536;
			w->lat_us = realloc(w->lat_us, w->cap * sizeof(*w->lat_us));
			if (w->lat_us == NULL)
				abort();
		}
		w->lat_us[w->n++] = (long)((t1 - t0) * 1e6);
	}
	return NULL;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: fleet_bench REDIS_URL SECONDS THREADS [KILLFILE]\n");
		return 2;
	}
	log_open("fleet_bench", 1);
	log_set_level(LOG_LEVEL_ERROR);
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.redis_url = argv[1];
	s.redis_timeout_ms = 200;
	struct diag d = { 0 };
	struct store *st = store_open(&s, &d);
	if (st == NULL) {
		diag_print(&d, stderr);
		return 1;
	}
	double seconds = atof(argv[2]);
	int threads = atoi(argv[3]);
	if (threads < 1 || threads > BENCH_THREADS_MAX)
		return 2;
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	double start = now_s();
	int id0 = (int)(getpid() % 100000) * BENCH_THREADS_MAX;
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){ .id = id0 + i, .st = st, .deadline = start + seconds };
		pthread_create(&w[i].tid, NULL, work, &w[i]);
	}
	unsigned long ok = 0, failed = 0;
	size_t n = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		ok += w[i].ok;
		failed += w[i].failed;
		n += w[i].n;
	}
	long *all = malloc((n ? n : 1) * sizeof(*all));
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, w[i].lat_us, w[i].n * sizeof(*all));
		k += w[i].n;
	}
	qsort(all, n, sizeof(*all), cmp_long);
	double el = now_s() - start;
	printf("threads %d checks %zu ok %lu failed %lu rate %.0f/s p50 %.3f ms p99 %.3f ms max %.3f ms\n",
	       threads, n, ok, failed, (double)ok / el, n ? all[n / 2] / 1000.0 : 0,
	       n ? all[(size_t)(n * 0.99)] / 1000.0 : 0, n ? all[n - 1] / 1000.0 : 0);

	if (argc > 4) {
		FILE *fp = fopen(argv[4], "r");
		double killed = 0, last_fail = 0, first_ok = 0;
		if (fp == NULL || fscanf(fp, "%lf", &killed) != 1) {
			fprintf(stderr, "fleet_bench: no kill time in %s\n", argv[4]);
			return 1;
		}
		fclose(fp);
		for (int i = 0; i < threads; i++)
			if (w[i].last_fail > last_fail)
				last_fail = w[i].last_fail;
		for (int i = 0; i < threads; i++)
			if (w[i].first_ok_after > last_fail && (first_ok == 0 || w[i].first_ok_after < first_ok))
				first_ok = w[i].first_ok_after;
		/* What the store holds now against what it acknowledged. */
		long long lost = 0;
		char key[64], err[256];
		for (int i = 0; i < threads; i++)
			for (int a = 0; a < BENCH_ACCOUNTS; a++) {
				if (w[i].admitted[a] == 0)
					continue;
				key_of(key, sizeof(key), w[i].id, a);
				struct store_bucket b = { .key = key, .count = BENCH_COUNT,
					.period_ms = BENCH_PERIOD_MS, .cost = 1 };
				struct store_level lv;
				long long at;
				/* The store may still be learning the new topology. */
				int tries = 0;
				while (store_peek(st, &b, 1, &lv, &at, err, sizeof(err)) != STORE_OK) {
					if (++tries == 100) {
						fprintf(stderr, "fleet_bench: peek: %s\n", err);
						return 1;
					}
					usleep(100000);
				}
				long long held = llround(lv.used);
				if (held < (long long)w[i].admitted[a])
					lost += (long long)w[i].admitted[a] - held;
			}
		printf("window %.2f s lost %lld\n", failed ? first_ok - killed : 0.0, lost);
	}
	store_close(st);
	return 0;
}
