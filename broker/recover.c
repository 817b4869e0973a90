/* Recovery (docs/audit-format.md, "recovered"): at start, for every intent
 * the log holds without an outcome (the broker died between the two), ask
 * GitHub what became of the operation and record its answer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "broker.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "recover.h"
#include "revoker.h"

/* How long before its intent an object GitHub lists may have been made
 * and still be the intent's: the broker's and GitHub's clocks may
 * disagree by this much. */
#define RECOVER_SKEW	60
/* Seconds after its intent by which GitHub has done all it will of an
 * operation other than a push: it was sent within GH_SEND_WITHIN of the
 * intent or not at all, connected within HTTP_CONNECT_TIMEOUT_MS, and
 * GitHub ends a request after GH_WORK_MAX; a margin. */
#define RECOVER_SETTLE	(GH_SEND_WITHIN + HTTP_CONNECT_TIMEOUT_MS / 1000 + \
			 GH_WORK_MAX + 2)
/* A push streams its pack for as long as it takes: only the broker's
 * death ended it, and that was before this start. */
#define RECOVER_PUSH_SETTLE	(GH_WORK_MAX + 5)

/* What recovery's lookups need: the App's login (when app is not NULL) and
 * a token for repo with one read permission, in *out (the caller hands it
 * to recovery_done).  A failure here says nothing of the intent (the
 * signer or GitHub away, the App not installed for now): it is made one
 * that may pass, so the intent stays open for the next start. */
