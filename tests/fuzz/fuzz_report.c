/*
 * fuzz_report - the report parser (report_parse_message): a whole
 * message, headers and body, as a DSN or ARF report may arrive.
 *
 * Input: the message's octets, NULs and all (the parser takes a length).
 * Properties: the recipients kept are at most those seen and at most
 * REPORT_RCPTS_MAX; every kept address holds an '@'; a hard bounce is
 * "failed" with a 5.x.x status; a complaint is an ARF report; no report
 * means nothing kept; the same input reads the same twice.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct report r, again;

	fuzz_init();
	/* an exact copy, so reading one octet past the input is caught */
	char *msg = malloc(size ? size : 1);
	if (msg == NULL)
		return 0;
	memcpy(msg, data, size);
	enum report_kind k = report_parse_message(msg, size, &r);
	fuzz_check(k == r.kind, "the kind returned is not the report's");
	fuzz_check(r.nrcpt <= r.rcpts && r.nrcpt <= REPORT_RCPTS_MAX, "more recipients kept than seen");
	for (size_t i = 0; i < r.nrcpt; i++) {
		const struct report_rcpt *rc = &r.rcpt[i];
		fuzz_check(memchr(rc->address, '\0', sizeof(rc->address)) != NULL &&
			   strchr(rc->address, '@') != NULL, "a recipient without '@'");
		fuzz_check(!rc->hard || (strcmp(rc->action, "failed") == 0 && rc->status[0] == '5'),
			   "a hard bounce that is not failed with 5.x.x");
	}
	fuzz_check(!r.complaint || k == REPORT_ARF, "a complaint outside an ARF report");
	fuzz_check(k != REPORT_NONE || (r.nrcpt == 0 && r.feedback_id[0] == '\0'),
		   "no report, yet something kept");
	fuzz_check(memchr(r.feedback_id, '\0', sizeof(r.feedback_id)) != NULL,
		   "an unterminated Feedback-ID");
	report_parse_message(msg, size, &again);
	fuzz_check(memcmp(&r, &again, sizeof(r)) == 0, "the same input read differently");
	free(msg);
	return 0;
}
