/* TPM backend against a live swtpm.
 *
 *	test_tpm TCTI OUTDIR		the suite; leaves attest.bin, sig.bin,
 *					pcrs.bin, ak.pem, qual.hex (and the
 *					same for a sha1-bank quote: *-sha1.*)
 *					and ek.der in OUTDIR for
 *					tests/integration/tpm.sh
 *	test_tpm TCTI OUTDIR recovery	signs, then follows the shell through a
 *					swtpm kill and restart (see
 *					test_recovery)
 *
 * swtpm serves one client at a time, so tests that talk ESYS directly
 * (raw_open) close the module's context first and reopen it afterwards.
 * After every test no transient object or session may be left in the TPM. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "buf.h"
#include "err.h"
#include "tpm.h"
#include "tpmtest.h"

#define H_ES256		0x81000100
#define H_RS256		0x81000101
#define H_IMPORT	0x81000102
#define H_TMP		0x81000103
#define H_REC		0x81000104
#define H_REC2		0x81000105	/* tpm.sh puts another key here */
#define H_AK		0x81010100
#define H_EK_RSA	0x81010001	/* where swtpm_setup persists its EK */

#define PCRSEL_QUOTE	"sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,23"
#define PCRSEL_SHA1	"sha1:0,16"


/* Helpers. */

static void
sha256(const void *msg, size_t len, uint8_t out[TH_DIGEST_LEN])
{
	assert_int_equal(EVP_Digest(msg, len, out, NULL, EVP_sha256(), NULL),
	    1);
}

/* 1 if sig (JWS form: r||s for ES256) verifies over digest. */
static int
verify(EVP_PKEY *pub, enum th_alg alg, const uint8_t *digest,
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *pctx;
	ECDSA_SIG *es = NULL;
	uint8_t *der = NULL;
	int derlen, ok;

	if (alg == TH_ALG_ES256) {
		assert_int_equal(siglen, 64);
		assert_non_null(es = ECDSA_SIG_new());
		assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
		    BN_bin2bn(sig + 32, 32, NULL)), 1);
		assert_true((derlen = i2d_ECDSA_SIG(es, &der)) > 0);
		sig = der;
		siglen = (size_t)derlen;
	}
	assert_non_null(pctx = EVP_PKEY_CTX_new(pub, NULL));
	assert_int_equal(EVP_PKEY_verify_init(pctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()), 1);
	if (alg == TH_ALG_RS256)
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx,
		    RSA_PKCS1_PADDING), 1);
	ok = EVP_PKEY_verify(pctx, sig, siglen, digest, TH_DIGEST_LEN) == 1;
	EVP_PKEY_CTX_free(pctx);
	ECDSA_SIG_free(es);
	OPENSSL_free(der);
	return ok;
}

static void
write_pubkey(const char *name, EVP_PKEY *pub)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_PUBKEY(f, pub), 1);
	assert_int_equal(fclose(f), 0);
}

static TSS2_RC
rc_base(TSS2_RC rc)
{
	return (rc & TPM2_RC_FMT1) ? rc & (TPM2_RC_FMT1 | 0x3f) : rc & 0xfff;
}

/* Tests. */

/* Earlier runs on the same TPM state must not get in the way. */
static void
test_clean_slate(void **state)
{
	static const uint32_t h[] = {
		H_ES256, H_RS256, H_IMPORT, H_TMP, H_REC, H_AK,
	};
	size_t i;

	(void)state;
	assert_ok(tpm_health(ctx));
	for (i = 0; i < sizeof(h) / sizeof(h[0]); i++)
		evict_if_present(h[i]);
}

