/*
 * test_suppress_policy - the policy lines of bounces, complaints and
 * suppression: suppress, suppressed, and which classes carry a
 * Feedback-ID (intake_wants_feedback_id); their errors as FILE:LINE.
 */
#include "config.h"

#include "unit.h"

#include "intake.h"
#include "policy.h"

static const struct policy_class *class_of(const struct policy *p, const char *name)
{
	for (size_t i = 0; i < policy_class_count(p); i++)
		if (strcmp(policy_class_at(p, i)->name, name) == 0)
			return policy_class_at(p, i);
	fail_msg("no class %s", name);
	return NULL;
}

static void suppress_lines_set_kinds_and_action(void **state)
{
	(void)state;
	struct diag d = { 0 };
	struct policy *p = policy_load(unit_file(
		"class both {\n  account sender\n  suppress hard-bounce complaint\n}\n"
		"class bounces {\n  suppress hard-bounce\n  suppressed tag\n}\n"
		"class listonly {\n  suppressed tempfail\n}\n"
		"class rates {\n  suspend-if complaint-rate > 0.3% min 1000/1d\n}\n"
		"class plain { }\n"), &d);
	assert_non_null(p);
	assert_int_equal(d.count, 0);
	const struct policy_class *c = class_of(p, "both");
	assert_int_equal(c->suppress, POLICY_SUPPRESS_HARD_BOUNCE | POLICY_SUPPRESS_COMPLAINT);
	assert_int_equal(c->suppressed, ACTION_REJECT);	/* the default */
	assert_true(intake_wants_feedback_id(c));
	c = class_of(p, "bounces");
	assert_int_equal(c->suppress, POLICY_SUPPRESS_HARD_BOUNCE);
	assert_int_equal(c->suppressed, ACTION_TAG);
	c = class_of(p, "listonly");
	assert_int_equal(c->suppress, 0);
	assert_int_equal(c->suppressed, ACTION_TEMPFAIL);
	assert_false(intake_wants_feedback_id(c));
	assert_true(intake_wants_feedback_id(class_of(p, "rates")));
	assert_false(intake_wants_feedback_id(class_of(p, "plain")));
	policy_free(p);
	diag_free(&d);
}

static void bad_suppress_lines_are_errors_with_their_line(void **state)
{
	(void)state;
	struct diag d = { 0 };
	const char *path = unit_file(
		"class a {\n"
		"  suppress soft-bounce\n"
		"  suppress\n"
		"  suppressed hold\n"
		"}\n"
		"class b {\n"
		"  suppress complaint\n"
		"  suppress hard-bounce\n"
		"  suppressed none\n"
		"  suppressed reject\n"
		"}\n");
	assert_null(policy_load(path, &d));
	assert_true(unit_has_error(&d, path, 2, "suppress: unknown kind soft-bounce (expected hard-bounce, complaint)"));
	assert_true(unit_has_error(&d, path, 3, "suppress: expected hard-bounce, complaint or both"));
	assert_true(unit_has_error(&d, path, 4, "suppressed: unknown action hold (expected none, tempfail, reject, tag)"));
	assert_true(unit_has_error(&d, path, 8, "suppress: already set for class b at line 7"));
	assert_true(unit_has_error(&d, path, 10, "suppressed: already set for class b at line 9"));
	diag_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(suppress_lines_set_kinds_and_action),
		cmocka_unit_test(bad_suppress_lines_are_errors_with_their_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
