/* Merge policy evaluation: every rule passing and failing with its reason,
 * review and check semantics, gitignore globs, time windows across DST. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "err.h"
#include "facts.h"
#include "peval.h"
#include "policy.h"

#define SHA	"0123456789abcdef0123456789abcdef01234567"
#define OLD	"fedcba9876543210fedcba9876543210fedcba98"
#define CAP	16

static struct json_object *
j(const char *s)
{
	struct json_object *o = json_tokener_parse(s);

	assert_non_null(o);
	return o;
}

static time_t
utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return timegm(&tm);
}

/* Tue 2026-03-31 10:00 UTC, 12:00 in Paris. */
#define NOW	utc(2026, 3, 31, 10, 0)

/* An open PR by alice into main, nothing reported yet. */
static struct pr_facts *
bare(void)
{
	struct pr_facts *f;

	assert_non_null(f = calloc(1, sizeof(*f)));
	f->pr.number = 7;
	strcpy(f->pr.head_sha, SHA);
	strcpy(f->pr.head_ref, "feature");
	strcpy(f->pr.base_ref, "main");
	strcpy(f->pr.author, "alice");
	f->pr.open = 1;
	f->pr.mergeable = 1;
	assert_non_null(f->checks = calloc(CAP, sizeof(*f->checks)));
	assert_non_null(f->statuses = calloc(CAP, sizeof(*f->statuses)));
	assert_non_null(f->reviews = calloc(CAP, sizeof(*f->reviews)));
	assert_non_null(f->files = calloc(CAP, sizeof(*f->files)));
	f->files_complete = 1;
	return f;
}

static void
add_check(struct pr_facts *f, const char *name, const char *status,
    const char *conclusion)
{
	assert_true(f->nchecks < CAP);
	strcpy(f->checks[f->nchecks].name, name);
	strcpy(f->checks[f->nchecks].status, status);
	strcpy(f->checks[f->nchecks].conclusion, conclusion);
	f->nchecks++;
}

static void
add_status(struct pr_facts *f, const char *context, const char *state)
{
	assert_true(f->nstatuses < CAP);
	strcpy(f->statuses[f->nstatuses].context, context);
	strcpy(f->statuses[f->nstatuses].state, state);
	f->nstatuses++;
}

static void
add_review(struct pr_facts *f, const char *user, const char *state,
    const char *commit)
{
	assert_true(f->nreviews < CAP);
	f->reviews[f->nreviews].id = (int64_t)f->nreviews + 100;
	strcpy(f->reviews[f->nreviews].user, user);
	strcpy(f->reviews[f->nreviews].state, state);
	strcpy(f->reviews[f->nreviews].commit_id, commit);
	f->reviews[f->nreviews].write = 1;
	f->nreviews++;
}

static void
add_file(struct pr_facts *f, const char *name, const char *previous)
{
	assert_true(f->nfiles < CAP);
	strcpy(f->files[f->nfiles].filename, name);
	strcpy(f->files[f->nfiles].previous, previous);
	strcpy(f->files[f->nfiles].status, *previous ? "renamed" : "modified");
	f->nfiles++;
}

/* A PR every rule below is happy with. */
static struct pr_facts *
good(void)
{
	struct pr_facts *f = bare();

	add_check(f, "ci/test", "completed", "success");
	add_status(f, "ci/ext", "success");
	add_review(f, "bob", "APPROVED", SHA);
	add_file(f, "src/a.c", "");
	return f;
}

static void
done(struct pr_facts *f)
{
	facts_free(f);
	free(f);
}

static int
eval(const char *policy, const struct pr_facts *f, time_t now,
    struct json_object **ev)
{
	struct json_object *p = j(policy);
	int r;

	assert_int_equal(policy_validate(p), 0);
	r = peval_merge(p, f, "main", now, ev);
	json_object_put(p);
	return r;
}

static void
passes(const char *policy, const struct pr_facts *f)
{
	struct json_object *ev = NULL;
	int r = eval(policy, f, NOW, &ev);

	if (r != 0)
		fail_msg("refused: %s", th_errmsg(r));
	assert_non_null(ev);
	assert_false(json_object_object_get_ex(ev, "failed_rule", NULL));
	json_object_put(ev);
}

/* Refused with exactly reason; returns the evidence (caller puts it). */
static struct json_object *
refused_at(const char *policy, const struct pr_facts *f, time_t now,
    const char *reason)
{
	struct json_object *ev = NULL;

	assert_int_equal(eval(policy, f, now, &ev), TH_ERR_DENIED);
	assert_string_equal(th_errmsg(TH_ERR_DENIED), reason);
	assert_non_null(ev);
	assert_true(json_object_object_get_ex(ev, "failed_rule", NULL));
	return ev;
}

static void
refused(const char *policy, const struct pr_facts *f, const char *reason)
{
	json_object_put(refused_at(policy, f, NOW, reason));
}

static const char *
ev_str(struct json_object *ev, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(ev, key, &v))
		return NULL;
	return json_object_get_string(v);
}

