/*
 * fuzz_auth_results - which Authentication-Results headers the milter
 * removes (callbacks.c's header callback decides, eom.c removes).
 *
 * Input: Authentication-Results values, one a line, as Postfix passes
 * them (" mx.example.net; spf=pass"); a line starting with a tab folds
 * into the value before it. They follow a From and a
 * Subject header in an inbound and an outbound message through the fake
 * MTA (fake_mta.h). Property: after an accepted message exactly the
 * headers whose authserv-id, read as RFC 8601 says (comments nested,
 * quoted-pairs, a quoted-string id), is ours are removed, since a
 * forged one left in place reads as our own verdict downstream; with
 * more of them than the milter keeps track of, the message is refused.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_mta.h"
#include "fuzz.h"

#define FUZZ_AR_PREFIX "From: News <news@example.com>\nSubject: hello\n"
#define FUZZ_AR_NAME "Authentication-Results:"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size), *text, *arena, *out;
	size_t lines = 1;
	struct fake_mta_message m = {
		.helo = "mail.example.com", .mail_from = "<news@example.com>",
		.rcpts = { "<a@example.org>" }, .rcpt_count = 1,
	};
	static struct fake_mta_result r;

	fake_mta_start();
	for (const char *p = in; *p; p++)
		lines += *p == '\n';
	text = malloc(sizeof(FUZZ_AR_PREFIX) + strlen(in) + lines * sizeof(FUZZ_AR_NAME) + 16);
	fuzz_check(text != NULL, "out of memory");
	out = text + sprintf(text, "%s", FUZZ_AR_PREFIX);
	for (char *line = in, *next; line != NULL; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (line[0] == '\0' || line[0] == '\r')
			continue;		/* an empty line would end the headers */
		out += sprintf(out, "%s%s\n", line[0] == '\t' ? "" : FUZZ_AR_NAME, line);
	}
	sprintf(out, "\nbody\n");
	arena = malloc(strlen(text) + 1);
	fuzz_check(arena != NULL, "out of memory");
	fake_mta_parse(text, arena, &m);
	for (int outbound = 0; outbound <= 1; outbound++) {
		m.outbound = outbound;
		fake_mta_run(&m, &r);
		fake_mta_check_removals(&m, &r);
	}
	free(arena);
	free(text);
	free(in);
	return 0;
}
