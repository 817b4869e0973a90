/* git's smart HTTP through the broker (docs/api.md, "git"): an agent's
 * plain `git push` / `git fetch` to http://127.0.0.1:PORT/OWNER/NAME.git,
 * authenticated by a capability from git-credential-threshold, forwarded to
 * GitHub with an installation token made for that one request.
 *
 * A push is decided before any byte of it reaches GitHub: the request body
 * is spooled to an unlinked file (never held in memory) while gitrx parses
 * the ref updates and the pack's commits; the refs are then judged against
 * the chain's scope and policy and GitHub's branch facts, and only then is
 * the spool sent on.  A refused push gets a report-status git prints as
 * "! [remote rejected] REF (reason)". */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "broker.h"
#include "conns.h"
#include "err.h"
#include "gitrx.h"
#include "json.h"
#include "log.h"
#include "peval.h"

#define GIT_REPLY_MAX		((int64_t)64 * 1024 * 1024) /* receive-pack */
/* Left free in the state directory whatever is pushed, looked at before
 * each MiB spooled. */
#define GIT_SPOOL_RESERVE	((uint64_t)64 * 1024 * 1024)
#define GIT_SPOOL_STEP		((uint64_t)1024 * 1024)
#define GIT_BOUNDARY_MAX	16
/* GitHub compares one push may ask for, all its refs together: each ref
 * may need up to GIT_BOUNDARY_MAX, and an agent chooses its merges'
 * parents, so without a bound of its own one push could spend a large part
 * of the App's hourly rate limit, which every agent shares. */
#define GIT_COMPARES_MAX	32

enum git_kind { GK_REFS, GK_RECEIVE, GK_UPLOAD };

/* A spool in the state directory, which always keeps GIT_SPOOL_RESERVE
 * free: the token store and, by default, the audit log live there, and
 * without them nothing is authorised. */
struct room {
	const char	*dir;
	uint64_t	 until;		/* spoolable without looking again */
	uint64_t	 avail;		/* bytes free when full was set */
	int		 full;
};

/* 0 if a spool of used bytes may take more; -1 (and full set) if that
 * would eat into the reserve.  Looked at once per GIT_SPOOL_STEP:
 * concurrent spools may each take up to a step of the reserve between two
 * looks. */
static int
room_for(struct room *rm, uint64_t used, size_t more)
{
	struct statvfs sv;

	if (rm->full)
		return -1;
	if (used + more <= rm->until)
		return 0;
	rm->avail = statvfs(rm->dir, &sv) == 0 ?
	    (uint64_t)sv.f_bavail * sv.f_frsize : 0;
	if (rm->avail < GIT_SPOOL_RESERVE + more + GIT_SPOOL_STEP) {
		rm->full = 1;
		return -1;
	}
	rm->until = used + more + GIT_SPOOL_STEP;
	return 0;
}

static int
room_fail(const struct room *rm, const char *what)
{
	return th_fail(TH_ERR_UNAVAILABLE, "cannot spool %s: the state "
	    "directory has %llu MiB free and thresholdd keeps %llu MiB of it "
	    "for its store and audit log", what,
	    (unsigned long long)(rm->avail >> 20),
	    (unsigned long long)(GIT_SPOOL_RESERVE >> 20));
}

struct gconn {
	enum git_kind	 kind;
	int		 push;		/* service is receive-pack */
	char		 repo[SCOPE_REPO_MAX + 1];
	int		 spool;		/* request body, unlinked; -1 if none */
	uint64_t	 body_len;
	int		 too_big;
	int		 write_err;
	struct room	 room;		/* for the spool */
	int		 answered;	/* at once, its body unread */
	struct gitrx	*rx;
	int		 rx_r;		/* first parse error */
	time_t		 started;	/* when the request's headers came */
	time_t		 cmds_at;	/* when its ref updates were all in
					 * (its pack began), or 0 */
	char		 head[4];	/* the body's first bytes */
	char		 rx_msg[256];
	struct cap_redeemed red;	/* its capability, checked at headers */
	char		 cap[JWS_TOKEN_MAX + 1];
	char		 agent[CHAIN_NAME_MAX + 1];	/* who connected */
};

/* ---- replies ---- */

