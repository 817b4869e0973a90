/* Signing throughput and latency, raw (in-process backend calls) and through
 * threshold-signer's socket, so the protocol's overhead is visible.
 *
 *   bench_sign raw CONFIG KEYREF N       KEYREF: tpm:0x81... or pkcs11:...
 *   bench_sign socket SOCKET PURPOSE N [APP-ID [CONNECTIONS]]
 *   bench_sign compare CONFIG KEYREF SOCKET PURPOSE N [APP-ID]
 *
 * raw and socket print one line: mode, key, ops/s, p50 and p99 latency in
 * microseconds.  compare measures both in one process, alternating blocks
 * of N / COMPARE_ROUNDS signatures, so that the two figures see the same
 * machine (a shared VM's speed drifts by more than the overhead measured)
 * and prints both lines and the overhead, by rate and by p50, and the
 * floor: a bare round trip of the same sizes between two processes over a
 * Unix socket, both polling as the signer and its client do, with no
 * protocol, checks or signing; what the kernel and the machine's
 * scheduling cost whatever the signer does. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/wait.h>

#include <openssl/rand.h>

#include "bench.h"
#include "b64url.h"
#include "config.h"
#include "err.h"
#include "p11.h"
#include "sigclient.h"
#include "tpm.h"
#include "typ.h"

#define BENCH_CONNS_MAX	16
#define COMPARE_ROUNDS	20
#define FLOOR_REQ	300	/* a capability's SIGN request, about */
#define FLOOR_REP	100	/* an ES256 reply */

static void
report(const char *mode, const char *what, double *lat, size_t n,
    double total_us)
{
	sort_latencies(lat, n);
	printf("%-6s %-40s %9.0f ops/s   p50 %7.0f us   p99 %7.0f us\n",
	    mode, what, n / (total_us / 1e6), lat[n / 2], lat[n * 99 / 100]);
}

/* A key called in-process, as the signer calls it. */
struct raw {
	struct tpm_ctx	*tpm;
	struct p11_ctx	*p11;
	struct tpm_key	*tk;
	struct p11_key	*pk;
	uint8_t		 digest[TH_DIGEST_LEN];
};

static int
raw_open(const char *conf, const char *ref, struct raw *k)
{
	struct config cfg;
	int r;

	memset(k, 0, sizeof(*k));
	RAND_bytes(k->digest, sizeof(k->digest));
	if ((r = config_load(conf, &cfg)) != 0)
		return r;
	if (strncmp(ref, "tpm:", 4) == 0) {
		if ((r = tpm_open(cfg.tcti, &k->tpm)) == 0)
			r = tpm_key_load(k->tpm, (uint32_t)strtoul(ref + 4, NULL,
			    16), &k->tk);
		return r;
	}
	if ((r = p11_open(cfg.p11_module, cfg.p11_pin_file, &k->p11)) == 0)
		r = p11_key_load(k->p11, ref, &k->pk);
	return r;
}

/* Signs the i-th digest (one byte differs from the last). */
static int
raw_sign(struct raw *k, size_t i)
{
	uint8_t sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);

	k->digest[0] = (uint8_t)i;
	return k->tk != NULL ? tpm_sign(k->tk, k->digest, sig, &siglen) :
	    p11_sign(k->pk, k->digest, sig, &siglen);
}

static void
raw_close(struct raw *k)
{
	tpm_key_free(k->tk);
	p11_key_free(k->pk);
	tpm_close(k->tpm);
	p11_close(k->p11);
}

static int
bench_raw(const char *conf, const char *ref, size_t n)
{
	struct raw k;
	double *lat, t0, start;
	size_t i;
	int r;

	if ((lat = calloc(n, sizeof(*lat))) == NULL)
		return 1;
	if ((r = raw_open(conf, ref, &k)) != 0)
		goto out;
	start = now_us();
	for (i = 0; i < n; i++) {
		t0 = now_us();
		if ((r = raw_sign(&k, i)) != 0)
			goto out;
		lat[i] = now_us() - t0;
	}
	report("raw", ref, lat, n, now_us() - start);
 out:
	if (r != 0)
		fprintf(stderr, "bench_sign: %s\n", th_errmsg(r));
	raw_close(&k);
	free(lat);
	return r != 0;
}

/* A payload the signer accepts for the purpose, fresh each time. */
static int
make_payload(struct buf *b, const char *purpose, const char *app_id, size_t i)
{
	char hdr[128], claims[256];
	int64_t t = (int64_t)time(NULL);

	if (strcmp(purpose, "github-app") == 0) {
		snprintf(hdr, sizeof(hdr), "{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
		snprintf(claims, sizeof(claims), "{\"iss\":\"%s\",\"iat\":%"
		    PRId64 ",\"exp\":%" PRId64 ",\"n\":%zu}", app_id, t - 60,
		    t + 540, i);
	} else {
		snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"typ\":\"%s\"}",
		    strcmp(purpose, "capability") == 0 ? TYP_CAPABILITY :
		    TYP_HUMAN_CERT);
		snprintf(claims, sizeof(claims), "{\"jti\":\"%zu\",\"iat\":%"
		    PRId64 ",\"exp\":%" PRId64 "}", i, t, t + 15);
	}
	buf_reset(b);
	if (b64url_encode(b, (uint8_t *)hdr, strlen(hdr)) != 0 ||
	    buf_put_u8(b, '.') != 0 ||
	    b64url_encode(b, (uint8_t *)claims, strlen(claims)) != 0)
		return TH_ERR_ALLOC;
	return 0;
}

