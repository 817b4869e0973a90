/* Delegations (docs/tokens.md, "Delegation"): a human's grant to an agent,
 * or an agent's narrower grant to a sub-agent. */
#ifndef TH_DELEG_H
#define TH_DELEG_H

#include <stdint.h>

#include <json-c/json.h>

#include "jws.h"

struct deleg {
	struct jws		*jws;
	const char		*iss, *sub, *parent, *jti;	/* borrowed */
	const char		*policy_hash;		/* NULL if inline */
	int64_t			 iat, nbf, exp;
	struct json_object	*ops;			/* borrowed */
	struct json_object	*policy;		/* borrowed, or NULL */
};

/* Parses token and validates every claim (not the signature). */
int	deleg_parse(const char *token, size_t len, struct deleg **out);
void	deleg_free(struct deleg *d);			/* NULL ok */

/* New claims (caller puts *out).  ops and policy are referenced, not
 * copied.  Exactly one of policy and policy_hash. */
int	deleg_claims(const char *iss, const char *sub, const char *parent,
	    struct json_object *ops, struct json_object *policy,
	    const char *policy_hash, int64_t iat, int64_t nbf, int64_t exp,
	    struct json_object **out);

#endif
