#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "b64url.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "jws.h"
#include "sha.h"

#define JWS_HEADER_MAX	512

void
jws_hash(const void *p, size_t len, char out[JWS_HASH_LEN + 1])
{
	uint8_t d[SHA_LEN];

	sha256(p, len, d);
	b64url_digest(d, out);
}

void
jws_free(struct jws *j)
{
	if (j == NULL)
		return;
	json_object_put(j->claims);
	/* A capability is a bearer credential until it is spent. */
	if (j->token != NULL)
		OPENSSL_clear_free(j->token, strlen(j->token));
	OPENSSL_clear_free(j, sizeof(*j));
}

static int
decode_json(const char *p, size_t len, size_t max, const char *what,
    struct json_object **out)
{
	struct buf *b = buf_new();
	int r;

	if (b == NULL)
		return TH_ERR_ALLOC;
	if ((r = b64url_decode(b, p, len)) != 0)
		r = th_fail(TH_ERR_INVALID, "%s: %s", what, th_errmsg(r));
	else if ((r = json_parse_strict((const char *)buf_ptr(b), buf_len(b),
	    max, out)) != 0)
		r = th_fail(TH_ERR_INVALID, "%s: %s", what, th_errmsg(r));
	else if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		r = th_fail(TH_ERR_INVALID, "%s is not a JSON object", what);
	}
	buf_free(b);
	return r;
}

static int
parse_header(struct jws *j, struct json_object *hdr)
{
	const char *alg, *typ, *kid;
	int r;

	json_object_object_foreach(hdr, k, v) {
		(void)v;
		if (strcmp(k, "alg") != 0 && strcmp(k, "typ") != 0 &&
		    strcmp(k, "kid") != 0)
			return th_fail(TH_ERR_INVALID, "header member \"%s\" "
			    "not allowed", k);
	}
	if ((r = json_get_string(hdr, "alg", &alg)) != 0)
		return th_fail(TH_ERR_INVALID, "header: %s", th_errmsg(r));
	if ((j->alg = th_alg_from_name(alg)) == TH_ALG_NONE)
		return th_fail(TH_ERR_INVALID, "alg \"%.16s\" not accepted "
		    "(only ES256 and RS256)", alg);
	r = json_get_string(hdr, "typ", &typ);
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		return th_fail(TH_ERR_INVALID, "header: %s", th_errmsg(r));
	/* Present means named: "" must not pass where typ may be absent. */
	if (r == 0 && (typ[0] == '\0' || strlen(typ) > JWS_TYP_MAX))
		return th_fail(TH_ERR_INVALID, "typ empty or too long");
	if (r == 0)
		strcpy(j->typ, typ);
	r = json_get_string(hdr, "kid", &kid);
	if (r == TH_ERR_NOT_FOUND)
		return 0;
	if (r != 0 || strlen(kid) > JWS_KID_MAX)
		return th_fail(TH_ERR_INVALID, "bad kid");
	strcpy(j->kid, kid);
	return 0;
}

/* A token (with_sig) is header.claims.signature; a signing input is
 * header.claims. */
static int
parse(const char *token, size_t len, int with_sig, struct jws **out)
{
	struct json_object *hdr = NULL;
	struct jws *j = NULL;
	const char *d1, *d2;
	struct buf *b = NULL;
	int r;

	*out = NULL;
	if (len > JWS_TOKEN_MAX)
		return th_fail(TH_ERR_TOO_LONG, "token of %zu bytes exceeds %d",
		    len, JWS_TOKEN_MAX);
	if ((d1 = memchr(token, '.', len)) == NULL)
		d2 = NULL;
	else if ((d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)))
	    == NULL)
		d2 = with_sig ? NULL : token + len;
	else if (!with_sig || memchr(d2 + 1, '.',
	    len - (size_t)(d2 + 1 - token)) != NULL)
		d2 = NULL;
	if (d1 == NULL || d2 == NULL)
		return th_fail(TH_ERR_INVALID, with_sig ? "not a compact JWS "
		    "(three dot-separated parts)" : "not a JWS signing input "
		    "(header.claims)");
	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->token = strndup(token, len)) == NULL ||
	    (b = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if (strlen(j->token) != len) {
		r = th_fail(TH_ERR_INVALID, "token contains a NUL byte");
		goto out;
	}
	j->token_len = len;
	j->input_len = (size_t)(d2 - token);
	if ((r = decode_json(token, (size_t)(d1 - token), JWS_HEADER_MAX,
	    "header", &hdr)) != 0 || (r = parse_header(j, hdr)) != 0 ||
	    (r = decode_json(d1 + 1, (size_t)(d2 - d1 - 1), JWS_TOKEN_MAX,
	    "claims", &j->claims)) != 0)
		goto out;
	if (!with_sig)
		goto done;
	if ((r = b64url_decode(b, d2 + 1, len - (size_t)(d2 + 1 - token)))
	    != 0) {
		r = th_fail(TH_ERR_INVALID, "signature: %s", th_errmsg(r));
		goto out;
	}
	if (buf_len(b) == 0 || buf_len(b) > TH_SIG_MAX) {
		r = th_fail(TH_ERR_INVALID, "signature has a bad length");
		goto out;
	}
	memcpy(j->sig, buf_ptr(b), buf_len(b));
	j->siglen = buf_len(b);
	sha256(token, len, j->digest);
	b64url_digest(j->digest, j->hash);
 done:
	*out = j;
	j = NULL;
 out:
	json_object_put(hdr);
	buf_free(b);
	jws_free(j);
	return r;
}

