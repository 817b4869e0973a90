/* Policy evaluation for a merge (docs/policy.md): the delegation's policy,
 * already validated by policy_validate (tokens/policy.h), against the facts
 * read from GitHub about one head SHA.  Pure: no I/O besides reading the
 * system's time-zone database. */
#ifndef TH_PEVAL_H
#define TH_PEVAL_H

#include <time.h>

#include <json-c/json.h>

#include "facts.h"

/* Evaluates every rule of policy for merging f's PR into target at time
 * now.  Returns 0 if all pass, TH_ERR_DENIED naming the first failing rule
 * in one line otherwise (th_fail), e.g. "required checks: ci/test is
 * failure", "protected path: .github/workflows/ci.yml matches
 * .github/workflows/ + **".  Either way *evidence (if not NULL) is set to a new
 * JSON object with what was decided on: {"head_sha", "target", "rules":
 * [...names evaluated...], "checks": [{"name","conclusion"}...],
 * "statuses": [{"context","state"}...], "approvers": [...logins...],
 * "files": N, "matched_path": "...", "window": "...", "failed_rule": "..."}
 * (members present when relevant). */
int	peval_merge(struct json_object *policy, const struct pr_facts *f,
	    const char *target, time_t now, struct json_object **evidence);

/* 1 if the policy has a rule on a pull request's changed files
 * (protected_paths, max_changed_files): only then are they read. */
int	peval_reads_files(struct json_object *policy);

/* The rules that apply to an operation other than a merge (creating a PR,
 * commenting, deploying, dispatching a workflow): allowed_targets for its
 * target branch (NULL when it has none) and time_window.  The rules about
 * a pull request's content apply to merges only.  Same return and evidence
 * conventions as peval_merge. */
int	peval_op(struct json_object *policy, const char *target, time_t now,
	    struct json_object **evidence);

/* gitignore-style match of a repository path (no leading '/') against one
 * pattern: '*' and '?' never match '/', "[...]" classes, "**" spans
 * directories ("**" + "/x", "x/" + "**", "a/" + "**" + "/b"), a pattern
 * without a '/' (other than a trailing one) matches at any depth, a leading
 * '/' anchors at the root, a trailing '/' matches a directory and
 * everything in it.  1 if it matches. */
int	glob_match(const char *pattern, const char *path);

/* For a process whose other threads may read the environment (curl reads
 * proxy variables on every transfer): call once before starting them.
 * window_contains switches TZ and back; that is a replacement in place
 * only while TZ exists, whereas adding or removing a variable reallocates
 * the environment under readers' feet.  Sets TZ to ":/etc/localtime",
 * what an unset TZ means, unless it is set. */
void	window_env_init(void);

/* 1 if now falls inside window {"tz","days","start","end"} in that IANA time
 * zone (DST-correct), 0 if outside, negative (TH_ERR_INVALID) if the zone is
 * unknown -- callers treat that as a refusal.  *local gets e.g.
 * "Tue 09:30 Europe/Paris". */
int	window_contains(struct json_object *window, time_t now, char *local,
	    size_t locallen);

#endif
