/*
 * verdict - a class's action, a rate-limit result and OnStoreFailure
 * turned into a stage's answer, with the texts, tags and log lines each
 * rule gives. The rules differ only in their words (the table and the
 * switches below); what an action does is decided once, in
 * verdict_effective_action and verdict_apply.
 *
 * Mode monitor logs "monitor: WHAT: would ACTION" for exactly the
 * actions it suppresses (tempfail, reject, hold), whatever the rule: a
 * tag is what monitor does anyway, so there is nothing to report.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "verdict.h"

static const struct verdict_rule_desc {
	const char *name;
	const char *xcode_temporary, *xcode_permanent;
	bool log_reply;			/* a reply leaves no other trace (per recipient) */
} rules[] = {
	[RULE_OVER_LIMIT] = { "over-limit", "4.7.1", "5.7.1", true },
	[RULE_SPF_FAIL] = { "spf-fail", "4.7.23", "5.7.23", false },
	[RULE_BULK_NONCOMPLIANT] = { "bulk-noncompliant", "4.7.1", "5.7.1", false },
	[RULE_FROM_UNAUTHORIZED] = { "from-unauthorized", "4.7.1", "5.7.1", false },
	[RULE_SUSPENDED] = { "suspended", "4.7.1", "5.7.1", true },
	[RULE_SUPPRESSED] = { "suppressed", "4.7.1", "5.1.1", true },
};

static const char *const verdict_names[] = {
	[VERDICT_CONTINUE] = "continue", [VERDICT_SKIP_BODY] = "skip-body",
	[VERDICT_HOLD] = "hold", [VERDICT_TEMPFAIL] = "tempfail", [VERDICT_REJECT] = "reject",
};

/* METRIC_COUNT: counted nowhere; cause: the deferral's, for a 4xx. */
static const struct verdict_decision_desc {
	const char *name;
	enum metric metric, cause;
} decisions[] = {
	[DECISION_ACCEPT] = { "accept", METRIC_ACCEPTED, METRIC_COUNT },
	[DECISION_HOLD] = { "hold", METRIC_HELD, METRIC_COUNT },
	[DECISION_REJECT] = { "reject", METRIC_REJECTED, METRIC_COUNT },
	[DECISION_TEMPFAIL] = { "tempfail", METRIC_TEMPFAILED, METRIC_DEFERRED_OTHER },
	[DECISION_REJECT_RATE] = { "reject-rate", METRIC_REJECTED, METRIC_COUNT },
	[DECISION_TEMPFAIL_RATE] = { "tempfail-rate", METRIC_TEMPFAILED, METRIC_DEFERRED_RATE },
	[DECISION_REJECT_SPF] = { "reject-spf", METRIC_REJECTED, METRIC_COUNT },
	[DECISION_TEMPFAIL_SPF] = { "tempfail-spf", METRIC_TEMPFAILED, METRIC_DEFERRED_SPF },
	[DECISION_REJECT_SUSPENDED] = { "reject-suspended", METRIC_REJECTED, METRIC_COUNT },
	[DECISION_TEMPFAIL_SUSPENDED] = { "tempfail-suspended", METRIC_TEMPFAILED, METRIC_DEFERRED_SUSPENDED },
	[DECISION_ABORTED] = { "aborted", METRIC_COUNT, METRIC_COUNT },
	[DECISION_CONNECTION_CLOSED] = { "connection-closed", METRIC_COUNT, METRIC_COUNT },
};

const char *verdict_name(enum verdict v)
{
	return verdict_names[v];
}

const char *verdict_rule_name(enum verdict_rule r)
{
	return rules[r].name;
}

const char *verdict_decision_name(enum verdict_decision d)
{
	return decisions[d].name;
}

void verdict_decision_count(enum verdict_decision d, const char *cls)
{
	if (decisions[d].metric != METRIC_COUNT)
		metrics_inc(decisions[d].metric);
	if (decisions[d].cause != METRIC_COUNT) {
		metrics_inc(decisions[d].cause);
		metrics_class_deferral(cls);
	}
}

enum verdict verdict_reply_set(struct verdict_reply *reply, const char *code, const char *xcode,
			       const char *text)
{
	reply->code = code;
	reply->xcode = xcode;
	snprintf(reply->text, sizeof(reply->text), "%s", text);
	return code[0] == '5' ? VERDICT_REJECT : VERDICT_TEMPFAIL;
}

enum policy_action verdict_effective_action(const struct verdict_scope *s, enum policy_action action)
{
	bool refuses = action == ACTION_TEMPFAIL || action == ACTION_REJECT;
	if (s->mode == MODE_MONITOR)
		return refuses || action == ACTION_HOLD ? ACTION_TAG : action;
	if (s->local_submission && refuses)
		return ACTION_HOLD;
	return action;
}

