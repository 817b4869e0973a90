/* Changed files told from two recursive tree listings (broker/tree.c): what
 * a pull request of more than 300 files is judged by. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "facts.h"
#include "json.h"
#include "peval.h"
#include "tree.h"

#define SHA_A	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SHA_B	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SHA_C	"cccccccccccccccccccccccccccccccccccccccc"

/* A listing in GitHub's form; entries "type mode sha path;..." */
static int
parse(const char *entries, int truncated, struct tree *t)
{
	char text[8192], *p, *e, *save = NULL, copy[4096];
	char type[16], mode[16], sha[64], path[2048];
	struct json_object *o = NULL;
	size_t n;
	int r;

	n = (size_t)snprintf(text, sizeof(text), "{\"sha\":\"%s\",\"tree\":[",
	    SHA_C);
	snprintf(copy, sizeof(copy), "%s", entries);
	for (p = strtok_r(copy, ";", &save); p != NULL;
	    p = strtok_r(NULL, ";", &save)) {
		assert_int_equal(sscanf(p, "%15s %15s %63s %2047s", type, mode,
		    sha, path), 4);
		e = text + n;
		n += (size_t)snprintf(e, sizeof(text) - n, "%s{\"path\":\"%s\","
		    "\"mode\":\"%s\",\"type\":\"%s\",\"sha\":\"%s\"}",
		    text[n - 1] == '[' ? "" : ",", path, mode, type, sha);
	}
	snprintf(text + n, sizeof(text) - n, "],\"truncated\":%s}",
	    truncated ? "true" : "false");
	if ((r = json_parse_strict(text, strlen(text), sizeof(text), &o)) == 0)
		r = tree_parse(o, t);
	json_object_put(o);
	return r;
}

/* The changed files of base -> head as "status path;..." in path order. */
static void
diff(const char *base, const char *head, const char *want)
{
	struct tree b, h;
	struct pr_facts f;
	char got[4096] = "";
	size_t i, n = 0;

	memset(&f, 0, sizeof(f));
	assert_int_equal(parse(base, 0, &b), 0);
	assert_int_equal(parse(head, 0, &h), 0);
	assert_int_equal(tree_diff(&b, &h, &f), 0);
	for (i = 0; i < f.nfiles; i++)
		n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s %s",
		    i ? ";" : "", f.files[i].status, f.files[i].filename);
	assert_string_equal(got, want);
	facts_free(&f);
	tree_free(&b);
	tree_free(&h);
}

static void
test_diff(void **state)
{
	(void)state;
	/* Directories are not files; an unchanged file is not listed. */
	diff("tree 040000 " SHA_A " src;blob 100644 " SHA_A " src/a.c;"
	    "blob 100644 " SHA_A " README",
	    "tree 040000 " SHA_B " src;blob 100644 " SHA_B " src/a.c;"
	    "blob 100644 " SHA_A " README",
	    "modified src/a.c");
	/* Added, removed, a rename as both names, in path order whatever
	 * the listing's order. */
	diff("blob 100644 " SHA_A " z;blob 100644 " SHA_A " .github/x.yml;"
	    "blob 100644 " SHA_B " keep",
	    "blob 100644 " SHA_B " keep;blob 100644 " SHA_A " a/new;"
	    "blob 100644 " SHA_A " ci/x.yml",
	    "removed .github/x.yml;added a/new;added ci/x.yml;removed z");
	/* A mode change alone (made executable, turned into a link) and a
	 * submodule moved are changes. */
	diff("blob 100644 " SHA_A " run.sh;commit 160000 " SHA_A " vendor/lib;"
	    "blob 100644 " SHA_A " l",
	    "blob 100755 " SHA_A " run.sh;commit 160000 " SHA_B " vendor/lib;"
	    "blob 120000 " SHA_A " l",
	    "modified l;modified run.sh;modified vendor/lib");
	diff("", "", "");
	diff("", "blob 100644 " SHA_A " only", "added only");
}