int
jws_parse(const char *token, size_t len, struct jws **out)
{
	return parse(token, len, 1, out);
}

int
jws_parse_input(const char *input, size_t len, struct jws **out)
{
	return parse(input, len, 0, out);
}

/* P-256's group order; an ES256 s above half of it is the "high" twin of a
 * valid signature.  Threshold emits and accepts only low-S signatures, so
 * that a token has exactly one valid serialisation and so one hash, which
 * revocation and single use depend on. */
static const uint8_t p256_order[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

/* floor(order / 2): an s above it is high. */
static const uint8_t p256_half_order[32] = {
	0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00,
	0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42,
	0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8
};

/* 1 if s (32 bytes) > order / 2.  Big-endian numbers of equal length:
 * memcmp compares them, with no BIGNUM per verification. */
static int
es256_is_high_s(const uint8_t *s)
{
	return memcmp(s, p256_half_order, sizeof(p256_half_order)) > 0;
}

/* Rewrites a high s as order - s; 0, or -1 on error. */
static int
es256_make_low_s(uint8_t *s)
{
	BIGNUM *n = NULL, *v = NULL;
	int r = -1;

	if (!es256_is_high_s(s))
		return 0;
	if ((n = BN_bin2bn(p256_order, 32, NULL)) != NULL &&
	    (v = BN_bin2bn(s, 32, NULL)) != NULL && BN_sub(v, n, v) &&
	    BN_bn2binpad(v, s, 32) == 32)
		r = 0;
	BN_free(n);
	BN_free(v);
	return r;
}

/* JWS carries ECDSA signatures as r||s; OpenSSL verifies DER. */
static int
es256_to_der(const uint8_t *sig, size_t len, uint8_t **der, int *derlen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	int ret = TH_ERR_CRYPTO;

	*der = NULL;
	if (len != 64)
		return th_fail(TH_ERR_CRYPTO, "ES256 signature is %zu bytes, "
		    "not 64", len);
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(sig, 32, NULL)) == NULL ||
	    (s = BN_bin2bn(sig + 32, 32, NULL)) == NULL ||
	    !ECDSA_SIG_set0(es, r, s))
		goto out;
	r = s = NULL;
	if ((*derlen = i2d_ECDSA_SIG(es, der)) <= 0)
		goto out;
	ret = 0;
 out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ret == 0 ? 0 : th_fail(ret, "bad ES256 signature");
}

struct jws_verifier {
	EVP_PKEY_CTX	*ctx;		/* verify-initialised once, reused */
	enum th_alg	 alg;		/* the key's */
};

void
jws_verifier_free(struct jws_verifier *v)
{
	if (v == NULL)
		return;
	EVP_PKEY_CTX_free(v->ctx);
	free(v);
}

/* OpenSSL's per-signature set-up (fetching the algorithms, the key's
 * checks) is a tenth of an ES256 verification: done here once. */
