/* TPM 2.0 backend over tpm2-tss ESYS; the contract is in tpm.h.
 *
 * Connection recovery: every public entry point first calls tpm_ready(),
 * which (re)builds the TCTI and ESYS contexts when the last command failed
 * below the TPM (socket closed, TPM process restarted).  Each (re)connect
 * bumps ctx->gen.  A loaded key remembers its persistent handle, the gen its
 * ESYS_TR belongs to and the key's TPM name; key_ready() re-resolves the
 * handle when the gens differ and refuses the key if the name changed, so a
 * different key put at the same handle meanwhile is never used by accident.
 *
 * ESYS (3.2) hands out one shared ESYS_TR per TPM handle: resolving a handle
 * that a loaded key uses returns that key's ESYS_TR, and closing it would
 * pull it from under the key.  The context therefore keeps its loaded keys in
 * a list, and trrelease() leaves an ESYS_TR open while a key holds it.
 *
 * Not thread-safe: one tpm_ctx (and its keys) per thread. */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "err.h"
#include "tpm.h"

/* TPM2_TRANSIENT_FIRST shifts a signed int into the sign bit (UBSan). */
#define TRANSIENT_FIRST		0x80000000u

#define TCTI_CONF_MAX		1024
#define NV_CHUNK_DEFAULT	512	/* if TPM_PT_NV_BUFFER_MAX is unknown */
#define EK_CERT_MAX		4096
#define QUOTE_TRIES		3	/* PCRs may move between Quote and PCR_Read */
#define PCR_COUNT		24
#define PCR_READS_MAX		((PCR_COUNT + 7) / 8) /* PCR_Read gives <= 8 */
#define P256_LEN		32
#define RSA2048_LEN		256

/* TCG EK certificate NV indices: RSA 2048, ECC P-256, ECC P-384 (the last
 * is where swtpm_setup puts its ECC EK certificate). */
static const uint32_t ek_cert_nv[] = { 0x01c00002, 0x01c0000a, 0x01c00016 };

struct tpm_ctx {
	char			*conf;
	TSS2_TCTI_CONTEXT	*tcti;
	ESYS_CONTEXT		*esys;		/* NULL while disconnected */
	int			 broken;	/* reconnect before next use */
	unsigned		 gen;		/* bumped on every connect */
	struct tpm_key		*keys;		/* loaded, not yet freed */
};

struct tpm_key {
	struct tpm_ctx	*ctx;
	struct tpm_key	*next;
	uint32_t	 handle;
	int		 evicted;
	ESYS_TR		 tr;		/* valid while gen == ctx->gen */
	unsigned	 gen;
	TPM2B_NAME	 name;
	enum th_alg	 alg;
	int		 restricted;
	TPMT_SIG_SCHEME	 scheme;
	EVP_PKEY	*pub;
};

/* Error handling. */

static int
rc_from_tpm(TSS2_RC rc)
{
	TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;

	return layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER;
}

/* The response code without handle/parameter/session numbers, for
 * comparison with TPM2_RC_* constants. */
static TSS2_RC
rc_base(TSS2_RC rc)
{
	if (!rc_from_tpm(rc))
		return rc;
	rc &= ~TSS2_RC_LAYER_MASK;
	return (rc & TPM2_RC_FMT1) ? rc & (TPM2_RC_FMT1 | 0x3f) : rc & 0xfff;
}

/* Errors that mean the TPM could not be reached or did not answer sanely. */
static int
rc_is_link(TSS2_RC rc)
{
	switch (rc & ~TSS2_RC_LAYER_MASK) {
	case TSS2_BASE_RC_IO_ERROR:
	case TSS2_BASE_RC_NO_CONNECTION:
	case TSS2_BASE_RC_TRY_AGAIN:
	case TSS2_BASE_RC_MALFORMED_RESPONSE:
	case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
	case TSS2_BASE_RC_BAD_SEQUENCE:
		return 1;
	}
	return (rc & TSS2_RC_LAYER_MASK) == TSS2_TCTI_RC_LAYER;
}

/* Records a failed TSS call.  After any error from below the TPM, ESYS may
 * be left in an unusable state (it refuses further commands after a
 * transport error), so the next call starts a fresh connection. */
static int
tss_fail(struct tpm_ctx *ctx, TSS2_RC rc, const char *what)
{
	if (rc_from_tpm(rc))
		return th_fail(TH_ERR_TPM, "%s: %s", what, Tss2_RC_Decode(rc));
	ctx->broken = 1;
	return th_fail(rc_is_link(rc) ? TH_ERR_UNAVAILABLE : TH_ERR_TPM,
	    "%s: %s", what, Tss2_RC_Decode(rc));
}

/* Connection. */

static void
disconnect(struct tpm_ctx *ctx)
{
	if (ctx->esys != NULL)
		Esys_Finalize(&ctx->esys);
	if (ctx->tcti != NULL)
		Tss2_TctiLdr_Finalize(&ctx->tcti);
	ctx->esys = NULL;
	ctx->tcti = NULL;
	ctx->broken = 0;
}

static int
tpm_ready(struct tpm_ctx *ctx)
{
	TSS2_RC rc;

	if (ctx->broken)
		disconnect(ctx);
	if (ctx->esys != NULL)
		return 0;
	if ((rc = Tss2_TctiLdr_Initialize(ctx->conf, &ctx->tcti)) !=
	    TSS2_RC_SUCCESS) {
		ctx->tcti = NULL;
		return th_fail(TH_ERR_UNAVAILABLE, "TCTI \"%s\": %s",
		    ctx->conf, Tss2_RC_Decode(rc));
	}
	if ((rc = Esys_Initialize(&ctx->esys, ctx->tcti, NULL)) !=
	    TSS2_RC_SUCCESS) {
		ctx->esys = NULL;
		disconnect(ctx);
		return th_fail(TH_ERR_UNAVAILABLE, "Esys_Initialize: %s",
		    Tss2_RC_Decode(rc));
	}
	ctx->gen++;
	return 0;
}

/* Flushes a transient object or session; a failure leaves nothing to undo
 * on our side but may mean the link is gone. */
static void
flush(struct tpm_ctx *ctx, ESYS_TR *tr)
{
	TSS2_RC rc;

	if (*tr == ESYS_TR_NONE || ctx->esys == NULL)
		return;
	if ((rc = Esys_FlushContext(ctx->esys, *tr)) != TSS2_RC_SUCCESS) {
		if (!rc_from_tpm(rc))
			ctx->broken = 1;
		Esys_TR_Close(ctx->esys, tr);
	}
	*tr = ESYS_TR_NONE;
}

/* Forgets an ESYS_TR of a persistent object or NV index (no TPM command)
 * unless a loaded key other than self still uses it. */
static void
trrelease(struct tpm_ctx *ctx, ESYS_TR *tr, const struct tpm_key *self)
{
	const struct tpm_key *k;

	if (*tr == ESYS_TR_NONE || ctx->esys == NULL) {
		*tr = ESYS_TR_NONE;
		return;
	}
	for (k = ctx->keys; k != NULL; k = k->next)
		if (k != self && k->gen == ctx->gen && k->tr == *tr) {
			*tr = ESYS_TR_NONE;
			return;
		}
	Esys_TR_Close(ctx->esys, tr);
	*tr = ESYS_TR_NONE;
}

