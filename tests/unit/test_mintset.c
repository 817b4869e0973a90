/* tokens/mintset: what was added is found until it expires; nothing else
 * is; a crowded neighbourhood evicts the entry expiring first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "mintset.h"

static void
hash_of(uint32_t i, uint8_t h[32])
{
	SHA256((const uint8_t *)&i, sizeof(i), h);
}

static void
test_add_has(void **state)
{
	struct mintset *m = mintset_new();
	uint8_t a[32], b[32];

	(void)state;
	assert_non_null(m);
	hash_of(1, a);
	hash_of(2, b);
	assert_false(mintset_has(m, a, 100));
	mintset_add(m, a, 115);
	assert_true(mintset_has(m, a, 100));
	assert_true(mintset_has(m, a, 114));
	assert_false(mintset_has(m, a, 115));	/* expired at exp */
	assert_false(mintset_has(m, b, 100));
	b[0] = a[0] ^ 1;			/* another token, one bit off */
	memcpy(b + 1, a + 1, 31);
	assert_false(mintset_has(m, b, 100));
	mintset_free(m);
}

static void
test_crowding(void **state)
{
	struct mintset *m = mintset_new();
	uint8_t h[32];
	uint32_t i;

	(void)state;
	/* Same home slot for all: the window holds MINTSET_PROBE of them. */
	for (i = 0; i <= MINTSET_PROBE; i++) {
		memset(h, 0, sizeof(h));
		memcpy(h + 4, &i, sizeof(i));
		mintset_add(m, h, 1000 + i);
	}
	memset(h, 0, sizeof(h));			/* i = 0, exp 1000 */
	assert_false(mintset_has(m, h, 10));	/* evicted: expired first */
	i = MINTSET_PROBE;
	memcpy(h + 4, &i, sizeof(i));
	assert_true(mintset_has(m, h, 10));
	i = 1;
	memcpy(h + 4, &i, sizeof(i));
	assert_true(mintset_has(m, h, 10));
	mintset_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has),
		cmocka_unit_test(test_crowding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
