#include <stdio.h>
#include <string.h>

#include "err.h"
#include "utf8.h"
#include "scope.h"

static int
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
	    c == '_' || c == '-';
}

int
name_valid(const char *s, const char *kind)
{
	size_t k = strlen(kind), i, n;

	if (strncmp(s, kind, k) != 0 || s[k] != ':')
		return 0;
	s += k + 1;
	n = strlen(s);
	if (n == 0 || n > NAME_MAX_LEN || s[0] == '.' || s[0] == '_' ||
	    s[0] == '-')
		return 0;
	for (i = 0; i < n; i++)
		if (!name_char(s[i]))
			return 0;
	return 1;
}

static int
repo_part_valid(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max || (n <= 2 && s[0] == '.'))
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		    s[i] == '_' || s[i] == '.'))
			return 0;
	return 1;
}

int
repo_valid(const char *s, int allow_wildcard)
{
	const char *slash = strchr(s, '/');

	if (slash == NULL || strlen(s) > SCOPE_REPO_MAX ||
	    !repo_part_valid(s, (size_t)(slash - s), 39))
		return 0;
	if (allow_wildcard && strcmp(slash + 1, "*") == 0)
		return 1;
	return repo_part_valid(slash + 1, strlen(slash + 1), 100);
}

/* A conservative subset of git's ref-name rules: no control characters,
 * spaces, "..", "~^:?*[\\", no leading or trailing '/' or '.', no "//";
 * and UTF-8, since the name goes into capabilities and the audit log,
 * whose canonical JSON holds only Unicode text. */
int
branch_valid(const char *s, int allow_wildcard)
{
	size_t i, n = strlen(s);

	if (allow_wildcard && n >= 2 && strcmp(s + n - 2, "/*") == 0)
		n -= 2;
	if (n == 0 || n > SCOPE_BRANCH_MAX || s[0] == '/' || s[0] == '.' ||
	    s[n - 1] == '/' || s[n - 1] == '.' || s[0] == '-' ||
	    !utf8_valid(s, n))
		return 0;
	for (i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f ||
		    strchr("~^:?*[\\", s[i]) != NULL)
			return 0;
		if (i > 0 && ((s[i] == '.' && s[i - 1] == '.') ||
		    (s[i] == '/' && s[i - 1] == '/')))
			return 0;
	}
	return strstr(s, "@{") == NULL;
}

int
op_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > SCOPE_OP_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '.' ||
		    s[i] == '_'))
			return 0;
	return 1;
}

static int
string_list(struct json_object *a, const char *what, int (*valid)(const char *,
    int))
{
	size_t i, n;
	struct json_object *v;

	if (!json_object_is_type(a, json_type_array))
		return th_fail(TH_ERR_INVALID, "%s is not an array", what);
	n = json_object_array_length(a);
	if (n == 0 || n > SCOPE_LIST_MAX)
		return th_fail(TH_ERR_INVALID, "%s must have 1 to %d entries",
		    what, SCOPE_LIST_MAX);
	for (i = 0; i < n; i++) {
		v = json_object_array_get_idx(a, i);
		if (!json_object_is_type(v, json_type_string) ||
		    !valid(json_object_get_string(v), 1))
			return th_fail(TH_ERR_INVALID, "bad entry in %s", what);
	}
	return 0;
}

int
scope_validate(struct json_object *ops)
{
	struct json_object *s, *v;
	size_t i, n;
	int r;

	if (!json_object_is_type(ops, json_type_array))
		return th_fail(TH_ERR_INVALID, "ops is not an array");
	n = json_object_array_length(ops);
	if (n == 0 || n > SCOPE_OPS_MAX)
		return th_fail(TH_ERR_INVALID, "ops must have 1 to %d scopes",
		    SCOPE_OPS_MAX);
	for (i = 0; i < n; i++) {
		s = json_object_array_get_idx(ops, i);
		if (!json_object_is_type(s, json_type_object))
			return th_fail(TH_ERR_INVALID, "scope is not an object");
		json_object_object_foreach(s, k, val) {
			(void)val;
			if (strcmp(k, "op") != 0 && strcmp(k, "repos") != 0 &&
			    strcmp(k, "targets") != 0)
				return th_fail(TH_ERR_INVALID, "scope member "
				    "\"%s\" not allowed", k);
		}
		if (!json_object_object_get_ex(s, "op", &v) ||
		    !json_object_is_type(v, json_type_string) ||
		    !op_valid(json_object_get_string(v)))
			return th_fail(TH_ERR_INVALID, "scope has no valid op");
		if (!json_object_object_get_ex(s, "repos", &v))
			return th_fail(TH_ERR_INVALID, "scope has no repos");
		if ((r = string_list(v, "repos", repo_valid)) != 0)
			return r;
		if (json_object_object_get_ex(s, "targets", &v) &&
		    (r = string_list(v, "targets", branch_valid)) != 0)
			return r;
	}
	return 0;
}

