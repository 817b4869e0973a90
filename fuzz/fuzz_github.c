/* GitHub's replies about a pull request (broker/facts.c), then the policy
 * evaluated on what was parsed, as thresholdd does before a merge; the
 * reply header lines the HTTP client reads (broker/http.c: the Link header
 * decides where the next page, and the token, goes); and a page of the
 * lists recovery reads (broker/recover.c: comments, pull requests or
 * deployments the App may have made).  Byte 0 picks: the pull request, a
 * page of check runs, statuses, reviews or files (the rest of the facts
 * made up so the rules run), header lines, or a recovery list page (its
 * bits choosing which matching rules apply). */
#include <string.h>

#include "facts.h"
#include "fuzz.h"
#include "http.h"
#include "json.h"
#include "peval.h"
#include "recover.h"

static const char policy_text[] = "{\"required_checks\":[\"ci/test\"],"
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

/* Items handed to the matcher as gh_list does, until it stops the walk;
 * what it keeps must be within bounds and only ids it was given. */
static void
recovery_page(unsigned rules, const uint8_t *data, size_t size)
{
	static struct rec_made m;
	struct json_object *o = NULL, *item;
	int64_t id;
	size_t i, k;
	int r = 0;

	memset(&m, 0, sizeof(m));
	m.app = "threshold[bot]";
	m.since = 1764000000;
	m.login_member = rules & 1 ? "creator" : "user";
	m.id_member = rules & 2 ? "number" : "id";
	m.body = rules & 4 ? "LGTM" : NULL;
	m.head = rules & 8 ? "topic" : NULL;
	m.newest_first = (rules & 16) != 0;
	if (json_parse_strict((const char *)data, size, 1 << 20, &o) != 0 ||
	    !json_object_is_type(o, json_type_array))
		goto out;
	for (i = 0; r == 0 && i < json_object_array_length(o); i++)
		r = rec_made_match(json_object_array_get_idx(o, i), &m);
	FUZZ_ASSERT(r <= 1 && (r != 1 || m.newest_first));
	FUZZ_ASSERT(m.nids <= REC_CANDIDATES);
	for (k = 0; k < m.nids; k++) {
		for (i = 0; i < json_object_array_length(o); i++) {
			item = json_object_array_get_idx(o, i);
			if (json_get_int64(item, m.id_member, &id) == 0 &&
			    id == m.ids[k])
				break;
		}
		FUZZ_ASSERT(i < json_object_array_length(o));
	}
 out:
	json_object_put(o);
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
	kind = data[0] % (FACTS_LISTS + 3);
	if (kind == FACTS_LISTS + 1) {
		headers(data + 1, size - 1);
		return 0;
	}
	if (kind == FACTS_LISTS + 2) {
		recovery_page(data[0] / (FACTS_LISTS + 3), data + 1, size - 1);
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
	(void)peval_merge(policy, &f, "main", 1764000000, &ev);
 out:
	json_object_put(ev);
	json_object_put(o);
	facts_free(&f);
	return 0;
}
