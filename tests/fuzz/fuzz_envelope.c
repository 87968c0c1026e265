/*
 * fuzz_envelope - envelope addresses and the HELO name: the MAIL FROM
 * and RCPT TO callbacks (address_from_envelope, the policy's sender
 * rules, the SPF identity, alignment of the envelope domain at end of
 * message) and the functions behind them called directly
 * (spf_identity_domain, align_normalize, align_org_domain,
 * align_relaxed).
 *
 * Input: lines: the HELO name, the MAIL FROM argument, then up to
 * FAKE_MTA_RCPTS_MAX RCPT TO arguments. The transaction runs outbound
 * and inbound through the fake MTA (fake_mta.h). Properties: those of
 * fake_mta.h; the SPF identity is lower case and "" exactly when there
 * is none; a normalized name normalizes to itself, has no upper-case
 * letter nor trailing dot, and is aligned with itself and with its
 * organizational domain, of which it is a subdomain or which it is.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "align.h"
#include "fake_mta.h"
#include "fuzz.h"
#include "spf.h"

static void fuzz_domain(const char *domain)
{
	char norm[ALIGN_NAME_MAX + 1], again[ALIGN_NAME_MAX + 1], org[ALIGN_NAME_MAX + 1];
	size_t n, o;

	if (align_normalize(domain, norm, sizeof(norm)) != 0) {
		fuzz_check(align_org_domain(domain, org, sizeof(org)) != 0,
			   "an organizational domain for a name that does not normalize");
		return;
	}
	n = strlen(norm);
	fuzz_check(n > 0 && norm[n - 1] != '.', "a normalized name empty or with a trailing dot");
	for (size_t i = 0; i < n; i++)
		fuzz_check(!isupper((unsigned char)norm[i]), "a normalized name with an upper-case letter");
	fuzz_check(align_normalize(norm, again, sizeof(again)) == 0 && strcmp(norm, again) == 0,
		   "a normalized name does not normalize to itself");
	fuzz_check(align_relaxed(domain, domain), "a name not aligned with itself");
	if (align_org_domain(domain, org, sizeof(org)) != 0)
		return;
	o = strlen(org);
	fuzz_check(o <= n && strcmp(norm + n - o, org) == 0 && (o == n || norm[n - o - 1] == '.'),
		   "an organizational domain that is not the name or a parent of it");
	fuzz_check(align_relaxed(domain, org), "a name not aligned with its organizational domain");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size), *lines[2 + FAKE_MTA_RCPTS_MAX];
	char sender[ADDRESS_MAX], identity[256];
	size_t n;
	struct fake_mta_message m = { 0 };
	static struct fake_mta_result r;
	static char message[] = "From: News <news@example.com>\nSubject: hi\nList-Unsubscribe: <https://example.com/u>\n";
	static char arena[sizeof(message)];

	fake_mta_start();
	n = fuzz_lines(in, lines, sizeof(lines) / sizeof(lines[0]));
	m.helo = lines[0];
	m.mail_from = n > 1 ? lines[1] : "<>";
	for (size_t i = 2; i < n; i++)
		m.rcpts[m.rcpt_count++] = lines[i];
	if (m.rcpt_count == 0)
		m.rcpts[m.rcpt_count++] = "<postmaster@example.org>";
	fake_mta_parse(message, arena, &m);
	for (int outbound = 1; outbound >= 0; outbound--) {
		m.outbound = outbound;
		fake_mta_run(&m, &r);
		fake_mta_check_removals(&m, &r);
	}

	if (address_from_envelope(m.mail_from, sender, sizeof(sender)) != 0)
		sender[0] = '\0';
	enum spf_identity id = spf_identity_domain(m.helo, sender, identity, sizeof(identity));
	fuzz_check((id == SPF_IDENTITY_NONE) == (identity[0] == '\0'), "an SPF identity without a domain");
	for (const char *p = identity; *p; p++)
		fuzz_check(!isupper((unsigned char)*p), "an SPF identity with an upper-case letter");
	fuzz_domain(m.helo);
	if (address_domain(sender) != NULL)
		fuzz_domain(address_domain(sender));
	free(in);
	return 0;
}
