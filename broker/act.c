/* What the API does: mint a capability, or redeem one and perform its
 * operation on GitHub with a token made for it alone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "broker.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "peval.h"

/* A refusal: the answer says why, and so does the audit log. */
static void
fail(struct broker *b, struct answer *ans, unsigned status, const char *code,
    int r)
{
	struct json_object *err = json_object_new_object();
	char why[512];
	int e;

	snprintf(why, sizeof(why), "%s", th_errmsg(r));
	ans->status = status;
	ans->code = code;
	if (ans->body == NULL)
		ans->body = json_object_new_object();
	json_object_object_add(err, "code", json_object_new_string(code));
	json_object_object_add(err, "message", json_object_new_string(why));
	json_object_object_add(ans->body, "error", err);
	if ((e = rec_refusal(b, ans, why)) != 0)
		log_err("audit: refusal not recorded: %s", th_errmsg(e));
}

/* The intent could not be recorded: the log is down, or a link of the
 * chain expired while the policy's live checks ran (rec_use). */
static void
intent_failed(struct broker *b, struct answer *ans, int r)
{
	if (r == TH_ERR_DENIED)
		fail(b, ans, 403, "capability_refused", r);
	else
		fail(b, ans, 503, "audit_unavailable", r);
}

void
act_refuse(struct broker *b, const char *agent, unsigned status,
    const char *code, int r, struct answer *ans)
{
	ans->agent = agent;
	fail(b, ans, status, code, r);
}

/* The audit trail's part of an answer: the intent was countersigned
 * before GitHub was asked; the outcome is durable and countersigned in
 * the next batch, within milliseconds. */
static void
audit_json(struct answer *ans, int64_t intent, int64_t outcome,
    int64_t checkpoint, int r)
{
	struct json_object *a = json_object_new_object();

	(void)checkpoint;
	json_object_object_add(a, "intent", json_object_new_int64(intent));
	json_object_object_add(a, "intent_committed",
	    json_object_new_boolean(1));
	if (r == 0)
		json_object_object_add(a, "outcome",
		    json_object_new_int64(outcome));
	else
		json_object_object_add(a, "error", json_object_new_string(
		    th_errmsg(r)));
	json_object_object_add(ans->body, "audit", a);
}

/* Reads {"op","repo","pr","target","params"} into op; any other member is
 * refused (a misspelt "params" must not become GitHub's default). */
static int
parse_op(struct json_object *req, struct cap_op *op)
{
	static const char *const members[] = { "op", "repo", "pr", "target",
	    "params" };
	struct json_object *p;
	const char *s;
	int r;

	memset(op, 0, sizeof(*op));
	if (!json_object_is_type(req, json_type_object))
		return th_fail(TH_ERR_INVALID, "the request is not a JSON "
		    "object");
	if ((r = json_only_members(req, members,
	    sizeof(members) / sizeof(members[0]))) != 0)
		return r;
	if ((r = json_get_string_len(req, "op", SCOPE_OP_MAX, &s)) != 0)
		return r;
	strcpy(op->op, s);
	if ((r = json_get_string_len(req, "repo", SCOPE_REPO_MAX, &s)) != 0)
		return r;
	strcpy(op->repo, s);
	r = json_get_int64(req, "pr", &op->pr);
	if (r != 0 && r != TH_ERR_NOT_FOUND)
		return r;
	r = json_get_string_len(req, "target", SCOPE_BRANCH_MAX, &s);
	if (r == 0)
		strcpy(op->target, s);
	else if (r != TH_ERR_NOT_FOUND)
		return r;
	if (json_object_object_get_ex(req, "params", &p)) {
		s = json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN);
		if (!json_object_is_type(p, json_type_object) ||
		    strlen(s) > CAP_PARAMS_MAX)
			return th_fail(TH_ERR_INVALID, "params must be an "
			    "object of at most %d bytes", CAP_PARAMS_MAX);
		strcpy(op->params, s);
	}
	return cap_op_validate(op);
}

/* Mints a capability for op, or refuses; either way recorded.  With
 * fallback (for git, whose credential request does not say whether a push
 * or a fetch follows), a push that is not covered becomes a fetch. */
static void
mint(struct broker *b, const char *agent, struct cap_op *op, int fallback,
    struct answer *ans)
{
	struct buf *tok = NULL;
	char desc[512];
	int64_t now = (int64_t)time(NULL);
	int r;

