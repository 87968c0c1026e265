/*
 * snapshot - reference-counted configuration sets.
 *
 * One mutex guards the current pointer and every reference count; it is
 * held only for a pointer copy and an increment, never across I/O, so
 * connect and close never wait on a reload in progress.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include <openssl/crypto.h>

#include "log.h"
#include "snapshot.h"

static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *snapshot_current;
static unsigned long snapshot_generation;

static void snapshot_free(struct snapshot *s)
{
	if (s == NULL)
		return;
	spf_pool_stop(s->spf);
	store_close(s->store);
	keytable_free(s->keys);
	authority_free(s->authority);
	if (s->feedback)
		OPENSSL_cleanse(s->feedback, sizeof(*s->feedback));
	free(s->feedback);
	policy_free(s->policy);
	settings_free(s->settings);
	free(s);
}

struct snapshot *snapshot_load(const char *config_path, const char *socket_override,
			       bool start_services, struct diag *errs)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	size_t before = diag_errors(errs);

	if (s == NULL) {
		diag_add(errs, config_path, 0, "out of memory");
		return NULL;
	}
	s->refs = 1;
	/* settings with errors still name the policy and key tables, whose
	 * errors are reported in the same pass; the store is not opened */
	s->settings = settings_read(config_path, errs);
	if (s->settings == NULL) {
		snapshot_free(s);
		return NULL;
	}
	bool settings_ok = diag_errors(errs) == before;
	/* -p is checked as Socket is: a bad one is an error of -n, not of smfi_setconn
	 * (reported with the other files' errors; the set is refused below) */
	if (socket_override)
		(void)settings_set_socket(s->settings, socket_override, "-p", errs);
	/* load everything, so one pass reports every file's errors */
	s->policy = policy_load_zone(s->settings->policy_path, s->settings->timezone, errs);
	s->keys = keytable_load(s->settings, errs);
	s->authority = authority_load(s->settings, errs);
	if (s->settings->feedback_key_file) {
		char err[512];
		s->feedback = malloc(sizeof(*s->feedback));
		if (s->feedback == NULL)
			diag_add(errs, config_path, 0, "out of memory");
		else if (feedback_key_file(s->settings->feedback_key_file, s->feedback, err, sizeof(err)) != 0)
			diag_add(errs, config_path, settings_line(s->settings, "FeedbackKeyFile"), "%s", err);
	}
	if (settings_ok)
		s->store = store_open(s->settings, errs);
	if (diag_errors(errs) != before || s->policy == NULL) {
		snapshot_free(s);
		return NULL;
	}
	if (start_services) {
		char err[256];
		s->spf = spf_pool_start(s->settings, err, sizeof(err));
		if (s->spf == NULL) {
			diag_add(errs, config_path, 0, "cannot start SPF helpers: %s", err);
			snapshot_free(s);
			return NULL;
		}
	}
	return s;
}

void snapshot_install(struct snapshot *s)
{
	pthread_mutex_lock(&snapshot_lock);
	struct snapshot *old = snapshot_current;
	s->generation = ++snapshot_generation;
	snapshot_current = s;
	pthread_mutex_unlock(&snapshot_lock);
	events_set_url(s->settings->notify_url);
	if (old)
		snapshot_release(old);
}

struct snapshot *snapshot_acquire(void)
{
	pthread_mutex_lock(&snapshot_lock);
	struct snapshot *s = snapshot_current;
	if (s)
		s->refs++;
	pthread_mutex_unlock(&snapshot_lock);
	return s;
}

void snapshot_release(struct snapshot *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&snapshot_lock);
	int left = --s->refs;
	pthread_mutex_unlock(&snapshot_lock);
	if (left == 0) {
		log_debug("snapshot %lu released", s->generation);
		snapshot_free(s);
	}
}
