#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cert.h"
#include "chain.h"
#include "deleg.h"
#include "err.h"
#include "json.h"
#include "policy.h"

struct chain_ctx {
	EVP_PKEY	*root;
	EVP_PKEY	*atten;
	pthread_mutex_t	 lock;
	struct chain	*cache[CHAIN_CACHE_MAX];
	size_t		 ncache;
	uint64_t	 tick;		/* chain_get's, for least recent use */
};

int
chain_ctx_new(EVP_PKEY *root, EVP_PKEY *atten, struct chain_ctx **out)
{
	struct chain_ctx *ctx;

	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return TH_ERR_ALLOC;
	EVP_PKEY_up_ref(root);
	ctx->root = root;
	if (atten != NULL) {
		EVP_PKEY_up_ref(atten);
		ctx->atten = atten;
	}
	pthread_mutex_init(&ctx->lock, NULL);
	*out = ctx;
	return 0;
}

void
chain_free(struct chain *c)
{
	if (c == NULL)
		return;
	json_object_put(c->ops);
	json_object_put(c->policy);
	free(c);
}

void
chain_ctx_free(struct chain_ctx *ctx)
{
	size_t i;

	if (ctx == NULL)
		return;
	for (i = 0; i < ctx->ncache; i++)
		chain_free(ctx->cache[i]);
	EVP_PKEY_free(ctx->root);
	EVP_PKEY_free(ctx->atten);
	pthread_mutex_destroy(&ctx->lock);
	free(ctx);
}

/* The policy a delegation carries, inline or installed by hash; a new
 * reference. */
static int
resolve_policy(struct store *st, const struct deleg *d,
    struct json_object **out)
{
	char *body = NULL, hash[JWS_HASH_LEN + 1];
	int r;

	*out = NULL;
	if (d->policy != NULL) {
		*out = json_object_get(d->policy);
		return 0;
	}
	if ((r = store_get_policy(st, d->policy_hash, &body)) != 0)
		return r;
	jws_hash(body, strlen(body), hash);
	if (strcmp(hash, d->policy_hash) != 0)
		r = th_fail(TH_ERR_INVALID, "stored policy does not match its "
		    "hash");
	else if ((r = json_parse_strict(body, strlen(body), POLICY_DOC_MAX,
	    out)) == 0 && (r = policy_validate(*out)) != 0) {
		json_object_put(*out);
		*out = NULL;
	}
	free(body);
	return r;
}

/* Checks delegation d (link k, 1-based) against the link above: its
 * signature, its linkage and that it narrows.  Exactly one of cert and
 * prev is set. */
static int
check_link(struct chain_ctx *ctx, size_t k, const struct deleg *d,
    const char *above_hash, const struct cert *cert,
    const struct deleg *prev, struct json_object *prev_policy,
    struct json_object *policy)
{
	const char *above_sub = cert != NULL ? cert->sub : prev->sub;
	int64_t above_nbf = cert != NULL ? cert->nbf : prev->nbf;
	int64_t above_exp = cert != NULL ? cert->exp : prev->exp;
	EVP_PKEY *key = cert != NULL ? cert->pub : ctx->atten;
	int r;

	if (strcmp(d->parent, above_hash) != 0)
		return th_fail(TH_ERR_DENIED, "link %zu: parent is not the "
		    "hash of link %zu", k, k - 1);
	if (strcmp(d->iss, above_sub) != 0)
		return th_fail(TH_ERR_DENIED, "link %zu: issuer %s is not "
		    "link %zu's subject %s", k, d->iss, k - 1, above_sub);
	if (cert == NULL && key == NULL)
		return th_fail(TH_ERR_DENIED, "link %zu: re-delegation needs "
		    "the attenuation key, which is not configured", k);
	if ((r = jws_verify(d->jws, key)) != 0)
		return th_fail(TH_ERR_DENIED, "bad signature at link %zu: %s",
		    k, th_errmsg(r));
	if (d->nbf < above_nbf || d->exp > above_exp)
		return th_fail(TH_ERR_DENIED, "link %zu widens scope: lifetime "
		    "outside link %zu's", k, k - 1);
	if (prev == NULL)
		return 0;
	if ((r = scope_within(d->ops, prev->ops)) != 0)
		return th_fail(TH_ERR_DENIED, "link %zu widens scope: %s", k,
		    th_errmsg(r));
	if ((r = policy_narrows(policy, prev_policy)) != 0)
		return th_fail(TH_ERR_DENIED, "link %zu widens scope: %s", k,
		    th_errmsg(r));
	return 0;
}

/* Builds and verifies the chain whose leaf is the delegation token leaf
 * (owned by the caller), fetching the links above from the store. */
