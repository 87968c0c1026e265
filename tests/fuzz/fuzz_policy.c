/*
 * fuzz_policy - the policy file (policy_load, then policy_lookup,
 * policy_account and policy_assign_describe on the policy it gave).
 *
 * Input: a whole policy file, written to a scratch file next to two
 * maps it may name (file:plans.map, sasl keys; file:ips.map, addresses).
 * Properties: a policy is given exactly when there was no error; a
 * lookup finds a class of that policy; an account fits its buffer.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "fuzz.h"
#include "netaddr.h"
#include "policy.h"

static const char *const fuzz_sasl[] = { NULL, "", "alice@shop.example", "news@example.com", "BOB@AGENCY.EXAMPLE" };
static const char *const fuzz_senders[] = { "", "alice@shop.example", "x@ops.example.net", "a@[192.0.2.1]", "\"a b\"@x.example" };
static const char *const fuzz_clients[] = { NULL, "192.0.2.7", "10.0.0.1", "2001:db8::25", "127.0.0.1" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void fuzz_lookups(const struct policy *p)
{
	char account[POLICY_ACCOUNT_MAX], why[512];

	for (size_t i = 0; i < policy_class_count(p); i++) {
		const struct policy_class *c = policy_class_at(p, i);
		fuzz_check(policy_class_find(p, c->name) != NULL, "a class its name does not find");
	}
	for (int d = 0; d < 2; d++)
		for (size_t a = 0; a < COUNT(fuzz_sasl); a++)
			for (size_t s = 0; s < COUNT(fuzz_senders); s++) {
				struct netaddr client;
				const struct policy_assign *line = NULL;
				const char *ip = fuzz_clients[(a + s) % COUNT(fuzz_clients)];
				struct policy_facts f = {
					.direction = d ? DIRECTION_OUTBOUND : DIRECTION_INBOUND,
					.sasl = fuzz_sasl[a], .sender = fuzz_senders[s],
					.client = ip != NULL && netaddr_parse(ip, &client) == 0 ? &client : NULL,
				};
				const struct policy_class *c = policy_lookup(p, &f, &line);
				if (c == NULL)
					continue;
				fuzz_check(policy_class_find(p, c->name) == c, "lookup found a foreign class");
				if (line != NULL)
					policy_assign_describe(line, why, sizeof(why));
				if (policy_account(c, &f, account, sizeof(account)) == 0)
					fuzz_check(strlen(account) < sizeof(account), "account overran");
			}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool maps;
	struct diag errs = { 0 };
	struct policy_rate rate;
	struct policy *p;
	char *text;

	fuzz_init();
	if (!maps) {
		fuzz_write_text("plans.map", "alice@shop.example starter\nbob@agency.example business\n"
				"news@example.com newsletter\n");
		fuzz_write_text("ips.map", "192.0.2.0/24 webserver\n2001:db8::/32 webserver\n10.0.0.1 internal\n");
		maps = true;
	}
	p = policy_load(fuzz_write("bulkmilter.policy", data, size), &errs);
	fuzz_check((p != NULL) == (diag_errors(&errs) == 0), "a policy with errors, or none without");
	if (p != NULL)
		fuzz_lookups(p);
	policy_free(p);
	diag_free(&errs);
	text = fuzz_string(data, size < 40 ? size : 40);
	policy_parse_rate(text, &rate);
	free(text);
	return 0;
}