struct worker {
	const char	*path, *purpose, *app_id;
	size_t		 first, n;
	double		*lat;
	pthread_barrier_t *ready;	/* every payload made: start the clock */
	enum th_alg	 alg;
	int		 r;
};

/* The payloads are made before the clock starts: what is timed is the
 * signer (socket, checks, hashing, signing), not this client's formatting. */
static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct sigc *c = NULL;
	struct buf **payload;
	uint8_t sig[TH_SIG_MAX];
	size_t i, siglen;
	double t0;

	if ((payload = calloc(w->n, sizeof(*payload))) == NULL)
		w->r = TH_ERR_ALLOC;
	for (i = 0; w->r == 0 && i < w->n; i++)
		if ((payload[i] = buf_new()) == NULL ||
		    make_payload(payload[i], w->purpose, w->app_id,
		    w->first + i) != 0)
			w->r = TH_ERR_ALLOC;
	if (w->r == 0)
		w->r = sigc_connect(w->path, &c);
	pthread_barrier_wait(w->ready);
	for (i = 0; w->r == 0 && i < w->n; i++) {
		t0 = now_us();
		if ((w->r = sigc_sign(c, w->purpose, buf_ptr(payload[i]),
		    buf_len(payload[i]), &w->alg, sig, &siglen)) != 0)
			goto out;
		w->lat[w->first + i] = now_us() - t0;
	}
 out:
	if (w->r != 0)
		fprintf(stderr, "bench_sign: %s\n", th_errmsg(w->r));
	sigc_close(c);
	for (i = 0; payload != NULL && i < w->n; i++)
		buf_free(payload[i]);
	free(payload);
	return NULL;
}

/* conns connections in parallel, as a broker serving several agents has:
 * the signer then never waits for a client's next request. */
static int
bench_socket(const char *path, const char *purpose, size_t n,
    const char *app_id, size_t conns)
{
	struct worker w[BENCH_CONNS_MAX];
	pthread_t th[BENCH_CONNS_MAX];
	pthread_barrier_t ready;
	double *lat, start;
	char what[64];
	size_t i;
	int r = 0;

	if (conns == 0 || conns > BENCH_CONNS_MAX ||
	    (lat = calloc(n, sizeof(*lat))) == NULL)
		return 1;
	pthread_barrier_init(&ready, NULL, (unsigned)conns + 1);
	for (i = 0; i < conns; i++) {
		w[i] = (struct worker){ .path = path, .purpose = purpose,
		    .app_id = app_id, .first = i * (n / conns), .n = n / conns,
		    .lat = lat, .ready = &ready };
		pthread_create(&th[i], NULL, worker_run, &w[i]);
	}
	pthread_barrier_wait(&ready);
	start = now_us();
	for (i = 0; i < conns; i++) {
		pthread_join(th[i], NULL);
		r |= w[i].r;
	}
	if (r == 0) {
		snprintf(what, sizeof(what), "%s (%s), %zu conn", purpose,
		    th_alg_name(w[0].alg), conns);
		report("socket", what, lat, conns * (n / conns),
		    now_us() - start);
	}
	pthread_barrier_destroy(&ready);
	free(lat);
	return r != 0;
}

/* Reads exactly len bytes, polling: 0, or -1 if the peer is gone. */
static int
recv_polling(int fd, uint8_t *p, size_t len)
{
	ssize_t got;

	while (len > 0) {
		if ((got = recv(fd, p, len, MSG_DONTWAIT)) > 0) {
			p += got;
			len -= (size_t)got;
		} else if (got == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
	}
	return 0;
}

/* n bare round trips; p50 in *p50, average in *avg (us). */
static int
bench_floor(size_t n, double *p50, double *avg)
{
	uint8_t msg[FLOOR_REQ];
	double *lat, t0, start;
	pid_t pid;
	size_t i;
	int sv[2], r = -1, st;

	if ((lat = calloc(n, sizeof(*lat))) == NULL)
		return -1;
	memset(msg, 'x', sizeof(msg));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
	    (pid = fork()) < 0)
		goto out;
	if (pid == 0) {
		close(sv[0]);
		while (recv_polling(sv[1], msg, FLOOR_REQ) == 0 &&
		    send(sv[1], msg, FLOOR_REP, MSG_NOSIGNAL) == FLOOR_REP)
			;
		_exit(0);
	}
	close(sv[1]);
	start = now_us();
	for (i = 0; i < n; i++) {
		t0 = now_us();
		if (send(sv[0], msg, FLOOR_REQ, MSG_NOSIGNAL) != FLOOR_REQ ||
		    recv_polling(sv[0], msg, FLOOR_REP) != 0)
			break;
		lat[i] = now_us() - t0;
	}
	*avg = (now_us() - start) / (double)n;
	close(sv[0]);
	waitpid(pid, &st, 0);
	if (i == n) {
		sort_latencies(lat, n);
		*p50 = lat[n / 2];
		r = 0;
	}
 out:
	free(lat);
	return r;
}

