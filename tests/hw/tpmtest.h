/* What the tests that drive swtpm share (test_tpm, test_activate): the
 * module's context and a raw ESYS one (swtpm serves one client at a time,
 * so raw_open closes the module's context and raw_close reopens it), the
 * check that every test leaves no transient object or session behind,
 * and files for tpm2-tools to judge.  Included once, after cmocka.h. */
#ifndef TH_TPMTEST_H
#define TH_TPMTEST_H

#include <stdio.h>
#include <stdlib.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "err.h"
#include "tpm.h"

#define assert_ok(expr) do {						\
	int r_ = (expr);						\
	if (r_ != 0)							\
		fail_msg("%s: %s", #expr, th_errmsg(r_));		\
} while (0)

#define assert_rc_ok(expr) do {						\
	TSS2_RC rc_ = (expr);						\
	if (rc_ != TSS2_RC_SUCCESS)					\
		fail_msg("%s: %s", #expr, Tss2_RC_Decode(rc_));		\
} while (0)

static const char *tcti, *outdir;
static struct tpm_ctx *ctx;
static ESYS_CONTEXT *esys;
static TSS2_TCTI_CONTEXT *raw_tcti;

static void
write_file(const char *name, const void *p, size_t len)
{
	char path[1024];
	FILE *f;

	assert_true((size_t)snprintf(path, sizeof(path), "%s/%s", outdir,
	    name) < sizeof(path));
	assert_non_null(f = fopen(path, "wb"));
	assert_int_equal(fwrite(p, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
write_hex(const char *name, const uint8_t *p, size_t len)
{
	char *hex;
	size_t i;

	assert_non_null(hex = malloc(2 * len + 2));
	for (i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", p[i]);
	hex[2 * len] = '\n';
	write_file(name, hex, 2 * len + 1);
	free(hex);
}

/* Talks ESYS directly: the module lets go of the TPM meanwhile. */
static void
raw_open(void)
{
	tpm_close(ctx);
	ctx = NULL;
	assert_rc_ok(Tss2_TctiLdr_Initialize(tcti, &raw_tcti));
	assert_rc_ok(Esys_Initialize(&esys, raw_tcti, NULL));
}

static void
raw_close(void)
{
	Esys_Finalize(&esys);
	Tss2_TctiLdr_Finalize(&raw_tcti);
	esys = NULL;
	assert_ok(tpm_open(tcti, &ctx));
}

static ESYS_TR
raw_tr(uint32_t handle)
{
	ESYS_TR tr = ESYS_TR_NONE;

	assert_rc_ok(Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, &tr));
	return tr;
}

static void
evict_if_present(uint32_t handle)
{
	int r = tpm_key_evict(ctx, handle);

	if (r != 0 && r != TH_ERR_NOT_FOUND)
		fail_msg("evict 0x%08x: %s", handle, th_errmsg(r));
}

static int
group_setup(void **state)
{
	int r;

	(void)state;
	if ((r = tpm_open(tcti, &ctx)) != 0) {
		fprintf(stderr, "tpm_open: %s\n", th_errmsg(r));
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	tpm_close(ctx);
	ctx = NULL;
	return 0;
}

/* Every test must leave the TPM as it found it. */
static int
no_leftovers(void **state)
{
	uint32_t objects, sessions;

	(void)state;
	if (esys != NULL) {		/* a raw step failed halfway */
		Esys_Finalize(&esys);
		Tss2_TctiLdr_Finalize(&raw_tcti);
		esys = NULL;
	}
	if (ctx == NULL)
		assert_ok(tpm_open(tcti, &ctx));
	assert_ok(tpm_loaded_handles(ctx, &objects, &sessions));
	assert_int_equal(objects, 0);
	assert_int_equal(sessions, 0);
	return 0;
}

#endif
