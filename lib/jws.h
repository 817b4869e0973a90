/* Compact JWS (RFC 7515) as Threshold's tokens use it: ES256 or RS256 only
 * (never "none" or an HMAC), header members alg, typ and kid only, claims a strict JSON object, every part strict base64url, the whole
 * token at most JWS_TOKEN_MAX bytes.  A token's identity is the SHA-256 of
 * its exact compact serialisation (jws->hash). */
#ifndef TH_JWS_H
#define TH_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "alg.h"
#include "buf.h"

#define JWS_TOKEN_MAX	(16 * 1024)
#define JWS_TYP_MAX	64
#define JWS_KID_MAX	128
#define JWS_HASH_LEN	43	/* base64url of SHA-256 */

struct jws {
	enum th_alg		 alg;
	char			 typ[JWS_TYP_MAX + 1];
	char			 kid[JWS_KID_MAX + 1];	/* "" if absent */
	struct json_object	*claims;		/* owned */
	char			*token;			/* owned, NUL-terminated */
	size_t			 token_len;
	size_t			 input_len;	/* signing input is token[0..) */
	uint8_t			 sig[TH_SIG_MAX];
	size_t			 siglen;
	uint8_t			 digest[32];	/* SHA-256 of the token */
	char			 hash[JWS_HASH_LEN + 1];	/* its base64url */
};

/* Parses without verifying; *out is freed with jws_free.  typ may be
 * absent ("" then): callers compare it with the typ they expect. */
int	jws_parse(const char *token, size_t len, struct jws **out);
/* Parses a signing input (header.claims, no signature), as the signer
 * receives it; siglen is 0 and hash is empty. */
int	jws_parse_input(const char *input, size_t len, struct jws **out);
void	jws_free(struct jws *j);			/* NULL ok */
/* Verifies the signature with pub; the header's alg must be the key's
 * (ES256 with EC P-256, RS256 with RSA), and an ES256 s must be in the lower
 * half of the group order; TH_ERR_CRYPTO otherwise. */
int	jws_verify(const struct jws *j, EVP_PKEY *pub);
/* The same for many tokens under one key: set up once, then used by one
 * thread at a time. */
struct jws_verifier;
int	jws_verifier_new(EVP_PKEY *pub, struct jws_verifier **out);
int	jws_verify_with(struct jws_verifier *v, const struct jws *j);
void	jws_verifier_free(struct jws_verifier *v);	/* NULL ok */

/* Appends BASE64URL(header) "." BASE64URL(claims) for signing. */
int	jws_signing_input(struct buf *out, enum th_alg alg, const char *typ,
	    const char *kid, struct json_object *claims);
/* Appends "." BASE64URL(sig), turning a signing input into a token.  A
 * 64-byte (ES256) signature is written in its low-S form. */
int	jws_append_sig(struct buf *token, const uint8_t *sig, size_t siglen);
/* Rewrites an ES256 r||s signature into its low-S form in place. */
int	jws_es256_low_s(uint8_t sig[64]);
/* base64url(SHA-256(p[len])) into out[JWS_HASH_LEN + 1]. */
void	jws_hash(const void *p, size_t len, char out[JWS_HASH_LEN + 1]);

#define JWS_JTI_LEN	22	/* base64url of 128 random bits */

/* A fresh random token id into out[JWS_JTI_LEN + 1]. */
int	jws_new_jti(char out[JWS_JTI_LEN + 1]);
/* 1 if s is a jti: 22 base64url characters, the encoding of 16 bytes. */
int	jws_jti_valid(const char *s);

#endif
