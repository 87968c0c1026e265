/*
 * bulk - bulk classification and the bulk-sender compliance checks.
 *
 * The checks follow the 2024 mailbox-provider rules (Gmail, Yahoo,
 * Microsoft) with relaxed alignment as DMARC allows: a DKIM d= or the
 * envelope domain must share the From domain's organizational domain.
 * spf-aligned needs SPF to pass for every egress address, because the
 * MTA may deliver from any of them. dmarc-record fails closed on a DNS
 * failure: a check that could not be made is not a pass.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "align.h"
#include "bulk.h"

bool bulk_classify(const struct policy_class *c, const struct bulk_facts *f, char *why, size_t len)
{
	for (size_t i = 0; c && i < c->bulk_count; i++) {
		const struct policy_bulk_rule *r = &c->bulk[i];
		switch (r->kind) {
		case BULK_ALWAYS:
			snprintf(why, len, "always");
			return true;
		case BULK_NEVER:
			break;
		case BULK_RECIPIENTS:
			if (f->recipients >= r->min) {
				snprintf(why, len, "recipients %lu >= %lu", f->recipients, r->min);
				return true;
			}
			break;
		case BULK_HEADER:
			if (f->header_present[i]) {
				snprintf(why, len, "header %s", r->header);
				return true;
			}
			break;
		case BULK_PRECEDENCE:
			if (f->precedence_bulk) {
				snprintf(why, len, "precedence");
				return true;
			}
			break;
		case BULK_VOLUME:
			if (f->volume_known && f->volume[i] >= r->volume.count) {
				snprintf(why, len, "volume %lu >= %s", f->volume[i], r->volume.text);
				return true;
			}
			break;
		}
	}
	snprintf(why, len, "no bulk rule holds");
	return false;
}

unsigned bulk_check(const struct policy_class *c, const struct bulk_evidence *e)
{
	unsigned failed = 0;
	unsigned req = c->bulk_require;

	if (req & BULK_REQ_DKIM_ALIGNED) {
		bool ok = false;
		for (size_t i = 0; e->from_domain && i < e->dkim_count; i++)
			if (align_relaxed(e->dkim_domains[i], e->from_domain))
				ok = true;
		if (!ok)
			failed |= BULK_REQ_DKIM_ALIGNED;
	}
	if (req & BULK_REQ_SPF_ALIGNED) {
		if (!e->from_domain || !e->mailfrom_domain || !e->spf_pass_all_egress ||
		    !align_relaxed(e->mailfrom_domain, e->from_domain))
			failed |= BULK_REQ_SPF_ALIGNED;
	}
	if (req & BULK_REQ_LIST_UNSUB) {
		bool ok = (e->list_unsub_https || e->list_unsub_mailto) &&
			  (!e->list_unsub_https || e->list_unsub_one_click);
		if (!ok)
			failed |= BULK_REQ_LIST_UNSUB;
	}
	if ((req & BULK_REQ_DMARC_RECORD) && e->dmarc_published != 1)
		failed |= BULK_REQ_DMARC_RECORD;
	return failed;
}

void bulk_failures_text(unsigned failed, char *buf, size_t len)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ BULK_REQ_DKIM_ALIGNED, "dkim-aligned" }, { BULK_REQ_SPF_ALIGNED, "spf-aligned" },
		{ BULK_REQ_LIST_UNSUB, "list-unsubscribe" }, { BULK_REQ_DMARC_RECORD, "dmarc-record" },
	};
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(failed & names[i].bit))
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? " " : "", names[i].name);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
}

void bulk_list_unsubscribe_scan(const char *value, bool *https, bool *mailto)
{
	*https = *mailto = false;
	for (const char *p = strchr(value, '<'); p; p = strchr(p + 1, '<')) {
		const char *uri = p + 1;
		while (isspace((unsigned char)*uri))
			uri++;
		if (strncasecmp(uri, "https:", 6) == 0 && strchr(uri, '>'))
			*https = true;
		else if (strncasecmp(uri, "mailto:", 7) == 0 && strchr(uri, '>'))
			*mailto = true;
	}
}

/* Compares a header value to a word, ignoring surrounding white space. */
static bool value_is(const char *value, const char *word, bool fold)
{
	size_t n = strlen(word);
	while (isspace((unsigned char)*value))
		value++;
	if ((fold ? strncasecmp(value, word, n) : strncmp(value, word, n)) != 0)
		return false;
	for (value += n; *value; value++)
		if (!isspace((unsigned char)*value))
			return false;
	return true;
}

bool bulk_is_one_click(const char *value)
{
	/* RFC 8058 gives the exact text; compare names as header names (no case) */
	return value_is(value, "List-Unsubscribe=One-Click", true);
}

bool bulk_precedence_is_bulk(const char *value)
{
	return value_is(value, "bulk", true) || value_is(value, "list", true) ||
	       value_is(value, "junk", true);
}
