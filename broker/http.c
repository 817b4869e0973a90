#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "err.h"
#include "http.h"

struct http {
	CURLM	*multi;
	char	 ua[128];
};

int
http_new(const char *user_agent, struct http **out)
{
	static int initialised;
	struct http *h;

	if (!initialised) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return th_fail(TH_ERR_INTERNAL, "curl_global_init");
		initialised = 1;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return TH_ERR_ALLOC;
	if ((h->multi = curl_multi_init()) == NULL) {
		free(h);
		return TH_ERR_ALLOC;
	}
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)HTTP_BATCH_MAX);
	snprintf(h->ua, sizeof(h->ua), "%s", user_agent);
	*out = h;
	return 0;
}

void
http_free(struct http *h)
{
	if (h == NULL)
		return;
	curl_multi_cleanup(h->multi);
	free(h);
}

int
http_req_init(struct http_req *req, const char *method, const char *url,
    const char *auth, const char *body, int idempotent)
{
	memset(req, 0, sizeof(*req));
	if (strlen(url) >= sizeof(req->url))
		return th_fail(TH_ERR_TOO_LONG, "URL too long");
	if ((req->resp = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	req->method = method;
	strcpy(req->url, url);
	req->auth = auth;
	req->body = body;
	req->idempotent = idempotent;
	return 0;
}

/* The header list holds the Authorization value: wipe before freeing. */
static void
headers_free(struct http_req *req)
{
	struct curl_slist *s;

	for (s = req->headers; s != NULL; s = s->next)
		OPENSSL_cleanse(s->data, strlen(s->data));
	curl_slist_free_all(req->headers);
	req->headers = NULL;
}

void
http_req_clear(struct http_req *req)
{
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	headers_free(req);
	buf_free(req->resp);
	memset(req, 0, sizeof(*req));
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct http_req *req = arg;

	if (n != 0 && size > HTTP_RESP_MAX / n)
		return 0;
	if (buf_len(req->resp) + size * n > HTTP_RESP_MAX) {
		snprintf(req->errmsg, sizeof(req->errmsg), "reply larger than "
		    "%d bytes", HTTP_RESP_MAX);
		return 0;
	}
	return buf_put(req->resp, p, size * n) == 0 ? size * n : 0;
}

/* The value of header line p (of length len) if it is name, else NULL;
 * *vlen excludes the line end. */
static const char *
header_value(const char *p, size_t len, const char *name, size_t *vlen)
{
	size_t n = strlen(name);

	if (len <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
		return NULL;
	p += n + 1;
	len -= n + 1;
	while (len > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		len--;
	}
	while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n'))
		len--;
	*vlen = len;
	return p;
}

/* Link: <url>; rel="next", <url>; rel="last".  One pass: each link's
 * parameters are searched only up to the comma that ends them (searching
 * to the end of the header for every link was quadratic in its length). */
static void
parse_link(struct http_req *req, const char *v, size_t len)
{
	const char *end = v + len, *p, *lt, *gt, *stop;

	for (p = v; p < end; p = stop + 1) {
		if ((lt = memchr(p, '<', (size_t)(end - p))) == NULL ||
		    (gt = memchr(lt, '>', (size_t)(end - lt))) == NULL)
			return;
		if ((stop = memchr(gt, ',', (size_t)(end - gt))) == NULL)
			stop = end;
		if (stop - gt < 12 || memmem(gt, (size_t)(stop - gt),
		    "rel=\"next\"", 10) == NULL)
			continue;
		/* A next page not followed would leave a list that looks
		 * whole: the caller must know. */
		if ((size_t)(gt - lt - 1) >= sizeof(req->next)) {
			req->next_too_long = 1;
			return;
		}
		memcpy(req->next, lt + 1, (size_t)(gt - lt - 1));
		req->next[gt - lt - 1] = '\0';
		return;
	}
}

static long
header_long(const char *v, size_t len)
{
	char tmp[32];

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, v, len);
	tmp[len] = '\0';
	return strspn(tmp, "0123456789") == len ? atol(tmp) : -1;
}

void
http_header_line(struct http_req *req, const char *p, size_t len)
{
	size_t vlen;
	const char *v;

	if ((v = header_value(p, len, "link", &vlen)) != NULL)
		parse_link(req, v, vlen);
	else if ((v = header_value(p, len, "retry-after", &vlen)) != NULL)
		req->retry_after = header_long(v, vlen);
	else if ((v = header_value(p, len, "x-ratelimit-remaining", &vlen)))
		req->rl_remaining = header_long(v, vlen);
	else if ((v = header_value(p, len, "x-ratelimit-reset", &vlen)))
		req->rl_reset = header_long(v, vlen);
}

static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	http_header_line(arg, p, size * n);
	return size * n;
}

static int
start(struct http *h, struct http_req *req)
{
	char auth[sizeof("Authorization: ") + HTTP_AUTH_MAX];
	CURL *e;

	buf_reset(req->resp);
	req->r = 0;
	req->next[0] = req->errmsg[0] = '\0';
	req->status = 0;
	req->retry_after = req->rl_remaining = req->rl_reset = -1;
	req->attempts++;
	headers_free(req);
	if (req->easy != NULL)
		curl_easy_cleanup(req->easy);
	if ((req->easy = e = curl_easy_init()) == NULL)
		return TH_ERR_ALLOC;
	req->headers = curl_slist_append(NULL,
	    "Accept: application/vnd.github+json");
	req->headers = curl_slist_append(req->headers,
	    "X-GitHub-Api-Version: 2022-11-28");
	if (req->body != NULL)
		req->headers = curl_slist_append(req->headers,
		    "Content-Type: application/json");
	if (req->auth != NULL) {
		if (strlen(req->auth) >= HTTP_AUTH_MAX)
			return th_fail(TH_ERR_TOO_LONG, "credential too long");
		snprintf(auth, sizeof(auth), "Authorization: %s", req->auth);
		req->headers = curl_slist_append(req->headers, auth);
		OPENSSL_cleanse(auth, sizeof(auth));
	}
	if (req->headers == NULL)
		return TH_ERR_ALLOC;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(e, CURLOPT_USERAGENT, h->ua);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body != NULL) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(req->body));
	} else if (strcmp(req->method, "GET") != 0)
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, req);
	if (curl_multi_add_handle(h->multi, e) != CURLM_OK)
		return th_fail(TH_ERR_INTERNAL, "curl_multi_add_handle");
	return 0;
}

