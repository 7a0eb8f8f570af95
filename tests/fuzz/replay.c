/*
 * Replays stored fuzz inputs through a harness in an ordinary build (no
 * libFuzzer): every file named on the command line, and every file in every
 * directory named there (not recursively, in name order, skipping names
 * that start with a dot), is read into a buffer of exactly its size and fed
 * to LLVMFuzzerTestOneInput. A harness that finds a difference abort()s, so
 * the test fails with its message. A path that does not exist is an error:
 * a misspelt corpus must not pass by replaying nothing.
 *
 * Usage: fuzz_replay_<harness> [-v] PATH...
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static bool verbose;
static unsigned long replayed;

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long size;

	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "replay: %s: cannot size\n", path);
		fclose(f);
		return -1;
	}
	/* Exactly size bytes, so ASan sees any read past the input. */
	buf = malloc(size > 0 ? (size_t)size : 1);
	if (buf == NULL ||
	    (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size)) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	if (verbose)
		fprintf(stderr, "replay: %s (%ld bytes)\n", path, size);
	(void)LLVMFuzzerTestOneInput(buf, (size_t)size);
	free(buf);
	replayed++;
	return 0;
}

static int
replay_dir(const char *path)
{
	struct dirent **list;
	int n = scandir(path, &list, NULL, alphasort);
	int rc = 0;

	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		size_t len = strlen(path) + strlen(name) + 2;
		char *full = malloc(len);
		struct stat st;

		if (name[0] != '.' && full != NULL) {
			snprintf(full, len, "%s/%s", path, name);
			if (stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
			    replay_file(full) != 0)
				rc = -1;
		}
		free(full);
		free(list[i]);
	}
	free(list);
	return rc;
}

int
main(int argc, char **argv)
{
	int rc = 0, paths = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;

		if (strcmp(argv[i], "-v") == 0) {
			verbose = true;
			continue;
		}
		paths++;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(errno));
			rc = 1;
		} else if (S_ISDIR(st.st_mode)) {
			if (replay_dir(argv[i]) != 0)
				rc = 1;
		} else if (replay_file(argv[i]) != 0) {
			rc = 1;
		}
	}
	if (paths == 0) {
		fprintf(stderr, "usage: %s [-v] PATH...\n", argv[0]);
		return 2;
	}
	printf("replayed %lu inputs\n", replayed);
	return rc;
}