static int
verify(struct chain_ctx *ctx, struct store *st, const char *leaf,
    struct chain **out)
{
	struct deleg *d[CHAIN_LINKS_MAX] = { NULL };
	struct json_object *pol[CHAIN_LINKS_MAX] = { NULL };
	struct cert *cert = NULL;
	struct chain *c = NULL;
	enum store_kind kind = STORE_DELEG;
	char *tok = NULL;
	const char *parent;
	size_t nd = 0, i, k;
	int r;

	*out = NULL;
	/* Walk up from the leaf to the certificate. */
	if ((r = deleg_parse(leaf, strlen(leaf), &d[0])) != 0)
		goto out;
	nd = 1;
	for (;;) {
		parent = d[nd - 1]->parent;
		free(tok);
		if ((r = store_get_token(st, parent, &kind, &tok)) != 0) {
			r = th_fail(TH_ERR_DENIED, "link above %s is not "
			    "installed: %s", d[nd - 1]->sub, th_errmsg(r));
			goto out;
		}
		if (kind == STORE_CERT)
			break;
		if (nd == CHAIN_LINKS_MAX - 1) {
			r = th_fail(TH_ERR_DENIED, "chain longer than %d links",
			    CHAIN_LINKS_MAX);
			goto out;
		}
		if ((r = deleg_parse(tok, strlen(tok), &d[nd])) != 0)
			goto out;
		nd++;
	}
	if ((r = cert_parse(tok, strlen(tok), &cert)) != 0)
		goto out;
	if ((r = jws_verify(cert->jws, ctx->root)) != 0) {
		r = th_fail(TH_ERR_DENIED, "bad signature at link 1 (the "
		    "certificate of %s): %s", cert->sub, th_errmsg(r));
		goto out;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	c->n = nd + 1;
	snprintf(c->hashes[0], sizeof(c->hashes[0]), "%s", cert->jws->hash);
	snprintf(c->names[0], sizeof(c->names[0]), "%s", cert->sub);
	c->nbf[0] = cert->nbf;
	c->exp[0] = cert->exp;
	/* d[nd - 1] is link 2 (just below the certificate), d[0] the leaf. */
	for (i = nd; i-- > 0;) {
		k = nd - i + 1;
		if ((r = resolve_policy(st, d[i], &pol[i])) != 0) {
			r = th_fail(TH_ERR_DENIED, "link %zu: %s", k,
			    th_errmsg(r));
			goto out;
		}
		if ((r = check_link(ctx, k, d[i], c->hashes[k - 2],
		    i == nd - 1 ? cert : NULL, i == nd - 1 ? NULL : d[i + 1],
		    i == nd - 1 ? NULL : pol[i + 1], pol[i])) != 0)
			goto out;
		snprintf(c->hashes[k - 1], sizeof(c->hashes[0]), "%s",
		    d[i]->jws->hash);
		snprintf(c->names[k - 1], sizeof(c->names[0]), "%s",
		    d[i]->sub);
		c->nbf[k - 1] = d[i]->nbf;
		c->exp[k - 1] = d[i]->exp;
	}
	c->ops = json_object_get(d[0]->ops);
	c->policy = json_object_get(pol[0]);
	*out = c;
	c = NULL;
 out:
	for (i = 0; i < CHAIN_LINKS_MAX; i++) {
		deleg_free(d[i]);
		json_object_put(pol[i]);
	}
	cert_free(cert);
	free(tok);
	chain_free(c);
	return r;
}

int
chain_verify_new(struct chain_ctx *ctx, struct store *st, const char *token,
    size_t len, struct chain **out)
{
	char *copy;
	int r;

	if ((copy = strndup(token, len)) == NULL)
		return TH_ERR_ALLOC;
	r = strlen(copy) == len ? verify(ctx, st, copy, out) :
	    th_fail(TH_ERR_INVALID, "token contains a NUL byte");
	free(copy);
	return r;
}

/* The cached chain ending at leaf_hash, taken (its holder count raised);
 * NULL if none.  Call with ctx->lock held. */
static struct chain *
cache_take(struct chain_ctx *ctx, const char *leaf_hash)
{
	struct chain *c;
	size_t i;

	for (i = 0; i < ctx->ncache; i++) {
		c = ctx->cache[i];
		if (strcmp(c->hashes[c->n - 1], leaf_hash) == 0) {
			c->refs++;
			c->used = ++ctx->tick;
			return c;
		}
	}
	return NULL;
}

/* The earliest time a link of c expires. */
static int64_t
chain_exp(const struct chain *c)
{
	int64_t exp = c->exp[0];
	size_t i;

	for (i = 1; i < c->n; i++)
		if (c->exp[i] < exp)
			exp = c->exp[i];
	return exp;
}

/* Room for one more: a chain nobody holds is dropped, one expired (no
 * request can use it again) before the least recently used.  Call with
 * ctx->lock held; -1 if every chain is held. */
static int
cache_make_room(struct chain_ctx *ctx)
{
	int64_t now = (int64_t)time(NULL);
	size_t i, victim = ctx->ncache;

	for (i = 0; i < ctx->ncache; i++) {
		if (ctx->cache[i]->refs > 0)
			continue;
		if (chain_exp(ctx->cache[i]) <= now) {
			victim = i;
			break;
		}
		if (victim == ctx->ncache ||
		    ctx->cache[i]->used < ctx->cache[victim]->used)
			victim = i;
	}
	if (victim == ctx->ncache)
		return -1;
	chain_free(ctx->cache[victim]);
	ctx->cache[victim] = ctx->cache[--ctx->ncache];
	return 0;
}

/* c came from chain_get: while held it is in the cache (only chains
 * nobody holds are dropped), so it is counted down in place. */
void
chain_put(struct chain_ctx *ctx, const struct chain *c)
{
	struct chain *mine = (struct chain *)c;

	if (mine == NULL)
		return;
	pthread_mutex_lock(&ctx->lock);
	if (mine->refs > 0)
		mine->refs--;
	pthread_mutex_unlock(&ctx->lock);
}

int
chain_get(struct chain_ctx *ctx, struct store *st, const char *leaf_hash,
    const struct chain **out)
{
	struct chain *c = NULL;
	enum store_kind kind;
	char *tok = NULL;
	int r;

	*out = NULL;
	pthread_mutex_lock(&ctx->lock);
	*out = cache_take(ctx, leaf_hash);
	pthread_mutex_unlock(&ctx->lock);
	if (*out != NULL)
		return 0;
	if ((r = store_get_token(st, leaf_hash, &kind, &tok)) != 0)
		goto out;
	if (kind != STORE_DELEG) {
		r = th_fail(TH_ERR_DENIED, "%.12s... is not a delegation",
		    leaf_hash);
		goto out;
	}
	if ((r = verify(ctx, st, tok, &c)) != 0)
		goto out;
	pthread_mutex_lock(&ctx->lock);
	/* Another thread may have verified the same leaf meanwhile; keep
	 * the first so pointers handed out stay valid. */
	if ((*out = cache_take(ctx, leaf_hash)) == NULL) {
		if (ctx->ncache == CHAIN_CACHE_MAX && cache_make_room(ctx) != 0)
			r = th_fail(TH_ERR_UNAVAILABLE, "all %d cached "
			    "delegation chains are in use by requests: retry "
			    "when one ends", CHAIN_CACHE_MAX);
		else {
			c->refs = 1;
			c->used = ++ctx->tick;
			ctx->cache[ctx->ncache++] = c;
			*out = c;
			c = NULL;
		}
	}
	pthread_mutex_unlock(&ctx->lock);
 out:
	chain_free(c);
	free(tok);
	return r;
}

/* A chain's links are checked in one read of the store. */
_Static_assert(CHAIN_LINKS_MAX <= STORE_LINKS_MAX, "chain longer than the "
    "store's revocation check");

int
chain_check_time(const struct chain *c, int64_t now)
{
	size_t i;

	for (i = 0; i < c->n; i++) {
		if (now < c->nbf[i])
			return th_fail(TH_ERR_DENIED, "link %zu (%s) is not "
			    "valid yet", i + 1, c->names[i]);
		if (now >= c->exp[i])
			return th_fail(TH_ERR_DENIED, "link %zu (%s) expired",
			    i + 1, c->names[i]);
	}
	return 0;
}

int
chain_check_live(const struct chain *c, struct store *st, int64_t now)
{
	size_t which;
	int r;

	if ((r = chain_check_time(c, now)) != 0)
		return r;
	r = store_check_revoked(st, (char (*)[JWS_HASH_LEN + 1])c->hashes,
	    c->n, &which);
	if (r == TH_ERR_DENIED)
		return th_fail(TH_ERR_DENIED, "revoked: link %zu (%s)",
		    which + 1, c->names[which]);
	return r;
}

void
chain_describe(const struct chain *c, char *out, size_t outlen)
{
	size_t i, used = 0;
	int n;

	out[0] = '\0';
	for (i = 0; i < c->n && used < outlen; i++) {
		n = snprintf(out + used, outlen - used, "%s%s",
		    i ? " -> " : "", c->names[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}
