/* GitHub's replies about a pull request (broker/facts.c), then the policy
 * evaluated on what was parsed, as thresholdd does before a merge; the
 * reply header lines the HTTP client reads (broker/http.c: the Link header
 * decides where the next page, and the token, goes); and a page of the
 * lists recovery reads (broker/recover.c: comments, pull requests or
 * deployments the App may have made); and two listings of one directory
 * (broker/tree.c, one directory level: the changed files of a pull request
 * of 300 or more).
 * Byte 0 picks: the pull request, a page of check runs, statuses, reviews
 * or files (the rest of the facts made up so the rules run), header
 * lines, a recovery list page (its bits choosing which matching rules
 * apply), or two tree listings separated by a NUL byte. */
#include <string.h>
#include <strings.h>
#include <time.h>

#include "facts.h"
#include "fuzz.h"
#include "http.h"
#include "json.h"
#include "peval.h"
#include "recover.h"
#include "tree.h"

static const char policy_text[] = "{\"required_checks\":[\"ci/test\","
    "{\"context\":\"lint\",\"app_id\":15368}],"
    "\"min_approvals\":1,\"protected_paths\":[\".github/workflows/**\","
    "\"/secrets/\",\"*.pem\"],\"allowed_targets\":[\"main\"]}";

/* Lines separated by '\n' (kept, as curl hands them).  A next URL found
 * must be what followed a '<' in the input. */
static void
headers(const uint8_t *data, size_t size)
{
	static struct http_req req;
	char quoted[HTTP_URL_MAX + 1];
	const uint8_t *p = data, *nl;
	size_t n = size, len, k;

	memset(&req, 0, sizeof(req));
	for (; n > 0; p += k, n -= k) {
		nl = memchr(p, '\n', n);
		k = nl != NULL ? (size_t)(nl - p) + 1 : n;
		http_header_line(&req, (const char *)p, k);
	}
	FUZZ_ASSERT(req.retry_after >= -1 && req.rl_remaining >= -1 &&
	    req.rl_reset >= -1);
	if (req.next[0] == '\0')
		return;
	len = strnlen(req.next, sizeof(req.next));
	FUZZ_ASSERT(len < sizeof(req.next));
	quoted[0] = '<';
	memcpy(quoted + 1, req.next, len);
	FUZZ_ASSERT(memmem(data, size, quoted, len + 1) != NULL);
}

/* When an item was made, by the matcher's rules, checked again here: -1
 * if it says nothing readable. */