/* The hit in a few words, for log lines. */
static void hit_describe(const struct verdict_hit *h, char *buf, size_t len)
{
	switch (h->rule) {
	case RULE_OVER_LIMIT:
		snprintf(buf, len, "account=%s over %s %s", h->account, h->kind, h->rate);
		break;
	case RULE_SPF_FAIL:
		snprintf(buf, len, "spf=fail from %s", h->client);
		break;
	case RULE_BULK_NONCOMPLIANT:
		snprintf(buf, len, "bulk non-compliant (%s)", h->reason);
		break;
	case RULE_FROM_UNAUTHORIZED:
		snprintf(buf, len, "sasl=%s not authorized for %s", h->account, h->identity);
		break;
	case RULE_SUSPENDED:
		snprintf(buf, len, "account=%s suspended by %s", h->account, h->reason);
		break;
	case RULE_SUPPRESSED:
		snprintf(buf, len, "account=%s recipient %s suppressed", h->account, h->identity);
		break;
	}
}

static void hit_text(const struct verdict_hit *h, bool temporary, char *buf, size_t len)
{
	/* a destination rate's reply names the destination (SPEC), whatever the class's text */
	if (h->text && h->text[0] && h->destination == NULL) {
		snprintf(buf, len, "%s", h->text);
		return;
	}
	switch (h->rule) {
	case RULE_OVER_LIMIT:
		if (h->destination != NULL)
			snprintf(buf, len, "Sending rate to %s exceeded for %s%s", h->destination,
				 h->account, temporary ? ", try again later" : "");
		else
			snprintf(buf, len, "Sending rate limit exceeded for %s%s", h->account,
				 temporary ? ", try again later" : "");
		break;
	case RULE_SPF_FAIL:
		snprintf(buf, len, "SPF check failed for %s from %s: %s", h->identity, h->client,
			 h->reason && h->reason[0] ? h->reason : "not permitted");
		break;
	case RULE_BULK_NONCOMPLIANT:
		snprintf(buf, len, "Bulk mail does not meet bulk sender requirements: %s", h->reason);
		break;
	case RULE_FROM_UNAUTHORIZED:
		snprintf(buf, len, "Not authorized to send as %s", h->identity);
		break;
	case RULE_SUSPENDED:
		snprintf(buf, len, "Account %s is suspended", h->account);
		break;
	case RULE_SUPPRESSED:
		snprintf(buf, len, "Recipient %s is suppressed for %s", h->identity, h->account);
		break;
	}
}

static void hit_hold_reason(const struct verdict_hit *h, char *buf, size_t len)
{
	switch (h->rule) {
	case RULE_OVER_LIMIT:
		if (h->text && h->text[0])
			snprintf(buf, len, "%s", h->text);
		else
			snprintf(buf, len, "bulkmilter: %s over %s rate %s", h->account, h->kind, h->rate);
		break;
	case RULE_SPF_FAIL:
		snprintf(buf, len, "bulkmilter: SPF fail for %s from %s", h->identity, h->client);
		break;
	case RULE_BULK_NONCOMPLIANT:
		snprintf(buf, len, "bulkmilter: bulk non-compliant: %s", h->reason);
		break;
	case RULE_FROM_UNAUTHORIZED:
		if (h->text && h->text[0])
			snprintf(buf, len, "%s", h->text);
		else
			snprintf(buf, len, "bulkmilter: %s not authorized to send as %s", h->account, h->identity);
		break;
	case RULE_SUSPENDED:
		if (h->text && h->text[0])
			snprintf(buf, len, "%s", h->text);
		else
			snprintf(buf, len, "bulkmilter: account %s is suspended (by %s)", h->account, h->reason);
		break;
	case RULE_SUPPRESSED:		/* never held: suppressed takes no hold */
		snprintf(buf, len, "bulkmilter: recipient %s is suppressed for %s", h->identity, h->account);
		break;
	}
}

static void hit_tag(const struct verdict_hit *h, struct verdict_marks *m)
{
	switch (h->rule) {
	case RULE_OVER_LIMIT:
		if (!m->over_tag[0])
			snprintf(m->over_tag, sizeof(m->over_tag), "%s %s", h->rate, h->kind);
		break;
	case RULE_SPF_FAIL:
		m->spf_tag = true;
		break;
	case RULE_BULK_NONCOMPLIANT:
		snprintf(m->noncompliant, sizeof(m->noncompliant), "%s", h->reason);
		break;
	case RULE_FROM_UNAUTHORIZED:
		snprintf(m->unauthorized, sizeof(m->unauthorized), "%s", h->identity);
		break;
	case RULE_SUSPENDED:
		break;			/* monitor: the log line says what it would have done */
	case RULE_SUPPRESSED: {
		size_t n = strlen(m->suppressed);
		if (strlen(h->identity) + 2 < sizeof(m->suppressed) - n)
			snprintf(m->suppressed + n, sizeof(m->suppressed) - n, "%s%s", n ? ", " : "",
				 h->identity);
		break;
	}
	}
}

