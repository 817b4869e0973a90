/* Full policy-checked merges through thresholdd, as an agent does them:
 * request a capability, redeem it (the broker reads the PR, its checks,
 * reviews and files, evaluates the policy, merges, and revokes the token).
 *
 *   bench_broker BROKER_SOCKET REPO FIRST_PR N [AGENTS]
 *
 * PRs FIRST_PR .. FIRST_PR+N-1 must be open and pass the policy.  AGENTS
 * (default 1) connections merge them side by side, each one PR at a time.
 * Prints merges/s, p50/p99 of the whole agent-visible latency, p50/p99 of
 * the broker's own time (the answer's total minus the time spent waiting
 * on GitHub, plus the whole capability request), and the most sequential
 * GitHub round trips any merge needed. */
#include <pthread.h>
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

#define AGENTS_MAX	64

struct run {
	const char	*sock, *repo;
	long		 first;
	size_t		 n, agents;
	double		*lat, *own;
	int64_t		 maxrounds;	/* over every merge but the first */
	int		 failed;
	pthread_mutex_t	 mu;
	size_t		 next;		/* the next merge to do */
};

/* Merge i (PR first + i): its latency and the broker's own time. */
static int
merge(CURL *c, struct run *rn, size_t i, int64_t *rounds)
{
	struct json_object *o, *t, *v;
	const char *cap;
	char body[8192];
	double t0, t1;
	long status = 0, pr = rn->first + (long)i;

	t0 = now_us();
	snprintf(body, sizeof(body), "{\"op\":\"github.merge\",\"repo\":"
	    "\"%s\",\"pr\":%ld,\"target\":\"main\"}", rn->repo, pr);
	o = post(c, "/v1/capabilities", body, &status);
	if (o == NULL || status != 201 ||
	    json_get_string(o, "capability", &cap) != 0) {
		fprintf(stderr, "bench_broker: mint failed (%ld)\n", status);
		json_object_put(o);
		return -1;
	}
	t1 = now_us();
	snprintf(body, sizeof(body), "{\"capability\":\"%s\"}", cap);
	json_object_put(o);
	o = post(c, "/v1/redeem", body, &status);
	if (o == NULL || status != 200 ||
	    !json_object_object_get_ex(o, "timing", &t)) {
		fprintf(stderr, "bench_broker: merge of #%ld failed (%ld): %s\n",
		    pr, status, o ? json_object_to_json_string(o) :
		    "no answer");
		json_object_put(o);
		return -1;
	}
	rn->lat[i] = now_us() - t0;
	json_object_object_get_ex(t, "broker_us", &v);
	rn->own[i] = (t1 - t0) + (double)json_object_get_int64(v);
	json_object_object_get_ex(t, "github_round_trips", &v);
	*rounds = json_object_get_int64(v);
	json_object_put(o);
	return 0;
}

static void *
agent(void *arg)
{
	struct run *rn = arg;
	int64_t rounds;
	size_t i;
	CURL *c;

	if ((c = curl_easy_init()) == NULL) {
		rn->failed = 1;
		return NULL;
	}
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, rn->sock);
	for (;;) {
		pthread_mutex_lock(&rn->mu);
		i = rn->failed ? rn->n : rn->next++;
		pthread_mutex_unlock(&rn->mu);
		if (i >= rn->n)
			break;
		if (merge(c, rn, i, &rounds) != 0) {
			pthread_mutex_lock(&rn->mu);
			rn->failed = 1;
			pthread_mutex_unlock(&rn->mu);
			break;
		}
		/* The first merge also looks up the installation (then
		 * cached); steady state is what the target is about. */
		pthread_mutex_lock(&rn->mu);
		if (i > 0 && rounds > rn->maxrounds)
			rn->maxrounds = rounds;
		pthread_mutex_unlock(&rn->mu);
	}
	curl_easy_cleanup(c);
	return NULL;
}

int
main(int argc, char **argv)
{
	pthread_t th[AGENTS_MAX];
	struct run rn;
	double start, secs;
	size_t i, started;

	if (argc != 5 && argc != 6) {
		fprintf(stderr, "usage: bench_broker SOCKET REPO FIRST_PR N "
		    "[AGENTS]\n");
		return 2;
	}
	memset(&rn, 0, sizeof(rn));
	rn.sock = argv[1];
	rn.repo = argv[2];
	rn.first = atol(argv[3]);
	rn.n = strtoul(argv[4], NULL, 10);
	rn.agents = argc == 6 ? strtoul(argv[5], NULL, 10) : 1;
	if (rn.n == 0 || rn.agents == 0 || rn.agents > AGENTS_MAX) {
		fprintf(stderr, "bench_broker: N >= 1, 1 <= AGENTS <= %d\n",
		    AGENTS_MAX);
		return 2;
	}
	rn.lat = calloc(rn.n, sizeof(*rn.lat));
	rn.own = calloc(rn.n, sizeof(*rn.own));
	pthread_mutex_init(&rn.mu, NULL);
	start = now_us();
	for (started = 0; started < rn.agents; started++)
		if (pthread_create(&th[started], NULL, agent, &rn) != 0)
			break;
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	secs = (now_us() - start) / 1e6;
	if (rn.failed || started == 0)
		return 1;
	sort_latencies(rn.lat, rn.n);
	sort_latencies(rn.own, rn.n);
	printf("merge  %-28s %7.1f merges/s   p50 %7.2f ms   p99 %7.2f ms   "
	    "broker's own p50 %5.2f ms p99 %5.2f ms   round trips %lld\n",
	    "", rn.n / secs, rn.lat[rn.n / 2] / 1e3,
	    rn.lat[rn.n * 99 / 100] / 1e3, rn.own[rn.n / 2] / 1e3,
	    rn.own[rn.n * 99 / 100] / 1e3, (long long)rn.maxrounds);
	free(rn.lat);
	free(rn.own);
	return 0;
}