static int64_t
made_at(struct json_object *item)
{
	struct tm tm;
	const char *s, *end;

	memset(&tm, 0, sizeof(tm));
	if (json_get_string(item, "created_at", &s) != 0 ||
	    (end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL ||
	    *end != '\0')
		return -1;
	return (int64_t)timegm(&tm);
}

/* Whether item is one the matcher may keep: made by the App within the
 * window, with the body and head asked for. */
static int
candidate(const struct rec_made *m, struct json_object *item)
{
	struct json_object *who, *head;
	const char *v;
	int64_t t = made_at(item);

	if (t < m->since || t > m->until ||
	    !json_object_object_get_ex(item, m->login_member, &who) ||
	    json_get_string(who, "login", &v) != 0 || strcasecmp(v, m->app) != 0)
		return 0;
	if (m->body != NULL && (json_get_string(item, "body", &v) != 0 ||
	    strcmp(v, m->body) != 0))
		return 0;
	if (m->head != NULL && (!json_object_object_get_ex(item, "head",
	    &head) || json_get_string(head, "ref", &v) != 0 ||
	    strcmp(v, m->head) != 0))
		return 0;
	return 1;
}

/* Items handed to the matcher as gh_list does, until it stops the walk.
 * Every id it keeps is of an item that is a candidate (checked here
 * independently), every candidate before the stop is kept, and it stops
 * only on a newest-first list, at an item older than the window. */
static void
recovery_page(unsigned rules, const uint8_t *data, size_t size)
{
	static struct rec_made m;
	struct json_object *o = NULL, *item;
	size_t i, k, n, seen = 0, want = 0;
	int64_t id;
	int r = 0, found;

	memset(&m, 0, sizeof(m));
	m.app = "threshold[bot]";
	m.since = 1764000000;
	m.until = m.since + 80;
	m.login_member = rules & 1 ? "creator" : "user";
	m.id_member = rules & 2 ? "number" : "id";
	m.body = rules & 4 ? "LGTM" : NULL;
	m.head = rules & 8 ? "topic" : NULL;
	m.newest_first = (rules & 16) != 0;
	if (json_parse_strict((const char *)data, size, 1 << 20, &o) != 0 ||
	    !json_object_is_type(o, json_type_array))
		goto out;
	n = json_object_array_length(o);
	for (i = 0; r == 0 && i < n; i++) {
		r = rec_made_match(json_object_array_get_idx(o, i), &m);
		seen = i + 1;
	}
	FUZZ_ASSERT(r <= 1 && m.nids <= REC_CANDIDATES);
	if (r == 1)
		FUZZ_ASSERT(m.newest_first && made_at(json_object_array_get_idx(
		    o, seen - 1)) < m.since);
	for (k = 0; k < m.nids; k++) {
		found = 0;
		for (i = 0; i < seen && !found; i++) {
			item = json_object_array_get_idx(o, i);
			found = json_get_int64(item, m.id_member, &id) == 0 &&
			    id == m.ids[k] && candidate(&m, item);
		}
		FUZZ_ASSERT(found);
	}
	if (r >= 0) {
		for (i = 0; i < seen; i++)
			want += candidate(&m, json_object_array_get_idx(o, i));
		FUZZ_ASSERT(want == m.nids);
	}
 out:
	json_object_put(o);
}

static const struct tree_entry *
tree_find(const struct tree *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		if (strcmp(t->e[i].name, name) == 0)
			return &t->e[i];
	return NULL;
}

/* What one level's diff must report for a name on either side: the files
 * (0..1) and the directories to list next (0..2). */
static void
tree_expect(const struct tree_entry *b, const struct tree_entry *h,
    size_t *files, size_t *dirs)
{
	const struct tree_entry *x[2] = { b, h };
	int k;

	if (b != NULL && h != NULL && b->dir == h->dir &&
	    strcmp(b->sha, h->sha) == 0 && strcmp(b->mode, h->mode) == 0)
		return;
	if (b != NULL && h != NULL && b->dir && h->dir) {
		(*dirs)++;
		return;
	}
	if (b != NULL && h != NULL && !b->dir && !h->dir) {
		(*files)++;
		return;
	}
	for (k = 0; k < 2; k++)
		if (x[k] != NULL)
			*(x[k]->dir ? dirs : files) += 1;
}

/* Two listings of one directory, parsed and diffed one level.  Each is
 * sorted without a name twice; every file reported is, by a plain search
 * of both, added, removed or modified as it says; every directory to list
 * next has its SHAs on the sides it is a directory on; and the counts are
 * those a plain walk over both expects. */
static void
tree_pair(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 0, size);
	const struct tree_entry *b, *h;
	struct json_object *o[2] = { NULL, NULL };
	struct tree_dir dirs[64];
	struct tree t[2];
	struct pr_facts f;
	size_t len[2], i, ndirs = 0, want_files = 0, want_dirs = 0;
	int k;

	memset(t, 0, sizeof(t));
	memset(&f, 0, sizeof(f));
	if (sep == NULL)
		return;
	len[0] = (size_t)(sep - data);
	len[1] = size - len[0] - 1;
	for (k = 0; k < 2; k++) {
		if (json_parse_strict((const char *)(k ? sep + 1 : data),
		    len[k], 1 << 20, &o[k]) != 0 || tree_parse(o[k], &t[k]) != 0)
			goto out;
		FUZZ_ASSERT(t[k].n <= TREE_ENTRIES_MAX);
		for (i = 1; i < t[k].n; i++)
			FUZZ_ASSERT(strcmp(t[k].e[i - 1].name, t[k].e[i].name)
			    < 0);
	}
	if (tree_diff(&t[0], &t[1], "", &f, dirs, &ndirs, 64) != 0) {
		FUZZ_ASSERT(f.nfiles == FACTS_FILES_MAX || ndirs == 64);
		goto out;
	}
	for (i = 0; i < f.nfiles; i++) {
		b = tree_find(&t[0], f.files[i].filename);
		h = tree_find(&t[1], f.files[i].filename);
		if (strcmp(f.files[i].status, "added") == 0)
			FUZZ_ASSERT(h != NULL && !h->dir &&
			    (b == NULL || b->dir));
		else if (strcmp(f.files[i].status, "removed") == 0)
			FUZZ_ASSERT(b != NULL && !b->dir &&
			    (h == NULL || h->dir));
		else
			FUZZ_ASSERT(strcmp(f.files[i].status, "modified") == 0 &&
			    b != NULL && h != NULL && !b->dir && !h->dir &&
			    (strcmp(b->sha, h->sha) != 0 ||
			    strcmp(b->mode, h->mode) != 0));
	}
	for (i = 0; i < ndirs; i++) {
		b = tree_find(&t[0], dirs[i].path);
		h = tree_find(&t[1], dirs[i].path);
		FUZZ_ASSERT(*dirs[i].base == '\0' ? (b == NULL || !b->dir) :
		    (b != NULL && b->dir && strcmp(b->sha, dirs[i].base) == 0));
		FUZZ_ASSERT(*dirs[i].head == '\0' ? (h == NULL || !h->dir) :
		    (h != NULL && h->dir && strcmp(h->sha, dirs[i].head) == 0));
	}
	for (i = 0; i < t[0].n; i++)
		tree_expect(&t[0].e[i], tree_find(&t[1], t[0].e[i].name),
		    &want_files, &want_dirs);
	for (i = 0; i < t[1].n; i++)
		if (tree_find(&t[0], t[1].e[i].name) == NULL)
			tree_expect(NULL, &t[1].e[i], &want_files, &want_dirs);
	FUZZ_ASSERT(want_files == f.nfiles && want_dirs == ndirs);
 out:
	for (k = 0; k < 2; k++) {
		tree_free(&t[k]);
		json_object_put(o[k]);
	}
	facts_free(&f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct json_object *policy;
	struct json_object *o = NULL, *ev = NULL;
	struct pr_facts f;
	size_t i;
	int kind;

	if (policy == NULL && json_parse_strict(policy_text,
	    sizeof(policy_text) - 1, 4096, &policy) != 0)
		abort();
	if (size < 1)
		return 0;
	memset(&f, 0, sizeof(f));
	kind = data[0] % (FACTS_LISTS + 4);
	if (kind == FACTS_LISTS + 1) {
		headers(data + 1, size - 1);
		return 0;
	}
	if (kind == FACTS_LISTS + 2) {
		recovery_page(data[0] / (FACTS_LISTS + 4), data + 1, size - 1);
		return 0;
	}
	if (kind == FACTS_LISTS + 3) {
		tree_pair(data + 1, size - 1);
		return 0;
	}
	if (json_parse_strict((const char *)data + 1, size - 1, 1 << 20, &o)
	    != 0)
		goto out;
	if (kind == FACTS_LISTS) {
		if (facts_parse_pr(o, &f.pr) != 0)
			goto out;
		FUZZ_ASSERT(strlen(f.pr.head_sha) == FACTS_SHA_LEN);
	} else {
		memset(f.pr.head_sha, 'a', FACTS_SHA_LEN);
		snprintf(f.pr.base_ref, sizeof(f.pr.base_ref), "main");
		f.pr.open = 1;
		f.pr.mergeable = 1;
		if (facts_parse_page((enum facts_list)kind, o, &f) != 0)
			goto out;
		f.files_complete = 1;
	}
	FUZZ_ASSERT(f.nchecks <= FACTS_CHECKS_MAX &&
	    f.nstatuses <= FACTS_STATUSES_MAX &&
	    f.nreviews <= FACTS_REVIEWS_MAX && f.nfiles <= FACTS_FILES_MAX);
	for (i = 0; i < f.nfiles; i++)
		FUZZ_ASSERT(strlen(f.files[i].filename) < FACTS_PATH_MAX + 1);
	for (i = 0; i < f.nchecks; i++)
		FUZZ_ASSERT(f.checks[i].app_id >= 0);
	(void)peval_merge(policy, &f, "main", 1764000000, &ev);
 out:
	json_object_put(ev);
	json_object_put(o);
	facts_free(&f);
	return 0;
}