enum verdict verdict_apply(const struct verdict_scope *s, const struct verdict_hit *h,
			   struct verdict_reply *reply, struct verdict_marks *marks)
{
	const struct verdict_rule_desc *rule = &rules[h->rule];
	enum policy_action action = verdict_effective_action(s, h->action);
	char what[512];

	hit_describe(h, what, sizeof(what));
	if (s->mode == MODE_MONITOR && action != h->action)
		log_info("%s: monitor: %s: would %s", s->qid, what, policy_action_name(h->action));
	switch (action) {
	case ACTION_TEMPFAIL:
	case ACTION_REJECT: {
		bool temporary = action == ACTION_TEMPFAIL;
		reply->code = temporary ? "451" : "550";
		reply->xcode = temporary ? rule->xcode_temporary : rule->xcode_permanent;
		hit_text(h, temporary, reply->text, sizeof(reply->text));
		if (rule->log_reply)
			log_info("%s: %s: %s %s%s", s->qid, what, reply->code, reply->xcode,
				 h->per_recipient ? " (recipient)" : "");
		return temporary ? VERDICT_TEMPFAIL : VERDICT_REJECT;
	}
	case ACTION_HOLD:
		if (!marks->hold_reason[0])
			hit_hold_reason(h, marks->hold_reason, sizeof(marks->hold_reason));
		return VERDICT_CONTINUE;
	case ACTION_TAG:
		hit_tag(h, marks);
		return VERDICT_CONTINUE;
	case ACTION_NONE:
		return VERDICT_CONTINUE;
	}
	return verdict_reply_set(reply, "451", "4.3.0", "Internal error, try again later");
}

/* OnStoreFailure: tempfail (Mode enforce), else accept tagged X-Bulk-Unchecked. */
static enum verdict store_failed(const struct verdict_scope *s, const char *account,
				 const struct ratelimit_verdict *v, struct verdict_reply *reply,
				 struct verdict_marks *marks)
{
	metrics_inc(METRIC_STORE_FAILURES);
	log_warning("%s: account=%s rate limit not checked: %s", s->qid, account, v->reason);
	if (s->on_store_failure == STORE_FAILURE_TEMPFAIL) {
		if (s->mode == MODE_ENFORCE)
			return verdict_reply_set(reply, "451", "4.3.0",
						 "Rate limit service unavailable, try again later");
		log_info("%s: monitor: account=%s rate limit not checked: would tempfail", s->qid, account);
	}
	if (!marks->unchecked[0])
		snprintf(marks->unchecked, sizeof(marks->unchecked), "%s", v->brief ? v->brief : "unavailable");
	return VERDICT_CONTINUE;
}

enum verdict verdict_suspended(const struct verdict_scope *s, const struct policy_class *cls,
			       const char *account, const char *by, bool per_recipient,
			       struct verdict_reply *reply, struct verdict_marks *marks)
{
	struct verdict_hit hit = {
		.rule = RULE_SUSPENDED, .action = cls->suspended, .text = cls->suspended_text,
		.account = account, .reason = by && by[0] ? by : "ctl", .per_recipient = per_recipient,
	};
	metrics_inc(METRIC_SUSPENDED);
	return verdict_apply(s, &hit, reply, marks);
}

enum verdict verdict_ratelimit(const struct verdict_scope *s, const struct policy_class *cls,
			       const char *account, enum ratelimit_status st,
			       const struct ratelimit_verdict *v, bool per_recipient,
			       struct verdict_reply *reply, struct verdict_marks *marks)
{
	switch (st) {
	case RATELIMIT_OK:
		return VERDICT_CONTINUE;
	case RATELIMIT_OVER: {
		struct verdict_hit hit = {
			.rule = RULE_OVER_LIMIT, .action = cls->over_limit, .text = cls->over_limit_text,
			.account = account, .kind = v->kind, .rate = v->rate ? v->rate->text : "?",
			.per_recipient = per_recipient,
			.destination = v->domain && v->domain[0] ? v->domain : NULL,
		};
		metrics_inc(METRIC_OVER_LIMIT);
		return verdict_apply(s, &hit, reply, marks);
	}
	case RATELIMIT_STORE_FAILED:
		return store_failed(s, account, v, reply, marks);
	case RATELIMIT_SUSPENDED:
		return verdict_suspended(s, cls, account, v->safety.by, per_recipient, reply, marks);
	case RATELIMIT_SUPPRESSED: {
		struct verdict_hit hit = {
			.rule = RULE_SUPPRESSED, .action = cls->suppressed, .account = account,
			.identity = v->recipient ? v->recipient : "?", .per_recipient = per_recipient,
		};
		metrics_inc(METRIC_SUPPRESSED);
		return verdict_apply(s, &hit, reply, marks);
	}
	}
	return verdict_reply_set(reply, "451", "4.3.0", "Internal error, try again later");
}
