/* Capabilities (docs/tokens.md, "Capability"): minted for exactly one
 * operation when an installed chain covers it, signed by the signer's
 * capability key, redeemed once. */
#ifndef TH_CAP_H
#define TH_CAP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "chain.h"
#include "scope.h"
#include "sigclient.h"
#include "store.h"

#define CAP_TTL_DEFAULT		15
#define CAP_SKEW		2	/* seconds an iat may lie in the future */
#define CAP_ISS			"threshold:broker"
#define CAP_PR_MAX		2147483647LL
#define CAP_PARAMS_MAX		4096	/* serialised "params" */

/* One operation with its exact parameters (docs/tokens.md, "Capability"):
 *   github.merge              repo, pr, target (the PR's base)
 *   github.pr.create          repo, target (base); params head, title,
 *                             body, draft
 *   github.comment            repo, pr; params body
 *   github.deployment.create  repo, target (the ref); params environment,
 *                             description
 *   github.workflow.dispatch  repo, target (the ref); params workflow,
 *                             inputs
 *   github.push               repo (git receive-pack; refs judged on arrival)
 *   github.fetch              repo (git upload-pack) */
struct cap_op {
	char		op[SCOPE_OP_MAX + 1];
	char		repo[SCOPE_REPO_MAX + 1];
	int64_t		pr;			/* 0 when the op has none */
	char		target[SCOPE_BRANCH_MAX + 1];	/* "" when none */
	char		params[CAP_PARAMS_MAX + 1];	/* JSON object, or "" */
};

struct cap_redeemed {
	struct cap_op		 op;
	char			 agent[CHAIN_NAME_MAX + 1];
	char			 jti[JWS_JTI_LEN + 1];
	int64_t			 exp;
	const struct chain	*chain;		/* held: cap_redeemed_release */
};

struct cap_ctx;

/* Fetches the delegation-root, capability and (if configured) attenuation
 * public keys from the signer once; signer is not kept.  aud is this broker's id
 * (store_instance); ttl 1..60 seconds. */
int	cap_ctx_new(struct sigc *signer, const char *aud, int ttl,
	    struct cap_ctx **out);
void	cap_ctx_free(struct cap_ctx *ctx);		/* NULL ok */
/* Capabilities issued (iat) before t are refused.  A broker sets its start
 * time: the store does not sync each spend to disk, so a power loss may
 * forget the last ones, and none minted before a restart is honoured after
 * it. */
void	cap_ctx_set_not_before(struct cap_ctx *ctx, int64_t t);
struct chain_ctx *cap_chains(struct cap_ctx *ctx);

/* The capability's "op" object for op (a new reference). */
struct json_object *cap_op_json(const struct cap_op *op);

/* Checks op's parameters against what the operation takes. */
int	cap_op_validate(const struct cap_op *op);

/* A capability's claims as docs/tokens.md defines them: exactly its
 * members, iss, sub, jti, the operation and its parameters, a chain of 2
 * to CHAIN_LINKS_MAX hashes, and 0 < exp - iat <= CAPABILITY_TTL_MAX; not
 * its signature, audience or time (the audit verifier judges those as of
 * its log).  *iat gets iat.  TH_ERR_INVALID with the reason. */
int	cap_claims_check(struct json_object *claims, int64_t *iat);

/* Mints a capability for agent ("agent:NAME") to do op, if an installed
 * chain covers it, signed through signer (one connection per thread);
 * appends the token to out and describes the chain in desc.  Refusals are
 * TH_ERR_DENIED with the reason. */
int	cap_mint(struct cap_ctx *ctx, struct sigc *signer, struct store *st,
	    const char *agent,
	    const struct cap_op *op, int64_t now, struct buf *out, char *desc,
	    size_t desclen);
/* Verifies and spends a capability; thread-safe given one store per
 * thread.  Refusals are TH_ERR_DENIED naming the failed check.  On success
 * out holds its chain until cap_redeemed_release (out is overwritten:
 * release a previous result first). */
int	cap_redeem(struct cap_ctx *ctx, struct store *st, const char *token,
	    size_t len, int64_t now, struct cap_redeemed *out);
/* Verifies without spending, and refuses one already spent: for the steps
 * of a git exchange before the one that spends it. */
int	cap_check(struct cap_ctx *ctx, struct store *st, const char *token,
	    size_t len, int64_t now, struct cap_redeemed *out);
/* Lets go of the chain a successful cap_redeem or cap_check holds for red
 * (the cache may then drop it); red->chain is NULL after. */
void	cap_redeemed_release(struct cap_ctx *ctx, struct cap_redeemed *red);
/* Spends a capability cap_check has just passed (atomically: of two
 * spends of one jti, one is refused as replayed), without verifying it
 * again.  Its id stays spent keep_s past its expiry: an operation judged
 * as of a past moment (a push, as of when its ref updates were in) must
 * still find it spent by another, however late it comes. */
int	cap_spend(struct store *st, const struct cap_redeemed *red,
	    int64_t now, int64_t keep_s);

#endif
