#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "err.h"
#include "github.h"
#include "json.h"
#include "jws.h"
#include "sha.h"
#include "tree.h"
#include "utf8.h"

#define GH_JWT_TTL	540	/* GitHub allows 600; iat is backdated 60 */
#define GH_PER_PAGE	100
#define GH_PAGES_MAX	40	/* 3000 files / 100 + slack */
#define GH_COMPARE_FILES 300	/* a comparison lists no more */
#define GH_TREE_DIRS_MAX 400	/* directories walked for one PR: two
				 * listings each, under GitHub's 900 requests
				 * a minute */
#define GH_TREE_PER_MINUTE 800	/* listings by all walks together */
#define GH_TREE_WALK_S	10	/* the other facts were read before it */

/* Whatever GitHub's tokens grow to within GH_TOKEN_MAX, the request that
 * uses or revokes one can carry it. */
_Static_assert(GH_TOKEN_MAX + sizeof("Bearer ") <= HTTP_AUTH_MAX &&
    GH_AUTH_MAX <= HTTP_AUTH_MAX, "Authorization values past HTTP_AUTH_MAX");

/* Shared by the broker's request threads.  mu guards the App JWT, the
 * installation cache and which sessions are in use; a request holds a
 * session (a curl multi handle and its connections) only while it waits
 * on GitHub, and never holds mu then. */
struct gh {
	pthread_mutex_t	 mu;
	/* One pull request's trees are walked at a time: up to
	 * HTTP_BATCH_MAX listings of up to 8 MiB each per walk must not
	 * multiply by the merges in flight. */
	pthread_mutex_t	 tree_mu;
	/* Listings left this minute, shared by every walk (a token bucket
	 * refilled at GH_TREE_PER_MINUTE a minute), and when it was last
	 * refilled; under mu. */
	double		 tree_tokens;
	uint64_t	 tree_refilled_us;
	pthread_cond_t	 session_free;
	struct http	*session[GH_SESSIONS];
	int		 in_use[GH_SESSIONS];
	struct sigc	*signer;	/* its own connection, used under mu */
	char		 base[HTTP_URL_MAX / 2];
	char		 app_id[64];
	char		 jwt[GH_AUTH_MAX];	/* "Bearer <App JWT>", secret */
	int64_t		 jwt_exp;
	struct {
		char	 repo[SCOPE_REPO_MAX + 1];
		int64_t	 id;
	}		 inst[GH_INSTALL_CACHE];
	size_t		 ninst;
	struct {
		char	 key[SCOPE_REPO_MAX + FACTS_LOGIN_MAX + 2];
		int	 write;
		int64_t	 until;
	}		 perm[GH_PERM_CACHE];	/* "repo\nlogin", lower-case */
	size_t		 perm_next;		/* the slot replaced next */
	atomic_uint	 rounds;
	char		 app_login[GH_LOGIN_MAX + 1];	/* "slug[bot]" */
};

/* This thread's round trips and time waiting on GitHub: one request is
 * served by one thread, so the difference over a request is its own. */
static _Thread_local unsigned thread_rounds;
static _Thread_local uint64_t thread_busy_us;
static _Thread_local int64_t thread_send_by;	/* gh_send_by's, 0: none */
static _Thread_local int thread_not_sent;	/* run refused: deadline */

/* 1 if url is plain http to this machine: the host is exactly 127.0.0.1
 * or localhost (not localhost.example.com), then a port, a path or
 * nothing. */
static int
loopback_http(const char *url)
{
	static const char *const hosts[] = { "http://127.0.0.1",
	    "http://localhost" };
	size_t i, n;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		n = strlen(hosts[i]);
		if (strncmp(url, hosts[i], n) == 0 && (url[n] == '\0' ||
		    url[n] == ':' || url[n] == '/'))
			return 1;
	}
	return 0;
}

int
gh_url_ok(const char *url)
{
	/* No user part: "http://127.0.0.1:x@host/" is host's, not
	 * loopback's, and tokens are sent to it. */
	if (strchr(url, '@') != NULL || strpbrk(url, " \t\r\n\\") != NULL)
		return 0;
	return strncmp(url, "https://", 8) == 0 || loopback_http(url);
}

int
gh_new(const char *base_url, const char *app_id, const char *signer,
    struct gh **out)
{
	struct gh *g;
	int r;

	*out = NULL;
	if (strlen(base_url) >= sizeof(g->base) || strlen(app_id) >= 64 ||
	    !gh_url_ok(base_url))
		return th_fail(TH_ERR_CONFIG, "github-url must be https:// "
		    "(or http:// on loopback, for tests)");
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return TH_ERR_ALLOC;
	pthread_mutex_init(&g->mu, NULL);
	pthread_mutex_init(&g->tree_mu, NULL);
	pthread_cond_init(&g->session_free, NULL);
	snprintf(g->base, sizeof(g->base), "%s", base_url);
	if (g->base[0] != '\0' && g->base[strlen(g->base) - 1] == '/')
		g->base[strlen(g->base) - 1] = '\0';
	snprintf(g->app_id, sizeof(g->app_id), "%s", app_id);
	if (signer != NULL && (r = sigc_connect(signer, &g->signer)) != 0) {
		gh_free(g);
		return r;
	}
	*out = g;
	return 0;
}

void
gh_free(struct gh *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < GH_SESSIONS; i++)
		http_free(g->session[i]);
	sigc_close(g->signer);
	pthread_cond_destroy(&g->session_free);
	pthread_mutex_destroy(&g->mu);
	pthread_mutex_destroy(&g->tree_mu);
	OPENSSL_cleanse(g->jwt, sizeof(g->jwt));
	free(g);
}

unsigned
gh_rounds(struct gh *g)
{
	return atomic_load(&g->rounds);
}

void
gh_send_by(int64_t deadline)
{
	thread_send_by = deadline;
}

unsigned
gh_thread_rounds(void)
{
	return thread_rounds;
}

