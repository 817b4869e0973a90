/* PKCS#11 backend against a SoftHSM token.
 *
 *	test_p11 MODULE DIR
 *
 * DIR is a softhsm-start fixture (PIN in DIR/hsm/user.pin); the caller sets
 * SOFTHSM2_CONF.  Tests run in order on one token and leave, for
 * tests/integration/pkcs11.sh, DIR/<label>.pub.pem (the public key
 * p11_key_pubkey reports), DIR/<label>.msg and DIR/<label>.sig (a signature
 * over SHA-256(msg) as `openssl dgst -verify` wants it: DER for ECDSA), and
 * two deliberately exportable control keys, t-control-plain (not sensitive,
 * extractable) and t-control-wrappable (sensitive, extractable). */
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <p11-kit/pkcs11.h>

#include "err.h"
#include "p11.h"

#define URI(label)	"pkcs11:token=threshold;object=" label

static const char *g_module;
static const char *g_dir;
static char g_pin[512];

static void
path(char *out, size_t outsz, const char *name)
{
	int n = snprintf(out, outsz, "%s/%s", g_dir, name);

	assert_true(n > 0 && (size_t)n < outsz);
}

static void
write_file(const char *name, const void *p, size_t len)
{
	char fn[4096];
	FILE *f;

	path(fn, sizeof(fn), name);
	/* 0600, as a PIN file must be (the others do not mind). */
	(void)unlink(fn);
	assert_non_null(f = fdopen(open(fn, O_WRONLY | O_CREAT | O_TRUNC,
	    0600), "w"));
	assert_int_equal(fwrite(p, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void
write_pub(const char *label, EVP_PKEY *pk)
{
	char fn[4096], name[256];
	FILE *f;

	snprintf(name, sizeof(name), "%s.pub.pem", label);
	path(fn, sizeof(fn), name);
	assert_non_null(f = fopen(fn, "w"));
	assert_int_equal(PEM_write_PUBKEY(f, pk), 1);
	assert_int_equal(fclose(f), 0);
}

/* ES256 r||s -> DER ECDSA-Sig-Value; *der freed by the caller. */
static size_t
rs_to_der(const uint8_t *sig, uint8_t **der)
{
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	int len;

	assert_non_null(es = ECDSA_SIG_new());
	assert_non_null(r = BN_bin2bn(sig, 32, NULL));
	assert_non_null(s = BN_bin2bn(sig + 32, 32, NULL));
	assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
	*der = NULL;
	len = i2d_ECDSA_SIG(es, der);
	assert_true(len > 0);
	ECDSA_SIG_free(es);
	return (size_t)len;
}

/* 1 if sig verifies over digest with pub, else 0. */
static int
verifies(EVP_PKEY *pub, enum th_alg alg, const uint8_t *digest,
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *pc;
	uint8_t *der = NULL;
	int ok;

	if (alg == TH_ALG_ES256) {
		assert_int_equal(siglen, 64);
		siglen = rs_to_der(sig, &der);
		sig = der;
	}
	assert_non_null(pc = EVP_PKEY_CTX_new(pub, NULL));
	assert_int_equal(EVP_PKEY_verify_init(pc), 1);
	if (alg == TH_ALG_RS256)
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pc,
		    RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()), 1);
	ok = EVP_PKEY_verify(pc, sig, siglen, digest, TH_DIGEST_LEN) == 1;
	EVP_PKEY_CTX_free(pc);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}

/* Signs a message's digest with key, checks the signature against the
 * reported public key (and orig, if given), checks a changed digest and a
 * changed signature fail, and leaves label.{pub.pem,msg,sig} in DIR. */
static void
sign_and_check(struct p11_key *key, EVP_PKEY *orig, const char *label)
{
	uint8_t digest[TH_DIGEST_LEN], sig[TH_SIG_MAX], *der = NULL;
	size_t siglen = sizeof(sig), len;
	char msg[256], name[256];
	enum th_alg alg = p11_key_alg(key);
	EVP_PKEY *pub = NULL;

	assert_int_equal(p11_key_pubkey(key, &pub), 0);
	snprintf(msg, sizeof(msg), "threshold test message for %s", label);
	SHA256((const uint8_t *)msg, strlen(msg), digest);
	assert_int_equal(p11_sign(key, digest, sig, &siglen), 0);
	assert_int_equal(siglen, alg == TH_ALG_ES256 ? 64 : 256);
	assert_true(verifies(pub, alg, digest, sig, siglen));
	if (orig != NULL) {
		assert_true(verifies(orig, alg, digest, sig, siglen));
		assert_int_equal(EVP_PKEY_eq(pub, orig), 1);
	}
	digest[0] ^= 1;
	assert_false(verifies(pub, alg, digest, sig, siglen));
	digest[0] ^= 1;
	sig[siglen - 1] ^= 1;
	assert_false(verifies(pub, alg, digest, sig, siglen));
	sig[siglen - 1] ^= 1;

	write_pub(label, pub);
	snprintf(name, sizeof(name), "%s.msg", label);
	write_file(name, msg, strlen(msg));
	snprintf(name, sizeof(name), "%s.sig", label);
	if (alg == TH_ALG_ES256) {
		len = rs_to_der(sig, &der);
		write_file(name, der, len);
		OPENSSL_free(der);
	} else
		write_file(name, sig, siglen);
	EVP_PKEY_free(pub);
}

static int
setup(void **state)
{
	struct p11_ctx *ctx = NULL;
	int r;

	if ((r = p11_open(g_module, g_pin, &ctx)) != 0) {
		fprintf(stderr, "p11_open: %s\n", th_errmsg(r));
		return -1;
	}
	*state = ctx;
	return 0;
}

static int
teardown(void **state)
{
	p11_close(*state);
	return 0;
}

static void
generate_and_use(struct p11_ctx *ctx, const char *uri, const char *label,
    enum th_alg alg)
{
	struct p11_key *key = NULL;
	int r;

	if ((r = p11_key_generate(ctx, uri, alg)) != 0)
		fail_msg("generate %s: %s", uri, th_errmsg(r));
	assert_int_equal(p11_key_generate(ctx, uri, alg), TH_ERR_EXISTS);
	assert_int_equal(p11_key_generate(ctx, uri,
	    alg == TH_ALG_ES256 ? TH_ALG_RS256 : TH_ALG_ES256), TH_ERR_EXISTS);
	if ((r = p11_key_load(ctx, uri, &key)) != 0)
		fail_msg("load %s: %s", uri, th_errmsg(r));
	assert_int_equal(p11_key_alg(key), alg);
	sign_and_check(key, NULL, label);
	if ((r = p11_key_check_unexportable(ctx, uri)) != 0)
		fail_msg("check_unexportable %s: %s", uri, th_errmsg(r));
	p11_key_free(key);
}

static void
test_generate_es256(void **state)
{
	generate_and_use(*state, URI("t-es256"), "t-es256", TH_ALG_ES256);
}

static void
test_generate_rs256(void **state)
{
	generate_and_use(*state, URI("t-rs256"), "t-rs256", TH_ALG_RS256);
}

/* id= is honoured: the key loads by id alone, and the id is taken. */
static void
test_generate_with_id(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;
	uint8_t d[TH_DIGEST_LEN] = { 1 }, sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);

	assert_int_equal(p11_key_generate(ctx, URI("t-id") ";id=%01%02%03",
	    TH_ALG_ES256), 0);
	assert_int_equal(p11_key_load(ctx, "pkcs11:token=threshold;"
	    "id=%01%02%03;type=private", &key), 0);
	assert_int_equal(p11_sign(key, d, sig, &siglen), 0);
	p11_key_free(key);
	assert_int_equal(p11_key_generate(ctx, URI("t-id2") ";id=%01%02%03",
	    TH_ALG_ES256), TH_ERR_EXISTS);
	assert_int_equal(p11_key_load(ctx, URI("t-id") ";id=%01%02%04", &key),
	    TH_ERR_NOT_FOUND);
	assert_null(key);
}

