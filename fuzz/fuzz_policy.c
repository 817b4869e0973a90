/* Policies (written by humans, carried in delegations) and what they are
 * matched against: GitHub's file paths (protected_paths globs) and the
 * clock in a named time zone.  Byte 0 picks: a glob and a path separated
 * by NUL, or a policy document evaluated for an operation. */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "peval.h"
#include "policy.h"

#define POLICY_MAX	(16 * 1024)

static void
glob(const uint8_t *p, size_t n)
{
	char buf[1024], *path;

	if (n >= sizeof(buf))
		return;
	memcpy(buf, p, n);
	buf[n] = '\0';
	if ((path = memchr(buf, '\0', n)) == NULL || path == buf + n)
		return;
	path++;
	(void)glob_match(buf, path);
}

static void
policy(const uint8_t *p, size_t n, time_t now)
{
	struct json_object *o = NULL, *ev = NULL;

	if (json_parse_strict((const char *)p, n, POLICY_MAX, &o) != 0 ||
	    policy_validate(o) != 0)
		goto out;
	FUZZ_ASSERT(policy_narrows(o, o) == 0);
	(void)peval_op(o, "main", now, &ev);
	FUZZ_ASSERT(ev != NULL);
 out:
	json_object_put(ev);
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		glob(data + 1, size - 1);
	else
		policy(data + 1, size - 1, 1764000000 + (time_t)data[0] * 3571);
	return 0;
}