	ans->op = op;
	if ((tok = buf_new()) == NULL) {
		fail(b, ans, 500, "internal", TH_ERR_ALLOC);
		ans->op = NULL;
		return;
	}
	pthread_mutex_lock(&b->signer_mu);
	r = cap_mint(b->cap, b->signer, b->st, agent, op, now, tok, desc,
	    sizeof(desc));
	if (r == TH_ERR_DENIED && fallback) {
		snprintf(op->op, sizeof(op->op), "github.fetch");
		r = cap_mint(b->cap, b->signer, b->st, agent, op, now, tok,
		    desc, sizeof(desc));
	}
	pthread_mutex_unlock(&b->signer_mu);
	if (r != 0) {
		b->m.mint_refused++;
		log_warn("%s: capability for %s %s refused: %s", agent, op->op,
		    op->repo, th_errmsg(r));
		fail(b, ans, r == TH_ERR_DENIED ? 403 : r == TH_ERR_UNAVAILABLE ?
		    503 : 500, r == TH_ERR_DENIED ? "not_covered" :
		    r == TH_ERR_UNAVAILABLE ? "signer_unavailable" : "internal",
		    r);
		goto out;
	}
	/* No capability leaves unrecorded. */
	if ((r = rec_mint(b, agent, (const char *)buf_ptr(tok),
	    buf_len(tok))) != 0) {
		if (r == TH_ERR_DENIED)
			fail(b, ans, 403, "not_covered", r);
		else
			fail(b, ans, 503, "audit_unavailable", r);
		goto out;
	}
	b->m.minted++;
	if (op->pr != 0)
		log_info("%s: capability for %s %s#%lld (%s)", agent, op->op,
		    op->repo, (long long)op->pr, desc);
	else
		log_info("%s: capability for %s %s (%s)", agent, op->op,
		    op->repo, desc);
	ans->status = 201;
	ans->body = json_object_new_object();
	json_object_object_add(ans->body, "capability",
	    json_object_new_string_len((const char *)buf_ptr(tok),
	    (int)buf_len(tok)));
	json_object_object_add(ans->body, "op", json_object_new_string(op->op));
	json_object_object_add(ans->body, "chain", json_object_new_string(desc));
	json_object_object_add(ans->body, "expires_at",
	    json_object_new_int64(now + b->cfg.ttl));
 out:
	ans->op = NULL;
	buf_free(tok);
}

void
act_mint(struct broker *b, const char *agent, struct json_object *req,
    struct answer *ans)
{
	struct cap_op op;
	int r;

	ans->agent = agent;
	if ((r = parse_op(req, &op)) != 0) {
		fail(b, ans, 400, "bad_request", r);
		return;
	}
	mint(b, agent, &op, 0, ans);
}

void
act_git_credential(struct broker *b, const char *agent,
    struct json_object *req, struct answer *ans)
{
	static const char *const members[] = { "repo", "port" };
	struct cap_op op;
	const char *repo;
	int64_t port;
	int r;

	ans->agent = agent;
	memset(&op, 0, sizeof(op));
	if (!json_object_is_type(req, json_type_object) ||
	    json_only_members(req, members, 2) != 0 ||
	    json_get_string_len(req, "repo", SCOPE_REPO_MAX, &repo) != 0 ||
	    json_get_int64(req, "port", &port) != 0 || port < 1 ||
	    port > 65535) {
		fail(b, ans, 400, "bad_request", th_fail(TH_ERR_INVALID, "give "
		    "{\"repo\": \"OWNER/NAME\", \"port\": the git remote's "
		    "loopback port}"));
		return;
	}
	/* Another local user's listener on the loopback, named by a
	 * repository's submodule or remote, would be handed the capability. */
	if (port != b->cfg.git_port) {
		fail(b, ans, 403, "wrong_remote", th_fail(TH_ERR_DENIED, "the "
		    "git remote's port %lld is not thresholdd's git endpoint%s",
		    (long long)port, b->cfg.git_port == 0 ? " (none is "
		    "configured: git-listen)" : ""));
		return;
	}
	snprintf(op.op, sizeof(op.op), "github.push");
	snprintf(op.repo, sizeof(op.repo), "%s", repo);
	if ((r = cap_op_validate(&op)) != 0) {
		fail(b, ans, 400, "bad_request", r);
		return;
	}
	mint(b, agent, &op, 1, ans);
}