static void
test_import_rsa(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;
	EVP_PKEY *orig;
	EVP_PKEY_CTX *pc;
	uint8_t digest[TH_DIGEST_LEN], sig[TH_SIG_MAX], ref[TH_SIG_MAX];
	size_t siglen = sizeof(sig), reflen = sizeof(ref);
	int r;

	assert_non_null(orig = EVP_RSA_gen(2048));
	if ((r = p11_key_import(ctx, URI("t-imp-rsa"), orig)) != 0)
		fail_msg("import: %s", th_errmsg(r));
	assert_int_equal(p11_key_import(ctx, URI("t-imp-rsa"), orig),
	    TH_ERR_EXISTS);
	if ((r = p11_key_load(ctx, URI("t-imp-rsa"), &key)) != 0)
		fail_msg("load: %s", th_errmsg(r));
	assert_int_equal(p11_key_alg(key), TH_ALG_RS256);
	sign_and_check(key, orig, "t-imp-rsa");

	/* RSASSA-PKCS1-v1_5 is deterministic: the token's signature is the
	 * one OpenSSL makes with the original key. */
	assert_int_equal(RAND_bytes(digest, sizeof(digest)), 1);
	assert_int_equal(p11_sign(key, digest, sig, &siglen), 0);
	assert_non_null(pc = EVP_PKEY_CTX_new(orig, NULL));
	assert_int_equal(EVP_PKEY_sign_init(pc), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING),
	    1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_sign(pc, ref, &reflen, digest,
	    sizeof(digest)), 1);
	EVP_PKEY_CTX_free(pc);
	assert_int_equal(reflen, siglen);
	assert_memory_equal(sig, ref, siglen);

	if ((r = p11_key_check_unexportable(ctx, URI("t-imp-rsa"))) != 0)
		fail_msg("check_unexportable: %s", th_errmsg(r));
	p11_key_free(key);
	EVP_PKEY_free(orig);
}