/* Raw and socket in alternating blocks; KEYREF must be the key the signer
 * serves for PURPOSE (SoftHSM is opened by both processes at once). */
static int
bench_compare(const char *conf, const char *ref, const char *path,
    const char *purpose, size_t n, const char *app_id)
{
	struct raw k;
	struct sigc *c = NULL;
	struct buf **payload = NULL;
	uint8_t sig[TH_SIG_MAX];
	double *lat[2] = { NULL, NULL }, total[2] = { 0, 0 }, t0, t;
	double fp50, favg;
	size_t round, i, blk = n / COMPARE_ROUNDS, siglen, done = 0;
	enum th_alg alg;
	int r;

	if ((r = raw_open(conf, ref, &k)) != 0 ||
	    (r = sigc_connect(path, &c)) != 0)
		goto out;
	r = TH_ERR_ALLOC;
	if (blk == 0 || (lat[0] = calloc(n, sizeof(double))) == NULL ||
	    (lat[1] = calloc(n, sizeof(double))) == NULL ||
	    (payload = calloc(blk, sizeof(*payload))) == NULL)
		goto out;
	for (i = 0; i < blk; i++)
		if ((payload[i] = buf_new()) == NULL)
			goto out;
	for (round = 0; round < COMPARE_ROUNDS; round++) {
		for (i = 0; i < blk; i++)
			if ((r = make_payload(payload[i], purpose, app_id,
			    done + i)) != 0)
				goto out;
		for (i = 0; i < blk; i++) {
			t0 = now_us();
			if ((r = raw_sign(&k, i)) != 0)
				goto out;
			t = now_us() - t0;
			lat[0][done + i] = t;
			total[0] += t;
		}
		for (i = 0; i < blk; i++) {
			t0 = now_us();
			if ((r = sigc_sign(c, purpose, buf_ptr(payload[i]),
			    buf_len(payload[i]), &alg, sig, &siglen)) != 0)
				goto out;
			t = now_us() - t0;
			lat[1][done + i] = t;
			total[1] += t;
		}
		done += blk;
	}
	report("raw", ref, lat[0], done, total[0]);
	report("socket", purpose, lat[1], done, total[1]);
	printf("overhead  socket vs raw, interleaved: %.1f%% by rate, %.1f%% "
	    "by p50\n", (total[1] - total[0]) / total[0] * 100,
	    (lat[1][done / 2] - lat[0][done / 2]) / lat[0][done / 2] * 100);
	if (bench_floor(done, &fp50, &favg) == 0)
		printf("floor     bare round trip, 2 processes polling a Unix "
		    "socket: avg %.1f us, p50 %.1f us = %.1f%% of raw by rate, "
		    "%.1f%% by p50\n", favg, fp50, favg / (total[0] / done) *
		    100, fp50 / lat[0][done / 2] * 100);
 out:
	if (r != 0)
		fprintf(stderr, "bench_sign: %s\n", th_errmsg(r));
	for (i = 0; payload != NULL && i < blk; i++)
		buf_free(payload[i]);
	free(payload);
	free(lat[0]);
	free(lat[1]);
	sigc_close(c);
	raw_close(&k);
	return r != 0;
}

int
main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "raw") == 0)
		return bench_raw(argv[2], argv[3], strtoul(argv[4], NULL, 10));
	if ((argc >= 5 && argc <= 7) && strcmp(argv[1], "socket") == 0)
		return bench_socket(argv[2], argv[3], strtoul(argv[4], NULL, 10),
		    argc >= 6 ? argv[5] : "",
		    argc == 7 ? strtoul(argv[6], NULL, 10) : 1);
	if ((argc == 7 || argc == 8) && strcmp(argv[1], "compare") == 0)
		return bench_compare(argv[2], argv[3], argv[4], argv[5],
		    strtoul(argv[6], NULL, 10), argc == 8 ? argv[7] : "");
	fprintf(stderr, "usage: bench_sign raw CONFIG KEYREF N\n"
	    "       bench_sign socket SOCKET PURPOSE N [APP-ID [CONNS]]\n"
	    "       bench_sign compare CONFIG KEYREF SOCKET PURPOSE N "
	    "[APP-ID]\n");
	return 2;
}
