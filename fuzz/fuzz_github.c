/* GitHub's replies about a pull request (broker/facts.c), then the policy
 * evaluated on what was parsed, as thresholdd does before a merge.  Byte 0
 * picks the reply: the pull request, or a page of check runs, statuses,
 * reviews or files (the rest of the facts made up so the rules run). */
#include <string.h>

#include "facts.h"
#include "fuzz.h"
#include "json.h"
#include "peval.h"

static const char policy_text[] = "{\"required_checks\":[\"ci/test\"],"
    "\"min_approvals\":1,\"protected_paths\":[\".github/workflows/**\","
    "\"/secrets/\",\"*.pem\"],\"allowed_targets\":[\"main\"]}";

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
	kind = data[0] % (FACTS_LISTS + 1);
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