static void
test_import_ec(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;
	EVP_PKEY *orig;
	int r;

	assert_non_null(orig = EVP_EC_gen("P-256"));
	if ((r = p11_key_import(ctx, URI("t-imp-ec"), orig)) != 0)
		fail_msg("import: %s", th_errmsg(r));
	if ((r = p11_key_load(ctx, URI("t-imp-ec"), &key)) != 0)
		fail_msg("load: %s", th_errmsg(r));
	assert_int_equal(p11_key_alg(key), TH_ALG_ES256);
	sign_and_check(key, orig, "t-imp-ec");
	if ((r = p11_key_check_unexportable(ctx, URI("t-imp-ec"))) != 0)
		fail_msg("check_unexportable: %s", th_errmsg(r));
	p11_key_free(key);
	EVP_PKEY_free(orig);
}

static void
test_import_refuses_other_keys(void **state)
{
	struct p11_ctx *ctx = *state;
	EVP_PKEY *k;

	assert_non_null(k = EVP_RSA_gen(1024));
	assert_int_equal(p11_key_import(ctx, URI("t-bad"), k), TH_ERR_INVALID);
	EVP_PKEY_free(k);
	assert_non_null(k = EVP_EC_gen("P-384"));
	assert_int_equal(p11_key_import(ctx, URI("t-bad"), k), TH_ERR_INVALID);
	EVP_PKEY_free(k);
	assert_int_equal(p11_key_import(ctx, URI("t-bad"), NULL),
	    TH_ERR_INVALID);
	assert_int_equal(p11_key_load(ctx, URI("t-bad"), &(struct p11_key *){
	    NULL }), TH_ERR_NOT_FOUND);
}

/* ---- an independent look at the token, without p11.c ---- */

struct raw {
	void			*dl;
	CK_FUNCTION_LIST_PTR	 f;
	CK_SESSION_HANDLE	 s;
};

