/* Changed files told from tree listings, one directory level at a time
 * (broker/tree.c): what a pull request of 300 files or more is judged by. */
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

/* One level of base -> head at path: the files as "status path;..." and
 * the directories to list next as "base>head path;..." (a side a
 * directory is not on is "-"), each in name order. */
static void
diff(const char *base, const char *head, const char *path, const char *want,
    const char *want_dirs)
{
	struct tree b, h;
	struct pr_facts f;
	struct tree_dir dirs[8];
	char got[4096] = "";
	size_t i, n = 0, ndirs = 0;

	memset(&f, 0, sizeof(f));
	assert_int_equal(parse(base, 0, &b), 0);
	assert_int_equal(parse(head, 0, &h), 0);
	assert_int_equal(tree_diff(&b, &h, path, &f, dirs, &ndirs, 8), 0);
	for (i = 0; i < f.nfiles; i++)
		n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s %s",
		    i ? ";" : "", f.files[i].status, f.files[i].filename);
	assert_string_equal(got, want);
	for (i = n = 0; i < ndirs; i++)
		n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%.2s>%.2s %s",
		    i ? ";" : "", *dirs[i].base ? dirs[i].base : "-",
		    *dirs[i].head ? dirs[i].head : "-", dirs[i].path);
	got[n] = '\0';
	assert_string_equal(got, want_dirs);
	facts_free(&f);
	tree_free(&b);
	tree_free(&h);
}

static void
test_diff(void **state)
{
	(void)state;
	/* An unchanged file is not listed, nor an unchanged directory
	 * descended into; a changed one is, under its full path. */
	diff("tree 040000 " SHA_A " src;tree 040000 " SHA_A " lib;"
	    "blob 100644 " SHA_A " README",
	    "tree 040000 " SHA_B " src;tree 040000 " SHA_A " lib;"
	    "blob 100644 " SHA_B " README", "",
	    "modified README", "aa>bb src");
	diff("blob 100644 " SHA_A " a.c", "blob 100644 " SHA_B " a.c",
	    "src/x", "modified src/x/a.c", "");
	/* Added, removed, a rename as both names, in name order whatever
	 * the listing's order; a directory on one side only is listed
	 * there only. */
	diff("blob 100644 " SHA_A " z;tree 040000 " SHA_A " .github;"
	    "blob 100644 " SHA_B " keep",
	    "blob 100644 " SHA_B " keep;blob 100644 " SHA_A " new;"
	    "tree 040000 " SHA_C " ci", "",
	    "added new;removed z", "aa>- .github;->cc ci");
	/* A mode change alone (made executable, turned into a link) and a
	 * submodule moved are changes. */
	diff("blob 100644 " SHA_A " run.sh;commit 160000 " SHA_A " lib;"
	    "blob 100644 " SHA_A " l",
	    "blob 100755 " SHA_A " run.sh;commit 160000 " SHA_B " lib;"
	    "blob 120000 " SHA_A " l", "",
	    "modified l;modified lib;modified run.sh", "");
	/* A file that became a directory: removed, and the directory listed
	 * as new; and the other way round. */
	diff("blob 100644 " SHA_A " x;tree 040000 " SHA_B " y",
	    "tree 040000 " SHA_C " x;blob 100644 " SHA_A " y", "d",
	    "removed d/x;added d/y", "->cc d/x;bb>- d/y");
	diff("", "", "", "", "");
	diff("", "blob 100644 " SHA_A " only", "", "added only", "");
}