/* v as compact JSON, '/' unescaped. */
static const char *
plain(struct json_object *v)
{
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void
test_all_pass_evidence(void **state)
{
	const char *p = "{\"required_checks\":[\"ci/test\",\"ci/ext\"],"
	    "\"min_approvals\":1,\"fresh_approvals\":true,"
	    "\"protected_paths\":[\".github/**\"],"
	    "\"allowed_targets\":[\"main\",\"dev\"],\"max_changed_files\":5,"
	    "\"time_window\":{\"tz\":\"Europe/Paris\",\"days\":[\"tue\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}";
	struct pr_facts *f = good();
	struct json_object *ev = NULL, *v;

	(void)state;
	assert_int_equal(eval(p, f, NOW, &ev), 0);
	assert_string_equal(ev_str(ev, "head_sha"), SHA);
	assert_string_equal(ev_str(ev, "target"), "main");
	assert_true(json_object_object_get_ex(ev, "rules", &v));
	assert_string_equal(plain(v), "[\"pull_request\",\"allowed_targets\","
	    "\"required_checks\",\"min_approvals\",\"protected_paths\","
	    "\"max_changed_files\",\"time_window\"]");
	assert_true(json_object_object_get_ex(ev, "checks", &v));
	assert_string_equal(plain(v),
	    "[{\"name\":\"ci/test\",\"conclusion\":\"success\","
	    "\"app_id\":0}]");
	assert_true(json_object_object_get_ex(ev, "statuses", &v));
	assert_string_equal(plain(v),
	    "[{\"context\":\"ci/ext\",\"state\":\"success\"}]");
	assert_true(json_object_object_get_ex(ev, "approvers", &v));
	assert_string_equal(plain(v), "[\"bob\"]");
	assert_true(json_object_object_get_ex(ev, "files", &v));
	assert_int_equal(json_object_get_int64(v), 1);
	assert_string_equal(ev_str(ev, "window"), "Tue 12:00 Europe/Paris");
	assert_null(ev_str(ev, "matched_path"));
	assert_null(ev_str(ev, "failed_rule"));
	json_object_put(ev);

	/* An empty policy still checks the pull request itself. */
	passes("{}", f);
	/* No evidence wanted. */
	assert_int_equal(eval(p, f, NOW, NULL), 0);
	done(f);
}

static void
test_pr_state(void **state)
{
	struct pr_facts *f = good();
	struct json_object *ev, *v;

	(void)state;
	f->pr.merged = 1;
	f->pr.open = 0;
	refused("{}", f, "pull request is merged");
	f->pr.merged = 0;
	refused("{}", f, "pull request is closed");
	f->pr.open = 1;
	f->pr.draft = 1;
	ev = refused_at("{\"min_approvals\":1}", f, NOW,
	    "pull request is draft");
	assert_string_equal(ev_str(ev, "failed_rule"), "pull_request");
	/* Evaluation stops at the first failure. */
	assert_true(json_object_object_get_ex(ev, "rules", &v));
	assert_int_equal(json_object_array_length(v), 1);
	assert_false(json_object_object_get_ex(ev, "approvers", NULL));
	json_object_put(ev);
	f->pr.draft = 0;
	strcpy(f->pr.base_ref, "dev");
	refused("{}", f, "pull request targets dev, not main");
	done(f);
}

static void
test_targets(void **state)
{
	struct pr_facts *f = good();
	struct json_object *p, *ev = NULL;

	(void)state;
	passes("{\"allowed_targets\":[\"dev\",\"main\"]}", f);
	ev = refused_at("{\"allowed_targets\":[\"dev\"]}", f, NOW,
	    "target main is not in allowed_targets");
	assert_string_equal(ev_str(ev, "failed_rule"), "allowed_targets");
	json_object_put(ev);
	refused("{\"allowed_targets\":[]}", f,
	    "target main is not in allowed_targets");
	/* Exact names: a "release/" "*" entry matches no real branch. */
	strcpy(f->pr.base_ref, "release/1");
	p = j("{\"allowed_targets\":[\"release/*\"]}");
	assert_int_equal(policy_validate(p), 0);
	assert_int_equal(peval_merge(p, f, "release/1", NOW, NULL),
	    TH_ERR_DENIED);
	assert_string_equal(th_errmsg(TH_ERR_DENIED),
	    "target release/1 is not in allowed_targets");
	json_object_put(p);
	done(f);
}

static void
test_checks(void **state)
{
	const char *any = "{\"required_checks\":[]}";
	struct pr_facts *f;
	struct json_object *ev, *v;

	(void)state;
	/* Nothing reported is GitHub's "pending", never success. */
	f = bare();
	ev = refused_at(any, f, NOW, "required checks: none reported on "
	    "0123456");
	assert_string_equal(ev_str(ev, "failed_rule"), "required_checks");
	json_object_put(ev);
	/* Without the rule nothing is required. */
	passes("{}", f);
	/* Statuses alone are enough. */
	add_status(f, "ci/ext", "success");
	passes(any, f);
	passes("{\"required_checks\":[\"ci/ext\"]}", f);
	done(f);

	/* Neutral and skipped pass, as in branch protection. */
	f = bare();
	add_check(f, "ci/test", "completed", "success");
	add_check(f, "docs", "completed", "neutral");
	add_check(f, "deploy-preview", "completed", "skipped");
	passes("{\"required_checks\":[\"ci/test\",\"docs\","
	    "\"deploy-preview\"]}", f);
	refused("{\"required_checks\":[\"ci/test\",\"ci/lint\"]}", f,
	    "required checks: ci/lint is missing");
	done(f);

	/* Not yet completed. */
	f = bare();
	add_check(f, "ci/test", "completed", "success");
	add_check(f, "build", "in_progress", "");
	ev = refused_at(any, f, NOW, "required checks: build is in_progress");
	assert_true(json_object_object_get_ex(ev, "checks", &v));
	assert_string_equal(plain(v),
	    "[{\"name\":\"ci/test\",\"conclusion\":\"success\","
	    "\"app_id\":0},{\"name\":\"build\",\"conclusion\":"
	    "\"in_progress\",\"app_id\":0}]");
	json_object_put(ev);
	strcpy(f->checks[1].status, "queued");
	refused(any, f, "required checks: build is queued");
	/* Completed without a conclusion is not a pass. */
	strcpy(f->checks[1].status, "completed");
	refused(any, f, "required checks: build is unknown");
	done(f);

	/* Failing conclusions, required or not: everything must pass. */
	f = bare();
	add_check(f, "ci/test", "completed", "failure");
	refused("{\"required_checks\":[\"ci/test\"]}", f,
	    "required checks: ci/test is failure");
	strcpy(f->checks[0].conclusion, "cancelled");
	refused(any, f, "required checks: ci/test is cancelled");
	strcpy(f->checks[0].conclusion, "timed_out");
	refused(any, f, "required checks: ci/test is timed_out");
	strcpy(f->checks[0].conclusion, "action_required");
	refused(any, f, "required checks: ci/test is action_required");
	strcpy(f->checks[0].conclusion, "success");
	passes(any, f);

	/* Commit statuses must be success. */
	add_status(f, "ci/ext", "failure");
	ev = refused_at(any, f, NOW, "required checks: ci/ext is failure");
	assert_true(json_object_object_get_ex(ev, "statuses", &v));
	assert_string_equal(plain(v),
	    "[{\"context\":\"ci/ext\",\"state\":\"failure\"}]");
	json_object_put(ev);
	strcpy(f->statuses[0].state, "pending");
	refused(any, f, "required checks: ci/ext is pending");
	strcpy(f->statuses[0].state, "error");
	refused(any, f, "required checks: ci/ext is error");
	strcpy(f->statuses[0].state, "success");
	passes("{\"required_checks\":[\"ci/test\",\"ci/ext\"]}", f);
	done(f);
}

/* A check pinned to an App is satisfied only by a run that App reported:
 * not by a status, nor by another App's run of the same name. */
static void
test_checks_pinned(void **state)
{
	const char *pinned = "{\"required_checks\":[{\"context\":"
	    "\"ci/test\",\"app_id\":4242}]}";
	struct pr_facts *f;
	struct json_object *ev, *v;

	(void)state;
	f = bare();
	add_status(f, "ci/test", "success");
	passes("{\"required_checks\":[\"ci/test\"]}", f);
	refused(pinned, f, "required checks: ci/test from App 4242 is "
	    "missing");
	add_check(f, "ci/test", "completed", "success");
	f->checks[0].app_id = 15368;
	refused(pinned, f, "required checks: ci/test from App 4242 is "
	    "missing (App 15368 reported it)");
	add_check(f, "ci/test", "completed", "success");
	f->checks[1].app_id = 4242;
	passes(pinned, f);
	/* The evidence names each run's App. */
	add_check(f, "lint", "completed", "failure");
	f->checks[2].app_id = 77;
	ev = refused_at(pinned, f, NOW, "required checks: lint is failure");
	assert_true(json_object_object_get_ex(ev, "checks", &v));
	assert_string_equal(plain(v),
	    "[{\"name\":\"ci/test\",\"conclusion\":\"success\","
	    "\"app_id\":15368},{\"name\":\"ci/test\",\"conclusion\":"
	    "\"success\",\"app_id\":4242},{\"name\":\"lint\","
	    "\"conclusion\":\"failure\",\"app_id\":77}]");
	json_object_put(ev);
	/* Every run must still pass, the pinned App's included. */
	strcpy(f->checks[2].conclusion, "success");
	passes(pinned, f);
	strcpy(f->checks[1].conclusion, "failure");
	refused(pinned, f, "required checks: ci/test is failure");
	done(f);
	/* A run GitHub names no App for (0) satisfies no pin. */
	f = bare();
	add_check(f, "ci/test", "completed", "success");
	refused(pinned, f, "required checks: ci/test from App 4242 is "
	    "missing");
	passes("{\"required_checks\":[\"ci/test\"]}", f);
	done(f);
}

static void
test_reviews(void **state)
{
	const char *one = "{\"min_approvals\":1}";
	const char *two = "{\"min_approvals\":2}";
	const char *fresh2 = "{\"min_approvals\":2,\"fresh_approvals\":true}";
	struct pr_facts *f;
	struct json_object *ev, *v;

	(void)state;
	f = bare();
	refused(one, f, "approvals: 0 of 1 required");
	passes("{\"min_approvals\":0}", f);
	add_review(f, "bob", "PENDING", SHA);
	refused(one, f, "approvals: 0 of 1 required");
	add_review(f, "bob", "APPROVED", SHA);
	passes(one, f);
	/* A later comment does not undo an approval. */
	add_review(f, "bob", "COMMENTED", SHA);
	passes(one, f);
	/* A later change request does. */
	add_review(f, "bob", "CHANGES_REQUESTED", SHA);
	refused(one, f, "approvals: 0 of 1 required");
	/* And a later approval restores it. */
	add_review(f, "bob", "APPROVED", SHA);
	passes(one, f);
	/* One reviewer counts once, however often he approves, whatever
	 * the case of his login. */
	add_review(f, "Bob", "APPROVED", SHA);
	refused(two, f, "approvals: 1 of 2 required");
	done(f);

	/* A dismissed approval is no approval. */
	f = bare();
	add_review(f, "bob", "DISMISSED", SHA);
	refused(one, f, "approvals: 0 of 1 required");
	add_review(f, "carol", "APPROVED", SHA);
	add_review(f, "carol", "DISMISSED", SHA);
	refused(one, f, "approvals: 0 of 1 required");
	done(f);

	/* The author's own approval is ignored. */
	f = bare();
	add_review(f, "alice", "APPROVED", SHA);
	add_review(f, "ALICE", "APPROVED", SHA);
	refused(one, f, "approvals: 0 of 1 required");
	add_review(f, "bob", "APPROVED", SHA);
	passes(one, f);
	refused(two, f, "approvals: 1 of 2 required");
	done(f);

	/* Fresh approvals: only those given on the head SHA. */
	f = bare();
	add_review(f, "bob", "APPROVED", OLD);
	add_review(f, "carol", "APPROVED", SHA);
	passes(two, f);
	passes("{\"min_approvals\":2,\"fresh_approvals\":false}", f);
	ev = refused_at(fresh2, f, NOW,
	    "approvals: 1 of 2 required (stale: bob)");
	assert_string_equal(ev_str(ev, "failed_rule"), "min_approvals");
	assert_true(json_object_object_get_ex(ev, "approvers", &v));
	assert_string_equal(plain(v), "[\"carol\"]");
	json_object_put(ev);
	/* A comment on the head does not refresh an old approval. */
	add_review(f, "bob", "COMMENTED", SHA);
	refused(fresh2, f, "approvals: 1 of 2 required (stale: bob)");
	/* A new approval on the head does. */
	add_review(f, "bob", "APPROVED", SHA);
	passes(fresh2, f);
	done(f);

	f = bare();
	add_review(f, "bob", "APPROVED", OLD);
	add_review(f, "carol", "APPROVED", OLD);
	add_review(f, "dave", "APPROVED", "");
	refused("{\"min_approvals\":1,\"fresh_approvals\":true}", f,
	    "approvals: 0 of 1 required (stale: bob, carol, dave)");
	done(f);

	/* Only a reviewer who may write approves, as on GitHub: anyone who
	 * can read a public repository can submit an APPROVED review.  An
	 * access GitHub did not tell (-1) counts as none. */
	f = bare();
	add_review(f, "stranger", "APPROVED", SHA);
	f->reviews[0].write = 0;
	add_review(f, "bot", "APPROVED", SHA);
	f->reviews[1].write = -1;
	refused(one, f, "approvals: 0 of 1 required (without write access: "
	    "stranger) (write access not known: bot)");
	add_review(f, "carol", "APPROVED", SHA);
	passes(one, f);
	refused(two, f, "approvals: 1 of 2 required (without write access: "
	    "stranger) (write access not known: bot)");
	done(f);
}

static void
test_protected_paths(void **state)
{
	const char *p = "{\"protected_paths\":[\".github/workflows/**\","
	    "\"/CODEOWNERS\",\"*.pem\",\"secrets/\"]}";
	struct pr_facts *f;
	struct json_object *ev, *v;

	(void)state;
	f = good();
	add_file(f, "docs/readme.md", "");
	ev = NULL;
	assert_int_equal(eval(p, f, NOW, &ev), 0);
	assert_true(json_object_object_get_ex(ev, "files", &v));
	assert_int_equal(json_object_get_int64(v), 2);
	json_object_put(ev);

	add_file(f, ".github/workflows/ci.yml", "");
	ev = refused_at(p, f, NOW, "protected path: .github/workflows/ci.yml "
	    "matches .github/workflows/**");
	assert_string_equal(ev_str(ev, "matched_path"),
	    ".github/workflows/ci.yml");
	assert_string_equal(ev_str(ev, "failed_rule"), "protected_paths");
	json_object_put(ev);
	done(f);

	/* A rename out of a protected place, and one into it. */
	f = good();
	add_file(f, "docs/old-ci.yml", ".github/workflows/ci.yml");
	ev = refused_at(p, f, NOW, "protected path: .github/workflows/ci.yml "
	    "matches .github/workflows/**");
	assert_string_equal(ev_str(ev, "matched_path"),
	    ".github/workflows/ci.yml");
	json_object_put(ev);
	done(f);
	f = good();
	add_file(f, "deploy/secrets/prod.env", "deploy/prod.env");
	refused(p, f, "protected path: deploy/secrets/prod.env matches "
	    "secrets/");
	done(f);

	/* Anchored vs anywhere. */
	f = good();
	add_file(f, "docs/CODEOWNERS", "");
	add_file(f, "certs/ca.crt", "");
	passes(p, f);
	add_file(f, "certs/deep/server.pem", "");
	refused(p, f, "protected path: certs/deep/server.pem matches *.pem");
	done(f);
	f = good();
	add_file(f, "CODEOWNERS", "");
	refused(p, f, "protected path: CODEOWNERS matches /CODEOWNERS");
	done(f);

	/* An unread page could hold the protected file. */
	f = good();
	f->files_complete = 0;
	f->pr.changed_files = 3001;
	ev = refused_at(p, f, NOW, "changed files could not all be read: "
	    "GitHub listed 1 of the pull request's 3001 (it lists at most "
	    "3000)");
	assert_string_equal(ev_str(ev, "failed_rule"), "protected_paths");
	json_object_put(ev);
	done(f);

	/* A pattern that cannot be matched refuses rather than protecting
	 * nothing. */
	f = good();
	refused("{\"protected_paths\":[\"src/[a-\"]}", f,
	    "protected path: cannot match src/a.c against src/[a-");
	done(f);
}

static void
test_max_files(void **state)
{
	const char *p = "{\"max_changed_files\":2}";
	struct pr_facts *f = good();
	struct json_object *ev, *v;

	(void)state;
	passes(p, f);
	add_file(f, "src/b.c", "");
	passes(p, f);
	add_file(f, "src/c.c", "");
	ev = refused_at(p, f, NOW, "changed files: 3, at most 2 allowed");
	assert_true(json_object_object_get_ex(ev, "files", &v));
	assert_int_equal(json_object_get_int64(v), 3);
	assert_string_equal(ev_str(ev, "failed_rule"), "max_changed_files");
	json_object_put(ev);
	f->nfiles = 2;
	f->files_complete = 0;
	f->pr.changed_files = -1;
	refused(p, f, "changed files could not all be read: GitHub did not "
	    "say how many the pull request has");
	/* GitHub's count, not the list it cut at 3000, is the number. */
	f->pr.changed_files = 3001;
	refused("{\"max_changed_files\":3000}", f, "changed files: 3001, at "
	    "most 3000 allowed");
	f->nfiles = 1;
	f->pr.changed_files = 2;
	refused(p, f, "changed files could not all be read: GitHub listed 1 "
	    "of the pull request's 2");
	f->nfiles = 0;
	f->pr.changed_files = 0;
	f->files_complete = 1;
	passes("{\"max_changed_files\":0}", f);
	done(f);
}

static void
test_glob(void **state)
{
	(void)state;
	/* A trailing space git would drop: malformed, not "x". */
	assert_int_equal(glob_match("x ", "x"), TH_ERR_INVALID);
	assert_int_equal(glob_match("x ", "x "), TH_ERR_INVALID);
	assert_int_equal(glob_match("x\\ ", "x "), 1);
	assert_int_equal(glob_match("x\\ ", "x"), 0);
	assert_int_equal(glob_match("x\\\\ ", "x\\"), TH_ERR_INVALID);
	/* An empty, "." or ".." component never names a GitHub path: a
	 * pattern with one would protect nothing, so it is malformed. */
	assert_int_equal(glob_match("./.github/workflows/**",
	    ".github/workflows/ci.yml"), TH_ERR_INVALID);
	assert_int_equal(glob_match("deploy//secrets/", "deploy/secrets/k"),
	    TH_ERR_INVALID);
	assert_int_equal(glob_match(".github/../CODEOWNERS", "CODEOWNERS"),
	    TH_ERR_INVALID);
	assert_int_equal(glob_match("/..", "x"), TH_ERR_INVALID);
	assert_int_equal(glob_match(".", "x"), TH_ERR_INVALID);
	assert_int_equal(glob_match(".github/", ".github/x"), 1);
	assert_int_equal(glob_match("..x/.y/", "..x/.y/z"), 1);
	/* No '/': any depth, and a matching directory holds its files. */
	assert_int_equal(glob_match("*.pem", "key.pem"), 1);
	assert_int_equal(glob_match("*.pem", "a/b/key.pem"), 1);
	assert_int_equal(glob_match("*.pem", "key.pem.txt"), 0);
	assert_int_equal(glob_match("*.pem", "x.pem/readme"), 1);
	assert_int_equal(glob_match("*.PEM", "key.pem"), 0);
	assert_int_equal(glob_match("Makefile", "src/Makefile"), 1);
	assert_int_equal(glob_match("secrets", "a/secrets/key"), 1);
	assert_int_equal(glob_match("secrets", "a/secretsx/key"), 0);
	/* Leading '/' or a middle '/' anchors. */
	assert_int_equal(glob_match("/Makefile", "Makefile"), 1);
	assert_int_equal(glob_match("/Makefile", "src/Makefile"), 0);
	assert_int_equal(glob_match("docs/*.md", "docs/a.md"), 1);
	assert_int_equal(glob_match("docs/*.md", "docs/sub/a.md"), 0);
	assert_int_equal(glob_match("docs/*.md", "x/docs/a.md"), 0);
	assert_int_equal(glob_match("/docs/*.md", "docs/a.md"), 1);
	assert_int_equal(glob_match("src/lib", "src/lib/a/b.c"), 1);
	assert_int_equal(glob_match("src/lib", "src/library.c"), 0);
	/* Trailing '/': directories only, and what is in them. */
	assert_int_equal(glob_match("build/", "build/x"), 1);
	assert_int_equal(glob_match("build/", "src/build/x/y"), 1);
	assert_int_equal(glob_match("build/", "build"), 0);
	assert_int_equal(glob_match("build/", "builder/x"), 0);
	assert_int_equal(glob_match("/build/", "src/build/x"), 0);
	assert_int_equal(glob_match("src/build/", "src/build/x"), 1);
	assert_int_equal(glob_match("src/build/", "src/build"), 0);
	/* "**" forms. */
	assert_int_equal(glob_match("**/secrets", "secrets"), 1);
	assert_int_equal(glob_match("**/secrets", "a/b/secrets"), 1);
	assert_int_equal(glob_match("**/secrets", "a/b/secrets/k"), 1);
	assert_int_equal(glob_match("**/foo/bar", "foo/bar"), 1);
	assert_int_equal(glob_match("**/foo/bar", "x/y/foo/bar"), 1);
	assert_int_equal(glob_match("**/foo/bar", "foo/x/bar"), 0);
	assert_int_equal(glob_match("abc/**", "abc/x"), 1);
	assert_int_equal(glob_match("abc/**", "abc/x/y/z"), 1);
	assert_int_equal(glob_match("abc/**", "abc"), 0);
	assert_int_equal(glob_match("abc/**", "xabc/y"), 0);
	assert_int_equal(glob_match("abc/**", "x/abc/y"), 0);
	assert_int_equal(glob_match("a/**/b", "a/b"), 1);
	assert_int_equal(glob_match("a/**/b", "a/x/b"), 1);
	assert_int_equal(glob_match("a/**/b", "a/x/y/b"), 1);
	assert_int_equal(glob_match("a/**/b", "a/xb"), 0);
	assert_int_equal(glob_match("a/**/b", "ab"), 0);
	assert_int_equal(glob_match("a/**/b", "a/x/yb"), 0);
	assert_int_equal(glob_match("**/foo", "xfoo"), 0);
	assert_int_equal(glob_match("**/foo", "a/xfoo"), 0);
	assert_int_equal(glob_match("foo", "a/xfoo"), 0);
	assert_int_equal(glob_match("foo", "a/foox"), 0);
	assert_int_equal(glob_match("a/**/b", "a/x/bc"), 0);
	assert_int_equal(glob_match("a/**/**/b", "a/b"), 1);
	assert_int_equal(glob_match("a/**/**/b", "a/x/y/z/b"), 1);
	assert_int_equal(glob_match("**", "anything/at/all"), 1);
	assert_int_equal(glob_match("/**", "x"), 1);
	assert_int_equal(glob_match("**/", "top.c"), 0);
	assert_int_equal(glob_match("**/", "dir/top.c"), 1);
	/* Elsewhere "**" is a plain '*'. */
	assert_int_equal(glob_match("foo**bar", "fooxybar"), 1);
	assert_int_equal(glob_match("foo**bar", "foo/bar"), 0);
	assert_int_equal(glob_match("a/**b", "a/xb"), 1);
	assert_int_equal(glob_match("a/**b", "a/x/b"), 0);
	/* '*' and '?' never match '/'. */
	assert_int_equal(glob_match("src/*.c", "src/x/y.c"), 0);
	assert_int_equal(glob_match("?.c", "a.c"), 1);
	assert_int_equal(glob_match("?.c", "ab.c"), 0);
	assert_int_equal(glob_match("a?b", "a/b"), 0);
	assert_int_equal(glob_match("a*", "a"), 1);
	/* Classes. */
	assert_int_equal(glob_match("[abc].txt", "b.txt"), 1);
	assert_int_equal(glob_match("[abc].txt", "d.txt"), 0);
	assert_int_equal(glob_match("[!abc].txt", "d.txt"), 1);
	assert_int_equal(glob_match("[!abc].txt", "a.txt"), 0);
	assert_int_equal(glob_match("[^abc].txt", "a.txt"), 0);
	assert_int_equal(glob_match("v[0-9].md", "v7.md"), 1);
	assert_int_equal(glob_match("v[0-9].md", "vx.md"), 0);
	assert_int_equal(glob_match("[]]", "]"), 1);
	assert_int_equal(glob_match("[!]]", "]"), 0);
	assert_int_equal(glob_match("[a-]", "-"), 1);
	assert_int_equal(glob_match("[\\]]x", "]x"), 1);
	assert_int_equal(glob_match("[[:digit:]]*.log", "1a.log"), 1);
	assert_int_equal(glob_match("[[:digit:]]*.log", "a1.log"), 0);
	assert_int_equal(glob_match("[[:upper:][:digit:]]", "Q"), 1);
	assert_int_equal(glob_match("a[/]b", "a/b"), 0);
	assert_int_equal(glob_match("a[!x]b", "a/b"), 0);
	/* Escapes. */
	assert_int_equal(glob_match("\\*.c", "*.c"), 1);
	assert_int_equal(glob_match("\\*.c", "a.c"), 0);
	assert_int_equal(glob_match("\\[x]", "[x]"), 1);
	/* Malformed patterns and bad paths are errors, never "no match". */
	assert_true(glob_match("[abc", "a") < 0);
	assert_true(glob_match("[z-a]", "b") < 0);
	assert_true(glob_match("[[:foo:]]", "a") < 0);
	assert_true(glob_match("x\\", "x") < 0);
	assert_true(glob_match("/", "x") < 0);
	assert_true(glob_match("", "x") < 0);
	assert_true(glob_match("x", "") < 0);
	assert_true(glob_match("x", "/x") < 0);
}

static double
elapsed(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (double)(b.tv_sec - a->tv_sec) +
	    (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static void
test_glob_bounds(void **state)
{
	char path[FACTS_PATH_MAX + 2], pat[FACTS_PATH_MAX + 2];
	struct timespec t0;
	size_t i;
	int k;

	(void)state;
	/* Lengths: 1024 bytes is fine, 1025 is refused. */
	memset(path, 'a', FACTS_PATH_MAX);
	path[FACTS_PATH_MAX] = '\0';
	memset(pat, 'a', FACTS_PATH_MAX);
	pat[FACTS_PATH_MAX] = '\0';
	assert_int_equal(glob_match(pat, path), 1);
	pat[FACTS_PATH_MAX - 1] = '*';
	assert_int_equal(glob_match(pat, path), 1);
	path[FACTS_PATH_MAX] = 'a';
	path[FACTS_PATH_MAX + 1] = '\0';
	assert_true(glob_match("a*", path) < 0);
	pat[FACTS_PATH_MAX] = 'a';
	pat[FACTS_PATH_MAX + 1] = '\0';
	assert_true(glob_match(pat, "a") < 0);

	/* Backtracking matchers go exponential on these. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i + 2 < FACTS_PATH_MAX - 2; i += 2)
		memcpy(path + i, "x/", 2);
	memcpy(path, "a/", 2);
	path[i] = 'c';
	path[i + 1] = '\0';
	for (k = 0; k < 100; k++)
		assert_int_equal(glob_match("a/**/**/**/**/**/b", path), 0);
	path[i] = 'b';
	assert_int_equal(glob_match("a/**/**/**/**/**/b", path), 1);
	assert_int_equal(glob_match("**/**/**/**/**/**/**/**/**/**/**/z",
	    path), 0);
	memset(path, 'a', FACTS_PATH_MAX);
	path[FACTS_PATH_MAX] = '\0';
	for (k = 0; k < 100; k++)
		assert_int_equal(glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b",
		    path), 0);
	/* A 1024-byte pattern of "*a" against 1024 bytes: the worst
	 * quadratic case, once. */
	for (i = 0; i + 1 < FACTS_PATH_MAX; i += 2)
		memcpy(pat + i, "*a", 2);
	pat[FACTS_PATH_MAX - 1] = 'b';
	pat[FACTS_PATH_MAX] = '\0';
	assert_int_equal(glob_match(pat, path), 0);
	/* Generous, for sanitizer builds; an exponential matcher would not
	 * finish at all. */
	assert_true(elapsed(&t0) < 5.0);
}

static int
in_window(const char *tz, const char *days, const char *start,
    const char *end, time_t now, char *local, size_t len)
{
	char buf[512];
	struct json_object *w;
	int r;

	snprintf(buf, sizeof(buf), "{\"tz\":\"%s\",\"days\":%s,\"start\":"
	    "\"%s\",\"end\":\"%s\"}", tz, days, start, end);
	w = j(buf);
	r = window_contains(w, now, local, len);
	json_object_put(w);
	return r;
}

#define ALL	"[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"]"
#define WORK	"[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"]"

static void
expect_window(const char *tz, const char *days, const char *start,
    const char *end, time_t now, int want, const char *want_local)
{
	char local[96];

	assert_int_equal(in_window(tz, days, start, end, now, local,
	    sizeof(local)), want);
	assert_string_equal(local, want_local);
}

static void
test_window_dst(void **state)
{
	(void)state;
	/* Europe/Paris springs forward on 2026-03-29 at 01:00 UTC. */
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 29, 7, 30), 1, "Sun 09:30 Europe/Paris");
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 28, 7, 30), 0, "Sat 08:30 Europe/Paris");
	/* ... and falls back on 2026-10-25 at 01:00 UTC. */
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 10, 24, 7, 30), 1, "Sat 09:30 Europe/Paris");
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 10, 25, 7, 30), 0, "Sun 08:30 Europe/Paris");
	/* America/New_York springs forward on 2026-03-08 at 07:00 UTC. */
	expect_window("America/New_York", ALL, "09:00", "18:00",
	    utc(2026, 3, 8, 13, 30), 1, "Sun 09:30 America/New_York");
	expect_window("America/New_York", ALL, "09:00", "18:00",
	    utc(2026, 3, 7, 13, 30), 0, "Sat 08:30 America/New_York");
	/* ... and falls back on 2026-11-01 at 06:00 UTC. */
	expect_window("America/New_York", ALL, "09:00", "18:00",
	    utc(2026, 10, 31, 13, 30), 1, "Sat 09:30 America/New_York");
	expect_window("America/New_York", ALL, "09:00", "18:00",
	    utc(2026, 11, 1, 13, 30), 0, "Sun 08:30 America/New_York");
	/* In the week between the two switches the offset is 5 hours. */
	expect_window("Europe/Paris", ALL, "14:30", "15:00",
	    utc(2026, 3, 10, 13, 30), 1, "Tue 14:30 Europe/Paris");
	expect_window("America/New_York", ALL, "09:30", "10:00",
	    utc(2026, 3, 10, 13, 30), 1, "Tue 09:30 America/New_York");
	expect_window("UTC", ALL, "13:30", "13:31",
	    utc(2026, 3, 10, 13, 30), 1, "Tue 13:30 UTC");
}