static void
raw_open(struct raw *rw)
{
	CK_RV (*getlist)(CK_FUNCTION_LIST_PTR_PTR);
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	char pin[512];
	FILE *f;
	size_t len;

	assert_non_null(rw->dl = dlopen(g_module, RTLD_NOW | RTLD_LOCAL));
	assert_non_null(getlist = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(
	    rw->dl, "C_GetFunctionList"));
	assert_int_equal(getlist(&rw->f), CKR_OK);
	assert_int_equal(rw->f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(rw->f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (i = 0; i < n; i++) {
		assert_int_equal(rw->f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
		if (memcmp(ti.label, "threshold ", 10) == 0)
			break;
	}
	assert_true(i < n);
	assert_int_equal(rw->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION |
	    CKF_RW_SESSION, NULL, NULL, &rw->s), CKR_OK);
	assert_non_null(f = fopen(g_pin, "r"));
	len = fread(pin, 1, sizeof(pin) - 1, f);
	fclose(f);
	while (len > 0 && pin[len - 1] == '\n')
		len--;
	assert_int_equal(rw->f->C_Login(rw->s, CKU_USER, (CK_UTF8CHAR_PTR)pin,
	    len), CKR_OK);
	OPENSSL_cleanse(pin, sizeof(pin));
}

static void
raw_close(struct raw *rw)
{
	assert_int_equal(rw->f->C_Finalize(NULL), CKR_OK);
	dlclose(rw->dl);
}

static CK_OBJECT_HANDLE
raw_find(struct raw *rw, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	assert_int_equal(rw->f->C_FindObjectsInit(rw->s, t, 2), CKR_OK);
	assert_int_equal(rw->f->C_FindObjects(rw->s, h, 2, &n), CKR_OK);
	assert_int_equal(rw->f->C_FindObjectsFinal(rw->s), CKR_OK);
	assert_int_equal(n, 1);
	return h[0];
}

/* Reading a secret attribute gives CKR_ATTRIBUTE_SENSITIVE (with a buffer
 * offered, not only a length query); wrapping gives CKR_KEY_UNEXTRACTABLE;
 * the flags are as stored. */
static void
raw_assert_unexportable(struct raw *rw, const char *label,
    CK_ATTRIBUTE_TYPE secret)
{
	CK_OBJECT_HANDLE h = raw_find(rw, label), wk;
	CK_BBOOL sens = CK_FALSE, extr = CK_TRUE, yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG vlen = 32, wlen;
	uint8_t buf[4096];
	CK_ATTRIBUTE a = { secret, buf, sizeof(buf) };
	CK_ATTRIBUTE flags[] = {
		{ CKA_SENSITIVE, &sens, sizeof(sens) },
		{ CKA_EXTRACTABLE, &extr, sizeof(extr) },
	};
	CK_ATTRIBUTE wt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
	};
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_MECHANISM wrap = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };

	assert_int_equal(rw->f->C_GetAttributeValue(rw->s, h, &a, 1),
	    CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
	assert_int_equal(rw->f->C_GetAttributeValue(rw->s, h, flags, 2),
	    CKR_OK);
	assert_int_equal(sens, CK_TRUE);
	assert_int_equal(extr, CK_FALSE);
	assert_int_equal(rw->f->C_GenerateKey(rw->s, &gen, wt, 3, &wk), CKR_OK);
	wlen = sizeof(buf);
	assert_int_equal(rw->f->C_WrapKey(rw->s, &wrap, wk, h, buf, &wlen),
	    CKR_KEY_UNEXTRACTABLE);
	assert_int_equal(rw->f->C_DestroyObject(rw->s, wk), CKR_OK);
}

static void
test_raw_unexportable(void **state)
{
	struct raw rw;

	(void)state;
	raw_open(&rw);
	raw_assert_unexportable(&rw, "t-imp-rsa", CKA_PRIVATE_EXPONENT);
	raw_assert_unexportable(&rw, "t-imp-rsa", CKA_PRIME_1);
	raw_assert_unexportable(&rw, "t-imp-ec", CKA_VALUE);
	raw_assert_unexportable(&rw, "t-rs256", CKA_PRIVATE_EXPONENT);
	raw_assert_unexportable(&rw, "t-es256", CKA_VALUE);
	raw_close(&rw);
}

/* Discrimination control: keys the token will export.  The same raw
 * checks must see the difference, and p11_key_check_unexportable must
 * refuse them; otherwise the checks above could pass vacuously. */
static void
raw_create_ec(struct raw *rw, const char *label, CK_BBOOL sensitive,
    CK_BBOOL extractable, uint8_t scalar[32])
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_EC;
	CK_BBOOL yes = CK_TRUE;
	static const uint8_t p256[] = {
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
	};
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
		{ CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
		{ CKA_VALUE, scalar, 32 },
	};
	CK_OBJECT_HANDLE h;
	EVP_PKEY *k;
	BIGNUM *bn = NULL;

	assert_non_null(k = EVP_EC_gen("P-256"));
	assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY,
	    &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, scalar, 32), 32);
	BN_clear_free(bn);
	EVP_PKEY_free(k);
	assert_int_equal(rw->f->C_CreateObject(rw->s, t,
	    sizeof(t) / sizeof(t[0]), &h), CKR_OK);
}

