/* Capabilities against the real signer and a real store, with explicit
 * clocks: the edges of the validity window, N threads redeeming one
 * capability, tampering, expiring links and the chain cache.
 *
 *   test_cap SIGNER_SOCKET STATE_DIR
 *
 * The human here has an in-memory key: the delegation being signed on a
 * PKCS#11 token is covered by tests/integration/tokens.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <sqlite3.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "cap.h"
#include "cert.h"
#include "chain.h"
#include "deleg.h"
#include "err.h"
#include "jwk.h"
#include "sigclient.h"
#include "store.h"
#include "typ.h"
#include "../unit/tsign.h"

#define THREADS 16

static const char *sock, *dbpath;
static char dbfile[512];
static struct sigc *sc;
static struct store *st;
static struct cap_ctx *cap;
static int64_t T0;

/* Certifies human (by the root in the signer) with a fresh key *hk. */
static void
install_cert(const char *human, EVP_PKEY **hk,
    char certhash[JWS_HASH_LEN + 1])
{
	struct json_object *claims;
	EVP_PKEY *root;
	char kid[JWK_THUMBPRINT_LEN + 1];
	struct buf *tok = buf_new();
	uint8_t sig[TH_SIG_MAX];
	enum th_alg alg;
	size_t siglen;

	*hk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_int_equal(sigc_pubkey(sc, "delegation-root", &alg, &root), 0);
	assert_int_equal(jwk_thumbprint(root, kid), 0);
	assert_int_equal(cert_claims(human, "Tess", "tess@example.com", *hk,
	    T0 - 100, T0 - 100, T0 + 86400, &claims), 0);
	assert_int_equal(jws_signing_input(tok, TH_ALG_ES256, TYP_HUMAN_CERT,
	    kid, claims), 0);
	assert_int_equal(sigc_sign(sc, "delegation-root", buf_ptr(tok),
	    buf_len(tok), &alg, sig, &siglen), 0);
	assert_int_equal(jws_append_sig(tok, sig, siglen), 0);
	jws_hash(buf_ptr(tok), buf_len(tok), certhash);
	assert_int_equal(buf_put_u8(tok, 0), 0);
	assert_int_equal(store_put_token(st, STORE_CERT, certhash,
	    (const char *)buf_ptr(tok), CERT_ISS, human, NULL, T0 + 86400), 0);
	json_object_put(claims);
	buf_free(tok);
	EVP_PKEY_free(root);
}

/* human's delegation of github.merge on acme/app@main to agent, valid
 * until exp, signed with hk under certhash. */
static void
install_deleg(const char *human, EVP_PKEY *hk, const char *certhash,
    const char *agent, int64_t exp)
{
	struct json_object *claims, *ops, *policy;
	char kid[JWK_THUMBPRINT_LEN + 1];
	struct buf *tok = buf_new();
	struct chain *ch;
	struct deleg *d;

	ops = json_tokener_parse("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"acme/app\"],\"targets\":[\"main\"]}]");
	policy = json_tokener_parse("{\"min_approvals\":1}");
	assert_int_equal(deleg_claims(human, agent, certhash, ops, policy,
	    NULL, T0 - 100, T0 - 100, exp, &claims), 0);
	assert_int_equal(jwk_thumbprint(hk, kid), 0);
	assert_int_equal(jws_signing_input(tok, TH_ALG_ES256, TYP_DELEGATION,
	    kid, claims), 0);
	append_sig(tok, hk);
	assert_int_equal(chain_verify_new(cap_chains(cap), st,
	    (const char *)buf_ptr(tok), buf_len(tok), &ch), 0);
	assert_int_equal(deleg_parse((const char *)buf_ptr(tok), buf_len(tok),
	    &d), 0);
	assert_int_equal(store_put_token(st, STORE_DELEG, d->jws->hash,
	    d->jws->token, human, agent, certhash, exp), 0);
	deleg_free(d);
	chain_free(ch);
	json_object_put(claims);
	json_object_put(ops);
	json_object_put(policy);
	buf_free(tok);
}

/* Installs human (certified by the root in the signer) and her delegation
 * of github.merge on acme/app@main to agent, valid until exp. */
static void
install_chain(const char *human, const char *agent, int64_t exp)
{
	char certhash[JWS_HASH_LEN + 1];
	EVP_PKEY *hk;

	install_cert(human, &hk, certhash);
	install_deleg(human, hk, certhash, agent, exp);
	EVP_PKEY_free(hk);
}