static void
test_window_bounds(void **state)
{
	char local[96];

	(void)state;
	/* start inclusive, end exclusive (Mon 2026-03-30, CEST). */
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 30, 7, 0), 1, "Mon 09:00 Europe/Paris");
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 30, 6, 59), 0, "Mon 08:59 Europe/Paris");
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 30, 15, 59) + 59, 1, "Mon 17:59 Europe/Paris");
	expect_window("Europe/Paris", ALL, "09:00", "18:00",
	    utc(2026, 3, 30, 16, 0), 0, "Mon 18:00 Europe/Paris");
	/* Weekdays are local: Fri 23:59 CET is in, Sat 00:00 out, Sun
	 * 23:59 CEST out, Mon 00:00 in; "24:00" closes the day. */
	expect_window("Europe/Paris", WORK, "00:00", "24:00",
	    utc(2026, 3, 27, 22, 59), 1, "Fri 23:59 Europe/Paris");
	expect_window("Europe/Paris", WORK, "00:00", "24:00",
	    utc(2026, 3, 27, 23, 0), 0, "Sat 00:00 Europe/Paris");
	expect_window("Europe/Paris", WORK, "00:00", "24:00",
	    utc(2026, 3, 29, 21, 59), 0, "Sun 23:59 Europe/Paris");
	expect_window("Europe/Paris", WORK, "00:00", "24:00",
	    utc(2026, 3, 29, 22, 0), 1, "Mon 00:00 Europe/Paris");
	/* The same instant is Friday in New York, Saturday in Tokyo. */
	expect_window("America/New_York", "[\"fri\"]", "00:00", "24:00",
	    utc(2026, 4, 3, 23, 0), 1, "Fri 19:00 America/New_York");
	expect_window("Asia/Tokyo", "[\"fri\"]", "00:00", "24:00",
	    utc(2026, 4, 3, 23, 0), 0, "Sat 08:00 Asia/Tokyo");

	/* Unknown zones: absent, a directory, a data file that is no zone. */
	assert_int_equal(in_window("Mars/Olympus", ALL, "09:00", "18:00", NOW,
	    local, sizeof(local)), TH_ERR_INVALID);
	assert_string_equal(local, "");
	assert_string_equal(th_errmsg(TH_ERR_INVALID),
	    "unknown time zone Mars/Olympus");
	assert_true(in_window("Europe", ALL, "09:00", "18:00", NOW, local,
	    sizeof(local)) < 0);
	assert_true(in_window("zone.tab", ALL, "09:00", "18:00", NOW, local,
	    sizeof(local)) < 0);
	assert_true(in_window("../../../etc/passwd", ALL, "09:00", "18:00",
	    NOW, local, sizeof(local)) < 0);
	assert_true(in_window("UTC", ALL, "9:00", "18:00", NOW, local,
	    sizeof(local)) < 0);
	assert_true(in_window("UTC", ALL, " 9:00", "18:00", NOW, local,
	    sizeof(local)) < 0);
	/* A NULL or short buffer is fine. */
	assert_int_equal(in_window("UTC", ALL, "09:00", "18:00", NOW, NULL, 0),
	    1);
	assert_int_equal(in_window("UTC", ALL, "09:00", "18:00", NOW, local,
	    4), 1);
	assert_string_equal(local, "Tue");
}

