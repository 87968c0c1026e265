/*
 * signbench - DKIM signing throughput of the signer module on one core,
 * and the load and lookup cost of a 100,000-domain KeyTable.
 *
 * usage: signbench [-t SECONDS] KEYDIR
 *
 * KEYDIR holds the keys of tests/unit/dkim/signer_mkkeys (rsa.private,
 * ed.key); tables are written there. For RSA-2048 and Ed25519 and for a
 * 4 KB and a 100 KB message, it signs through signer_begin ... signer_eom
 * (the calls the milter makes, body in 64 KB chunks) for SECONDS
 * (default 3) of CPU time and prints signatures per CPU second: like
 * "openssl speed" (which counts user CPU time unless -elapsed), so the
 * two compare on a busy machine too. scripts/bench-signer runs both.
 * Table load times are wall-clock, as an admin would see them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keytable.h"
#include "privkey.h"
#include "signer.h"

#define BENCH_DOMAINS 100000
#define BENCH_CHUNK 65536

static char *bench_oversign[] = { "from", NULL };

static double bench_clock(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double bench_now(void)
{
	return bench_clock(CLOCK_MONOTONIC);
}

static double bench_cpu(void)
{
	return bench_clock(CLOCK_THREAD_CPUTIME_ID);
}

static void bench_write(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	if (fp == NULL || fputs(text, fp) < 0 || fclose(fp) != 0) {
		perror(path);
		exit(1);
	}
}

static struct settings bench_settings(char *key_table, char *signing_table)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.path = (char *)"signbench";
	s.key_table = key_table;
	s.signing_table = signing_table;
	s.canon_header_relaxed = s.canon_body_relaxed = true;
	s.oversign_headers = bench_oversign;
	s.require_safe_keys = true;
	return s;
}

static struct keytable *bench_load(const struct settings *s)
{
	struct diag d = { 0 };
	struct keytable *kt = keytable_load(s, &d);
	if (kt == NULL) {
		diag_print(&d, stderr);
		exit(1);
	}
	diag_free(&d);
	return kt;
}

/* A body of about n bytes in 76-character lines. */
static char *bench_body(size_t n, size_t *len)
{
	char *b = malloc(n + 80);
	size_t o = 0;
	if (b == NULL)
		exit(1);
	for (unsigned i = 0; o < n; i++)
		o += (size_t)sprintf(b + o, "%06u The quick brown fox jumps over the lazy dog. "
			"Pack my box with jugs.\r\n", i);
	*len = o;
	return b;
}

static int bench_sign_one(const struct keytable *kt, const struct settings *s, const char *body,
	size_t len)
{
	static const char *const h[][2] = {
		{ "From", " Alice <alice@example.com>" },
		{ "To", " Bob <bob@example.net>" },
		{ "Subject", " The monthly newsletter" },
		{ "Date", " Mon, 01 Jan 2024 10:00:00 +0000" },
		{ "Message-ID", " <20240101100000.12345@example.com>" },
		{ "MIME-Version", " 1.0" },
		{ "Content-Type", " text/plain; charset=utf-8" },
		{ "List-Unsubscribe", " <https://example.com/u/12345>" },
		{ "List-Unsubscribe-Post", " List-Unsubscribe=One-Click" },
	};
	struct signer_result res;
	char why[256];
	struct signer *sg = signer_begin(kt, s, "BENCH");
	int rc = sg ? SIGNER_SIGN : SIGNER_ERROR;

	for (size_t i = 0; rc == SIGNER_SIGN && i < sizeof(h) / sizeof(h[0]); i++)
		if (signer_header(sg, h[i][0], h[i][1]) != 0)
			rc = SIGNER_ERROR;
	if (rc == SIGNER_SIGN)
		rc = signer_eoh(sg, "alice@example.com", why, sizeof(why));
	for (size_t o = 0; rc == SIGNER_SIGN && o < len; o += BENCH_CHUNK)
		rc = signer_body(sg, (const unsigned char *)body + o,
			len - o < BENCH_CHUNK ? len - o : BENCH_CHUNK);
	if (rc == SIGNER_SIGN)
		rc = signer_eom(sg, &res, why, sizeof(why));
	if (rc != SIGNER_SIGN || res.count != 1) {
		fprintf(stderr, "signbench: signing failed: %s\n", why);
		exit(1);
	}
	signer_free(sg);
	return rc;
}

