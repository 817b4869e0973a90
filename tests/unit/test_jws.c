/* JWS and JWK: what a verifier must refuse (alg none, HMAC with a public
 * key as secret, alg/key mismatch, malformed base64url, duplicate members,
 * oversized tokens, extra header members), a byte-flip mutation of golden
 * tokens, and RFC 7638's thumbprint test vector. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "b64url.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "jws.h"
#include "vpool.h"
#include "tsign.h"

static EVP_PKEY *ec, *rsa;

/* A token from raw header and claims text, signed by key. */
static struct buf *
make(const char *hdr, const char *claims, EVP_PKEY *key)
{
	struct buf *b = buf_new();

	assert_int_equal(b64url_encode(b, (const uint8_t *)hdr, strlen(hdr)),
	    0);
	assert_int_equal(buf_put_u8(b, '.'), 0);
	assert_int_equal(b64url_encode(b, (const uint8_t *)claims,
	    strlen(claims)), 0);
	append_sig(b, key);
	return b;
}

/* 0 if the token parses and verifies with key. */
static int
check(struct buf *tok, EVP_PKEY *key)
{
	struct jws *j = NULL;
	int r;

	if ((r = jws_parse((const char *)buf_ptr(tok), buf_len(tok), &j)) == 0)
		r = jws_verify(j, key);
	jws_free(j);
	return r;
}

static void
test_roundtrip(void **state)
{
	struct json_object *claims = json_tokener_parse("{\"a\":1}");
	struct buf *tok = buf_new();
	struct jws *j;

	(void)state;
	assert_int_equal(jws_signing_input(tok, TH_ALG_ES256, "t+jwt", "k1",
	    claims), 0);
	append_sig(tok, ec);
	assert_int_equal(jws_parse((const char *)buf_ptr(tok), buf_len(tok),
	    &j), 0);
	assert_int_equal(jws_verify(j, ec), 0);
	assert_string_equal(j->typ, "t+jwt");
	assert_string_equal(j->kid, "k1");
	assert_int_equal(strlen(j->hash), JWS_HASH_LEN);
	jws_free(j);
	buf_free(tok);
	tok = make("{\"alg\":\"RS256\",\"typ\":\"x\"}", "{}", rsa);
	assert_int_equal(check(tok, rsa), 0);
	buf_free(tok);
	json_object_put(claims);
}

/* One verifier for many tokens: a failure (bad signature, other key, other
 * alg) leaves it able to verify the next good one, ES256 and RS256. */
static void
test_verifier_reused(void **state)
{
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	struct buf *good = make("{\"alg\":\"ES256\"}", "{\"n\":1}", ec);
	struct buf *wrong = make("{\"alg\":\"ES256\"}", "{\"n\":1}", other);
	struct buf *rs = make("{\"alg\":\"RS256\"}", "{\"n\":2}", rsa);
	struct jws_verifier *v, *vr;
	struct jws *jg, *jw, *jr, *jt;
	int i;

	(void)state;
	assert_non_null(other);
	assert_int_equal(jws_parse((const char *)buf_ptr(good), buf_len(good),
	    &jg), 0);
	assert_int_equal(jws_parse((const char *)buf_ptr(wrong),
	    buf_len(wrong), &jw), 0);
	assert_int_equal(jws_parse((const char *)buf_ptr(rs), buf_len(rs),
	    &jr), 0);
	/* The good token's signature on other claims. */
	assert_int_equal(jws_parse((const char *)buf_ptr(good), buf_len(good),
	    &jt), 0);
	jt->token[jt->input_len - 2] ^= 1;
	assert_int_equal(jws_verifier_new(ec, &v), 0);
	assert_int_equal(jws_verifier_new(rsa, &vr), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(jws_verify_with(v, jg), 0);
		assert_int_equal(jws_verify_with(v, jw), TH_ERR_CRYPTO);
		assert_int_equal(jws_verify_with(v, jt), TH_ERR_CRYPTO);
		assert_int_equal(jws_verify_with(v, jr), TH_ERR_CRYPTO);
		assert_int_equal(jws_verify_with(vr, jr), 0);
		assert_int_equal(jws_verify_with(vr, jg), TH_ERR_CRYPTO);
	}
	/* A verification that succeeds leaves the thread's last error as it
	 * was (a caller may be about to report it). */
	th_fail(TH_ERR_IO, "earlier");
	assert_int_equal(jws_verify(jg, ec), 0);
	assert_int_equal(jws_verify(jr, rsa), 0);
	assert_string_equal(th_errmsg(TH_ERR_IO), "earlier");
	assert_int_equal(jws_verify(jg, other), TH_ERR_CRYPTO);
	jws_verifier_free(v);
	jws_verifier_free(vr);
	jws_free(jg);
	jws_free(jw);
	jws_free(jr);
	jws_free(jt);
	buf_free(good);
	buf_free(wrong);
	buf_free(rs);
	EVP_PKEY_free(other);
}