static void
create_sign_verify(uint32_t handle, enum th_alg alg, size_t want)
{
	struct tpm_key *key;
	EVP_PKEY *pub;
	uint8_t dig[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	char msg[32];
	size_t siglen;
	int i;

	assert_ok(tpm_key_create(ctx, handle, alg));
	assert_int_equal(tpm_key_create(ctx, handle, alg), TH_ERR_EXISTS);
	assert_ok(tpm_key_load(ctx, handle, &key));
	assert_int_equal(tpm_key_alg(key), alg);
	assert_ok(tpm_key_pubkey(key, &pub));
	for (i = 0; i < 8; i++) {
		snprintf(msg, sizeof(msg), "message %d", i);
		sha256(msg, strlen(msg), dig);
		siglen = sizeof(sig);
		assert_ok(tpm_sign(key, dig, sig, &siglen));
		assert_int_equal(siglen, want);
		assert_true(verify(pub, alg, dig, sig, siglen));
		dig[0] ^= 1;
		assert_false(verify(pub, alg, dig, sig, siglen));
	}
	siglen = want - 1;
	assert_int_equal(tpm_sign(key, dig, sig, &siglen), TH_ERR_TOO_LONG);
	EVP_PKEY_free(pub);
	tpm_key_free(key);
}

static void
test_es256(void **state)
{
	(void)state;
	create_sign_verify(H_ES256, TH_ALG_ES256, 64);
}

static void
test_rs256(void **state)
{
	(void)state;
	create_sign_verify(H_RS256, TH_ALG_RS256, 256);
}

static void
test_create_refuses(void **state)
{
	(void)state;
	assert_int_equal(tpm_key_create(ctx, H_TMP, TH_ALG_NONE),
	    TH_ERR_INVALID);
	assert_int_equal(tpm_key_create(ctx, TPM_SRK_HANDLE, TH_ALG_ES256),
	    TH_ERR_INVALID);
	assert_int_equal(tpm_key_create(ctx, 0x81010200, TH_ALG_ES256),
	    TH_ERR_INVALID);
	assert_int_equal(tpm_ak_create(ctx, 0x81000200), TH_ERR_INVALID);
	assert_int_equal(tpm_key_load(ctx, 0x8100fff0, &(struct tpm_key *){
	    NULL }), TH_ERR_NOT_FOUND);
	/* The SRK is a decryption key: not usable through this API. */
	assert_int_equal(tpm_key_load(ctx, TPM_SRK_HANDLE, &(struct tpm_key *){
	    NULL }), TH_ERR_INVALID);
}

static void
test_import(void **state)
{
	struct tpm_key *key;
	EVP_PKEY *k, *pub, *other, *pubonly;
	EVP_PKEY_CTX *pctx;
	uint8_t dig[TH_DIGEST_LEN], sig[TH_SIG_MAX], ref[TH_SIG_MAX];
	uint8_t *der = NULL;
	const uint8_t *p;
	size_t siglen, reflen;
	int derlen;

	(void)state;
	assert_non_null(k = EVP_RSA_gen(2048));
	assert_ok(tpm_key_import(ctx, H_IMPORT, k));
	assert_int_equal(tpm_key_import(ctx, H_IMPORT, k), TH_ERR_EXISTS);
	assert_ok(tpm_key_load(ctx, H_IMPORT, &key));
	assert_int_equal(tpm_key_alg(key), TH_ALG_RS256);
	assert_ok(tpm_key_pubkey(key, &pub));
	assert_int_equal(EVP_PKEY_eq(pub, k), 1);

	sha256("imported", 8, dig);
	siglen = sizeof(sig);
	assert_ok(tpm_sign(key, dig, sig, &siglen));
	assert_int_equal(siglen, 256);
	assert_non_null(pctx = EVP_PKEY_CTX_new(k, NULL));
	assert_int_equal(EVP_PKEY_sign_init(pctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING),
	    1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()), 1);
	reflen = sizeof(ref);
	assert_int_equal(EVP_PKEY_sign(pctx, ref, &reflen, dig, sizeof(dig)),
	    1);
	EVP_PKEY_CTX_free(pctx);
	/* PKCS#1 v1.5 is deterministic: the TPM must produce OpenSSL's bytes. */
	assert_int_equal(reflen, siglen);
	assert_memory_equal(ref, sig, siglen);
	assert_true(verify(k, TH_ALG_RS256, dig, sig, siglen));
	tpm_key_free(key);
	EVP_PKEY_free(pub);

	/* Only RSA-2048 private keys are accepted. */
	assert_non_null(other = EVP_EC_gen("P-256"));
	assert_int_equal(tpm_key_import(ctx, H_TMP, other), TH_ERR_INVALID);
	EVP_PKEY_free(other);
	assert_non_null(other = EVP_RSA_gen(1024));
	assert_int_equal(tpm_key_import(ctx, H_TMP, other), TH_ERR_INVALID);
	EVP_PKEY_free(other);
	assert_true((derlen = i2d_PUBKEY(k, &der)) > 0);
	p = der;
	assert_non_null(pubonly = d2i_PUBKEY(NULL, &p, derlen));
	assert_int_equal(tpm_key_import(ctx, H_TMP, pubonly), TH_ERR_INVALID);
	EVP_PKEY_free(pubonly);
	OPENSSL_free(der);
	assert_int_equal(tpm_key_import(ctx, H_AK, k), TH_ERR_INVALID);
	EVP_PKEY_free(k);
}

