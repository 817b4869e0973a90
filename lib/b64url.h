/* base64url without padding (RFC 4648 section 5, as JWS uses it).  Decoding
 * is strict: no padding, no whitespace, no characters outside the alphabet,
 * and the unused low bits of the last character must be zero, so every byte
 * string has exactly one accepted encoding. */
#ifndef TH_B64URL_H
#define TH_B64URL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define B64URL_ENCODED_LEN(n)	(((n) * 4 + 2) / 3)

/* Appends the encoding of p[len] to out (no NUL). */
int	b64url_encode(struct buf *out, const uint8_t *p, size_t len);
/* A SHA-256 digest's encoding, as hashes are written in tokens and the
 * audit log: 43 characters and a NUL, no allocation. */
#define B64URL_DIGEST_LEN	43
void	b64url_digest(const uint8_t d[32], char out[B64URL_DIGEST_LEN + 1]);
/* Appends the decoding of s[slen] to out; TH_ERR_INVALID if malformed. */
int	b64url_decode(struct buf *out, const char *s, size_t slen);
/* 1 if the string s is the encoding of some nbytes bytes (a jti: 16, a
 * hash: 32), in the one form b64url_decode accepts. */
int	b64url_is(const char *s, size_t nbytes);

#endif
