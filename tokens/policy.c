#include <stdio.h>
#include <string.h>

#include "err.h"
#include "policy.h"
#include "scope.h"

static const char *const days[] = {
	"mon", "tue", "wed", "thu", "fri", "sat", "sun"
};

static int
is_string_list(struct json_object *v, int (*valid)(const char *))
{
	size_t i, n;
	struct json_object *e;

	if (!json_object_is_type(v, json_type_array))
		return 0;
	n = json_object_array_length(v);
	if (n > POLICY_LIST_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_string) ||
		    json_object_get_string_len(e) == 0 ||
		    json_object_get_string_len(e) > POLICY_STRING_MAX ||
		    (valid != NULL && !valid(json_object_get_string(e))))
			return 0;
	}
	return 1;
}

int
policy_check_entry(struct json_object *e, const char **context,
    int64_t *app_id)
{
	struct json_object *c, *a;
	size_t n;

	if (json_object_is_type(e, json_type_string)) {
		c = e;
		*app_id = 0;
	} else if (json_object_is_type(e, json_type_object) &&
	    json_object_object_length(e) == 2 &&
	    json_object_object_get_ex(e, "context", &c) &&
	    json_object_is_type(c, json_type_string) &&
	    json_object_object_get_ex(e, "app_id", &a) &&
	    json_object_is_type(a, json_type_int)) {
		*app_id = json_object_get_int64(a);
		if (*app_id < 1 || *app_id > POLICY_APP_ID_MAX)
			return -1;
	} else
		return -1;
	n = (size_t)json_object_get_string_len(c);
	if (n == 0 || n > POLICY_STRING_MAX)
		return -1;
	*context = json_object_get_string(c);
	return 0;
}

static int
is_check_list(struct json_object *v)
{
	const char *context;
	int64_t app_id;
	size_t i, n;

	if (!json_object_is_type(v, json_type_array))
		return 0;
	n = json_object_array_length(v);
	if (n > POLICY_LIST_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (policy_check_entry(json_object_array_get_idx(v, i),
		    &context, &app_id) != 0)
			return 0;
	return 1;
}

static int
is_day(const char *s)
{
	size_t i;

	for (i = 0; i < 7; i++)
		if (strcmp(s, days[i]) == 0)
			return 1;
	return 0;
}

static int
is_branch(const char *s)
{
	return branch_valid(s, 1);
}

int
policy_hhmm(struct json_object *v)
{
	const char *s;
	int h, m;

	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	if (strlen(s) != 5 || s[2] != ':' ||
	    strspn(s, "0123456789") != 2 || strspn(s + 3, "0123456789") != 2)
		return -1;
	h = (s[0] - '0') * 10 + (s[1] - '0');
	m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 24 || m > 59 || (h == 24 && m != 0))
		return -1;
	return h * 60 + m;
}

int
policy_tz_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > 64 || s[0] == '/' || strstr(s, "..") != NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr("/_+-", s[i])))
			return 0;
	return 1;
}