static void
test_window_tz_restored(void **state)
{
	char local[96];

	(void)state;
	assert_int_equal(setenv("TZ", "America/New_York", 1), 0);
	assert_int_equal(in_window("Europe/Paris", ALL, "09:00", "18:00", NOW,
	    local, sizeof(local)), 1);
	assert_string_equal(getenv("TZ"), "America/New_York");
	assert_true(in_window("Nowhere/None", ALL, "09:00", "18:00", NOW,
	    local, sizeof(local)) < 0);
	assert_string_equal(getenv("TZ"), "America/New_York");
	assert_int_equal(unsetenv("TZ"), 0);
	assert_int_equal(in_window("Asia/Tokyo", ALL, "00:00", "24:00", NOW,
	    local, sizeof(local)), 1);
	assert_null(getenv("TZ"));
}

/* The broker's set-up: TZ always present, so that window_contains only
 * replaces it (never adds or removes a variable under other threads). */
static void
test_window_env_init(void **state)
{
	char local[96];

	(void)state;
	assert_int_equal(unsetenv("TZ"), 0);
	window_env_init();
	assert_string_equal(getenv("TZ"), ":/etc/localtime");
	assert_int_equal(in_window("Asia/Tokyo", ALL, "00:00", "24:00", NOW,
	    local, sizeof(local)), 1);
	assert_string_equal(getenv("TZ"), ":/etc/localtime");
	assert_int_equal(setenv("TZ", "UTC", 1), 0);
	window_env_init();
	assert_string_equal(getenv("TZ"), "UTC");
	assert_int_equal(unsetenv("TZ"), 0);
}

