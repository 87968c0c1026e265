/*
 * fuzz_headers - a message's header fields through the milter's header,
 * end-of-headers, body and end-of-message callbacks (callbacks.c,
 * eom.c): From parsing, Precedence, List-Unsubscribe, the bulk header
 * rules, Authentication-Results and TagHeader removal, DKIM signing.
 *
 * Input: a message, headers then an empty line then the body, as a
 * client sends it in DATA. It is sent twice through the fake MTA
 * (fake_mta.h): outbound from a SASL client (signed, classified) and
 * inbound. Properties: those fake_mta.h checks on every reply and header
 * edit (no header injection, no removal of a header that is not there),
 * and after an accepted message every TagHeader copy and exactly the
 * Authentication-Results headers claiming our authserv-id (RFC 8601)
 * are removed.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fake_mta.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size), *arena = malloc(strlen(text) + 1);
	struct fake_mta_message m = {
		.helo = "mail.example.com", .mail_from = "<news@example.com>",
		.rcpts = { "<a@example.org>", "<b@example.net>", "<c@example.net>" }, .rcpt_count = 3,
	};
	static struct fake_mta_result r;

	fuzz_check(arena != NULL, "out of memory");
	fake_mta_start();
	fake_mta_parse(text, arena, &m);
	for (int outbound = 1; outbound >= 0; outbound--) {
		m.outbound = outbound;
		fake_mta_run(&m, &r);
		fake_mta_check_removals(&m, &r);
	}
	free(arena);
	free(text);
	return 0;
}
