/*
 * fuzz_zone - the TZif reader and the calendar windows (calendar.c).
 *
 * Input: a zone file (TZif, RFC 8536, footer rule included), given to
 * calendar_zone_parse as it is. Properties: a zone that parses answers
 * every question without a crash; for times across the calendar (before
 * the first transition, inside the table, past the last: the footer
 * rule) every offset is less than a day, a window of every period holds
 * its time (start <= t < end) and is shorter than a month and a half,
 * and the RFC 3339 text is one line of the expected length.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "calendar.h"
#include "fuzz.h"

static const long long times[] = {
	-5000000000LL, -2208988800LL, -1LL, 0LL, 86399LL, 951782400LL, 1711846800LL, 1798761600LL,
	2147483647LL, 2208988800LL, 4102444800LL, 32503680000LL,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], text[64];

	fuzz_init();
	struct calendar_zone *z = calendar_zone_parse("Fuzz/Zone", data, size, err, sizeof(err));
	if (z == NULL) {
		fuzz_check(err[0] != '\0', "a refused zone says why");
		return 0;
	}
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		long long t = times[i], until;
		long off = calendar_offset(z, t, &until);
		fuzz_check(off > -26 * 3600L && off < 26 * 3600L, "an offset beyond 26 hours");
		fuzz_check(until > t, "an offset valid until a time not after t");
		for (int p = CALENDAR_DAY; p <= CALENDAR_MONTH; p++) {
			long long s, e;
			calendar_window(z, (enum calendar_period)p, t, &s, &e);
			fuzz_check(s <= t && t < e, "a window that does not hold its time");
			fuzz_check(e - s <= 46LL * 86400, "a window longer than a month and a half");
		}
		calendar_rfc3339(z, t, text, sizeof(text));
		fuzz_check(strchr(text, '\n') == NULL && strlen(text) >= 25, "a bad RFC 3339 time");
	}
	calendar_zone_free(z);
	return 0;
}