static void
test_parse_refuses(void **state)
{
	struct json_object *o = NULL;
	struct tree t;
	char path[FACTS_PATH_MAX + 64], entry[FACTS_PATH_MAX + 128];

	(void)state;
	/* Malformed entries: short sha, upper-case sha, unknown type,
	 * non-numeric mode, a '/' in a name (a recursive listing). */
	assert_int_equal(parse("blob 100644 abc a", 0, &t), TH_ERR_PROTOCOL);
	assert_int_equal(parse("blob 100644 "
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a", 0, &t),
	    TH_ERR_PROTOCOL);
	assert_int_equal(parse("tag 100644 " SHA_A " a", 0, &t),
	    TH_ERR_PROTOCOL);
	assert_int_equal(parse("blob 10064x " SHA_A " a", 0, &t),
	    TH_ERR_PROTOCOL);
	assert_int_equal(parse("blob 100644 " SHA_A " a/b", 0, &t),
	    TH_ERR_PROTOCOL);
	/* The same name twice. */
	assert_int_equal(parse("blob 100644 " SHA_A " a;tree 040000 " SHA_B
	    " a", 0, &t), TH_ERR_PROTOCOL);
	/* A name over FACTS_PATH_MAX. */
	memset(path, 'p', FACTS_PATH_MAX + 1);
	path[FACTS_PATH_MAX + 1] = '\0';
	snprintf(entry, sizeof(entry), "blob 100644 " SHA_A " %s", path);
	assert_int_equal(parse(entry, 0, &t), TH_ERR_PROTOCOL);
	path[FACTS_PATH_MAX] = '\0';
	snprintf(entry, sizeof(entry), "blob 100644 " SHA_A " %s", path);
	assert_int_equal(parse(entry, 0, &t), 0);
	tree_free(&t);
	/* A truncated listing, or one that does not say. */
	assert_int_equal(parse("blob 100644 " SHA_A " a", 1, &t),
	    TH_ERR_TOO_LONG);
	assert_int_equal(json_parse_strict("{\"tree\":[]}", 11, 64, &o), 0);
	assert_int_equal(tree_parse(o, &t), TH_ERR_PROTOCOL);
	json_object_put(o);
	assert_int_equal(json_parse_strict("[]", 2, 64, &o), 0);
	assert_int_equal(tree_parse(o, &t), TH_ERR_PROTOCOL);
	json_object_put(o);
}

/* Bounds: a full path over FACTS_PATH_MAX, more directories than the
 * walk takes, more than FACTS_FILES_MAX files: TH_ERR_TOO_LONG. */
static void
test_bounds(void **state)
{
	struct tree b, h;
	struct pr_facts f;
	struct tree_dir dirs[2];
	char deep[FACTS_PATH_MAX + 1];
	size_t i, ndirs = 0;

	(void)state;
	memset(&f, 0, sizeof(f));
	memset(deep, 'd', FACTS_PATH_MAX - 1);
	deep[FACTS_PATH_MAX - 1] = '\0';
	assert_int_equal(parse("", 0, &b), 0);
	assert_int_equal(parse("blob 100644 " SHA_A " x", 0, &h), 0);
	assert_int_equal(tree_diff(&b, &h, deep, &f, dirs, &ndirs, 2),
	    TH_ERR_TOO_LONG);
	tree_free(&h);
	/* An unchanged name whose path would be too long, beside a change
	 * whose path is not: its path is never needed. */
	tree_free(&b);
	deep[FACTS_PATH_MAX - 3] = '\0';
	assert_int_equal(parse("blob 100644 " SHA_A " unchanged", 0, &b), 0);
	assert_int_equal(parse("blob 100644 " SHA_A " unchanged;"
	    "blob 100644 " SHA_A " x", 0, &h), 0);
	assert_int_equal(tree_diff(&b, &h, deep, &f, dirs, &ndirs, 2), 0);
	assert_int_equal(f.nfiles, 1);
	facts_free(&f);
	tree_free(&h);
	tree_free(&b);
	assert_int_equal(parse("", 0, &b), 0);
	assert_int_equal(parse("tree 040000 " SHA_A " x;tree 040000 " SHA_A
	    " y;tree 040000 " SHA_A " z", 0, &h), 0);
	assert_int_equal(tree_diff(&b, &h, "", &f, dirs, &ndirs, 2),
	    TH_ERR_TOO_LONG);
	assert_int_equal(ndirs, 2);
	tree_free(&h);
	tree_free(&b);
	/* FACTS_FILES_MAX + 1 names, made by hand. */
	memset(&b, 0, sizeof(b));
	h.n = FACTS_FILES_MAX + 1;
	assert_non_null(h.e = calloc(h.n, sizeof(*h.e)));
	assert_non_null(h.names = malloc(h.n * 24));
	for (i = 0; i < h.n; i++) {
		snprintf(h.names + i * 24, 24, "f%05zu", i);
		h.e[i].name = h.names + i * 24;
		snprintf(h.e[i].mode, sizeof(h.e[i].mode), "100644");
		memcpy(h.e[i].sha, SHA_A, FACTS_SHA_LEN + 1);
	}
	ndirs = 0;
	assert_int_equal(tree_diff(&b, &h, "", &f, dirs, &ndirs, 2),
	    TH_ERR_TOO_LONG);
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
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_refusal_reason),
		cmocka_unit_test(test_max_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
