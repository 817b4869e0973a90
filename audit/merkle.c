#include <string.h>

#include <openssl/evp.h>

#include "err.h"
#include "merkle.h"
#include "sha.h"

/* H(prefix || a || b), b optional. */
static void
hash3(uint8_t prefix, const void *a, size_t alen, const void *b, size_t blen,
    uint8_t out[MERKLE_HASH_LEN])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	/* Allocation failure would leave out undefined: make it a hash no
	 * tree can produce rather than crash. */
	if (c == NULL || EVP_DigestInit_ex(c, sha256_md(), NULL) != 1 ||
	    EVP_DigestUpdate(c, &prefix, 1) != 1 ||
	    EVP_DigestUpdate(c, a, alen) != 1 ||
	    (blen > 0 && EVP_DigestUpdate(c, b, blen) != 1) ||
	    EVP_DigestFinal_ex(c, out, NULL) != 1)
		memset(out, 0xff, MERKLE_HASH_LEN);
	EVP_MD_CTX_free(c);
}

void
merkle_leaf(const void *data, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	hash3(0x00, data, len, NULL, 0, out);
}

static void
node(const uint8_t l[MERKLE_HASH_LEN], const uint8_t r[MERKLE_HASH_LEN],
    uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t tmp[MERKLE_HASH_LEN];

	hash3(0x01, l, MERKLE_HASH_LEN, r, MERKLE_HASH_LEN, tmp);
	memcpy(out, tmp, MERKLE_HASH_LEN);
}

/* The largest power of two strictly below n (n >= 2). */
static size_t
split(size_t n)
{
	size_t k = 1;

	while (k << 1 < n)
		k <<= 1;
	return k;
}

int
merkle_root(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n,
    uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t l[MERKLE_HASH_LEN], r[MERKLE_HASH_LEN];
	size_t k;
	int e;

	if (n == 0)
		return th_fail(TH_ERR_INVALID, "empty Merkle tree");
	if (n == 1) {
		memcpy(out, leaves[0], MERKLE_HASH_LEN);
		return 0;
	}
	k = split(n);
	if ((e = merkle_root(leaves, k, l)) != 0 ||
	    (e = merkle_root(leaves + k, n - k, r)) != 0)
		return e;
	node(l, r, out);
	return 0;
}

int
merkle_path(const uint8_t (*leaves)[MERKLE_HASH_LEN], size_t n, size_t m,
    uint8_t (*proof)[MERKLE_HASH_LEN], size_t *len)
{
	size_t k;
	int e;

	if (m >= n)
		return th_fail(TH_ERR_INVALID, "leaf %zu outside a tree of %zu",
		    m, n);
	if (n == 1) {
		*len = 0;
		return 0;
	}
	k = split(n);
	if (m < k) {
		if ((e = merkle_path(leaves, k, m, proof, len)) != 0)
			return e;
		if (*len == MERKLE_PROOF_MAX)
			return TH_ERR_TOO_LONG;
		return merkle_root(leaves + k, n - k, proof[(*len)++]);
	}
	if ((e = merkle_path(leaves + k, n - k, m - k, proof, len)) != 0)
		return e;
	if (*len == MERKLE_PROOF_MAX)
		return TH_ERR_TOO_LONG;
	return merkle_root(leaves, k, proof[(*len)++]);
}

int
merkle_verify(const uint8_t leaf[MERKLE_HASH_LEN], size_t m, size_t n,
    const uint8_t (*proof)[MERKLE_HASH_LEN], size_t len,
    const uint8_t root[MERKLE_HASH_LEN])
{
	uint8_t r[MERKLE_HASH_LEN];
	size_t fn = m, sn = n - 1, i;

	if (m >= n)
		return th_fail(TH_ERR_CRYPTO, "leaf index outside the tree");
	memcpy(r, leaf, MERKLE_HASH_LEN);
	for (i = 0; i < len; i++) {
		if (sn == 0)
			return th_fail(TH_ERR_CRYPTO, "inclusion proof too long");
		if ((fn & 1) || fn == sn) {
			node(proof[i], r, r);
			if (!(fn & 1))
				while (fn != 0 && !(fn & 1)) {
					fn >>= 1;
					sn >>= 1;
				}
		} else
			node(r, proof[i], r);
		fn >>= 1;
		sn >>= 1;
	}
	if (sn != 0 || memcmp(r, root, MERKLE_HASH_LEN) != 0)
		return th_fail(TH_ERR_CRYPTO, "inclusion proof does not lead to "
		    "the checkpoint's root");
	return 0;
}
