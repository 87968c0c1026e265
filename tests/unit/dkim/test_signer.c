/*
 * Unit tests of DKIM signing (signer.c): every signed message is written
 * to a temp dir and verified by independent verifiers, python3-dkim and
 * OpenDKIM's own (tests/lib/dkim_verify.py --opendkim). Keys come from
 * signer_mkkeys. Skips (77) when the keys or the verifiers are missing.
 */
#include "unit.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include "keytable.h"
#include "privkey.h"
#include "signer.h"

static char dir[64];
static char *oversign_from[] = { "from", NULL };
static struct keytable *both_keys;	/* *@example.com: RSA line, then Ed25519 line */

struct header {
	const char *name;
	const char *value;		/* as the milter gets it: leading space, LF folds */
};

#define HEADERS_MAX 16

struct message {
	const char *name;
	struct header headers[HEADERS_MAX];	/* up to the first NULL name */
	const char *body;
	size_t body_len;		/* 0 with body NULL: generated below */
	size_t chunk;			/* body fed in chunks of this size */
};

static const struct header std_headers[] = {
	{ "From", " Alice <alice@example.com>" },
	{ "To", " bob@example.net" },
	{ "Subject", " test message" },
	{ "Date", " Mon, 01 Jan 2024 10:00:00 +0000" },
	{ "Message-ID", " <1@example.com>" },
	{ NULL, NULL },
};

static const char *dpath(const char *name)
{
	static char buf[8][192];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, 192, "%s/%s", dir, name);
	return p;
}

static void write_crlf(FILE *fp, const char *s)
{
	for (const char *p = s; *p; p++) {
		if (*p == '\n' && (p == s || p[-1] != '\r'))
			fputc('\r', fp);
		fputc(*p, fp);
	}
}

/* The message as it leaves the MTA: our signatures on top, CRLF lines. */
static void write_message(const char *path, const struct signer_result *res,
	const struct header *h, size_t nh, const char *body, size_t blen)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	for (size_t i = 0; res != NULL && i < res->count; i++) {
		fputs("DKIM-Signature:", fp);
		write_crlf(fp, res->sig[i].header_value);
		fputs("\r\n", fp);
	}
	for (size_t i = 0; i < nh; i++) {
		fprintf(fp, "%s:", h[i].name);
		write_crlf(fp, h[i].value);
		fputs("\r\n", fp);
	}
	fputs("\r\n", fp);
	fwrite(body, 1, blen, fp);
	/* SMTP ends the data with CRLF before the dot */
	if (blen > 0 && (blen < 2 || body[blen - 2] != '\r' || body[blen - 1] != '\n'))
		fputs("\r\n", fp);
	fclose(fp);
}

static size_t count_headers(const struct header *h)
{
	size_t n = 0;
	while (h[n].name != NULL)
		n++;
	return n;
}

/* Signs one message through the signer_* calls the milter makes; writes it to path. */
static int sign_message(const struct keytable *kt, const struct settings *s, const char *path,
	const struct header *h, size_t nh, const char *from, const char *body, size_t blen,
	size_t chunk, struct signer_result *copy, char *why, size_t wlen)
{
	struct signer_result res;
	struct signer *sg = signer_begin(kt, s, "QUEUEID1");
	assert_non_null(sg);
	for (size_t i = 0; i < nh; i++)
		assert_true(signer_header(sg, h[i].name, h[i].value) != SIGNER_ERROR);
	int rc = signer_eoh(sg, from, why, wlen);
	if (rc == SIGNER_SIGN) {
		for (size_t o = 0; o < blen; o += chunk)
			assert_int_equal(signer_body(sg, (const unsigned char *)body + o,
				blen - o < chunk ? blen - o : chunk), 0);
		rc = signer_eom(sg, &res, why, wlen);
		if (rc == SIGNER_SIGN && path != NULL)
			write_message(path, &res, h, nh, body, blen);
		if (copy != NULL) {
			*copy = res;
			for (size_t i = 0; i < res.count; i++)
				copy->sig[i].header_value = NULL;
		}
	}
	signer_free(sg);
	if (rc == SIGNER_ERROR)
		fprintf(stderr, "signing %s: %s\n", path ? path : "(no file)", why);
	return rc;
}

