/* lib/p11client.c against the real threshold-pkcs11-helper and SoftHSM.
 *
 *	test_p11client HELPER MODULE DIR
 *
 * DIR is a softhsm-start fixture (PIN in DIR/hsm/user.pin; the caller sets
 * SOFTHSM2_CONF) on which tests/integration/p11helper.sh has generated
 * "human-es256" (ES256) and "human-rs256" (RS256).  Signatures are checked
 * with OpenSSL EVP directly, not with Threshold's JWS code.  Fake helpers
 * (shell scripts written to DIR) exercise the client's framing checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <json-c/json.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "buf.h"
#include "err.h"
#include "jws.h"
#include "p11client.h"

#define URI(label)	"pkcs11:token=threshold;object=" label

static const char *g_helper;
static const char *g_module;
static const char *g_dir;
static char g_pin[4096];

static void
path(char *out, size_t outsz, const char *name)
{
	int n = snprintf(out, outsz, "%s/%s", g_dir, name);

	assert_true(n > 0 && (size_t)n < outsz);
}

/* A fake helper: /bin/sh script body in DIR/name, executable. */
static void
fake(char *out, size_t outsz, const char *name, const char *body)
{
	FILE *f;

	path(out, outsz, name);
	assert_non_null(f = fopen(out, "w"));
	assert_true(fprintf(f, "#!/bin/sh\n%s\n", body) > 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(out, 0700), 0);
}

/* A signing input header.claims with the given header alg. */
static struct buf *
signing_input(enum th_alg alg)
{
	struct json_object *claims = json_object_new_object();
	struct buf *b = buf_new();

	assert_non_null(claims);
	assert_non_null(b);
	json_object_object_add(claims, "sub",
	    json_object_new_string("alice"));
	json_object_object_add(claims, "scope",
	    json_object_new_string("repo:example/threshold:pull"));
	assert_int_equal(jws_signing_input(b, alg, "delegation+jwt", "k1",
	    claims), 0);
	json_object_put(claims);
	return b;
}

/* SHA-256 signature check with plain EVP; ES256 r||s converted to DER. */
static int
evp_verify(EVP_PKEY *pub, enum th_alg alg, const uint8_t *msg, size_t len,
    const uint8_t *sig, size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es = NULL;
	unsigned char *der = NULL;
	int derlen = 0, ok;

	assert_non_null(md);
	if (alg == TH_ALG_ES256) {
		assert_int_equal(siglen, 64);
		assert_non_null(es = ECDSA_SIG_new());
		assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
		    BN_bin2bn(sig + 32, 32, NULL)), 1);
		assert_true((derlen = i2d_ECDSA_SIG(es, &der)) > 0);
		sig = der;
		siglen = (size_t)derlen;
	}
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
	    pub), 1);
	ok = EVP_DigestVerify(md, sig, siglen, msg, len);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return ok;
}

static void
sign_and_verify(const char *uri, enum th_alg alg, int want_bits)
{
	struct buf *in = signing_input(alg);
	EVP_PKEY *pub = NULL;
	uint8_t sig[TH_SIG_MAX], bad[TH_SIG_MAX];
	size_t siglen = 0;
	enum th_alg got = TH_ALG_NONE;

	assert_int_equal(p11c_pubkey(g_helper, g_module, g_pin, uri, &pub), 0);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_get_bits(pub), want_bits);
	assert_int_equal(p11c_sign(g_helper, g_module, g_pin, uri,
	    buf_ptr(in), buf_len(in), &got, sig, &siglen), 0);
	assert_int_equal(got, alg);
	assert_int_equal(siglen, alg == TH_ALG_ES256 ? 64 : 256);
	assert_int_equal(evp_verify(pub, alg, buf_ptr(in), buf_len(in), sig,
	    siglen), 1);
	/* A changed signature or message must not verify. */
	memcpy(bad, sig, siglen);
	bad[siglen / 2] ^= 0x01;
	assert_int_not_equal(evp_verify(pub, alg, buf_ptr(in), buf_len(in),
	    bad, siglen), 1);
	assert_int_not_equal(evp_verify(pub, alg, buf_ptr(in),
	    buf_len(in) - 1, sig, siglen), 1);
	EVP_PKEY_free(pub);
	buf_free(in);
}

static void
test_es256(void **state)
{
	(void)state;
	sign_and_verify(URI("human-es256"), TH_ALG_ES256, 256);
}

static void
test_rs256(void **state)
{
	(void)state;
	sign_and_verify(URI("human-rs256"), TH_ALG_RS256, 2048);
}

/* The helper's refusal comes back as TH_ERR_P11 with its stderr line. */
static void
test_alg_mismatch(void **state)
{
	struct buf *in = signing_input(TH_ALG_RS256);
	uint8_t sig[TH_SIG_MAX];
	size_t siglen = 1;
	enum th_alg alg = TH_ALG_ES256;

	(void)state;
	assert_int_equal(p11c_sign(g_helper, g_module, g_pin,
	    URI("human-es256"), buf_ptr(in), buf_len(in), &alg, sig, &siglen),
	    TH_ERR_P11);
	assert_non_null(strstr(th_errmsg(TH_ERR_P11),
	    "threshold-pkcs11-helper: signing input is RS256, the key is "
	    "ES256"));
	assert_int_equal(alg, TH_ALG_NONE);
	assert_int_equal(siglen, 0);
	buf_free(in);
}