static void
test_ak(void **state)
{
	struct tpm_key *ak, *key;
	uint8_t dig[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);
	struct buf *a, *s, *p;
	EVP_PKEY *first, *second;

	(void)state;
	/* A rotated AK is another key: the old one cannot be made again. */
	assert_ok(tpm_ak_create(ctx, H_AK));
	assert_ok(tpm_key_load(ctx, H_AK, &ak));
	assert_ok(tpm_key_pubkey(ak, &first));
	tpm_key_free(ak);
	assert_ok(tpm_key_evict(ctx, H_AK));
	assert_ok(tpm_ak_create(ctx, H_AK));
	assert_int_equal(tpm_ak_create(ctx, H_AK), TH_ERR_EXISTS);
	assert_ok(tpm_key_load(ctx, H_AK, &ak));
	assert_ok(tpm_key_pubkey(ak, &second));
	assert_int_not_equal(EVP_PKEY_eq(first, second), 1);
	EVP_PKEY_free(first);
	EVP_PKEY_free(second);
	assert_int_equal(tpm_key_alg(ak), TH_ALG_ES256);
	sha256("x", 1, dig);
	assert_int_equal(tpm_sign(ak, dig, sig, &siglen), TH_ERR_DENIED);
	tpm_key_free(ak);

	/* A signing key does not quote. */
	assert_non_null(a = buf_new());
	assert_non_null(s = buf_new());
	assert_non_null(p = buf_new());
	assert_ok(tpm_key_load(ctx, H_ES256, &key));
	assert_int_equal(tpm_quote(key, "sha256:0", NULL, 0, a, s, p),
	    TH_ERR_DENIED);
	tpm_key_free(key);
	buf_free(a);
	buf_free(s);
	buf_free(p);
}

static void
test_evict(void **state)
{
	struct tpm_key *key = NULL;

	(void)state;
	assert_ok(tpm_key_create(ctx, H_TMP, TH_ALG_ES256));
	assert_ok(tpm_key_evict(ctx, H_TMP));
	assert_int_equal(tpm_key_load(ctx, H_TMP, &key), TH_ERR_NOT_FOUND);
	assert_null(key);
	assert_int_equal(tpm_key_evict(ctx, H_TMP), TH_ERR_NOT_FOUND);
	assert_int_equal(tpm_key_evict(ctx, 0x80000000), TH_ERR_INVALID);
}

/* Duplicates obj to no parent with no wrapper: for a duplicable key whose
 * policy allows it, the result is the private key in the clear. */
static TSS2_RC
dup_attempt(ESYS_TR obj, TPM2B_PRIVATE **dup)
{
	TPMT_SYM_DEF sdef = { .algorithm = TPM2_ALG_NULL };
	TPMT_SYM_DEF_OBJECT sym = { .algorithm = TPM2_ALG_NULL };
	TPM2B_DATA *ekey = NULL;
	TPM2B_ENCRYPTED_SECRET *seed = NULL;
	ESYS_TR sess = ESYS_TR_NONE;
	TSS2_RC rc;

	*dup = NULL;
	assert_rc_ok(Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY,
	    &sdef, TPM2_ALG_SHA256, &sess));
	assert_rc_ok(Esys_PolicyCommandCode(esys, sess, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CC_Duplicate));
	rc = Esys_Duplicate(esys, obj, ESYS_TR_RH_NULL, sess, ESYS_TR_NONE,
	    ESYS_TR_NONE, NULL, &sym, &ekey, dup, &seed);
	assert_rc_ok(Esys_FlushContext(esys, sess));
	Esys_Free(ekey);
	Esys_Free(seed);
	return rc;
}

