/* Merkle tree hashing of RFC 6962 (section 2.1), SHA-256: a leaf hashes
 * 0x00 || data, an interior node 0x01 || left || right, and a tree of n
 * leaves splits at the largest power of two below n. */
#ifndef TH_MERKLE_H
#define TH_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN		32
#define MERKLE_PROOF_MAX	64	/* path length for up to 2^64 leaves */

void	merkle_leaf(const void *data, size_t len,
	    uint8_t out[MERKLE_HASH_LEN]);
/* The root (MTH) over n leaf hashes; n >= 1. */
int	merkle_root(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n,
	    uint8_t out[MERKLE_HASH_LEN]);
/* The audit path (PATH(m, D[n])) of leaf m in a tree of n leaves, bottom
 * up, into proof; *len is the number of hashes. */
int	merkle_path(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n,
	    size_t m, uint8_t (*proof)[MERKLE_HASH_LEN], size_t *len);
/* 0 if leaf (a leaf hash) at index m of a tree of n leaves, with proof,
 * yields root; TH_ERR_CRYPTO otherwise (RFC 9162 2.1.3.2 algorithm). */
int	merkle_verify(const uint8_t leaf[MERKLE_HASH_LEN], size_t m, size_t n,
	    const uint8_t (*proof)[MERKLE_HASH_LEN], size_t len,
	    const uint8_t root[MERKLE_HASH_LEN]);

#endif
