/* Scopes and policies: coverage, narrowing, and the name rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "policy.h"
#include "scope.h"

static struct json_object *
j(const char *s)
{
	struct json_object *o = json_tokener_parse(s);

	assert_non_null(o);
	return o;
}

static int
within(const char *child, const char *parent)
{
	struct json_object *c = j(child), *p = j(parent);
	int r;

	assert_int_equal(scope_validate(c), 0);
	assert_int_equal(scope_validate(p), 0);
	r = scope_within(c, p);
	json_object_put(c);
	json_object_put(p);
	return r;
}

static void
test_covers(void **state)
{
	struct json_object *ops = j("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"acme/backend\",\"tools/*\"],\"targets\":[\"main\",\"release/*\"]},"
	    "{\"op\":\"github.comment\",\"repos\":[\"acme/backend\"]}]");
	struct scope_req r;

	(void)state;
	assert_int_equal(scope_validate(ops), 0);
	r = (struct scope_req){ "github.merge", "acme/backend", "main" };
	assert_true(scope_covers(ops, &r));
	r = (struct scope_req){ "github.merge", "tools/lint", "release/1.2" };
	assert_true(scope_covers(ops, &r));
	r = (struct scope_req){ "github.merge", "acme/backend", "release" };
	assert_false(scope_covers(ops, &r));
	r = (struct scope_req){ "github.merge", "acme/frontend", "main" };
	assert_false(scope_covers(ops, &r));
	r = (struct scope_req){ "github.merge", "tools", "main" };
	assert_false(scope_covers(ops, &r));
	/* An operation without a target is not held to target lists. */
	r = (struct scope_req){ "github.merge", "acme/backend", NULL };
	assert_true(scope_covers(ops, &r));
	r = (struct scope_req){ "github.comment", "acme/backend", NULL };
	assert_true(scope_covers(ops, &r));
	r = (struct scope_req){ "github.deploy", "acme/backend", NULL };
	assert_false(scope_covers(ops, &r));
	json_object_put(ops);
}

static void
test_within(void **state)
{
	const char *p = "[{\"op\":\"github.merge\",\"repos\":[\"acme/*\"],"
	    "\"targets\":[\"main\",\"release/*\"]}]";

	(void)state;
	assert_int_equal(within("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"acme/a\"],\"targets\":[\"release/v1/*\"]}]", p), 0);
	assert_int_equal(within(p, p), 0);
	assert_int_equal(within("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"other/a\"],\"targets\":[\"main\"]}]", p), TH_ERR_DENIED);
	assert_int_equal(within("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"acme/a\"]}]", p), TH_ERR_DENIED);
	assert_int_equal(within("[{\"op\":\"github.merge\",\"repos\":"
	    "[\"acme/a\"],\"targets\":[\"dev\"]}]", p), TH_ERR_DENIED);
	assert_int_equal(within("[{\"op\":\"github.comment\",\"repos\":"
	    "[\"acme/a\"]}]", p), TH_ERR_DENIED);
	/* A child may add a target restriction the parent lacks. */
	assert_int_equal(within("[{\"op\":\"x.y\",\"repos\":[\"a/b\"],"
	    "\"targets\":[\"main\"]}]", "[{\"op\":\"x.y\",\"repos\":[\"a/*\"]}]"),
	    0);
	/* An owner wildcard is not within one repository. */
	assert_int_equal(within("[{\"op\":\"x.y\",\"repos\":[\"acme/*\"]}]",
	    "[{\"op\":\"x.y\",\"repos\":[\"acme/backend\"]}]"), TH_ERR_DENIED);
}