static void
trclose(struct tpm_ctx *ctx, ESYS_TR *tr)
{
	trrelease(ctx, tr, NULL);
}

static int
handle_exists(struct tpm_ctx *ctx, uint32_t handle, int *exists)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc;

	rc = Esys_GetCapability(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, TPM2_CAP_HANDLES, handle, 1, &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ctx, rc, "Esys_GetCapability(handles)");
	*exists = cap->data.handles.count > 0 &&
	    cap->data.handles.handle[0] == handle;
	Esys_Free(cap);
	return 0;
}

/* Asking first keeps ESYS from logging an error for a handle that is
 * simply absent. */
static int
resolve(struct tpm_ctx *ctx, uint32_t handle, ESYS_TR *tr)
{
	TSS2_RC rc;
	int r, exists;

	*tr = ESYS_TR_NONE;
	if ((r = handle_exists(ctx, handle, &exists)) != 0)
		return r;
	if (!exists)
		return th_fail(TH_ERR_NOT_FOUND, "nothing at TPM handle 0x%08x",
		    handle);
	rc = Esys_TR_FromTPMPublic(ctx->esys, handle, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, tr);
	if (rc == TSS2_RC_SUCCESS)
		return 0;
	*tr = ESYS_TR_NONE;
	if (rc_base(rc) == TPM2_RC_HANDLE)
		return th_fail(TH_ERR_NOT_FOUND, "nothing at TPM handle 0x%08x",
		    handle);
	return tss_fail(ctx, rc, "Esys_TR_FromTPMPublic");
}

static int
check_free(struct tpm_ctx *ctx, uint32_t handle)
{
	int r, exists;

	if ((r = handle_exists(ctx, handle, &exists)) != 0)
		return r;
	if (exists)
		return th_fail(TH_ERR_EXISTS, "TPM handle 0x%08x is occupied",
		    handle);
	return 0;
}

static int
check_range(uint32_t handle, uint32_t first, uint32_t last)
{
	if (handle < first || handle > last || handle == TPM_SRK_HANDLE)
		return th_fail(TH_ERR_INVALID, "TPM handle 0x%08x not in "
		    "0x%08x-0x%08x", handle, first, last);
	return 0;
}

/* Makes obj persistent at handle; *out (if not NULL) gets its ESYS_TR. */
static int
persist(struct tpm_ctx *ctx, ESYS_TR obj, uint32_t handle, ESYS_TR *out)
{
	ESYS_TR ptr = ESYS_TR_NONE;
	TSS2_RC rc;

	rc = Esys_EvictControl(ctx->esys, ESYS_TR_RH_OWNER, obj,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, handle, &ptr);
	if (rc != TSS2_RC_SUCCESS) {
		if (rc_base(rc) == TPM2_RC_NV_DEFINED)
			return th_fail(TH_ERR_EXISTS,
			    "TPM handle 0x%08x is occupied", handle);
		return tss_fail(ctx, rc, "Esys_EvictControl");
	}
	if (out != NULL)
		*out = ptr;
	else
		trclose(ctx, &ptr);
	return 0;
}

/* Templates. */

/* TCG storage primary template, ECC NIST P-256 (TCG EK Credential Profile
 * 2.0, template L-2 attributes for an SRK): the same SRK every time. */
static void
tmpl_srk(TPM2B_PUBLIC *t)
{
	TPMT_PUBLIC *p = &t->publicArea;

	memset(t, 0, sizeof(*t));
	p->type = TPM2_ALG_ECC;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
	    TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
	p->parameters.eccDetail.symmetric.keyBits.aes = 128;
	p->parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	p->unique.ecc.x.size = P256_LEN;
	p->unique.ecc.y.size = P256_LEN;
}

/* Signing keys.  The key's auth value is empty, so dictionary-attack
 * protection would guard nothing and only let a stray client lock the key
 * out: noDA. */
static int
tmpl_sign(TPM2B_PUBLIC *t, enum th_alg alg, TPMA_OBJECT attrs)
{
	TPMT_PUBLIC *p = &t->publicArea;

	memset(t, 0, sizeof(*t));
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = attrs | TPMA_OBJECT_SIGN_ENCRYPT |
	    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA;
	switch (alg) {
	case TH_ALG_ES256:
		p->type = TPM2_ALG_ECC;
		p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
		p->parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
		p->parameters.eccDetail.scheme.details.ecdsa.hashAlg =
		    TPM2_ALG_SHA256;
		p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
		p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
		return 0;
	case TH_ALG_RS256:
		p->type = TPM2_ALG_RSA;
		p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
		p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
		p->parameters.rsaDetail.scheme.details.rsassa.hashAlg =
		    TPM2_ALG_SHA256;
		p->parameters.rsaDetail.keyBits = 2048;
		p->parameters.rsaDetail.exponent = 0;	/* 65537 */
		return 0;
	default:
		return th_fail(TH_ERR_INVALID, "TPM keys are ES256 or RS256");
	}
}

/* The SRK, created and persisted on first use. */
static int
srk_get(struct tpm_ctx *ctx, ESYS_TR *srk)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	ESYS_TR tr = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	*srk = ESYS_TR_NONE;
	if ((r = resolve(ctx, TPM_SRK_HANDLE, srk)) != TH_ERR_NOT_FOUND)
		return r;
	tmpl_srk(&tmpl);
	rc = Esys_CreatePrimary(ctx->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
	    ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &tr,
	    NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ctx, rc, "Esys_CreatePrimary(SRK)");
	r = persist(ctx, tr, TPM_SRK_HANDLE, srk);
	flush(ctx, &tr);
	return r;
}

/* Public keys. */