/* The imported key is not fixedTPM (TPM2_Import forbids it), so check the
 * export path that exists for such keys: TPM2_Duplicate.  A control key
 * with the same attributes but a policy that allows duplication shows the
 * attempt is real: it yields the private key in the clear. */
static void
test_no_export(void **state)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_PUBLIC tmpl = { 0 }, *pub = NULL;
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPMT_SYM_DEF sdef = { .algorithm = TPM2_ALG_NULL };
	TPM2B_DIGEST *policy = NULL;
	TPM2B_PRIVATE *priv = NULL, *dup = NULL;
	TPM2B_SENSITIVE out;
	TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_ECDSA };
	TPMT_TK_HASHCHECK check = {
		.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL,
	};
	TPM2B_DIGEST dig = { .size = TH_DIGEST_LEN };
	TPMT_SIGNATURE *sig = NULL;
	ESYS_TR srk, imp, gen, ak, trial = ESYS_TR_NONE, ctl = ESYS_TR_NONE;
	size_t off = 0;
	TSS2_RC rc;

	(void)state;
	raw_open();
	srk = raw_tr(TPM_SRK_HANDLE);
	imp = raw_tr(H_IMPORT);
	gen = raw_tr(H_RS256);
	ak = raw_tr(H_AK);

	/* What the import left in the TPM: only a public area to read. */
	assert_rc_ok(Esys_ReadPublic(esys, imp, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, &pub, NULL, NULL));
	assert_int_equal(pub->publicArea.authPolicy.size, 0);
	assert_true(pub->publicArea.objectAttributes &
	    TPMA_OBJECT_ADMINWITHPOLICY);
	assert_false(pub->publicArea.objectAttributes &
	    TPMA_OBJECT_ENCRYPTEDDUPLICATION);
	Esys_Free(pub);

	/* Control: an exportable key whose policy allows TPM2_Duplicate. */
	assert_rc_ok(Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_TRIAL,
	    &sdef, TPM2_ALG_SHA256, &trial));
	assert_rc_ok(Esys_PolicyCommandCode(esys, trial, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CC_Duplicate));
	assert_rc_ok(Esys_PolicyGetDigest(esys, trial, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, &policy));
	assert_rc_ok(Esys_FlushContext(esys, trial));
	tmpl.publicArea.type = TPM2_ALG_ECC;
	tmpl.publicArea.nameAlg = TPM2_ALG_SHA256;
	tmpl.publicArea.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT |
	    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SENSITIVEDATAORIGIN;
	tmpl.publicArea.authPolicy = *policy;
	tmpl.publicArea.parameters.eccDetail.symmetric.algorithm =
	    TPM2_ALG_NULL;
	tmpl.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	tmpl.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	tmpl.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	Esys_Free(policy);
	assert_rc_ok(Esys_Create(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &priv, &pub, NULL,
	    NULL, NULL));
	assert_rc_ok(Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, priv, pub, &ctl));
	Esys_Free(priv);
	Esys_Free(pub);
	assert_rc_ok(dup_attempt(ctl, &dup));
	memset(&out, 0, sizeof(out));
	assert_rc_ok(Tss2_MU_TPM2B_SENSITIVE_Unmarshal(dup->buffer, dup->size,
	    &off, &out));
	assert_int_equal(out.sensitiveArea.sensitiveType, TPM2_ALG_ECC);
	assert_int_equal(out.sensitiveArea.sensitive.ecc.size, 32);
	OPENSSL_cleanse(&out, sizeof(out));
	OPENSSL_cleanse(dup, sizeof(*dup));
	Esys_Free(dup);
	assert_rc_ok(Esys_FlushContext(esys, ctl));

	/* The same attempt on our keys. */
	rc = dup_attempt(imp, &dup);
	print_message("# Duplicate(imported): %s\n", Tss2_RC_Decode(rc));
	assert_null(dup);
	assert_int_equal(rc_base(rc), TPM2_RC_POLICY_FAIL);
	/* Also fixedParent, but the empty policy already stops it. */
	rc = dup_attempt(gen, &dup);
	print_message("# Duplicate(created): %s\n", Tss2_RC_Decode(rc));
	assert_null(dup);
	assert_true(rc_base(rc) == TPM2_RC_POLICY_FAIL ||
	    rc_base(rc) == TPM2_RC_ATTRIBUTES);

	/* The TPM itself refuses to sign an outside digest with the AK. */
	scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	memset(dig.buffer, 0x5a, sizeof(dig.buffer));
	dig.size = TH_DIGEST_LEN;
	rc = Esys_Sign(esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
	    &dig, &scheme, &check, &sig);
	print_message("# Sign(AK): %s\n", Tss2_RC_Decode(rc));
	assert_int_equal(rc_base(rc), TPM2_RC_TICKET);
	Esys_Free(sig);

	Esys_TR_Close(esys, &srk);
	Esys_TR_Close(esys, &imp);
	Esys_TR_Close(esys, &gen);
	Esys_TR_Close(esys, &ak);
	raw_close();
}