static int
window_validate(struct json_object *w)
{
	struct json_object *v;
	int start, end;

	if (!json_object_is_type(w, json_type_object))
		return th_fail(TH_ERR_INVALID, "time_window is not an object");
	json_object_object_foreach(w, k, val) {
		(void)val;
		if (strcmp(k, "tz") && strcmp(k, "days") &&
		    strcmp(k, "start") && strcmp(k, "end"))
			return th_fail(TH_ERR_INVALID, "time_window member "
			    "\"%s\" not allowed", k);
	}
	if (!json_object_object_get_ex(w, "tz", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    !policy_tz_valid(json_object_get_string(v)))
		return th_fail(TH_ERR_INVALID, "time_window needs an IANA tz");
	if (!json_object_object_get_ex(w, "days", &v) ||
	    !is_string_list(v, is_day) || json_object_array_length(v) == 0)
		return th_fail(TH_ERR_INVALID, "time_window days must be "
		    "among mon..sun");
	if (!json_object_object_get_ex(w, "start", &v) ||
	    (start = policy_hhmm(v)) < 0 ||
	    !json_object_object_get_ex(w, "end", &v) ||
	    (end = policy_hhmm(v)) < 0 ||
	    start >= end)
		return th_fail(TH_ERR_INVALID, "time_window needs start < end "
		    "as HH:MM");
	return 0;
}

int
policy_validate(struct json_object *p)
{
	struct json_object *flag;
	int64_t n;

	if (!json_object_is_type(p, json_type_object))
		return th_fail(TH_ERR_INVALID, "policy is not an object");
	json_object_object_foreach(p, k, v) {
		if (strcmp(k, "required_checks") == 0) {
			if (!is_check_list(v))
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be a list of check names or {\"context\", "
				    "\"app_id\"} objects", k);
		} else if (strcmp(k, "protected_paths") == 0) {
			if (!is_string_list(v, NULL))
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be a list of strings", k);
		} else if (strcmp(k, "allowed_targets") == 0) {
			if (!is_string_list(v, is_branch))
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be a list of branch names", k);
		} else if (strcmp(k, "min_approvals") == 0 ||
		    strcmp(k, "max_changed_files") == 0) {
			n = json_object_get_int64(v);
			if (!json_object_is_type(v, json_type_int) || n < 0 ||
			    n > 3000)
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be an integer 0..3000", k);
		} else if (strcmp(k, "max_push_bytes") == 0) {
			n = json_object_get_int64(v);
			if (!json_object_is_type(v, json_type_int) || n < 1 ||
			    n > POLICY_PUSH_BYTES_MAX)
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be an integer 1..2^40", k);
		} else if (strcmp(k, "fresh_approvals") == 0 ||
		    strcmp(k, "allow_force_push") == 0 ||
		    strcmp(k, "allow_branch_delete") == 0) {
			if (!json_object_is_type(v, json_type_boolean))
				return th_fail(TH_ERR_INVALID, "policy %s must "
				    "be true or false", k);
		} else if (strcmp(k, "time_window") == 0) {
			if (window_validate(v) != 0)
				return TH_ERR_INVALID;
		} else
			return th_fail(TH_ERR_INVALID, "unknown policy rule "
			    "\"%s\"", k);
	}
	/* A branch deleted can be pushed anew with any history: deleting
	 * is force-pushing in two steps. */
	if (json_object_object_get_ex(p, "allow_branch_delete", &flag) &&
	    json_object_get_boolean(flag) &&
	    !(json_object_object_get_ex(p, "allow_force_push", &flag) &&
	    json_object_get_boolean(flag)))
		return th_fail(TH_ERR_INVALID, "policy allow_branch_delete "
		    "needs allow_force_push (a deleted branch can be pushed "
		    "anew with any history)");
	return 0;
}

static int
list_has(struct json_object *a, const char *s)
{
	size_t i;

	for (i = 0; i < json_object_array_length(a); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(a,
		    i)), s) == 0)
			return 1;
	return 0;
}

/* Every entry of sub is in super?  *missing names the first that is not. */
static int
subset(struct json_object *sub, struct json_object *super,
    const char **missing)
{
	size_t i;
	const char *s;

	for (i = 0; i < json_object_array_length(sub); i++) {
		s = json_object_get_string(json_object_array_get_idx(sub, i));
		if (!list_has(super, s)) {
			*missing = s;
			return 0;
		}
	}
	return 1;
}

/* Every check the parent requires, the child requires from the same
 * source: a check pinned to an App stays pinned to it, and an unpinned one
 * may become pinned. */
static int
checks_narrow(struct json_object *c, struct json_object *p)
{
	const char *pctx, *cctx;
	int64_t papp, capp;
	size_t i, j;

	for (i = 0; i < json_object_array_length(p); i++) {
		policy_check_entry(json_object_array_get_idx(p, i), &pctx,
		    &papp);
		for (j = 0; j < json_object_array_length(c); j++) {
			policy_check_entry(json_object_array_get_idx(c, j),
			    &cctx, &capp);
			if (strcmp(pctx, cctx) == 0 &&
			    (papp == 0 || capp == papp))
				break;
		}
		if (j < json_object_array_length(c))
			continue;
		if (papp == 0)
			return th_fail(TH_ERR_DENIED, "policy required_checks "
			    "drops %s", pctx);
		return th_fail(TH_ERR_DENIED, "policy required_checks drops "
		    "%s from App %lld", pctx, (long long)papp);
	}
	return 0;
}