static struct settings settings_for(bool multiple, bool relaxed)
{
	struct settings s;
	memset(&s, 0, sizeof(s));
	s.path = (char *)"test.conf";
	s.multiple_signatures = multiple;
	s.canon_header_relaxed = s.canon_body_relaxed = relaxed;
	s.oversign_headers = oversign_from;
	s.require_safe_keys = true;
	return s;
}

static struct keytable *load_tables(const char *keys, const char *signing, char **oversign)
{
	FILE *fp = fopen(dpath("KeyTable"), "w");
	assert_non_null(fp);
	fputs(keys, fp);
	fclose(fp);
	fp = fopen(dpath("SigningTable"), "w");
	assert_non_null(fp);
	fputs(signing, fp);
	fclose(fp);
	char st[160];
	snprintf(st, sizeof(st), "refile:%s", dpath("SigningTable"));
	struct settings s = settings_for(true, true);
	s.key_table = (char *)dpath("KeyTable");
	s.signing_table = st;
	s.oversign_headers = oversign;
	struct diag d = { 0 };
	struct keytable *kt = keytable_load(&s, &d);
	diag_print(&d, stderr);
	assert_non_null(kt);
	return kt;
}

/* Runs dkim_verify.py on files with both verifiers; returns its exit status. */
static int verify(const char *options, const char *files)
{
	char cmd[16384];
	snprintf(cmd, sizeof(cmd),
		"/usr/bin/python3 %s/tests/lib/dkim_verify.py %s "
		"--txt rsa._domainkey.example.com=%s --txt ed._domainkey.example.com=%s %s",
		TEST_SRCDIR, options, dpath("rsa.txt"), dpath("ed.txt"), files);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc));
	if (WEXITSTATUS(rc) == 77)
		skip();
	return WEXITSTATUS(rc);
}

/* 5 MB of varied lines, some with trailing blanks and 8-bit bytes. */
static char *big_body(size_t *len)
{
	size_t want = 5 * 1024 * 1024;
	char *b = malloc(want + 200);
	size_t n = 0;
	assert_non_null(b);
	for (unsigned line = 0; n < want; line++) {
		n += (size_t)sprintf(b + n, "line %u of a large body %s\r\n", line,
			line % 7 == 0 ? "with trailing blanks \t " :
			line % 11 == 0 ? "8-bit \xc3\xa9\xc3\xa0" : "ordinary text ...........");
	}
	*len = n;
	return b;
}