static int
pub_to_evp(const TPMT_PUBLIC *p, EVP_PKEY **out)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t point[1 + 2 * P256_LEN];
	const TPMS_ECC_POINT *q = &p->unique.ecc;
	const char *type;
	int r = TH_ERR_CRYPTO;

	*out = NULL;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		goto out;
	if (p->type == TPM2_ALG_ECC) {
		if (q->x.size > P256_LEN || q->y.size > P256_LEN) {
			r = th_fail(TH_ERR_INVALID, "bad P-256 point");
			goto out;
		}
		memset(point, 0, sizeof(point));
		point[0] = 0x04;	/* uncompressed */
		memcpy(point + 1 + P256_LEN - q->x.size, q->x.buffer,
		    q->x.size);
		memcpy(point + 1 + 2 * P256_LEN - q->y.size, q->y.buffer,
		    q->y.size);
		if (!OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld,
		    OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
			goto out;
		type = "EC";
	} else {
		n = BN_bin2bn(p->unique.rsa.buffer, p->unique.rsa.size, NULL);
		e = BN_new();
		if (n == NULL || e == NULL || !BN_set_word(e,
		    p->parameters.rsaDetail.exponent ?
		    p->parameters.rsaDetail.exponent : 65537) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
			goto out;
		type = "RSA";
	}
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	r = 0;
 out:
	if (r == TH_ERR_CRYPTO)
		th_fail(r, "cannot convert the TPM public key for OpenSSL");
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return r;
}

/* Accepts only what tpm_sign and tpm_quote can use: sign-only P-256
 * ECDSA/SHA-256 or RSA-2048 RSASSA/SHA-256 (or a NULL scheme, which
 * tpm_sign then supplies). */
static int
key_from_public(struct tpm_key *key, const TPMT_PUBLIC *p)
{
	const TPMT_ECC_SCHEME *es = &p->parameters.eccDetail.scheme;
	const TPMT_RSA_SCHEME *rs = &p->parameters.rsaDetail.scheme;
	TPMA_OBJECT a = p->objectAttributes;

	if (!(a & TPMA_OBJECT_SIGN_ENCRYPT) || (a & TPMA_OBJECT_DECRYPT))
		return th_fail(TH_ERR_INVALID, "TPM object 0x%08x is not a "
		    "signing key", key->handle);
	key->restricted = (a & TPMA_OBJECT_RESTRICTED) != 0;
	if (p->type == TPM2_ALG_ECC &&
	    p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256 &&
	    (es->scheme == TPM2_ALG_NULL || (es->scheme == TPM2_ALG_ECDSA &&
	    es->details.ecdsa.hashAlg == TPM2_ALG_SHA256))) {
		key->alg = TH_ALG_ES256;
		key->scheme.scheme = TPM2_ALG_ECDSA;
		key->scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
	} else if (p->type == TPM2_ALG_RSA &&
	    p->parameters.rsaDetail.keyBits == 2048 &&
	    p->unique.rsa.size == RSA2048_LEN &&
	    (rs->scheme == TPM2_ALG_NULL || (rs->scheme == TPM2_ALG_RSASSA &&
	    rs->details.rsassa.hashAlg == TPM2_ALG_SHA256))) {
		key->alg = TH_ALG_RS256;
		key->scheme.scheme = TPM2_ALG_RSASSA;
		key->scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
	} else
		return th_fail(TH_ERR_INVALID, "TPM key 0x%08x is neither "
		    "ES256 nor RS256", key->handle);
	return pub_to_evp(p, &key->pub);
}

/* Makes key->tr valid on the current connection. */
static int
key_ready(struct tpm_key *key)
{
	struct tpm_ctx *ctx = key->ctx;
	TPM2B_NAME *name = NULL;
	ESYS_TR tr = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if (key->evicted)
		return th_fail(TH_ERR_NOT_FOUND, "TPM key 0x%08x was evicted",
		    key->handle);
	if ((r = tpm_ready(ctx)) != 0)
		return r;
	if (key->gen == ctx->gen)
		return 0;
	if ((r = resolve(ctx, key->handle, &tr)) != 0)
		goto out;
	if ((rc = Esys_TR_GetName(ctx->esys, tr, &name)) != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_TR_GetName");
		goto out;
	}
	if (name->size != key->name.size ||
	    CRYPTO_memcmp(name->name, key->name.name, name->size) != 0) {
		r = th_fail(TH_ERR_NOT_FOUND, "TPM key 0x%08x was replaced by "
		    "another object", key->handle);
		goto out;
	}
	key->tr = tr;
	key->gen = ctx->gen;
	tr = ESYS_TR_NONE;
 out:
	trrelease(ctx, &tr, key);
	Esys_Free(name);
	return r;
}

/* Public API. */

int
tpm_open(const char *tcti, struct tpm_ctx **out)
{
	struct tpm_ctx *ctx;
	int r;

	*out = NULL;
	if (tcti == NULL || strnlen(tcti, TCTI_CONF_MAX) == TCTI_CONF_MAX)
		return th_fail(TH_ERR_CONFIG, "bad TCTI string");
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL ||
	    (ctx->conf = strdup(tcti)) == NULL) {
		free(ctx);
		return TH_ERR_ALLOC;
	}
	if ((r = tpm_ready(ctx)) != 0) {
		tpm_close(ctx);
		return r;
	}
	*out = ctx;
	return 0;
}

void
tpm_close(struct tpm_ctx *ctx)
{
	if (ctx == NULL)
		return;
	disconnect(ctx);
	free(ctx->conf);
	free(ctx);
}

int
tpm_health(struct tpm_ctx *ctx)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc;
	int r;

	if ((r = tpm_ready(ctx)) != 0)
		return r;
	rc = Esys_GetCapability(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_MANUFACTURER, 1,
	    &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		r = tss_fail(ctx, rc, "Esys_GetCapability(manufacturer)");
	Esys_Free(cap);
	return r;
}

int
tpm_key_health(struct tpm_key *key)
{
	int r;

	if ((r = tpm_health(key->ctx)) != 0)
		return r;
	return key_ready(key);
}

static int
count_handles(struct tpm_ctx *ctx, uint32_t first, uint32_t *n)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	TSS2_RC rc;

	rc = Esys_GetCapability(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES,
	    &more, &cap);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ctx, rc, "Esys_GetCapability(handles)");
	/* Loaded policy sessions come back from the loaded-session query
	 * with their own handle type (0x03): count without filtering. */
	*n += cap->data.handles.count;
	Esys_Free(cap);
	return 0;
}

int
tpm_loaded_handles(struct tpm_ctx *ctx, uint32_t *objects, uint32_t *sessions)
{
	int r;

	*objects = *sessions = 0;
	if ((r = tpm_ready(ctx)) != 0 ||
	    (r = count_handles(ctx, TRANSIENT_FIRST, objects)) != 0 ||
	    (r = count_handles(ctx, TPM2_LOADED_SESSION_FIRST, sessions)) != 0 ||
	    (r = count_handles(ctx, TPM2_ACTIVE_SESSION_FIRST, sessions)) != 0)
		return r;
	return 0;
}

int
tpm_key_create(struct tpm_ctx *ctx, uint32_t handle, enum th_alg alg)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	ESYS_TR srk = ESYS_TR_NONE, obj = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if ((r = check_range(handle, TPM_OWNER_PERSIST_FIRST,
	    TPM_OWNER_PERSIST_LAST)) != 0 ||
	    (r = tmpl_sign(&tmpl, alg, TPMA_OBJECT_FIXEDTPM |
	    TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN)) != 0 ||
	    (r = tpm_ready(ctx)) != 0 ||
	    (r = check_free(ctx, handle)) != 0 ||
	    (r = srk_get(ctx, &srk)) != 0)
		goto out;
	rc = Esys_Create(ctx->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, &sens, &tmpl, &outside, &pcrs, &priv, &pub,
	    NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_Create");
		goto out;
	}
	rc = Esys_Load(ctx->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, priv, pub, &obj);
	if (rc != TSS2_RC_SUCCESS) {
		obj = ESYS_TR_NONE;
		r = tss_fail(ctx, rc, "Esys_Load");
		goto out;
	}
	r = persist(ctx, obj, handle, NULL);
 out:
	flush(ctx, &obj);
	trclose(ctx, &srk);
	Esys_Free(priv);
	Esys_Free(pub);
	return r;
}