/* human's delegations to n agents, prefix0 .. prefix(n-1). */
static void
install_delegs(const char *human, const char *prefix, int n, int64_t exp)
{
	char certhash[JWS_HASH_LEN + 1], agent[64];
	EVP_PKEY *hk;
	int i;

	install_cert(human, &hk, certhash);
	for (i = 0; i < n; i++) {
		snprintf(agent, sizeof(agent), "%s%d", prefix, i);
		install_deleg(human, hk, certhash, agent, exp);
	}
	EVP_PKEY_free(hk);
}

static const struct cap_op merge = { "github.merge", "acme/app", 42, "main",
    "" };

static void
mint(const char *agent, int64_t now, struct buf *tok)
{
	char desc[256];

	buf_reset(tok);
	assert_int_equal(cap_mint(cap, sc, st, agent, &merge, now, tok, desc,
	    sizeof(desc)), 0);
}

static int
redeem(struct buf *tok, int64_t now)
{
	struct cap_redeemed red;
	int r;

	r = cap_redeem(cap, st, (const char *)buf_ptr(tok), buf_len(tok),
	    now, &red);
	cap_redeemed_release(cap, &red);
	return r;
}

static void
test_window_edges(void **state)
{
	struct buf *tok = buf_new();
	int64_t t = T0;

	(void)state;
	/* iat may lie CAP_SKEW seconds ahead of the redeemer's clock. */
	mint("agent:t1", t, tok);
	assert_int_equal(redeem(tok, t - CAP_SKEW), 0);
	mint("agent:t1", t, tok);
	assert_int_equal(redeem(tok, t - CAP_SKEW - 1), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED), "future"));
	/* Valid through exp - 1, dead at exp. */
	mint("agent:t1", t, tok);
	assert_int_equal(redeem(tok, t + CAP_TTL_DEFAULT - 1), 0);
	mint("agent:t1", t, tok);
	assert_int_equal(redeem(tok, t + CAP_TTL_DEFAULT), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED), "expired"));
	buf_free(tok);
}

/* A broker refuses what was minted before it started (the store may have
 * lost a spend to a power loss). */
static void
test_not_before(void **state)
{
	struct buf *tok = buf_new();

	(void)state;
	mint("agent:t1", T0, tok);
	cap_ctx_set_not_before(cap, T0 + 1);
	assert_int_equal(redeem(tok, T0 + 1), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED),
	    "minted before this broker started"));
	cap_ctx_set_not_before(cap, T0);
	assert_int_equal(redeem(tok, T0 + 1), 0);
	cap_ctx_set_not_before(cap, 0);
	buf_free(tok);
}

struct racer {
	struct buf	*tok;
	pthread_barrier_t *go;
	int		 r;
	char		 msg[256];
};

static void *
race(void *arg)
{
	struct racer *rc = arg;
	struct cap_redeemed red;
	struct store *mine;

	/* One connection per thread, as the store requires. */
	if (store_open(dbfile, &mine) != 0) {
		rc->r = -100;
		return NULL;
	}
	pthread_barrier_wait(rc->go);
	rc->r = cap_redeem(cap, mine, (const char *)buf_ptr(rc->tok),
	    buf_len(rc->tok), T0 + 1, &red);
	snprintf(rc->msg, sizeof(rc->msg), "%s", th_errmsg(rc->r));
	cap_redeemed_release(cap, &red);
	store_close(mine);
	return NULL;
}