static void corpus_verifies_with_python_dkim_and_opendkim(void **state)
{
	(void)state;
	static char long_line[1100];
	memset(long_line, 'x', 990);
	strcpy(long_line + 990, "\r\nafter the long line\r\n");
	size_t big_len;
	char *big = big_body(&big_len);
	const struct message corpus[] = {
		{ "empty", { { NULL, NULL } }, "", 0, 65536 },
		{ "blank-lines", { { NULL, NULL } }, "\r\n\r\n\r\n", 6, 65536 },
		{ "trailing-blank-lines", { { NULL, NULL } },
		  "line one\r\nline two\r\n\r\n\r\n\r\n", 26, 3 },
		{ "spaces-and-tabs", { { NULL, NULL } },
		  "trailing spaces   \r\ntrailing tab\t\r\n\t leading blanks\r\n \t \r\n"
		  "inside \t  blanks\t \r\n", 0, 1 },
		{ "long-line", { { NULL, NULL } }, long_line, 0, 65536 },
		{ "utf8-and-8bit", {
			{ "From", " =?UTF-8?Q?J=C3=BCrgen?= <alice@example.com>" },
			{ "To", " bob@example.net" },
			{ "Subject", " =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=" },
			{ "MIME-Version", " 1.0" },
			{ "Content-Type", " text/plain; charset=utf-8" },
			{ "Content-Transfer-Encoding", " 8bit" },
			{ NULL, NULL } },
		  "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln\r\nlatin-1 \xe9t\xe9\r\n\x80\xff bytes\r\n",
		  0, 65536 },
		{ "folded-headers", {
			{ "From", " Alice\n <alice@example.com>" },
			{ "To", " bob@example.net,\n\tcarol@example.net,\n  dave@example.net" },
			{ "Subject", " a subject\n\tfolded over\n three lines" },
			{ "X-Tight", "no space after the colon" },
			{ "X-Spaced", "   three spaces  " },
			{ NULL, NULL } },
		  "body\r\n", 0, 65536 },
		{ "repeated-headers", {
			{ "Received", " from a (a [192.0.2.1]) by b; Mon, 1 Jan 2024 10:00:00 +0000" },
			{ "Received", " from c by a; Mon, 1 Jan 2024 09:59:00 +0000" },
			{ "From", " alice@example.com" },
			{ "To", " bob@example.net" },
			{ "To", " carol@example.net" },
			{ "Cc", " dave@example.net" },
			{ "Subject", " two of some" },
			{ NULL, NULL } },
		  "body\r\n", 0, 65536 },
		{ "no-final-crlf", { { NULL, NULL } }, "no line end at the end", 0, 65536 },
		{ "five-megabytes", { { NULL, NULL } }, big, big_len, 65536 },
		/* A CR alone (not valid RFC 5322, but Postfix passes it): with
		 * c=simple every verifier agrees. libopendkim's relaxed body
		 * canonicalization drops it where python3-dkim keeps it, so
		 * relaxed is not part of this corpus. */
		{ "bare-cr-in-line", { { NULL, NULL } }, "a\rb\r\nc\r\n", 0, 65536 },
	};
	const char *canon[] = { "relaxed", "simple" };
	char files[8192] = "";
	char why[256];

	for (size_t c = 0; c < 2; c++) {
		struct settings s = settings_for(true, c == 0);
		for (size_t m = 0; m < sizeof(corpus) / sizeof(corpus[0]); m++) {
			const struct message *msg = &corpus[m];
			if (c == 0 && strcmp(msg->name, "bare-cr-in-line") == 0)
				continue;
			const struct header *h = msg->headers[0].name ? msg->headers : std_headers;
			size_t blen = msg->body_len ? msg->body_len : strlen(msg->body);
			char name[96];
			snprintf(name, sizeof(name), "%s-%s.eml", canon[c], msg->name);
			struct signer_result res;
			assert_int_equal(sign_message(both_keys, &s, dpath(name), h, count_headers(h),
				"alice@example.com", msg->body, blen, msg->chunk, &res, why,
				sizeof(why)), SIGNER_SIGN);
			assert_int_equal(res.count, 2);
			assert_string_equal(res.sig[0].algorithm, "rsa-sha256");
			assert_string_equal(res.sig[0].selector, "rsa");
			assert_string_equal(res.sig[1].algorithm, "ed25519-sha256");
			assert_string_equal(res.sig[1].selector, "ed");
			assert_string_equal(res.sig[1].domain, "example.com");
			snprintf(files + strlen(files), sizeof(files) - strlen(files), " %s", dpath(name));
		}
	}
	free(big);
	assert_int_equal(verify("--opendkim", files), 0);
}

static void signature_value_is_ready_for_smfi_insheader(void **state)
{
	(void)state;
	struct settings s = settings_for(false, true);
	struct signer *sg = signer_begin(both_keys, &s, "Q1");
	struct signer_result res;
	char why[256];
	for (size_t i = 0; std_headers[i].name; i++)
		assert_int_equal(signer_header(sg, std_headers[i].name, std_headers[i].value), 0);
	assert_int_equal(signer_eoh(sg, "alice@example.com", why, sizeof(why)), SIGNER_SIGN);
	assert_int_equal(signer_body(sg, (const unsigned char *)"hi\r\n", 4), 0);
	assert_int_equal(signer_eom(sg, &res, why, sizeof(why)), SIGNER_SIGN);
	assert_int_equal(res.count, 1);
	const char *v = res.sig[0].header_value;
	assert_memory_equal(v, " v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=rsa;", 60);
	assert_null(strchr(v, '\r'));
	assert_non_null(strstr(v, "\n\t"));
	/* every LF is a fold: followed by a blank */
	for (const char *p = strchr(v, '\n'); p; p = strchr(p + 1, '\n'))
		assert_true(p[1] == '\t' || p[1] == ' ');
	/* oversigned From: one more "from" in h= than there are From headers */
	assert_non_null(strstr(v, ":from"));
	signer_free(sg);
}

