/* What the broker writes to the audit log (docs/audit-format.md). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker.h"
#include "deleg.h"
#include "err.h"
#include "utf8.h"
#include "json.h"
#include "log.h"

/* The policy document a delegation names by policy_hash (*out NULL for
 * a certificate or an inline policy). */
static int
link_policy(struct broker *b, enum store_kind kind, const char *tok,
    char **out)
{
	struct deleg *d = NULL;
	int r;

	*out = NULL;
	if (kind != STORE_DELEG)
		return 0;
	if ((r = deleg_parse(tok, strlen(tok), &d)) == 0 &&
	    d->policy_hash != NULL)
		r = store_get_policy(b->st, d->policy_hash, out);
	deleg_free(d);
	return r;
}

/* link entries for every link of a chain not yet in the log, with the
 * policy documents they name by hash: an auditor needs them to check the
 * chain. */
static int
rec_links(struct broker *b, char (*hashes)[JWS_HASH_LEN + 1], size_t n)
{
	enum store_kind kind;
	char *tok, *policy;
	size_t i;
	int r = 0;

	for (i = 0; r == 0 && i < n; i++) {
		if (alog_has_link(b->audit, hashes[i]))
			continue;
		if ((r = store_get_token(b->st, hashes[i], &kind, &tok)) != 0)
			break;
		if ((r = link_policy(b, kind, tok, &policy)) == 0)
			r = alog_link(b->audit, hashes[i], tok, policy);
		free(policy);
		free(tok);
	}
	return r;
}

/* A decision's members but those whose JSON is over DECISION_MEMBER_MAX
 * bytes (a pull request's thousands of check runs), which it names in
 * "omitted". */
#define DECISION_MEMBER_MAX	(64 * 1024)

static struct json_object *
decision_trimmed(struct json_object *d)
{
	struct json_object *t, *omitted;
	const char *s;

	if ((t = json_object_new_object()) == NULL ||
	    (omitted = json_object_new_array()) == NULL) {
		json_object_put(t);
		return NULL;
	}
	json_object_object_foreach(d, k, v) {
		s = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
		if (strlen(s) <= DECISION_MEMBER_MAX)
			json_object_object_add(t, k, json_object_get(v));
		else
			json_object_array_add(omitted,
			    json_object_new_string(k));
	}
	json_object_object_add(t, "omitted", omitted);
	return t;
}

/* Appended, and waited for until countersigned.  An entry over the log's
 * bound for its decision's evidence is recorded with that evidence cut
 * (decision_trimmed) rather than not at all: a refusal must be audited,
 * and an intent must be durable before anything is done. */
static int
append_commit(struct broker *b, const char *kind, struct json_object *e,
    int64_t before, int64_t *seq, int64_t *checkpoint)
{
	struct json_object *d, *t;
	int64_t s;
	int r;

	r = alog_append_before(b->audit, kind, e, before, &s);
	if (r == TH_ERR_TOO_LONG && json_object_object_get_ex(e, "decision",
	    &d) && json_object_is_type(d, json_type_object)) {
		if ((t = decision_trimmed(d)) == NULL)
			return TH_ERR_ALLOC;
		json_object_object_add(e, "decision", t);
		r = alog_append_before(b->audit, kind, e, before, &s);
	}
	if (r != 0)
		return r;
	/* Known even if the countersignature fails: an intent appended is
	 * then closed as not attempted. */
	if (seq != NULL)
		*seq = s;
	return alog_commit(b->audit, s, checkpoint);
}

static int
rec_held(struct broker *b, const struct rec_limit *l, uint64_t n,
    const char *last)
{
	struct json_object *e = json_object_new_object();
	char why[sizeof(l->last) + 256];
	int r;

	if (e == NULL)
		return TH_ERR_ALLOC;
	snprintf(why, sizeof(why), "%llu refusals of %s were not recorded one "
	    "by one (more than %lld a second); the last: %s",
	    (unsigned long long)n, l->agent != NULL ? l->agent :
	    "callers without an agent identity", (long long)l->per_s, last);
	utf8_sanitize(why);
	json_object_object_add(e, "agent", json_object_new_string(
	    l->agent != NULL ? l->agent : "unknown"));
	json_object_object_add(e, "code", json_object_new_string(
	    "rate_limited"));
	json_object_object_add(e, "reason", json_object_new_string(why));
	r = append_commit(b, "refusal", e, INT64_MAX, NULL, NULL);
	json_object_put(e);
	return r;
}

