#include <openssl/x509.h>

#include "err.h"
#include "jwk.h"
#include "jws.h"
#include "rootstmt.h"
#include "sha.h"

int
rootstmt_pubkey(struct keys *k, enum purpose p, EVP_PKEY **out)
{
	struct buf *spki = buf_new();
	const uint8_t *q;
	enum th_alg alg;
	int r;

	*out = NULL;
	if (spki == NULL)
		return TH_ERR_ALLOC;
	if ((r = keys_pubkey(k, p, &alg, spki)) == 0) {
		q = buf_ptr(spki);
		if ((*out = d2i_PUBKEY(NULL, &q, (long)buf_len(spki))) == NULL)
			r = th_fail(TH_ERR_CRYPTO, "the %s public key does not "
			    "parse", purpose_name(p));
	}
	buf_free(spki);
	return r;
}

int
rootstmt_sign(struct keys *k, const char *typ, struct json_object *claims,
    struct buf *out)
{
	struct buf *tok = buf_new();
	EVP_PKEY *root = NULL;
	uint8_t digest[SHA_LEN], sig[TH_SIG_MAX];
	char kid[JWK_THUMBPRINT_LEN + 1];
	size_t siglen;
	int r = TH_ERR_ALLOC;

	if (tok == NULL)
		goto out;
	if ((r = rootstmt_pubkey(k, PURPOSE_DELEGATION_ROOT, &root)) != 0 ||
	    (r = jwk_thumbprint(root, kid)) != 0 ||
	    (r = jws_signing_input(tok, TH_ALG_ES256, typ, kid, claims)) != 0)
		goto out;
	sha256(buf_ptr(tok), buf_len(tok), digest);
	if ((r = keys_sign(k, PURPOSE_DELEGATION_ROOT, digest, sig,
	    &siglen)) != 0 || (r = jws_append_sig(tok, sig, siglen)) != 0)
		goto out;
	r = buf_put(out, buf_ptr(tok), buf_len(tok));
 out:
	EVP_PKEY_free(root);
	buf_free(tok);
	return r;
}
