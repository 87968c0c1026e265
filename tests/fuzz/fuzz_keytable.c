/*
 * fuzz_keytable - OpenDKIM KeyTable and SigningTable, plain and refile:
 * (keytable_load, then keytable_lookup for a set of From addresses).
 *
 * Input: a KeyTable, a line "%%", then a SigningTable (no "%%" line: the
 * whole input is the KeyTable and the SigningTable is empty). Both are
 * loaded twice: with a plain SigningTable and with refile:, the second
 * time with MultipleSignatures. Keys named by path may be absent (the
 * load then fails and says why); keys written in the table are parsed.
 * Properties: a keytable is given exactly when there was no error; a
 * lookup gives at most max signatures, each with a domain, a selector
 * and a key, or -1 with a reason.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "fuzz.h"
#include "keytable.h"
#include "settings.h"

#define FUZZ_SIGNATURES_MAX 4

static const char *const fuzz_from[] = {
	"user@example.com", "news@sub.example.com", "USER@EXAMPLE.COM", "a@example.org",
	"\"x y\"@example.net", "a@[192.0.2.1]", "a@", "a@..", "a@-bad-.example", "nobody",
};

static struct settings *fuzz_settings(const char *name, const char *signing_prefix, bool multiple)
{
	char conf[8192];
	struct diag errs = { 0 };
	struct settings *s;

	snprintf(conf, sizeof(conf), "KeyTable %s\nSigningTable %s%s\nMultipleSignatures %s\n"
		 "RequireSafeKeys no\n", fuzz_path("KeyTable"), signing_prefix,
		 fuzz_path("SigningTable"), multiple ? "yes" : "no");
	s = settings_load(fuzz_write_text(name, conf), &errs);
	if (s == NULL)
		diag_print(&errs, stderr);
	fuzz_check(s != NULL, "the fuzz settings do not load");
	diag_free(&errs);
	return s;
}

static void fuzz_load(const struct settings *s)
{
	struct diag errs = { 0 };
	struct keytable *kt = keytable_load(s, &errs);
	struct keytable_signing out[FUZZ_SIGNATURES_MAX];
	char why[256];

	fuzz_check((kt != NULL) == (diag_errors(&errs) == 0), "a keytable with errors, or none without");
	for (size_t i = 0; kt != NULL && i < sizeof(fuzz_from) / sizeof(fuzz_from[0]); i++) {
		why[0] = '\0';
		int n = keytable_lookup(kt, fuzz_from[i], s->multiple_signatures, out,
					FUZZ_SIGNATURES_MAX, why, sizeof(why));
		fuzz_check(n >= -1 && n <= FUZZ_SIGNATURES_MAX, "lookup count out of range");
		fuzz_check(n != -1 || why[0] != '\0', "lookup failed without a reason");
		for (int j = 0; j < n; j++)
			fuzz_check(out[j].domain[0] != '\0' && out[j].selector[0] != '\0' &&
				   out[j].key != NULL, "a signature without domain, selector or key");
	}
	keytable_free(kt);
	diag_free(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct settings *plain, *refile;
	const char *text = (const char *)data, *sep = NULL;

	fuzz_init();
	if (plain == NULL) {
		plain = fuzz_settings("plain.conf", "", false);
		refile = fuzz_settings("refile.conf", "refile:", true);
	}
	for (size_t i = 0; i + 2 <= size; i++)
		if ((i == 0 || text[i - 1] == '\n') && text[i] == '%' && text[i + 1] == '%' &&
		    (i + 2 == size || text[i + 2] == '\n')) {
			sep = text + i;
			break;
		}
	if (sep == NULL) {
		fuzz_write("KeyTable", data, size);
		fuzz_write("SigningTable", "", 0);
	} else {
		size_t rest = size - (size_t)(sep - text) - 2;
		fuzz_write("KeyTable", data, (size_t)(sep - text));
		fuzz_write("SigningTable", sep + 2 + (rest > 0), rest > 0 ? rest - 1 : 0);
	}
	fuzz_load(plain);
	fuzz_load(refile);
	return 0;
}
