/* The GitHub client's configuration: where it may send the App's JWT and
 * installation tokens. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "err.h"
#include "github.h"

static int
accepts(const char *url)
{
	struct gh *g = NULL;
	int r = gh_new(url, "42", NULL, &g);

	gh_free(g);
	return r == 0;
}

static void
test_base_url(void **state)
{
	(void)state;
	assert_true(accepts("https://api.github.com"));
	assert_true(accepts("https://ghe.example.com/api/v3/"));
	assert_true(accepts("http://127.0.0.1:8080"));
	assert_true(accepts("http://localhost"));
	assert_true(accepts("http://localhost/api"));
	/* Plain http only to this machine, by exact host name. */
	assert_false(accepts("http://localhost.example.com"));
	assert_false(accepts("http://127.0.0.1.nip.io:8080"));
	assert_false(accepts("http://localhostx:80"));
	assert_false(accepts("http://api.github.com"));
	assert_false(accepts("ftp://127.0.0.1"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_url),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