static void multiple_signatures_off_uses_the_first_matching_line(void **state)
{
	(void)state;
	struct settings s = settings_for(false, true);
	struct signer_result res;
	char why[256];
	assert_int_equal(sign_message(both_keys, &s, dpath("single.eml"), std_headers,
		count_headers(std_headers), "alice@example.com", "x\r\n", 3, 64, &res, why,
		sizeof(why)), SIGNER_SIGN);
	assert_int_equal(res.count, 1);
	assert_string_equal(res.sig[0].algorithm, "rsa-sha256");
	assert_int_equal(verify("", dpath("single.eml")), 0);
}

/* A second From added above the signed one after signing. */
static void add_forged_from(const char *in, const char *out)
{
	FILE *src = fopen(in, "rb"), *dst = fopen(out, "wb");
	char line[4096];
	bool done = false;
	assert_non_null(src);
	assert_non_null(dst);
	while (fgets(line, sizeof(line), src)) {
		if (!done && strncmp(line, "To:", 3) == 0) {
			fputs("From: Mallory <mallory@example.com>\r\n", dst);
			done = true;
		}
		fputs(line, dst);
	}
	assert_true(done);
	fclose(src);
	fclose(dst);
}

static void oversigned_from_breaks_when_a_second_from_is_added(void **state)
{
	(void)state;
	struct settings s = settings_for(true, true);
	char why[256];
	const struct header h[] = {
		{ "To", " bob@example.net" }, { "Subject", " hi" }, { "From", " alice@example.com" },
	};
	assert_int_equal(sign_message(both_keys, &s, dpath("over.eml"), h, 3, "alice@example.com",
		"body\r\n", 6, 64, NULL, why, sizeof(why)), SIGNER_SIGN);
	add_forged_from(dpath("over.eml"), dpath("over-forged.eml"));
	assert_int_equal(verify("--opendkim", dpath("over.eml")), 0);
	assert_int_equal(verify("--opendkim --expect-fail", dpath("over-forged.eml")), 0);

	/* The control: without oversigning OpenDKIM's verifier accepts the
	 * forged From (python3-dkim refuses any second From by itself). */
	char keys[512];
	snprintf(keys, sizeof(keys), "rsa example.com:rsa:%s\n", dpath("rsa.private"));
	struct keytable *plain = load_tables(keys, "*@example.com rsa\n", NULL);
	assert_int_equal(sign_message(plain, &s, dpath("plain.eml"), h, 3, "alice@example.com",
		"body\r\n", 6, 64, NULL, why, sizeof(why)), SIGNER_SIGN);
	add_forged_from(dpath("plain.eml"), dpath("plain-forged.eml"));
	assert_int_equal(verify("--opendkim --no-python", dpath("plain-forged.eml")), 0);
	assert_int_equal(verify("--opendkim --no-python --expect-fail", dpath("over-forged.eml")), 0);
	keytable_free(plain);
}

static void list_unsubscribe_and_post_are_signed(void **state)
{
	(void)state;
	struct settings s = settings_for(true, true);
	char why[256];
	const struct header h[] = {
		{ "From", " news@example.com" },
		{ "To", " bob@example.net" },
		{ "Subject", " news" },
		{ "List-Unsubscribe", " <https://example.com/u/123>, <mailto:u@example.com>" },
		{ "List-Unsubscribe-Post", " List-Unsubscribe=One-Click" },
	};
	assert_int_equal(sign_message(both_keys, &s, dpath("list.eml"), h, 5, "news@example.com",
		"news\r\n", 6, 64, NULL, why, sizeof(why)), SIGNER_SIGN);
	assert_int_equal(verify("--opendkim --require-h list-unsubscribe "
		"--require-h list-unsubscribe-post", dpath("list.eml")), 0);
}

