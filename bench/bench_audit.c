/* Audit entries appended per second with every entry covered by a TPM
 * quote (group commit): THREADS writers each append an entry and wait for
 * its checkpoint, as the broker does for every intent.
 *
 *   bench_audit SIGNER_SOCKET DB N THREADS
 *
 * Prints entries/s, p50/p99 of append+commit, and the number of quotes. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "alog.h"
#include "err.h"

#define THREADS_MAX 64

static struct alog *lg;
static double *lat;

struct worker {
	size_t	first, n;
	int	r;
};

static void *
run(void *arg)
{
	struct worker *w = arg;
	struct json_object *e;
	int64_t seq;
	double t0;
	size_t i;

	for (i = 0; i < w->n; i++) {
		e = json_object_new_object();
		json_object_object_add(e, "agent",
		    json_object_new_string("agent:bench"));
		json_object_object_add(e, "n", json_object_new_int64(
		    (int64_t)(w->first + i)));
		t0 = now_us();
		if ((w->r = alog_append(lg, "refusal", e, &seq)) != 0 ||
		    (w->r = alog_commit(lg, seq, NULL)) != 0) {
			json_object_put(e);
			fprintf(stderr, "bench_audit: %s\n", th_errmsg(w->r));
			return NULL;
		}
		lat[w->first + i] = now_us() - t0;
		json_object_put(e);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	struct worker w[THREADS_MAX];
	pthread_t th[THREADS_MAX];
	size_t n, t, i, total;
	sqlite3 *db;
	sqlite3_stmt *st;
	double start, el;
	int r = 0, quotes = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: bench_audit SIGNER_SOCKET DB N THREADS\n");
		return 2;
	}
	n = strtoul(argv[3], NULL, 10);
	t = strtoul(argv[4], NULL, 10);
	if (n == 0 || t == 0 || t > THREADS_MAX ||
	    (lat = calloc(n, sizeof(*lat))) == NULL)
		return 2;
	if ((r = alog_open(argv[2], argv[1], "thresholdd:bench", &lg)) != 0) {
		fprintf(stderr, "bench_audit: %s\n", th_errmsg(r));
		return 1;
	}
	start = now_us();
	for (i = 0; i < t; i++) {
		w[i] = (struct worker){ .first = i * (n / t), .n = n / t };
		pthread_create(&th[i], NULL, run, &w[i]);
	}
	for (i = 0; i < t; i++) {
		pthread_join(th[i], NULL);
		r |= w[i].r;
	}
	el = now_us() - start;
	total = t * (n / t);
	alog_close(lg);
	if (sqlite3_open(argv[2], &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*) FROM checkpoints", -1, &st,
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		quotes = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	if (r != 0)
		return 1;
	sort_latencies(lat, total);
	printf("audit  append+commit, %2zu writers %17s %9.0f entries/s   p50 %7.0f us   "
	    "p99 %7.0f us   %d quotes for %zu entries\n", t, "", total / (el / 1e6),
	    lat[total / 2], lat[total * 99 / 100], quotes, total);
	return 0;
}