uint64_t
gh_thread_busy_us(void)
{
	return thread_busy_us;
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* http_run on a free session (waiting for one if all are busy),
 * accounting the round trips and the wall time spent on GitHub. */
static int
run(struct gh *g, struct http_req **reqs, size_t n)
{
	uint64_t t0 = now_us();
	unsigned rounds = 0;
	size_t i, k;
	int r;

	pthread_mutex_lock(&g->mu);
	for (;;) {
		for (i = 0; i < GH_SESSIONS && g->in_use[i]; i++)
			;
		if (i < GH_SESSIONS)
			break;
		pthread_cond_wait(&g->session_free, &g->mu);
	}
	g->in_use[i] = 1;
	pthread_mutex_unlock(&g->mu);
	/* Made when first needed (only this thread holds slot i now): a gh
	 * has as many as were ever busy at once, the revoker's at most its
	 * threads. */
	thread_not_sent = thread_send_by != 0 &&
	    (int64_t)time(NULL) > thread_send_by;
	if (thread_not_sent)
		r = th_fail(TH_ERR_UNAVAILABLE, "not sent: its intent was "
		    "recorded more than %d s ago", GH_SEND_WITHIN);
	else if (g->session[i] != NULL ||
	    (r = http_new("Threshold/0.1 (+broker)", &g->session[i])) == 0) {
		for (k = 0; k < n; k++)
			reqs[k]->send_by = thread_send_by;
		r = http_run(g->session[i], reqs, n, &rounds);
	}
	pthread_mutex_lock(&g->mu);
	g->in_use[i] = 0;
	pthread_cond_signal(&g->session_free);
	pthread_mutex_unlock(&g->mu);
	atomic_fetch_add(&g->rounds, rounds);
	thread_rounds += rounds;
	thread_busy_us += now_us() - t0;
	return r;
}

/* Renews the App JWT in g->jwt unless it is good for another minute. */
static int
app_jwt_locked(struct gh *g)
{
	struct json_object *claims = NULL;
	struct buf *tok = NULL;
	uint8_t sig[TH_SIG_MAX];
	int64_t now = (int64_t)time(NULL);
	enum th_alg alg;
	size_t siglen;
	int r;

	if (g->jwt[0] != '\0' && now < g->jwt_exp - 60)
		return 0;
	if (g->signer == NULL)
		return th_fail(TH_ERR_CONFIG, "no signer for App JWTs");
	if ((claims = json_object_new_object()) == NULL ||
	    (tok = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	json_object_object_add(claims, "iat", json_object_new_int64(now - 60));
	json_object_object_add(claims, "exp",
	    json_object_new_int64(now + GH_JWT_TTL));
	json_object_object_add(claims, "iss", json_object_new_string(g->app_id));
	if ((r = jws_signing_input(tok, TH_ALG_RS256, "JWT", NULL, claims)) != 0 ||
	    (r = sigc_sign(g->signer, "github-app", buf_ptr(tok), buf_len(tok),
	    &alg, sig, &siglen)) != 0 ||
	    (r = jws_append_sig(tok, sig, siglen)) != 0)
		goto out;
	if (buf_len(tok) + 8 >= sizeof(g->jwt)) {
		r = th_fail(TH_ERR_TOO_LONG, "App JWT too long");
		goto out;
	}
	snprintf(g->jwt, sizeof(g->jwt), "Bearer %.*s", (int)buf_len(tok),
	    (const char *)buf_ptr(tok));
	g->jwt_exp = now + GH_JWT_TTL;
 out:
	json_object_put(claims);
	buf_free(tok);
	return r;
}

/* "Bearer <JWT>" for the App into out (GH_AUTH_MAX bytes, secret: the
 * caller wipes it), re-signed shortly before it expires. */
static int
app_auth(struct gh *g, char *out)
{
	int r;

	pthread_mutex_lock(&g->mu);
	if ((r = app_jwt_locked(g)) == 0)
		memcpy(out, g->jwt, sizeof(g->jwt));
	pthread_mutex_unlock(&g->mu);
	return r;
}

/* One request, retried as http allows; on success *reply holds the
 * parsed JSON body (NULL for an empty one). */
/* GitHub's answer to a call its rate limit stopped (http.c gave up
 * waiting): the call was not acted on. */
static int
rate_limited(long status)
{
	return status == 403 || status == 429;
}

static int
call(struct gh *g, const char *method, const char *url, const char *auth,
    const char *body, int idempotent, long *status,
    struct json_object **reply, char *next, size_t nextlen)
{
	struct http_req req, *reqs[1] = { &req };
	int r;

	*reply = NULL;
	if ((r = http_req_init(&req, method, url, auth, body, idempotent)) != 0)
		return r;
	if ((r = run(g, reqs, 1)) != 0)
		goto out;
	/* Also on failure: a rate limit's 403 or 429 says the call was
	 * not acted on, where no answer says nothing. */
	*status = req.status;
	if (req.r != 0) {
		r = th_fail(req.r, "GitHub %s %s: %s", method, url + strlen(g->base),
		    req.errmsg);
		goto out;
	}
	if (next != NULL && req.next_too_long) {
		r = th_fail(TH_ERR_PROTOCOL, "GitHub sent a next page link "
		    "longer than %d bytes", HTTP_URL_MAX - 1);
		goto out;
	}
	if (next != NULL)
		snprintf(next, nextlen, "%s", req.next);
	if (buf_len(req.resp) > 0 && (r = json_parse_strict(
	    (const char *)buf_ptr(req.resp), buf_len(req.resp),
	    HTTP_RESP_MAX, reply)) != 0)
		r = th_fail(TH_ERR_PROTOCOL, "GitHub %s %s: unreadable reply: "
		    "%s", method, url + strlen(g->base), th_errmsg(r));
 out:
	http_req_clear(&req);
	return r;
}

/* GitHub's "message", for errors. */
static const char *
gh_message(struct json_object *o)
{
	const char *m;

	if (o != NULL && json_object_is_type(o, json_type_object) &&
	    json_get_string(o, "message", &m) == 0)
		return m;
	return "no message";
}

int
gh_installation(struct gh *g, const char *repo, int64_t *id)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_AUTH_MAX];
	long status = 0;
	size_t i;
	int r;

	pthread_mutex_lock(&g->mu);
	for (i = 0; i < g->ninst; i++)
		if (strcmp(g->inst[i].repo, repo) == 0)
			break;
	if (i < g->ninst)
		*id = g->inst[i].id;
	pthread_mutex_unlock(&g->mu);
	if (i < g->ninst)
		return 0;
	snprintf(url, sizeof(url), "%s/repos/%s/installation", g->base, repo);
	if ((r = app_auth(g, auth)) != 0 ||
	    (r = call(g, "GET", url, auth, NULL, 1, &status, &o, NULL, 0)) != 0)
		goto out;
	if (status != 200) {
		r = th_fail(status == 404 ? TH_ERR_NOT_FOUND : TH_ERR_DENIED,
		    "the GitHub App is not installed on %s (%ld: %s)", repo,
		    status, gh_message(o));
		goto out;
	}
	if ((r = json_get_int64(o, "id", id)) != 0 || *id <= 0) {
		r = th_fail(TH_ERR_PROTOCOL, "installation reply without id");
		goto out;
	}
	/* Two threads may both have asked: the second finds the first. */
	pthread_mutex_lock(&g->mu);
	for (i = 0; i < g->ninst; i++)
		if (strcmp(g->inst[i].repo, repo) == 0)
			break;
	if (i == g->ninst && g->ninst < GH_INSTALL_CACHE) {
		snprintf(g->inst[g->ninst].repo, sizeof(g->inst[0].repo), "%s",
		    repo);
		g->inst[g->ninst++].id = *id;
	}
	pthread_mutex_unlock(&g->mu);
 out:
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	return r;
}

static void
fingerprint(const char *value, char out[65])
{
	uint8_t d[SHA_LEN];
	size_t i;

	sha256((const uint8_t *)value, strlen(value), d);
	for (i = 0; i < sizeof(d); i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* GitHub's answer must grant exactly the permissions and repository asked
 * for (GitHub adds metadata: read to every token): a token wider than
 * requested is revoked, not used. */
static int
check_scope(struct json_object *o, const char *name, struct json_object *perms)
{
	struct json_object *got, *repos, *v;
	const char *rn;

	if (!json_object_object_get_ex(o, "permissions", &got) ||
	    !json_object_is_type(got, json_type_object))
		return th_fail(TH_ERR_DENIED, "token reply lists no "
		    "permissions");
	json_object_object_foreach(got, k, have) {
		if (strcmp(k, "metadata") == 0 &&
		    json_object_is_type(have, json_type_string) &&
		    strcmp(json_object_get_string(have), "read") == 0)
			continue;
		if (!json_object_object_get_ex(perms, k, &v) ||
		    !json_object_is_type(have, json_type_string) ||
		    strcmp(json_object_get_string(v),
		    json_object_get_string(have)) != 0)
			return th_fail(TH_ERR_DENIED, "token carries permission "
			    "%s beyond the request", k);
	}
	json_object_object_foreach(perms, k2, want) {
		(void)want;
		if (!json_object_object_get_ex(got, k2, &v))
			return th_fail(TH_ERR_DENIED, "token lacks permission "
			    "%s", k2);
	}
	if (!json_object_object_get_ex(o, "repositories", &repos) ||
	    !json_object_is_type(repos, json_type_array) ||
	    json_object_array_length(repos) != 1 ||
	    json_get_string(json_object_array_get_idx(repos, 0), "name",
	    &rn) != 0 || strcmp(rn, name) != 0)
		return th_fail(TH_ERR_DENIED, "token is not scoped to exactly "
		    "%s", name);
	return 0;
}

int
gh_token_create(struct gh *g, int64_t installation, const char *repo,
    struct json_object *perms, struct gh_token *tok)
{
	struct json_object *body = NULL, *repos, *o = NULL;
	const char *name = strchr(repo, '/') + 1, *v, *exp;
	char url[HTTP_URL_MAX], auth[GH_AUTH_MAX];
	long status = 0;
	int r;

	memset(tok, 0, sizeof(*tok));
	if ((body = json_object_new_object()) == NULL ||
	    (repos = json_object_new_array()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	json_object_array_add(repos, json_object_new_string(name));
	json_object_object_add(body, "repositories", repos);
	json_object_object_add(body, "permissions", json_object_get(perms));
	snprintf(url, sizeof(url), "%s/app/installations/%lld/access_tokens",
	    g->base, (long long)installation);
	/* Safe to resend: a token lost to a failed reply expires unused. */
	if ((r = app_auth(g, auth)) != 0 ||
	    (r = call(g, "POST", url, auth, json_object_to_json_string_ext(body,
	    JSON_C_TO_STRING_PLAIN), 1, &status, &o, NULL, 0)) != 0)
		goto out;
	if (status != 201) {
		r = th_fail(TH_ERR_DENIED, "GitHub refused an installation "
		    "token for %s (%ld: %s)", repo, status, gh_message(o));
		goto out;
	}
	if ((r = json_get_string(o, "token", &v)) != 0 ||
	    strlen(v) == 0 || strlen(v) > GH_TOKEN_MAX) {
		r = th_fail(TH_ERR_PROTOCOL, "malformed installation token "
		    "reply");
		goto out;
	}
	/* Held from here: any failure below revokes it. */
	strcpy(tok->value, v);
	fingerprint(tok->value, tok->fingerprint);
	if ((r = json_get_string(o, "expires_at", &exp)) != 0) {
		r = th_fail(TH_ERR_PROTOCOL, "malformed installation token "
		    "reply: no expires_at");
		gh_token_revoke(g, tok);
		goto out;
	}
	snprintf(tok->expires_at, sizeof(tok->expires_at), "%s", exp);
	if ((r = check_scope(o, name, perms)) != 0) {
		gh_token_revoke(g, tok);
		goto out;
	}
 out:
	/* json-c keeps its copy of the token until put: wipe it. */
	if (o != NULL && json_object_object_get_ex(o, "token", &repos) &&
	    json_object_is_type(repos, json_type_string))
		OPENSSL_cleanse((char *)json_object_get_string(repos),
		    (size_t)json_object_get_string_len(repos));
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	json_object_put(body);
	return r;
}

void
gh_token_free(struct gh_token *tok)
{
	if (tok == NULL)
		return;
	OPENSSL_cleanse(tok, sizeof(*tok));
	free(tok);
}

void
gh_token_revoke(struct gh *g, struct gh_token *tok)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	long status = 0;
	int r;

	if (tok->value[0] == '\0')
		return;
	snprintf(url, sizeof(url), "%s/installation/token", g->base);
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	r = call(g, "DELETE", url, auth, NULL, 1, &status, &o, NULL, 0);
	if (r == 0 && status == 204) {
		tok->revoked = 1;
		snprintf(tok->revoke_msg, sizeof(tok->revoke_msg), "revoked");
	} else {
		/* Never assume success: a 401 may mean expired or unknown. */
		tok->revoked = -1;
		snprintf(tok->revoke_msg, sizeof(tok->revoke_msg),
		    "revocation unknown: %s", r != 0 ? th_errmsg(r) :
		    status == 401 ? "401 (expired or already revoked)" :
		    "unexpected status");
		/* Cut, it must stay UTF-8: it is recorded. */
		utf8_sanitize(tok->revoke_msg);
	}
	OPENSSL_cleanse(auth, sizeof(auth));
	OPENSSL_cleanse(tok->value, sizeof(tok->value));
	json_object_put(o);
}

/* A GitHub login as it may appear in a URL path: letters, digits and '-'
 * (an App's "name[bot]" is none: its approval is not looked up). */
static int
login_plain(const char *s)
{
	return *s != '\0' && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s);
}

static void
perm_key(const char *repo, const char *login, char *key, size_t len)
{
	size_t i;

	snprintf(key, len, "%s\n%s", repo, login);
	for (i = 0; key[i] != '\0'; i++)
		if (key[i] >= 'A' && key[i] <= 'Z')
			key[i] = (char)(key[i] - 'A' + 'a');
}

/* 1 and *write if key's access was looked up less than GH_PERM_TTL ago. */
static int
perm_cached(struct gh *g, const char *key, int *write)
{
	int64_t now = (int64_t)time(NULL);
	size_t i;
	int hit = 0;

	pthread_mutex_lock(&g->mu);
	for (i = 0; i < GH_PERM_CACHE && !hit; i++)
		if (g->perm[i].until > now && strcmp(g->perm[i].key, key) == 0) {
			*write = g->perm[i].write;
			hit = 1;
		}
	pthread_mutex_unlock(&g->mu);
	return hit;
}

static void
perm_store(struct gh *g, const char *key, int write)
{
	size_t i, len;

	pthread_mutex_lock(&g->mu);
	for (i = 0; i < GH_PERM_CACHE; i++)
		if (strcmp(g->perm[i].key, key) == 0)
			break;
	if (i == GH_PERM_CACHE) {
		i = g->perm_next;
		g->perm_next = (g->perm_next + 1) % GH_PERM_CACHE;
	}
	len = strnlen(key, sizeof(g->perm[i].key) - 1);
	memcpy(g->perm[i].key, key, len);
	g->perm[i].key[len] = '\0';
	g->perm[i].write = write;
	g->perm[i].until = (int64_t)time(NULL) + GH_PERM_TTL;
	pthread_mutex_unlock(&g->mu);
}

/* A collaborator-permission reply: 1 for write access or more, 0 for
 * less or none, -1 if it says nothing clear. */
static int
perm_parse(const struct http_req *req)
{
	struct json_object *o = NULL;
	const char *p;
	int w = -1;

	if (req->status == 404)		/* no such user, or no access */
		return 0;
	if (req->status != 200 || json_parse_strict((const char *)buf_ptr(
	    req->resp), buf_len(req->resp), HTTP_RESP_MAX, &o) != 0)
		return -1;
	if (json_get_string(o, "permission", &p) == 0) {
		if (strcmp(p, "admin") == 0 || strcmp(p, "maintain") == 0 ||
		    strcmp(p, "write") == 0)
			w = 1;
		else if (strcmp(p, "triage") == 0 || strcmp(p, "read") == 0 ||
		    strcmp(p, "none") == 0)
			w = 0;
	}
	json_object_put(o);
	return w;
}

/* Whether each approver (other than the author) may write to repo: GitHub
 * counts an approval only from such a reviewer, and anyone who can read
 * a repository can approve.  Looked up for at most FACTS_APPROVERS_MAX,
 * all at once, and remembered GH_PERM_TTL seconds; sets reviews' write. */
static int
approver_access(struct gh *g, const char *auth, const char *repo,
    struct pr_facts *f)
{
	struct http_req *req = NULL, *batch[FACTS_APPROVERS_MAX];
	char key[FACTS_APPROVERS_MAX][SCOPE_REPO_MAX + FACTS_LOGIN_MAX + 2];
	char url[HTTP_URL_MAX];
	const char *who[FACTS_APPROVERS_MAX];
	int write[FACTS_APPROVERS_MAX];
	const struct gh_review *rv;
	size_t nwho = 0, n = 0, i, k;
	int r = 0;

	/* Reviewers whose verdict (their last approval, request for changes
	 * or dismissal, as peval judges) is an approval. */
	for (i = 0; i < f->nreviews; i++) {
		rv = &f->reviews[i];
		if (strcmp(rv->state, "APPROVED") != 0 ||
		    strcasecmp(rv->user, f->pr.author) == 0 ||
		    !login_plain(rv->user))
			continue;
		for (k = i + 1; k < f->nreviews; k++)
			if (facts_is_verdict(f->reviews[k].state) &&
			    strcasecmp(f->reviews[k].user, rv->user) == 0)
				break;
		if (k < f->nreviews)
			continue;
		for (k = 0; k < nwho && strcasecmp(who[k], rv->user) != 0; k++)
			;
		if (k == nwho && nwho < FACTS_APPROVERS_MAX)
			who[nwho++] = rv->user;
	}
	if (nwho == 0)
		return 0;
	if ((req = calloc(nwho, sizeof(*req))) == NULL)
		return TH_ERR_ALLOC;
	for (k = 0; k < nwho; k++) {
		write[k] = -1;
		perm_key(repo, who[k], key[k], sizeof(key[k]));
		if (perm_cached(g, key[k], &write[k]))
			continue;
		snprintf(url, sizeof(url), "%s/repos/%s/collaborators/%s/"
		    "permission", g->base, repo, who[k]);
		if ((r = http_req_init(&req[k], "GET", url, auth, NULL, 1)) != 0)
			goto out;
		batch[n++] = &req[k];
	}
	/* At most HTTP_BATCH_MAX at once: two rounds for 32 approvers. */
	for (i = 0; i < n; i += HTTP_BATCH_MAX)
		if ((r = run(g, batch + i, n - i > HTTP_BATCH_MAX ?
		    HTTP_BATCH_MAX : n - i)) != 0)
			goto out;
	for (k = 0; k < nwho; k++) {
		if (req[k].resp == NULL)
			continue;
		if (req[k].r == 0 && (write[k] = perm_parse(&req[k])) >= 0)
			perm_store(g, key[k], write[k]);
	}
	for (i = 0; i < f->nreviews; i++)
		for (k = 0; k < nwho; k++)
			if (strcasecmp(f->reviews[i].user, who[k]) == 0)
				f->reviews[i].write = write[k];
 out:
	for (k = 0; k < nwho; k++)
		if (req[k].resp != NULL)
			http_req_clear(&req[k]);
	free(req);
	return r;
}

/* The merge base a comparison names (merge_base_commit.sha) into mb. */
static int
compare_merge_base(struct json_object *o, char mb[FACTS_SHA_LEN + 1])
{
	struct json_object *c;

	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "merge_base_commit", &c) ||
	    !json_object_is_type(c, json_type_object) ||
	    facts_str(c, "sha", mb, FACTS_SHA_LEN + 1, 1) != 0 ||
	    strlen(mb) != FACTS_SHA_LEN ||
	    strspn(mb, "0123456789abcdef") != FACTS_SHA_LEN)
		return th_fail(TH_ERR_PROTOCOL, "GitHub's comparison names no "
		    "merge base");
	return 0;
}

/* Agents asking again and again for a large pull request must not spend
 * the installation's GitHub rate limit (900 requests a minute, 5000 an
 * hour) that every other operation needs. */
int
gh_tree_budget(struct gh *g, size_t n)
{
	uint64_t t = now_us();
	int ok;

	pthread_mutex_lock(&g->mu);
	if (g->tree_refilled_us == 0)
		g->tree_tokens = GH_TREE_PER_MINUTE;
	else
		g->tree_tokens += (double)(t - g->tree_refilled_us) *
		    GH_TREE_PER_MINUTE / 60e6;
	if (g->tree_tokens > GH_TREE_PER_MINUTE)
		g->tree_tokens = GH_TREE_PER_MINUTE;
	g->tree_refilled_us = t;
	if ((ok = g->tree_tokens >= (double)n))
		g->tree_tokens -= (double)n;
	pthread_mutex_unlock(&g->mu);
	return ok;
}

/* A tree listing's reply into t: 0, TH_ERR_ALLOC, or another error whose
 * message says why it cannot be read. */
static int
tree_reply(struct http_req *req, struct tree *t)
{
	struct json_object *o = NULL;
	int r;

	if ((r = req->r) != 0)
		return th_fail(r, "%s", req->errmsg);
	if (req->status != 200)
		return th_fail(TH_ERR_DENIED, "GitHub answered %ld",
		    req->status);
	if ((r = json_parse_strict((const char *)buf_ptr(req->resp),
	    buf_len(req->resp), HTTP_RESP_MAX, &o)) == 0)
		r = tree_parse(o, t);
	json_object_put(o);
	return r;
}

/* The changed files of a pull request too long for a comparison to list:
 * the files in which the trees of its merge base mb and of its head SHA
 * differ, both listed by SHA, one directory level at a time and only
 * where the directories' SHAs differ (up to GH_TREE_DIRS_MAX directories,
 * HTTP_BATCH_MAX listings at once).  A listing that cannot be read, or
 * more files or directories than that, leaves the files incomplete, with
 * the reason in f->files_why: only a rule on files then refuses.  One pull
 * request's trees are walked at a time. */
static int
files_by_tree(struct gh *g, const char *auth, const char *repo,
    const char *mb, struct pr_facts *f)
{
	static const struct tree none;
	struct http_req *req = NULL, *batch[HTTP_BATCH_MAX];
	struct tree t[HTTP_BATCH_MAX];
	struct tree_dir *dirs = NULL, *d;
	int side[HTTP_BATCH_MAX][2];	/* dir's request per side, or -1 */
	char url[HTTP_URL_MAX];
	struct timespec deadline;
	uint64_t t0;
	int locked = 0;
	size_t ndirs = 1, next = 0, nb, n = 0, i;
	int k, r = 0;

	memset(t, 0, sizeof(t));
	/* ~70 KB of requests: not on a request thread's stack. */
	if ((req = calloc(HTTP_BATCH_MAX, sizeof(*req))) == NULL ||
	    (dirs = calloc(GH_TREE_DIRS_MAX, sizeof(*dirs))) == NULL) {
		free(req);
		return TH_ERR_ALLOC;
	}
	memcpy(dirs[0].base, mb, FACTS_SHA_LEN + 1);
	memcpy(dirs[0].head, f->pr.head_sha, FACTS_SHA_LEN + 1);
	/* The checks and reviews were read before the walk: a walk that
	 * takes long (waiting for another, or a slow GitHub) would judge
	 * them stale, so it gives up. */
	t0 = now_us();
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += GH_TREE_WALK_S;
	if (pthread_mutex_timedlock(&g->tree_mu, &deadline) != 0) {
		snprintf(f->files_why, sizeof(f->files_why), "another pull "
		    "request's trees were being walked for more than %d s",
		    GH_TREE_WALK_S);
		goto out;
	}
	locked = 1;
	while (next < ndirs) {
		if (now_us() - t0 > (uint64_t)GH_TREE_WALK_S * 1000000) {
			snprintf(f->files_why, sizeof(f->files_why), "walking "
			    "the trees took more than %d s", GH_TREE_WALK_S);
			goto out;
		}
		/* The next directories, on the sides they are on: two
		 * listings at most each, HTTP_BATCH_MAX at most in all. */
		for (nb = n = 0; next + nb < ndirs && n + 2 <= HTTP_BATCH_MAX;
		    nb++) {
			d = &dirs[next + nb];
			for (k = 0; k < 2; k++) {
				side[nb][k] = -1;
				if ((k ? d->head : d->base)[0] == '\0')
					continue;
				snprintf(url, sizeof(url), "%s/repos/%s/git/"
				    "trees/%s", g->base, repo,
				    k ? d->head : d->base);
				if ((r = http_req_init(&req[n], "GET", url,
				    auth, NULL, 1)) != 0)
					goto out;
				side[nb][k] = (int)n;
				batch[n] = &req[n];
				n++;
			}
		}
		if (!gh_tree_budget(g, n)) {
			snprintf(f->files_why, sizeof(f->files_why), "the trees' "
			    "walk would take more than the %d listings a minute "
			    "all walks may use (GitHub allows 900 requests): try "
			    "again in a minute", GH_TREE_PER_MINUTE);
			goto out;
		}
		if ((r = run(g, batch, n)) != 0)
			goto out;
		for (i = 0; i < nb; i++) {
			d = &dirs[next + i];
			for (k = 0; r == 0 && k < 2; k++)
				if (side[i][k] >= 0 && (r = tree_reply(
				    &req[side[i][k]], &t[side[i][k]])) != 0 &&
				    r != TH_ERR_ALLOC)
					snprintf(f->files_why,
					    sizeof(f->files_why), "the tree of "
					    "%.80s at the %s could not be read: "
					    "%s", *d->path ? d->path :
					    "the repository", k ? "head commit" :
					    "merge base", th_errmsg(r));
			if (r == 0 && (r = tree_diff(side[i][0] >= 0 ?
			    &t[side[i][0]] : &none, side[i][1] >= 0 ?
			    &t[side[i][1]] : &none, d->path, f, dirs, &ndirs,
			    GH_TREE_DIRS_MAX)) == TH_ERR_TOO_LONG)
				snprintf(f->files_why, sizeof(f->files_why),
				    "%s", th_errmsg(r));
			if (r != 0)
				goto out;
		}
		for (i = 0; i < n; i++) {
			http_req_clear(&req[i]);
			tree_free(&t[i]);
		}
		n = 0;
		next += nb;
	}
	/* A rename is two paths here and one file to GitHub: never fewer. */
	if ((int64_t)f->nfiles < f->pr.changed_files)
		snprintf(f->files_why, sizeof(f->files_why), "the head "
		    "commit's tree differs from its merge base's in %zu files, "
		    "fewer than the pull request's %lld", f->nfiles,
		    (long long)f->pr.changed_files);
	else
		f->files_complete = 1;
 out:
	if (locked)
		pthread_mutex_unlock(&g->tree_mu);
	for (i = 0; i < HTTP_BATCH_MAX; i++) {
		if (req[i].resp != NULL)
			http_req_clear(&req[i]);
		tree_free(&t[i]);
	}
	free(req);
	free(dirs);
	/* What could not be read refuses rules on files, not the merge. */
	return r == TH_ERR_ALLOC || f->files_why[0] == '\0' ? r : 0;
}

int
gh_pr_facts(struct gh *g, const struct gh_token *tok, const char *repo,
    int64_t pr, int files, struct pr_facts *f)
{
	struct http_req req[FACTS_LISTS], *batch[FACTS_LISTS];
	struct json_object *o = NULL, *list;
	char url[FACTS_LISTS][HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	char esc[3 * FACTS_REF_MAX + 1], mb[FACTS_SHA_LEN + 1] = "";
	int active[FACTS_LISTS], pages = 0, k, n, r;
	long status = 0;

	memset(f, 0, sizeof(*f));
	memset(req, 0, sizeof(req));
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	snprintf(url[0], sizeof(url[0]), "%s/repos/%s/pulls/%lld", g->base,
	    repo, (long long)pr);
	if ((r = call(g, "GET", url[0], auth, NULL, 1, &status, &o, NULL, 0))
	    != 0)
		goto out;
	if (status != 200) {
		r = th_fail(status == 404 ? TH_ERR_NOT_FOUND : TH_ERR_DENIED,
		    "GitHub: pull request %s#%lld: %ld %s", repo, (long long)pr,
		    status, gh_message(o));
		goto out;
	}
	if ((r = facts_parse_pr(o, &f->pr)) != 0)
		goto out;
	/* Everything else is read for this one head SHA, all at once. */
	snprintf(url[FACTS_CHECKS], HTTP_URL_MAX, "%s/repos/%s/commits/%s/"
	    "check-runs?per_page=%d", g->base, repo, f->pr.head_sha,
	    GH_PER_PAGE);
	snprintf(url[FACTS_STATUS], HTTP_URL_MAX, "%s/repos/%s/commits/%s/"
	    "status?per_page=%d", g->base, repo, f->pr.head_sha, GH_PER_PAGE);
	snprintf(url[FACTS_REVIEWS], HTTP_URL_MAX, "%s/repos/%s/pulls/%lld/"
	    "reviews?per_page=%d", g->base, repo, (long long)pr, GH_PER_PAGE);
	/* The changed files by SHA too: read by pull request number they
	 * are those of whatever the head is at that moment, which a
	 * force-push can make another commit's and then undo.  A comparison
	 * lists at most GH_COMPARE_FILES; past that it gives the merge base,
	 * and the files are those in which its tree and the head's differ.
	 * Only a pull request that does not say how many it has is read by
	 * number (and then refused by any rule on files).  At exactly
	 * GH_COMPARE_FILES a comparison could be cut short at the count a
	 * stale changed_files says. */
	f->files_pinned = f->pr.changed_files >= 0;
	f->files_by_tree = f->pr.changed_files >= GH_COMPARE_FILES;
	for (k = 0; k < FACTS_LISTS; k++)
		active[k] = 1;
	/* A policy without a rule on files never looks at them: neither
	 * asked for (a comparison's patches can run to megabytes) nor able
	 * to fail the merge.  Past FACTS_FILES_MAX they could not be held in
	 * full anyway. */
	if (!files || (f->files_by_tree &&
	    f->pr.changed_files > FACTS_FILES_MAX)) {
		active[FACTS_FILES] = 0;
		if (!files)
			snprintf(f->files_why, sizeof(f->files_why), "not "
			    "read: the policy has no rule on them");
		else
			snprintf(f->files_why, sizeof(f->files_why), "the pull "
			    "request has %lld changed files, more than the %d "
			    "Threshold reads", (long long)f->pr.changed_files,
			    FACTS_FILES_MAX);
		f->files_by_tree = f->files_pinned = 0;
	} else if (f->files_pinned) {
		if (gh_escape(esc, sizeof(esc), f->pr.base_ref) != 0 ||
		    (size_t)snprintf(url[FACTS_FILES], HTTP_URL_MAX, "%s/repos/"
		    "%s/compare/%s...%s?per_page=1", g->base, repo, esc,
		    f->pr.head_sha) >= HTTP_URL_MAX) {
			r = th_fail(TH_ERR_TOO_LONG, "base branch name too "
			    "long for a URL");
			goto out;
		}
	} else
		snprintf(url[FACTS_FILES], HTTP_URL_MAX, "%s/repos/%s/pulls/"
		    "%lld/files?per_page=%d", g->base, repo, (long long)pr,
		    GH_PER_PAGE);
	for (;;) {
		for (k = n = 0; k < FACTS_LISTS; k++) {
			if (!active[k])
				continue;
			if ((r = http_req_init(&req[k], "GET", url[k], auth,
			    NULL, 1)) != 0)
				goto out;
			batch[n++] = &req[k];
		}
		if (n == 0)
			break;
		if (++pages > GH_PAGES_MAX) {
			r = th_fail(TH_ERR_TOO_LONG, "too many pages");
			goto out;
		}
		if ((r = run(g, batch, (size_t)n)) != 0)
			goto out;
		for (k = 0; k < FACTS_LISTS; k++) {
			if (!active[k])
				continue;
			json_object_put(o);
			o = NULL;
			if (req[k].r != 0) {
				r = th_fail(req[k].r, "GitHub: %s",
				    req[k].errmsg);
				goto out;
			}
			if (req[k].status != 200) {
				r = th_fail(TH_ERR_DENIED, "GitHub: %s: %ld",
				    url[k] + strlen(g->base), req[k].status);
				goto out;
			}
			if ((r = json_parse_strict((const char *)buf_ptr(
			    req[k].resp), buf_len(req[k].resp), HTTP_RESP_MAX,
			    &o)) != 0)
				goto out;
			list = o;
			if (k == FACTS_FILES && f->files_pinned &&
			    !f->files_by_tree &&
			    (!json_object_is_type(o, json_type_object) ||
			    !json_object_object_get_ex(o, "files", &list))) {
				r = th_fail(TH_ERR_PROTOCOL, "GitHub's "
				    "comparison lists no files");
				goto out;
			}
			if (k == FACTS_FILES && f->files_by_tree)
				r = compare_merge_base(o, mb);
			else
				r = facts_parse_page((enum facts_list)k, list,
				    f);
			if (r != 0)
				goto out;
			/* A comparison's next page is of commits: its files
			 * are all on the first. */
			if (k == FACTS_FILES && f->files_pinned) {
				req[k].next[0] = '\0';
				req[k].next_too_long = 0;
			}
			if (req[k].next_too_long) {
				r = th_fail(TH_ERR_PROTOCOL, "GitHub sent a "
				    "next page link longer than %d bytes",
				    HTTP_URL_MAX - 1);
				goto out;
			}
			/* Follow a next page only on the same GitHub: the
			 * token must not be sent anywhere else. */
			if (req[k].next[0] != '\0' && strncmp(req[k].next,
			    g->base, strlen(g->base)) == 0 &&
			    req[k].next[strlen(g->base)] == '/')
				snprintf(url[k], HTTP_URL_MAX, "%s",
				    req[k].next);
			else if (req[k].next[0] != '\0') {
				r = th_fail(TH_ERR_PROTOCOL, "GitHub sent a "
				    "next page on another host");
				goto out;
			} else {
				active[k] = 0;
				if (k == FACTS_FILES && !f->files_by_tree)
					f->files_complete =
					    f->pr.changed_files >= 0 &&
					    (int64_t)f->nfiles ==
					    f->pr.changed_files;
			}
			http_req_clear(&req[k]);
		}
	}
	if (f->files_by_tree &&
	    (r = files_by_tree(g, auth, repo, mb, f)) != 0)
		goto out;
	r = approver_access(g, auth, repo, f);
 out:
	for (k = 0; k < FACTS_LISTS; k++)
		if (req[k].resp != NULL)
			http_req_clear(&req[k]);
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	if (r != 0)
		facts_free(f);
	return r;
}

int
gh_merge(struct gh *g, const struct gh_token *tok, const char *repo,
    int64_t pr, const char *sha, const char *method, struct gh_result *res)
{
	struct json_object *body = NULL, *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	int r;

	memset(res, 0, sizeof(*res));
	if ((body = json_object_new_object()) == NULL)
		return TH_ERR_ALLOC;
	json_object_object_add(body, "sha", json_object_new_string(sha));
	json_object_object_add(body, "merge_method",
	    json_object_new_string(method));
	snprintf(url, sizeof(url), "%s/repos/%s/pulls/%lld/merge", g->base,
	    repo, (long long)pr);
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	/* Not resent on failure: a merge that may have happened must be
	 * looked up, not repeated. */
	if ((r = call(g, "PUT", url, auth, json_object_to_json_string_ext(body,
	    JSON_C_TO_STRING_PLAIN), 0, &res->status, &o, NULL, 0)) != 0) {
		if (!thread_not_sent)
			r = th_fail(r, "%s: %s", rate_limited(res->status) ?
			    "not merged" : "merge outcome unknown",
			    th_errmsg(r));
		goto out;
	}
	snprintf(res->message, sizeof(res->message), "%s", gh_message(o));
	if (res->status == 200) {
		if (facts_str(o, "sha", res->sha, sizeof(res->sha), 1) != 0)
			r = th_fail(TH_ERR_PROTOCOL, "merge reply without sha");
	} else if (res->status == 409)
		r = th_fail(TH_ERR_DENIED, "GitHub refused the merge: the head "
		    "moved after the policy was checked (409: %s)",
		    res->message);
	else if (res->status >= 500)
		r = th_fail(TH_ERR_UNAVAILABLE, "GitHub failed during the merge "
		    "(%ld: %s); its outcome is unknown and it was not retried",
		    res->status, res->message);
	else
		r = th_fail(TH_ERR_DENIED, "GitHub refused the merge (%ld: %s)",
		    res->status, res->message);
 out:
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(body);
	json_object_put(o);
	return r;
}

int
gh_write(struct gh *g, const struct gh_token *tok, const char *method,
    const char *path, struct json_object *body, long ok_status,
    struct gh_result *res)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	int r;

	memset(res, 0, sizeof(*res));
	if ((size_t)snprintf(url, sizeof(url), "%s%s", g->base, path) >=
	    sizeof(url))
		return th_fail(TH_ERR_TOO_LONG, "URL too long");
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	/* Writes are not resent: one that may have happened is reported as
	 * such, not repeated. */
	if ((r = call(g, method, url, auth, json_object_to_json_string_ext(body,
	    JSON_C_TO_STRING_PLAIN), 0, &res->status, &o, NULL, 0)) != 0) {
		if (!thread_not_sent)
			r = th_fail(r, "%s: %s", rate_limited(res->status) ?
			    "not done" : "outcome unknown", th_errmsg(r));
		goto out;
	}
	snprintf(res->message, sizeof(res->message), "%s", gh_message(o));
	if (res->status == ok_status) {
		if (o != NULL && json_get_int64(o, "number", &res->id) != 0)
			(void)json_get_int64(o, "id", &res->id);
	} else if (res->status >= 500)
		r = th_fail(TH_ERR_UNAVAILABLE, "GitHub failed (%ld: %s); the "
		    "outcome is unknown and it was not retried", res->status,
		    res->message);
	else
		r = th_fail(TH_ERR_DENIED, "GitHub refused (%ld: %s)",
		    res->status, res->message);
 out:
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	return r;
}

int
gh_pr_get(struct gh *g, const struct gh_token *tok, const char *repo,
    int64_t pr, struct gh_pr *out)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	long status = 0;
	int r;

	snprintf(url, sizeof(url), "%s/repos/%s/pulls/%lld", g->base, repo,
	    (long long)pr);
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	if ((r = call(g, "GET", url, auth, NULL, 1, &status, &o, NULL, 0)) == 0)
		r = status == 200 ? facts_parse_pr(o, out) :
		    status == 404 ? th_fail(TH_ERR_NOT_FOUND, "GitHub: no "
		    "pull request %s#%lld (404)", repo, (long long)pr) :
		    th_fail(TH_ERR_DENIED, "GitHub: pull request %s#%lld: %ld",
		    repo, (long long)pr, status);
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	return r;
}

