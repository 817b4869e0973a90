/* The audit verifier's TPM parsers (audit/verify.c) against a golden quote
 * made by swtpm 0.7 with tpm2-tools 5.4 (tpm2_createak -G ecc -g sha256 -s
 * ecdsa under the EK; tpm2_quote -l sha256:0,1,2,3,4,5,6,7 -q Q after PCR 7
 * was extended once; tpm2_checkquote accepted it): the golden parses with
 * the expected fields and verifies; every truncation and oversized length is
 * refused; every single-bit flip is refused or fails verification.  Plus
 * the verification core on small hand-made logs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "b64url.h"
#include "buf.h"
#include "err.h"
#include "jcs.h"
#include "json.h"
#include "jwk.h"
#include "typ.h"
#include "utf8.h"
#include "verify.h"
#include "tsign.h"

static const char golden_attest_hex[] =
    "ff54434780180022000bb0f06178ea36101400a3d40397757faf183cd3d1d5242056"
    "ea3c5c5eb6d7f4f00020dd56de4137951d9c92681b03416ec15f886b4482a27e3a51"
    "7d32f085244cbe5d0000000000000908000000020000000001201910230016363600"
    "000001000b03ff00000020e5411781338d970ab2e140d453be0a839e9d585dc370e6"
    "ff22a04c21be2af65b";
static const char golden_sig_hex[] =
    "0018000b0020205f32668b2cafb2a77e8c717ecc4ef5157672e22ca29cff0af9851d"
    "ab57426c002063d406db1d5af08b3f481befa9df33f2fc6c983011a1823cee749488"
    "a2180a95";
/* The AK's public point (x || y) and the qualifying data
 * (SHA-256("golden")). */
static const char golden_ak_hex[] =
    "5cd830aeebc2c34a33e198f5e6788b59174e0e1cfcd44f2607ba2582fa74a6e7"
    "b8816c66618b4b95d3640cdfc8779411c9b8eba776864ac20e04aa924ec2cdca";
static const char golden_qual_hex[] =
    "dd56de4137951d9c92681b03416ec15f886b4482a27e3a517d32f085244cbe5d";
static const char golden_digest_hex[] =
    "e5411781338d970ab2e140d453be0a839e9d585dc370e6ff22a04c21be2af65b";

