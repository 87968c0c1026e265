/*
 * fuzz_list_unsubscribe - the List-Unsubscribe, List-Unsubscribe-Post and
 * Precedence values bulk classification looks at
 * (bulk_list_unsubscribe_scan, bulk_is_one_click, bulk_precedence_is_bulk).
 *
 * Input: one header value. Properties: an https or mailto URI is only
 * seen inside angle brackets; one-click and bulk precedence are only
 * the exact words (case and surrounding white space aside).
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bulk.h"
#include "fuzz.h"

/* value, surrounding white space removed, equals word ignoring case */
static bool trimmed_is(const char *value, const char *word)
{
	size_t n = strlen(value);

	while (n > 0 && isspace((unsigned char)*value)) {
		value++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)value[n - 1]))
		n--;
	return n == strlen(word) && strncasecmp(value, word, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size);
	bool https, mailto;

	fuzz_init();
	bulk_list_unsubscribe_scan(in, &https, &mailto);
	if (https || mailto)
		fuzz_check(strchr(in, '<') != NULL && strchr(in, '>') != NULL,
			   "a List-Unsubscribe URI without angle brackets");
	fuzz_check(bulk_is_one_click(in) == trimmed_is(in, "List-Unsubscribe=One-Click"),
		   "one-click is not exactly List-Unsubscribe=One-Click");
	fuzz_check(bulk_precedence_is_bulk(in) ==
		   (trimmed_is(in, "bulk") || trimmed_is(in, "list") || trimmed_is(in, "junk")),
		   "bulk precedence is not exactly bulk, list or junk");
	free(in);
	return 0;
}