static int
recovery_access(struct broker *b, const char *repo, const char *perm,
    char *app, size_t applen, struct gh_token **out)
{
	struct json_object *perms;
	int64_t inst;
	int r;

	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return TH_ERR_ALLOC;
	if ((perms = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(perms, perm, json_object_new_string("read"));
	if ((app == NULL || (r = gh_app_login(b->gh, app, applen)) == 0) &&
	    (r = gh_installation(b->gh, repo, &inst)) == 0)
		r = gh_token_create(b->gh, inst, repo, perms, *out);
	json_object_put(perms);
	if (r != 0 && r != TH_ERR_ALLOC)
		r = th_fail(TH_ERR_UNAVAILABLE, "cannot ask GitHub yet: %s",
		    th_errmsg(r));
	return r;
}

/* The token goes to the revoker, which records its revocation (with no
 * intent: it only read facts) as for any other. */
static void
recovery_done(struct broker *b, struct gh_token *tok)
{
	if (tok == NULL)
		return;
	if (tok->value[0] != '\0')
		revoker_push(b->revoker, tok);
	else
		gh_token_free(tok);
}

static int iso_time(const char *, time_t *);

/* What GitHub says of an interrupted merge's pull request.  It is this
 * intent's merge only if the App merged it, in the intent's window, with
 * the head the intent was judged on: a merge by someone else after the
 * broker died (of that head or a later one) is not the broker's. */
static int
recover_merge(struct broker *b, int64_t seq, const char *repo, int64_t n,
    struct json_object *entry, time_t at, struct json_object *res)
{
	struct json_object *d;
	struct gh_token *tok = NULL;
	struct gh_pr pr;
	char app[GH_LOGIN_MAX + 1];
	const char *judged = NULL;
	int64_t by = 0;
	time_t t;
	int r, ours;

	if (json_object_object_get_ex(entry, "decision", &d))
		json_get_string(d, "head_sha", &judged);
	if ((r = recovery_access(b, repo, "pull_requests", app, sizeof(app),
	    &tok)) == 0 && (r = gh_pr_get(b->gh, tok, repo, n, &pr)) == 0) {
		ours = pr.merged && strcasecmp(pr.merged_by, app) == 0 &&
		    iso_time(pr.merged_at, &t) == 0 &&
		    t >= at - RECOVER_SKEW &&
		    t <= at + RECOVER_SETTLE + RECOVER_SKEW &&
		    judged != NULL && strcmp(judged, pr.head_sha) == 0;
		/* Two intents to merge one pull request (one never sent, the
		 * broker down before the other's): the one whose outcome
		 * says so merged it. */
		if (ours && (r = alog_merge_claimed(b->audit, repo, n, seq,
		    &by)) != 0)
			goto out;
		if (by != 0)
			json_object_object_add(res, "merge_of_intent",
			    json_object_new_int64(by));
		json_object_object_add(res, "merged",
		    json_object_new_boolean(ours && by == 0));
		json_object_object_add(res, "state", json_object_new_string(
		    pr.open ? "open" : "closed"));
		json_object_object_add(res, "head_sha",
		    json_object_new_string(pr.head_sha));
		if (pr.merged) {
			json_object_object_add(res, "merged_by",
			    json_object_new_string(pr.merged_by));
			json_object_object_add(res, "merged_at",
			    json_object_new_string(pr.merged_at));
		}
	}
 out:
	recovery_done(b, tok);
	return r;
}

/* Where each branch of an interrupted push is now, from its intent's
 * refs (their old and new ids): "pushed" true if every one is at its new
 * id (gone, for a deletion), false if every one is still at its old, and
 * absent if they moved otherwise (each ref's "now" says how). */
static int
recover_push(struct broker *b, const char *repo, struct json_object *entry,
    struct json_object *res)
{
	struct json_object *d, *refs, *one, *o = NULL, *c, *v, *out, *x;
	struct gh_token *tok = NULL;
	const char *ref, *oldid, *newid, *now;
	long status;
	size_t i;
	int r, all_new = 1, all_old = 1, is_new, is_old;

	if (!json_object_object_get_ex(entry, "decision", &d) ||
	    !json_object_object_get_ex(d, "refs", &refs) ||
	    !json_object_is_type(refs, json_type_array) ||
	    json_object_array_length(refs) == 0)
		return th_fail(TH_ERR_INVALID, "the intent names no refs");
	if ((r = recovery_access(b, repo, "contents", NULL, 0, &tok)) != 0)
		goto out;
	out = json_object_new_array();
	json_object_object_add(res, "refs", out);
	for (i = 0; i < json_object_array_length(refs); i++) {
		one = json_object_array_get_idx(refs, i);
		if (json_get_string(one, "ref", &ref) != 0 ||
		    strncmp(ref, "refs/heads/", 11) != 0 ||
		    json_get_string(one, "old", &oldid) != 0 ||
		    json_get_string(one, "new", &newid) != 0) {
			r = th_fail(TH_ERR_INVALID, "the intent's refs are "
			    "malformed");
			goto out;
		}
		json_object_put(o);
		o = NULL;
		if ((r = gh_branch_get(b->gh, tok, repo, ref + 11, &status,
		    &o)) != 0)
			goto out;
		now = NULL;
		if (status == 200 && (!json_object_object_get_ex(o, "commit",
		    &c) || !json_object_object_get_ex(c, "sha", &v) ||
		    (now = json_object_get_string(v)) == NULL)) {
			r = th_fail(TH_ERR_PROTOCOL, "GitHub: branch %s: no sha",
			    ref + 11);
			goto out;
		}
		if (status != 200 && status != 404) {
			r = th_fail(TH_ERR_UNAVAILABLE, "GitHub: branch %s: %ld",
			    ref + 11, status);
			goto out;
		}
		/* An all-zero id is no branch: created from, or deleted to. */
		is_new = now != NULL ? strcmp(now, newid) == 0 :
		    strspn(newid, "0") == strlen(newid);
		is_old = now != NULL ? strcmp(now, oldid) == 0 :
		    strspn(oldid, "0") == strlen(oldid);
		all_new &= is_new;
		all_old &= is_old;
		x = json_object_new_object();
		json_object_object_add(x, "ref", json_object_new_string(ref));
		json_object_object_add(x, "now", now != NULL ?
		    json_object_new_string(now) : NULL);
		json_object_array_add(out, x);
	}
	if (all_new || all_old)
		json_object_object_add(res, "pushed",
		    json_object_new_boolean(all_new));
	r = 0;
 out:
	recovery_done(b, tok);
	json_object_put(o);
	return r;
}

/* GitHub's timestamps: "YYYY-MM-DDTHH:MM:SSZ". */
static int
iso_time(const char *s, time_t *out)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL ||
	    *end != '\0')
		return -1;
	*out = timegm(&tm);
	return 0;
}