/* Refused in the client, before anything is spawned. */
static void
test_not_signing_input(void **state)
{
	static const char *bad[] = {
		"not a jws",
		"eyJhbGciOiJFUzI1NiJ9.e30.c2ln",	/* a whole token */
		"eyJhbGciOiJub25lIn0.e30",		/* alg none */
	};
	uint8_t sig[TH_SIG_MAX];
	size_t i, siglen;
	enum th_alg alg;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(p11c_sign("/nonexistent/helper", g_module,
		    g_pin, URI("human-es256"), (const uint8_t *)bad[i],
		    strlen(bad[i]), &alg, sig, &siglen), TH_ERR_INVALID);
}

static void
test_wrong_pin(void **state)
{
	char wrong[4096];
	EVP_PKEY *pub = NULL;
	FILE *f;

	(void)state;
	path(wrong, sizeof(wrong), "wrong.pin");
	assert_non_null(f = fopen(wrong, "w"));
	assert_true(fputs("00000000", f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(p11c_pubkey(g_helper, g_module, wrong,
	    URI("human-es256"), &pub), TH_ERR_P11);
	assert_null(pub);
	assert_non_null(strstr(th_errmsg(TH_ERR_P11),
	    "threshold-pkcs11-helper: "));
}

static void
test_no_helper(void **state)
{
	EVP_PKEY *pub = NULL;

	(void)state;
	assert_int_equal(p11c_pubkey("/nonexistent/threshold-pkcs11-helper",
	    g_module, g_pin, URI("human-es256"), &pub), TH_ERR_UNAVAILABLE);
	assert_null(pub);
}

/* Output that breaks the framing, a helper that will not read its input,
 * a helper that dies by a signal. */
static void
test_fake_helpers(void **state)
{
	struct buf *in = signing_input(TH_ALG_ES256);
	char h[4096];
	uint8_t sig[TH_SIG_MAX];
	size_t siglen;
	enum th_alg alg;
	EVP_PKEY *pub = NULL;

	(void)state;
	fake(h, sizeof(h), "fake-short", "cat >/dev/null; printf 'x'");
	assert_int_equal(p11c_sign(h, g_module, g_pin, URI("human-es256"),
	    buf_ptr(in), buf_len(in), &alg, sig, &siglen), TH_ERR_PROTOCOL);

	fake(h, sizeof(h), "fake-flood", "head -c 100000 /dev/zero");
	assert_int_equal(p11c_sign(h, g_module, g_pin, URI("human-es256"),
	    buf_ptr(in), buf_len(in), &alg, sig, &siglen), TH_ERR_PROTOCOL);

	fake(h, sizeof(h), "fake-garbage", "echo not a key");
	assert_int_equal(p11c_pubkey(h, g_module, g_pin, URI("human-es256"),
	    &pub), TH_ERR_PROTOCOL);
	assert_null(pub);

	fake(h, sizeof(h), "fake-exit", "exec 0<&-; exit 3");
	assert_int_equal(p11c_sign(h, g_module, g_pin, URI("human-es256"),
	    buf_ptr(in), buf_len(in), &alg, sig, &siglen), TH_ERR_P11);
	assert_non_null(strstr(th_errmsg(TH_ERR_P11), "exited with status 3"));

	fake(h, sizeof(h), "fake-noisy",
	    "head -c 5000 /dev/zero | tr '\\0' 'e' >&2; exit 1");
	assert_int_equal(p11c_pubkey(h, g_module, g_pin, URI("human-es256"),
	    &pub), TH_ERR_P11);
	assert_true(strlen(th_errmsg(TH_ERR_P11)) <= P11C_STDERR_MAX);

	fake(h, sizeof(h), "fake-killed", "kill -9 $$");
	assert_int_equal(p11c_pubkey(h, g_module, g_pin, URI("human-es256"),
	    &pub), TH_ERR_P11);
	assert_non_null(strstr(th_errmsg(TH_ERR_P11), "killed by signal 9"));
	buf_free(in);
}

/* With SIGCHLD ignored the helper's exit status is lost: not a success. */
static void
test_sigchld_ignored(void **state)
{
	EVP_PKEY *pub = NULL;
	char h[4096];

	(void)state;
	fake(h, sizeof(h), "fake-fails-quietly", "exit 1");
	assert_true(signal(SIGCHLD, SIG_IGN) != SIG_ERR);
	assert_int_not_equal(p11c_pubkey(h, g_module, g_pin,
	    URI("human-es256"), &pub), 0);
	assert_int_not_equal(p11c_pubkey(g_helper, g_module, g_pin,
	    URI("human-es256"), &pub), 0);
	assert_true(signal(SIGCHLD, SIG_DFL) != SIG_ERR);
	assert_null(pub);
}

static void
test_default_helper(void **state)
{
	const char *h = p11c_default_helper();
	size_t n;

	(void)state;
	assert_non_null(h);
	n = strlen(h);
	assert_true(n >= strlen(P11C_HELPER_NAME));
	assert_string_equal(h + n - strlen(P11C_HELPER_NAME),
	    P11C_HELPER_NAME);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_es256),
		cmocka_unit_test(test_rs256),
		cmocka_unit_test(test_alg_mismatch),
		cmocka_unit_test(test_not_signing_input),
		cmocka_unit_test(test_wrong_pin),
		cmocka_unit_test(test_no_helper),
		cmocka_unit_test(test_fake_helpers),
		cmocka_unit_test(test_sigchld_ignored),
		cmocka_unit_test(test_default_helper),
	};
	int n;

	if (argc != 4) {
		fprintf(stderr, "usage: test_p11client HELPER MODULE DIR\n");
		return 2;
	}
	g_helper = argv[1];
	g_module = argv[2];
	g_dir = argv[3];
	n = snprintf(g_pin, sizeof(g_pin), "%s/hsm/user.pin", g_dir);
	if (n < 0 || (size_t)n >= sizeof(g_pin))
		return 2;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
