#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "b64url.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "sha.h"

#define JWK_EC_COORD	32
#define JWK_RSA_MIN	2048
#define JWK_RSA_MAX	4096

enum th_alg
jwk_pkey_alg(EVP_PKEY *pub)
{
	char group[32];
	size_t len;

	switch (EVP_PKEY_get_base_id(pub)) {
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(pub,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len) ||
		    strcmp(group, "prime256v1") != 0)
			return TH_ALG_NONE;
		return TH_ALG_ES256;
	case EVP_PKEY_RSA:
		if (EVP_PKEY_get_bits(pub) < JWK_RSA_MIN ||
		    EVP_PKEY_get_bits(pub) > JWK_RSA_MAX)
			return TH_ALG_NONE;
		return TH_ALG_RS256;
	}
	return TH_ALG_NONE;
}

static int
add_bn(struct json_object *o, const char *key, const BIGNUM *bn)
{
	uint8_t tmp[JWK_RSA_MAX / 8];
	int n = BN_num_bytes(bn);

	if (n <= 0 || n > (int)sizeof(tmp) || BN_bn2bin(bn, tmp) != n)
		return th_fail(TH_ERR_CRYPTO, "bad RSA parameter");
	return json_add_b64url(o, key, tmp, (size_t)n);
}

int
jwk_from_pkey(EVP_PKEY *pub, struct json_object **out)
{
	struct json_object *o = NULL;
	uint8_t pt[1 + 2 * JWK_EC_COORD];
	BIGNUM *n = NULL, *e = NULL;
	size_t len;
	int r = TH_ERR_ALLOC;

	*out = NULL;
	if ((o = json_object_new_object()) == NULL)
		goto out;
	switch (jwk_pkey_alg(pub)) {
	case TH_ALG_ES256:
		if (!EVP_PKEY_get_octet_string_param(pub,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt), &len) ||
		    len != sizeof(pt) || pt[0] != 0x04) {
			r = th_fail(TH_ERR_CRYPTO, "cannot export EC point");
			goto out;
		}
		json_object_object_add(o, "kty", json_object_new_string("EC"));
		json_object_object_add(o, "crv", json_object_new_string("P-256"));
		if ((r = json_add_b64url(o, "x", pt + 1, JWK_EC_COORD)) != 0 ||
		    (r = json_add_b64url(o, "y", pt + 1 + JWK_EC_COORD,
		    JWK_EC_COORD)) != 0)
			goto out;
		break;
	case TH_ALG_RS256:
		if (!EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) ||
		    !EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_E, &e)) {
			r = th_fail(TH_ERR_CRYPTO, "cannot export RSA key");
			goto out;
		}
		json_object_object_add(o, "kty", json_object_new_string("RSA"));
		if ((r = add_bn(o, "n", n)) != 0 || (r = add_bn(o, "e", e)) != 0)
			goto out;
		break;
	default:
		r = th_fail(TH_ERR_INVALID, "only EC P-256 and RSA 2048-4096 "
		    "keys are supported");
		goto out;
	}
	*out = o;
	o = NULL;
	r = 0;
 out:
	BN_free(n);
	BN_free(e);
	json_object_put(o);
	return r;
}

/* Decodes member key of jwk into p[0..max), exactly len bytes if len != 0. */
static int
get_b64(struct json_object *jwk, const char *key, struct buf *b, size_t min,
    size_t max)
{
	const char *s;
	int r;

	if ((r = json_get_string(jwk, key, &s)) != 0)
		return r;
	buf_reset(b);
	if ((r = b64url_decode(b, s, strlen(s))) != 0)
		return th_fail(TH_ERR_INVALID, "JWK \"%s\": %s", key,
		    th_errmsg(r));
	if (buf_len(b) < min || buf_len(b) > max)
		return th_fail(TH_ERR_INVALID, "JWK \"%s\" has a bad length",
		    key);
	return 0;
}

static int
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
	EVP_PKEY_CTX *ctx = NULL;
	OSSL_PARAM *params = NULL;
	int r = TH_ERR_INVALID;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		goto out;
	EVP_PKEY_CTX_free(ctx);
	/* fromdata does not check that the point is on the curve. */
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL)) == NULL ||
	    EVP_PKEY_public_check(ctx) <= 0) {
		EVP_PKEY_free(*out);
		*out = NULL;
		goto out;
	}
	r = 0;
 out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r == 0 ? 0 : th_fail(r, "JWK is not a valid public key");
}