static void
test_window_rule(void **state)
{
	const char *p = "{\"time_window\":{\"tz\":\"Europe/Paris\",\"days\":"
	    "[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"],\"start\":\"09:00\","
	    "\"end\":\"18:00\"}}";
	struct pr_facts *f = good();
	struct json_object *ev;

	(void)state;
	passes(p, f);
	ev = refused_at(p, f, utc(2026, 3, 28, 9, 0),
	    "outside the time window (Sat 10:00 Europe/Paris)");
	assert_string_equal(ev_str(ev, "window"), "Sat 10:00 Europe/Paris");
	assert_string_equal(ev_str(ev, "failed_rule"), "time_window");
	json_object_put(ev);
	ev = refused_at("{\"time_window\":{\"tz\":\"Mars/Olympus\",\"days\":"
	    "[\"mon\"],\"start\":\"09:00\",\"end\":\"18:00\"}}", f, NOW,
	    "unknown time zone Mars/Olympus");
	assert_null(ev_str(ev, "window"));
	json_object_put(ev);
	done(f);
}

static void
test_guards(void **state)
{
	struct pr_facts *f = good(), g;
	struct json_object *p, *ev = NULL;

	(void)state;
	/* An unvalidated policy is validated here all the same. */
	p = j("{\"allow_everything\":true}");
	assert_int_equal(peval_merge(p, f, "main", NOW, &ev), TH_ERR_INVALID);
	assert_string_equal(ev_str(ev, "failed_rule"), "policy");
	json_object_put(ev);
	json_object_put(p);
	p = j("[]");
	assert_int_equal(peval_merge(p, f, "main", NOW, NULL), TH_ERR_INVALID);
	json_object_put(p);

	p = j("{}");
	/* Facts a client bug could produce. */
	strcpy(f->pr.head_sha, "0123456");
	assert_int_equal(peval_merge(p, f, "main", NOW, &ev), TH_ERR_INVALID);
	assert_string_equal(ev_str(ev, "failed_rule"), "facts");
	json_object_put(ev);
	strcpy(f->pr.head_sha, "0123456789ABCDEF0123456789abcdef01234567");
	assert_int_equal(peval_merge(p, f, "main", NOW, NULL), TH_ERR_INVALID);
	strcpy(f->pr.head_sha, SHA);
	f->nfiles = FACTS_FILES_MAX + 1;
	assert_int_equal(peval_merge(p, f, "main", NOW, NULL), TH_ERR_INVALID);
	f->nfiles = 1;
	memset(f->files[0].filename, 'x', sizeof(f->files[0].filename));
	assert_int_equal(peval_merge(p, f, "main", NOW, NULL), TH_ERR_INVALID);
	strcpy(f->files[0].filename, "src/a.c");
	assert_int_equal(peval_merge(p, f, "", NOW, NULL), TH_ERR_INVALID);
	assert_int_equal(peval_merge(p, f, "main", NOW, NULL), 0);
	json_object_put(p);

	/* facts_free leaves nothing to trust. */
	facts_free(f);
	assert_null(f->checks);
	assert_null(f->files);
	assert_int_equal(f->nfiles, 0);
	assert_int_equal(f->files_complete, 0);
	facts_free(f);
	facts_free(NULL);
	free(f);
	memset(&g, 0, sizeof(g));
	facts_free(&g);
}