/* Verifies the marshalled TPMT_SIGNATURE over attest with the AK. */
static void
verify_quote(EVP_PKEY *akpub, struct buf *attest, struct buf *sig)
{
	TPMT_SIGNATURE s;
	uint8_t dig[TH_DIGEST_LEN], rs[64];
	size_t off = 0;

	memset(&s, 0, sizeof(s));
	assert_rc_ok(Tss2_MU_TPMT_SIGNATURE_Unmarshal(buf_ptr(sig),
	    buf_len(sig), &off, &s));
	assert_int_equal(off, buf_len(sig));
	assert_int_equal(s.sigAlg, TPM2_ALG_ECDSA);
	assert_int_equal(s.signature.ecdsa.signatureR.size, 32);
	assert_int_equal(s.signature.ecdsa.signatureS.size, 32);
	memcpy(rs, s.signature.ecdsa.signatureR.buffer, 32);
	memcpy(rs + 32, s.signature.ecdsa.signatureS.buffer, 32);
	sha256(buf_ptr(attest), buf_len(attest), dig);
	assert_true(verify(akpub, TH_ALG_ES256, dig, rs, sizeof(rs)));
	dig[5] ^= 0x10;
	assert_false(verify(akpub, TH_ALG_ES256, dig, rs, sizeof(rs)));
}

static void
test_quote(void **state)
{
	static const char *bad[] = {
		"", "sha256", "sha256:", "sha256:0-7", "sha256:1,", "sha256:,1",
		"sha256:24", "sha256:100", "sha256:01", "sha256:1,1",
		"sha256:1;2", "sha256:1 ", "md5:1", "SHA256:1", "sha384:1",
		"sha256:0+sha1:0", "sha256:-1",
	};
	TPML_DIGEST_VALUES ext = { .count = 2 };
	struct tpm_key *ak;
	EVP_PKEY *akpub;
	struct buf *a, *s, *p;
	uint8_t qual[20], big[TPM_QUALIFYING_MAX + 1] = { 0 };
	size_t i;

	(void)state;
	/* Something in a PCR, in both banks. */
	raw_open();
	ext.digests[0].hashAlg = TPM2_ALG_SHA256;
	memset(&ext.digests[0].digest, 0x11, 32);
	ext.digests[1].hashAlg = TPM2_ALG_SHA1;
	memset(&ext.digests[1].digest, 0x22, 20);
	assert_rc_ok(Esys_PCR_Extend(esys, ESYS_TR_PCR16, ESYS_TR_PASSWORD,
	    ESYS_TR_NONE, ESYS_TR_NONE, &ext));
	raw_close();

	assert_non_null(a = buf_new());
	assert_non_null(s = buf_new());
	assert_non_null(p = buf_new());
	assert_ok(tpm_key_load(ctx, H_AK, &ak));
	assert_ok(tpm_key_pubkey(ak, &akpub));
	assert_int_equal(RAND_bytes(qual, sizeof(qual)), 1);

	/* 18 PCRs: PCR_Read must be called three times. */
	assert_ok(tpm_quote(ak, PCRSEL_QUOTE, qual, sizeof(qual), a, s, p));
	assert_int_equal(buf_len(p), sizeof(TPML_PCR_SELECTION) + 4 +
	    3 * sizeof(TPML_DIGEST));
	verify_quote(akpub, a, s);
	write_file("attest.bin", buf_ptr(a), buf_len(a));
	write_file("sig.bin", buf_ptr(s), buf_len(s));
	write_file("pcrs.bin", buf_ptr(p), buf_len(p));
	write_hex("qual.hex", qual, sizeof(qual));
	write_pubkey("ak.pem", akpub);

	buf_reset(a);
	buf_reset(s);
	buf_reset(p);
	assert_ok(tpm_quote(ak, PCRSEL_SHA1, qual, sizeof(qual), a, s, p));
	assert_int_equal(buf_len(p), sizeof(TPML_PCR_SELECTION) + 4 +
	    sizeof(TPML_DIGEST));
	verify_quote(akpub, a, s);
	write_file("attest-sha1.bin", buf_ptr(a), buf_len(a));
	write_file("sig-sha1.bin", buf_ptr(s), buf_len(s));
	write_file("pcrs-sha1.bin", buf_ptr(p), buf_len(p));

	buf_reset(a);
	buf_reset(s);
	buf_reset(p);
	assert_ok(tpm_quote(ak, "sha256:0", NULL, 0, a, s, p));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tpm_quote(ak, bad[i], qual, sizeof(qual), a, s, p) !=
		    TH_ERR_INVALID)
			fail_msg("PCR selection \"%s\" accepted", bad[i]);
	}
	assert_int_equal(tpm_quote(ak, NULL, qual, sizeof(qual), a, s, p),
	    TH_ERR_INVALID);
	assert_int_equal(tpm_quote(ak, "sha256:0", big, sizeof(big), a, s, p),
	    TH_ERR_TOO_LONG);
	EVP_PKEY_free(akpub);
	tpm_key_free(ak);
	buf_free(a);
	buf_free(s);
	buf_free(p);
}