/* Does pattern p (exact, or a prefix followed by "/" and "*") match
 * value v?  Used for repositories and branches alike. */
static int
pattern_matches(const char *p, const char *v)
{
	size_t n = strlen(p);

	if (n >= 2 && strcmp(p + n - 2, "/*") == 0)
		return strncmp(p, v, n - 1) == 0 && v[n - 1] != '\0';
	return strcmp(p, v) == 0;
}

/* Is pattern c no wider than pattern p? */
static int
pattern_within(const char *c, const char *p)
{
	size_t n = strlen(c);

	if (n >= 2 && strcmp(c + n - 2, "/*") == 0) {
		/* A wildcard is within a wildcard covering its prefix. */
		return pattern_matches(p, c) && strlen(p) >= 2 &&
		    strcmp(p + strlen(p) - 2, "/*") == 0;
	}
	return pattern_matches(p, c);
}

static int
list_matches(struct json_object *a, const char *v)
{
	size_t i;

	for (i = 0; i < json_object_array_length(a); i++)
		if (pattern_matches(json_object_get_string(
		    json_object_array_get_idx(a, i)), v))
			return 1;
	return 0;
}

static int
list_within(struct json_object *child, struct json_object *parent,
    const char **bad)
{
	size_t i, j;
	const char *c;

	for (i = 0; i < json_object_array_length(child); i++) {
		c = json_object_get_string(json_object_array_get_idx(child, i));
		for (j = 0; j < json_object_array_length(parent); j++)
			if (pattern_within(c, json_object_get_string(
			    json_object_array_get_idx(parent, j))))
				break;
		if (j == json_object_array_length(parent)) {
			*bad = c;
			return 0;
		}
	}
	return 1;
}

static const char *
scope_op(struct json_object *s)
{
	struct json_object *v;

	json_object_object_get_ex(s, "op", &v);
	return json_object_get_string(v);
}

static struct json_object *
scope_list(struct json_object *s, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(s, key, &v) ? v : NULL;
}

int
scope_covers(struct json_object *ops, const struct scope_req *req)
{
	struct json_object *s, *targets;
	size_t i;

	for (i = 0; i < json_object_array_length(ops); i++) {
		s = json_object_array_get_idx(ops, i);
		if (strcmp(scope_op(s), req->op) != 0 ||
		    !list_matches(scope_list(s, "repos"), req->repo))
			continue;
		/* Targets restrict the operations that have one (a merge's
		 * base, a deployment's ref); a comment has none. */
		targets = scope_list(s, "targets");
		if (targets != NULL && req->target != NULL &&
		    !list_matches(targets, req->target))
			continue;
		return 1;
	}
	return 0;
}

/* Is child scope c within parent scope p?  On no, *why says which part. */
static int
one_within(struct json_object *c, struct json_object *p, char *why,
    size_t whylen)
{
	struct json_object *ct = scope_list(c, "targets");
	struct json_object *pt = scope_list(p, "targets");
	const char *bad;

	if (strcmp(scope_op(c), scope_op(p)) != 0)
		return 0;
	if (!list_within(scope_list(c, "repos"), scope_list(p, "repos"),
	    &bad)) {
		snprintf(why, whylen, "%s: repo %s not granted above",
		    scope_op(c), bad);
		return 0;
	}
	if (pt == NULL)
		return 1;
	if (ct == NULL) {
		snprintf(why, whylen, "%s: drops the target restriction",
		    scope_op(c));
		return 0;
	}
	if (!list_within(ct, pt, &bad)) {
		snprintf(why, whylen, "%s: target %s not granted above",
		    scope_op(c), bad);
		return 0;
	}
	return 1;
}

int
scope_within(struct json_object *child, struct json_object *parent)
{
	struct json_object *c;
	char why[256];
	size_t i, j;

	for (i = 0; i < json_object_array_length(child); i++) {
		c = json_object_array_get_idx(child, i);
		snprintf(why, sizeof(why), "operation %s not granted above",
		    scope_op(c));
		for (j = 0; j < json_object_array_length(parent); j++)
			if (one_within(c, json_object_array_get_idx(parent, j),
			    why, sizeof(why)))
				break;
		if (j == json_object_array_length(parent))
			return th_fail(TH_ERR_DENIED, "%s", why);
	}
	return 0;
}
