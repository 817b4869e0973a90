#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "mintset.h"
#include "sha.h"
#include "typ.h"

struct cap_ctx {
	struct chain_ctx	*chains;
	EVP_PKEY		*cap_pub;
	char			 kid[JWK_THUMBPRINT_LEN + 1];
	char			 aud[STORE_INSTANCE_MAX + 1];
	int			 ttl;
	int64_t			 not_before;	/* refuse iat before this */
	struct mintset		*minted;
};

/* What each operation takes besides its repository. */
static const struct {
	const char	*op;
	int		 needs_pr;
	int		 needs_target;
	const char	*params[5];	/* allowed, NULL-terminated */
	const char	*required[3];
} ops[] = {
	{ "github.merge",		1, 1, { NULL }, { NULL } },
	{ "github.pr.create",		0, 1, { "head", "title", "body", "draft",
	    NULL }, { "head", "title", NULL } },
	{ "github.comment",		1, 0, { "body", NULL }, { "body", NULL } },
	{ "github.deployment.create",	0, 1, { "environment", "description",
	    NULL }, { NULL } },
	{ "github.workflow.dispatch",	0, 1, { "workflow", "inputs", NULL },
	    { "workflow", NULL } },
	/* Git over the broker's smart-HTTP endpoint: the refs are judged
	 * when the push arrives, against the scope's targets. */
	{ "github.push",		0, 0, { NULL }, { NULL } },
	{ "github.fetch",		0, 0, { NULL }, { NULL } },
};

static int
listed(const char *const *names, const char *k)
{
	for (; *names != NULL; names++)
		if (strcmp(*names, k) == 0)
			return 1;
	return 0;
}

/* Strings, except draft (boolean) and inputs (an object of at most 10
 * strings), as GitHub takes them. */
static int
params_validate(size_t i, const char *text)
{
	struct json_object *p = NULL, *v;
	size_t k;
	int r = 0;

	if (text[0] == '\0')
		p = json_object_new_object();
	else if ((r = json_parse_strict(text, strlen(text), CAP_PARAMS_MAX,
	    &p)) != 0 || !json_object_is_type(p, json_type_object)) {
		json_object_put(p);
		return th_fail(TH_ERR_INVALID, "params must be a JSON object");
	}
	json_object_object_foreach(p, key, val) {
		if (!listed(ops[i].params, key)) {
			r = th_fail(TH_ERR_INVALID, "%s takes no parameter "
			    "\"%.32s\"", ops[i].op, key);
			break;
		}
		if (strcmp(key, "draft") == 0 ?
		    !json_object_is_type(val, json_type_boolean) :
		    strcmp(key, "inputs") == 0 ?
		    !json_object_is_type(val, json_type_object) ||
		    json_object_object_length(val) > 10 :
		    !json_object_is_type(val, json_type_string) ||
		    json_object_get_string_len(val) == 0) {
			r = th_fail(TH_ERR_INVALID, "bad value for %s", key);
			break;
		}
		if (strcmp(key, "inputs") == 0) {
			json_object_object_foreach(val, ik, iv) {
				(void)ik;
				if (!json_object_is_type(iv, json_type_string))
					r = th_fail(TH_ERR_INVALID, "workflow "
					    "inputs must be strings");
			}
		}
	}
	for (k = 0; r == 0 && ops[i].required[k] != NULL; k++)
		if (!json_object_object_get_ex(p, ops[i].required[k], &v))
			r = th_fail(TH_ERR_INVALID, "%s needs parameter %s",
			    ops[i].op, ops[i].required[k]);
	json_object_put(p);
	return r;
}

