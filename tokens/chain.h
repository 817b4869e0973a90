/* Delegation chains (docs/tokens.md, "Chains"): certificate -> delegation_1
 * -> ... -> delegation_n, each link signed by the one above and narrowing
 * it.  What never changes (signatures, linkage, attenuation) is verified
 * once per leaf and cached by the leaf's hash; what does (time, revocation)
 * is checked per request by chain_check_live.  The cache holds up to
 * CHAIN_CACHE_MAX chains: when full, one nobody holds makes room, an
 * expired one first, else the least recently used (verified again if it is
 * asked for again). */
#ifndef TH_CHAIN_H
#define TH_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "jws.h"
#include "scope.h"
#include "store.h"

#define CHAIN_LINKS_MAX		8	/* a certificate and 7 delegations */
#define CHAIN_CACHE_MAX		1024
#define CHAIN_NAME_MAX		(6 + NAME_MAX_LEN)	/* "agent:" + name */

struct chain {
	/* The cache's: holders (chain_get .. chain_put), last use. */
	unsigned		 refs;
	uint64_t		 used;
	size_t			 n;		/* links, certificate included */
	char			 hashes[CHAIN_LINKS_MAX][JWS_HASH_LEN + 1];
	char			 names[CHAIN_LINKS_MAX][CHAIN_NAME_MAX + 1];
	int64_t			 nbf[CHAIN_LINKS_MAX], exp[CHAIN_LINKS_MAX];
	struct json_object	*ops;		/* the leaf's scopes */
	struct json_object	*policy;	/* the leaf's policy, resolved */
};

struct chain_ctx;

/* root: the delegation-root public key; atten: the attenuation key (NULL if
 * agents may not re-delegate).  References are taken. */
int	chain_ctx_new(EVP_PKEY *root, EVP_PKEY *atten, struct chain_ctx **out);
void	chain_ctx_free(struct chain_ctx *ctx);		/* NULL ok */

/* The verified chain ending at the installed delegation leaf_hash.  The
 * result belongs to ctx and stays valid until chain_put; thread-safe. */
int	chain_get(struct chain_ctx *ctx, struct store *st,
	    const char *leaf_hash, const struct chain **out);
void	chain_put(struct chain_ctx *ctx, const struct chain *c); /* NULL ok */
/* Verifies a delegation that is not installed yet against the installed
 * links above it; on success *out is the caller's (chain_free). */
int	chain_verify_new(struct chain_ctx *ctx, struct store *st,
	    const char *token, size_t len, struct chain **out);
void	chain_free(struct chain *c);			/* NULL ok */

/* Every link valid at now and none revoked.  TH_ERR_DENIED naming the
 * link otherwise. */
int	chain_check_live(const struct chain *c, struct store *st, int64_t now);
/* Every link valid at now (nbf, exp), revocation not considered. */
int	chain_check_time(const struct chain *c, int64_t now);
/* "human:alice -> agent:coder-1" into out. */
void	chain_describe(const struct chain *c, char *out, size_t outlen);

#endif