/* TPM2_Import only accepts objects with fixedTPM and fixedParent CLEAR (they
 * came from elsewhere, so they are by definition duplicable), so the
 * imported key cannot carry those attributes.  What keeps it inside the TPM
 * instead: TPM2_Duplicate needs the DUP role, which can only be granted by a
 * policy session matching the object's authPolicy, and the authPolicy is
 * empty, which no policy session digest ever equals; adminWithPolicy SET
 * puts ObjectChangeAuth and Certify behind that same impossible policy.  The
 * TPM stores only the sensitive area wrapped by the SRK (which is
 * fixedTPM), so the key cannot be read back out in the clear.
 *
 * No outer or inner wrapper (empty inSymSeed, symmetricAlg NULL, allowed
 * because encryptedDuplication is CLEAR): the key is already in this
 * process's memory, and the duplicate is then just a marshalled
 * TPM2B_SENSITIVE.  XXX The private prime crosses the TPM bus in the clear
 * once; a salted session with parameter encryption would hide it from a bus
 * sniffer.  XXX We wipe our copies; the SAPI command buffer inside ESYS keeps
 * the Import command until the following (longer) Load command overwrites
 * it, and ESYS offers no call to wipe it. */
int
tpm_key_import(struct tpm_ctx *ctx, uint32_t handle, EVP_PKEY *priv)
{
	TPM2B_PUBLIC pub;
	TPM2B_SENSITIVE sens;
	TPM2B_PRIVATE dup;
	TPM2B_PRIVATE *outpriv = NULL;
	TPM2B_DATA enckey = { 0 };
	TPM2B_ENCRYPTED_SECRET seed = { 0 };
	TPMT_SYM_DEF_OBJECT sym = { .algorithm = TPM2_ALG_NULL };
	TPMT_PUBLIC *p = &pub.publicArea;
	TPMT_SENSITIVE *s = &sens.sensitiveArea;
	BIGNUM *n = NULL, *e = NULL, *prime = NULL;
	ESYS_TR srk = ESYS_TR_NONE, obj = ESYS_TR_NONE;
	BN_ULONG ew;
	size_t off = 0;
	TSS2_RC rc;
	int r;

	memset(&sens, 0, sizeof(sens));
	memset(&dup, 0, sizeof(dup));
	if ((r = check_range(handle, TPM_OWNER_PERSIST_FIRST,
	    TPM_OWNER_PERSIST_LAST)) != 0)
		goto out;
	if (priv == NULL || !EVP_PKEY_is_a(priv, "RSA") ||
	    EVP_PKEY_get_bits(priv) != 2048) {
		r = th_fail(TH_ERR_INVALID, "TPM import needs an RSA-2048 key");
		goto out;
	}
	if (!EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_RSA_N, &n) ||
	    !EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_RSA_E, &e) ||
	    !EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_RSA_FACTOR1, &prime)) {
		r = th_fail(TH_ERR_INVALID, "TPM import needs the private key");
		goto out;
	}
	ew = BN_get_word(e);
	if (BN_num_bytes(n) != RSA2048_LEN ||
	    BN_num_bytes(prime) > RSA2048_LEN / 2 ||
	    ew > UINT32_MAX || ew < 3 || (ew & 1) == 0) {
		r = th_fail(TH_ERR_INVALID, "unusable RSA key for TPM import");
		goto out;
	}

	if ((r = tmpl_sign(&pub, TH_ALG_RS256,
	    TPMA_OBJECT_ADMINWITHPOLICY)) != 0)
		goto out;
	p->parameters.rsaDetail.exponent = ew == 65537 ? 0 : (UINT32)ew;
	p->unique.rsa.size = RSA2048_LEN;
	s->sensitiveType = TPM2_ALG_RSA;
	s->seedValue.size = P256_LEN;	/* obfuscation value, nameAlg size */
	s->sensitive.rsa.size = RSA2048_LEN / 2;
	if (BN_bn2binpad(n, p->unique.rsa.buffer, RSA2048_LEN) < 0 ||
	    BN_bn2binpad(prime, s->sensitive.rsa.buffer,
	    RSA2048_LEN / 2) < 0 ||
	    RAND_bytes(s->seedValue.buffer, s->seedValue.size) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "preparing the key for TPM import");
		goto out;
	}
	if ((rc = Tss2_MU_TPM2B_SENSITIVE_Marshal(&sens, dup.buffer,
	    sizeof(dup.buffer), &off)) != TSS2_RC_SUCCESS) {
		r = th_fail(TH_ERR_INTERNAL, "marshal sensitive: %s",
		    Tss2_RC_Decode(rc));
		goto out;
	}
	dup.size = (UINT16)off;

	if ((r = tpm_ready(ctx)) != 0 ||
	    (r = check_free(ctx, handle)) != 0 ||
	    (r = srk_get(ctx, &srk)) != 0)
		goto out;
	rc = Esys_Import(ctx->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, &enckey, &pub, &dup, &seed, &sym, &outpriv);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_Import");
		goto out;
	}
	rc = Esys_Load(ctx->esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, outpriv, &pub, &obj);
	if (rc != TSS2_RC_SUCCESS) {
		obj = ESYS_TR_NONE;
		r = tss_fail(ctx, rc, "Esys_Load(imported)");
		goto out;
	}
	r = persist(ctx, obj, handle, NULL);
 out:
	flush(ctx, &obj);
	trclose(ctx, &srk);
	Esys_Free(outpriv);
	OPENSSL_cleanse(&sens, sizeof(sens));
	OPENSSL_cleanse(&dup, sizeof(dup));
	BN_clear_free(prime);
	BN_free(n);
	BN_free(e);
	return r;
}

int
tpm_ak_create(struct tpm_ctx *ctx, uint32_t handle)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_PUBLIC tmpl;
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	ESYS_TR obj = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if ((r = check_range(handle, TPM_EK_PERSIST_FIRST,
	    TPM_EK_PERSIST_LAST)) != 0 ||
	    (r = tmpl_sign(&tmpl, TH_ALG_ES256, TPMA_OBJECT_FIXEDTPM |
	    TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
	    TPMA_OBJECT_RESTRICTED)) != 0 ||
	    (r = tpm_ready(ctx)) != 0 ||
	    (r = check_free(ctx, handle)) != 0)
		return r;
	/* A primary key is a function of the hierarchy's seed and the
	 * template: with a fixed template every keygen made the same AK, so a
	 * rotation changed nothing and anyone with the endorsement hierarchy
	 * could make the destroyed key again, quoting for old logs.  Random
	 * unique bytes, forgotten once it is persisted, make it one of a
	 * kind. */
	tmpl.publicArea.unique.ecc.x.size = 32;
	tmpl.publicArea.unique.ecc.y.size = 32;
	if (RAND_bytes(tmpl.publicArea.unique.ecc.x.buffer, 32) != 1 ||
	    RAND_bytes(tmpl.publicArea.unique.ecc.y.buffer, 32) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "no random bytes for the AK");
		goto out;
	}
	rc = Esys_CreatePrimary(ctx->esys, ESYS_TR_RH_ENDORSEMENT,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
	    &outside, &pcrs, &obj, NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_CreatePrimary(AK)");
		goto out;
	}
	r = persist(ctx, obj, handle, NULL);
	flush(ctx, &obj);
 out:
	OPENSSL_cleanse(&tmpl.publicArea.unique, sizeof(tmpl.publicArea.unique));
	return r;
}

