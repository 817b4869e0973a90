/* The policy a delegation carries (docs/policy.md): its schema, and whether
 * one policy is at least as strict as another ("narrowing").  Evaluation
 * against GitHub belongs to the broker. */
#ifndef TH_POLICY_H
#define TH_POLICY_H

#include <stdint.h>

#include <json-c/json.h>

#define POLICY_LIST_MAX		64
#define POLICY_STRING_MAX	256
#define POLICY_DOC_MAX		(8 * 1024)
#define POLICY_PUSH_BYTES_MAX	(1LL << 40)
#define POLICY_APP_ID_MAX	((1LL << 53) - 1)	/* exact in any JSON */

/* 0 if p is a well-formed policy object; TH_ERR_INVALID with the reason. */
int	policy_validate(struct json_object *p);
/* 0 if child keeps every condition of parent and is at least as strict;
 * TH_ERR_DENIED naming the weakened condition otherwise. */
int	policy_narrows(struct json_object *child, struct json_object *parent);

/* One required_checks entry: a check name (*app_id 0: any source), or
 * {"context": name, "app_id": N}, a check run only the GitHub App N can
 * satisfy.  0, or -1 if e is neither. */
int	policy_check_entry(struct json_object *e, const char **context,
	    int64_t *app_id);

/* A time_window's "HH:MM" (exactly two digits, a colon, two digits, from
 * 00:00 to 24:00) -> minutes since midnight, or -1. */
int	policy_hhmm(struct json_object *v);

/* 1 if s can be an IANA zone name: letters, digits, "/_+-", no leading
 * '/', no "..", at most 64 bytes (it becomes a path under zoneinfo). */
int	policy_tz_valid(const char *s);

#endif
