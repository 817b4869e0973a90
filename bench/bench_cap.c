/* Capabilities minted and verified (or redeemed) per second, through the
 * real signer and a real store, with p50/p99 latency of one of each.
 *
 *   bench_cap SIGNER_SOCKET STATE_DIR N [THREADS [verify|redeem]]
 *
 * Installs one chain (a human with an in-memory key: the human's token is
 * not on this path) and then mints N capabilities, each followed by
 * cap_check (verify: parse, signature, cached chain, time, revocation, not
 * yet spent) or cap_redeem (the same and the jti spent in SQLite). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "bench.h"
#include "cap.h"
#include "cert.h"
#include "deleg.h"
#include "err.h"
#include "jwk.h"
#include "typ.h"

#define THREADS_MAX	8

static char dbfile[512];
static const char *sock;
static struct cap_ctx *cap;
static int spend;		/* redeem rather than verify */

static int
sign_local(EVP_PKEY *key, struct buf *tok)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[128], rs[64];
	const uint8_t *p = der;
	size_t derlen = sizeof(der);
	ECDSA_SIG *es = NULL;
	int r = TH_ERR_CRYPTO;

	if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
	    key) != 1 || EVP_DigestSign(md, der, &derlen, buf_ptr(tok),
	    buf_len(tok)) != 1 ||
	    (es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
		goto out;
	BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32);
	r = jws_append_sig(tok, rs, 64);
 out:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return r;
}

static int
install(struct sigc *sc, struct store *st, int64_t now)
{
	struct json_object *claims = NULL, *ops, *policy;
	EVP_PKEY *hk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *root = NULL;
	char kid[JWK_THUMBPRINT_LEN + 1], certhash[JWS_HASH_LEN + 1];
	struct buf *tok = buf_new();
	struct deleg *d = NULL;
	uint8_t sig[TH_SIG_MAX];
	enum th_alg alg;
	size_t siglen;
	int r;

	ops = json_tokener_parse("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"bench/app\"],\"targets\":[\"main\"]}]");
	policy = json_tokener_parse("{\"min_approvals\":1}");
	if ((r = sigc_pubkey(sc, "delegation-root", &alg, &root)) != 0 ||
	    (r = jwk_thumbprint(root, kid)) != 0 ||
	    (r = cert_claims("human:bench", "Bench", "b@example.com", hk, now,
	    now, now + 86400, &claims)) != 0 ||
	    (r = jws_signing_input(tok, TH_ALG_ES256, TYP_HUMAN_CERT, kid,
	    claims)) != 0 ||
	    (r = sigc_sign(sc, "delegation-root", buf_ptr(tok), buf_len(tok),
	    &alg, sig, &siglen)) != 0 ||
	    (r = jws_append_sig(tok, sig, siglen)) != 0)
		goto out;
	jws_hash(buf_ptr(tok), buf_len(tok), certhash);
	if ((r = buf_put_u8(tok, 0)) != 0 ||
	    (r = store_put_token(st, STORE_CERT, certhash,
	    (const char *)buf_ptr(tok), CERT_ISS, "human:bench", NULL,
	    now + 86400)) != 0)
		goto out;
	json_object_put(claims);
	claims = NULL;
	buf_reset(tok);
	if ((r = deleg_claims("human:bench", "agent:bench", certhash, ops,
	    policy, NULL, now, now, now + 3600, &claims)) != 0 ||
	    (r = jwk_thumbprint(hk, kid)) != 0 ||
	    (r = jws_signing_input(tok, TH_ALG_ES256, TYP_DELEGATION, kid,
	    claims)) != 0 || (r = sign_local(hk, tok)) != 0 ||
	    (r = deleg_parse((const char *)buf_ptr(tok), buf_len(tok), &d)) != 0)
		goto out;
	r = store_put_token(st, STORE_DELEG, d->jws->hash, d->jws->token,
	    d->iss, d->sub, d->parent, d->exp);
 out:
	deleg_free(d);
	json_object_put(claims);
	json_object_put(ops);
	json_object_put(policy);
	buf_free(tok);
	EVP_PKEY_free(root);
	EVP_PKEY_free(hk);
	return r;
}