/* The least each operation needs (../shared/notes/github-api.md); a merge
 * also reads what its policy reads. */
static const struct {
	const char	*op;
	const char	*perms[4][2];
} least[] = {
	{ "github.merge", { { "contents", "write" },
	    { "pull_requests", "write" }, { "checks", "read" },
	    { "statuses", "read" } } },
	{ "github.pr.create", { { "pull_requests", "write" },
	    { "contents", "read" } } },
	{ "github.comment", { { "issues", "write" } } },
	{ "github.deployment.create", { { "deployments", "write" } } },
	{ "github.workflow.dispatch", { { "actions", "write" } } },
};

static struct json_object *
permissions(const char *op)
{
	struct json_object *p;
	size_t i, k;

	for (i = 0; i < sizeof(least) / sizeof(least[0]); i++)
		if (strcmp(least[i].op, op) == 0)
			break;
	if (i == sizeof(least) / sizeof(least[0]) ||
	    (p = json_object_new_object()) == NULL)
		return NULL;
	for (k = 0; k < 4 && least[i].perms[k][0] != NULL; k++)
		json_object_object_add(p, least[i].perms[k][0],
		    json_object_new_string(least[i].perms[k][1]));
	return p;
}

static void
token_json(struct answer *ans, const struct gh_token *tok)
{
	struct json_object *t = json_object_new_object();

	json_object_object_add(t, "fingerprint",
	    json_object_new_string(tok->fingerprint));
	json_object_object_add(t, "expires_at",
	    json_object_new_string(tok->expires_at));
	json_object_object_add(t, "revocation", json_object_new_string(
	    tok->revoked == 1 ? "revoked" : tok->revoked < 0 ?
	    tok->revoke_msg : "after this answer"));
	json_object_object_add(ans->body, "token", t);
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}


/* No installation token: GitHub said no (the App is not installed, the
 * token refused) or could not be asked, as docs/api.md's codes say. */
static void
fail_token(struct broker *b, struct answer *ans, int r)
{
	int refused = r == TH_ERR_DENIED || r == TH_ERR_NOT_FOUND;

	if (!refused)
		b->m.github_unavailable++;
	fail(b, ans, refused ? 403 : 502, refused ? "github_refused" :
	    "github_unavailable", r);
}

/* How long the answer took, and how much of it was GitHub's: what the
 * broker itself costs is the difference. */
static void
timing_json(struct answer *ans, uint64_t t0, unsigned rounds0,
    uint64_t busy0)
{
	struct json_object *t = json_object_new_object();
	uint64_t total = now_us() - t0, gh = gh_thread_busy_us() - busy0;

	json_object_object_add(t, "github_round_trips",
	    json_object_new_int64(gh_thread_rounds() - rounds0));
	json_object_object_add(t, "github_us", json_object_new_int64(
	    (int64_t)gh));
	json_object_object_add(t, "broker_us", json_object_new_int64(
	    (int64_t)(total - gh)));
	json_object_object_add(ans->body, "timing", t);
}