static void
test_ek_cert(void **state)
{
	struct buf *der;
	X509 *x;
	EVP_PKEY *certkey;
	BIGNUM *n = NULL, *tpmn;
	TPM2B_PUBLIC *pub = NULL;
	const uint8_t *p;
	ESYS_TR ek;
	int exists;

	(void)state;
	assert_non_null(der = buf_new());
	assert_ok(tpm_ek_cert(ctx, der));
	p = buf_ptr(der);
	assert_non_null(x = d2i_X509(NULL, &p, (long)buf_len(der)));
	assert_ptr_equal(p, buf_ptr(der) + buf_len(der));	/* no trailer */
	write_file("ek.der", buf_ptr(der), buf_len(der));
	assert_non_null(certkey = X509_get0_pubkey(x));
	assert_true(EVP_PKEY_is_a(certkey, "RSA"));
	assert_int_equal(EVP_PKEY_get_bits(certkey), 2048);
	assert_int_equal(EVP_PKEY_get_bn_param(certkey, OSSL_PKEY_PARAM_RSA_N,
	    &n), 1);
	buf_free(der);

	/* The certificate is for the EK that swtpm_setup persisted. */
	raw_open();
	ek = ESYS_TR_NONE;
	exists = Esys_TR_FromTPMPublic(esys, H_EK_RSA, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, &ek) == TSS2_RC_SUCCESS;
	if (exists) {
		assert_rc_ok(Esys_ReadPublic(esys, ek, ESYS_TR_NONE,
		    ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL));
		assert_non_null(tpmn = BN_bin2bn(pub->publicArea.unique.rsa.buffer,
		    pub->publicArea.unique.rsa.size, NULL));
		assert_int_equal(BN_cmp(tpmn, n), 0);
		BN_free(tpmn);
		Esys_Free(pub);
		Esys_TR_Close(esys, &ek);
	} else
		print_message("# no EK at 0x%08x to compare\n", H_EK_RSA);
	raw_close();
	BN_free(n);
	X509_free(x);
}

/* Recovery mode.  The shell script and this process take turns through
 * marker files in OUTDIR: rec.ready (we signed), rec.killed (swtpm is
 * dead), rec.down (we saw TH_ERR_UNAVAILABLE), rec.restarted (swtpm is
 * back, and the key at H_REC2 has been replaced by a different one). */

static void
touch(const char *name)
{
	write_file(name, "", 0);
}