static int
iso_format(time_t t, char *out, size_t len)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return th_fail(TH_ERR_INVALID, "time %lld out of range",
		    (long long)t);
	return 0;
}

int
rec_made_match(struct json_object *item, void *arg)
{
	struct rec_made *m = arg;
	struct json_object *who, *head;
	const char *login, *created, *v;
	time_t t;
	int64_t id;

	if (!json_object_is_type(item, json_type_object) ||
	    !json_object_object_get_ex(item, m->login_member, &who) ||
	    json_get_string(item, "created_at", &created) != 0 ||
	    json_get_int64(item, m->id_member, &id) != 0 ||
	    iso_time(created, &t) != 0)
		return th_fail(TH_ERR_PROTOCOL, "GitHub listed an object "
		    "without %s, %s or a readable created_at", m->login_member,
		    m->id_member);
	/* A list said to be newest first that is not would make the early
	 * stop below miss what the App made. */
	if (m->newest_first && m->last != 0 && t > m->last)
		return th_fail(TH_ERR_PROTOCOL, "GitHub's list is not newest "
		    "first");
	m->last = t;
	if (t < m->since)
		return m->newest_first ? 1 : 0;
	if (t > m->until)
		return 0;
	/* A deleted account's objects name no one ("user": null). */
	if (!json_object_is_type(who, json_type_object) ||
	    json_get_string(who, "login", &login) != 0 ||
	    strcasecmp(login, m->app) != 0)
		return 0;
	if (m->body != NULL && (json_get_string(item, "body", &v) != 0 ||
	    strcmp(v, m->body) != 0))
		return 0;
	if (m->head != NULL && (!json_object_object_get_ex(item, "head",
	    &head) || json_get_string(head, "ref", &v) != 0 ||
	    strcmp(v, m->head) != 0))
		return 0;
	if (m->nids == REC_CANDIDATES)
		return th_fail(TH_ERR_TOO_LONG, "more than %d objects the App "
		    "made could be the intent's", REC_CANDIDATES);
	m->ids[m->nids++] = id;
	return 0;
}

/* Lists path (a query string already on it) with a token of perm read for
 * what the App made for an intent (kind on repo) between m->since and
 * m->until, and records in res "created" and, if so, "id": the oldest
 * candidate no outcome or recovered entry names yet.  Interrupted
 * identical operations are so given what GitHub made in the order their
 * intents were recorded. */
static int
recover_made(struct broker *b, const char *kind, const char *repo,
    const char *perm, const char *path, struct rec_made *m,
    struct json_object *res)
{
	struct gh_token *tok = NULL;
	char app[GH_LOGIN_MAX + 1], since[32], until[32];
	int64_t found = 0;
	size_t i;
	int r, named = 1;

	m->app = app;
	if ((r = iso_format(m->since, since, sizeof(since))) != 0 ||
	    (r = iso_format(m->until, until, sizeof(until))) != 0 ||
	    (r = recovery_access(b, repo, perm, app, sizeof(app),
	    &tok)) != 0 ||
	    (r = gh_list(b->gh, tok, path, rec_made_match, m)) != 0)
		goto out;
	/* Oldest first: GitHub's ids grow with creation. */
	for (i = 0; i < m->nids && named; i++) {
		found = m->ids[m->nids - 1 - i];
		if (!m->newest_first)
			found = m->ids[i];
		if ((r = alog_result_named(b->audit, kind, repo, found,
		    &named)) != 0)
			goto out;
	}
	json_object_object_add(res, "created", json_object_new_boolean(
	    !named));
	if (!named)
		json_object_object_add(res, "id", json_object_new_int64(found));
	json_object_object_add(res, "since", json_object_new_string(since));
	json_object_object_add(res, "until", json_object_new_string(until));
 out:
	recovery_done(b, tok);
	m->app = NULL;
	return r;
}

/* A string of the intent's op (target, or a member of its params),
 * escaped for a URL's query into out[len]. */