int
jwk_to_pkey(struct json_object *jwk, EVP_PKEY **out)
{
	static const char *const ec[] = { "kty", "crv", "x", "y" };
	static const char *const rsa[] = { "kty", "n", "e" };
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *n = NULL, *e = NULL;
	uint8_t pt[1 + 2 * JWK_EC_COORD];
	struct buf *b = NULL;
	const char *kty, *crv;
	int r;

	*out = NULL;
	if (!json_object_is_type(jwk, json_type_object))
		return th_fail(TH_ERR_INVALID, "JWK is not an object");
	if ((r = json_get_string(jwk, "kty", &kty)) != 0)
		return r;
	if ((b = buf_new()) == NULL || (bld = OSSL_PARAM_BLD_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if (strcmp(kty, "EC") == 0) {
		if ((r = json_only_members(jwk, ec, 4)) != 0 ||
		    (r = json_get_string(jwk, "crv", &crv)) != 0)
			goto out;
		if (strcmp(crv, "P-256") != 0) {
			r = th_fail(TH_ERR_INVALID, "JWK curve %s not supported",
			    crv);
			goto out;
		}
		pt[0] = 0x04;
		if ((r = get_b64(jwk, "x", b, JWK_EC_COORD, JWK_EC_COORD)) != 0)
			goto out;
		memcpy(pt + 1, buf_ptr(b), JWK_EC_COORD);
		if ((r = get_b64(jwk, "y", b, JWK_EC_COORD, JWK_EC_COORD)) != 0)
			goto out;
		memcpy(pt + 1 + JWK_EC_COORD, buf_ptr(b), JWK_EC_COORD);
		if (!OSSL_PARAM_BLD_push_utf8_string(bld,
		    OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld,
		    OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt))) {
			r = TH_ERR_ALLOC;
			goto out;
		}
		r = pkey_fromdata("EC", bld, out);
	} else if (strcmp(kty, "RSA") == 0) {
		if ((r = json_only_members(jwk, rsa, 3)) != 0 ||
		    (r = get_b64(jwk, "n", b, JWK_RSA_MIN / 8,
		    JWK_RSA_MAX / 8)) != 0)
			goto out;
		n = BN_bin2bn(buf_ptr(b), (int)buf_len(b), NULL);
		if ((r = get_b64(jwk, "e", b, 1, 8)) != 0)
			goto out;
		e = BN_bin2bn(buf_ptr(b), (int)buf_len(b), NULL);
		if (n == NULL || e == NULL ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)) {
			r = TH_ERR_ALLOC;
			goto out;
		}
		r = pkey_fromdata("RSA", bld, out);
		if (r == 0 && jwk_pkey_alg(*out) != TH_ALG_RS256) {
			EVP_PKEY_free(*out);
			*out = NULL;
			r = th_fail(TH_ERR_INVALID, "RSA JWK must be 2048 to "
			    "4096 bits");
		}
	} else
		r = th_fail(TH_ERR_INVALID, "JWK kty \"%s\" not supported", kty);
 out:
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_BLD_free(bld);
	buf_free(b);
	return r;
}

int
jwk_thumbprint(EVP_PKEY *pub, char out[JWK_THUMBPRINT_LEN + 1])
{
	struct json_object *jwk = NULL;
	const char *x, *y, *n, *e;
	uint8_t digest[SHA_LEN];
	char canon[2048];
	struct buf *b = NULL;
	int r, len;

	if ((r = jwk_from_pkey(pub, &jwk)) != 0)
		return r;
	/* RFC 7638: required members only, lexicographic order, no spaces. */
	if (jwk_pkey_alg(pub) == TH_ALG_ES256) {
		json_get_string(jwk, "x", &x);
		json_get_string(jwk, "y", &y);
		len = snprintf(canon, sizeof(canon),
		    "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
		    x, y);
	} else {
		json_get_string(jwk, "n", &n);
		json_get_string(jwk, "e", &e);
		len = snprintf(canon, sizeof(canon),
		    "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
	}
	if (len <= 0 || (size_t)len >= sizeof(canon)) {
		r = TH_ERR_INTERNAL;
		goto out;
	}
	sha256((const uint8_t *)canon, (size_t)len, digest);
	if ((b = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if ((r = b64url_encode(b, digest, sizeof(digest))) != 0)
		goto out;
	memcpy(out, buf_ptr(b), JWK_THUMBPRINT_LEN);
	out[JWK_THUMBPRINT_LEN] = '\0';
 out:
	buf_free(b);
	json_object_put(jwk);
	return r;
}