static void
test_control_exportable(void **state)
{
	struct raw rw;
	struct p11_ctx *ctx = NULL;
	CK_OBJECT_HANDLE h, wk;
	CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
	CK_ULONG vlen = 32, wlen;
	uint8_t scalar[32], buf[512];
	CK_ATTRIBUTE a = { CKA_VALUE, buf, sizeof(buf) };
	CK_ATTRIBUTE wt[] = {
		{ CKA_TOKEN, &no, sizeof(no) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
	};
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_MECHANISM wrap = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
	int r;

	(void)state;
	raw_open(&rw);
	raw_create_ec(&rw, "t-control-plain", CK_FALSE, CK_TRUE, scalar);
	h = raw_find(&rw, "t-control-plain");
	assert_int_equal(rw.f->C_GetAttributeValue(rw.s, h, &a, 1), CKR_OK);
	assert_int_equal(a.ulValueLen, 32);
	assert_memory_equal(buf, scalar, 32);

	raw_create_ec(&rw, "t-control-wrappable", CK_TRUE, CK_TRUE, scalar);
	h = raw_find(&rw, "t-control-wrappable");
	a.ulValueLen = sizeof(buf);
	assert_int_equal(rw.f->C_GetAttributeValue(rw.s, h, &a, 1),
	    CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(rw.f->C_GenerateKey(rw.s, &gen, wt, 3, &wk), CKR_OK);
	wlen = sizeof(buf);
	assert_int_equal(rw.f->C_WrapKey(rw.s, &wrap, wk, h, buf, &wlen),
	    CKR_OK);
	assert_true(wlen > 32);
	OPENSSL_cleanse(buf, sizeof(buf));
	OPENSSL_cleanse(scalar, sizeof(scalar));
	raw_close(&rw);

	assert_int_equal(p11_open(g_module, g_pin, &ctx), 0);
	r = p11_key_check_unexportable(ctx, URI("t-control-plain"));
	assert_int_equal(r, TH_ERR_P11);
	assert_non_null(strstr(th_errmsg(r), "CKA_SENSITIVE=false"));
	r = p11_key_check_unexportable(ctx, URI("t-control-wrappable"));
	assert_int_equal(r, TH_ERR_P11);
	assert_non_null(strstr(th_errmsg(r), "CKA_EXTRACTABLE=true"));
	p11_close(ctx);
}

/* ---- errors ---- */

static void
test_wrong_pin(void **state)
{
	struct p11_ctx *ctx = NULL;
	struct p11_key *key = NULL;
	char fn[4096];
	int r;

	(void)state;
	write_file("wrong.pin", "00000000\n", 9);
	path(fn, sizeof(fn), "wrong.pin");
	/* Readable by others, it is no place for a PIN. */
	assert_int_equal(chmod(fn, 0640), 0);
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	r = p11_key_load(ctx, URI("t-es256"), &key);
	assert_int_equal(r, TH_ERR_CONFIG);
	assert_non_null(strstr(th_errmsg(r), "mode 0600"));
	p11_close(ctx);
	assert_int_equal(chmod(fn, 0600), 0);
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	r = p11_key_load(ctx, URI("t-es256"), &key);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(r), "CKR_PIN_INCORRECT"));
	assert_null(key);
	p11_close(ctx);
	/* The same file is not tried again, even by a new context (a token
	 * locks after a few wrong PINs); changed, it is. */
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	r = p11_key_load(ctx, URI("t-es256"), &key);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(r), "not tried again"));
	p11_close(ctx);
	write_file("wrong.pin", "00000001\n", 9);
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	r = p11_key_load(ctx, URI("t-es256"), &key);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(r), "CKR_PIN_INCORRECT"));
	p11_close(ctx);
}