static void messages_not_signed_say_why(void **state)
{
	(void)state;
	struct settings s = settings_for(true, true);
	char why[256];
	struct signer_result res;

	assert_null(signer_begin(NULL, &s, "Q"));

	struct signer *sg = signer_begin(both_keys, &s, "Q");
	assert_int_equal(signer_header(sg, "Subject", " no from"), 0);
	assert_int_equal(signer_eoh(sg, NULL, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "no usable From");
	assert_int_equal(signer_body(sg, (const unsigned char *)"x", 1), SIGNER_SKIP);
	assert_int_equal(signer_eom(sg, &res, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "no usable From");
	assert_int_equal(res.count, 0);
	signer_free(sg);

	assert_int_equal(sign_message(both_keys, &s, NULL, std_headers, count_headers(std_headers),
		"someone@nowhere.example", "", 0, 1, NULL, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "no signing table entry for someone@nowhere.example");

	/* a header name libopendkim refuses: unsigned, not failed */
	const struct header bad[] = { { "From", " alice@example.com" }, { "Bad;Name", " x" } };
	assert_int_equal(sign_message(both_keys, &s, NULL, bad, 2, "alice@example.com", "", 0, 1,
		NULL, why, sizeof(why)), SIGNER_SKIP);
	assert_non_null(strstr(why, "headers refused by libopendkim"));
}

static void header_limits_hold_exactly_at_the_limit(void **state)
{
	(void)state;
	struct settings s = settings_for(false, true);
	char why[256];
	struct header *h = calloc(SIGNER_HEADERS_MAX + 1, sizeof(*h));
	assert_non_null(h);
	h[0].name = "From";
	h[0].value = " alice@example.com";
	for (size_t i = 1; i <= SIGNER_HEADERS_MAX; i++) {
		h[i].name = "X-Count";
		h[i].value = " n";
	}
	assert_int_equal(sign_message(both_keys, &s, dpath("count.eml"), h, SIGNER_HEADERS_MAX,
		"alice@example.com", "x\r\n", 3, 64, NULL, why, sizeof(why)), SIGNER_SIGN);
	assert_int_equal(sign_message(both_keys, &s, NULL, h, SIGNER_HEADERS_MAX + 1,
		"alice@example.com", "x\r\n", 3, 64, NULL, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "more than 1000 header fields");
	free(h);

	/* bytes: "Name:" + value, folds counted as CRLF; From is 5 + 18 */
	size_t pad = SIGNER_HEADER_BYTES_MAX / 4 - 6;
	char *big[4];
	struct header hb[6] = { { "From", " alice@example.com" } };
	for (int i = 0; i < 4; i++) {
		big[i] = malloc(pad + 1);
		assert_non_null(big[i]);
		memset(big[i], 'p', pad);
		big[i][0] = ' ';
		big[i][pad] = '\0';
		hb[1 + i].name = "X-Pad";
		hb[1 + i].value = big[i];
	}
	big[3][pad - 23] = '\0';	/* 4 * (6 + pad) - 23 + 23 = the limit */
	assert_int_equal(sign_message(both_keys, &s, dpath("bytes.eml"), hb, 5, "alice@example.com",
		"x\r\n", 3, 64, NULL, why, sizeof(why)), SIGNER_SIGN);
	hb[5].name = "X";
	hb[5].value = "";
	assert_int_equal(sign_message(both_keys, &s, NULL, hb, 6, "alice@example.com", "x\r\n", 3,
		64, NULL, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "headers larger than 256 KB");
	for (int i = 0; i < 4; i++)
		free(big[i]);
	assert_int_equal(verify("", dpath("count.eml")), 0);
	assert_int_equal(verify("", dpath("bytes.eml")), 0);
}

/* What callbacks.c relies on to accept such mail unsigned: a skip, never an error. */
static void past_a_header_limit_every_step_says_skip_with_the_why(void **state)
{
	(void)state;
	struct settings s = settings_for(false, true);
	struct signer_result res;
	char why[256];
	struct signer *sg = signer_begin(both_keys, &s, "QUEUEID1");
	assert_non_null(sg);
	for (int i = 0; i < SIGNER_HEADERS_MAX; i++)
		assert_int_equal(signer_header(sg, "X-Count", " n"), 0);
	assert_int_equal(signer_header(sg, "X-Count", " n"), SIGNER_SKIP);
	assert_int_equal(signer_header(sg, "From", " alice@example.com"), SIGNER_SKIP);
	assert_int_equal(signer_eoh(sg, "alice@example.com", why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "more than 1000 header fields");
	assert_int_equal(signer_body(sg, (const unsigned char *)"x\r\n", 3), SIGNER_SKIP);
	why[0] = '\0';
	assert_int_equal(signer_eom(sg, &res, why, sizeof(why)), SIGNER_SKIP);
	assert_string_equal(why, "more than 1000 header fields");
	assert_int_equal(res.count, 0);
	signer_free(sg);
}

static void keys_are_never_parsed_per_message(void **state)
{
	(void)state;
	struct settings s = settings_for(true, true);
	unsigned long lent0, parsed0, lent1, parsed1;
	char why[256];
	privkey_stats(&lent0, &parsed0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(sign_message(both_keys, &s, NULL, std_headers,
			count_headers(std_headers), "alice@example.com", "x\r\n", 3, 64, NULL, why,
			sizeof(why)), SIGNER_SIGN);
	privkey_stats(&lent1, &parsed1);
	assert_int_equal(lent1 - lent0, 20);
	assert_int_equal(parsed1 - parsed0, 0);
}

#define THREADS 4
#define PER_THREAD 25

static void *sign_in_thread(void *arg)
{
	long t = (long)(intptr_t)arg;
	struct settings s = settings_for(true, t % 2 == 0);
	char why[256], path[192], body[128];
	for (int i = 0; i < PER_THREAD; i++) {
		/* not dpath(): its buffers are shared */
		snprintf(path, sizeof(path), "%s/thread-%ld-%d.eml", dir, t, i);
		int n = snprintf(body, sizeof(body), "message %d of thread %ld\r\n", i, t);
		if (sign_message(both_keys, &s, path, std_headers, count_headers(std_headers),
			"alice@example.com", body, (size_t)n, 7, NULL, why, sizeof(why)) != SIGNER_SIGN)
			return (void *)1;
	}
	return NULL;
}

static void signers_on_many_threads_share_one_keytable(void **state)
{
	(void)state;
	pthread_t th[THREADS];
	for (long t = 0; t < THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, sign_in_thread, (void *)(intptr_t)t), 0);
	for (int t = 0; t < THREADS; t++) {
		void *rv;
		assert_int_equal(pthread_join(th[t], &rv), 0);
		assert_null(rv);
	}
	char files[160];
	snprintf(files, sizeof(files), "%s/thread-*.eml", dir);
	assert_int_equal(verify("", files), 0);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

#define SCALE_DOMAINS 100000

static void hundred_thousand_domains_load_fast_and_sign_the_last(void **state)
{
	(void)state;
	/* loads are slower under AddressSanitizer; the 2 s goal is for real builds */
#if defined(__SANITIZE_ADDRESS__)
	const double limit = 10.0;
#else
	const double limit = 2.0;
#endif
	const char *keyfiles[] = { "rsa.private", "ed.key", "rsa1.pem" };
	FILE *kt = fopen(dpath("BigKeyTable"), "w");
	FILE *plain = fopen(dpath("BigSigningTable"), "w");
	FILE *re = fopen(dpath("BigSigningTable.re"), "w");
	assert_true(kt && plain && re);
	for (int i = 0; i < SCALE_DOMAINS; i++) {
		fprintf(kt, "k%d d%d.example:sel:%s\n", i, i, dpath(keyfiles[i % 3]));
		fprintf(plain, "d%d.example k%d\n", i, i);
		fprintf(re, "*@d%d.example k%d\n", i, i);
	}
	fclose(kt);
	fclose(plain);
	fclose(re);

	char refile[160];
	snprintf(refile, sizeof(refile), "refile:%s", dpath("BigSigningTable.re"));
	const char *tables[] = { dpath("BigSigningTable"), refile };
	for (int t = 0; t < 2; t++) {
		struct settings s = settings_for(false, true);
		s.key_table = (char *)dpath("BigKeyTable");
		s.signing_table = (char *)tables[t];
		struct diag d = { 0 };
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		struct keytable *big = keytable_load(&s, &d);
		double load = seconds_since(&t0);
		diag_print(&d, stderr);
		assert_non_null(big);
		assert_int_equal(keytable_count(big), SCALE_DOMAINS);

		struct keytable_signing out;
		char why[256];
		const int lookups = 100000;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < lookups; i++)
			assert_int_equal(keytable_lookup(big, "user@d99999.example", false, &out, 1, why,
				sizeof(why)), 1);
		double per = seconds_since(&t0) / lookups;
		printf("# %d domains, %s SigningTable: load %.3f s, lookup %.2f us\n", SCALE_DOMAINS,
			t ? "refile" : "plain", load, per * 1e6);
		assert_true(load < limit);

		struct signer_result res;
		assert_int_equal(sign_message(big, &s, dpath("last-domain.eml"), std_headers,
			count_headers(std_headers), "user@d99999.example", "last\r\n", 6, 64, &res,
			why, sizeof(why)), SIGNER_SIGN);
		assert_int_equal(res.count, 1);
		assert_string_equal(res.sig[0].domain, "d99999.example");
		assert_string_equal(res.sig[0].selector, "sel");
		assert_string_equal(res.sig[0].algorithm, "rsa-sha256");
		keytable_free(big);

		char cmd[1024];
		snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/lib/dkim_verify.py "
			"--txt sel._domainkey.d99999.example=%s %s", TEST_SRCDIR, dpath("rsa.txt"),
			dpath("last-domain.eml"));
		assert_int_equal(system(cmd), 0);
	}
}

int main(void)
{
	char cmd[512];
	snprintf(dir, sizeof(dir), "/tmp/bm-signer-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(cmd, sizeof(cmd), "/bin/sh %s/tests/unit/dkim/signer_mkkeys %s", TEST_SRCDIR, dir);
	int rc = system(cmd);
	if (rc == 0 && system("/usr/bin/python3 -c 'import dkim' 2>/dev/null") != 0)
		rc = 77 << 8;
	if (rc != 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)system(cmd);
		return WIFEXITED(rc) && WEXITSTATUS(rc) == 77 ? 77 : 1;
	}
	char keys[512];
	snprintf(keys, sizeof(keys), "rsa example.com:rsa:%s\ned example.com:ed:%s\n",
		dpath("rsa.private"), dpath("ed.key"));
	both_keys = load_tables(keys, "*@example.com rsa\n*@example.com ed\n", oversign_from);

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(corpus_verifies_with_python_dkim_and_opendkim),
		cmocka_unit_test(signature_value_is_ready_for_smfi_insheader),
		cmocka_unit_test(multiple_signatures_off_uses_the_first_matching_line),
		cmocka_unit_test(oversigned_from_breaks_when_a_second_from_is_added),
		cmocka_unit_test(list_unsubscribe_and_post_are_signed),
		cmocka_unit_test(messages_not_signed_say_why),
		cmocka_unit_test(header_limits_hold_exactly_at_the_limit),
		cmocka_unit_test(past_a_header_limit_every_step_says_skip_with_the_why),
		cmocka_unit_test(keys_are_never_parsed_per_message),
		cmocka_unit_test(signers_on_many_threads_share_one_keytable),
		cmocka_unit_test(hundred_thousand_domains_load_fast_and_sign_the_last),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	keytable_free(both_keys);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)system(cmd);
	return rc;
}