struct worker {
	size_t	 first, n;
	double	*lat;
	double	 mint_us, check_us;
	int	 r;
};

static void *
run(void *arg)
{
	static const struct cap_op op = { "github.merge", "bench/app", 1,
	    "main", "" };
	struct worker *w = arg;
	struct cap_redeemed red;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct buf *tok = buf_new();
	char desc[256];
	int64_t now;
	size_t i;
	double t0, t1;

	/* The capability context is shared (as in the broker); each thread
	 * has its own signer connection and store connection. */
	if ((w->r = store_open(dbfile, &st)) != 0 ||
	    (w->r = sigc_connect(sock, &sc)) != 0)
		goto out;
	for (i = 0; i < w->n; i++) {
		now = (int64_t)time(NULL);
		buf_reset(tok);
		t0 = now_us();
		if ((w->r = cap_mint(cap, sc, st, "agent:bench", &op, now,
		    tok, desc, sizeof(desc))) != 0)
			goto out;
		t1 = now_us();
		if ((w->r = (spend ? cap_redeem : cap_check)(cap, st,
		    (const char *)buf_ptr(tok), buf_len(tok), now, &red)) != 0)
			goto out;
		cap_redeemed_release(cap, &red);
		w->lat[w->first + i] = now_us() - t0;
		w->mint_us += t1 - t0;
		w->check_us += now_us() - t1;
	}
 out:
	if (w->r != 0)
		fprintf(stderr, "bench_cap: %s\n", th_errmsg(w->r));
	buf_free(tok);
	sigc_close(sc);
	store_close(st);
	return NULL;
}

int
main(int argc, char **argv)
{
	struct worker w[THREADS_MAX];
	pthread_t th[THREADS_MAX];
	struct store *st = NULL;
	struct sigc *sc = NULL;
	size_t n, threads, i, total;
	double *lat, start, el;
	int r = 0;

	if (argc < 4 || argc > 6 || (argc == 6 && strcmp(argv[5], "verify")
	    != 0 && strcmp(argv[5], "redeem") != 0)) {
		fprintf(stderr, "usage: bench_cap SIGNER_SOCKET STATE_DIR N "
		    "[THREADS [verify|redeem]]\n");
		return 2;
	}
	spend = argc == 6 && strcmp(argv[5], "redeem") == 0;
	sock = argv[1];
	snprintf(dbfile, sizeof(dbfile), "%s/threshold.db", argv[2]);
	n = strtoul(argv[3], NULL, 10);
	threads = argc >= 5 ? strtoul(argv[4], NULL, 10) : 1;
	if (n == 0 || threads == 0 || threads > THREADS_MAX ||
	    (lat = calloc(n, sizeof(*lat))) == NULL)
		return 2;
	if ((r = store_open(dbfile, &st)) != 0 ||
	    (r = sigc_connect(sock, &sc)) != 0 ||
	    (r = cap_ctx_new(sc, store_instance(st), CAP_TTL_DEFAULT, &cap)) != 0 ||
	    (r = install(sc, st, (int64_t)time(NULL))) != 0) {
		fprintf(stderr, "bench_cap: %s\n", th_errmsg(r));
		return 1;
	}
	start = now_us();
	for (i = 0; i < threads; i++) {
		w[i] = (struct worker){ .first = i * (n / threads),
		    .n = n / threads, .lat = lat };
		pthread_create(&th[i], NULL, run, &w[i]);
	}
	for (i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		r |= w[i].r;
	}
	el = now_us() - start;
	total = threads * (n / threads);
	if (r == 0) {
		sort_latencies(lat, total);
		printf("%-6s mint+%-6s, %zu thread(s)%-17s %9.0f ops/s   p50 "
		    "%7.0f us   p99 %7.0f us   (mint %.0f us, %s %.0f us)\n",
		    "cap", spend ? "redeem" : "verify", threads, "",
		    total / (el / 1e6), lat[total / 2], lat[total * 99 / 100],
		    w[0].mint_us / w[0].n, spend ? "redeem" : "verify",
		    w[0].check_us / w[0].n);
	}
	cap_ctx_free(cap);
	sigc_close(sc);
	store_close(st);
	free(lat);
	return r != 0;
}