int
tpm_key_evict(struct tpm_ctx *ctx, uint32_t handle)
{
	struct tpm_key *key;
	ESYS_TR tr = ESYS_TR_NONE, none = ESYS_TR_NONE;
	TSS2_RC rc;
	int r;

	if ((handle < TPM_OWNER_PERSIST_FIRST ||
	    handle > TPM_OWNER_PERSIST_LAST) &&
	    (handle < TPM_EK_PERSIST_FIRST || handle > TPM_EK_PERSIST_LAST))
		return th_fail(TH_ERR_INVALID, "0x%08x is not a persistent "
		    "key handle", handle);
	if ((r = tpm_ready(ctx)) != 0 || (r = resolve(ctx, handle, &tr)) != 0)
		return r;
	rc = Esys_EvictControl(ctx->esys, ESYS_TR_RH_OWNER, tr,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, handle, &none);
	if (rc != TSS2_RC_SUCCESS)
		r = tss_fail(ctx, rc, "Esys_EvictControl(evict)");
	else {
		/* Keys still loaded from this handle must not follow it to
		 * whatever is persisted there next. */
		for (key = ctx->keys; key != NULL; key = key->next)
			if (key->handle == handle) {
				key->evicted = 1;
				if (key->gen == ctx->gen && key->tr == tr)
					key->tr = ESYS_TR_NONE;
			}
	}
	trclose(ctx, &none);
	trclose(ctx, &tr);
	return r;
}

int
tpm_key_load(struct tpm_ctx *ctx, uint32_t handle, struct tpm_key **out)
{
	struct tpm_key *key;
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_NAME *name = NULL;
	TSS2_RC rc;
	int r;

	*out = NULL;
	if ((key = calloc(1, sizeof(*key))) == NULL)
		return TH_ERR_ALLOC;
	key->ctx = ctx;
	key->handle = handle;
	key->tr = ESYS_TR_NONE;
	if ((r = tpm_ready(ctx)) != 0 ||
	    (r = resolve(ctx, handle, &key->tr)) != 0)
		goto out;
	key->gen = ctx->gen;
	rc = Esys_ReadPublic(ctx->esys, key->tr, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, &pub, &name, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_ReadPublic");
		goto out;
	}
	if ((r = key_from_public(key, &pub->publicArea)) != 0)
		goto out;
	key->name = *name;
	key->next = ctx->keys;
	ctx->keys = key;
	*out = key;
	key = NULL;
 out:
	tpm_key_free(key);
	Esys_Free(pub);
	Esys_Free(name);
	return r;
}

void
tpm_key_free(struct tpm_key *key)
{
	struct tpm_key **kp;

	if (key == NULL)
		return;
	for (kp = &key->ctx->keys; *kp != NULL; kp = &(*kp)->next)
		if (*kp == key) {
			*kp = key->next;
			break;
		}
	if (key->gen == key->ctx->gen)
		trrelease(key->ctx, &key->tr, key);
	EVP_PKEY_free(key->pub);
	free(key);
}

enum th_alg
tpm_key_alg(const struct tpm_key *key)
{
	return key->alg;
}

int
tpm_key_pubkey(struct tpm_key *key, EVP_PKEY **out)
{
	*out = NULL;
	if (!EVP_PKEY_up_ref(key->pub))
		return th_fail(TH_ERR_CRYPTO, "EVP_PKEY_up_ref");
	*out = key->pub;
	return 0;
}

/* Right-aligns a TPM big-endian integer into a fixed-size field. */
static int
put_fixed(uint8_t *dst, size_t len, const uint8_t *src, size_t srclen)
{
	if (srclen > len)
		return th_fail(TH_ERR_TPM, "TPM signature part too long");
	memset(dst, 0, len - srclen);
	memcpy(dst + len - srclen, src, srclen);
	return 0;
}

int
tpm_sign(struct tpm_key *key, const uint8_t digest[TH_DIGEST_LEN],
    uint8_t *sig, size_t *siglen)
{
	struct tpm_ctx *ctx = key->ctx;
	TPM2B_DIGEST dig = { .size = TH_DIGEST_LEN };
	TPMT_TK_HASHCHECK check = {
		.tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL,
	};
	TPMT_SIGNATURE *s = NULL;
	size_t need = key->alg == TH_ALG_ES256 ? 2 * P256_LEN : RSA2048_LEN;
	TSS2_RC rc;
	int r;

	if (key->restricted)
		return th_fail(TH_ERR_DENIED, "TPM key 0x%08x is an "
		    "attestation key", key->handle);
	if (*siglen < need)
		return th_fail(TH_ERR_TOO_LONG, "signature needs %zu bytes",
		    need);
	if ((r = key_ready(key)) != 0)
		return r;
	memcpy(dig.buffer, digest, TH_DIGEST_LEN);
	rc = Esys_Sign(ctx->esys, key->tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	    ESYS_TR_NONE, &dig, &key->scheme, &check, &s);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_Sign");
		goto out;
	}
	if (key->alg == TH_ALG_ES256 && s->sigAlg == TPM2_ALG_ECDSA) {
		if ((r = put_fixed(sig, P256_LEN,
		    s->signature.ecdsa.signatureR.buffer,
		    s->signature.ecdsa.signatureR.size)) != 0 ||
		    (r = put_fixed(sig + P256_LEN, P256_LEN,
		    s->signature.ecdsa.signatureS.buffer,
		    s->signature.ecdsa.signatureS.size)) != 0)
			goto out;
	} else if (key->alg == TH_ALG_RS256 && s->sigAlg == TPM2_ALG_RSASSA &&
	    s->signature.rsassa.sig.size == RSA2048_LEN) {
		memcpy(sig, s->signature.rsassa.sig.buffer, RSA2048_LEN);
	} else {
		r = th_fail(TH_ERR_TPM, "unexpected TPM signature type 0x%04x",
		    s->sigAlg);
		goto out;
	}
	*siglen = need;
 out:
	Esys_Free(s);
	return r;
}

/* "bank:n,n,..." with bank sha1 or sha256 and distinct PCR numbers 0-23
 * without leading zeros.  Nothing else is accepted. */
static int
pcrsel_parse(const char *str, TPML_PCR_SELECTION *sel)
{
	TPMS_PCR_SELECTION *ps = &sel->pcrSelections[0];
	const char *cp;
	unsigned n;

	memset(sel, 0, sizeof(*sel));
	if (str == NULL || strnlen(str, TPM_PCRSEL_MAX) == TPM_PCRSEL_MAX)
		return th_fail(TH_ERR_INVALID, "bad PCR selection");
	if (strncmp(str, "sha256:", 7) == 0) {
		ps->hash = TPM2_ALG_SHA256;
		cp = str + 7;
	} else if (strncmp(str, "sha1:", 5) == 0) {
		ps->hash = TPM2_ALG_SHA1;
		cp = str + 5;
	} else
		return th_fail(TH_ERR_INVALID, "PCR bank must be sha1 or "
		    "sha256: \"%s\"", str);
	ps->sizeofSelect = PCR_COUNT / 8;
	sel->count = 1;
	for (;;) {
		if (*cp < '0' || *cp > '9')
			goto bad;
		n = (unsigned)(*cp++ - '0');
		if (n != 0 && *cp >= '0' && *cp <= '9')
			n = n * 10 + (unsigned)(*cp++ - '0');
		if (n >= PCR_COUNT || (ps->pcrSelect[n / 8] & (1u << (n % 8))))
			goto bad;
		ps->pcrSelect[n / 8] |= 1u << (n % 8);
		if (*cp == '\0')
			return 0;
		if (*cp++ != ',')
			goto bad;
	}
 bad:
	return th_fail(TH_ERR_INVALID, "bad PCR selection \"%s\"", str);
}

