#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "akcert.h"
#include "rootstmt.h"
#include "err.h"
#include "jwk.h"
#include "jws.h"
#include "makecred.h"
#include "sha.h"
#include "typ.h"

/* The statement's claims, for the AK ak and EK certificate ek_der. */
static struct json_object *
claims_for(const uint8_t *subject, size_t subject_len, EVP_PKEY *ak,
    const struct buf *ek_der)
{
	struct json_object *c = json_object_new_object(), *jwk = NULL;
	char ekh[JWS_HASH_LEN + 1];

	if (c == NULL || jwk_from_pkey(ak, &jwk) != 0) {
		json_object_put(c);
		return NULL;
	}
	jws_hash(buf_ptr(ek_der), buf_len(ek_der), ekh);
	json_object_object_add(c, "iss", json_object_new_string(
	    "threshold:root"));
	json_object_object_add(c, "sub", json_object_new_string_len(
	    (const char *)subject, (int)subject_len));
	json_object_object_add(c, "ak", jwk);
	json_object_object_add(c, "ek_cert", json_object_new_string(ekh));
	json_object_object_add(c, "method", json_object_new_string(
	    "TPM2_ActivateCredential"));
	json_object_object_add(c, "iat", json_object_new_int64(time(NULL)));
	return c;
}

int
akcert_make(struct keys *k, const uint8_t *subject, size_t subject_len,
    struct buf *out)
{
	struct buf *ek_der = buf_new(), *tpmt = buf_new(), *name = buf_new();
	struct buf *name2 = buf_new(), *idobj = buf_new(), *encs = buf_new();
	struct buf *got = buf_new();
	struct json_object *claims = NULL;
	EVP_PKEY *ak = NULL, *ak2 = NULL, *ek = NULL;
	uint8_t secret[32];
	const uint8_t *p;
	X509 *x = NULL;
	int r = TH_ERR_ALLOC;

	if (ek_der == NULL || tpmt == NULL || name == NULL || name2 == NULL ||
	    idobj == NULL || encs == NULL || got == NULL)
		goto out;
	if ((r = keys_ekcert(k, ek_der)) != 0)
		goto out;
	p = buf_ptr(ek_der);
	if ((x = d2i_X509(NULL, &p, (long)buf_len(ek_der))) == NULL ||
	    (ek = X509_get_pubkey(x)) == NULL) {
		r = th_fail(TH_ERR_INVALID, "the EK certificate does not parse");
		goto out;
	}
	/* The name is computed here from the public area, and that area
	 * must hold the very key the signer quotes with. */
	if ((r = keys_ak_public(k, tpmt, name)) != 0 ||
	    (r = makecred_ak_public(buf_ptr(tpmt), buf_len(tpmt), name2,
	    &ak)) != 0 ||
	    (r = rootstmt_pubkey(k, PURPOSE_ATTESTATION, &ak2)) != 0)
		goto out;
	if (buf_len(name) != buf_len(name2) || memcmp(buf_ptr(name),
	    buf_ptr(name2), buf_len(name)) != 0 || EVP_PKEY_eq(ak, ak2) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "the AK's public area does not match "
		    "the attestation key");
		goto out;
	}
	if (RAND_bytes(secret, sizeof(secret)) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "no randomness");
		goto out;
	}
	if ((r = makecred_make(ek, buf_ptr(name2), buf_len(name2), secret,
	    sizeof(secret), idobj, encs)) != 0 ||
	    (r = keys_activate(k, buf_ptr(idobj), buf_len(idobj),
	    buf_ptr(encs), buf_len(encs), got)) != 0)
		goto out;
	if (buf_len(got) != sizeof(secret) ||
	    CRYPTO_memcmp(buf_ptr(got), secret, sizeof(secret)) != 0) {
		r = th_fail(TH_ERR_CRYPTO, "the TPM did not recover the "
		    "credential: the AK is not in the EK's TPM");
		goto out;
	}
	if ((claims = claims_for(subject, subject_len, ak, ek_der)) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	r = rootstmt_sign(k, TYP_AK_CERT, claims, out);
 out:
	OPENSSL_cleanse(secret, sizeof(secret));
	json_object_put(claims);
	EVP_PKEY_free(ak);
	EVP_PKEY_free(ak2);
	EVP_PKEY_free(ek);
	X509_free(x);
	buf_free(ek_der);
	buf_free(tpmt);
	buf_free(name);
	buf_free(name2);
	buf_free(idobj);
	buf_free(encs);
	buf_free(got);
	return r;
}