int
cap_op_validate(const struct cap_op *op)
{
	size_t i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].op, op->op) == 0)
			break;
	if (i == sizeof(ops) / sizeof(ops[0]))
		return th_fail(TH_ERR_INVALID, "unknown operation \"%s\"",
		    op->op);
	if (!repo_valid(op->repo, 0))
		return th_fail(TH_ERR_INVALID, "\"%s\" is not OWNER/NAME",
		    op->repo);
	if (ops[i].needs_pr != (op->pr != 0) || op->pr < 0 ||
	    op->pr > CAP_PR_MAX)
		return th_fail(TH_ERR_INVALID, "%s %s a pull request number",
		    op->op, ops[i].needs_pr ? "needs" : "takes no");
	if (ops[i].needs_target != (op->target[0] != '\0') ||
	    (op->target[0] != '\0' && !branch_valid(op->target, 0)))
		return th_fail(TH_ERR_INVALID, "%s %s a valid target branch",
		    op->op, ops[i].needs_target ? "needs" : "takes no");
	return params_validate(i, op->params);
}

int
cap_ctx_new(struct sigc *signer, const char *aud, int ttl,
    struct cap_ctx **out)
{
	struct cap_ctx *ctx;
	EVP_PKEY *root = NULL, *atten = NULL;
	enum th_alg alg;
	int r;

	*out = NULL;
	if (ttl < 1 || ttl > CAPABILITY_TTL_MAX)
		return th_fail(TH_ERR_CONFIG, "capability ttl must be 1..%d s",
		    CAPABILITY_TTL_MAX);
	if (strlen(aud) > STORE_INSTANCE_MAX)
		return th_fail(TH_ERR_CONFIG, "audience too long");
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL ||
	    (ctx->minted = mintset_new()) == NULL) {
		free(ctx);
		return TH_ERR_ALLOC;
	}
	ctx->ttl = ttl;
	strcpy(ctx->aud, aud);
	if ((r = sigc_pubkey(signer, "delegation-root", &alg, &root)) != 0 ||
	    (r = sigc_pubkey(signer, "capability", &alg, &ctx->cap_pub)) != 0 ||
	    (r = jwk_thumbprint(ctx->cap_pub, ctx->kid)) != 0)
		goto out;
	r = sigc_pubkey(signer, "attenuation", &alg, &atten);
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		goto out;
	if ((r = chain_ctx_new(root, atten, &ctx->chains)) != 0)
		goto out;
	*out = ctx;
	ctx = NULL;
 out:
	EVP_PKEY_free(root);
	EVP_PKEY_free(atten);
	cap_ctx_free(ctx);
	return r;
}

void
cap_ctx_set_not_before(struct cap_ctx *ctx, int64_t t)
{
	ctx->not_before = t;
}

void
cap_ctx_free(struct cap_ctx *ctx)
{
	if (ctx == NULL)
		return;
	chain_ctx_free(ctx->chains);
	EVP_PKEY_free(ctx->cap_pub);
	mintset_free(ctx->minted);
	free(ctx);
}

struct chain_ctx *
cap_chains(struct cap_ctx *ctx)
{
	return ctx->chains;
}

struct json_object *
cap_op_json(const struct cap_op *op)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	json_object_object_add(o, "op", json_object_new_string(op->op));
	json_object_object_add(o, "repo", json_object_new_string(op->repo));
	if (op->pr != 0)
		json_object_object_add(o, "pr", json_object_new_int64(op->pr));
	if (op->target[0] != '\0')
		json_object_object_add(o, "target",
		    json_object_new_string(op->target));
	if (op->params[0] != '\0')
		json_object_object_add(o, "params",
		    json_tokener_parse(op->params));
	return o;
}

static int
covers(const struct chain *c, const char *agent, const struct cap_op *op)
{
	struct scope_req req = { op->op, op->repo,
	    op->target[0] ? op->target : NULL };

	return strcmp(c->names[c->n - 1], agent) == 0 &&
	    scope_covers(c->ops, &req);
}

/* The first installed, live chain for agent that covers op; the caller
 * puts it (chain_put). */
