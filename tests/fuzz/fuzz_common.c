/*
 * fuzz_common - the scratch directory, input copies and the key the
 * fuzz targets share (fuzz.h).
 *
 * Files are rewritten for every input rather than kept open: the parsers
 * open their files by path, as the daemon does. The scratch directory is
 * on tmpfs where there is one, so a rewrite costs a few microseconds.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "log.h"

/* Files one target writes: a handful (config, policy, tables, key). */
#define FUZZ_FILES_MAX 16

static char fuzz_dir[4096];
static char *fuzz_files[FUZZ_FILES_MAX];
static size_t fuzz_file_count;

static void fuzz_cleanup(void)
{
	for (size_t i = 0; i < fuzz_file_count; i++) {
		unlink(fuzz_files[i]);
		free(fuzz_files[i]);
	}
	fuzz_file_count = 0;
	if (fuzz_dir[0] != '\0')
		rmdir(fuzz_dir);
}

void fuzz_check(bool ok, const char *what)
{
	if (ok)
		return;
	fprintf(stderr, "fuzz: property violated: %s\n", what);
	abort();
}

void fuzz_init(void)
{
	static bool done;
	const char *base = getenv("BM_FUZZ_TMPDIR");
	struct stat st;

	if (done)
		return;
	done = true;
	if (getenv("BM_FUZZ_LOG") != NULL) {
		log_open("fuzz", 1);
		log_set_level(LOG_LEVEL_DEBUG);
	} else {
		log_current_level = -1;		/* below error: nothing is written */
	}
	if (base == NULL || base[0] == '\0')
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/bmfuzz.XXXXXX", base);
	if (mkdtemp(fuzz_dir) == NULL) {
		fprintf(stderr, "fuzz: cannot make a directory in %s: %s\n", base, strerror(errno));
		exit(1);
	}
	atexit(fuzz_cleanup);
}

char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	fuzz_check(s != NULL, "out of memory");
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

size_t fuzz_lines(char *text, char *lines[], size_t max)
{
	size_t n = 0;

	while (n < max) {
		lines[n++] = text;
		char *nl = strchr(text, '\n');
		if (nl == NULL || n == max)
			break;
		*nl = '\0';
		text = nl + 1;
	}
	return n;
}

const char *fuzz_path(const char *name)
{
	char path[sizeof(fuzz_dir) + 64];

	for (size_t i = 0; i < fuzz_file_count; i++)
		if (strcmp(strrchr(fuzz_files[i], '/') + 1, name) == 0)
			return fuzz_files[i];
	fuzz_check(fuzz_file_count < FUZZ_FILES_MAX, "too many scratch files");
	snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
	fuzz_files[fuzz_file_count] = strdup(path);
	fuzz_check(fuzz_files[fuzz_file_count] != NULL, "out of memory");
	return fuzz_files[fuzz_file_count++];
}

const char *fuzz_write(const char *name, const void *data, size_t size)
{
	const char *path = fuzz_path(name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	const char *p = data;

	if (fd < 0) {
		fprintf(stderr, "fuzz: %s: %s\n", path, strerror(errno));
		abort();
	}
	while (size > 0) {
		ssize_t n = write(fd, p, size);
		if (n < 0 && errno == EINTR)
			continue;
		fuzz_check(n > 0, "cannot write a scratch file");
		p += n;
		size -= (size_t)n;
	}
	close(fd);
	return path;
}

const char *fuzz_write_text(const char *name, const char *text)
{
	return fuzz_write(name, text, strlen(text));
}

const char *fuzz_key_pem(void)
{
	static const char *path;
	EVP_PKEY *key;
	FILE *fp;

	if (path != NULL)
		return path;
	key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	fuzz_check(key != NULL, "cannot make an Ed25519 key");
	path = fuzz_write("ed25519.pem", "", 0);
	fp = fopen(path, "w");
	fuzz_check(fp != NULL && PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL) == 1,
		   "cannot write the Ed25519 key");
	fclose(fp);
	EVP_PKEY_free(key);
	return path;
}