int
gh_get(struct gh *g, const struct gh_token *tok, const char *path,
    long *status, struct json_object **out)
{
	char url[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	int r;

	*out = NULL;
	if ((size_t)snprintf(url, sizeof(url), "%s%s", g->base, path) >=
	    sizeof(url))
		return th_fail(TH_ERR_INVALID, "URL too long");
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	r = call(g, "GET", url, auth, NULL, 1, status, out, NULL, 0);
	OPENSSL_cleanse(auth, sizeof(auth));
	return r;
}

int
gh_escape(char *dst, size_t len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	unsigned char c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c) != NULL) {
			if (o + 1 >= len)
				return -1;
			dst[o++] = (char)c;
		} else {
			if (o + 3 >= len)
				return -1;
			dst[o++] = '%';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	dst[o] = '\0';
	return 0;
}

int
gh_branch_get(struct gh *g, const struct gh_token *tok, const char *repo,
    const char *branch, long *status, struct json_object **out)
{
	char path[HTTP_URL_MAX / 2], esc[3 * SCOPE_BRANCH_MAX + 1];

	/* Sent raw, a '#' would have GitHub asked about another branch. */
	if (gh_escape(esc, sizeof(esc), branch) != 0 ||
	    (size_t)snprintf(path, sizeof(path), "/repos/%s/branches/%s", repo,
	    esc) >= sizeof(path))
		return th_fail(TH_ERR_INVALID, "branch name too long: %.64s",
		    branch);
	return gh_get(g, tok, path, status, out);
}