static void
merge(struct broker *b, const struct cap_redeemed *red, const char *cap,
    const char *method, struct answer *ans)
{
	struct json_object *perms = NULL, *evidence = NULL, *res;
	struct gh_token *tok = NULL;
	struct gh_result gr;
	struct pr_facts f;
	int64_t inst, intent = 0, outcome = 0, ckpt = 0, recorded;
	char why[512];
	int r, e;

	memset(&f, 0, sizeof(f));
	if ((tok = calloc(1, sizeof(*tok))) == NULL ||
	    (perms = permissions(red->op.op)) == NULL) {
		fail(b, ans, 500, "internal", TH_ERR_ALLOC);
		goto out;
	}
	if ((r = gh_installation(b->gh, red->op.repo, &inst)) != 0 ||
	    (r = gh_token_create(b->gh, inst, red->op.repo, perms, tok)) != 0) {
		fail_token(b, ans, r);
		goto out;
	}
	if ((r = gh_pr_facts(b->gh, tok, red->op.repo, red->op.pr,
	    peval_reads_files(red->chain->policy), &f)) != 0) {
		fail(b, ans, r == TH_ERR_UNAVAILABLE ? 502 : 403,
		    r == TH_ERR_UNAVAILABLE ? "github_unavailable" :
		    "github_refused", r);
		goto revoke;
	}
	r = peval_merge(red->chain->policy, &f, red->op.target,
	    time(NULL), &evidence);
	ans->body = json_object_new_object();
	json_object_object_add(ans->body, "decision", evidence);
	if (r != 0) {
		b->m.policy_denied++;
		log_warn("%s: merge of %s#%lld denied: %s", red->agent,
		    red->op.repo, (long long)red->op.pr, th_errmsg(r));
		fail(b, ans, 403, "policy_denied", r);
		goto revoke;
	}
	recorded = (int64_t)time(NULL);
	if ((r = rec_intent(b, red, cap, evidence, tok, &intent)) != 0) {
		intent_failed(b, ans, r);
		goto revoke;
	}
	tok->intent = intent;
	/* The merge names the SHA every rule was checked against: if the
	 * head moved since, GitHub refuses (409). */
	gh_send_by(recorded + GH_SEND_WITHIN);
	r = gh_merge(b->gh, tok, red->op.repo, red->op.pr, f.pr.head_sha,
	    method, &gr);
	gh_send_by(0);
	snprintf(why, sizeof(why), "%s", th_errmsg(r));
	res = json_object_new_object();
	if (r == 0) {
		json_object_object_add(res, "merged", json_object_new_boolean(1));
		json_object_object_add(res, "sha", json_object_new_string(gr.sha));
		json_object_object_add(res, "head_sha",
		    json_object_new_string(f.pr.head_sha));
	}
	e = rec_outcome(b, intent, gr.status, res, r != 0 ? why : NULL,
	    &outcome, &ckpt);
	audit_json(ans, intent, outcome, ckpt, e);
	if (e != 0)
		log_err("audit: outcome of intent %lld not recorded: %s",
		    (long long)intent, th_errmsg(e));
	if (r != 0) {
		th_fail(r, "%s", why);
		json_object_put(res);
		b->m.github_refused++;
		log_warn("%s: merge of %s#%lld refused by GitHub: %s",
		    red->agent, red->op.repo, (long long)red->op.pr,
		    th_errmsg(r));
		/* A 5xx or a lost answer leaves the outcome unknown: say so
		 * rather than guess. */
		fail(b, ans, gr.status == 409 ? 409 : 502, gr.status == 409 ?
		    "head_moved" : gr.status == 0 || gr.status >= 500 ||
		    r == TH_ERR_UNAVAILABLE ? "github_unavailable" :
		    "github_refused", r);
		goto revoke;
	}
	b->m.merges++;
	log_info("%s: merged %s#%lld at %s as %s", red->agent, red->op.repo,
	    (long long)red->op.pr, f.pr.head_sha, gr.sha);
	ans->status = 200;
	json_object_object_add(ans->body, "result", res);
 revoke:
	/* Revocation happens after the answer is sent, off its path. */
	token_json(ans, tok);
	ans->revoke_later = tok;
	tok = NULL;
 out:
	facts_free(&f);
	json_object_put(perms);
	gh_token_free(tok);
}

/* A file name or numeric id: it goes into a URL path. */
static int
workflow_valid(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 255 && s[0] != '.' &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789._-") == n;
}

/* The request GitHub gets for an operation other than a merge. */
static int
write_request(const struct cap_op *op, char *path, size_t pathlen,
    struct json_object **body, long *ok)
{
	struct json_object *p, *v;
	const char *wf;
	int r = 0;

