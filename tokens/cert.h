/* Human certificates (docs/tokens.md, "Human certificate"): issued by the
 * delegation-root key, binding human:NAME to her public key. */
#ifndef TH_CERT_H
#define TH_CERT_H

#include <stdint.h>

#include <openssl/evp.h>

#include "jws.h"

#define CERT_ISS		"threshold:root"
#define CERT_DISPLAY_MAX	128
#define CERT_EMAIL_MAX		254

struct cert {
	struct jws	*jws;
	const char	*sub, *name, *email, *jti;	/* borrowed from jws */
	int64_t		 iat, nbf, exp;
	EVP_PKEY	*pub;
};

/* Parses token and validates every claim (not the signature). */
int	cert_parse(const char *token, size_t len, struct cert **out);
void	cert_free(struct cert *c);			/* NULL ok */

/* New claims for a certificate (caller puts *out). */
int	cert_claims(const char *sub, const char *name, const char *email,
	    EVP_PKEY *pub, int64_t iat, int64_t nbf, int64_t exp,
	    struct json_object **out);

#endif
