/* The GitHub REST client (docs: ../shared/notes/github-api.md).  App JWTs
 * are signed by the signer's github-app key; installation tokens are
 * created per operation for one repository and the least permissions, used,
 * and revoked.  A token's value never leaves this module except inside the
 * Authorization header of a request to the configured GitHub; it is wiped
 * when revoked. */
#ifndef TH_GITHUB_H
#define TH_GITHUB_H

#include <stdint.h>

#include <json-c/json.h>

#include "facts.h"
#include "http.h"
#include "scope.h"
#include "sigclient.h"

#define GH_TOKEN_MAX		4096	/* GitHub's token format is changing */
#define GH_INSTALL_CACHE	64
#define GH_MSG_MAX		256
#define GH_AUTH_MAX		2048	/* "Bearer <App JWT>" */
#define GH_SESSIONS		8	/* requests waiting on GitHub at once */
#define GH_PERM_CACHE		256	/* reviewers' write access, remembered */
#define GH_LOGIN_MAX		64	/* an App's "slug[bot]" */
/* A write whose intent is recorded is sent within this many seconds of
 * it, or not at all: GitHub's answer to what the broker did not live to
 * hear is then settled within a bound of the intent's time, which is what
 * recovery relies on (GitHub ends a request it has worked on for 10 s). */
#define GH_SEND_WITHIN		5
#define GH_WORK_MAX		10
#define GH_PERM_TTL		60	/* seconds: a withdrawn write access
					 * counts at most this long */

struct gh;

struct gh_token {
	char	value[GH_TOKEN_MAX + 1];		/* secret */
	char	fingerprint[65];	/* hex SHA-256 of the value */
	char	expires_at[32];
	int	revoked;	/* 1 revoked, -1 revocation unknown, 0 not yet */
	char	revoke_msg[GH_MSG_MAX];
	int64_t	intent;		/* the audit entry of the operation it served */
};

struct gh_result {
	long	status;			/* GitHub's HTTP status */
	char	sha[FACTS_SHA_LEN + 1];	/* merge commit */
	int64_t	id;			/* comment, deployment, PR number */
	char	message[GH_MSG_MAX];	/* GitHub's message, or ours */
};

/* 1 if url may carry GitHub credentials: https://, or http:// to exactly
 * 127.0.0.1 or localhost (tests and the demo). */
int	gh_url_ok(const char *url);
/* base_url without trailing '/', e.g. https://api.github.com or
 * https://ghe.example.com/api/v3.  signer, the signer's socket (NULL: no
 * App JWTs), gets a connection of g's own, for App JWTs only.  A gh may be
 * shared by threads: up to GH_SESSIONS of them talk to GitHub at once, the
 * others wait for a session. */
int	gh_new(const char *base_url, const char *app_id, const char *signer,
	    struct gh **out);
void	gh_free(struct gh *g);				/* NULL ok */
/* Sequential network round trips so far, by every thread (metrics). */
unsigned gh_rounds(struct gh *g);
/* The calling thread's round trips and time spent waiting on GitHub, over
 * every gh: a request takes the difference across it. */
unsigned gh_thread_rounds(void);
uint64_t gh_thread_busy_us(void);

/* The calling thread's requests after deadline (time(2) seconds; 0: no
 * deadline) fail unsent, TH_ERR_UNAVAILABLE "not sent: ...". */
void	gh_send_by(int64_t deadline);

/* The installation id for repo "OWNER/NAME", cached. */
int	gh_installation(struct gh *g, const char *repo, int64_t *id);
/* An installation token for exactly repo with exactly perms ({"contents":
 * "write", ...}); refused unless GitHub's answer is scoped as asked. */
int	gh_token_create(struct gh *g, int64_t installation, const char *repo,
	    struct json_object *perms, struct gh_token *tok);
/* Revokes and wipes tok; the outcome is in tok->revoked. */
void	gh_token_revoke(struct gh *g, struct gh_token *tok);
/* Wipes and frees a heap-allocated token; NULL ok. */
void	gh_token_free(struct gh_token *tok);

/* The PR and, for its head SHA, check runs, statuses, reviews and (if
 * files) the changed files, read in parallel, every page.  Unread, the
 * files are incomplete, saying so in f->files_why. */
int	gh_pr_facts(struct gh *g, const struct gh_token *tok, const char *repo,
	    int64_t pr, int files, struct pr_facts *f);
/* Takes n tree listings from the budget all walks share (a pull request
 * of 300 files or more has its trees walked): GH_TREE_PER_MINUTE (800) a
 * minute, refilled continuously.  1 if taken, 0 if not enough is left. */
int	gh_tree_budget(struct gh *g, size_t n);
/* PUT .../pulls/N/merge with sha (GitHub refuses with 409 if the head
 * moved).  0 with res->status 200 when merged; TH_ERR_DENIED with the
 * reason for GitHub's refusals. */
int	gh_merge(struct gh *g, const struct gh_token *tok, const char *repo,
	    int64_t pr, const char *sha, const char *method,
	    struct gh_result *res);

/* Just the pull request (no lists). */
int	gh_pr_get(struct gh *g, const struct gh_token *tok, const char *repo,
	    int64_t pr, struct gh_pr *out);

/* A write (method on base + path, body JSON) with tok; 0 when GitHub
 * answers ok_status, res->id then holds the new object's "number" or
 * "id".  Never resent. */
int	gh_write(struct gh *g, const struct gh_token *tok, const char *method,
	    const char *path, struct json_object *body, long ok_status,
	    struct gh_result *res);

/* GET base + path with tok: GitHub's status and JSON body (NULL if
 * empty); non-2xx statuses are the caller's to judge. */
int	gh_get(struct gh *g, const struct gh_token *tok, const char *path,
	    long *status, struct json_object **out);
/* s with every byte but letters, digits and "-._~/" written as %XX, for
 * a URL's path or query (a branch name may hold '#', '%', '?' or '&');
 * -1 if that does not fit in len. */
int	gh_escape(char *dst, size_t len, const char *s);
/* GET /repos/{repo}/branches/{branch}, the name percent-encoded (it may
 * hold '#', '%' or '?'), as gh_get. */
int	gh_branch_get(struct gh *g, const struct gh_token *tok,
	    const char *repo, const char *branch, long *status,
	    struct json_object **out);

/* The App's own login, "slug[bot]" (GET /app, once): the author GitHub
 * names for what the App's installation tokens create. */
int	gh_app_login(struct gh *g, char *out, size_t len);
/* Every item of the list GET base + path answers, page by page (Link
 * rel="next", on the configured GitHub only, at most GH_PAGES_MAX pages),
 * to each, which stops the walk by returning 1 (then 0 is returned) or a
 * negative error (returned). */
int	gh_list(struct gh *g, const struct gh_token *tok, const char *path,
	    int (*each)(struct json_object *item, void *arg), void *arg);

#endif
