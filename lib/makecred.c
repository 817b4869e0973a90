/* TPM2_MakeCredential in software; the construction is in makecred.h.
 * Written from TPM 2.0 Library Part 1 (KDFa in "Key Derivation Functions",
 * credential protection, the OAEP label convention for secret sharing) and
 * Part 2 (structure layouts). */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "err.h"
#include "makecred.h"

#define SHA256_LEN	32
#define AES128_LEN	16
#define KDF_LABEL_MAX	16	/* "INTEGRITY\0" is the longest */
#define KDF_IN_MAX	(4 + KDF_LABEL_MAX + MAKECRED_NAME_MAX + 4)
#define P256_LEN	32

/* TPM_ALG_ID values (Part 2, table "TPM_ALG_ID Constants"). */
#define ALG_SHA1	0x0004
#define ALG_SHA256	0x000b
#define ALG_SHA384	0x000c
#define ALG_SHA512	0x000d
#define ALG_NULL	0x0010
#define ALG_ECDSA	0x0018
#define ALG_ECC		0x0023
#define ECC_NIST_P256	0x0003

/* TPMA_OBJECT bits. */
#define OA_FIXEDTPM		0x00000002u
#define OA_FIXEDPARENT		0x00000010u
#define OA_SENSITIVEDATAORIGIN	0x00000020u
#define OA_RESTRICTED		0x00010000u
#define OA_DECRYPT		0x00020000u
#define OA_SIGN			0x00040000u

static const char label_identity[] = "IDENTITY";	/* with its NUL */
static const char label_storage[] = "STORAGE";
static const char label_integrity[] = "INTEGRITY";

static void
put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* KDFa (Part 1, SP 800-108 counter mode with HMAC): for i = 1, 2, ...
 * HMAC-SHA-256(key, [i]32 || label || 0x00 || contextU || [bits]32), the
 * blocks concatenated and cut to bits/8 bytes (bits a multiple of 8 here).
 * contextV is empty in both uses. */
static int
kdfa_sha256(const uint8_t *key, size_t key_len, const char *label,
    const uint8_t *ctx_u, size_t ctx_u_len, uint8_t *out, size_t bits)
{
	uint8_t in[KDF_IN_MAX], block[SHA256_LEN];
	size_t label_len = strlen(label) + 1, n, off, want = bits / 8, take;
	unsigned int blen;
	uint32_t i;
	int r = 0;

	if (bits % 8 != 0 || label_len > KDF_LABEL_MAX ||
	    ctx_u_len > MAKECRED_NAME_MAX)
		return th_fail(TH_ERR_INTERNAL, "KDFa arguments");
	for (i = 1, off = 0; off < want; i++, off += take) {
		n = 0;
		put32(in, i);
		n += 4;
		memcpy(in + n, label, label_len);	/* NUL included */
		n += label_len;
		if (ctx_u_len > 0)
			memcpy(in + n, ctx_u, ctx_u_len);
		n += ctx_u_len;
		put32(in + n, (uint32_t)bits);
		n += 4;
		blen = sizeof(block);
		if (HMAC(EVP_sha256(), key, (int)key_len, in, n, block,
		    &blen) == NULL || blen != sizeof(block)) {
			r = th_fail(TH_ERR_CRYPTO, "KDFa: HMAC-SHA-256");
			break;
		}
		take = want - off < sizeof(block) ? want - off : sizeof(block);
		memcpy(out + off, block, take);
	}
	OPENSSL_cleanse(block, sizeof(block));
	OPENSSL_cleanse(in, sizeof(in));
	return r;
}

static int
name_valid(const uint8_t *name, size_t len)
{
	size_t dlen;

	if (name == NULL || len < 2)
		return 0;
	switch ((unsigned)name[0] << 8 | name[1]) {
	case ALG_SHA1:		dlen = 20; break;
	case ALG_SHA256:	dlen = 32; break;
	case ALG_SHA384:	dlen = 48; break;
	case ALG_SHA512:	dlen = 64; break;
	default:		return 0;
	}
	return len == 2 + dlen;
}