static enum MHD_Result
text_close(struct MHD_Connection *c, unsigned status, const char *msg,
    int close_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char body[600];

	snprintf(body, sizeof(body), "threshold: %s\n", msg);
	resp = MHD_create_response_from_buffer(strlen(body), body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	/* git prints a text/plain error body as "remote: ..." lines. */
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	if (status == 401)
		MHD_add_response_header(resp, "WWW-Authenticate",
		    "Basic realm=\"threshold\"");
	if (close_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
		    "close");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
text(struct MHD_Connection *c, unsigned status, const char *msg)
{
	return text_close(c, status, msg, 0);
}

static int
pkt(struct buf *b, const char *s, size_t n)
{
	char len[5];

	snprintf(len, sizeof(len), "%04zx", n + 4);
	return buf_put(b, len, 4) || buf_put(b, s, n) ? TH_ERR_ALLOC : 0;
}

static int
has_cap(const char *caps, const char *name)
{
	size_t n = strlen(name);
	const char *p;

	for (p = caps; (p = strstr(p, name)) != NULL; p += n)
		if ((p == caps || p[-1] == ' ') && (p[n] == ' ' ||
		    p[n] == '\0'))
			return 1;
	return 0;
}

/* A receive-pack result that rejects every ref with why, in the side band
 * when git asked for one, so that git names the reason for each ref. */
static enum MHD_Result
reject_push(struct MHD_Connection *c, const struct gitrx *rx, const char *why)
{
	struct buf *rep = buf_new(), *out = buf_new(), *chunk;
	struct MHD_Response *resp = NULL;
	enum MHD_Result ret = MHD_NO;
	char line[600];
	size_t i, off, n;
	int band = rx != NULL && has_cap(gitrx_caps(rx), "side-band-64k");

	if (rep == NULL || out == NULL)
		goto out;
	pkt(rep, "unpack ok\n", 10);
	for (i = 0; rx != NULL && i < gitrx_ncommands(rx); i++) {
		n = (size_t)snprintf(line, sizeof(line), "ng %s %s\n",
		    gitrx_command(rx, i)->ref, why);
		pkt(rep, line, n < sizeof(line) ? n : sizeof(line) - 1);
	}
	buf_put(rep, "0000", 4);
	if (!band)
		buf_put(out, buf_ptr(rep), buf_len(rep));
	else {
		/* Band 2 is shown as "remote: ..."; band 1 carries the
		 * report, in packets of at most 65520 bytes. */
		n = (size_t)snprintf(line, sizeof(line), "\002threshold: %s\n",
		    why);
		pkt(out, line, n < sizeof(line) ? n : sizeof(line) - 1);
		for (off = 0; off < buf_len(rep); off += n) {
			n = buf_len(rep) - off;
			if (n > 65000)
				n = 65000;
			if ((chunk = buf_new()) == NULL ||
			    buf_put(chunk, "\001", 1) != 0 ||
			    buf_put(chunk, buf_ptr(rep) + off, n) != 0 ||
			    pkt(out, (const char *)buf_ptr(chunk),
			    buf_len(chunk)) != 0) {
				buf_free(chunk);
				goto out;
			}
			buf_free(chunk);
		}
		buf_put(out, "0000", 4);
	}
	if ((resp = MHD_create_response_from_buffer(buf_len(out),
	    (void *)buf_ptr(out), MHD_RESPMEM_MUST_COPY)) == NULL)
		goto out;
	MHD_add_response_header(resp, "Content-Type",
	    "application/x-git-receive-pack-result");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	ret = MHD_queue_response(c, 200, resp);
 out:
	if (resp != NULL)
		MHD_destroy_response(resp);
	buf_free(rep);
	buf_free(out);
	return ret;
}

/* A fetch's negotiation (POST git-upload-pack) refused as git reads it: a
 * 200 whose pkt-line is "ERR why", which git prints as "remote error:
 * why"; the body of a 4xx or 5xx answer there it would not show. */
static enum MHD_Result
fetch_refused(struct MHD_Connection *c, const char *why, int close_after)
{
	struct MHD_Response *resp = NULL;
	struct buf *out = buf_new();
	enum MHD_Result ret = MHD_NO;
	char line[600];
	size_t n;

	n = (size_t)snprintf(line, sizeof(line), "ERR threshold: %s\n", why);
	if (out == NULL || pkt(out, line, n < sizeof(line) ? n :
	    sizeof(line) - 1) != 0 ||
	    (resp = MHD_create_response_from_buffer(buf_len(out),
	    (void *)buf_ptr(out), MHD_RESPMEM_MUST_COPY)) == NULL)
		goto out;
	MHD_add_response_header(resp, "Content-Type",
	    "application/x-git-upload-pack-result");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	if (close_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
		    "close");
	ret = MHD_queue_response(c, 200, resp);
 out:
	if (resp != NULL)
		MHD_destroy_response(resp);
	buf_free(out);
	return ret;
}

/* A refusal answered as git shows it: an ERR pkt-line to a fetch's
 * negotiation, a text body (printed as "remote: ...") to anything else. */
static enum MHD_Result
refused(struct MHD_Connection *c, const struct gconn *g, unsigned status,
    const char *why, int close_after)
{
	if (g->kind == GK_UPLOAD)
		return fetch_refused(c, why, close_after);
	return text_close(c, status, why, close_after);
}

static enum MHD_Result
probe_reply(struct MHD_Connection *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if ((resp = MHD_create_response_from_buffer(0, (void *)"",
	    MHD_RESPMEM_PERSISTENT)) == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type",
	    "application/x-git-receive-pack-result");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---- requests ---- */

/* "/OWNER/NAME(.git)/info/refs", ".../git-receive-pack",
 * ".../git-upload-pack" into g. */
static int
parse_url(const char *url, const char *method, const char *service,
    struct gconn *g)
{
	const char *slash, *tail;
	size_t n;

	if (url[0] != '/' || (slash = strchr(url + 1, '/')) == NULL ||
	    (tail = strchr(slash + 1, '/')) == NULL)
		return th_fail(TH_ERR_NOT_FOUND, "not a repository URL");
	n = (size_t)(tail - url - 1);
	if (n > 4 && memcmp(tail - 4, ".git", 4) == 0)
		n -= 4;
	if (n > SCOPE_REPO_MAX)
		return th_fail(TH_ERR_NOT_FOUND, "repository name too long");
	memcpy(g->repo, url + 1, n);
	g->repo[n] = '\0';
	if (!repo_valid(g->repo, 0))
		return th_fail(TH_ERR_NOT_FOUND, "not OWNER/NAME");
	if (strcmp(tail, "/info/refs") == 0 && strcmp(method, "GET") == 0) {
		g->kind = GK_REFS;
		if (service == NULL || (strcmp(service, "git-receive-pack") &&
		    strcmp(service, "git-upload-pack")))
			return th_fail(TH_ERR_NOT_FOUND, "smart HTTP only: "
			    "service=git-upload-pack or git-receive-pack");
		g->push = strcmp(service, "git-receive-pack") == 0;
		return 0;
	}
	if (strcmp(method, "POST") != 0)
		return th_fail(TH_ERR_NOT_FOUND, "no such git endpoint");
	if (strcmp(tail, "/git-receive-pack") == 0) {
		g->kind = GK_RECEIVE;
		g->push = 1;
		return 0;
	}
	if (strcmp(tail, "/git-upload-pack") == 0) {
		g->kind = GK_UPLOAD;
		return 0;
	}
	return th_fail(TH_ERR_NOT_FOUND, "no such git endpoint");
}

static int
spool_open(const char *dir)
{
	char path[BCONF_VALUE_MAX + 32];
	int fd;

	if ((fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/git-spool.XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) >= 0)
		unlink(path);
	return fd;
}

/* The capability from "Authorization: Basic base64(user:capability)";
 * TH_ERR_NOT_FOUND if there is none. */
static int
basic_password(struct MHD_Connection *c, char *out, size_t outlen)
{
	char *user, *pass = NULL;
	size_t n;
	int r = TH_ERR_NOT_FOUND;

	out[0] = '\0';
	if ((user = MHD_basic_auth_get_username_password(c, &pass)) == NULL)
		goto out;
	r = TH_ERR_DENIED;
	if (pass != NULL && (n = strlen(pass)) > 0 && n < outlen) {
		memcpy(out, pass, n + 1);
		r = 0;
	}
 out:
	if (pass != NULL) {
		OPENSSL_cleanse(pass, strlen(pass));
		MHD_free(pass);
	}
	MHD_free(user);
	return r;
}

/* ---- forwarding ---- */

struct fwd {
	int		 in;		/* spool, or -1 */
	int		 out;		/* reply spool */
	int64_t		 out_len, out_max;
	struct room	 room;		/* for the reply spool */
	char		 ctype[128];
};

static size_t
fwd_read(char *p, size_t size, size_t n, void *arg)
{
	struct fwd *f = arg;
	ssize_t got;

	do
		got = read(f->in, p, size * n);
	while (got < 0 && errno == EINTR);
	return got < 0 ? CURL_READFUNC_ABORT : (size_t)got;
}

static size_t
fwd_write(char *p, size_t size, size_t n, void *arg)
{
	struct fwd *f = arg;
	size_t len = size * n, off = 0;
	ssize_t w;

	if (f->out_len + (int64_t)len > f->out_max ||
	    room_for(&f->room, (uint64_t)f->out_len, len) != 0)
		return 0;
	while (off < len) {
		if ((w = write(f->out, p + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		off += (size_t)w;
	}
	f->out_len += (int64_t)len;
	return len;
}

static size_t
fwd_header(char *p, size_t size, size_t n, void *arg)
{
	struct fwd *f = arg;
	size_t len = size * n, k;

	if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
		for (k = 13; k < len && p[k] == ' '; k++)
			;
		snprintf(f->ctype, sizeof(f->ctype), "%.*s",
		    (int)(len - k), p + k);
		f->ctype[strcspn(f->ctype, "\r\n")] = '\0';
	}
	return len;
}

/* Sends the request on to GitHub's git endpoint with tok; GitHub's reply
 * lands in f->out.  *status is GitHub's HTTP status. */
static int
forward(struct broker *b, struct MHD_Connection *c, const struct gconn *g,
    const struct gh_token *tok, struct fwd *f, long *status)
{
	const char *v, *svc = g->kind == GK_RECEIVE ? "git-receive-pack" :
	    "git-upload-pack";
	struct curl_slist *hs = NULL;
	char url[HTTP_URL_MAX], h[256];
	CURL *e = NULL;
	CURLcode cc;
	int r = TH_ERR_ALLOC;

	*status = 0;
	if (g->kind == GK_REFS)
		snprintf(url, sizeof(url), "%s/%s.git/info/refs?service=%s",
		    b->cfg.git_url, g->repo, g->push ? "git-receive-pack" :
		    "git-upload-pack");
	else
		snprintf(url, sizeof(url), "%s/%s.git/%s", b->cfg.git_url,
		    g->repo, svc);
	if ((e = curl_easy_init()) == NULL)
		goto out;
	if (g->kind != GK_REFS) {
		snprintf(h, sizeof(h), "Content-Type: application/x-%s-request",
		    svc);
		hs = curl_slist_append(hs, h);
		snprintf(h, sizeof(h), "Accept: application/x-%s-result", svc);
		hs = curl_slist_append(hs, h);
		if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    "Content-Encoding")) != NULL && strcmp(v, "gzip") == 0)
			hs = curl_slist_append(hs, "Content-Encoding: gzip");
	}
	if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    "Git-Protocol")) != NULL && strlen(v) < 128 &&
	    strpbrk(v, "\r\n") == NULL) {
		snprintf(h, sizeof(h), "Git-Protocol: %s", v);
		hs = curl_slist_append(hs, h);
	}
	hs = curl_slist_append(hs, "Expect:");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "threshold-broker git/1");
	curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
	curl_easy_setopt(e, CURLOPT_USERNAME, "x-access-token");
	curl_easy_setopt(e, CURLOPT_PASSWORD, tok->value);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fwd_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fwd_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
	if (g->kind != GK_REFS) {
		if (lseek(f->in, 0, SEEK_SET) != 0) {
			r = th_fail(TH_ERR_IO, "spool: %s", strerror(errno));
			goto out;
		}
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, fwd_read);
		curl_easy_setopt(e, CURLOPT_READDATA, f);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)g->body_len);
	}
	if ((cc = curl_easy_perform(e)) != CURLE_OK) {
		r = f->room.full ? room_fail(&f->room, "GitHub's reply") :
		    th_fail(TH_ERR_UNAVAILABLE, "GitHub git %s: %s", svc,
		    curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	r = 0;
 out:
	curl_slist_free_all(hs);
	if (e != NULL)
		curl_easy_cleanup(e);
	return r;
}

/* ---- the push's ref rules ---- */

static int
rule(struct json_object *rules, const char *name)
{
	return json_object_array_add(rules, json_object_new_string(name)) ?
	    TH_ERR_ALLOC : 0;
}

/* Is old an ancestor of new?  Inside the pack first; where the walk
 * leaves the pack, GitHub's compare answers for the commits it has. */
static int
fast_forward(struct broker *b, const struct gh_token *tok, const char *repo,
    const struct gitrx *rx, const char *old, const char *new,
    size_t *compares)
{
	char bound[GIT_BOUNDARY_MAX][GITRX_HEXSZ + 1], path[512];
	struct json_object *o = NULL;
	const char *st;
	size_t n = 0, i;
	long status;
	int r;

	if ((r = gitrx_ancestry(rx, new, old, bound, GIT_BOUNDARY_MAX, &n)) < 0)
		return th_fail(TH_ERR_DENIED, "cannot tell whether this is a "
		    "fast-forward: %s", th_errmsg(r));
	if (r == 1)
		return 0;
	for (i = 0; i < n; i++) {
		if (*compares >= GIT_COMPARES_MAX)
			return th_fail(TH_ERR_DENIED, "cannot tell whether this "
			    "is a fast-forward within %d lookups at GitHub for "
			    "the whole push (merges of commits it does not "
			    "carry): push fewer branches at once",
			    GIT_COMPARES_MAX);
		++*compares;
		snprintf(path, sizeof(path), "/repos/%.140s/compare/%.40s...%.40s", repo,
		    old, bound[i]);
		if ((r = gh_get(b->gh, tok, path, &status, &o)) != 0)
			return r;
		if (status == 200 && json_get_string(o, "status", &st) == 0 &&
		    (strcmp(st, "ahead") == 0 || strcmp(st, "identical") == 0)) {
			json_object_put(o);
			return 0;
		}
		json_object_put(o);
		o = NULL;
	}
	return th_fail(TH_ERR_DENIED, "not a fast-forward (force-push is not "
	    "allowed)");
}

/* Judges every ref update; the first refusal names its ref.  evidence
 * records what was checked. */
static int
judge_push(struct broker *b, const struct cap_redeemed *red,
    const struct gitrx *rx, const struct gh_token *tok,
    struct json_object *evidence)
{
	struct json_object *refs = json_object_new_array(), *rules;
	struct json_object *o = NULL, *ev = NULL, *one, *v;
	const struct gitrx_cmd *cmd;
	struct scope_req req;
	const char *branch, *s;
	char path[512], def[SCOPE_BRANCH_MAX + 1];
	long status;
	size_t i, compares = 0;
	int r = 0, prot, allow_force, allow_delete;

	json_object_object_add(evidence, "refs", refs);
	json_object_object_add(evidence, "pack_bytes",
	    json_object_new_int64((int64_t)gitrx_pack_bytes(rx)));
	if (gitrx_ncommands(rx) == 0)
		return th_fail(TH_ERR_DENIED, "no ref updates");
	/* The delegation's push rules (docs/policy.md). */
	allow_force = json_object_object_get_ex(red->chain->policy,
	    "allow_force_push", &v) && json_object_get_boolean(v);
	allow_delete = json_object_object_get_ex(red->chain->policy,
	    "allow_branch_delete", &v) && json_object_get_boolean(v);
	if (json_object_object_get_ex(red->chain->policy, "max_push_bytes",
	    &v) && gitrx_body_bytes(rx) > (uint64_t)json_object_get_int64(v))
		return th_fail(TH_ERR_DENIED, "the push is %llu bytes, over the "
		    "delegation's max_push_bytes %lld", (unsigned long long)
		    gitrx_body_bytes(rx), (long long)json_object_get_int64(v));
	snprintf(path, sizeof(path), "/repos/%s", red->op.repo);
	if ((r = gh_get(b->gh, tok, path, &status, &o)) != 0)
		return r;
	if (status != 200 || json_get_string(o, "default_branch", &s) != 0 ||
	    strlen(s) >= sizeof(def)) {
		r = th_fail(TH_ERR_UNAVAILABLE, "GitHub: repository %s: %ld",
		    red->op.repo, status);
		goto out;
	}
	snprintf(def, sizeof(def), "%s", s);
	for (i = 0; i < gitrx_ncommands(rx); i++) {
		cmd = gitrx_command(rx, i);
		one = json_object_new_object();
		json_object_object_add(one, "ref", json_object_new_string(
		    cmd->ref));
		json_object_object_add(one, "old", json_object_new_string(
		    cmd->old));
		json_object_object_add(one, "new", json_object_new_string(
		    cmd->new));
		json_object_array_add(refs, one);
		rules = json_object_new_array();
		json_object_object_add(one, "rules", rules);
		if (strncmp(cmd->ref, "refs/heads/", 11) != 0) {
			r = th_fail(TH_ERR_DENIED, "%s: only branches may be "
			    "pushed", cmd->ref);
			goto out;
		}
		branch = cmd->ref + 11;
		if ((r = rule(rules, "no_delete")) != 0)
			goto out;
		if (cmd->is_delete && !allow_delete) {
			r = th_fail(TH_ERR_DENIED, "%s: deleting a branch is not "
			    "allowed", branch);
			goto out;
		}
		req.op = "github.push";
		req.repo = red->op.repo;
		req.target = branch;
		if ((r = rule(rules, "scope")) != 0)
			goto out;
		if (!scope_covers(red->chain->ops, &req)) {
			r = th_fail(TH_ERR_DENIED, "%s: not a branch the "
			    "delegation lets %s push", branch, red->agent);
			goto out;
		}
		json_object_put(ev);
		ev = NULL;
		if ((r = rule(rules, "policy")) != 0)
			goto out;
		if ((r = peval_op(red->chain->policy, branch, time(NULL), &ev))
		    != 0) {
			r = th_fail(TH_ERR_DENIED, "%s: %s", branch,
			    th_errmsg(r));
			goto out;
		}
		if ((r = rule(rules, "not_default")) != 0)
			goto out;
		if (strcmp(branch, def) == 0) {
			r = th_fail(TH_ERR_DENIED, "%s: the default branch is "
			    "never pushed to directly", branch);
			goto out;
		}
		json_object_put(o);
		o = NULL;
		if ((r = gh_branch_get(b->gh, tok, red->op.repo, branch,
		    &status, &o)) != 0)
			goto out;
		if (status != 200 && status != 404) {
			r = th_fail(TH_ERR_UNAVAILABLE, "GitHub: branch %s: %ld",
			    branch, status);
			goto out;
		}
		prot = status == 200 && json_object_object_get_ex(o,
		    "protected", &v) && json_object_get_boolean(v);
		if ((r = rule(rules, "not_protected")) != 0)
			goto out;
		if (prot) {
			r = th_fail(TH_ERR_DENIED, "%s: a protected branch",
			    branch);
			goto out;
		}
		if (cmd->is_create || cmd->is_delete)
			continue;
		if (allow_force) {
			if ((r = rule(rules, "fast_forward waived: "
			    "allow_force_push")) != 0)
				goto out;
			continue;
		}
		if ((r = rule(rules, "fast_forward")) != 0)
			goto out;
		if ((r = fast_forward(b, tok, red->op.repo, rx, cmd->old,
		    cmd->new, &compares)) != 0) {
			if (r == TH_ERR_DENIED)
				r = th_fail(r, "%s: %s", branch, th_errmsg(r));
			goto out;
		}
	}
 out:
	json_object_put(ev);
	json_object_put(o);
	return r;
}

/* ---- workflows ---- */

/* GitHub refuses a push that changes .github/workflows/ unless the token
 * has workflows: write; the broker asks for that permission only after
 * GitHub has said the push needs it, and only if the delegation grants
 * github.push.workflows for every ref. */
#define WORKFLOW_REFUSAL	"without `workflows` permission"

static int
reply_mentions(int fd, const char *needle)
{
	char chunk[65536];
	size_t have = 0, nl = strlen(needle), keep;
	ssize_t n;

	if (nl == 0 || nl >= sizeof(chunk) / 2 || lseek(fd, 0, SEEK_SET) != 0)
		return 0;
	while ((n = read(fd, chunk + have, sizeof(chunk) - have)) > 0) {
		have += (size_t)n;
		if (memmem(chunk, have, needle, nl) != NULL)
			return 1;
		/* A match may straddle two reads. */
		keep = have < nl - 1 ? have : nl - 1;
		memmove(chunk, chunk + have - keep, keep);
		have = keep;
	}
	return 0;
}

static int
workflows_granted(const struct cap_redeemed *red, const struct gitrx *rx)
{
	struct scope_req req;
	size_t i;

	for (i = 0; i < gitrx_ncommands(rx); i++) {
		req.op = "github.push.workflows";
		req.repo = red->op.repo;
		req.target = gitrx_command(rx, i)->ref + 11;
		if (!scope_covers(red->chain->ops, &req))
			return th_fail(TH_ERR_DENIED, "%s: the push changes "
			    ".github/workflows/, which the delegation does not "
			    "grant (github.push.workflows)", req.target);
	}
	return 0;
}

/* ---- the handler ---- */

static const char *
perm_level(const struct gconn *g)
{
	return g->push ? "write" : "read";
}

/* What a request that only reads asks for, as its audit entry names it. */
static const char *
git_request(const struct gconn *g)
{
	if (g->kind == GK_UPLOAD)
		return "git-upload-pack";
	return g->push ? "info/refs?service=git-receive-pack" :
	    "info/refs?service=git-upload-pack";
}

/* Verifies the request's capability (g->cap, read from its headers): a
 * push spends it, every other step of the exchange only checks it. */
static int
authorise(struct broker *b, const struct gconn *g, int spend, int64_t at,
    struct cap_redeemed *red)
{
	const char *cap = g->cap;
	int r;

	if ((r = cap_check(b->cap, b->st, cap, strlen(cap), at, red)) != 0)
		return r;
	if (g->push && strcmp(red->op.op, "github.push") != 0)
		return th_fail(TH_ERR_DENIED, "a %s capability cannot push",
		    red->op.op);
	if (!g->push && strcmp(red->op.op, "github.push") != 0 &&
	    strcmp(red->op.op, "github.fetch") != 0)
		return th_fail(TH_ERR_DENIED, "a %s capability is not for git",
		    red->op.op);
	if (strcmp(red->op.repo, g->repo) != 0)
		return th_fail(TH_ERR_DENIED, "the capability is for %s, not %s",
		    red->op.repo, g->repo);
	/* Over TCP too a capability is its agent's alone: another local
	 * user who read it cannot spend it. */
	if (strcmp(red->agent, g->agent) != 0)
		return th_fail(TH_ERR_DENIED, "the capability was issued to "
		    "%s, and this connection is %s's", red->agent, g->agent);
	/* Spent as of at, up to git-push-seconds ago: the id is kept spent
	 * past the capability's expiry for as long, or another connection's
	 * push of the same capability, judged as of its own past moment,
	 * would find it pruned and spend it again. */
	if (spend)
		return cap_spend(b->st, red, at, b->cfg.git_push_seconds +
		    2 * CAP_SKEW);
	return 0;
}

/* authorise's failure r answered: 401 without a credential (git's way to
 * ask its credential helper, not a refusal), otherwise a recorded
 * refusal; with close_after, the connection closes after it. */
static enum MHD_Result
refuse_credential(struct broker *b, struct MHD_Connection *c,
    const struct gconn *g, int r, int close_after)
{
	struct answer ans;
	char why[512];

	if (r == TH_ERR_NOT_FOUND)
		return text_close(c, 401, "authenticate with a capability: git "
		    "config credential.helper threshold", close_after);
	memset(&ans, 0, sizeof(ans));
	ans.agent = g->agent;		/* who connected, not who it names */
	ans.code = "capability_refused";
	snprintf(why, sizeof(why), "%s", th_errmsg(r));
	(void)rec_refusal(b, &ans, why);
	log_warn("git %s: refused: %s", g->repo, why);
	return refused(c, g, r == TH_ERR_DENIED ? 403 : 503, why, close_after);
}

/* The agent at the other end of the connection (broker/conns.h): git is
 * served to agents only, as the agents' socket is, each spending its own
 * capabilities. */
static int
caller(struct MHD_Connection *c, struct gconn *g)
{
	const struct conns_peer *p = conns_peer(c);

	if (p == NULL || !p->known)
		return th_fail(TH_ERR_DENIED, "cannot tell which local user "
		    "connected (%s): git is served to agents only",
		    p != NULL ? p->why : "not a named connection");
	if (p->agent < 0)
		return th_fail(TH_ERR_DENIED, "uid %u is not an agent in "
		    "thresholdd's configuration", (unsigned)p->uid);
	snprintf(g->agent, sizeof(g->agent), "%s", conns_agent(p));
	return 0;
}

/* Every request shows its credential when its headers arrive, before any
 * of a body is read: a local caller without a good capability could
 * otherwise have the broker spool (and parse) up to git-max-bytes for it,
 * on as many connections as it opens.  The capability is only checked
 * here, and kept for the request; a push spends it once its body is in.
 * 1 if the request is answered (a refusal, or git's 401 challenge). */
static int
credential_first(struct broker *b, struct MHD_Connection *c,
    struct gconn *g, enum MHD_Result *ret)
{
	int r;

	if ((r = basic_password(c, g->cap, sizeof(g->cap))) != 0)
		r = r == TH_ERR_NOT_FOUND ? r : th_fail(TH_ERR_DENIED,
		    "malformed Basic credentials");
	else if ((r = authorise(b, g, 0, g->started, &g->red)) == 0)
		return 0;
	g->answered = 1;
	/* A refused body is not read: the connection closes. */
	*ret = refuse_credential(b, c, g, r, g->kind != GK_REFS);
	return 1;
}

/* The token's permissions: contents, and workflows: write if asked. */
static struct json_object *
perms_for(const struct gconn *g, int workflows)
{
	struct json_object *perms = json_object_new_object();

	if (perms == NULL)
		return NULL;
	json_object_object_add(perms, "contents",
	    json_object_new_string(perm_level(g)));
	if (workflows)
		json_object_object_add(perms, "workflows",
		    json_object_new_string("write"));
	return perms;
}

static int
token_for(struct broker *b, const struct gconn *g, int workflows,
    struct gh_token *tok)
{
	struct json_object *perms = perms_for(g, workflows);
	int64_t inst;
	int r;

	if (perms == NULL)
		return TH_ERR_ALLOC;
	if ((r = gh_installation(b->gh, g->repo, &inst)) == 0)
		r = gh_token_create(b->gh, inst, g->repo, perms, tok);
	json_object_put(perms);
	return r;
}

static enum MHD_Result
serve_reply(struct MHD_Connection *c, long status, struct fwd *f)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if ((resp = MHD_create_response_from_fd64((uint64_t)f->out_len,
	    f->out)) == NULL)
		return MHD_NO;
	f->out = -1;			/* the response owns it */
	if (f->ctype[0] != '\0')
		MHD_add_response_header(resp, "Content-Type", f->ctype);
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* The code of a refusal for GitHub's failure r (docs/api.md). */
static const char *
github_code(int r)
{
	return r == TH_ERR_UNAVAILABLE ? "github_unavailable" :
	    "github_refused";
}

/* An intent or read that could not be recorded: the log is down, or a
 * link of the chain expired meanwhile (rec_use). */
static void
intent_failed(int r, char *why, size_t len, const char **code,
    int *audit_down)
{
	if (r == TH_ERR_DENIED) {
		snprintf(why, len, "%s", th_errmsg(r));
		*code = "capability_refused";
	} else {
		snprintf(why, len, "audit log: %s", th_errmsg(r));
		*audit_down = 1;
	}
}

static enum MHD_Result
finish(struct broker *b, struct MHD_Connection *c, struct gconn *g)
{
	struct cap_redeemed *red = &g->red;
	struct answer ans;
	struct json_object *evidence = NULL, *res;
	struct gh_token *tok = NULL;
	struct fwd f = { .in = g->spool, .out = -1,
	    .room = { .dir = b->cfg.state } };
	enum MHD_Result ret;
	char why[512];
	char wf_why[512] = "";
	const char *code = NULL;
	int64_t intent = 0;
	long status = 0;
	int r, wf = 0, wf_retried = 0, probe, audit_down = 0;

	memset(&ans, 0, sizeof(ans));
	/* git probes with a lone flush-pkt before streaming a large push
	 * (http.postBuffer): it checks the credential (done at the headers),
	 * spends nothing, and receive-pack answers it with nothing.  A push
	 * spends its capability now that its body is in, judged again (a
	 * revocation meanwhile counts). */
	probe = g->kind == GK_RECEIVE && g->body_len == 4 &&
	    memcmp(g->head, "0000", 4) == 0;
	/* A push is judged as of when what it does (its ref updates) was
	 * all in: its pack may take longer to arrive than a capability
	 * lives, but what it updates cannot be decided later.  A fetch's
	 * request is small: it is judged again as of now, so a body
	 * trickled in past the capability's life, or past a revocation,
	 * reads nothing. */
	if (g->kind == GK_RECEIVE && !probe) {
		cap_redeemed_release(b->cap, red);
		if ((r = authorise(b, g, 1, g->cmds_at ? g->cmds_at :
		    time(NULL), red)) != 0)
			return refuse_credential(b, c, g, r, 0);
	}
	if (g->kind == GK_UPLOAD) {
		cap_redeemed_release(b->cap, red);
		if ((r = authorise(b, g, 0, time(NULL), red)) != 0)
			return refuse_credential(b, c, g, r, 0);
	}
	ans.agent = red->agent;
	ans.op = &red->op;
	ans.jti = red->jti;
	if (probe)
		return probe_reply(c);
	/* What was not all spooled is not forwarded: GitHub would get a
	 * request cut short. */
	if (g->kind == GK_UPLOAD && (g->room.full || g->too_big ||
	    g->write_err)) {
		snprintf(why, sizeof(why), "%s", g->room.full ?
		    th_errmsg(room_fail(&g->room, "the fetch request")) :
		    g->too_big ? "the fetch request is larger than the "
		    "broker's limit" : "cannot spool the fetch request");
		code = "bad_request";
		goto refuse;
	}
	if (g->kind == GK_RECEIVE) {
		if (g->room.full) {
			snprintf(why, sizeof(why), "%s", th_errmsg(room_fail(
			    &g->room, "the push")));
			goto refuse;
		}
		if (g->too_big || g->write_err || g->rx_r != 0 ||
		    (r = gitrx_finish(g->rx)) != 0) {
			snprintf(why, sizeof(why), "%s", g->too_big ?
			    "the push is larger than the broker's limit" :
			    g->write_err ? "cannot spool the push" :
			    g->rx_r ? g->rx_msg : th_errmsg(r));
			goto refuse;
		}
	}
	if ((tok = calloc(1, sizeof(*tok))) == NULL) {
		snprintf(why, sizeof(why), "out of memory");
		goto refuse;
	}
	if ((r = token_for(b, g, 0, tok)) != 0) {
		snprintf(why, sizeof(why), "%s", th_errmsg(r));
		code = github_code(r);
		gh_token_free(tok);
		tok = NULL;
		goto refuse;
	}
	if (g->kind == GK_RECEIVE) {
		evidence = json_object_new_object();
		if ((r = judge_push(b, red, g->rx, tok, evidence)) != 0) {
			snprintf(why, sizeof(why), "%s", th_errmsg(r));
			/* Asking GitHub for the facts can fail too. */
			if (r == TH_ERR_UNAVAILABLE)
				code = github_code(r);
			json_object_object_add(evidence, "failed",
			    json_object_new_string(why));
			goto refuse;
		}
		if ((r = rec_intent(b, red, g->cap, evidence, tok, &intent))
		    != 0) {
			intent_failed(r, why, sizeof(why), &code, &audit_down);
			goto refuse;
		}
		tok->intent = intent;
	} else {
		/* Reads are audited too, before the token reads anything:
		 * which agent saw which repository, under whose delegation. */
		r = rec_read(b, red, g->cap, git_request(g), tok, &intent);
		tok->intent = intent;
		if (r != 0) {
			intent_failed(r, why, sizeof(why), &code, &audit_down);
			goto refuse;
		}
	}
	if ((f.out = spool_open(b->cfg.state)) < 0) {
		r = th_fail(TH_ERR_IO, "cannot spool GitHub's reply");
	} else {
		f.out_max = g->kind == GK_RECEIVE ? GIT_REPLY_MAX :
		    b->cfg.git_max_bytes;
		r = forward(b, c, g, tok, &f, &status);
	}
	if (r == 0 && g->kind == GK_RECEIVE && status == 200 &&
	    reply_mentions(f.out, WORKFLOW_REFUSAL)) {
		wf = workflows_granted(red, g->rx);
		if (wf == 0) {
			revoker_push(b->revoker, tok);
			if ((tok = calloc(1, sizeof(*tok))) == NULL)
				wf = TH_ERR_ALLOC;
			else if ((wf = token_for(b, g, 1, tok)) == 0)
				tok->intent = intent;
			else {
				/* No token was made: nothing to revoke. */
				gh_token_free(tok);
				tok = NULL;
			}
		}
		/* The token that makes the push is on record before it is
		 * used, as the intent's was (its fingerprint, its added
		 * permission, why). */
		if (wf == 0) {
			struct json_object *perms = perms_for(g, 1);

			if (perms == NULL)
				wf = TH_ERR_ALLOC;
			else if ((wf = rec_grant(b, intent, tok, perms,
			    "GitHub refused the push for changing "
			    ".github/workflows/; the chain grants "
			    "github.push.workflows for every pushed branch"))
			    != 0)
				wf = th_fail(wf, "not sent again: audit log: %s",
				    th_errmsg(wf));
			json_object_put(perms);
		}
		if (wf == 0 && (ftruncate(f.out, 0) != 0 ||
		    lseek(f.out, 0, SEEK_SET) != 0))
			wf = th_fail(TH_ERR_IO, "cannot spool GitHub's reply");
		if (wf == 0) {
			f.out_len = 0;
			f.room.until = 0;
			wf_retried = 1;
			r = forward(b, c, g, tok, &f, &status);
		} else
			snprintf(wf_why, sizeof(wf_why), "%s", th_errmsg(wf));
	}
	if (g->kind == GK_RECEIVE) {
		snprintf(why, sizeof(why), "%s", th_errmsg(r));
		res = json_object_new_object();
		json_object_object_add(res, "status",
		    json_object_new_int64(status));
		json_object_object_add(res, "reply_bytes",
		    json_object_new_int64(f.out_len));
		json_object_object_add(res, "workflows", json_object_new_string(
		    wf_retried ? "granted after GitHub asked" : wf != 0 ?
		    "refused" : "not needed"));
		(void)rec_outcome(b, intent, status, res, r != 0 ? why :
		    wf != 0 ? wf_why : NULL, NULL, NULL);
		json_object_put(res);
		log_info("%s: git push to %s: %ld", red->agent, g->repo, status);
	}
	if (tok != NULL)
		revoker_push(b->revoker, tok);
	tok = NULL;
	json_object_put(evidence);
	if (r == 0 && wf != 0) {
		if (f.out >= 0)
			close(f.out);
		return reject_push(c, g->rx, wf_why);
	}
	if (r != 0) {
		if (f.out >= 0)
			close(f.out);
		log_warn("%s: git %s %s failed: %s", red->agent, g->push ?
		    "push to" : "fetch from", g->repo, th_errmsg(r));
		return refused(c, g, 502, th_errmsg(r), 0);
	}
	if (lseek(f.out, 0, SEEK_SET) != 0) {
		close(f.out);
		return text(c, 502, "cannot read GitHub's reply back");
	}
	ret = serve_reply(c, status, &f);
	if (f.out >= 0)
		close(f.out);
	return ret;
 refuse:
	ans.code = code != NULL ? code : audit_down ? "audit_unavailable" :
	    g->kind == GK_RECEIVE ? "policy_denied" : "github_refused";
	(void)rec_refusal(b, &ans, why);
	if (tok != NULL)
		revoker_push(b->revoker, tok);
	json_object_put(evidence);
	log_warn("%s: git %s %s refused: %s", red->agent, g->push ? "push to" :
	    "fetch from", g->repo, why);
	if (g->kind == GK_RECEIVE)
		return reject_push(c, g->rx, why);
	return refused(c, g, audit_down ? 503 : strcmp(ans.code,
	    "github_unavailable") == 0 ? 502 : 403, why, 0);
}

/* A request refused before its credential is looked at (no such git
 * endpoint, a compressed push, too many connections, a caller that is no
 * agent): answered, recorded like every refusal, against the agent who
 * connected (g->agent; "unknown" before it is known), and its connection
 * closed (a body may be left unread).  git's 401 challenge, its normal way
 * to ask its credential helper, is not a refusal. */
static enum MHD_Result
refuse_early(struct broker *b, struct MHD_Connection *c,
    const struct gconn *g, unsigned status, const char *code,
    const char *reason)
{
	struct answer ans;
	char why[512];
	int r;

	/* reason may be th_errmsg()'s buffer, which recording reuses. */
	snprintf(why, sizeof(why), "%s", reason);
	memset(&ans, 0, sizeof(ans));
	ans.agent = g->agent[0] != '\0' ? g->agent : NULL;
	ans.code = code;
	if ((r = rec_refusal(b, &ans, why)) != 0)
		log_err("audit: refusal not recorded: %s", th_errmsg(r));
	log_warn("git: refused (%u): %s", status, why);
	return text_close(c, status, why, 1);
}

static enum MHD_Result
on_git(void *arg, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **ctx)
{
	struct broker *b = arg;
	struct gconn *g = *ctx;
	struct gitrx_limits lim;
	enum MHD_Result ret;
	char busy[512];
	size_t off;
	ssize_t w;
	int r;

	(void)version;
	if (conns_dropped(c))
		return MHD_NO;
	if (g == NULL) {
		if ((g = calloc(1, sizeof(*g))) == NULL)
			return MHD_NO;
		g->spool = -1;
		g->room.dir = b->cfg.state;
		*ctx = g;
		if ((r = conns_check(c)) != 0) {
			/* Answered before any of a push is read, which is
			 * then not read at all: the connection closes. */
			snprintf(busy, sizeof(busy), "%s", th_errmsg(r));
			(void)caller(c, g);	/* named, if it is an agent */
			g->answered = 1;
			return refuse_early(b, c, g, 503, "busy", busy);
		}
		if ((r = caller(c, g)) != 0) {
			g->answered = 1;
			return refuse_early(b, c, g, 403, "unknown_agent",
			    th_errmsg(r));
		}
		/* The credential is judged now; a push's spend, as of when
		 * its ref updates were in (authorise). */
		g->started = time(NULL);
		/* Refused at once: a POST's body, unread, is not waited
		 * for (and no credential was looked at). */
		if ((r = parse_url(url, method, MHD_lookup_connection_value(c,
		    MHD_GET_ARGUMENT_KIND, "service"), g)) != 0) {
			g->answered = 1;
			return refuse_early(b, c, g, 404, "bad_request",
			    th_errmsg(r));
		}
		if (g->kind == GK_RECEIVE && MHD_lookup_connection_value(c,
		    MHD_HEADER_KIND, "Content-Encoding") != NULL) {
			g->answered = 1;
			return refuse_early(b, c, g, 415, "bad_request",
			    "compressed push bodies are not accepted");
		}
		if (credential_first(b, c, g, &ret))
			return ret;
		if (g->kind != GK_REFS &&
		    (g->spool = spool_open(b->cfg.state)) < 0)
			g->write_err = 1;
		if (g->kind == GK_RECEIVE) {
			gitrx_limits_default(&lim);
			lim.max_pack_bytes = (uint64_t)b->cfg.git_max_bytes;
			if ((g->rx = gitrx_new(&lim)) == NULL)
				return MHD_NO;
		}
		return MHD_YES;
	}
	if (g->answered) {		/* its body is not read */
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		/* libmicrohttpd's timeout is for silence only: a body sent
		 * a byte a minute would hold its connection and thread for
		 * ever.  Refused at once, the rest unread. */
		if (time(NULL) - g->started > b->cfg.git_push_seconds) {
			char slow[128];

			snprintf(slow, sizeof(slow), "the %s took more than "
			    "%lld s to arrive (git-push-seconds)",
			    g->kind == GK_RECEIVE ? "push" : "request",
			    (long long)b->cfg.git_push_seconds);
			g->answered = 1;
			/* libmicrohttpd queues no answer while it reads a
			 * body: the refusal is recorded and logged, and the
			 * connection closed. */
			(void)refuse_early(b, c, g, 408, "bad_request", slow);
			return MHD_NO;
		}
		if (g->body_len + *upload_size > (uint64_t)b->cfg.git_max_bytes)
			g->too_big = 1;
		if (!g->too_big && !g->write_err && g->spool >= 0 &&
		    room_for(&g->room, g->body_len, *upload_size) == 0) {
			for (off = 0; off < *upload_size; off += (size_t)w)
				if ((w = write(g->spool, upload + off,
				    *upload_size - off)) < 0 && errno != EINTR) {
					g->write_err = 1;
					break;
				} else if (w < 0)
					w = 0;
		}
		if (g->rx != NULL && g->rx_r == 0 && (g->rx_r = gitrx_feed(g->rx,
		    (const uint8_t *)upload, *upload_size)) != 0)
			snprintf(g->rx_msg, sizeof(g->rx_msg), "%s",
			    th_errmsg(g->rx_r));
		if (g->rx != NULL && g->cmds_at == 0 &&
		    gitrx_pack_bytes(g->rx) > 0)
			g->cmds_at = time(NULL);
		for (off = 0; off < *upload_size && g->body_len + off < 4; off++)
			g->head[g->body_len + off] = upload[off];
		g->body_len += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	return finish(b, c, g);
}

static void
on_git_done(void *arg, struct MHD_Connection *c, void **ctx,
    enum MHD_RequestTerminationCode toe)
{
	struct broker *b = arg;
	struct gconn *g = *ctx;

	(void)c;
	(void)toe;
	if (g == NULL)
		return;
	cap_redeemed_release(b->cap, &g->red);
	if (g->spool >= 0)
		close(g->spool);
	gitrx_free(g->rx);
	/* A fetch's capability lives on unspent for seconds more. */
	OPENSSL_cleanse(g->cap, sizeof(g->cap));
	free(g);
	*ctx = NULL;
}

int
git_start(struct broker *b, void **out)
{
	struct sockaddr_in sin;
	struct MHD_Daemon *d;

	*out = NULL;
	if (b->cfg.git_port == 0)
		return 0;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)b->cfg.git_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* A connection per thread: a long push must not hold up the
	 * others (the broker's parts are safe across threads). */
	b->git_conns.cfg = &b->cfg;
	memcpy(&b->git_conns.local, &sin, sizeof(sin));
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
	    (uint16_t)b->cfg.git_port, NULL, NULL, on_git, b,
	    MHD_OPTION_SOCK_ADDR, &sin,
	    MHD_OPTION_NOTIFY_COMPLETED, on_git_done, b,
	    MHD_OPTION_NOTIFY_CONNECTION, conns_notify, &b->git_conns,
	    MHD_OPTION_CONNECTION_TIMEOUT, 120u,
	    MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)(BROKER_CONNECTIONS_MAX + BROKER_CONNECTIONS_OVER),
	    MHD_OPTION_END);
	if (d == NULL)
		return th_fail(TH_ERR_IO, "cannot serve git on 127.0.0.1:%d",
		    b->cfg.git_port);
	log_info("serving git on http://127.0.0.1:%d/", b->cfg.git_port);
	*out = d;
	return 0;
}

void
git_stop(void *d)
{
	if (d != NULL)
		MHD_stop_daemon(d);
}
