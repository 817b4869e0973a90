/* Canonical JSON (RFC 8785) and RFC 6962 Merkle trees, as the audit log
 * uses them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "jcs.h"
#include "json.h"
#include "merkle.h"

static void
check_jcs(const char *in, const char *want)
{
	struct json_object *o = NULL;
	struct buf *b = buf_new();

	assert_int_equal(json_parse_strict(in, strlen(in), 4096, &o), 0);
	assert_int_equal(jcs_encode(b, o), 0);
	assert_int_equal(buf_len(b), strlen(want));
	assert_memory_equal(buf_ptr(b), want, strlen(want));
	json_object_put(o);
	buf_free(b);
}

static void
test_jcs(void **state)
{
	(void)state;
	check_jcs("{ \"b\" : 1, \"a\" : [ true, null, \"x\\n\\u0001\\/\" ] }",
	    "{\"a\":[true,null,\"x\\n\\u0001/\"],\"b\":1}");
	check_jcs("{\"z\":{\"y\":-5,\"x\":0},\"\":\"\"}",
	    "{\"\":\"\",\"z\":{\"x\":0,\"y\":-5}}");
	/* UTF-16 order: U+1F600 (a surrogate pair, D83D...) sorts before
	 * U+E000, although its UTF-8 form (F0...) sorts after. */
	check_jcs("{\"\\ue000\":1,\"\\ud83d\\ude00\":2,\"\\u20ac\":3}",
	    "{\"\xe2\x82\xac\":3,\"\xf0\x9f\x98\x80\":2,\"\xee\x80\x80\":1}");
	/* Code points above U+FFFF keep their own order whatever the input
	 * order (U+10000 < U+40000 < U+100000, as their surrogate pairs):
	 * their lead bytes F0, F1, F4 differ. */
	check_jcs("{\"\\udbc0\\udc00\":3,\"\\ud800\\udc00\":1,\"\\ud8c0\\udc00\":2}",
	    "{\"\xf0\x90\x80\x80\":1,\"\xf1\x80\x80\x80\":2,\"\xf4\x80\x80\x80\":3}");
	check_jcs("{\"\\ud800\\udc00\":1,\"\\ud8c0\\udc00\":2,\"\\udbc0\\udc00\":3}",
	    "{\"\xf0\x90\x80\x80\":1,\"\xf1\x80\x80\x80\":2,\"\xf4\x80\x80\x80\":3}");
	{
		struct json_object *o = json_object_new_double(1.5);
		struct buf *b = buf_new();

		assert_int_equal(jcs_encode(b, o), TH_ERR_INVALID);
		json_object_put(o);
		buf_free(b);
	}
}

/* Strings that are not UTF-8 (built in memory, as from a git ref name)
 * have no canonical form: refused, values and member names alike. */
static void
test_jcs_utf8(void **state)
{
	static const char *bad[] = { "\x9d", "a\xc0\x80", "\xed\xa0\x80",
	    "\xf4\x90\x80\x80", "\xe2\x82", "\xf8\x88\x80\x80\x80" };
	static const char *good[] = { "caf\xc3\xa9", "\xe2\x82\xac",
	    "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf" };
	struct json_object *o;
	struct buf *b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = buf_new();
		o = json_object_new_string(bad[i]);
		assert_int_equal(jcs_encode(b, o), TH_ERR_INVALID);
		json_object_put(o);
		o = json_object_new_object();
		json_object_object_add(o, bad[i], json_object_new_int(1));
		assert_int_equal(jcs_encode(b, o), TH_ERR_INVALID);
		json_object_put(o);
		buf_free(b);
	}
	b = buf_new();
	o = json_object_new_string_len("a\0b", 3);
	assert_int_equal(jcs_encode(b, o), TH_ERR_INVALID);
	json_object_put(o);
	buf_free(b);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		b = buf_new();
		o = json_object_new_string(good[i]);
		assert_int_equal(jcs_encode(b, o), 0);
		assert_int_equal(buf_len(b), strlen(good[i]) + 2);
		json_object_put(o);
		buf_free(b);
	}
}

static void
test_merkle(void **state)
{
	uint8_t leaves[40][MERKLE_HASH_LEN], root[MERKLE_HASH_LEN];
	uint8_t proof[MERKLE_PROOF_MAX][MERKLE_HASH_LEN], bad[MERKLE_HASH_LEN];
	char data[16];
	size_t n, m, len;

	(void)state;
	for (m = 0; m < 40; m++) {
		snprintf(data, sizeof(data), "entry %zu", m);
		merkle_leaf(data, strlen(data), leaves[m]);
	}
	/* A single leaf is its own root. */
	assert_int_equal(merkle_root(leaves, 1, root), 0);
	assert_memory_equal(root, leaves[0], MERKLE_HASH_LEN);
	for (n = 1; n <= 40; n++) {
		assert_int_equal(merkle_root(leaves, n, root), 0);
		for (m = 0; m < n; m++) {
			assert_int_equal(merkle_path(leaves, n, m, proof, &len),
			    0);
			assert_int_equal(merkle_verify(leaves[m], m, n, proof,
			    len, root), 0);
			/* Another leaf or another index fails.  (The size is not
			 * proven by the path -- for some leaves n and n + 1 give
			 * the same path -- which is why checkpoints sign
			 * first and last.) */
			memcpy(bad, leaves[m], sizeof(bad));
			bad[0] ^= 1;
			assert_int_not_equal(merkle_verify(bad, m, n, proof,
			    len, root), 0);
			if (n > 1)
				assert_int_not_equal(merkle_verify(leaves[m],
				    (m + 1) % n, n, proof, len, root), 0);
		}
	}
}

/* RFC 6962: MTH of two leaves is H(0x01 || H(0x00||d0) || H(0x00||d1)). */
static void
test_merkle_known_answer(void **state)
{
	/* SHA-256(0x00) and the root over leaves "" and "" */
	static const uint8_t empty_leaf[32] = {
		0x6e, 0x34, 0x0b, 0x9c, 0xff, 0xb3, 0x7a, 0x98,
		0x9c, 0xa5, 0x44, 0xe6, 0xbb, 0x78, 0x0a, 0x2c,
		0x78, 0x90, 0x1d, 0x3f, 0xb3, 0x37, 0x38, 0x76,
		0x85, 0x11, 0xa3, 0x06, 0x17, 0xaf, 0xa0, 0x1d
	};
	uint8_t leaf[MERKLE_HASH_LEN];

	(void)state;
	merkle_leaf("", 0, leaf);
	assert_memory_equal(leaf, empty_leaf, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jcs),
		cmocka_unit_test(test_jcs_utf8),
		cmocka_unit_test(test_merkle),
		cmocka_unit_test(test_merkle_known_answer),
	};

	return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