/* RSA-OAEP with SHA-256 and the label "IDENTITY" including its NUL. */
static int
seed_encrypt(EVP_PKEY *ek, const uint8_t *seed, size_t seed_len,
    uint8_t *out, size_t *out_len)
{
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *label = NULL;
	int r = TH_ERR_CRYPTO;

	if ((pctx = EVP_PKEY_CTX_new_from_pkey(NULL, ek, NULL)) == NULL ||
	    EVP_PKEY_encrypt_init(pctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0)
		goto out;
	if ((label = OPENSSL_memdup(label_identity,
	    sizeof(label_identity))) == NULL)
		goto out;
	/* set0: the context owns label from here on. */
	if (EVP_PKEY_CTX_set0_rsa_oaep_label(pctx, label,
	    (int)sizeof(label_identity)) <= 0) {
		OPENSSL_free(label);
		goto out;
	}
	if (EVP_PKEY_encrypt(pctx, out, out_len, seed, seed_len) <= 0)
		goto out;
	r = 0;
 out:
	if (r != 0)
		th_fail(r, "RSA-OAEP encryption of the seed to the EK");
	EVP_PKEY_CTX_free(pctx);
	return r;
}

static int
aes128_cfb(const uint8_t key[AES128_LEN], const uint8_t *in, size_t len,
    uint8_t *out)
{
	static const uint8_t iv[16];
	EVP_CIPHER_CTX *c;
	int n1 = 0, n2 = 0, ok;

	if ((c = EVP_CIPHER_CTX_new()) == NULL)
		return th_fail(TH_ERR_CRYPTO, "AES-128-CFB");
	ok = EVP_EncryptInit_ex(c, EVP_aes_128_cfb128(), NULL, key, iv) == 1 &&
	    EVP_EncryptUpdate(c, out, &n1, in, (int)len) == 1 &&
	    EVP_EncryptFinal_ex(c, out + n1, &n2) == 1 &&
	    (size_t)n1 + (size_t)n2 == len;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : th_fail(TH_ERR_CRYPTO, "AES-128-CFB");
}

int
makecred_make(EVP_PKEY *ek, const uint8_t *name, size_t name_len,
    const uint8_t *cred, size_t cred_len,
    struct buf *id_object, struct buf *enc_secret)
{
	uint8_t seed[SHA256_LEN], sym[AES128_LEN], hkey[SHA256_LEN];
	uint8_t plain[2 + MAKECRED_CRED_MAX];
	/* u16 size || u16 32 || integrity || encIdentity || name: the HMAC
	 * input (encIdentity || name) lies in place after the integrity. */
	uint8_t id[MAKECRED_ID_OBJECT_MAX + MAKECRED_NAME_MAX];
	uint8_t sec[MAKECRED_SECRET_LEN];
	uint8_t *integrity = id + 4, *enc = id + 4 + SHA256_LEN;
	size_t enc_len = 2 + cred_len, sec_len = sizeof(sec) - 2, id_len;
	unsigned int hlen = SHA256_LEN;
	int r;

	if (ek == NULL || !EVP_PKEY_is_a(ek, "RSA") ||
	    EVP_PKEY_get_bits(ek) != MAKECRED_EK_BITS)
		return th_fail(TH_ERR_INVALID, "the EK must be an RSA-%d key",
		    MAKECRED_EK_BITS);
	if (!name_valid(name, name_len))
		return th_fail(TH_ERR_INVALID, "malformed TPM name");
	if (cred == NULL || cred_len == 0 || cred_len > MAKECRED_CRED_MAX)
		return th_fail(TH_ERR_INVALID, "a credential is 1..%d bytes",
		    MAKECRED_CRED_MAX);

	if (RAND_bytes(seed, sizeof(seed)) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "RAND_bytes");
		goto out;
	}
	if ((r = seed_encrypt(ek, seed, sizeof(seed), sec + 2,
	    &sec_len)) != 0)
		goto out;
	if (sec_len != MAKECRED_EK_BITS / 8) {
		r = th_fail(TH_ERR_CRYPTO, "RSA-OAEP output of %zu bytes",
		    sec_len);
		goto out;
	}
	put16(sec, sec_len);

	if ((r = kdfa_sha256(seed, sizeof(seed), label_storage, name,
	    name_len, sym, 8 * sizeof(sym))) != 0 ||
	    (r = kdfa_sha256(seed, sizeof(seed), label_integrity, NULL, 0,
	    hkey, 8 * sizeof(hkey))) != 0)
		goto out;

	/* encIdentity: the credential as a marshalled TPM2B_DIGEST. */
	put16(plain, cred_len);
	memcpy(plain + 2, cred, cred_len);
	if ((r = aes128_cfb(sym, plain, enc_len, enc)) != 0)
		goto out;

	memcpy(enc + enc_len, name, name_len);
	if (HMAC(EVP_sha256(), hkey, (int)sizeof(hkey), enc,
	    enc_len + name_len, integrity, &hlen) == NULL ||
	    hlen != SHA256_LEN) {
		r = th_fail(TH_ERR_CRYPTO, "HMAC-SHA-256");
		goto out;
	}
	id_len = 2 + SHA256_LEN + enc_len;
	put16(id, id_len);
	put16(id + 2, SHA256_LEN);

	if ((r = buf_put(id_object, id, 2 + id_len)) != 0 ||
	    (r = buf_put(enc_secret, sec, 2 + sec_len)) != 0)
		goto out;
 out:
	OPENSSL_cleanse(seed, sizeof(seed));
	OPENSSL_cleanse(sym, sizeof(sym));
	OPENSSL_cleanse(hkey, sizeof(hkey));
	OPENSSL_cleanse(plain, sizeof(plain));
	return r;
}

