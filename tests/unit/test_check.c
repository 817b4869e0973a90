/* Domain separation in the signer: what each key may sign. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "b64url.h"
#include "check.h"
#include "err.h"
#include "typ.h"

#define NOW 1790000000

static struct config cfg;

static int
try(enum purpose p, enum th_alg alg, const char *hdr, const char *claims)
{
	struct buf *b = buf_new();
	int r;

	assert_int_equal(b64url_encode(b, (const uint8_t *)hdr,
	    strlen(hdr)), 0);
	assert_int_equal(buf_put_u8(b, '.'), 0);
	assert_int_equal(b64url_encode(b, (const uint8_t *)claims,
	    strlen(claims)), 0);
	r = check_sign_payload(&cfg, p, alg, buf_ptr(b), buf_len(b), NOW);
	buf_free(b);
	return r;
}

static int
try_raw(enum purpose p, const char *payload)
{
	return check_sign_payload(&cfg, p, TH_ALG_ES256,
	    (const uint8_t *)payload, strlen(payload), NOW);
}

/* A SIGN payload is the frame's bytes, not a C string: a checkpoint hash
 * followed by more base64url characters must be judged on its own 43
 * (under ASan, reading on past the payload fails the test). */
static void
test_checkpoint_unterminated(void)
{
	static const char good[] = "threshold-audit-checkpoint:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
	uint8_t *p;

	assert_non_null(p = malloc(sizeof(good) - 1));
	memcpy(p, good, sizeof(good) - 1);
	assert_int_equal(check_sign_payload(&cfg, PURPOSE_AUDIT, TH_ALG_ES256,
	    p, sizeof(good) - 1, NOW), 0);
	free(p);
}

static int
github(const char *hdr, const char *iss, long iat, long exp)
{
	char claims[256];

	snprintf(claims, sizeof(claims), "{\"iss\":%s,\"iat\":%ld,\"exp\":%ld}",
	    iss, iat, exp);
	return try(PURPOSE_GITHUB_APP, TH_ALG_RS256, hdr, claims);
}

static void
test_github_app(void **state)
{
	const char *rs = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

	(void)state;
	strcpy(cfg.app_id, "123456");
	assert_int_equal(github(rs, "\"123456\"", NOW - 60, NOW + 540), 0);
	assert_int_equal(github(rs, "123456", NOW - 60, NOW + 540), 0);
	assert_int_equal(github("{\"alg\":\"RS256\"}", "\"123456\"", NOW - 60,
	    NOW + 540), 0);
	/* Wrong issuer, too long, inverted, pre-signed for later, stale. */
	assert_int_equal(github(rs, "\"654321\"", NOW - 60, NOW + 540),
	    TH_ERR_DENIED);
	assert_int_equal(github(rs, "1234567", NOW - 60, NOW + 540),
	    TH_ERR_DENIED);
	assert_int_equal(github(rs, "\"123456\"", NOW - 60, NOW + 541),
	    TH_ERR_DENIED);
	assert_int_equal(github(rs, "\"123456\"", NOW, NOW), TH_ERR_DENIED);
	assert_int_equal(github(rs, "\"123456\"", NOW + 3600, NOW + 3900),
	    TH_ERR_DENIED);
	assert_int_equal(github(rs, "\"123456\"", NOW - 3600, NOW - 3300),
	    TH_ERR_DENIED);
	/* Wrong alg or typ, and headers that try to smuggle meaning. */
	assert_int_equal(github("{\"alg\":\"ES256\"}", "\"123456\"", NOW - 60,
	    NOW + 540), TH_ERR_DENIED);
	assert_int_equal(github("{\"alg\":\"none\"}", "\"123456\"", NOW - 60,
	    NOW + 540), TH_ERR_DENIED);
	assert_int_equal(github("{\"alg\":\"RS256\",\"typ\":\""
	    TYP_CAPABILITY "\"}", "\"123456\"", NOW - 60, NOW + 540),
	    TH_ERR_DENIED);
	assert_int_equal(github("{\"alg\":\"RS256\",\"typ\":\"\"}",
	    "\"123456\"", NOW - 60, NOW + 540), TH_ERR_DENIED);
	assert_int_equal(github("{\"alg\":\"RS256\",\"crit\":[\"x\"]}",
	    "\"123456\"", NOW - 60, NOW + 540), TH_ERR_DENIED);
	assert_int_equal(github("{\"alg\":\"RS256\",\"alg\":\"RS256\"}",
	    "\"123456\"", NOW - 60, NOW + 540), TH_ERR_DENIED);
	/* Missing or mistyped claims. */
	assert_int_equal(try(PURPOSE_GITHUB_APP, TH_ALG_RS256, rs,
	    "{\"iss\":\"123456\",\"exp\":1790000100}"), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_GITHUB_APP, TH_ALG_RS256, rs,
	    "{\"iss\":\"123456\",\"iat\":\"1790000000\",\"exp\":1790000100}"),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_GITHUB_APP, TH_ALG_RS256, rs,
	    "{\"iss\":\"123456\",\"iat\":1790000000,\"exp\":1790000100,"
	    "\"iss\":\"1\"}"), TH_ERR_DENIED);
	/* An ES256 key configured as github-app signs nothing. */
	assert_int_equal(try(PURPOSE_GITHUB_APP, TH_ALG_ES256,
	    "{\"alg\":\"ES256\"}", "{\"iss\":\"123456\",\"iat\":1790000000,"
	    "\"exp\":1790000100}"), TH_ERR_DENIED);
}