	if ((p = json_tokener_parse(op->params[0] ? op->params : "{}")) == NULL)
		return TH_ERR_ALLOC;
	*body = json_object_new_object();
	if (strcmp(op->op, "github.pr.create") == 0) {
		snprintf(path, pathlen, "/repos/%s/pulls", op->repo);
		json_object_object_add(*body, "base",
		    json_object_new_string(op->target));
		json_object_object_foreach(p, k, val)
			json_object_object_add(*body, k, json_object_get(val));
		*ok = 201;
	} else if (strcmp(op->op, "github.comment") == 0) {
		snprintf(path, pathlen, "/repos/%s/issues/%lld/comments",
		    op->repo, (long long)op->pr);
		json_object_object_get_ex(p, "body", &v);
		json_object_object_add(*body, "body", json_object_get(v));
		*ok = 201;
	} else if (strcmp(op->op, "github.deployment.create") == 0) {
		snprintf(path, pathlen, "/repos/%s/deployments", op->repo);
		json_object_object_add(*body, "ref",
		    json_object_new_string(op->target));
		/* GitHub's default would merge the default branch into the
		 * ref first: deploy exactly what was named. */
		json_object_object_add(*body, "auto_merge",
		    json_object_new_boolean(0));
		json_object_object_foreach(p, k2, val2)
			json_object_object_add(*body, k2,
			    json_object_get(val2));
		*ok = 201;
	} else if (strcmp(op->op, "github.workflow.dispatch") == 0) {
		json_object_object_get_ex(p, "workflow", &v);
		wf = json_object_get_string(v);
		if (!workflow_valid(wf))
			r = th_fail(TH_ERR_INVALID, "workflow must be a file name "
			    "or an id");
		snprintf(path, pathlen, "/repos/%s/actions/workflows/%s/"
		    "dispatches", op->repo, wf);
		json_object_object_add(*body, "ref",
		    json_object_new_string(op->target));
		if (json_object_object_get_ex(p, "inputs", &v))
			json_object_object_add(*body, "inputs",
			    json_object_get(v));
		*ok = 204;
	} else
		r = th_fail(TH_ERR_INVALID, "%s is not an operation", op->op);
	json_object_put(p);
	return r;
}

/* Any operation but a merge: policy first (it needs nothing from GitHub),
 * then a token for exactly this, the write, and revocation. */
static void
operate(struct broker *b, const struct cap_redeemed *red, const char *cap,
    struct answer *ans)
{
	struct json_object *perms = NULL, *evidence = NULL, *body = NULL, *res;
	struct gh_token *tok = NULL;
	struct gh_result gr;
	char path[HTTP_URL_MAX / 2];
	int64_t inst, intent = 0, outcome = 0, ckpt = 0, recorded;
	char why[512];
	long ok = 0;
	int r, e;

	r = peval_op(red->chain->policy, red->op.target[0] ? red->op.target :
	    NULL, time(NULL), &evidence);
	ans->body = json_object_new_object();
	json_object_object_add(ans->body, "decision", evidence);
	if (r != 0) {
		b->m.policy_denied++;
		log_warn("%s: %s on %s denied: %s", red->agent, red->op.op,
		    red->op.repo, th_errmsg(r));
		fail(b, ans, 403, "policy_denied", r);
		return;
	}
	if ((r = write_request(&red->op, path, sizeof(path), &body, &ok)) != 0) {
		fail(b, ans, 400, "bad_request", r);
		goto out;
	}
	if ((tok = calloc(1, sizeof(*tok))) == NULL ||
	    (perms = permissions(red->op.op)) == NULL) {
		fail(b, ans, 500, "internal", TH_ERR_ALLOC);
		goto out;
	}
	if ((r = gh_installation(b->gh, red->op.repo, &inst)) != 0 ||
	    (r = gh_token_create(b->gh, inst, red->op.repo, perms, tok)) != 0) {
		fail_token(b, ans, r);
		goto out;
	}
	recorded = (int64_t)time(NULL);
	if ((r = rec_intent(b, red, cap, evidence, tok, &intent)) != 0) {
		intent_failed(b, ans, r);
		goto revoke;
	}
	tok->intent = intent;
	gh_send_by(recorded + GH_SEND_WITHIN);
	r = gh_write(b->gh, tok, "POST", path, body, ok, &gr);
	gh_send_by(0);
	snprintf(why, sizeof(why), "%s", th_errmsg(r));
	res = json_object_new_object();
	json_object_object_add(res, "status", json_object_new_int64(gr.status));
	if (r == 0 && gr.id != 0)
		json_object_object_add(res, "id", json_object_new_int64(gr.id));
	e = rec_outcome(b, intent, gr.status, res, r != 0 ? why : NULL,
	    &outcome, &ckpt);
	audit_json(ans, intent, outcome, ckpt, e);
	if (r != 0) {
		th_fail(r, "%s", why);
		json_object_put(res);
		b->m.github_refused++;
		log_warn("%s: %s on %s failed: %s", red->agent, red->op.op,
		    red->op.repo, th_errmsg(r));
		fail(b, ans, r == TH_ERR_UNAVAILABLE ? 502 : 403,
		    r == TH_ERR_UNAVAILABLE ? "github_unavailable" :
		    "github_refused", r);
	} else {
		log_info("%s: %s on %s done (%ld)", red->agent, red->op.op,
		    red->op.repo, gr.status);
		ans->status = 200;
		json_object_object_add(ans->body, "result", res);
	}
 revoke:
	token_json(ans, tok);
	ans->revoke_later = tok;
	tok = NULL;
 out:
	json_object_put(body);
	json_object_put(perms);
	gh_token_free(tok);
}

