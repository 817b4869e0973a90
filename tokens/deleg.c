#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "deleg.h"
#include "err.h"
#include "json.h"
#include "policy.h"
#include "scope.h"
#include "typ.h"

void
deleg_free(struct deleg *d)
{
	if (d == NULL)
		return;
	jws_free(d->jws);
	free(d);
}

static int
hash_valid(const char *s)
{
	return b64url_is(s, 32);
}

int
deleg_parse(const char *token, size_t len, struct deleg **out)
{
	static const char *const members[] = { "iss", "sub", "parent", "jti",
	    "iat", "nbf", "exp", "ops", "policy", "policy_hash" };
	struct json_object *cl;
	struct deleg *d;
	int r, inline_policy;

	*out = NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return TH_ERR_ALLOC;
	if ((r = jws_parse(token, len, &d->jws)) != 0)
		goto out;
	if (strcmp(d->jws->typ, TYP_DELEGATION) != 0) {
		r = th_fail(TH_ERR_INVALID, "typ \"%s\" is not a delegation",
		    d->jws->typ);
		goto out;
	}
	cl = d->jws->claims;
	if ((r = json_only_members(cl, members, 10)) != 0 ||
	    (r = json_get_string(cl, "iss", &d->iss)) != 0 ||
	    (r = json_get_string(cl, "sub", &d->sub)) != 0 ||
	    (r = json_get_string(cl, "parent", &d->parent)) != 0 ||
	    (r = json_get_string_len(cl, "jti", JWS_JTI_LEN, &d->jti)) != 0 ||
	    (r = json_get_int64(cl, "iat", &d->iat)) != 0 ||
	    (r = json_get_int64(cl, "nbf", &d->nbf)) != 0 ||
	    (r = json_get_int64(cl, "exp", &d->exp)) != 0)
		goto out;
	if ((!name_valid(d->iss, "human") && !name_valid(d->iss, "agent")) ||
	    !name_valid(d->sub, "agent") || !hash_valid(d->parent) ||
	    !jws_jti_valid(d->jti) || d->nbf > d->exp) {
		r = th_fail(TH_ERR_INVALID, "bad iss, sub, parent, jti or "
		    "lifetime");
		goto out;
	}
	if (!json_object_object_get_ex(cl, "ops", &d->ops)) {
		r = th_fail(TH_ERR_INVALID, "missing \"ops\"");
		goto out;
	}
	if ((r = scope_validate(d->ops)) != 0)
		goto out;
	inline_policy = json_object_object_get_ex(cl, "policy", &d->policy);
	r = json_get_string(cl, "policy_hash", &d->policy_hash);
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		goto out;
	if (inline_policy == (r == 0)) {
		r = th_fail(TH_ERR_INVALID, "exactly one of policy and "
		    "policy_hash is required");
		goto out;
	}
	if (inline_policy) {
		d->policy_hash = NULL;
		r = policy_validate(d->policy);
	} else {
		d->policy = NULL;
		r = hash_valid(d->policy_hash) ? 0 :
		    th_fail(TH_ERR_INVALID, "bad policy_hash");
	}
	if (r != 0)
		goto out;
	*out = d;
	d = NULL;
 out:
	if (r != 0)
		r = th_fail(r, "delegation: %s", th_errmsg(r));
	deleg_free(d);
	return r;
}

int
deleg_claims(const char *iss, const char *sub, const char *parent,
    struct json_object *ops, struct json_object *policy,
    const char *policy_hash, int64_t iat, int64_t nbf, int64_t exp,
    struct json_object **out)
{
	struct json_object *o;
	char jti[JWS_JTI_LEN + 1];
	int r;

	*out = NULL;
	if ((!name_valid(iss, "human") && !name_valid(iss, "agent")) ||
	    !name_valid(sub, "agent"))
		return th_fail(TH_ERR_INVALID, "delegations go from human:NAME "
		    "or agent:NAME to agent:NAME");
	if (nbf > exp)
		return th_fail(TH_ERR_INVALID, "nbf after exp");
	if ((policy == NULL) == (policy_hash == NULL))
		return th_fail(TH_ERR_INVALID, "exactly one of policy and "
		    "policy_hash");
	if ((r = scope_validate(ops)) != 0 ||
	    (policy != NULL && (r = policy_validate(policy)) != 0) ||
	    (r = jws_new_jti(jti)) != 0)
		return r;
	if ((o = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(o, "iss", json_object_new_string(iss));
	json_object_object_add(o, "sub", json_object_new_string(sub));
	json_object_object_add(o, "parent", json_object_new_string(parent));
	json_object_object_add(o, "jti", json_object_new_string(jti));
	json_object_object_add(o, "iat", json_object_new_int64(iat));
	json_object_object_add(o, "nbf", json_object_new_int64(nbf));
	json_object_object_add(o, "exp", json_object_new_int64(exp));
	json_object_object_add(o, "ops", json_object_get(ops));
	if (policy != NULL)
		json_object_object_add(o, "policy", json_object_get(policy));
	else
		json_object_object_add(o, "policy_hash",
		    json_object_new_string(policy_hash));
	*out = o;
	return 0;
}
