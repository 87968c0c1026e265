/*
 * diag - collected diagnostics for config, policy and key loading.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"
#include "log.h"

static void diag_vadd(struct diag *d, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024];
	char *out;

	if (d->count >= DIAG_MAX) {
		d->dropped++;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	int rc = line > 0 ? asprintf(&out, "%s:%d: %s", file, line, msg)
			  : asprintf(&out, "%s: %s", file, msg);
	if (rc < 0) {
		d->dropped++;
		return;
	}
	d->lines[d->count++] = out;
}

void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vadd(d, file, line, fmt, ap);
	va_end(ap);
}

int diag_fail(struct diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vadd(d, file, line, fmt, ap);
	va_end(ap);
	return -1;
}

void diag_print(const struct diag *d, FILE *fp)
{
	for (size_t i = 0; i < d->count; i++)
		fprintf(fp, "%s\n", d->lines[i]);
	if (d->dropped)
		fprintf(fp, "(%zu more errors not shown)\n", d->dropped);
}

void diag_log(const struct diag *d)
{
	for (size_t i = 0; i < d->count; i++)
		log_error("%s", d->lines[i]);
	if (d->dropped)
		log_error("(%zu more errors not shown)", d->dropped);
}

void diag_free(struct diag *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->lines[i]);
	d->count = 0;
	d->dropped = 0;
}