static void
test_refusals(void **state)
{
	const char *claims = "{\"sub\":\"agent:x\"}";
	uint8_t mac[32];
	unsigned maclen;
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem;
	long pemlen;
	struct buf *t;

	(void)state;
	/* alg none, with and without a signature part. */
	t = make("{\"alg\":\"none\",\"typ\":\"x\"}", claims, ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	/* HS256 keyed with the verifier's public key PEM. */
	PEM_write_bio_PUBKEY(bio, ec);
	pemlen = BIO_get_mem_data(bio, &pem);
	t = buf_new();
	b64url_encode(t, (const uint8_t *)"{\"alg\":\"HS256\",\"typ\":\"x\"}",
	    26);
	buf_put_u8(t, '.');
	b64url_encode(t, (const uint8_t *)claims, strlen(claims));
	HMAC(EVP_sha256(), pem, (int)pemlen, buf_ptr(t), buf_len(t), mac,
	    &maclen);
	jws_append_sig(t, mac, maclen);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	BIO_free(bio);
	/* ES256 header on an RSA signature, RS256 on an EC key. */
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", claims, rsa);
	assert_int_equal(check(t, rsa), TH_ERR_CRYPTO);
	assert_non_null(strstr(th_errmsg(TH_ERR_CRYPTO), "does not match"));
	buf_free(t);
	t = make("{\"alg\":\"RS256\",\"typ\":\"x\"}", claims, ec);
	assert_int_equal(check(t, ec), TH_ERR_CRYPTO);
	buf_free(t);
	/* Right alg, wrong key. */
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", claims, ec);
	{
		EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		assert_int_equal(check(t, other), TH_ERR_CRYPTO);
		EVP_PKEY_free(other);
	}
	buf_free(t);
	/* Duplicate members in header or claims, extra header members. */
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\",\"typ\":\"y\"}", claims, ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\"}",
	    "{\"sub\":\"a\",\"sub\":\"b\"}", ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\",\"crit\":[\"exp\"]}", claims,
	    ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\",\"jku\":\"https://e\"}",
	    claims, ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	/* A typ present is a name: "" would pass where typ may be absent
	 * (the github-app key's JWTs; found in review). */
	t = make("{\"alg\":\"ES256\",\"typ\":\"\"}", claims, ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
	t = make("{\"alg\":\"ES256\"}", claims, ec);
	assert_int_equal(check(t, ec), 0);
	buf_free(t);
	/* Claims that are not an object. */
	t = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", "[1,2]", ec);
	assert_int_equal(check(t, ec), TH_ERR_INVALID);
	buf_free(t);
}

static void
test_malformed_encoding(void **state)
{
	struct buf *good, *t;
	const char *p;
	size_t n;
	char *s;

	(void)state;
	good = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", "{\"a\":1}", ec);
	p = (const char *)buf_ptr(good);
	n = buf_len(good);
	s = malloc(n + 8);
	/* Padding, whitespace, a foreign character, a fourth part. */
	snprintf(s, n + 8, "%.*s==", (int)n, p);
	assert_int_equal(jws_parse(s, strlen(s), &(struct jws *){0}),
	    TH_ERR_INVALID);
	snprintf(s, n + 8, " %.*s", (int)n, p);
	assert_int_equal(jws_parse(s, strlen(s), &(struct jws *){0}),
	    TH_ERR_INVALID);
	snprintf(s, n + 8, "%.*s.e30", (int)n, p);
	assert_int_equal(jws_parse(s, strlen(s), &(struct jws *){0}),
	    TH_ERR_INVALID);
	memcpy(s, p, n);
	s[n] = '\0';
	s[3] = '+';
	assert_int_equal(jws_parse(s, n, &(struct jws *){0}), TH_ERR_INVALID);
	/* Non-canonical last character of the 64-byte signature: its 86th
	 * character carries 4 unused bits, which must be zero; setting one
	 * would give a second encoding of the same signature. */
	{
		static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
		    "klmnopqrstuvwxyz0123456789-_";
		int v = (int)(strchr(al, p[n - 1]) - al);

		assert_int_equal(v & 0xf, 0);
		memcpy(s, p, n);
		s[n - 1] = al[v | 1];
		assert_int_equal(jws_parse(s, n, &(struct jws *){0}),
		    TH_ERR_INVALID);
	}
	/* Embedded NUL. */
	memcpy(s, p, n);
	s[5] = '\0';
	assert_int_equal(jws_parse(s, n, &(struct jws *){0}), TH_ERR_INVALID);
	free(s);
	/* Oversized. */
	t = buf_new();
	{
		char *big = malloc(JWS_TOKEN_MAX + 100);

		memset(big, 'a', JWS_TOKEN_MAX + 100);
		big[10] = '.';
		big[20] = '.';
		assert_int_equal(jws_parse(big, JWS_TOKEN_MAX + 1,
		    &(struct jws *){0}), TH_ERR_TOO_LONG);
		free(big);
	}
	buf_free(t);
	buf_free(good);
}

/* Every single-byte change to a valid token must fail verification. */
static void
test_byte_mutations(void **state)
{
	struct buf *good = make("{\"alg\":\"ES256\",\"typ\":\"x\"}",
	    "{\"op\":{\"repo\":\"acme/a\",\"pr\":1}}", ec);
	size_t n = buf_len(good), i;
	struct buf *t;
	uint8_t *p;
	const char repl[] = { 'A', 'z', '-', '.', '0' };
	size_t k;

	(void)state;
	for (i = 0; i < n; i++) {
		for (k = 0; k < sizeof(repl); k++) {
			if (buf_ptr(good)[i] == repl[k])
				continue;
			t = buf_new();
			buf_put(t, buf_ptr(good), n);
			p = (uint8_t *)buf_ptr(t);
			p[i] = (uint8_t)repl[k];
			assert_int_not_equal(check(t, ec), 0);
			buf_free(t);
		}
	}
	buf_free(good);
}

/* The high-s boundary: n = 2 * floor(n / 2) + 1, so s = floor(n / 2) is
 * low and stays, and s = floor(n / 2) + 1 is high and becomes n - s, which
 * is floor(n / 2). */
static void
test_low_s_boundary(void **state)
{
	static const uint8_t half[32] = {
		0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00,
		0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42,
		0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8
	};
	uint8_t sig[64];

	(void)state;
	memset(sig, 0x11, 32);
	memcpy(sig + 32, half, 32);
	assert_int_equal(jws_es256_low_s(sig), 0);
	assert_memory_equal(sig + 32, half, 32);
	sig[63]++;
	assert_int_equal(jws_es256_low_s(sig), 0);
	assert_memory_equal(sig + 32, half, 32);
}

/* (r, n - s) verifies as well as (r, s) mathematically; Threshold accepts
 * only the low-S form, so a token has a single hash. */
static void
test_high_s_refused(void **state)
{
	static const uint8_t order[32] = {
		0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
		0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
	};
	struct buf *good = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", "{}",
	    ec), *sig = buf_new(), *t = buf_new();
	const char *p = (const char *)buf_ptr(good);
	const char *dot = memrchr(p, '.', buf_len(good));
	BIGNUM *n = BN_bin2bn(order, 32, NULL), *s;
	uint8_t *rs;

	(void)state;
	assert_int_equal(check(good, ec), 0);
	assert_int_equal(b64url_decode(sig, dot + 1,
	    buf_len(good) - (size_t)(dot + 1 - p)), 0);
	rs = (uint8_t *)buf_ptr(sig);
	s = BN_bin2bn(rs + 32, 32, NULL);
	assert_true(BN_cmp(s, BN_value_one()) > 0);
	BN_sub(s, n, s);
	BN_bn2binpad(s, rs + 32, 32);
	assert_int_equal(buf_put(t, p, (size_t)(dot - p) + 1), 0);
	assert_int_equal(b64url_encode(t, rs, 64), 0);
	assert_int_equal(check(t, ec), TH_ERR_CRYPTO);
	assert_non_null(strstr(th_errmsg(TH_ERR_CRYPTO), "high s"));
	BN_free(n);
	BN_free(s);
	buf_free(good);
	buf_free(sig);
	buf_free(t);
}

static void
test_rfc7638_thumbprint(void **state)
{
	/* RFC 7638, section 3.1. */
	struct json_object *jwk = json_tokener_parse("{\"kty\":\"RSA\",\"n\":"
	    "\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86z"
	    "wu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY"
	    "4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaS"
	    "qzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
	    "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU"
	    "8awapJzKnqDKgw\",\"e\":\"AQAB\"}");
	char tp[JWK_THUMBPRINT_LEN + 1];
	EVP_PKEY *k;

	(void)state;
	assert_int_equal(jwk_to_pkey(jwk, &k), 0);
	assert_int_equal(jwk_thumbprint(k, tp), 0);
	assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	EVP_PKEY_free(k);
	json_object_put(jwk);
}

static void
test_jwk_strict(void **state)
{
	struct json_object *j;
	EVP_PKEY *k;

	(void)state;
	/* Round trip. */
	assert_int_equal(jwk_from_pkey(ec, &j), 0);
	assert_int_equal(jwk_to_pkey(j, &k), 0);
	assert_int_equal(EVP_PKEY_eq(k, ec), 1);
	EVP_PKEY_free(k);
	/* A point off the curve. */
	json_object_object_add(j, "y", json_object_new_string(
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"));
	assert_int_equal(jwk_to_pkey(j, &k), TH_ERR_INVALID);
	json_object_put(j);
	/* An extra member ("d" would be a private key!). */
	assert_int_equal(jwk_from_pkey(ec, &j), 0);
	json_object_object_add(j, "d", json_object_new_string("AAAA"));
	assert_int_equal(jwk_to_pkey(j, &k), TH_ERR_INVALID);
	json_object_put(j);
	/* Another curve. */
	j = json_tokener_parse("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\","
	    "\"y\":\"AA\"}");
	assert_int_equal(jwk_to_pkey(j, &k), TH_ERR_INVALID);
	json_object_put(j);
	/* A short RSA modulus. */
	j = json_tokener_parse("{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}");
	assert_int_equal(jwk_to_pkey(j, &k), TH_ERR_INVALID);
	json_object_put(j);
}

static int
setup(void **state)
{
	(void)state;
	ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	return ec == NULL || rsa == NULL;
}

static int
teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
	return 0;
}

/* audit/vpool: verdicts in submission order, right for each token, with
 * more tokens than the queue holds (the caller collects when it is full). */
static void
test_vpool(void **state)
{
	enum { N = 3000 };
	struct jws **js = calloc(N, sizeof(*js));
	struct vpool *p = NULL;
	struct buf *t;
	uint64_t tag, next = 0;
	char claims[64];
	int i, ok, r, full = 0;

	(void)state;
	assert_non_null(js);
	for (i = 0; i < N; i++) {
		snprintf(claims, sizeof(claims), "{\"n\":%d}", i);
		t = make("{\"alg\":\"ES256\",\"typ\":\"x\"}", claims, ec);
		if (i % 7 == 0) {	/* one character of the signature */
			uint8_t *c = (uint8_t *)buf_ptr(t) + buf_len(t) - 10;

			*c = *c == 'A' ? 'B' : 'A';
		}
		assert_int_equal(jws_parse((const char *)buf_ptr(t),
		    buf_len(t), &js[i]), 0);
		buf_free(t);
	}
	assert_int_equal(vpool_new(ec, 2, &p), 0);
	for (i = 0; i < N; i++) {
		while ((r = vpool_submit(p, (uint64_t)i, js[i])) ==
		    TH_ERR_TOO_LONG) {
			full = 1;
			assert_true(vpool_collect(p, 1, &tag, &ok));
			assert_int_equal(tag, next);
			assert_int_equal(ok, next % 7 != 0);
			next++;
		}
		assert_int_equal(r, 0);
	}
	while (vpool_collect(p, 1, &tag, &ok)) {
		assert_int_equal(tag, next);
		assert_int_equal(ok, next % 7 != 0);
		next++;
	}
	assert_int_equal(next, N);
	assert_true(full);
	vpool_free(p);
	/* Fewer jobs than a batch: no worker has been woken for them, and
	 * waiting for the oldest must start them (a hang is a failure: the
	 * alarm kills the test). */
	alarm(60);
	assert_int_equal(vpool_new(ec, 2, &p), 0);
	usleep(200000);		/* the workers are asleep, waiting for work */
	for (i = 0; i < VPOOL_BATCH - 1; i++)
		assert_int_equal(vpool_submit(p, (uint64_t)i, js[i]), 0);
	for (i = 0; i < VPOOL_BATCH - 1; i++) {
		assert_true(vpool_collect(p, 1, &tag, &ok));
		assert_int_equal(tag, (uint64_t)i);
		assert_int_equal(ok, i % 7 != 0);
	}
	assert_false(vpool_collect(p, 1, &tag, &ok));
	alarm(0);
	vpool_free(p);
	for (i = 0; i < N; i++)
		jws_free(js[i]);
	free(js);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_verifier_reused),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_malformed_encoding),
		cmocka_unit_test(test_byte_mutations),
		cmocka_unit_test(test_high_s_refused),
		cmocka_unit_test(test_low_s_boundary),
		cmocka_unit_test(test_rfc7638_thumbprint),
		cmocka_unit_test(test_jwk_strict),
		cmocka_unit_test(test_vpool),
	};

	return cmocka_run_group_tests_name("jws", tests, setup, teardown);
}