int
jws_verifier_new(EVP_PKEY *pub, struct jws_verifier **out)
{
	struct jws_verifier *v;
	int r;

	*out = NULL;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return TH_ERR_ALLOC;
	if ((v->alg = jwk_pkey_alg(pub)) == TH_ALG_NONE) {
		r = th_fail(TH_ERR_CRYPTO, "the signer's key is neither EC "
		    "P-256 nor RSA of a supported size");
		goto out;
	}
	if ((v->ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL)) == NULL ||
	    EVP_PKEY_verify_init(v->ctx) <= 0 ||
	    EVP_PKEY_CTX_set_signature_md(v->ctx, sha256_md()) <= 0 ||
	    (v->alg == TH_ALG_RS256 && EVP_PKEY_CTX_set_rsa_padding(v->ctx,
	    RSA_PKCS1_PADDING) <= 0)) {
		r = th_fail(TH_ERR_CRYPTO, "cannot set up signature "
		    "verification with the key");
		goto out;
	}
	*out = v;
	v = NULL;
	r = 0;
 out:
	jws_verifier_free(v);
	return r;
}

int
jws_verify_with(struct jws_verifier *v, const struct jws *j)
{
	const uint8_t *sig = j->sig;
	uint8_t *der = NULL, d[SHA_LEN];
	int r, siglen = (int)j->siglen;

	if (v->alg != j->alg)
		return th_fail(TH_ERR_CRYPTO, "alg %s does not match the "
		    "signer's %s key", th_alg_name(j->alg),
		    v->alg == TH_ALG_ES256 ? "EC P-256" : "RSA");
	if (j->alg == TH_ALG_ES256) {
		if (j->siglen == 64 && es256_is_high_s(j->sig + 32))
			return th_fail(TH_ERR_CRYPTO, "ES256 signature with a "
			    "high s (not canonical)");
		if ((r = es256_to_der(j->sig, j->siglen, &der, &siglen)) != 0)
			return r;
		sig = der;
	}
	sha256(j->token, j->input_len, d);
	r = EVP_PKEY_verify(v->ctx, sig, (size_t)siglen, d, sizeof(d)) == 1 ?
	    0 : th_fail(TH_ERR_CRYPTO, "bad signature");
	OPENSSL_free(der);
	return r;
}

int
jws_verify(const struct jws *j, EVP_PKEY *pub)
{
	struct jws_verifier *v;
	int r;

	if ((r = jws_verifier_new(pub, &v)) != 0)
		return r;
	r = jws_verify_with(v, j);
	jws_verifier_free(v);
	return r;
}

int
jws_signing_input(struct buf *out, enum th_alg alg, const char *typ,
    const char *kid, struct json_object *claims)
{
	struct json_object *hdr;
	const char *s;
	int r = TH_ERR_ALLOC;

	if ((hdr = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(hdr, "alg",
	    json_object_new_string(th_alg_name(alg)));
	json_object_object_add(hdr, "typ", json_object_new_string(typ));
	if (kid != NULL && kid[0] != '\0')
		json_object_object_add(hdr, "kid", json_object_new_string(kid));
	s = json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s == NULL || (r = b64url_encode(out, (const uint8_t *)s,
	    strlen(s))) != 0 || (r = buf_put_u8(out, '.')) != 0)
		goto out;
	s = json_object_to_json_string_ext(claims, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	r = s == NULL ? TH_ERR_ALLOC :
	    b64url_encode(out, (const uint8_t *)s, strlen(s));
 out:
	json_object_put(hdr);
	return r;
}

int
jws_es256_low_s(uint8_t sig[64])
{
	return es256_make_low_s(sig + 32) < 0 ? th_fail(TH_ERR_CRYPTO,
	    "cannot normalise ES256 signature") : 0;
}

int
jws_append_sig(struct buf *token, const uint8_t *sig, size_t siglen)
{
	uint8_t rs[64];
	int r;

	if ((r = buf_put_u8(token, '.')) != 0)
		return r;
	if (siglen != sizeof(rs))
		return b64url_encode(token, sig, siglen);
	/* ES256 (the only 64-byte signature): emit the low-S form whatever
	 * the TPM or token returned. */
	memcpy(rs, sig, sizeof(rs));
	if (es256_make_low_s(rs + 32) < 0)
		return th_fail(TH_ERR_CRYPTO, "cannot normalise ES256 "
		    "signature");
	return b64url_encode(token, rs, sizeof(rs));
}

int
jws_new_jti(char out[JWS_JTI_LEN + 1])
{
	uint8_t rnd[16];
	struct buf *b;
	int r;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return th_fail(TH_ERR_CRYPTO, "no randomness");
	if ((b = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = b64url_encode(b, rnd, sizeof(rnd))) == 0) {
		memcpy(out, buf_ptr(b), JWS_JTI_LEN);
		out[JWS_JTI_LEN] = '\0';
	}
	buf_free(b);
	return r;
}

int
jws_jti_valid(const char *s)
{
	return b64url_is(s, 16);
}
