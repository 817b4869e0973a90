/* The GitHub client's configuration: where it may send the App's JWT and
 * installation tokens. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "bconfig.h"
#include "err.h"
#include "github.h"
#include "http.h"

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
	/* A user part names another host than the one it seems to. */
	assert_false(accepts("http://127.0.0.1:1@evil.example/"));
	assert_false(accepts("https://user@ghe.example.com/api/v3"));
	assert_false(accepts("http://localhost\\@evil.example/"));
	assert_false(accepts("ftp://127.0.0.1"));
}

/* git sends installation tokens to github-git-url: the same rule. */
static void
test_git_url(void **state)
{
	static const char *const urls[] = { "https://github.com",
	    "http://127.0.0.1:9418", "http://github.com",
	    "http://localhost.example.com" };
	static const int ok[] = { 1, 1, 0, 0 };
	char path[] = "/tmp/threshold-test-bconf.XXXXXX";
	struct bconf c;
	size_t i;
	FILE *f;
	int fd;

	(void)state;
	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		memcpy(path + sizeof(path) - 7, "XXXXXX", 6);
		assert_true((fd = mkstemp(path)) >= 0);
		assert_non_null(f = fdopen(fd, "w"));
		fprintf(f, "listen /tmp/b.sock\nsigner /tmp/s.sock\nstate /tmp\n"
		    "github-url https://api.github.com\ngithub-app-id 1\n"
		    "github-git-url %s\n", urls[i]);
		fclose(f);
		assert_int_equal(bconf_load(path, &c) == 0, ok[i]);
		unlink(path);
	}
}

/* 0 if bconf_load takes the base configuration followed by extra. */
static int
load_with(const char *extra)
{
	char path[] = "/tmp/threshold-test-bconf.XXXXXX";
	struct bconf c;
	FILE *f;
	int fd, r;

	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	fprintf(f, "listen /tmp/b.sock\nsigner /tmp/s.sock\nstate /tmp\n"
	    "github-url https://api.github.com\ngithub-app-id 1\n%s", extra);
	fclose(f);
	r = bconf_load(path, &c);
	unlink(path);
	return r;
}

static void
test_config_lines(void **state)
{
	char *long_line;

	(void)state;
	assert_int_equal(load_with("agent 1000 coder-1\nagent 1001 coder-2\n"),
	    0);
	/* One name for two uids would split the agent's limits. */
	assert_int_equal(load_with("agent 1000 coder-1\nagent 1001 coder-1\n"),
	    TH_ERR_CONFIG);
	assert_int_equal(load_with("agent 1000 coder-1\n"
	    "agent 1001 agent:coder-1\n"), TH_ERR_CONFIG);
	/* A line past the buffer is refused, not read on as another. */
	assert_non_null(long_line = malloc(4200));
	memset(long_line, '#', 2047);
	strcpy(long_line + 2047, "agent 0 root-agent\n");
	assert_int_equal(load_with(long_line), TH_ERR_CONFIG);
	free(long_line);
}

static void
link_line(struct http_req *req, const char *line)
{
	memset(req, 0, sizeof(*req));
	http_header_line(req, line, strlen(line));
}

/* Link's next page, and one too long to hold, which must not read as a
 * last page. */
static void
test_link_next(void **state)
{
	struct http_req req;
	char line[HTTP_URL_MAX + 128], url[HTTP_URL_MAX + 16];

	(void)state;
	link_line(&req, "Link: <https://h/x?page=1>; rel=\"prev\", "
	    "<https://h/x?page=3>; rel=\"next\", <https://h/x?page=9>; "
	    "rel=\"last\"\r\n");
	assert_string_equal(req.next, "https://h/x?page=3");
	assert_int_equal(req.next_too_long, 0);
	link_line(&req, "Link: <https://h/x?page=1>; rel=\"prev\"\r\n");
	assert_string_equal(req.next, "");
	memset(url, 'a', sizeof(url) - 1);
	url[sizeof(url) - 1] = '\0';
	snprintf(line, sizeof(line), "Link: <https://h/%s>; rel=\"next\"\r\n",
	    url);
	link_line(&req, line);
	assert_string_equal(req.next, "");
	assert_int_equal(req.next_too_long, 1);
	/* A long link that is not the next page does not matter. */
	snprintf(line, sizeof(line), "Link: <https://h/%s>; rel=\"last\", "
	    "<https://h/x?page=2>; rel=\"next\"\r\n", url);
	link_line(&req, line);
	assert_int_equal(req.next_too_long, 0);
	assert_string_equal(req.next, "https://h/x?page=2");
	/* A comma inside a URL does not end its link. */
	link_line(&req, "Link: <https://h/x?a=1,2&page=4>; rel=\"next\"\r\n");
	assert_string_equal(req.next, "https://h/x?a=1,2&page=4");
	/* rel="next" of a later link is not this one's. */
	link_line(&req, "Link: <https://h/x?page=1>; rel=\"prev\", "
	    "<https://h/x?page=5>;rel=\"next\"\r\n");
	assert_string_equal(req.next, "https://h/x?page=5");
	link_line(&req, "Link: <https://h/x?page=1>, <https://h/y>\r\n");
	assert_string_equal(req.next, "");
}

/* The tree listings all walks share: 800 a minute, refilled as time
 * passes (13 a second), never above 800. */
static void
test_tree_budget(void **state)
{
	struct gh *g = NULL;
	struct timespec wait = { 0, 300 * 1000 * 1000 };

	(void)state;
	assert_int_equal(gh_new("http://127.0.0.1:1", "42", NULL, &g), 0);
	assert_true(gh_tree_budget(g, 790));
	assert_true(gh_tree_budget(g, 10));
	assert_false(gh_tree_budget(g, 2));
	/* 0.3 s later: ~4 back, not 800. */
	nanosleep(&wait, NULL);
	assert_true(gh_tree_budget(g, 2));
	assert_false(gh_tree_budget(g, 100));
	gh_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_url),
		cmocka_unit_test(test_git_url),
		cmocka_unit_test(test_link_next),
		cmocka_unit_test(test_config_lines),
		cmocka_unit_test(test_tree_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