static void
test_threads_redeem_once(void **state)
{
	struct racer rc[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t go;
	struct buf *tok = buf_new();
	int i, wins = 0;

	(void)state;
	mint("agent:t1", T0, tok);
	pthread_barrier_init(&go, NULL, THREADS);
	for (i = 0; i < THREADS; i++) {
		rc[i] = (struct racer){ .tok = tok, .go = &go };
		assert_int_equal(pthread_create(&th[i], NULL, race, &rc[i]), 0);
	}
	for (i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		if (rc[i].r == 0)
			wins++;
		else {
			assert_int_equal(rc[i].r, TH_ERR_DENIED);
			assert_non_null(strstr(rc[i].msg, "replayed"));
		}
	}
	assert_int_equal(wins, 1);
	pthread_barrier_destroy(&go);
	buf_free(tok);
}

static void
test_tampering(void **state)
{
	struct buf *tok = buf_new(), *bad = buf_new();
	uint8_t *p;
	size_t n;

	(void)state;
	mint("agent:t1", T0, tok);
	n = buf_len(tok);
	/* A flipped signature character. */
	assert_int_equal(buf_put(bad, buf_ptr(tok), n), 0);
	p = (uint8_t *)buf_ptr(bad);
	p[n - 5] = p[n - 5] == 'A' ? 'B' : 'A';
	assert_int_equal(redeem(bad, T0), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED), "signature"));
	/* Truncated. */
	buf_reset(bad);
	assert_int_equal(buf_put(bad, buf_ptr(tok), n - 10), 0);
	assert_int_equal(redeem(bad, T0), TH_ERR_DENIED);
	/* alg none with the signature stripped. */
	buf_reset(bad);
	assert_int_equal(buf_put(bad, "eyJhbGciOiJub25lIiwidHlwIjoidGhyZXNob2xkLWNhcGFiaWxpdHkrand0In0.e30.", 67), 0);
	assert_int_equal(redeem(bad, T0), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED), "malformed"));
	/* The genuine one still works once. */
	assert_int_equal(redeem(tok, T0), 0);
	buf_free(tok);
	buf_free(bad);
}

static void
test_expiring_link(void **state)
{
	struct buf *tok = buf_new();

	(void)state;
	install_chain("human:uma", "agent:t2", T0 + 5);
	mint("agent:t2", T0, tok);
	assert_int_equal(redeem(tok, T0 + 6), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED), "link 2 (agent:t2) "
	    "expired"));
	buf_free(tok);
}

static int
spent_rows(void)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	int n = -1;

	assert_int_equal(sqlite3_open(dbfile, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM spent",
	    -1, &q, NULL), SQLITE_OK);
	if (sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return n;
}

/* Spent ids are kept while their capability could still be presented,
 * and pruned once it has expired. */
static void
test_spent_pruned(void **state)
{
	struct buf *tok = buf_new();

	(void)state;
	mint("agent:t1", T0, tok);
	assert_int_equal(redeem(tok, T0), 0);
	assert_true(spent_rows() >= 1);
	/* A redemption later prunes everything that expired (minted within
	 * the signer's +60 s of its clock). */
	mint("agent:t1", T0 + 50, tok);
	assert_int_equal(redeem(tok, T0 + 50), 0);
	assert_int_equal(spent_rows(), 1);
	buf_free(tok);
}