/* Drives the started requests until all have finished. */
static int
drive(struct http *h)
{
	struct http_req *req;
	CURLMsg *msg;
	int running = 1, left;

	while (running > 0) {
		if (curl_multi_perform(h->multi, &running) != CURLM_OK)
			return th_fail(TH_ERR_INTERNAL, "curl_multi_perform");
		while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			    (char **)&req);
			curl_easy_getinfo(msg->easy_handle,
			    CURLINFO_RESPONSE_CODE, &req->status);
			if (msg->data.result != CURLE_OK) {
				if (req->errmsg[0] == '\0')
					snprintf(req->errmsg,
					    sizeof(req->errmsg), "%s",
					    curl_easy_strerror(
					    msg->data.result));
				req->status = 0;
			}
			curl_multi_remove_handle(h->multi, msg->easy_handle);
		}
		if (running > 0 &&
		    curl_multi_poll(h->multi, NULL, 0, 1000, NULL) != CURLM_OK)
			return th_fail(TH_ERR_INTERNAL, "curl_multi_poll");
	}
	return 0;
}

/* Seconds to wait before resending req, or -1 if its answer is final. */
static long
retry_in(const struct http_req *req)
{
	long wait;

	if (req->attempts >= HTTP_ATTEMPTS)
		return -1;
	if ((req->status == 403 || req->status == 429) &&
	    (req->retry_after >= 0 || req->rl_remaining == 0)) {
		/* A primary limit without its reset: at least a minute, as
		 * GitHub asks (not at once, three times). */
		wait = req->retry_after >= 0 ? req->retry_after :
		    req->rl_reset >= 0 ? req->rl_reset - (long)time(NULL) :
		    HTTP_RESET_UNKNOWN_S;
		return wait < 0 ? 0 : wait;
	}
	if (req->idempotent && (req->status == 0 || req->status >= 500))
		return 0;
	return -1;
}

int
http_run(struct http *h, struct http_req **reqs, size_t n, unsigned *rounds)
{
	struct http_req *again[HTTP_BATCH_MAX];
	size_t i, k, nagain = n;
	long wait, maxwait;
	int r;

	if (n > HTTP_BATCH_MAX)
		return th_fail(TH_ERR_INTERNAL, "too many requests at once");
	memcpy(again, reqs, n * sizeof(*reqs));
	while (nagain > 0) {
		for (i = 0; i < nagain; i++)
			if ((r = start(h, again[i])) != 0)
				return r;
		if ((r = drive(h)) != 0)
			return r;
		if (rounds != NULL)
			(*rounds)++;
		maxwait = 0;
		for (i = k = 0; i < nagain; i++) {
			wait = retry_in(again[i]);
			if (wait > HTTP_WAIT_MAX_S) {
				snprintf(again[i]->errmsg,
				    sizeof(again[i]->errmsg), "GitHub rate "
				    "limit: retry in %ld s, longer than the %d s "
				    "Threshold waits", wait, HTTP_WAIT_MAX_S);
				again[i]->r = TH_ERR_UNAVAILABLE;
				wait = -1;
			}
			/* What must go out by a deadline (a write after its
			 * intent) is not sent again past it: recovery asks
			 * GitHub only once that deadline has long passed. */
			if (wait >= 0 && again[i]->send_by != 0 &&
			    (int64_t)time(NULL) + wait > again[i]->send_by) {
				snprintf(again[i]->errmsg,
				    sizeof(again[i]->errmsg), "not sent again: "
				    "GitHub answered %ld and a resend in %ld s "
				    "would be past the deadline to send it",
				    again[i]->status, wait);
				again[i]->r = TH_ERR_UNAVAILABLE;
				wait = -1;
			}
			if (wait < 0)
				continue;
			if (wait > maxwait)
				maxwait = wait;
			again[k++] = again[i];
		}
		nagain = k;
		/* Back off a little even when told "now", so that a struggling
		 * server is not hammered. */
		if (nagain > 0)
			usleep(maxwait > 0 ? (useconds_t)maxwait * 1000000 :
			    100000u * (useconds_t)again[0]->attempts);
	}
	for (i = 0; i < n; i++) {
		if (reqs[i]->status == 0)
			reqs[i]->r = TH_ERR_UNAVAILABLE;
		else if (reqs[i]->r == 0 && (reqs[i]->status == 403 ||
		    reqs[i]->status == 429) && (reqs[i]->retry_after >= 0 ||
		    reqs[i]->rl_remaining == 0)) {
			snprintf(reqs[i]->errmsg, sizeof(reqs[i]->errmsg),
			    "GitHub rate limit still in force after %d "
			    "attempts", reqs[i]->attempts);
			reqs[i]->r = TH_ERR_UNAVAILABLE;
		}
	}
	return 0;
}