/* A strict reader over a marshalled structure. */
struct rd {
	const uint8_t	*p;
	size_t		 left;
	int		 bad;
};

static uint32_t
rd_u(struct rd *r, size_t n)
{
	uint32_t v = 0;
	size_t i;

	if (r->bad || r->left < n) {
		r->bad = 1;
		return 0;
	}
	for (i = 0; i < n; i++)
		v = v << 8 | r->p[i];
	r->p += n;
	r->left -= n;
	return v;
}

/* A TPM2B of at most max bytes. */
static const uint8_t *
rd_2b(struct rd *r, size_t max, size_t *len)
{
	const uint8_t *p;

	*len = rd_u(r, 2);
	if (r->bad || *len > max || *len > r->left) {
		r->bad = 1;
		*len = 0;
		return NULL;
	}
	p = r->p;
	r->p += *len;
	r->left -= *len;
	return p;
}

static int
p256_pub(const uint8_t *x, size_t xlen, const uint8_t *y, size_t ylen,
    EVP_PKEY **out)
{
	uint8_t point[1 + 2 * P256_LEN];
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	int r = TH_ERR_INVALID;

	memset(point, 0, sizeof(point));
	point[0] = 0x04;	/* uncompressed */
	memcpy(point + 1 + P256_LEN - xlen, x, xlen);
	memcpy(point + 1 + 2 * P256_LEN - ylen, y, ylen);
	/* fromdata checks that the point is on the curve. */
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
	    point, sizeof(point)) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		r = th_fail(TH_ERR_INVALID, "AK public point is not on P-256");
	else
		r = 0;
	EVP_PKEY_CTX_free(pctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

int
makecred_ak_public(const uint8_t *tpmt_public, size_t len, struct buf *name,
    EVP_PKEY **pub)
{
	const uint32_t need = OA_FIXEDTPM | OA_FIXEDPARENT |
	    OA_SENSITIVEDATAORIGIN | OA_RESTRICTED | OA_SIGN;
	struct rd rd = { tpmt_public, len, 0 };
	const uint8_t *x, *y;
	uint8_t n[MAKECRED_NAME_SHA256];
	uint32_t type, name_alg, attrs, sym, scheme, hash, curve, kdf;
	size_t policy_len, xlen, ylen;
	EVP_PKEY *k = NULL;
	int r;

	if (pub != NULL)
		*pub = NULL;
	if (tpmt_public == NULL || len == 0 || len > MAKECRED_PUBLIC_MAX)
		return th_fail(TH_ERR_INVALID, "AK public area of %zu bytes",
		    len);
	type = rd_u(&rd, 2);
	name_alg = rd_u(&rd, 2);
	attrs = rd_u(&rd, 4);
	(void)rd_2b(&rd, 64, &policy_len);
	sym = rd_u(&rd, 2);		/* TPMT_SYM_DEF_OBJECT, NULL only */
	scheme = rd_u(&rd, 2);		/* TPMT_ECC_SCHEME */
	hash = scheme == ALG_ECDSA ? rd_u(&rd, 2) : 0;
	curve = rd_u(&rd, 2);
	kdf = rd_u(&rd, 2);		/* TPMT_KDF_SCHEME, NULL only */
	x = rd_2b(&rd, P256_LEN, &xlen);
	y = rd_2b(&rd, P256_LEN, &ylen);
	if (rd.bad || rd.left != 0)
		return th_fail(TH_ERR_INVALID, "malformed AK public area");
	if (type != ALG_ECC || name_alg != ALG_SHA256 || sym != ALG_NULL ||
	    scheme != ALG_ECDSA || hash != ALG_SHA256 ||
	    curve != ECC_NIST_P256 || kdf != ALG_NULL || policy_len != 0 ||
	    xlen == 0 || ylen == 0)
		return th_fail(TH_ERR_INVALID, "not an ECDSA P-256/SHA-256 "
		    "key with nameAlg SHA-256 and no policy");
	if ((attrs & need) != need || (attrs & OA_DECRYPT))
		return th_fail(TH_ERR_INVALID, "attributes 0x%08x are not "
		    "those of a restricted signing key bound to its TPM",
		    attrs);
	if (pub != NULL && (r = p256_pub(x, xlen, y, ylen, &k)) != 0)
		return r;
	put16(n, ALG_SHA256);
	if (EVP_Digest(tpmt_public, len, n + 2, NULL, EVP_sha256(),
	    NULL) != 1) {
		EVP_PKEY_free(k);
		return th_fail(TH_ERR_CRYPTO, "SHA-256");
	}
	if ((r = buf_put(name, n, sizeof(n))) != 0) {
		EVP_PKEY_free(k);
		return r;
	}
	if (pub != NULL)
		*pub = k;
	return 0;
}