static void bench_signing(const char *dir, double seconds)
{
	static const char *const keys[][2] = { { "rsa.private", "RSA-2048" }, { "ed.key", "Ed25519" } };
	static const size_t sizes[] = { 4 * 1024, 100 * 1024 };
	char kt_path[512], st_path[512], st_spec[520], text[1024];

	snprintf(kt_path, sizeof(kt_path), "%s/bench.KeyTable", dir);
	snprintf(st_path, sizeof(st_path), "%s/bench.SigningTable", dir);
	snprintf(st_spec, sizeof(st_spec), "refile:%s", st_path);
	bench_write(st_path, "*@example.com bench\n");
	printf("%-10s %-8s %12s %12s   (per CPU second of one thread)\n", "key", "message",
		"signatures/s", "us/signature");
	for (size_t k = 0; k < 2; k++) {
		snprintf(text, sizeof(text), "bench example.com:bench:%s/%s\n", dir, keys[k][0]);
		bench_write(kt_path, text);
		struct settings s = bench_settings(kt_path, st_spec);
		struct keytable *kt = bench_load(&s);
		for (size_t z = 0; z < 2; z++) {
			size_t len;
			char *body = bench_body(sizes[z], &len);
			for (int warm = 0; warm < 20; warm++)
				bench_sign_one(kt, &s, body, len);
			unsigned long n = 0;
			double t0 = bench_cpu(), t;
			do {
				for (int i = 0; i < 10; i++)
					bench_sign_one(kt, &s, body, len);
				n += 10;
				t = bench_cpu() - t0;
			} while (t < seconds);
			printf("%-10s %-8s %12.1f %12.1f\n", keys[k][1], z ? "100KB" : "4KB",
				(double)n / t, t / (double)n * 1e6);
			free(body);
		}
		keytable_free(kt);
	}
	unsigned long lent, parsed;
	privkey_stats(&lent, &parsed);
	printf("keys lent to libopendkim: %lu, keys libopendkim parsed itself: %lu\n", lent, parsed);
}

static void bench_tables(const char *dir)
{
	char kt_path[512], plain[512], re[512], re_spec[520];
	snprintf(kt_path, sizeof(kt_path), "%s/big.KeyTable", dir);
	snprintf(plain, sizeof(plain), "%s/big.SigningTable", dir);
	snprintf(re, sizeof(re), "%s/big.SigningTable.re", dir);
	snprintf(re_spec, sizeof(re_spec), "refile:%s", re);
	FILE *k = fopen(kt_path, "w"), *p = fopen(plain, "w"), *r = fopen(re, "w");
	if (!k || !p || !r) {
		perror(dir);
		exit(1);
	}
	for (int i = 0; i < BENCH_DOMAINS; i++) {
		fprintf(k, "k%d d%d.example:sel:%s/%s\n", i, i, dir, i % 2 ? "ed.key" : "rsa.private");
		fprintf(p, "d%d.example k%d\n", i, i);
		fprintf(r, "*@d%d.example k%d\n", i, i);
	}
	fclose(k);
	fclose(p);
	fclose(r);

	char *specs[] = { plain, re_spec };
	for (int t = 0; t < 2; t++) {
		struct settings s = bench_settings(kt_path, specs[t]);
		double t0 = bench_now();
		struct keytable *kt = bench_load(&s);
		double load = bench_now() - t0;
		struct keytable_signing out;
		char why[256], addr[64];
		const int lookups = 1000000;
		t0 = bench_cpu();
		for (int i = 0; i < lookups; i++) {
			snprintf(addr, sizeof(addr), "user@d%ld.example", (long)i * 7919 % BENCH_DOMAINS);
			if (keytable_lookup(kt, addr, false, &out, 1, why, sizeof(why)) != 1) {
				fprintf(stderr, "signbench: no entry for %s\n", addr);
				exit(1);
			}
		}
		double per = (bench_cpu() - t0) / lookups;
		printf("%d domains, %-6s SigningTable: load %.3f s, lookup %.2f us CPU/message\n",
			BENCH_DOMAINS, t ? "refile" : "plain", load, per * 1e6);
		keytable_free(kt);
	}
}

int main(int argc, char **argv)
{
	double seconds = 3;
	int c;

	while ((c = getopt(argc, argv, "t:")) != -1) {
		if (c == 't') {
			seconds = atof(optarg);
		} else {
			fprintf(stderr, "usage: signbench [-t SECONDS] KEYDIR\n");
			return 2;
		}
	}
	if (optind != argc - 1 || seconds <= 0) {
		fprintf(stderr, "usage: signbench [-t SECONDS] KEYDIR\n");
		return 2;
	}
	bench_signing(argv[optind], seconds);
	bench_tables(argv[optind]);
	return 0;
}