static int
op_arg(struct json_object *op, const char *member, const char *dflt,
    const char **raw, char *out, size_t len)
{
	struct json_object *p;
	const char *v = dflt;

	if (strcmp(member, "target") == 0)
		json_get_string(op, "target", &v);
	else if (json_object_object_get_ex(op, "params", &p) &&
	    json_object_is_type(p, json_type_object))
		json_get_string(p, member, &v);
	if (v == NULL)
		return th_fail(TH_ERR_INVALID, "the intent's op has no %s",
		    member);
	if (gh_escape(out, len, v) != 0)
		return th_fail(TH_ERR_TOO_LONG, "the intent's %s is too long",
		    member);
	if (raw != NULL)
		*raw = v;
	return 0;
}

/* Comments, pull requests and deployments the App made for an interrupted
 * intent, looked up by what the intent asked for. */
static int
recover_created(struct broker *b, const char *kind, const char *repo,
    struct json_object *op, int64_t pr, time_t at, struct json_object *res)
{
	char path[HTTP_URL_MAX], since[32], owner[SCOPE_REPO_MAX + 1];
	char a1[3 * SCOPE_BRANCH_MAX + 1], a2[3 * SCOPE_BRANCH_MAX + 1];
	struct json_object *p, *v;
	const char *head, *colon;
	struct rec_made m;
	int r, n;

	memset(&m, 0, sizeof(m));
	m.since = at - RECOVER_SKEW;
	m.until = at + RECOVER_SETTLE + RECOVER_SKEW;
	m.login_member = "user";
	m.id_member = "id";
	if (strcmp(kind, "github.comment") == 0) {
		if (!json_object_object_get_ex(op, "params", &p) ||
		    !json_object_object_get_ex(p, "body", &v) ||
		    !json_object_is_type(v, json_type_string))
			return th_fail(TH_ERR_INVALID, "the intent's comment "
			    "has no body");
		m.body = json_object_get_string(v);
		if ((r = iso_format(m.since, since, sizeof(since))) != 0)
			return r;
		/* since filters by last update, never earlier than
		 * creation; the list is oldest first. */
		n = snprintf(path, sizeof(path), "/repos/%s/issues/%lld/"
		    "comments?since=%s&per_page=100", repo, (long long)pr,
		    since);
		if (n < 0 || (size_t)n >= sizeof(path))
			return th_fail(TH_ERR_TOO_LONG, "URL too long");
		return recover_made(b, kind, repo, "issues", path, &m, res);
	}
	if (strcmp(kind, "github.pr.create") == 0) {
		/* GitHub filters by "owner:branch" (and ignores a head
		 * without owner, so the head is compared here too); not by
		 * base, which may have changed since (a deleted base branch
		 * retargets its pull requests). */
		if ((r = op_arg(op, "head", NULL, &head, a1,
		    sizeof(a1))) != 0)
			return r;
		snprintf(owner, sizeof(owner), "%.*s", (int)strcspn(repo, "/"),
		    repo);
		colon = strchr(head, ':');
		m.head = colon != NULL ? colon + 1 : head;
		n = snprintf(path, sizeof(path), "/repos/%s/pulls?state=all&"
		    "sort=created&direction=desc&head=%s%s%s&per_page=100",
		    repo, colon != NULL ? "" :
		    owner, colon != NULL ? "" : "%3A", a1);
		if (n < 0 || (size_t)n >= sizeof(path))
			return th_fail(TH_ERR_TOO_LONG, "URL too long");
		m.id_member = "number";
		m.newest_first = 1;
		return recover_made(b, kind, repo, "pull_requests", path, &m,
		    res);
	}
	/* github.deployment.create: GitHub's default environment when the
	 * intent named none. */
	if ((r = op_arg(op, "target", NULL, NULL, a1, sizeof(a1))) != 0 ||
	    (r = op_arg(op, "environment", "production", NULL, a2,
	    sizeof(a2))) != 0)
		return r;
	n = snprintf(path, sizeof(path), "/repos/%s/deployments?ref=%s&"
	    "environment=%s&per_page=100", repo, a1, a2);
	if (n < 0 || (size_t)n >= sizeof(path))
		return th_fail(TH_ERR_TOO_LONG, "URL too long");
	m.login_member = "creator";
	m.newest_first = 1;
	return recover_made(b, kind, repo, "deployments", path, &m, res);
}

