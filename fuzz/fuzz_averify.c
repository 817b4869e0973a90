/* A whole exported audit log (JSON lines) through the offline verifier,
 * as a compliance team runs it on a file from anywhere.  The trusted root
 * key is the seeds' (FUZZ_AUDIT_ROOT, a PEM public key written by
 * fuzz/seeds.py), so mutations of a genuine log get past the header. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "err.h"
#include "fuzz.h"
#include "verify.h"

static EVP_PKEY *root;
static int fd = -1;
static char path[64];

int	LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *pem = getenv("FUZZ_AUDIT_ROOT");
	FILE *f;

	(void)argc;
	(void)argv;
	if (pem == NULL || (f = fopen(pem, "r")) == NULL) {
		fprintf(stderr, "fuzz_averify: FUZZ_AUDIT_ROOT must name the "
		    "seeds' root.pem (fuzz/seeds.py)\n");
		exit(2);
	}
	root = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	/* The verifier reads a path: give it one in memory. */
	if (root == NULL || (fd = memfd_create("log", 0)) < 0)
		exit(2);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct averify_summary sum;
	struct averify *v = NULL;
	int r;

	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) !=
	    (ssize_t)size || averify_new(root, &v) != 0)
		return 0;
	/* The same checks on one thread: an input's coverage then does not
	 * depend on how helper threads were scheduled. */
	averify_set_threads(v, 1);
	r = averify_file(v, path);
	/* Exactly one of: verified (with a summary), refused with a reason,
	 * or unreadable with an error. */
	if (r == 0) {
		FUZZ_ASSERT(averify_failure(v)[0] == '\0');
		averify_summary(v, &sum);
	} else if (r == TH_ERR_DENIED)
		FUZZ_ASSERT(averify_failure(v)[0] != '\0');
	averify_free(v);
	return 0;
}