static void
limit_init(struct rec_limit *l, const char *agent, int64_t burst,
    int64_t per_s)
{
	pthread_mutex_init(&l->mu, NULL);
	l->agent = agent;
	l->burst = burst;
	l->per_s = per_s;
}

void
rec_limits_init(struct broker *b)
{
	size_t i;

	limit_init(&b->unknown, NULL, REC_UNKNOWN_BURST, REC_UNKNOWN_PER_S);
	for (i = 0; i < b->cfg.nagents; i++)
		limit_init(&b->agent_limit[i], b->cfg.agents[i].name,
		    REC_AGENT_BURST, REC_AGENT_PER_S);
}

/* The limit a refusal of agent counts against: the shared one of callers
 * without identity, or the agent's own.  NULL for an agent the
 * configuration no longer names (it holds a capability minted before):
 * such refusals are few, each needing a capability, and are all recorded. */
static struct rec_limit *
limit_of(struct broker *b, const char *agent)
{
	size_t i;

	if (agent == NULL)
		return &b->unknown;
	for (i = 0; i < b->cfg.nagents; i++)
		if (strcmp(b->cfg.agents[i].name, agent) == 0)
			return &b->agent_limit[i];
	return NULL;
}

/* A token bucket: 1 if this refusal is to be recorded; 0 if it is held
 * (counted, and owed as one entry). */