/* GitHub may still be doing what a request sent just before the broker
 * died asked for: nothing is concluded before it must be done.  For an
 * operation other than a push that is RECOVER_SETTLE after its intent;
 * a push may have sent its last byte just before the broker died, which
 * was before start. */
static void
settle(int64_t seq, int64_t at, int push, int64_t start)
{
	int64_t until = push ? start + RECOVER_PUSH_SETTLE :
	    at + RECOVER_SETTLE, wait = until - (int64_t)time(NULL);
	struct timespec left;

	if (wait <= 0)
		return;
	/* An intent from the future: the clock was set back since. */
	if (wait > RECOVER_SETTLE)
		wait = RECOVER_SETTLE;
	log_info("audit: intent %lld is recent: waiting %lld s for GitHub to "
	    "finish what it may still be doing", (long long)seq,
	    (long long)wait);
	left.tv_sec = (time_t)wait;
	left.tv_nsec = 0;
	while (nanosleep(&left, &left) != 0 && errno == EINTR)
		;
}

/* What GitHub says about one intent left without an outcome. */
static int
recover_one(int64_t seq, struct json_object *entry, void *arg)
{
	struct broker *b = arg;
	struct json_object *op = NULL, *res;
	const char *kind = "", *repo = "";
	int64_t n = 0, at = 0;
	long status = 200;
	int r;

	if ((res = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	if (json_object_object_get_ex(entry, "op", &op)) {
		json_get_string(op, "op", &kind);
		json_get_string(op, "repo", &repo);
		json_get_int64(op, "pr", &n);
	}
	json_get_int64(entry, "time", &at);
	if (strcmp(kind, "github.workflow.dispatch") != 0)
		settle(seq, at, strcmp(kind, "github.push") == 0, b->started);
	if (strcmp(kind, "github.merge") == 0)
		r = recover_merge(b, seq, repo, n, entry, (time_t)at, res);
	else if (strcmp(kind, "github.push") == 0)
		r = recover_push(b, repo, entry, res);
	else if (strcmp(kind, "github.comment") == 0 ||
	    strcmp(kind, "github.pr.create") == 0 ||
	    strcmp(kind, "github.deployment.create") == 0)
		r = recover_created(b, kind, repo, op, n, (time_t)at, res);
	else {
		r = 0;
		status = 0;
		json_object_object_add(res, "unknown", json_object_new_string(
		    strcmp(kind, "github.workflow.dispatch") == 0 ?
		    "GitHub starts a dispatched workflow's run later and a run "
		    "does not name the request that made it; check the "
		    "workflow's runs by hand" :
		    "GitHub offers no lookup that tells whether this operation "
		    "happened; check by hand"));
	}
	/* What no later start would answer otherwise (the pull request or
	 * issue gone, the intent's own values unusable) is recorded as
	 * unknown, saying why; the rest is asked again at the next start.
	 * (recovery_access makes every failure to get at GitHub one that
	 * may pass: only the lookups and the intent give these codes.) */
	if (r == TH_ERR_NOT_FOUND || r == TH_ERR_INVALID ||
	    r == TH_ERR_TOO_LONG) {
		json_object_put(res);
		if ((res = json_object_new_object()) == NULL)
			return TH_ERR_ALLOC;
		status = 0;
		json_object_object_add(res, "unknown",
		    json_object_new_string(th_errmsg(r)));
		r = 0;
	}
	if (r != 0) {
		log_warn("audit: intent %lld still open: GitHub did not say "
		    "what happened: %s", (long long)seq, th_errmsg(r));
		json_object_put(res);
		return 0;	/* try again at the next start */
	}
	r = rec_recovered(b, seq, status, res);
	json_object_put(res);
	return r;
}

int
act_recover(struct broker *b)
{
	b->started = (int64_t)time(NULL);
	return alog_open_intents(b->audit, recover_one, b);
}