static int
window_narrows(struct json_object *c, struct json_object *p)
{
	struct json_object *cv, *pv;
	const char *missing;

	json_object_object_get_ex(c, "tz", &cv);
	json_object_object_get_ex(p, "tz", &pv);
	if (strcmp(json_object_get_string(cv), json_object_get_string(pv)))
		return th_fail(TH_ERR_DENIED, "time_window changes the time "
		    "zone");
	json_object_object_get_ex(c, "days", &cv);
	json_object_object_get_ex(p, "days", &pv);
	if (!subset(cv, pv, &missing))
		return th_fail(TH_ERR_DENIED, "time_window adds %s", missing);
	json_object_object_get_ex(c, "start", &cv);
	json_object_object_get_ex(p, "start", &pv);
	if (policy_hhmm(cv) < policy_hhmm(pv))
		return th_fail(TH_ERR_DENIED, "time_window starts earlier");
	json_object_object_get_ex(c, "end", &cv);
	json_object_object_get_ex(p, "end", &pv);
	if (policy_hhmm(cv) > policy_hhmm(pv))
		return th_fail(TH_ERR_DENIED, "time_window ends later");
	return 0;
}

/* A permission (a true boolean) the child has must be the parent's. */
static int
grants_more(struct json_object *child, struct json_object *parent,
    const char *k)
{
	struct json_object *c, *p;

	return json_object_object_get_ex(child, k, &c) &&
	    json_object_get_boolean(c) &&
	    !(json_object_object_get_ex(parent, k, &p) &&
	    json_object_get_boolean(p));
}

int
policy_narrows(struct json_object *child, struct json_object *parent)
{
	struct json_object *c;
	const char *missing;

	if (grants_more(child, parent, "allow_force_push"))
		return th_fail(TH_ERR_DENIED, "policy allows force-pushes its "
		    "parent does not");
	if (grants_more(child, parent, "allow_branch_delete"))
		return th_fail(TH_ERR_DENIED, "policy allows deleting branches "
		    "where its parent does not");

	json_object_object_foreach(parent, k, p) {
		/* Permissions, unlike conditions, may be dropped. */
		if (strncmp(k, "allow_", 6) == 0 && strcmp(k,
		    "allowed_targets") != 0)
			continue;
		if (!json_object_object_get_ex(child, k, &c))
			return th_fail(TH_ERR_DENIED, "policy drops %s", k);
		if (strcmp(k, "required_checks") == 0) {
			if (checks_narrow(c, p) != 0)
				return TH_ERR_DENIED;
		} else if (strcmp(k, "protected_paths") == 0) {
			if (!subset(p, c, &missing))
				return th_fail(TH_ERR_DENIED, "policy %s drops "
				    "%s", k, missing);
		} else if (strcmp(k, "allowed_targets") == 0) {
			if (!subset(c, p, &missing))
				return th_fail(TH_ERR_DENIED, "policy %s adds "
				    "%s", k, missing);
		} else if (strcmp(k, "min_approvals") == 0) {
			if (json_object_get_int64(c) < json_object_get_int64(p))
				return th_fail(TH_ERR_DENIED, "policy lowers "
				    "min_approvals");
		} else if (strcmp(k, "max_changed_files") == 0 ||
		    strcmp(k, "max_push_bytes") == 0) {
			if (json_object_get_int64(c) > json_object_get_int64(p))
				return th_fail(TH_ERR_DENIED, "policy raises "
				    "%s", k);
		} else if (strcmp(k, "fresh_approvals") == 0) {
			if (json_object_get_boolean(p) &&
			    !json_object_get_boolean(c))
				return th_fail(TH_ERR_DENIED, "policy drops "
				    "fresh_approvals");
		} else if (strcmp(k, "time_window") == 0) {
			if (window_narrows(c, p) != 0)
				return TH_ERR_DENIED;
		}
	}
	return 0;
}