static const char *const redeem_members[] = { "capability",
    "merge_method" };

void
act_redeem(struct broker *b, const char *agent, struct json_object *req,
    struct answer *ans)
{
	struct cap_redeemed red;
	const char *tok, *method = "merge";
	char desc[512];
	uint64_t t0 = now_us(), busy0 = gh_thread_busy_us();
	unsigned rounds0 = gh_thread_rounds();
	int r;

	ans->agent = agent;
	if (!json_object_is_type(req, json_type_object) ||
	    (r = json_get_string_len(req, "capability", JWS_TOKEN_MAX, &tok))
	    != 0) {
		fail(b, ans, 400, "bad_request", th_fail(TH_ERR_INVALID, "give "
		    "{\"capability\": TOKEN}"));
		return;
	}
	if ((r = json_only_members(req, redeem_members,
	    sizeof(redeem_members) / sizeof(redeem_members[0]))) != 0) {
		fail(b, ans, 400, "bad_request", r);
		return;
	}
	r = json_get_string(req, "merge_method", &method);
	if (r == 0 && strcmp(method, "merge") && strcmp(method, "squash") &&
	    strcmp(method, "rebase")) {
		fail(b, ans, 400, "bad_request", th_fail(TH_ERR_INVALID,
		    "merge_method must be merge, squash or rebase"));
		return;
	}
	/* Judged before it is spent: presented by another agent, or here
	 * instead of at the git endpoint, it stays good for its own use. */
	if ((r = cap_check(b->cap, b->st, tok, strlen(tok), time(NULL),
	    &red)) != 0 || (strcmp(red.agent, agent) != 0 &&
	    (r = th_fail(TH_ERR_DENIED, "the capability was minted for %s",
	    red.agent)) != 0))
		goto refused;
	if (strcmp(red.op.op, "github.push") == 0 ||
	    strcmp(red.op.op, "github.fetch") == 0) {
		ans->op = &red.op;
		fail(b, ans, 400, "bad_request", th_fail(TH_ERR_INVALID, "%s "
		    "capabilities are used by git, through the broker's git "
		    "endpoint (docs/api.md)", red.op.op));
		ans->op = NULL;
		cap_redeemed_release(b->cap, &red);
		return;
	}
	if ((r = cap_spend(b->st, &red, time(NULL), 0)) != 0)
		goto refused;
	b->m.redeemed++;
	ans->op = &red.op;
	ans->jti = red.jti;
	chain_describe(red.chain, desc, sizeof(desc));
	log_info("%s: redeemed %s for %s %s#%lld (%s)", agent, red.jti,
	    red.op.op, red.op.repo, (long long)red.op.pr, desc);
	if (strcmp(red.op.op, "github.merge") == 0)
		merge(b, &red, tok, method, ans);
	else
		operate(b, &red, tok, ans);
	ans->op = NULL;
	ans->jti = NULL;
	if (ans->body == NULL)
		ans->body = json_object_new_object();
	json_object_object_add(ans->body, "chain", json_object_new_string(desc));
	json_object_object_add(ans->body, "jti", json_object_new_string(red.jti));
	timing_json(ans, t0, rounds0, busy0);
	cap_redeemed_release(b->cap, &red);
	return;
 refused:
	cap_redeemed_release(b->cap, &red);
	b->m.redeem_refused++;
	log_warn("%s: redeem refused: %s", agent, th_errmsg(r));
	fail(b, ans, r == TH_ERR_DENIED ? 403 : 500, r == TH_ERR_DENIED ?
	    "capability_refused" : "internal", r);
}