static int
admit(struct rec_limit *l, const char *reason)
{
	struct timespec ts;
	int ok;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	pthread_mutex_lock(&l->mu);
	if (l->last_s == 0)
		l->tokens = l->burst;
	else
		l->tokens += ((int64_t)ts.tv_sec - l->last_s) * l->per_s;
	if (l->tokens > l->burst)
		l->tokens = l->burst;
	l->last_s = (int64_t)ts.tv_sec;
	if ((ok = l->tokens > 0) != 0)
		l->tokens--;
	else {
		l->held++;
		l->total++;
		/* Cut, it must stay UTF-8: the entry is canonical JSON. */
		snprintf(l->last, sizeof(l->last), "%s", reason);
		utf8_sanitize(l->last);
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

/* Writes l's held refusals as one entry, if any. */
static int
flush_held(struct broker *b, struct rec_limit *l)
{
	char last[sizeof(l->last)];
	uint64_t n;
	int r = 0;

	pthread_mutex_lock(&l->mu);
	n = l->held;
	snprintf(last, sizeof(last), "%s", l->last);
	l->held = 0;
	pthread_mutex_unlock(&l->mu);
	if (n > 0 && (r = rec_held(b, l, n, last)) != 0) {
		/* Still owed. */
		pthread_mutex_lock(&l->mu);
		l->held += n;
		pthread_mutex_unlock(&l->mu);
	}
	return r;
}

int
rec_refusals_held(struct broker *b)
{
	size_t i;
	int r, first = flush_held(b, &b->unknown);

	for (i = 0; i < b->cfg.nagents; i++)
		if ((r = flush_held(b, &b->agent_limit[i])) != 0 && first == 0)
			first = r;
	return first;
}

uint64_t
rec_refusals_aggregated(struct broker *b)
{
	uint64_t n = b->unknown.total;
	size_t i;

	for (i = 0; i < b->cfg.nagents; i++)
		n += b->agent_limit[i].total;
	return n;
}

int
rec_refusal(struct broker *b, const struct answer *ans, const char *reason)
{
	struct json_object *e, *d;
	struct rec_limit *l;
	int r, held_r = 0;

	if ((l = limit_of(b, ans->agent)) != NULL) {
		if (!admit(l, reason))
			return 0;
		/* An admitted refusal first records those held before it;
		 * if they cannot be, still itself (they stay owed). */
		held_r = flush_held(b, l);
	}
	if ((e = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(e, "agent", json_object_new_string(
	    ans->agent != NULL ? ans->agent : "unknown"));
	json_object_object_add(e, "code", json_object_new_string(ans->code));
	json_object_object_add(e, "reason", json_object_new_string(reason));
	if (ans->op != NULL)
		json_object_object_add(e, "op", cap_op_json(ans->op));
	if (ans->jti != NULL)
		json_object_object_add(e, "jti", json_object_new_string(ans->jti));
	if (ans->body != NULL && json_object_object_get_ex(ans->body,
	    "decision", &d))
		json_object_object_add(e, "decision", json_object_get(d));
	r = append_commit(b, "refusal", e, INT64_MAX, NULL, NULL);
	json_object_put(e);
	return r != 0 ? r : held_r;
}

/* When c's first link to expire does (*which). */
static int64_t
chain_expiry(const struct chain *c, size_t *which)
{
	int64_t until = INT64_MAX;
	size_t i;

	*which = 0;
	for (i = 0; i < c->n; i++)
		if (c->exp[i] < until) {
			until = c->exp[i];
			*which = i;
		}
	return until;
}

int
rec_mint(struct broker *b, const char *agent, const char *capability,
    size_t len)
{
	struct json_object *e = NULL, *v;
	char hashes[CHAIN_LINKS_MAX][JWS_HASH_LEN + 1];
	const struct chain *c = NULL;
	struct jws *j = NULL;
	size_t i, n, first;
	int r;

	if ((r = jws_parse(capability, len, &j)) != 0)
		return r;
	json_object_object_get_ex(j->claims, "chain", &v);
	n = json_object_array_length(v);
	for (i = 0; i < n && i < CHAIN_LINKS_MAX; i++)
		snprintf(hashes[i], sizeof(hashes[i]), "%s",
		    json_object_get_string(json_object_array_get_idx(v, i)));
	if ((r = rec_links(b, hashes, i)) != 0)
		goto out;
	if ((e = json_object_new_object()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	json_object_object_add(e, "agent", json_object_new_string(agent));
	json_object_object_add(e, "chain", json_object_get(v));
	json_object_object_get_ex(j->claims, "op", &v);
	json_object_object_add(e, "op", json_object_get(v));
	json_object_object_get_ex(j->claims, "jti", &v);
	json_object_object_add(e, "jti", json_object_get(v));
	/* Judged by the verifier as of the entry's time, like an intent: a
	 * link that expired between the mint and this append would leave a
	 * log that does not verify. */
	if (i == 0) {
		r = th_fail(TH_ERR_INVALID, "capability without a chain");
		goto out;
	}
	if ((r = chain_get(cap_chains(b->cap), b->st, hashes[i - 1],
	    &c)) != 0)
		goto out;
	r = alog_append_before(b->audit, "mint", e, chain_expiry(c, &first),
	    NULL);
	if (r == TH_ERR_DENIED)
		r = th_fail(TH_ERR_DENIED, "link %zu (%s) of the delegation "
		    "chain expired before the capability could be recorded",
		    first + 1, c->names[first]);
 out:
	chain_put(cap_chains(b->cap), c);
	json_object_put(e);
	jws_free(j);
	return r;
}

/* An intent or a read: the capability, what it is used for (member:
 * value) and the token it was given.  Durable and countersigned before the
 * token is used at GitHub: fail closed.  *seq is set as soon as the entry
 * is written, so that a failed countersignature can still close it. */
static int
rec_use(struct broker *b, const char *kind, const struct cap_redeemed *red,
    const char *capability, const char *member, struct json_object *value,
    const struct gh_token *tok, int64_t *seq)
{
	struct json_object *e = NULL, *chain, *t;
	size_t i, first;
	int r;

	if ((r = rec_links(b, (char (*)[JWS_HASH_LEN + 1])red->chain->hashes,
	    red->chain->n)) != 0)
		return r;
	if ((e = json_object_new_object()) == NULL ||
	    (chain = json_object_new_array()) == NULL ||
	    (t = json_object_new_object()) == NULL) {
		json_object_put(e);
		return TH_ERR_ALLOC;
	}
	for (i = 0; i < red->chain->n; i++)
		json_object_array_add(chain,
		    json_object_new_string(red->chain->hashes[i]));
	json_object_object_add(e, "agent", json_object_new_string(red->agent));
	json_object_object_add(e, "capability",
	    json_object_new_string(capability));
	json_object_object_add(e, "op", cap_op_json(&red->op));
	json_object_object_add(e, "jti", json_object_new_string(red->jti));
	json_object_object_add(e, "chain", chain);
	json_object_object_add(e, member, json_object_get(value));
	json_object_object_add(t, "fingerprint",
	    json_object_new_string(tok->fingerprint));
	json_object_object_add(t, "expires_at",
	    json_object_new_string(tok->expires_at));
	json_object_object_add(e, "token", t);
	/* The verifier judges the chain as of the entry's time (and the
	 * chain's own checks were as of the capability's redemption, or a
	 * push's ref updates, some time ago): an entry written once a link
	 * has expired would not verify. */
	r = append_commit(b, kind, e, chain_expiry(red->chain, &first), seq,
	    NULL);
	if (r == TH_ERR_DENIED)
		r = th_fail(TH_ERR_DENIED, "link %zu (%s) of the delegation "
		    "chain expired before the %s could be recorded", first + 1,
		    red->chain->names[first], kind);
	json_object_put(e);
	return r;
}

int
rec_intent(struct broker *b, const struct cap_redeemed *red,
    const char *capability, struct json_object *decision,
    const struct gh_token *tok, int64_t *seq)
{
	char why[512], msg[600];
	int r;

	*seq = 0;
	if ((r = rec_use(b, "intent", red, capability, "decision", decision,
	    tok, seq)) == 0 || *seq <= 0)
		return r;
	/* Written but not countersigned: the operation will not be
	 * attempted.  Say so (best effort), so that the intent is not left
	 * open for the next start to recover. */
	snprintf(why, sizeof(why), "%s", th_errmsg(r));
	snprintf(msg, sizeof(msg), "not attempted: %s", why);
	(void)rec_outcome(b, *seq, 0, NULL, msg, NULL, NULL);
	return th_fail(r, "%s", why);
}

int
rec_read(struct broker *b, const struct cap_redeemed *red,
    const char *capability, const char *request, const struct gh_token *tok,
    int64_t *seq)
{
	struct json_object *v = json_object_new_string(request);
	int r;

	if (v == NULL)
		return TH_ERR_ALLOC;
	r = rec_use(b, "read", red, capability, "request", v, tok, seq);
	json_object_put(v);
	return r;
}

int
rec_grant(struct broker *b, int64_t intent, const struct gh_token *tok,
    struct json_object *permissions, const char *reason)
{
	struct json_object *e = json_object_new_object(), *t;
	int r;

	if (e == NULL || (t = json_object_new_object()) == NULL) {
		json_object_put(e);
		return TH_ERR_ALLOC;
	}
	json_object_object_add(e, "intent", json_object_new_int64(intent));
	json_object_object_add(t, "fingerprint",
	    json_object_new_string(tok->fingerprint));
	json_object_object_add(t, "expires_at",
	    json_object_new_string(tok->expires_at));
	json_object_object_add(e, "token", t);
	json_object_object_add(e, "permissions", json_object_get(permissions));
	json_object_object_add(e, "reason", json_object_new_string(reason));
	r = append_commit(b, "grant", e, INT64_MAX, NULL, NULL);
	json_object_put(e);
	return r;
}

int
rec_outcome(struct broker *b, int64_t intent, long status,
    struct json_object *result, const char *error, int64_t *seq,
    int64_t *checkpoint)
{
	struct json_object *e = json_object_new_object();
	int r;

	if (e == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(e, "intent", json_object_new_int64(intent));
	json_object_object_add(e, "status", json_object_new_int64(status));
	json_object_object_add(e, "result", result != NULL ?
	    json_object_get(result) : json_object_new_object());
	if (error != NULL)
		json_object_object_add(e, "error", json_object_new_string(error));
	/* Nobody must wait for this one: the background committer
	 * countersigns it within milliseconds. */
	r = alog_append(b->audit, "outcome", e, seq);
	if (checkpoint != NULL)
		*checkpoint = 0;
	json_object_put(e);
	return r;
}

int
rec_recovered(struct broker *b, int64_t intent, long status,
    struct json_object *result)
{
	struct json_object *e = json_object_new_object();
	int r;

	if (e == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(e, "intent", json_object_new_int64(intent));
	json_object_object_add(e, "status", json_object_new_int64(status));
	json_object_object_add(e, "result", json_object_get(result));
	r = append_commit(b, "recovered", e, INT64_MAX, NULL, NULL);
	log_info("audit: intent %lld recovered: %s", (long long)intent,
	    json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN));
	json_object_put(e);
	return r;
}