/* The same for a PIN file whose path is longer than 256 bytes (the table
 * kept paths that fitted 256 bytes: a longer one was tried every time). */
static void
test_wrong_pin_long_path(void **state)
{
	char dir[256], name[1024], fn[4096];
	struct p11_ctx *ctx = NULL;
	struct p11_key *key = NULL;
	int r, i;

	(void)state;
	memset(dir, 'd', 200);
	dir[200] = '\0';
	path(fn, sizeof(fn), dir);
	assert_true(mkdir(fn, 0700) == 0 || errno == EEXIST);
	snprintf(name, sizeof(name), "%s/%s", dir, dir);
	path(fn, sizeof(fn), name);
	assert_true(mkdir(fn, 0700) == 0 || errno == EEXIST);
	snprintf(name, sizeof(name), "%s/%s/wrong.pin", dir, dir);
	write_file(name, "00000002\n", 9);
	path(fn, sizeof(fn), name);
	assert_true(strlen(fn) > 400);
	for (i = 0; i < 2; i++) {
		assert_int_equal(p11_open(g_module, fn, &ctx), 0);
		r = p11_key_load(ctx, URI("t-es256"), &key);
		assert_int_equal(r, TH_ERR_DENIED);
		assert_non_null(strstr(th_errmsg(r), i == 0 ?
		    "CKR_PIN_INCORRECT" : "not tried again"));
		assert_null(key);
		p11_close(ctx);
	}
}

static void
test_bad_module(void **state)
{
	struct p11_ctx *ctx = NULL;

	(void)state;
	assert_int_equal(p11_open("/nonexistent/libnothing.so", g_pin, &ctx),
	    TH_ERR_UNAVAILABLE);
	assert_null(ctx);
	assert_int_equal(p11_open(NULL, g_pin, &ctx), TH_ERR_CONFIG);
	assert_null(ctx);
}

/* RFC 7512: an attribute at most once (p11-kit would take the last). */
static void
test_uri_duplicates(void **state)
{
	struct p11_ctx *ctx = NULL;
	struct p11_key *key = NULL;
	int r;

	(void)state;
	assert_int_equal(p11_open(g_module, g_pin, &ctx), 0);
	r = p11_key_load(ctx, URI("t-es256") ";object=t-rs256;type=private",
	    &key);
	assert_int_equal(r, TH_ERR_INVALID);
	assert_non_null(strstr(th_errmsg(r), "\"object\" twice"));
	assert_null(key);
	r = p11_key_load(ctx, "pkcs11:token=nothing;token=threshold;"
	    "object=t-es256;type=private", &key);
	assert_int_equal(r, TH_ERR_INVALID);
	p11_close(ctx);
}

