/* HTTP requests to GitHub over libcurl: several at once (curl multi), on
 * connections kept open between calls, with bounded retries that honour
 * retry-after and x-ratelimit-reset.  Replies are bounded in size.  The
 * Authorization value is a secret: it is never logged and the copy curl
 * holds is freed with the request. */
#ifndef TH_HTTP_H
#define TH_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HTTP_RESP_MAX		(8 * 1024 * 1024)
#define HTTP_URL_MAX		2048
#define HTTP_AUTH_MAX		8192	/* an Authorization value, NUL included */
#define HTTP_BATCH_MAX		16
#define HTTP_ATTEMPTS		3	/* per request */
#define HTTP_WAIT_MAX_S		10	/* longest retry-after we sit out */
#define HTTP_RESET_UNKNOWN_S	60	/* a rate limit whose reset is not said */
#define HTTP_TIMEOUT_MS		10000
#define HTTP_CONNECT_TIMEOUT_MS	3000

struct http;

struct http_req {
	/* In. */
	const char	*method;		/* GET, POST, PUT, DELETE */
	char		 url[HTTP_URL_MAX];
	const char	*auth;			/* "Bearer ..." or NULL */
	const char	*body;			/* JSON, or NULL */
	int		 idempotent;	/* safe to resend after a 5xx/timeout */
	int64_t		 send_by;	/* not (re)sent after this time(2)
					 * second; 0: no limit */
	/* Out. */
	int		 r;		/* 0, or TH_ERR_* with errmsg */
	long		 status;
	struct buf	*resp;		/* owned by the request */
	char		 next[HTTP_URL_MAX];	/* Link rel="next", or "" */
	int		 next_too_long;		/* a rel="next" not held */
	int		 attempts;
	char		 errmsg[256];
	/* Private. */
	long		 retry_after;
	long		 rl_remaining, rl_reset;
	void		*easy;
	void		*headers;
};

int	http_new(const char *user_agent, struct http **out);
void	http_free(struct http *h);			/* NULL ok */

/* Prepares req (allocates resp); call http_req_clear to release. */
int	http_req_init(struct http_req *req, const char *method,
	    const char *url, const char *auth, const char *body,
	    int idempotent);
void	http_req_clear(struct http_req *req);

/* Takes one header line of a reply (as curl hands it, line end included):
 * Link's rel="next" URL into req->next (left as it was if none; if longer
 * than next holds, next_too_long set instead), retry-after and x-ratelimit-* into their
 * fields (-1 if not a plain number).  The caller decides whether to
 * follow next (github.c: the same GitHub only). */
void	http_header_line(struct http_req *req, const char *p, size_t len);

/* Runs reqs[0..n) concurrently, retrying as allowed, until each has a
 * final answer.  Returns 0; per-request outcome in req->r and req->status.
 * The number of sequential network round trips this took is added to
 * *rounds if not NULL. */
int	http_run(struct http *h, struct http_req **reqs, size_t n,
	    unsigned *rounds);

#endif