int
gh_app_login(struct gh *g, char *out, size_t len)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], auth[GH_AUTH_MAX];
	const char *slug;
	long status = 0;
	int r = 0;

	pthread_mutex_lock(&g->mu);
	snprintf(out, len, "%s", g->app_login);
	pthread_mutex_unlock(&g->mu);
	if (out[0] != '\0')
		return 0;
	snprintf(url, sizeof(url), "%s/app", g->base);
	if ((r = app_auth(g, auth)) != 0 ||
	    (r = call(g, "GET", url, auth, NULL, 1, &status, &o, NULL, 0)) != 0)
		goto out;
	if (status != 200) {
		r = th_fail(TH_ERR_DENIED, "GitHub: GET /app: %ld %s", status,
		    gh_message(o));
		goto out;
	}
	/* A slug is what GitHub puts before "[bot]" in the App's login. */
	if (json_get_string(o, "slug", &slug) != 0 || slug[0] == '\0' ||
	    strlen(slug) + 5 > GH_LOGIN_MAX ||
	    strspn(slug, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789-_") != strlen(slug)) {
		r = th_fail(TH_ERR_PROTOCOL, "GitHub: GET /app: no usable slug");
		goto out;
	}
	if ((size_t)snprintf(out, len, "%s[bot]", slug) >= len) {
		r = th_fail(TH_ERR_TOO_LONG, "App login too long");
		goto out;
	}
	pthread_mutex_lock(&g->mu);
	snprintf(g->app_login, sizeof(g->app_login), "%s", out);
	pthread_mutex_unlock(&g->mu);
 out:
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	if (r != 0 && len > 0)
		out[0] = '\0';
	return r;
}