static void
test_token_keys(void **state)
{
	const char *cap = "{\"alg\":\"ES256\",\"typ\":\"" TYP_CAPABILITY "\"}";
	const char *cert = "{\"alg\":\"ES256\",\"typ\":\"" TYP_HUMAN_CERT
	    "\",\"kid\":\"root\"}";
	const char *claims15 = "{\"iat\":1790000000,\"exp\":1790000015}";
	const char *claims61 = "{\"iat\":1790000000,\"exp\":1790000061}";

	(void)state;
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap, claims15),
	    0);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap, claims61),
	    TH_ERR_DENIED);
	/* Only near the signer's clock: no stock of capabilities signed for
	 * later (found in review). */
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":1790000060,\"exp\":1790000075}"), 0);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":1790000061,\"exp\":1790000076}"), TH_ERR_DENIED);
	assert_string_equal(th_errmsg(TH_ERR_DENIED), "iat is 61 s from the "
	    "signer's clock (allowed -120..+60)");
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":2105360000,\"exp\":2105360015}"), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":1789999880,\"exp\":1789999895}"), 0);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":1789999879,\"exp\":1789999894}"), TH_ERR_DENIED);
	/* exp - iat overflowing int64 is no short lifetime (found in
	 * review: it wrapped negative and passed). */
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":-5000000000000000000,\"exp\":5000000000000000000}"),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap,
	    "{\"iat\":-9223372036854775808,\"exp\":9223372036854775807}"),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_DELEGATION_ROOT, TH_ALG_ES256, cert,
	    "{\"sub\":\"human:alice\"}"), 0);
	/* An AK statement is the signer's own (AKCERT), never a peer's. */
	assert_int_equal(try(PURPOSE_DELEGATION_ROOT, TH_ALG_ES256,
	    "{\"alg\":\"ES256\",\"typ\":\"" TYP_AK_CERT "\"}",
	    "{\"sub\":\"thresholdd:x\"}"), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256,
	    "{\"alg\":\"ES256\",\"typ\":\"" TYP_AK_CERT "\"}", claims15),
	    TH_ERR_DENIED);
	/* Each key signs only its own typ. */
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cert, claims15),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_DELEGATION_ROOT, TH_ALG_ES256, cap,
	    claims15), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_DELEGATION_ROOT, TH_ALG_ES256,
	    "{\"alg\":\"ES256\",\"typ\":\"" TYP_DELEGATION "\"}", claims15),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_DELEGATION_ROOT, TH_ALG_ES256,
	    "{\"alg\":\"ES256\"}", claims15), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256,
	    "{\"alg\":\"RS256\",\"typ\":\"" TYP_CAPABILITY "\"}", claims15),
	    TH_ERR_DENIED);
	/* The attenuation key signs only agents' re-delegations. */
	assert_int_equal(try(PURPOSE_ATTENUATION, TH_ALG_ES256,
	    "{\"alg\":\"ES256\",\"typ\":\"" TYP_DELEGATION "\"}",
	    "{\"iss\":\"agent:coder-1\",\"sub\":\"agent:sub\"}"), 0);
	assert_int_equal(try(PURPOSE_ATTENUATION, TH_ALG_ES256,
	    "{\"alg\":\"ES256\",\"typ\":\"" TYP_DELEGATION "\"}",
	    "{\"iss\":\"human:alice\",\"sub\":\"agent:x\"}"),
	    TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_ATTENUATION, TH_ALG_ES256, cap, claims15),
	    TH_ERR_DENIED);
	/* The audit key signs checkpoint hashes only. */
	assert_int_equal(try_raw(PURPOSE_AUDIT, "threshold-audit-checkpoint:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), 0);
	assert_int_equal(try_raw(PURPOSE_AUDIT, "threshold-audit-checkpoint:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_AUDIT, "threshold-audit-checkpoint:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), TH_ERR_DENIED);
	test_checkpoint_unterminated();
	/* 43 characters, but not the encoding of 32 bytes (trailing bits). */
	assert_int_equal(try_raw(PURPOSE_AUDIT, "threshold-audit-checkpoint:"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"), TH_ERR_DENIED);
	assert_int_equal(try(PURPOSE_AUDIT, TH_ALG_ES256, cap, claims15),
	    TH_ERR_DENIED);
	/* The attestation key never signs. */
	assert_int_equal(try(PURPOSE_ATTESTATION, TH_ALG_ES256, cap, claims15),
	    TH_ERR_DENIED);
	/* Claims must be an object. */
	assert_int_equal(try(PURPOSE_CAPABILITY, TH_ALG_ES256, cap, "[1]"),
	    TH_ERR_DENIED);
}

static void
test_malformed_payloads(void **state)
{
	(void)state;
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, ""), TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, "abc"), TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, "a.b.c"), TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, "."), TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, "e30=.e30"),
	    TH_ERR_DENIED);
	assert_int_equal(try_raw(PURPOSE_CAPABILITY, "e30.e30\n"),
	    TH_ERR_DENIED);
	/* A NUL-byte inside the payload. */
	assert_int_equal(check_sign_payload(&cfg, PURPOSE_CAPABILITY,
	    TH_ALG_ES256, (const uint8_t *)"e30\0.e30", 8, NOW), TH_ERR_DENIED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_github_app),
		cmocka_unit_test(test_token_keys),
		cmocka_unit_test(test_malformed_payloads),
	};

	return cmocka_run_group_tests_name("check", tests, NULL, NULL);
}