static void
test_chain_cached(void **state)
{
	char leaves[1][JWS_HASH_LEN + 1];
	const struct chain *a, *b;
	size_t n;

	(void)state;
	assert_int_equal(store_find_leaves(st, "agent:t1", T0, leaves, 1, &n),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(chain_get(cap_chains(cap), st, leaves[0], &a), 0);
	assert_int_equal(chain_get(cap_chains(cap), st, leaves[0], &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(a->n, 2);
	assert_string_equal(a->names[0], "human:tess");
	chain_put(cap_chains(cap), a);
	chain_put(cap_chains(cap), b);
}

/* Past CHAIN_CACHE_MAX delegations seen, minting goes on: a chain nobody
 * holds makes room (the cache used to fill for good, every new delegation
 * then refused until a restart).  One held meanwhile stays, the same. */
static void
test_chain_cache_turns_over(void **state)
{
	char leaves[1][JWS_HASH_LEN + 1], agent[64];
	const struct chain *held, *again;
	struct buf *tok = buf_new();
	struct cap_redeemed red;
	size_t n;
	int i;

	(void)state;
	install_chain("human:uma", "agent:keep", T0 + 3600);
	mint("agent:keep", T0, tok);
	assert_int_equal(cap_check(cap, st, (const char *)buf_ptr(tok),
	    buf_len(tok), T0, &red), 0);
	held = red.chain;
	install_delegs("human:uma", "agent:fill-", CHAIN_CACHE_MAX + 50,
	    T0 + 3600);
	for (i = 0; i < CHAIN_CACHE_MAX + 50; i++) {
		snprintf(agent, sizeof(agent), "agent:fill-%d", i);
		mint(agent, T0, tok);
	}
	/* Still the chain redemption holds, intact; got again, the same. */
	assert_string_equal(held->names[1], "agent:keep");
	assert_int_equal(store_find_leaves(st, "agent:keep", T0, leaves, 1,
	    &n), 0);
	assert_int_equal(chain_get(cap_chains(cap), st, leaves[0], &again), 0);
	assert_ptr_equal(again, held);
	chain_put(cap_chains(cap), again);
	cap_redeemed_release(cap, &red);
	assert_null(red.chain);
	buf_free(tok);
}

/* A revoked link is reported as that link, at mint and at redemption; a
 * link no longer installed counts as revoked; one read checks a chain. */
static void
test_revoked_links(void **state)
{
	char leaves[1][JWS_HASH_LEN + 1];
	char hashes[STORE_LINKS_MAX + 1][JWS_HASH_LEN + 1];
	const struct chain *c;
	struct buf *tok = buf_new();
	size_t n, i, which = 99;
	char desc[256];

	(void)state;
	install_chain("human:vic", "agent:t4", T0 + 3600);
	assert_int_equal(store_find_leaves(st, "agent:t4", T0, leaves, 1, &n),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(chain_get(cap_chains(cap), st, leaves[0], &c), 0);
	assert_int_equal(c->n, 2);
	for (i = 0; i < STORE_LINKS_MAX + 1; i++)
		snprintf(hashes[i], sizeof(hashes[i]), "%s", c->hashes[i % 2]);
	assert_int_equal(store_check_revoked(st, hashes, 2, &which), 0);
	assert_int_equal(store_check_revoked(st, hashes, STORE_LINKS_MAX,
	    &which), 0);
	assert_int_equal(store_check_revoked(st, hashes, STORE_LINKS_MAX + 1,
	    &which), TH_ERR_INVALID);
	/* Not installed: the third of three. */
	snprintf(hashes[2], sizeof(hashes[2]), "%s", "no-such-token");
	assert_int_equal(store_check_revoked(st, hashes, 3, &which),
	    TH_ERR_DENIED);
	assert_int_equal(which, 2);

	mint("agent:t4", T0, tok);
	assert_int_equal(store_revoke(st, c->hashes[1]), 0);
	assert_int_equal(store_check_revoked(st, hashes, 2, &which),
	    TH_ERR_DENIED);
	assert_int_equal(which, 1);
	assert_int_equal(redeem(tok, T0), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED),
	    "revoked: link 2 (agent:t4)"));
	assert_int_equal(store_revoke(st, c->hashes[0]), 0);
	assert_int_equal(store_check_revoked(st, hashes, 2, &which),
	    TH_ERR_DENIED);
	assert_int_equal(which, 0);
	buf_reset(tok);
	assert_int_equal(cap_mint(cap, sc, st, "agent:t4", &merge, T0, tok,
	    desc, sizeof(desc)), TH_ERR_DENIED);
	assert_non_null(strstr(th_errmsg(TH_ERR_DENIED),
	    "revoked: link 1 (human:vic)"));
	chain_put(cap_chains(cap), c);
	buf_free(tok);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_edges),
		cmocka_unit_test(test_not_before),
		cmocka_unit_test(test_threads_redeem_once),
		cmocka_unit_test(test_chain_cache_turns_over),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_expiring_link),
		cmocka_unit_test(test_chain_cached),
		cmocka_unit_test(test_spent_pruned),
		cmocka_unit_test(test_revoked_links),
	};
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: test_cap SIGNER_SOCKET STATE_DIR\n");
		return 2;
	}
	sock = argv[1];
	dbpath = argv[2];
	snprintf(dbfile, sizeof(dbfile), "%s/threshold.db", dbpath);
	T0 = (int64_t)time(NULL);
	if (sigc_connect(sock, &sc) != 0 || store_open(dbfile, &st) != 0 ||
	    cap_ctx_new(sc, store_instance(st), CAP_TTL_DEFAULT, &cap) != 0) {
		fprintf(stderr, "test_cap: %s\n", th_errmsg(TH_ERR_IO));
		return 1;
	}
	install_chain("human:tess", "agent:t1", T0 + 3600);
	r = cmocka_run_group_tests_name("cap", tests, NULL, NULL);
	cap_ctx_free(cap);
	store_close(st);
	sigc_close(sc);
	return r;
}
