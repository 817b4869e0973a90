/* Full policy-checked merges through thresholdd, as an agent does them:
 * request a capability, redeem it (the broker reads the PR, its checks,
 * reviews and files, evaluates the policy, merges, and revokes the token).
 *
 *   bench_broker BROKER_SOCKET REPO FIRST_PR N
 *
 * PRs FIRST_PR .. FIRST_PR+N-1 must be open and pass the policy.  Prints
 * merges/s, p50/p99 of the whole agent-visible latency, p50/p99 of the
 * broker's own time (the answer's total minus the time spent waiting on
 * GitHub, plus the whole capability request), and the most sequential
 * GitHub round trips any merge needed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "bench.h"
#include "buf.h"
#include "err.h"
#include "json.h"

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	return buf_put(arg, p, size * n) == 0 ? size * n : 0;
}

static struct json_object *
post(CURL *c, const char *path, const char *body, long *status)
{
	struct json_object *o = NULL;
	struct buf *b = buf_new();
	char url[128];

	snprintf(url, sizeof(url), "http://localhost%s", path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	if (curl_easy_perform(c) == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		json_parse_strict((const char *)buf_ptr(b), buf_len(b),
		    1 << 20, &o);
	}
	buf_free(b);
	return o;
}

int
main(int argc, char **argv)
{
	struct json_object *o, *t, *v;
	const char *cap;
	double *lat, *own, t0, t1, start;
	char body[8192];
	long status = 0, pr;
	int64_t rounds, maxrounds = 0, broker_us;
	size_t i, n;
	CURL *c;

	if (argc != 5) {
		fprintf(stderr, "usage: bench_broker SOCKET REPO FIRST_PR N\n");
		return 2;
	}
	pr = atol(argv[3]);
	n = strtoul(argv[4], NULL, 10);
	lat = calloc(n, sizeof(*lat));
	own = calloc(n, sizeof(*own));
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, argv[1]);
	start = now_us();
	for (i = 0; i < n; i++) {
		t0 = now_us();
		snprintf(body, sizeof(body), "{\"op\":\"github.merge\",\"repo\":"
		    "\"%s\",\"pr\":%ld,\"target\":\"main\"}", argv[2],
		    pr + (long)i);
		o = post(c, "/v1/capabilities", body, &status);
		if (o == NULL || status != 201 ||
		    json_get_string(o, "capability", &cap) != 0) {
			fprintf(stderr, "bench_broker: mint failed (%ld)\n",
			    status);
			return 1;
		}
		t1 = now_us();
		snprintf(body, sizeof(body), "{\"capability\":\"%s\"}", cap);
		json_object_put(o);
		o = post(c, "/v1/redeem", body, &status);
		if (o == NULL || status != 200 ||
		    !json_object_object_get_ex(o, "timing", &t)) {
			fprintf(stderr, "bench_broker: merge of #%ld failed "
			    "(%ld): %s\n", pr + (long)i, status, o ?
			    json_object_to_json_string(o) : "no answer");
			return 1;
		}
		lat[i] = now_us() - t0;
		json_object_object_get_ex(t, "broker_us", &v);
		broker_us = json_object_get_int64(v);
		json_object_object_get_ex(t, "github_round_trips", &v);
		rounds = json_object_get_int64(v);
		/* The first merge also looks up the installation (then
		 * cached); steady state is what the target is about. */
		if (i > 0 && rounds > maxrounds)
			maxrounds = rounds;
		own[i] = (t1 - t0) + (double)broker_us;
		json_object_put(o);
	}
	sort_latencies(lat, n);
	sort_latencies(own, n);
	printf("merge  %-28s %7.1f merges/s   p50 %7.2f ms   p99 %7.2f ms   "
	    "broker's own p50 %5.2f ms p99 %5.2f ms   round trips %lld\n",
	    "", n / ((now_us() - start) / 1e6), lat[n / 2] / 1e3,
	    lat[n * 99 / 100] / 1e3, own[n / 2] / 1e3, own[n * 99 / 100] / 1e3,
	    (long long)maxrounds);
	curl_easy_cleanup(c);
	free(lat);
	free(own);
	return 0;
}