static void
test_pin_file_errors(void **state)
{
	struct p11_ctx *ctx = NULL;
	struct p11_key *key = NULL;
	char fn[4096], big[P11_PIN_MAX + 2];

	(void)state;
	memset(big, 'a', sizeof(big));
	write_file("long.pin", big, sizeof(big));
	path(fn, sizeof(fn), "long.pin");
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-es256"), &key),
	    TH_ERR_TOO_LONG);
	p11_close(ctx);

	write_file("empty.pin", "\n", 1);
	path(fn, sizeof(fn), "empty.pin");
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-es256"), &key),
	    TH_ERR_CONFIG);
	p11_close(ctx);

	path(fn, sizeof(fn), "no-such.pin");
	assert_int_equal(p11_open(g_module, fn, &ctx), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-es256"), &key),
	    TH_ERR_CONFIG);
	p11_close(ctx);
	assert_null(key);
}

static void
test_pin_value_refused(void **state)
{
	struct p11_key *key = NULL;
	int r;

	r = p11_key_load(*state, URI("t-es256") "?pin-value=1234", &key);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(r), "pin-value"));
	assert_null(key);
	assert_int_equal(p11_key_generate(*state, URI("t-pv") "?pin-value=1",
	    TH_ALG_ES256), TH_ERR_DENIED);
}

static void
test_pin_source(void **state)
{
	struct p11_ctx *ctx = NULL;
	struct p11_key *key = NULL;
	char uri[2048];
	int n;

	(void)state;
	assert_int_equal(p11_open(g_module, NULL, &ctx), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-es256"), &key),
	    TH_ERR_CONFIG);
	assert_int_equal(p11_key_load(ctx, URI("t-es256")
	    "?pin-source=relative.pin", &key), TH_ERR_INVALID);
	n = snprintf(uri, sizeof(uri), "%s?pin-source=file:%s", URI("t-es256"),
	    g_pin);
	assert_true(n > 0 && n <= P11_URI_MAX);
	assert_int_equal(p11_key_load(ctx, uri, &key), 0);
	assert_int_equal(p11_key_alg(key), TH_ALG_ES256);
	p11_key_free(key);
	p11_close(ctx);
}

static void
test_not_found(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;

	assert_int_equal(p11_key_load(ctx, URI("no-such-key"), &key),
	    TH_ERR_NOT_FOUND);
	/* A token absent is unavailable (the signer looks for it again from
	 * the module's initialisation); a key absent is not found. */
	assert_int_equal(p11_key_load(ctx, "pkcs11:token=no-such-token;"
	    "object=t-es256", &key), TH_ERR_UNAVAILABLE);
	assert_int_equal(p11_key_destroy(ctx, URI("no-such-key")),
	    TH_ERR_NOT_FOUND);
	assert_int_equal(p11_key_check_unexportable(ctx, URI("no-such-key")),
	    TH_ERR_NOT_FOUND);
	assert_null(key);
}

static void
test_malformed_uri(void **state)
{
	static const char *bad[] = {
		"object=t-es256",
		"pkcs12:token=threshold;object=t-es256",
		"pkcs11:token=threshold;object=%zz",
		"pkcs11:token=threshold;object=t-es256;type=bogus",
		"pkcs11:token=threshold;object=t-es256;type=public",
		"pkcs11:token=threshold;object=t-es256;type=cert",
		"pkcs11:token=threshold;object=t-es256;frobnicate=1",
		"pkcs11:token=threshold;object=t-es256?module-path=/x.so",
		"pkcs11:token=threshold;object=t-es256?module-name=x",
		"pkcs11:token=threshold",
		"pkcs11:",
		"",
	};
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;
	char big[P11_URI_MAX + 64];
	size_t i;
	int r;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = p11_key_load(ctx, bad[i], &key);
		if (r != TH_ERR_INVALID)
			fail_msg("\"%s\": %d (%s), wanted TH_ERR_INVALID",
			    bad[i], r, th_errmsg(r));
		assert_int_equal(p11_key_generate(ctx, bad[i], TH_ALG_ES256),
		    TH_ERR_INVALID);
	}
	assert_int_equal(p11_key_load(ctx, NULL, &key), TH_ERR_INVALID);
	memset(big, 'a', sizeof(big));
	memcpy(big, URI(""), strlen(URI("")));
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(p11_key_load(ctx, big, &key), TH_ERR_TOO_LONG);
	assert_int_equal(p11_key_generate(ctx, URI("t-x"), TH_ALG_NONE),
	    TH_ERR_INVALID);
	assert_null(key);
}