/* The changed files are read only for a policy with a rule on them. */
static void
test_reads_files(void **state)
{
	static const struct {
		const char	*policy;
		int		 reads;
	} c[] = {
		{ "{}", 0 },
		{ "{\"required_checks\":[\"ci/test\"],\"min_approvals\":1}", 0 },
		{ "{\"protected_paths\":[]}", 1 },
		{ "{\"max_changed_files\":10}", 1 },
		{ "{\"time_window\":{\"tz\":\"UTC\",\"days\":[\"Mon\"],"
		    "\"start\":\"09:00\",\"end\":\"17:00\"},"
		    "\"protected_paths\":[\"x\"]}", 1 },
	};
	struct json_object *o;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		o = j(c[i].policy);
		assert_int_equal(peval_reads_files(o), c[i].reads);
		json_object_put(o);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_pass_evidence),
		cmocka_unit_test(test_pr_state),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_checks),
		cmocka_unit_test(test_checks_pinned),
		cmocka_unit_test(test_reviews),
		cmocka_unit_test(test_protected_paths),
		cmocka_unit_test(test_max_files),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_glob_bounds),
		cmocka_unit_test(test_window_dst),
		cmocka_unit_test(test_window_bounds),
		cmocka_unit_test(test_window_tz_restored),
		cmocka_unit_test(test_window_env_init),
		cmocka_unit_test(test_window_rule),
		cmocka_unit_test(test_guards),
		cmocka_unit_test(test_reads_files),
	};

	return cmocka_run_group_tests_name("peval", tests, NULL, NULL);
}