static void
wait_for(const char *name)
{
	char path[1024];
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int i;

	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	for (i = 0; i < 400; i++) {		/* 20 s */
		if (access(path, F_OK) == 0)
			return;
		nanosleep(&ts, NULL);
	}
	fail_msg("timed out waiting for %s", path);
}

static void
test_recovery(void **state)
{
	struct tpm_key *key, *key2;
	EVP_PKEY *pub;
	uint8_t dig[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);
	int r;

	(void)state;
	evict_if_present(H_REC);
	evict_if_present(H_REC2);
	assert_ok(tpm_key_create(ctx, H_REC, TH_ALG_ES256));
	assert_ok(tpm_key_create(ctx, H_REC2, TH_ALG_ES256));
	assert_ok(tpm_key_load(ctx, H_REC, &key));
	assert_ok(tpm_key_load(ctx, H_REC2, &key2));
	assert_ok(tpm_key_pubkey(key, &pub));
	sha256("before", 6, dig);
	assert_ok(tpm_sign(key, dig, sig, &siglen));
	siglen = sizeof(sig);
	assert_ok(tpm_sign(key2, dig, sig, &siglen));
	touch("rec.ready");

	wait_for("rec.killed");
	siglen = sizeof(sig);
	r = tpm_sign(key, dig, sig, &siglen);
	print_message("# sign, TPM gone: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_UNAVAILABLE);
	r = tpm_sign(key, dig, sig, &siglen);
	print_message("# sign again: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_UNAVAILABLE);
	r = tpm_health(ctx);
	assert_int_equal(r, TH_ERR_UNAVAILABLE);
	touch("rec.down");

	wait_for("rec.restarted");
	/* The first call after the restart must work: reconnect and
	 * re-resolve the key by itself. */
	sha256("after", 5, dig);
	siglen = sizeof(sig);
	assert_ok(tpm_sign(key, dig, sig, &siglen));
	assert_true(verify(pub, TH_ALG_ES256, dig, sig, siglen));
	assert_ok(tpm_health(ctx));
	/* Another key now sits at H_REC2: the key's health says so (the
	 * TPM answering is not enough), and it never signs. */
	assert_ok(tpm_key_health(key));
	r = tpm_key_health(key2);
	print_message("# health of the replaced key: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_NOT_FOUND);
	siglen = sizeof(sig);
	r = tpm_sign(key2, dig, sig, &siglen);
	print_message("# sign with replaced key: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_NOT_FOUND);
	assert_ok(tpm_key_evict(ctx, H_REC2));
	/* Still holding a key whose object was evicted: refused. */
	assert_ok(tpm_key_evict(ctx, H_REC));
	siglen = sizeof(sig);
	assert_int_equal(tpm_sign(key, dig, sig, &siglen), TH_ERR_NOT_FOUND);
	EVP_PKEY_free(pub);
	tpm_key_free(key);
	tpm_key_free(key2);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest suite[] = {
		cmocka_unit_test_teardown(test_clean_slate, no_leftovers),
		cmocka_unit_test_teardown(test_es256, no_leftovers),
		cmocka_unit_test_teardown(test_rs256, no_leftovers),
		cmocka_unit_test_teardown(test_create_refuses, no_leftovers),
		cmocka_unit_test_teardown(test_import, no_leftovers),
		cmocka_unit_test_teardown(test_ak, no_leftovers),
		cmocka_unit_test_teardown(test_evict, no_leftovers),
		cmocka_unit_test_teardown(test_no_export, no_leftovers),
		cmocka_unit_test_teardown(test_quote, no_leftovers),
		cmocka_unit_test_teardown(test_ek_cert, no_leftovers),
	};
	const struct CMUnitTest recovery[] = {
		cmocka_unit_test_teardown(test_recovery, no_leftovers),
	};

	if (argc < 3 || argc > 4 ||
	    (argc == 4 && strcmp(argv[3], "recovery") != 0)) {
		fprintf(stderr, "usage: test_tpm TCTI OUTDIR [recovery]\n");
		return 2;
	}
	tcti = argv[1];
	outdir = argv[2];
	/* A write to the socket of a killed swtpm must fail, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (argc == 4)
		return cmocka_run_group_tests_name("tpm recovery", recovery,
		    group_setup, group_teardown);
	return cmocka_run_group_tests_name("tpm", suite, group_setup,
	    group_teardown);
}