static int
sel_empty(const TPMS_PCR_SELECTION *ps)
{
	unsigned i;

	for (i = 0; i < ps->sizeofSelect; i++)
		if (ps->pcrSelect[i] != 0)
			return 0;
	return 1;
}

/* Reads every PCR in want (one bank); PCR_Read answers at most 8 per call
 * and reports which ones it did. */
static int
pcrs_read(struct tpm_ctx *ctx, const TPML_PCR_SELECTION *want,
    TPML_DIGEST vals[PCR_READS_MAX], UINT32 *nvals)
{
	TPML_PCR_SELECTION left = *want, *got = NULL;
	TPML_DIGEST *d = NULL;
	UINT32 counter;
	TSS2_RC rc;
	unsigned i;
	int r = 0;

	for (*nvals = 0; !sel_empty(&left.pcrSelections[0]); (*nvals)++) {
		if (*nvals == PCR_READS_MAX) {
			r = th_fail(TH_ERR_TPM, "PCR_Read makes no progress");
			break;
		}
		rc = Esys_PCR_Read(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
		    ESYS_TR_NONE, &left, &counter, &got, &d);
		if (rc != TSS2_RC_SUCCESS) {
			r = tss_fail(ctx, rc, "Esys_PCR_Read");
			break;
		}
		if (got->count != 1 || d->count == 0 ||
		    got->pcrSelections[0].hash != left.pcrSelections[0].hash) {
			r = th_fail(TH_ERR_TPM, "TPM has no such PCRs in the "
			    "selected bank");
			break;
		}
		for (i = 0; i < left.pcrSelections[0].sizeofSelect &&
		    i < got->pcrSelections[0].sizeofSelect; i++)
			left.pcrSelections[0].pcrSelect[i] &=
			    ~got->pcrSelections[0].pcrSelect[i];
		vals[*nvals] = *d;
		Esys_Free(got);
		Esys_Free(d);
		got = NULL;
		d = NULL;
	}
	Esys_Free(got);
	Esys_Free(d);
	return r;
}

/* The quote's pcrDigest is the SHA-256 (scheme hash) of the selected PCR
 * values in selection order; checking it here catches a PCR that changed
 * between Quote and PCR_Read. */
static int
pcrs_match(const TPM2B_ATTEST *quoted, const TPM2B_DATA *qual,
    const TPML_DIGEST *vals, UINT32 nvals, int *match)
{
	TPMS_ATTEST a;
	EVP_MD_CTX *md = NULL;
	uint8_t h[TH_DIGEST_LEN];
	size_t off = 0;
	UINT32 i, j;
	int r = 0;

	*match = 0;
	memset(&a, 0, sizeof(a));
	if (Tss2_MU_TPMS_ATTEST_Unmarshal(quoted->attestationData,
	    quoted->size, &off, &a) != TSS2_RC_SUCCESS ||
	    a.magic != TPM2_GENERATED_VALUE || a.type != TPM2_ST_ATTEST_QUOTE ||
	    a.extraData.size != qual->size ||
	    memcmp(a.extraData.buffer, qual->buffer, qual->size) != 0)
		return th_fail(TH_ERR_TPM, "TPM returned a malformed quote");
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		r = th_fail(TH_ERR_CRYPTO, "SHA-256");
		goto out;
	}
	for (i = 0; i < nvals; i++)
		for (j = 0; j < vals[i].count; j++)
			if (!EVP_DigestUpdate(md, vals[i].digests[j].buffer,
			    vals[i].digests[j].size)) {
				r = th_fail(TH_ERR_CRYPTO, "SHA-256");
				goto out;
			}
	if (!EVP_DigestFinal_ex(md, h, NULL)) {
		r = th_fail(TH_ERR_CRYPTO, "SHA-256");
		goto out;
	}
	*match = a.attested.quote.pcrDigest.size == sizeof(h) &&
	    memcmp(a.attested.quote.pcrDigest.buffer, h, sizeof(h)) == 0;
 out:
	EVP_MD_CTX_free(md);
	return r;
}

/* tpm2-tools' "serialized" PCR file is a raw dump of its C structures with
 * the integer fields little-endian: sizeof(TPML_PCR_SELECTION) bytes
 * (padding included), a u32 count, then count * sizeof(TPML_DIGEST).  The
 * layout comes from the tss2 headers both sides compile against. */
static int
pcrs_serialize(struct buf *out, const TPML_PCR_SELECTION *sel,
    const TPML_DIGEST *vals, UINT32 nvals)
{
	TPML_PCR_SELECTION s;
	TPML_DIGEST d;
	uint32_t le;
	UINT32 i, j;
	int r;

	memcpy(&s, sel, sizeof(s));
	for (i = 0; i < s.count; i++)
		s.pcrSelections[i].hash = htole16(s.pcrSelections[i].hash);
	s.count = htole32(s.count);
	le = htole32(nvals);
	if ((r = buf_put(out, &s, sizeof(s))) != 0 ||
	    (r = buf_put(out, &le, sizeof(le))) != 0)
		return r;
	for (i = 0; i < nvals; i++) {
		memcpy(&d, &vals[i], sizeof(d));
		for (j = 0; j < d.count; j++)
			d.digests[j].size = htole16(d.digests[j].size);
		d.count = htole32(d.count);
		if ((r = buf_put(out, &d, sizeof(d))) != 0)
			return r;
	}
	return 0;
}

int
tpm_quote(struct tpm_key *ak, const char *pcrsel,
    const uint8_t *qual, size_t qual_len,
    struct buf *attest, struct buf *sig, struct buf *pcrs)
{
	struct tpm_ctx *ctx = ak->ctx;
	TPML_PCR_SELECTION sel;
	TPM2B_DATA q = { 0 };
	TPML_DIGEST vals[PCR_READS_MAX];
	UINT32 nvals = 0;
	TPM2B_ATTEST *quoted = NULL;
	TPMT_SIGNATURE *s = NULL;
	uint8_t sigbuf[sizeof(TPMT_SIGNATURE)];
	size_t off = 0;
	TSS2_RC rc;
	int r, try, match = 0;

	if (!ak->restricted || ak->alg != TH_ALG_ES256)
		return th_fail(TH_ERR_DENIED, "TPM key 0x%08x is not an "
		    "attestation key", ak->handle);
	if (qual_len > TPM_QUALIFYING_MAX || (qual_len > 0 && qual == NULL))
		return th_fail(TH_ERR_TOO_LONG, "qualifying data over %d bytes",
		    TPM_QUALIFYING_MAX);
	if ((r = pcrsel_parse(pcrsel, &sel)) != 0)
		return r;
	memset(vals, 0, sizeof(vals));
	q.size = (UINT16)qual_len;
	if (qual_len > 0)
		memcpy(q.buffer, qual, qual_len);