static int
find_chain(struct cap_ctx *ctx, struct store *st, const char *agent,
    const struct cap_op *op, int64_t now, const struct chain **out)
{
	char leaves[STORE_LEAVES_MAX][JWS_HASH_LEN + 1];
	char why[256] = "no delegation to this agent is installed";
	const struct chain *c;
	size_t n, i;
	int r;

	if ((r = store_find_leaves(st, agent, now, leaves, STORE_LEAVES_MAX,
	    &n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		c = NULL;
		if ((r = chain_get(ctx->chains, st, leaves[i], &c)) != 0 ||
		    (r = chain_check_live(c, st, now)) != 0) {
			chain_put(ctx->chains, c);
			if (r != TH_ERR_DENIED)
				return r;
			snprintf(why, sizeof(why), "%s", th_errmsg(r));
			continue;
		}
		if (covers(c, agent, op)) {
			*out = c;
			return 0;
		}
		chain_put(ctx->chains, c);
		snprintf(why, sizeof(why), "no delegation covers it");
	}
	return th_fail(TH_ERR_DENIED, "operation not covered: %s %s for %s "
	    "(%s)", op->op, op->repo, agent, why);
}

int
cap_mint(struct cap_ctx *ctx, struct sigc *signer, struct store *st,
    const char *agent,
    const struct cap_op *op, int64_t now, struct buf *out, char *desc,
    size_t desclen)
{
	struct json_object *claims = NULL, *chain = NULL;
	const struct chain *c = NULL;
	uint8_t sig[TH_SIG_MAX], h[SHA_LEN];
	char jti[JWS_JTI_LEN + 1];
	struct buf *tok = NULL;
	enum th_alg alg;
	size_t i, siglen;
	int r;

	if (!name_valid(agent, "agent"))
		return th_fail(TH_ERR_INVALID, "\"%s\" is not agent:NAME",
		    agent);
	if ((r = cap_op_validate(op)) != 0 ||
	    (r = find_chain(ctx, st, agent, op, now, &c)) != 0 ||
	    (r = jws_new_jti(jti)) != 0)
		goto out;
	if ((claims = json_object_new_object()) == NULL ||
	    (chain = json_object_new_array()) == NULL ||
	    (tok = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < c->n; i++)
		json_object_array_add(chain,
		    json_object_new_string(c->hashes[i]));
	json_object_object_add(claims, "iss", json_object_new_string(CAP_ISS));
	json_object_object_add(claims, "aud", json_object_new_string(ctx->aud));
	json_object_object_add(claims, "sub", json_object_new_string(agent));
	json_object_object_add(claims, "jti", json_object_new_string(jti));
	json_object_object_add(claims, "iat", json_object_new_int64(now));
	json_object_object_add(claims, "exp",
	    json_object_new_int64(now + ctx->ttl));
	json_object_object_add(claims, "op", cap_op_json(op));
	json_object_object_add(claims, "chain", chain);
	chain = NULL;
	if ((r = jws_signing_input(tok, TH_ALG_ES256, TYP_CAPABILITY, ctx->kid,
	    claims)) != 0 ||
	    (r = sigc_sign(signer, "capability", buf_ptr(tok),
	    buf_len(tok), &alg, sig, &siglen)) != 0 ||
	    (r = jws_append_sig(tok, sig, siglen)) != 0 ||
	    (r = buf_put(out, buf_ptr(tok), buf_len(tok))) != 0)
		goto out;
	sha256(buf_ptr(tok), buf_len(tok), h);
	mintset_add(ctx->minted, h, now + ctx->ttl);
	chain_describe(c, desc, desclen);
 out:
	chain_put(ctx->chains, c);
	json_object_put(claims);
	json_object_put(chain);
	buf_free(tok);
	return r;
}

/* Copies a string claim of at most max bytes into dst. */
static int
get_into(struct json_object *o, const char *key, char *dst, size_t max)
{
	const char *s;
	int r;

	if ((r = json_get_string_len(o, key, max, &s)) != 0)
		return r;
	strcpy(dst, s);
	return 0;
}

static int
parse_op(struct json_object *claims, struct cap_op *op)
{
	static const char *const members[] = { "op", "repo", "pr", "target",
	    "params" };
	struct json_object *o, *p;
	const char *text;
	int r;

	memset(op, 0, sizeof(*op));
	if (!json_object_object_get_ex(claims, "op", &o) ||
	    !json_object_is_type(o, json_type_object))
		return th_fail(TH_ERR_INVALID, "op is not an object");
	if ((r = json_only_members(o, members, 5)) != 0 ||
	    (r = get_into(o, "op", op->op, SCOPE_OP_MAX)) != 0 ||
	    (r = get_into(o, "repo", op->repo, SCOPE_REPO_MAX)) != 0)
		return r;
	r = json_get_int64(o, "pr", &op->pr);
	if (r == 0 && op->pr == 0)
		return th_fail(TH_ERR_INVALID, "pr 0");
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		return r;
	r = get_into(o, "target", op->target, SCOPE_BRANCH_MAX);
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		return r;
	if (json_object_object_get_ex(o, "params", &p)) {
		text = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
		if (!json_object_is_type(p, json_type_object) ||
		    strlen(text) > CAP_PARAMS_MAX)
			return th_fail(TH_ERR_INVALID, "bad params");
		strcpy(op->params, text);
	}
	return cap_op_validate(op);
}

/* Every claim and its format; signature and time are checked by the
 * caller. */
static int
parse_claims(struct json_object *cl, struct cap_redeemed *out,
    const char **aud, int64_t *iat, int64_t *exp,
    struct json_object **chain)
{
	static const char *const members[] = { "iss", "aud", "sub", "jti",
	    "iat", "exp", "op", "chain" };
	const char *iss;
	size_t i, n;
	int r;

	if ((r = json_only_members(cl, members, 8)) != 0 ||
	    (r = json_get_string(cl, "iss", &iss)) != 0 ||
	    (r = json_get_string(cl, "aud", aud)) != 0 ||
	    (r = get_into(cl, "sub", out->agent, CHAIN_NAME_MAX)) != 0 ||
	    (r = get_into(cl, "jti", out->jti, JWS_JTI_LEN)) != 0 ||
	    (r = json_get_int64(cl, "iat", iat)) != 0 ||
	    (r = json_get_int64(cl, "exp", exp)) != 0 ||
	    (r = parse_op(cl, &out->op)) != 0)
		return r;
	if (strcmp(iss, CAP_ISS) != 0 || !name_valid(out->agent, "agent") ||
	    !jws_jti_valid(out->jti))
		return th_fail(TH_ERR_INVALID, "bad iss, sub or jti");
	if (!json_object_object_get_ex(cl, "chain", chain) ||
	    !json_object_is_type(*chain, json_type_array) ||
	    (n = json_object_array_length(*chain)) < 2 ||
	    n > CHAIN_LINKS_MAX)
		return th_fail(TH_ERR_INVALID, "chain must list 2 to %d hashes",
		    CHAIN_LINKS_MAX);
	for (i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(*chain, i),
		    json_type_string))
			return th_fail(TH_ERR_INVALID, "chain entry not a "
			    "string");
	return 0;
}

/* 0 < exp - iat <= CAPABILITY_TTL_MAX, as unsigned: exp - iat could
 * overflow int64. */
static int
lifetime_ok(int64_t iat, int64_t exp)
{
	return exp > iat &&
	    (uint64_t)exp - (uint64_t)iat <= (uint64_t)CAPABILITY_TTL_MAX;
}

int
cap_claims_check(struct json_object *claims, int64_t *iat)
{
	struct cap_redeemed red;
	struct json_object *chain;
	const char *aud;
	int64_t exp;
	int r;

	memset(&red, 0, sizeof(red));
	if ((r = parse_claims(claims, &red, &aud, iat, &exp, &chain)) != 0)
		return r;
	if (!lifetime_ok(*iat, exp))
		return th_fail(TH_ERR_INVALID, "lifetime not within 1..%d s",
		    CAPABILITY_TTL_MAX);
	return 0;
}

static int verify(struct cap_ctx *, struct store *, const char *, size_t,
    int64_t, struct cap_redeemed *);

void
cap_redeemed_release(struct cap_ctx *ctx, struct cap_redeemed *red)
{
	chain_put(ctx->chains, red->chain);
	red->chain = NULL;
}

int
cap_spend(struct store *st, const struct cap_redeemed *red, int64_t now,
    int64_t keep_s)
{
	return store_spend(st, red->jti, red->exp + keep_s, now - CAP_SKEW);
}

int
cap_redeem(struct cap_ctx *ctx, struct store *st, const char *token,
    size_t len, int64_t now, struct cap_redeemed *out)
{
	int r;

	if ((r = verify(ctx, st, token, len, now, out)) == 0 &&
	    (r = cap_spend(st, out, now, 0)) != 0)
		cap_redeemed_release(ctx, out);
	return r;
}

int
cap_check(struct cap_ctx *ctx, struct store *st, const char *token,
    size_t len, int64_t now, struct cap_redeemed *out)
{
	int r;

	if ((r = verify(ctx, st, token, len, now, out)) == 0 &&
	    (r = store_spent(st, out->jti)) != 0)
		cap_redeemed_release(ctx, out);
	return r;
}

/* Everything redemption checks but spending. */
static int
verify(struct cap_ctx *ctx, struct store *st, const char *token,
    size_t len, int64_t now, struct cap_redeemed *out)
{
	struct json_object *chain;
	struct jws *j = NULL;
	const struct chain *c = NULL;
	const char *aud, *leaf;
	int64_t iat, exp;
	size_t i, n;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = jws_parse(token, len, &j)) != 0) {
		r = th_fail(TH_ERR_DENIED, "malformed capability: %s",
		    th_errmsg(r));
		goto out;
	}
	if (strcmp(j->typ, TYP_CAPABILITY) != 0) {
		r = th_fail(TH_ERR_DENIED, "malformed capability: typ \"%s\"",
		    j->typ);
		goto out;
	}
	/* A token this process minted is known good byte for byte; any
	 * other is verified (tokens/mintset.h). */
	if (!mintset_has(ctx->minted, j->digest, now) &&
	    (r = jws_verify(j, ctx->cap_pub)) != 0) {
		r = th_fail(TH_ERR_DENIED, "bad signature: %s", th_errmsg(r));
		goto out;
	}
	if ((r = parse_claims(j->claims, out, &aud, &iat, &exp, &chain))
	    != 0) {
		r = th_fail(TH_ERR_DENIED, "malformed capability: %s",
		    th_errmsg(r));
		goto out;
	}
	if (strcmp(aud, ctx->aud) != 0) {
		r = th_fail(TH_ERR_DENIED, "wrong audience: minted for %.64s",
		    aud);
		goto out;
	}
	if (iat < ctx->not_before) {
		r = th_fail(TH_ERR_DENIED, "minted before this broker started "
		    "(%lld s earlier): request a new capability",
		    (long long)(ctx->not_before - iat));
		goto out;
	}
	if (iat > now + CAP_SKEW) {
		r = th_fail(TH_ERR_DENIED, "issued in the future (%lld s ahead)",
		    (long long)(iat - now));
		goto out;
	}
	if (now >= exp) {
		r = th_fail(TH_ERR_DENIED, "expired %lld s ago",
		    (long long)(now - exp));
		goto out;
	}
	if (!lifetime_ok(iat, exp)) {
		r = th_fail(TH_ERR_DENIED, "lifetime not within 1..%d s",
		    CAPABILITY_TTL_MAX);
		goto out;
	}
	n = json_object_array_length(chain);
	leaf = json_object_get_string(json_object_array_get_idx(chain, n - 1));
	if ((r = chain_get(ctx->chains, st, leaf, &c)) != 0) {
		if (r != TH_ERR_DENIED && r != TH_ERR_IO && r != TH_ERR_ALLOC)
			r = th_fail(TH_ERR_DENIED, "chain: %s", th_errmsg(r));
		goto out;
	}
	for (i = 0; i < n; i++)
		if (c->n != n || strcmp(c->hashes[i], json_object_get_string(
		    json_object_array_get_idx(chain, i))) != 0) {
			r = th_fail(TH_ERR_DENIED, "chain does not match the "
			    "installed links");
			goto out;
		}
	if ((r = chain_check_live(c, st, now)) != 0)
		goto out;
	if (!covers(c, out->agent, &out->op)) {
		r = th_fail(TH_ERR_DENIED, "operation not covered by the chain");
		goto out;
	}
	out->exp = exp;
	out->chain = c;
	c = NULL;
 out:
	chain_put(ctx->chains, c);
	jws_free(j);
	return r;
}
