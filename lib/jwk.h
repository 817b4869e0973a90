/* Public keys as JWK (RFC 7517/7518): EC P-256 {"kty":"EC","crv":"P-256",
 * "x","y"} and RSA {"kty":"RSA","n","e"} (2048 to 4096 bits), and their RFC
 * 7638 thumbprints.  Parsing is strict: exactly these members, fixed
 * coordinate lengths, the point on the curve. */
#ifndef TH_JWK_H
#define TH_JWK_H

#include <json-c/json.h>
#include <openssl/evp.h>

#include "alg.h"
#include "buf.h"

#define JWK_THUMBPRINT_LEN	43	/* base64url of SHA-256 */

/* A new JSON object for pub (caller puts it). */
int	jwk_from_pkey(EVP_PKEY *pub, struct json_object **out);
int	jwk_to_pkey(struct json_object *jwk, EVP_PKEY **out);
/* The signature algorithm the key is for: ES256 or RS256. */
enum th_alg jwk_pkey_alg(EVP_PKEY *pub);
/* RFC 7638 thumbprint, base64url, NUL-terminated in out[44]. */
int	jwk_thumbprint(EVP_PKEY *pub, char out[JWK_THUMBPRINT_LEN + 1]);

#endif
