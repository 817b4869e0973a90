/* SHA-256 of a buffer with the digest fetched once: OpenSSL 3's one-shot
 * SHA256() looks the algorithm up again on every call, which shows in the
 * verifier's and the log's per-entry hashing. */
#ifndef TH_SHA_H
#define TH_SHA_H

#include <stddef.h>
#include <stdint.h>

#define SHA_LEN		32

#include <openssl/evp.h>

void	sha256(const void *p, size_t len, uint8_t out[SHA_LEN]);
/* The fetched digest, for incremental hashing; EVP_sha256() if the fetch
 * failed. */
const EVP_MD *sha256_md(void);

#endif