	for (try = 0; try < QUOTE_TRIES && !match; try++) {
		Esys_Free(quoted);
		Esys_Free(s);
		quoted = NULL;
		s = NULL;
		if ((r = key_ready(ak)) != 0)
			goto out;
		rc = Esys_Quote(ctx->esys, ak->tr, ESYS_TR_PASSWORD,
		    ESYS_TR_NONE, ESYS_TR_NONE, &q, &ak->scheme, &sel,
		    &quoted, &s);
		if (rc != TSS2_RC_SUCCESS) {
			r = tss_fail(ctx, rc, "Esys_Quote");
			goto out;
		}
		if ((r = pcrs_read(ctx, &sel, vals, &nvals)) != 0 ||
		    (r = pcrs_match(quoted, &q, vals, nvals, &match)) != 0)
			goto out;
	}
	if (!match) {
		r = th_fail(TH_ERR_TPM, "PCRs kept changing during the quote");
		goto out;
	}
	if ((rc = Tss2_MU_TPMT_SIGNATURE_Marshal(s, sigbuf, sizeof(sigbuf),
	    &off)) != TSS2_RC_SUCCESS) {
		r = th_fail(TH_ERR_INTERNAL, "marshal signature: %s",
		    Tss2_RC_Decode(rc));
		goto out;
	}
	if ((r = buf_put(attest, quoted->attestationData, quoted->size)) != 0 ||
	    (r = buf_put(sig, sigbuf, off)) != 0 ||
	    (r = pcrs_serialize(pcrs, &sel, vals, nvals)) != 0)
		goto out;
 out:
	Esys_Free(quoted);
	Esys_Free(s);
	return r;
}

static UINT16
nv_chunk(struct tpm_ctx *ctx)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more;
	UINT32 v = NV_CHUNK_DEFAULT;

	if (Esys_GetCapability(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_NV_BUFFER_MAX, 1,
	    &more, &cap) == TSS2_RC_SUCCESS &&
	    cap->data.tpmProperties.count == 1 &&
	    cap->data.tpmProperties.tpmProperty[0].property ==
	    TPM2_PT_NV_BUFFER_MAX)
		v = cap->data.tpmProperties.tpmProperty[0].value;
	Esys_Free(cap);
	if (v == 0 || v > sizeof(((TPM2B_MAX_NV_BUFFER *)0)->buffer))
		v = NV_CHUNK_DEFAULT;
	return (UINT16)v;
}

/* Some TPMs pad the certificate in its NV index; keep the DER SEQUENCE. */
static size_t
der_len(const uint8_t *d, size_t len)
{
	size_t n;

	if (len < 4 || d[0] != 0x30)
		return len;
	if (d[1] < 0x80)
		n = 2 + (size_t)d[1];
	else if (d[1] == 0x81)
		n = 3 + (size_t)d[2];
	else if (d[1] == 0x82)
		n = 4 + ((size_t)d[2] << 8 | d[3]);
	else
		return len;
	return n <= len ? n : len;
}

static int
ek_cert_read(struct tpm_ctx *ctx, uint32_t index, struct buf *der)
{
	ESYS_TR nv = ESYS_TR_NONE, auth;
	TPM2B_NV_PUBLIC *pub = NULL;
	TPM2B_MAX_NV_BUFFER *data = NULL;
	uint8_t *cert = NULL;
	UINT16 chunk, size, off, n;
	TSS2_RC rc;
	int r;

	if ((r = resolve(ctx, index, &nv)) != 0)
		return r;
	rc = Esys_NV_ReadPublic(ctx->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, &pub, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_NV_ReadPublic");
		goto out;
	}
	size = pub->nvPublic.dataSize;
	if (pub->nvPublic.attributes & TPMA_NV_AUTHREAD)
		auth = nv;
	else if (pub->nvPublic.attributes & TPMA_NV_OWNERREAD)
		auth = ESYS_TR_RH_OWNER;
	else {
		r = th_fail(TH_ERR_DENIED, "EK certificate NV 0x%08x is not "
		    "readable", index);
		goto out;
	}
	if (size == 0 || size > EK_CERT_MAX) {
		r = th_fail(TH_ERR_TOO_LONG, "EK certificate NV 0x%08x has %u "
		    "bytes", index, size);
		goto out;
	}
	if ((cert = malloc(size)) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	chunk = nv_chunk(ctx);
	for (off = 0; off < size; off += n) {
		n = size - off < chunk ? size - off : chunk;
		rc = Esys_NV_Read(ctx->esys, auth, nv, ESYS_TR_PASSWORD,
		    ESYS_TR_NONE, ESYS_TR_NONE, n, off, &data);
		if (rc != TSS2_RC_SUCCESS) {
			r = tss_fail(ctx, rc, "Esys_NV_Read");
			goto out;
		}
		if (data->size != n) {
			r = th_fail(TH_ERR_TPM, "short NV read");
			goto out;
		}
		memcpy(cert + off, data->buffer, n);
		Esys_Free(data);
		data = NULL;
	}
	r = buf_put(der, cert, der_len(cert, size));
 out:
	free(cert);
	Esys_Free(data);
	Esys_Free(pub);
	trclose(ctx, &nv);
	return r;
}

int
tpm_ek_cert(struct tpm_ctx *ctx, struct buf *der)
{
	size_t i;
	int r;

	if ((r = tpm_ready(ctx)) != 0)
		return r;
	for (i = 0; i < sizeof(ek_cert_nv) / sizeof(ek_cert_nv[0]); i++)
		if ((r = ek_cert_read(ctx, ek_cert_nv[i], der)) !=
		    TH_ERR_NOT_FOUND)
			return r;
	return th_fail(TH_ERR_NOT_FOUND, "TPM has no EK certificate");
}

/* Credential activation. */

/* TCG EK Credential Profile: PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256,
 * the authPolicy of the default EK templates. */
static const uint8_t ek_policy_a[P256_LEN] = {
	0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
	0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
	0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
};

#define EK_ATTRS (TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
	TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY | \
	TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)

/* TCG EK Credential Profile 2.x, template L-1 (RSA 2048): the same EK
 * every time the endorsement seed is the same. */
static void
tmpl_ek_rsa(TPM2B_PUBLIC *t)
{
	TPMT_PUBLIC *p = &t->publicArea;

	memset(t, 0, sizeof(*t));
	p->type = TPM2_ALG_RSA;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = EK_ATTRS;
	p->authPolicy.size = sizeof(ek_policy_a);
	memcpy(p->authPolicy.buffer, ek_policy_a, sizeof(ek_policy_a));
	p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
	p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
	p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
	p->parameters.rsaDetail.keyBits = 2048;
	p->parameters.rsaDetail.exponent = 0;
	p->unique.rsa.size = RSA2048_LEN;	/* all zero */
}

static int
is_rsa_ek(const TPMT_PUBLIC *p)
{
	return p->type == TPM2_ALG_RSA && p->nameAlg == TPM2_ALG_SHA256 &&
	    (p->objectAttributes & EK_ATTRS) == EK_ATTRS &&
	    !(p->objectAttributes & TPMA_OBJECT_USERWITHAUTH) &&
	    p->parameters.rsaDetail.keyBits == 2048 &&
	    p->parameters.rsaDetail.symmetric.algorithm == TPM2_ALG_AES &&
	    p->parameters.rsaDetail.symmetric.keyBits.aes == 128 &&
	    p->parameters.rsaDetail.symmetric.mode.aes == TPM2_ALG_CFB &&
	    p->authPolicy.size == sizeof(ek_policy_a) &&
	    memcmp(p->authPolicy.buffer, ek_policy_a,
	    sizeof(ek_policy_a)) == 0;
}