static void
test_validate(void **state)
{
	const char *bad[] = {
		"[]", "{}", "[1]", "[{\"op\":\"github.merge\"}]",
		"[{\"op\":\"Github\",\"repos\":[\"a/b\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a/b/c\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"*/b\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a/b\"],\"targets\":[\"a..b\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a/b\"],\"targets\":[\"-x\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a/b\"],\"targets\":[\"*\"]}]",
		"[{\"op\":\"x\",\"repos\":[\"a/b\"],\"extra\":1}]",
		"[{\"op\":\"x\",\"repos\":[]}]",
	};
	struct json_object *o;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o = j(bad[i]);
		assert_int_equal(scope_validate(o), TH_ERR_INVALID);
		json_object_put(o);
	}
	assert_true(name_valid("agent:coder-1", "agent"));
	assert_false(name_valid("agent:Coder", "agent"));
	assert_false(name_valid("human:alice", "agent"));
	assert_false(name_valid("agent:", "agent"));
	assert_false(name_valid("agent:-x", "agent"));
	/* Branch names are UTF-8 (found by fuzz/fuzz_tokens.c: a target
	 * of raw bytes was accepted, and its capability could not be
	 * logged). */
	assert_true(branch_valid("feature/caf\xc3\xa9", 0));
	assert_false(branch_valid("ub.me\xff", 0));
	assert_false(branch_valid("release/\xc0\xae/*", 1));
}

/* policy_validate of the policy in text. */
static int
validate(const char *text)
{
	struct json_object *o = j(text);
	int r = policy_validate(o);

	json_object_put(o);
	return r;
}

static int
narrows(const char *c, const char *p)
{
	struct json_object *co = j(c), *po = j(p);
	int r;

	assert_int_equal(policy_validate(co), 0);
	assert_int_equal(policy_validate(po), 0);
	r = policy_narrows(co, po);
	json_object_put(co);
	json_object_put(po);
	return r;
}