int
gh_list(struct gh *g, const struct gh_token *tok, const char *path,
    int (*each)(struct json_object *item, void *arg), void *arg)
{
	struct json_object *o = NULL;
	char url[HTTP_URL_MAX], next[HTTP_URL_MAX], auth[GH_TOKEN_MAX + 16];
	size_t i, baselen = strlen(g->base);
	long status = 0;
	int pages = 0, r;

	if ((size_t)snprintf(url, sizeof(url), "%s%s", g->base, path) >=
	    sizeof(url))
		return th_fail(TH_ERR_INVALID, "URL too long");
	snprintf(auth, sizeof(auth), "Bearer %s", tok->value);
	for (;;) {
		json_object_put(o);
		o = NULL;
		if (++pages > GH_PAGES_MAX) {
			r = th_fail(TH_ERR_TOO_LONG, "GitHub: %s: more than %d "
			    "pages", path, GH_PAGES_MAX);
			goto out;
		}
		if ((r = call(g, "GET", url, auth, NULL, 1, &status, &o, next,
		    sizeof(next))) != 0)
			goto out;
		if (status != 200) {
			r = th_fail(status == 404 ? TH_ERR_NOT_FOUND :
			    status >= 500 ? TH_ERR_UNAVAILABLE : TH_ERR_DENIED,
			    "GitHub: %s: %ld %s", path, status, gh_message(o));
			goto out;
		}
		if (!json_object_is_type(o, json_type_array)) {
			r = th_fail(TH_ERR_PROTOCOL, "GitHub: %s: not a list",
			    path);
			goto out;
		}
		for (i = 0; i < json_object_array_length(o); i++)
			if ((r = each(json_object_array_get_idx(o, i), arg)) != 0)
				break;
		if (r > 0)		/* each has seen enough */
			break;
		if (r < 0)
			goto out;
		if (next[0] == '\0')
			break;
		/* The token goes to the configured GitHub only. */
		if (strncmp(next, g->base, baselen) != 0 ||
		    next[baselen] != '/') {
			r = th_fail(TH_ERR_PROTOCOL, "GitHub sent a next page "
			    "on another host");
			goto out;
		}
		snprintf(url, sizeof(url), "%s", next);
	}
	r = 0;
 out:
	OPENSSL_cleanse(auth, sizeof(auth));
	json_object_put(o);
	return r;
}
