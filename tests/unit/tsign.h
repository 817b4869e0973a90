/* Signing JWS in tests, with a software key: what the signer does with
 * its keys.  Include after cmocka.h. */
#ifndef TH_TESTS_TSIGN_H
#define TH_TESTS_TSIGN_H

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "buf.h"
#include "jws.h"

/* Signs the signing input in tok with key the JWS way (r||s for EC) and
 * appends the signature. */
static void
append_sig(struct buf *tok, EVP_PKEY *key)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[512], rs[64];
	const uint8_t *p = der;
	size_t len = sizeof(der);
	ECDSA_SIG *es;

	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key),
	    1);
	assert_int_equal(EVP_DigestSign(md, der, &len, buf_ptr(tok),
	    buf_len(tok)), 1);
	if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
		es = d2i_ECDSA_SIG(NULL, &p, (long)len);
		BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32);
		ECDSA_SIG_free(es);
		assert_int_equal(jws_append_sig(tok, rs, 64), 0);
	} else
		assert_int_equal(jws_append_sig(tok, der, len), 0);
	EVP_MD_CTX_free(md);
}

#endif
