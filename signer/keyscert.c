#include <time.h>

#include "err.h"
#include "jwk.h"
#include "keyscert.h"
#include "rootstmt.h"
#include "typ.h"

/* Adds purpose p's public key as a JWK member name of c. */
static int
add_key(struct json_object *c, const char *name, struct keys *k,
    enum purpose p)
{
	struct json_object *jwk = NULL;
	EVP_PKEY *pk = NULL;
	int r;

	if ((r = rootstmt_pubkey(k, p, &pk)) == 0 &&
	    (r = jwk_from_pkey(pk, &jwk)) == 0)
		json_object_object_add(c, name, jwk);
	EVP_PKEY_free(pk);
	return r;
}

int
keyscert_make(const struct config *cfg, struct keys *k,
    const uint8_t *subject, size_t subject_len, struct buf *out)
{
	struct json_object *c;
	enum purpose ckp;
	int r = TH_ERR_ALLOC;

	/* The audit log countersigns with the TPM's attestation key, or
	 * where there is none with the audit key (alog.c's choice). */
	if (cfg->keys[PURPOSE_ATTESTATION].backend != BACKEND_NONE)
		ckp = PURPOSE_ATTESTATION;
	else if (cfg->keys[PURPOSE_AUDIT].backend != BACKEND_NONE)
		ckp = PURPOSE_AUDIT;
	else
		return th_fail(TH_ERR_NOT_FOUND, "no attestation or audit key "
		    "is configured to countersign an audit log");
	if ((c = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(c, "iss", json_object_new_string(
	    "threshold:root"));
	json_object_object_add(c, "sub", json_object_new_string_len(
	    (const char *)subject, (int)subject_len));
	json_object_object_add(c, "iat", json_object_new_int64(time(NULL)));
	json_object_object_add(c, "checkpoint_key", json_object_new_string(
	    ckp == PURPOSE_ATTESTATION ? "tpm-quote" : "token-signature"));
	if ((r = add_key(c, "ak", k, ckp)) != 0 ||
	    (r = add_key(c, "capability", k, PURPOSE_CAPABILITY)) != 0)
		goto out;
	if (cfg->keys[PURPOSE_ATTENUATION].backend == BACKEND_NONE)
		json_object_object_add(c, "attenuation", NULL);
	else if ((r = add_key(c, "attenuation", k, PURPOSE_ATTENUATION)) != 0)
		goto out;
	r = rootstmt_sign(k, TYP_KEYS_CERT, c, out);
 out:
	json_object_put(c);
	return r;
}
