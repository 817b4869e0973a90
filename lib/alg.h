/* Signature algorithms Threshold keys use, named as in JWS (RFC 7518). */
#ifndef TH_ALG_H
#define TH_ALG_H

enum th_alg {
	TH_ALG_NONE = 0,
	TH_ALG_ES256 = 1,	/* ECDSA P-256, SHA-256; signature r||s, 64 bytes */
	TH_ALG_RS256 = 2,	/* RSASSA-PKCS1-v1_5, SHA-256; RSA-2048 here */
};

#define TH_SIG_MAX	512	/* largest signature any backend returns */
#define TH_DIGEST_LEN	32	/* SHA-256 */

const char	*th_alg_name(enum th_alg alg);	/* "ES256", "RS256", "none" */
enum th_alg	 th_alg_from_name(const char *name); /* TH_ALG_NONE if unknown */

#endif