static void
test_destroy(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL, *again = NULL;
	uint8_t d[TH_DIGEST_LEN] = { 2 }, sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);

	assert_int_equal(p11_key_generate(ctx, URI("t-del"), TH_ALG_ES256), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-del"), &key), 0);
	assert_int_equal(p11_key_destroy(ctx, URI("t-del")), 0);
	assert_int_not_equal(p11_sign(key, d, sig, &siglen), 0);
	p11_key_free(key);
	assert_int_equal(p11_key_load(ctx, URI("t-del"), &again),
	    TH_ERR_NOT_FOUND);
	assert_int_equal(p11_key_destroy(ctx, URI("t-del")), TH_ERR_NOT_FOUND);
	/* The label is free again, and libp11's view follows. */
	assert_int_equal(p11_key_generate(ctx, URI("t-del"), TH_ALG_RS256), 0);
	assert_int_equal(p11_key_load(ctx, URI("t-del"), &again), 0);
	assert_int_equal(p11_key_alg(again), TH_ALG_RS256);
	p11_key_free(again);
	assert_int_equal(p11_key_destroy(ctx, URI("t-del")), 0);
}

/* A loaded key keeps working while other keys come and go. */
static void
test_key_survives_changes(void **state)
{
	struct p11_ctx *ctx = *state;
	struct p11_key *key = NULL;
	uint8_t d[TH_DIGEST_LEN] = { 3 }, sig[TH_SIG_MAX];
	size_t siglen;
	EVP_PKEY *pub = NULL;

	assert_int_equal(p11_key_load(ctx, URI("t-es256"), &key), 0);
	assert_int_equal(p11_key_pubkey(key, &pub), 0);
	assert_int_equal(p11_key_generate(ctx, URI("t-tmp"), TH_ALG_ES256), 0);
	siglen = sizeof(sig);
	assert_int_equal(p11_sign(key, d, sig, &siglen), 0);
	assert_true(verifies(pub, TH_ALG_ES256, d, sig, siglen));
	assert_int_equal(p11_key_destroy(ctx, URI("t-tmp")), 0);
	siglen = sizeof(sig);
	assert_int_equal(p11_sign(key, d, sig, &siglen), 0);
	assert_true(verifies(pub, TH_ALG_ES256, d, sig, siglen));

	/* Too small a buffer is refused without touching the token. */
	siglen = 63;
	assert_int_equal(p11_sign(key, d, sig, &siglen), TH_ERR_INVALID);
	siglen = sizeof(sig);
	assert_int_equal(p11_sign(key, d, sig, &siglen), 0);
	EVP_PKEY_free(pub);
	p11_key_free(key);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate_es256, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_generate_rs256, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_generate_with_id, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_import_rsa, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_import_ec, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_import_refuses_other_keys,
		    setup, teardown),
		cmocka_unit_test(test_raw_unexportable),
		cmocka_unit_test(test_control_exportable),
		cmocka_unit_test(test_wrong_pin),
		cmocka_unit_test(test_wrong_pin_long_path),
		cmocka_unit_test(test_bad_module),
		cmocka_unit_test(test_pin_file_errors),
		cmocka_unit_test(test_uri_duplicates),
		cmocka_unit_test_setup_teardown(test_pin_value_refused, setup,
		    teardown),
		cmocka_unit_test(test_pin_source),
		cmocka_unit_test_setup_teardown(test_not_found, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_malformed_uri, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_survives_changes,
		    setup, teardown),
	};
	int n;

	if (argc != 3) {
		fprintf(stderr, "usage: test_p11 MODULE DIR\n");
		return 2;
	}
	g_module = argv[1];
	g_dir = argv[2];
	n = snprintf(g_pin, sizeof(g_pin), "%s/hsm/user.pin", g_dir);
	if (n < 0 || (size_t)n >= sizeof(g_pin))
		return 2;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