static void
test_parse_refuses(void **state)
{
	struct json_object *o = NULL;
	struct tree t;
	char path[FACTS_PATH_MAX + 64], entry[FACTS_PATH_MAX + 128];

	(void)state;
	/* Malformed entries: short sha, upper-case sha, unknown type,
	 * non-numeric mode, empty path. */
	assert_int_equal(parse("blob 100644 abc a", 0, &t), TH_ERR_PROTOCOL);
	assert_int_equal(parse("blob 100644 "
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a", 0, &t),
	    TH_ERR_PROTOCOL);
	assert_int_equal(parse("tag 100644 " SHA_A " a", 0, &t),
	    TH_ERR_PROTOCOL);
	assert_int_equal(parse("blob 10064x " SHA_A " a", 0, &t),
	    TH_ERR_PROTOCOL);
	/* The same path twice. */
	assert_int_equal(parse("blob 100644 " SHA_A " a;blob 100644 " SHA_B
	    " a", 0, &t), TH_ERR_PROTOCOL);
	/* A path over FACTS_PATH_MAX. */
	memset(path, 'p', FACTS_PATH_MAX + 1);
	path[FACTS_PATH_MAX + 1] = '\0';
	snprintf(entry, sizeof(entry), "blob 100644 " SHA_A " %s", path);
	assert_int_equal(parse(entry, 0, &t), TH_ERR_PROTOCOL);
	path[FACTS_PATH_MAX] = '\0';
	snprintf(entry, sizeof(entry), "blob 100644 " SHA_A " %s", path);
	assert_int_equal(parse(entry, 0, &t), 0);
	tree_free(&t);
	/* No "truncated": a cut listing could pass for a whole one. */
	assert_int_equal(json_parse_strict("{\"tree\":[]}", 11, 64, &o), 0);
	assert_int_equal(tree_parse(o, &t), TH_ERR_PROTOCOL);
	json_object_put(o);
	assert_int_equal(json_parse_strict("[]", 2, 64, &o), 0);
	assert_int_equal(tree_parse(o, &t), TH_ERR_PROTOCOL);
	json_object_put(o);
}

/* A truncated listing is parsed and flagged, and never diffed. */
static void
test_truncated(void **state)
{
	struct tree b, h;
	struct pr_facts f;

	(void)state;
	memset(&f, 0, sizeof(f));
	assert_int_equal(parse("blob 100644 " SHA_A " a", 1, &b), 0);
	assert_true(b.truncated);
	assert_int_equal(parse("blob 100644 " SHA_A " a", 0, &h), 0);
	assert_int_not_equal(tree_diff(&b, &h, &f), 0);
	assert_int_not_equal(tree_diff(&h, &b, &f), 0);
	assert_int_equal(f.nfiles, 0);
	tree_free(&b);
	tree_free(&h);
}

/* More than FACTS_FILES_MAX differences: TH_ERR_TOO_LONG, the facts
 * bounded. */
static void
test_too_many(void **state)
{
	struct tree b, h;
	struct pr_facts f;
	size_t i;

	(void)state;
	memset(&f, 0, sizeof(f));
	memset(&b, 0, sizeof(b));
	assert_int_equal(parse("", 0, &h), 0);
	tree_free(&h);
	h.n = FACTS_FILES_MAX + 1;
	assert_non_null(h.e = calloc(h.n, sizeof(*h.e)));
	assert_non_null(h.paths = malloc(h.n * 24));
	for (i = 0; i < h.n; i++) {
		snprintf(h.paths + i * 24, 24, "f%05zu", i);
		h.e[i].path = h.paths + i * 24;
		snprintf(h.e[i].mode, sizeof(h.e[i].mode), "100644");
		memcpy(h.e[i].sha, SHA_A, FACTS_SHA_LEN + 1);
	}
	assert_int_equal(tree_diff(&b, &h, &f), TH_ERR_TOO_LONG);
	assert_int_equal(f.nfiles, FACTS_FILES_MAX);
	facts_free(&f);
	tree_free(&h);
}

/* The reason an incomplete list carries is the refusal's. */
static void
test_refusal_reason(void **state)
{
	static const char pol[] = "{\"protected_paths\":[\"secret/**\"]}";
	struct json_object *policy = NULL, *ev = NULL;
	struct pr_facts f;
	int r;

	(void)state;
	memset(&f, 0, sizeof(f));
	memset(f.pr.head_sha, 'a', FACTS_SHA_LEN);
	snprintf(f.pr.base_ref, sizeof(f.pr.base_ref), "main");
	f.pr.open = 1;
	f.pr.mergeable = 1;
	f.pr.changed_files = 400;
	f.files_pinned = 1;
	snprintf(f.files_why, sizeof(f.files_why), "GitHub's listing of the "
	    "tree of the head commit is truncated");
	assert_int_equal(json_parse_strict(pol, sizeof(pol) - 1, 256, &policy),
	    0);
	r = peval_merge(policy, &f, "main", 1764000000, &ev);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_string_equal(th_errmsg(r), "changed files could not all be "
	    "read: GitHub's listing of the tree of the head commit is "
	    "truncated");
	json_object_put(ev);
	json_object_put(policy);
}

/* max_changed_files on files told from trees: a rename's two paths count
 * once, and a changed_files lower than the paths can be is not believed. */
static int
max_files(int64_t changed_files, int64_t max)
{
	static const char *const file[][2] = { { "docs/old.md", "removed" },
	    { "docs/new.md", "added" }, { "a.c", "modified" },
	    { "b.c", "modified" }, { "c.c", "modified" } };
	struct json_object *policy = NULL, *ev = NULL;
	struct pr_facts f;
	char pol[64];
	size_t i;
	int r;

	memset(&f, 0, sizeof(f));
	memset(f.pr.head_sha, 'a', FACTS_SHA_LEN);
	snprintf(f.pr.base_ref, sizeof(f.pr.base_ref), "main");
	f.pr.open = 1;
	f.pr.mergeable = 1;
	f.pr.changed_files = changed_files;
	f.files_pinned = f.files_by_tree = f.files_complete = 1;
	for (i = 0; i < sizeof(file) / sizeof(file[0]); i++)
		assert_int_equal(facts_add_file(&f, file[i][0], file[i][1]), 0);
	snprintf(pol, sizeof(pol), "{\"max_changed_files\":%lld}",
	    (long long)max);
	assert_int_equal(json_parse_strict(pol, strlen(pol), sizeof(pol),
	    &policy), 0);
	r = peval_merge(policy, &f, "main", 1764000000, &ev);
	json_object_put(ev);
	json_object_put(policy);
	facts_free(&f);
	return r;
}

static void
test_max_files(void **state)
{
	int r;

	(void)state;
	/* Five paths, one rename: four files, as GitHub counts them. */
	assert_int_equal(max_files(4, 4), 0);
	r = max_files(4, 3);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_string_equal(th_errmsg(r), "changed files: 4, at most 3 "
	    "allowed");
	/* GitHub saying 2 does not make the five paths fewer than four. */
	r = max_files(2, 3);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_string_equal(th_errmsg(r), "changed files: 4, at most 3 "
	    "allowed");
	/* Nor does GitHub's higher count get lowered. */
	r = max_files(9, 8);
	assert_string_equal(th_errmsg(r), "changed files: 9, at most 8 "
	    "allowed");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_refusal_reason),
		cmocka_unit_test(test_max_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