static size_t
unhex(const char *s, uint8_t *out, size_t max)
{
	size_t i, n = strlen(s) / 2;
	unsigned v;

	assert_true(n <= max);
	for (i = 0; i < n; i++) {
		assert_int_equal(sscanf(s + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static char *
b64(const uint8_t *p, size_t len)
{
	struct buf *b = buf_new();
	char *s;

	assert_int_equal(b64url_encode(b, p, len), 0);
	s = strndup((const char *)buf_ptr(b), buf_len(b));
	buf_free(b);
	return s;
}

static EVP_PKEY *
golden_ak(void)
{
	struct json_object *jwk = json_object_new_object();
	uint8_t xy[64];
	EVP_PKEY *pk = NULL;
	char *x, *y;

	unhex(golden_ak_hex, xy, sizeof(xy));
	x = b64(xy, 32);
	y = b64(xy + 32, 32);
	json_object_object_add(jwk, "kty", json_object_new_string("EC"));
	json_object_object_add(jwk, "crv", json_object_new_string("P-256"));
	json_object_object_add(jwk, "x", json_object_new_string(x));
	json_object_object_add(jwk, "y", json_object_new_string(y));
	assert_int_equal(jwk_to_pkey(jwk, &pk), 0);
	json_object_put(jwk);
	free(x);
	free(y);
	return pk;
}

static void
test_golden(void **state)
{
	uint8_t att[256], sig[128], q[32], dig[32];
	struct averify_attest a;
	struct averify_sig s;
	size_t alen, slen;
	EVP_PKEY *ak = golden_ak();

	(void)state;
	alen = unhex(golden_attest_hex, att, sizeof(att));
	slen = unhex(golden_sig_hex, sig, sizeof(sig));
	unhex(golden_qual_hex, q, sizeof(q));
	unhex(golden_digest_hex, dig, sizeof(dig));
	assert_int_equal(averify_parse_attest(att, alen, &a), 0);
	assert_int_equal(a.magic, AVERIFY_TPM_GENERATED);
	assert_int_equal(a.type, AVERIFY_ST_ATTEST_QUOTE);
	assert_int_equal(a.signer_len, 34);
	assert_int_equal(a.extra_len, 32);
	assert_memory_equal(a.extra, q, 32);
	assert_int_equal(a.clock, 0x908);
	assert_int_equal(a.reset_count, 2);
	assert_int_equal(a.restart_count, 0);
	assert_int_equal(a.safe, 1);
	assert_int_equal(a.firmware, 0x2019102300163636ULL);
	assert_int_equal(a.nbanks, 1);
	assert_int_equal(a.banks[0].alg, AVERIFY_ALG_SHA256);
	assert_int_equal(a.banks[0].size, 3);
	assert_int_equal(a.banks[0].select[0], 0xff);
	assert_int_equal(a.banks[0].select[1], 0);
	assert_int_equal(a.pcr_digest_len, 32);
	assert_memory_equal(a.pcr_digest, dig, 32);
	assert_int_equal(averify_parse_sig(sig, slen, &s), 0);
	assert_int_equal(s.rlen, 32);
	assert_int_equal(s.slen, 32);
	assert_int_equal(averify_quote_sig(ak, att, alen, &s), 0);
	/* Another message fails. */
	att[alen - 1] ^= 1;
	assert_int_not_equal(averify_quote_sig(ak, att, alen, &s), 0);
	EVP_PKEY_free(ak);
}

static void
test_truncated(void **state)
{
	uint8_t att[256], sig[128];
	struct averify_attest a;
	struct averify_sig s;
	size_t alen, slen, n;

	(void)state;
	alen = unhex(golden_attest_hex, att, sizeof(att));
	slen = unhex(golden_sig_hex, sig, sizeof(sig));
	for (n = 0; n < alen; n++)
		assert_int_not_equal(averify_parse_attest(att, n, &a), 0);
	for (n = 0; n < slen; n++)
		assert_int_not_equal(averify_parse_sig(sig, n, &s), 0);
	/* One byte too many. */
	att[alen] = 0;
	sig[slen] = 0;
	assert_int_equal(averify_parse_attest(att, alen + 1, &a),
	    TH_ERR_INVALID);
	assert_int_equal(averify_parse_sig(sig, slen + 1, &s), TH_ERR_INVALID);
}

/* Lengths beyond Part 2's bounds are refused before anything is copied. */
static void
test_oversized(void **state)
{
	uint8_t att[4096], sig[512], big[4096];
	struct averify_attest a;
	struct averify_sig s;
	size_t alen, slen, off;

	(void)state;
	alen = unhex(golden_attest_hex, att, sizeof(att));
	slen = unhex(golden_sig_hex, sig, sizeof(sig));

	/* qualifiedSigner (offset 6): 69 bytes > sizeof(TPMU_NAME), and the
	 * whole rest of a large buffer. */
	memset(big, 0, sizeof(big));
	memcpy(big, att, 6);
	big[6] = 0;
	big[7] = AVERIFY_NAME_MAX + 1;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	big[6] = 0xff;
	big[7] = 0xff;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	/* extraData (after the 34-byte name) of 65 bytes. */
	memcpy(big, att, alen);
	off = 6 + 2 + 34;
	big[off] = 0;
	big[off + 1] = AVERIFY_DATA_MAX + 1;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	/* pcrSelect.count 17. */
	memcpy(big, att, alen);
	off += 2 + 32 + 17 + 8;
	assert_int_equal(big[off + 3], 1);
	big[off + 3] = AVERIFY_BANKS_MAX + 1;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	big[off] = 0xff;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	/* sizeofSelect 5. */
	memcpy(big, att, alen);
	assert_int_equal(big[off + 6], 3);
	big[off + 6] = AVERIFY_SELECT_MAX + 1;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	/* pcrDigest of 65 bytes. */
	memcpy(big, att, alen);
	assert_int_equal(big[off + 10], 0);
	assert_int_equal(big[off + 11], 32);
	big[off + 11] = AVERIFY_DIGEST_MAX + 1;
	assert_int_equal(averify_parse_attest(big, sizeof(big), &a),
	    TH_ERR_TOO_LONG);
	/* A pcrDigest that claims more than there is. */
	memcpy(big, att, alen);
	big[off + 11] = 33;
	assert_int_equal(averify_parse_attest(big, alen, &a),
	    TH_ERR_TRUNCATED);
	/* The largest valid sizes still parse (and fail verification). */
	memcpy(big, att, alen);
	big[off + 11] = AVERIFY_DIGEST_MAX;
	memset(big + off + 12, 0xaa, AVERIFY_DIGEST_MAX);
	assert_int_equal(averify_parse_attest(big, off + 12 + AVERIFY_DIGEST_MAX,
	    &a), 0);
	assert_int_equal(a.pcr_digest_len, AVERIFY_DIGEST_MAX);

	/* Signature: r of 129 bytes, s of 0xffff. */
	memcpy(big, sig, slen);
	big[4] = 0;
	big[5] = AVERIFY_ECC_MAX + 1;
	assert_int_equal(averify_parse_sig(big, sizeof(big), &s),
	    TH_ERR_TOO_LONG);
	memcpy(big, sig, slen);
	big[38] = 0xff;
	big[39] = 0xff;
	assert_int_equal(averify_parse_sig(big, sizeof(big), &s),
	    TH_ERR_TOO_LONG);
	/* Empty r; other algorithms. */
	memcpy(big, sig, 4);
	big[4] = 0;
	big[5] = 0;
	memcpy(big + 6, sig + 38, 34);
	assert_int_equal(averify_parse_sig(big, 40, &s), TH_ERR_INVALID);
	memcpy(big, sig, slen);
	big[1] = 0x14;		/* RSASSA */
	assert_int_equal(averify_parse_sig(big, slen, &s), TH_ERR_INVALID);
	memcpy(big, sig, slen);
	big[3] = 0x04;		/* SHA-1 */
	assert_int_equal(averify_parse_sig(big, slen, &s), TH_ERR_INVALID);
	/* A type other than quote, and a bad magic. */
	memcpy(big, att, alen);
	big[5] = 0x17;		/* certify */
	assert_int_equal(averify_parse_attest(big, alen, &a), TH_ERR_INVALID);
	big[0] = 0;
	assert_int_equal(averify_parse_attest(big, alen, &a), TH_ERR_INVALID);
}

/* Every single-bit flip of the golden attest and signature is refused by
 * the parser or fails verification; none crashes (run under ASan too). */
static void
test_bitflips(void **state)
{
	uint8_t att[256], sig[128];
	struct averify_attest a;
	struct averify_sig s, good;
	size_t alen, slen, i;
	unsigned bit, parsed = 0, refused = 0;
	EVP_PKEY *ak = golden_ak();

	(void)state;
	alen = unhex(golden_attest_hex, att, sizeof(att));
	slen = unhex(golden_sig_hex, sig, sizeof(sig));
	assert_int_equal(averify_parse_sig(sig, slen, &good), 0);
	for (i = 0; i < alen; i++)
		for (bit = 0; bit < 8; bit++) {
			att[i] ^= (uint8_t)(1u << bit);
			if (averify_parse_attest(att, alen, &a) == 0) {
				parsed++;
				assert_int_not_equal(averify_quote_sig(ak, att,
				    alen, &good), 0);
			} else
				refused++;
			att[i] ^= (uint8_t)(1u << bit);
		}
	assert_int_equal(parsed + refused, alen * 8);
	assert_true(refused > 0 && parsed > 0);
	for (i = 0; i < slen; i++)
		for (bit = 0; bit < 8; bit++) {
			sig[i] ^= (uint8_t)(1u << bit);
			if (averify_parse_sig(sig, slen, &s) == 0)
				assert_int_not_equal(averify_quote_sig(ak, att,
				    alen, &s), 0);
			sig[i] ^= (uint8_t)(1u << bit);
		}
	assert_int_equal(averify_parse_attest(att, alen, &a), 0);
	assert_int_equal(averify_quote_sig(ak, att, alen, &good), 0);
	EVP_PKEY_free(ak);
}

/* ---- the core, on hand-made headers and entries ---- */

static EVP_PKEY *
ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

/* The root's statement that other is the checkpoint and capability key of
 * header_for's instance; with extra, a member no statement has too. */
static struct json_object *
keys_stmt(EVP_PKEY *root, EVP_PKEY *other, const char *extra)
{
	struct json_object *c = json_object_new_object(), *j, *s;
	struct buf *b = buf_new();

	json_object_object_add(c, "iss", json_object_new_string(
	    "threshold:root"));
	json_object_object_add(c, "sub", json_object_new_string(
	    "thresholdd:AAAAAAAAAAAAAAAAAAAAAA"));
	json_object_object_add(c, "iat", json_object_new_int(1));
	json_object_object_add(c, "checkpoint_key", json_object_new_string(
	    "token-signature"));
	assert_int_equal(jwk_from_pkey(other, &j), 0);
	json_object_object_add(c, "ak", j);
	assert_int_equal(jwk_from_pkey(other, &j), 0);
	json_object_object_add(c, "capability", j);
	json_object_object_add(c, "attenuation", NULL);
	if (extra != NULL)
		json_object_object_add(c, extra, json_object_new_int(1));
	assert_int_equal(jws_signing_input(b, TH_ALG_ES256, TYP_KEYS_CERT,
	    NULL, c), 0);
	append_sig(b, root);
	s = json_object_new_string_len((const char *)buf_ptr(b),
	    (int)buf_len(b));
	json_object_put(c);
	buf_free(b);
	return s;
}

static struct json_object *
header_for(EVP_PKEY *root, EVP_PKEY *other)
{
	struct json_object *h = json_object_new_object(), *j;

	json_object_object_add(h, "v", json_object_new_int(1));
	json_object_object_add(h, "log", json_object_new_string(
	    "threshold-audit"));
	json_object_object_add(h, "instance", json_object_new_string(
	    "thresholdd:AAAAAAAAAAAAAAAAAAAAAA"));
	json_object_object_add(h, "created", json_object_new_int(1));
	json_object_object_add(h, "checkpoint_key", json_object_new_string(
	    "token-signature"));
	assert_int_equal(jwk_from_pkey(other, &j), 0);
	json_object_object_add(h, "ak", j);
	assert_int_equal(jwk_from_pkey(other, &j), 0);
	json_object_object_add(h, "capability", j);
	assert_int_equal(jwk_from_pkey(root, &j), 0);
	json_object_object_add(h, "root", j);
	json_object_object_add(h, "attenuation", NULL);
	json_object_object_add(h, "ek_cert", NULL);
	json_object_object_add(h, "keys", keys_stmt(root, other, NULL));
	return h;
}

static char *
header_hash(struct json_object *h)
{
	struct buf *b = buf_new();
	uint8_t d[32];
	char *s;

	assert_int_equal(jcs_encode(b, h), 0);
	EVP_Digest(buf_ptr(b), buf_len(b), d, NULL, EVP_sha256(), NULL);
	s = b64(d, 32);
	buf_free(b);
	return s;
}

/* A refusal entry as JSON text; the caller's format fills in members. */
static struct json_object *
parse(const char *text)
{
	struct json_object *o = NULL;

	assert_int_equal(json_parse_strict(text, strlen(text), 65536, &o), 0);
	return o;
}

static void
test_core(void **state)
{
	EVP_PKEY *root = ec_key(), *other = ec_key();
	struct json_object *h = header_for(root, other), *e;
	struct averify_summary sum;
	struct averify *v;
	char text[512], *hh = header_hash(h);

	(void)state;
	/* The header's root must be the auditor's. */
	assert_int_equal(averify_new(other, &v), 0);
	assert_int_equal(averify_header(v, h), TH_ERR_DENIED);
	assert_int_equal(averify_failed_step(v), 1);
	assert_non_null(strstr(averify_failure(v), "header: root is not"));
	averify_free(v);

	/* Keys the root's statement does not name: a forger's. */
	{
		struct json_object *f = header_for(root, other), *j;
		EVP_PKEY *forger = ec_key();

		assert_int_equal(jwk_from_pkey(forger, &j), 0);
		json_object_object_add(f, "capability", j);
		assert_int_equal(averify_new(root, &v), 0);
		assert_int_equal(averify_header(v, f), TH_ERR_DENIED);
		assert_string_equal(averify_failure(v), "header: capability is "
		    "not the key the root names");
		averify_free(v);
		/* Signed by the root, but saying more than a statement
		 * of keys says. */
		assert_int_equal(jwk_from_pkey(other, &j), 0);
		json_object_object_add(f, "capability", j);
		json_object_object_add(f, "keys", keys_stmt(root, other,
		    "note"));
		assert_int_equal(averify_new(root, &v), 0);
		assert_int_equal(averify_header(v, f), TH_ERR_DENIED);
		assert_non_null(strstr(averify_failure(v), "header: keys: a "
		    "member other than"));
		averify_free(v);
		json_object_object_del(f, "keys");
		assert_int_equal(averify_new(root, &v), 0);
		assert_int_equal(averify_header(v, f), TH_ERR_DENIED);
		assert_non_null(strstr(averify_failure(v), "header: no keys "
		    "statement"));
		averify_free(v);
		json_object_put(f);
		EVP_PKEY_free(forger);
	}

	/* A refusal verifies; a number out of int64 range is malformed. */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	snprintf(text, sizeof(text), "{\"v\":1,\"seq\":1,\"time\":5,\"prev\":"
	    "\"%s\",\"kind\":\"refusal\",\"agent\":\"agent:a\",\"code\":\"x\","
	    "\"reason\":\"y\"}", hh);
	e = parse(text);
	assert_int_equal(averify_entry(v, e), 0);
	json_object_put(e);
	assert_int_equal(averify_finish(v), 0);
	averify_summary(v, &sum);
	assert_int_equal(sum.entries, 1);
	assert_int_equal(sum.uncommitted, 1);
	assert_int_equal(sum.refusals, 1);
	assert_int_equal(sum.agents, 1);
	averify_free(v);

	/* A refusal's agent, code and reason are strings (found in
	 * review: any value passed). */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	snprintf(text, sizeof(text), "{\"v\":1,\"seq\":1,\"time\":5,\"prev\":"
	    "\"%s\",\"kind\":\"refusal\",\"agent\":\"agent:a\",\"code\":\"x\","
	    "\"reason\":7}", hh);
	e = parse(text);
	assert_int_equal(averify_entry(v, e), TH_ERR_DENIED);
	assert_non_null(strstr(averify_failure(v), "entry 1: "));
	json_object_put(e);
	averify_free(v);

	/* -2^63 is a 64-bit integer (found in review: it was refused). */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	snprintf(text, sizeof(text), "{\"v\":1,\"seq\":1,\"time\":5,\"prev\":"
	    "\"%s\",\"kind\":\"refusal\",\"agent\":\"agent:a\",\"code\":\"x\","
	    "\"reason\":\"y\",\"n\":[-9223372036854775808,"
	    "9223372036854775807]}", hh);
	e = parse(text);
	assert_int_equal(averify_entry(v, e), 0);
	json_object_put(e);
	averify_free(v);

	snprintf(text, sizeof(text), "{\"v\":1,\"seq\":1,\"time\":5,\"prev\":"
	    "\"%s\",\"kind\":\"refusal\",\"n\":-9223372036854775809}", hh);
	e = NULL;
	assert_int_equal(json_parse_strict(text, strlen(text), 65536, &e),
	    TH_ERR_INVALID);
	assert_null(e);

	/* What a failure quotes from the log is one printable line of
	 * UTF-8, cut where it may be: a terminal's escapes, a newline and a
	 * character split by the bound become '?'. */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	snprintf(text, sizeof(text), "{\"v\":1,\"seq\":1,\"time\":5,\"prev\":"
	    "\"%s\",\"kind\":\"\\u001b[2J\\n%s\"}", hh,
	    "\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac");
	e = parse(text);
	assert_int_equal(averify_entry(v, e), TH_ERR_DENIED);
	json_object_put(e);
	{
		const char *m = averify_failure(v);
		size_t i;

		assert_true(utf8_valid(m, strlen(m)));
		for (i = 0; m[i] != '\0'; i++)
			assert_true((unsigned char)m[i] >= 0x20 && m[i] != 0x7f);
	}
	averify_free(v);

	/* Out of sequence, and a wrong prev. */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	e = parse("{\"v\":1,\"seq\":2,\"time\":5,\"prev\":\"x\",\"kind\":"
	    "\"refusal\"}");
	assert_int_equal(averify_entry(v, e), TH_ERR_DENIED);
	json_object_put(e);
	assert_string_equal(averify_failure(v), "entry 1: out of sequence: "
	    "found seq 2 (an entry deleted, inserted or moved)");
	averify_free(v);
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_header(v, h), 0);
	e = parse("{\"v\":1,\"seq\":1,\"time\":5,\"prev\":\"x\",\"kind\":"
	    "\"refusal\"}");
	assert_int_equal(averify_entry(v, e), TH_ERR_DENIED);
	json_object_put(e);
	assert_string_equal(averify_failure(v), "entry 1: prev is not the "
	    "header hash");
	averify_free(v);

	/* A checkpoint beyond the entries is held until the end. */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_expect_checkpoint(v, "1:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 0);
	assert_int_equal(averify_header(v, h), 0);
	snprintf(text, sizeof(text), "{\"first\":1,\"last\":3,\"log\":\"%s\","
	    "\"n\":1,\"prev\":\"%s\",\"root\":\"r\",\"qual\":\"q\",\"kind\":"
	    "\"token-signature\",\"sig\":\"s\"}", hh, hh);
	e = parse(text);
	assert_int_equal(averify_checkpoint(v, e), 0);
	json_object_put(e);
	assert_int_equal(averify_finish(v), TH_ERR_DENIED);
	assert_int_equal(averify_failed_step(v), 3);
	assert_string_equal(averify_failure(v), "checkpoint 1: covers entries "
	    "1..3, but the log ends at entry 0");
	averify_free(v);

	/* Option syntax. */
	assert_int_equal(averify_new(root, &v), 0);
	assert_int_equal(averify_expect_pcrs(v, "sha256:7=00"), TH_ERR_INVALID);
	assert_int_equal(averify_expect_pcrs(v, "sha384:0=00"),
	    TH_ERR_INVALID);
	assert_int_equal(averify_expect_pcrs(v, "sha1:24="
	    "0000000000000000000000000000000000000000"), TH_ERR_INVALID);
	assert_int_equal(averify_expect_pcrs(v, "sha1:0="
	    "0000000000000000000000000000000000000000,1=00000000000000000000"
	    "00000000000000000000"), 0);
	assert_int_equal(averify_expect_checkpoint(v, "0:x"), TH_ERR_INVALID);
	assert_int_equal(averify_expect_checkpoint(v, "1:short"),
	    TH_ERR_INVALID);
	averify_free(v);

	free(hh);
	json_object_put(h);
	EVP_PKEY_free(root);
	EVP_PKEY_free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_bitflips),
		cmocka_unit_test(test_core),
	};

	return cmocka_run_group_tests_name("averify", tests, NULL, NULL);
}