/* The RSA EK: the persistent one if it is an EK, else a transient primary
 * from the default template (*created set: the caller flushes it). */
static int
ek_get(struct tpm_ctx *ctx, ESYS_TR *ek, int *created)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_PUBLIC tmpl, *pub = NULL;
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TSS2_RC rc;
	int r, isek;

	*ek = ESYS_TR_NONE;
	*created = 0;
	r = resolve(ctx, TPM_EK_RSA_HANDLE, ek);
	if (r == 0) {
		rc = Esys_ReadPublic(ctx->esys, *ek, ESYS_TR_NONE,
		    ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
		if (rc != TSS2_RC_SUCCESS) {
			trclose(ctx, ek);
			return tss_fail(ctx, rc, "Esys_ReadPublic(EK)");
		}
		isek = is_rsa_ek(&pub->publicArea);
		Esys_Free(pub);
		if (isek)
			return 0;
		/* Something else sits there: derive the EK instead. */
		trclose(ctx, ek);
	} else if (r != TH_ERR_NOT_FOUND)
		return r;
	tmpl_ek_rsa(&tmpl);
	rc = Esys_CreatePrimary(ctx->esys, ESYS_TR_RH_ENDORSEMENT,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
	    &outside, &pcrs, ek, NULL, NULL, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		*ek = ESYS_TR_NONE;
		return tss_fail(ctx, rc, "Esys_CreatePrimary(EK)");
	}
	*created = 1;
	return 0;
}

/* A policy session satisfying the EK's policy: PolicySecret with the
 * endorsement hierarchy's (empty) auth.  continueSession is set so that the
 * TPM keeps the session after use and flush() always has it to flush. */
static int
ek_policy_session(struct tpm_ctx *ctx, ESYS_TR *sess)
{
	TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_NULL };
	TPM2B_NONCE nonce_tpm = { 0 }, policy_ref = { 0 };
	TPM2B_DIGEST cp_hash = { 0 };
	TSS2_RC rc;

	rc = Esys_StartAuthSession(ctx->esys, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_POLICY,
	    &sym, TPM2_ALG_SHA256, sess);
	if (rc != TSS2_RC_SUCCESS) {
		*sess = ESYS_TR_NONE;
		return tss_fail(ctx, rc, "Esys_StartAuthSession(policy)");
	}
	rc = Esys_TRSess_SetAttributes(ctx->esys, *sess,
	    TPMA_SESSION_CONTINUESESSION, 0xff);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ctx, rc, "Esys_TRSess_SetAttributes");
	rc = Esys_PolicySecret(ctx->esys, ESYS_TR_RH_ENDORSEMENT, *sess,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &nonce_tpm, &cp_hash,
	    &policy_ref, 0, NULL, NULL);
	if (rc != TSS2_RC_SUCCESS)
		return tss_fail(ctx, rc, "Esys_PolicySecret(endorsement)");
	return 0;
}

static int
ak_check(const struct tpm_key *ak)
{
	if (!ak->restricted || ak->alg != TH_ALG_ES256)
		return th_fail(TH_ERR_DENIED, "TPM key 0x%08x is not an "
		    "attestation key", ak->handle);
	return 0;
}

int
tpm_ak_public(struct tpm_key *ak, struct buf *tpmt_public, struct buf *name)
{
	struct tpm_ctx *ctx = ak->ctx;
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_NAME *n = NULL;
	uint8_t mbuf[sizeof(TPMT_PUBLIC)];
	size_t off = 0;
	TSS2_RC rc;
	int r;

	if ((r = ak_check(ak)) != 0 || (r = key_ready(ak)) != 0)
		return r;
	rc = Esys_ReadPublic(ctx->esys, ak->tr, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, &pub, &n, NULL);
	if (rc != TSS2_RC_SUCCESS) {
		r = tss_fail(ctx, rc, "Esys_ReadPublic(AK)");
		goto out;
	}
	if (n->size != ak->name.size ||
	    CRYPTO_memcmp(n->name, ak->name.name, n->size) != 0) {
		r = th_fail(TH_ERR_NOT_FOUND, "TPM key 0x%08x was replaced by "
		    "another object", ak->handle);
		goto out;
	}
	if ((rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, mbuf,
	    sizeof(mbuf), &off)) != TSS2_RC_SUCCESS) {
		r = th_fail(TH_ERR_INTERNAL, "marshal public area: %s",
		    Tss2_RC_Decode(rc));
		goto out;
	}
	if ((r = buf_put(tpmt_public, mbuf, off)) != 0 ||
	    (r = buf_put(name, n->name, n->size)) != 0)
		goto out;
 out:
	Esys_Free(pub);
	Esys_Free(n);
	return r;
}

int
tpm_activate_credential(struct tpm_key *ak, const uint8_t *credential_blob,
    size_t blob_len, const uint8_t *secret, size_t secret_len,
    struct buf *cert_info)
{
	struct tpm_ctx *ctx = ak->ctx;
	TPM2B_ID_OBJECT id;
	TPM2B_ENCRYPTED_SECRET enc;
	TPM2B_DIGEST *info = NULL;
	ESYS_TR ek = ESYS_TR_NONE, sess = ESYS_TR_NONE;
	size_t off;
	TSS2_RC rc;
	int r, created = 0;

	if ((r = ak_check(ak)) != 0)
		return r;
	memset(&id, 0, sizeof(id));
	memset(&enc, 0, sizeof(enc));
	off = 0;
	if (credential_blob == NULL || Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(
	    credential_blob, blob_len, &off, &id) != TSS2_RC_SUCCESS ||
	    off != blob_len || id.size == 0)
		return th_fail(TH_ERR_INVALID, "malformed credential blob "
		    "(TPM2B_ID_OBJECT)");
	off = 0;
	if (secret == NULL || Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(
	    secret, secret_len, &off, &enc) != TSS2_RC_SUCCESS ||
	    off != secret_len || enc.size == 0)
		return th_fail(TH_ERR_INVALID, "malformed encrypted secret "
		    "(TPM2B_ENCRYPTED_SECRET)");
	if ((r = key_ready(ak)) != 0 ||
	    (r = ek_get(ctx, &ek, &created)) != 0 ||
	    (r = ek_policy_session(ctx, &sess)) != 0)
		goto out;
	rc = Esys_ActivateCredential(ctx->esys, ak->tr, ek, ESYS_TR_PASSWORD,
	    sess, ESYS_TR_NONE, &id, &enc, &info);
	if (rc != TSS2_RC_SUCCESS) {
		/* Seen on swtpm: a credential for another EK fails with
		 * TPM_RC_FAILURE (though the TPM keeps working), one for
		 * another name with TPM_RC_INTEGRITY.  Either way the TPM
		 * refused; the code is not relied on. */
		r = tss_fail(ctx, rc, "the TPM refused the credential (made "
		    "for another EK or another key name?): "
		    "Esys_ActivateCredential");
		goto out;
	}
	r = buf_put(cert_info, info->buffer, info->size);
 out:
	if (info != NULL) {
		OPENSSL_cleanse(info, sizeof(*info));
		Esys_Free(info);
	}
	flush(ctx, &sess);
	if (created)
		flush(ctx, &ek);
	else
		trclose(ctx, &ek);
	return r;
}