static void
test_policy(void **state)
{
	const char *p = "{\"required_checks\":[\"ci\"],\"min_approvals\":1,"
	    "\"fresh_approvals\":true,\"protected_paths\":[\"a/**\"],"
	    "\"allowed_targets\":[\"main\",\"dev\"],\"max_changed_files\":50,"
	    "\"time_window\":{\"tz\":\"Europe/Paris\",\"days\":[\"mon\",\"tue\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}";

	(void)state;
	assert_int_equal(narrows(p, p), 0);
	assert_int_equal(narrows("{\"required_checks\":[\"ci\",\"lint\"],"
	    "\"min_approvals\":2,\"fresh_approvals\":true,\"protected_paths\":"
	    "[\"a/**\",\"b\"],\"allowed_targets\":[\"main\"],"
	    "\"max_changed_files\":10,\"time_window\":{\"tz\":\"Europe/Paris\","
	    "\"days\":[\"mon\"],\"start\":\"10:00\",\"end\":\"17:00\"}}", p), 0);
	assert_int_equal(narrows("{}", "{\"min_approvals\":1}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"min_approvals\":0}",
	    "{\"min_approvals\":1}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"max_changed_files\":51}",
	    "{\"max_changed_files\":50}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"fresh_approvals\":false}",
	    "{\"fresh_approvals\":true}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"required_checks\":[\"lint\"]}",
	    "{\"required_checks\":[\"ci\"]}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"allowed_targets\":[\"main\",\"x\"]}",
	    "{\"allowed_targets\":[\"main\"]}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"time_window\":{\"tz\":\"UTC\",\"days\":"
	    "[\"mon\"],\"start\":\"10:00\",\"end\":\"17:00\"}}",
	    "{\"time_window\":{\"tz\":\"Europe/Paris\",\"days\":[\"mon\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"time_window\":{\"tz\":\"UTC\",\"days\":"
	    "[\"mon\"],\"start\":\"08:00\",\"end\":\"17:00\"}}",
	    "{\"time_window\":{\"tz\":\"UTC\",\"days\":[\"mon\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"time_window\":{\"tz\":\"UTC\",\"days\":"
	    "[\"sun\"],\"start\":\"10:00\",\"end\":\"17:00\"}}",
	    "{\"time_window\":{\"tz\":\"UTC\",\"days\":[\"mon\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}"), TH_ERR_DENIED);
	/* Push rules: permissions only where the parent grants them, sizes
	 * only smaller. */
	assert_int_equal(narrows("{\"allow_force_push\":true}", "{}"),
	    TH_ERR_DENIED);
	assert_int_equal(narrows("{\"allow_force_push\":true,"
	    "\"allow_branch_delete\":true}", "{\"allow_force_push\":true,"
	    "\"allow_branch_delete\":false}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"allow_force_push\":false}",
	    "{\"allow_force_push\":true}"), 0);
	assert_int_equal(narrows("{}", "{\"allow_force_push\":true}"), 0);
	assert_int_equal(narrows("{\"max_push_bytes\":2000}",
	    "{\"max_push_bytes\":1000}"), TH_ERR_DENIED);
	assert_int_equal(narrows("{\"max_push_bytes\":1000}", "{}"), 0);
	assert_int_equal(validate("{\"max_push_bytes\":0}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"allow_force_push\":1}"),
	    TH_ERR_INVALID);
	/* Deleting a branch, then pushing it anew, rewrites its history. */
	assert_int_equal(validate("{\"allow_branch_delete\":true}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"allow_branch_delete\":true,"
	    "\"allow_force_push\":false}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"allow_branch_delete\":false}"), 0);
	/* A required check may be pinned to the GitHub App that reports
	 * it; the pin is kept, at the same App, through every link. */
	assert_int_equal(validate("{\"required_checks\":[\"ci\",{\"context\":"
	    "\"ci/test\",\"app_id\":15368}]}"), 0);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci/test\"}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci/test\",\"app_id\":0}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci/test\",\"app_id\":9007199254740992}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci/test\",\"app_id\":9007199254740991}]}"), 0);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci/test\",\"app_id\":\"15368\"}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"\",\"app_id\":1}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[{\"context\":"
	    "\"ci\",\"app_id\":1,\"x\":1}]}"), TH_ERR_INVALID);
	assert_int_equal(validate("{\"required_checks\":[7]}"),
	    TH_ERR_INVALID);
	{
		const char *pin = "{\"required_checks\":[{\"context\":\"ci\","
		    "\"app_id\":5}]}";

		assert_int_equal(narrows(pin, pin), 0);
		assert_int_equal(narrows(pin, "{\"required_checks\":[\"ci\"]}"),
		    0);
		assert_int_equal(narrows("{\"required_checks\":[\"lint\","
		    "{\"context\":\"ci\",\"app_id\":6},{\"context\":\"ci\","
		    "\"app_id\":5}]}", pin), 0);
		th_errclear();
		assert_int_equal(narrows("{\"required_checks\":[\"ci\"]}", pin),
		    TH_ERR_DENIED);
		assert_string_equal(th_errmsg(TH_ERR_DENIED), "policy "
		    "required_checks drops ci from App 5");
		assert_int_equal(narrows("{\"required_checks\":[{\"context\":"
		    "\"ci\",\"app_id\":6}]}", pin), TH_ERR_DENIED);
		assert_int_equal(narrows("{\"required_checks\":[{\"context\":"
		    "\"lint\",\"app_id\":5}]}", pin), TH_ERR_DENIED);
		assert_int_equal(narrows("{\"required_checks\":[]}",
		    "{\"required_checks\":[\"ci\"]}"), TH_ERR_DENIED);
		assert_string_equal(th_errmsg(TH_ERR_DENIED), "policy "
		    "required_checks drops ci");
	}
	/* Unknown rules and bad values are invalid. */
	assert_int_equal(validate("{\"allow_everything\":true}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"min_approvals\":-1}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"time_window\":{\"tz\":\"../etc/passwd\",\"days\":[\"mon\"],"
	    "\"start\":\"09:00\",\"end\":\"18:00\"}}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"time_window\":{\"tz\":\"UTC\",\"days\":[\"mon\"],"
	    "\"start\":\" 9:00\",\"end\":\"18:00\"}}"),
	    TH_ERR_INVALID);
	assert_int_equal(validate("{\"time_window\":{\"tz\":\"UTC\",\"days\":[\"mon\"],"
	    "\"start\":\"18:00\",\"end\":\"09:00\"}}"),
	    TH_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_covers),
		cmocka_unit_test(test_within),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_policy),
	};

	return cmocka_run_group_tests_name("scope", tests, NULL, NULL);
}
