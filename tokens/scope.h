/* Scopes of a delegation (docs/tokens.md, "Delegation") and the names they
 * use.  Scopes are kept as the JSON arrays they arrive in; scope_validate
 * checks every bound and format once, after which the other functions may
 * assume well-formed input. */
#ifndef TH_SCOPE_H
#define TH_SCOPE_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define SCOPE_OPS_MAX		16
#define SCOPE_LIST_MAX		32
#define SCOPE_OP_MAX		64
#define SCOPE_REPO_MAX		140	/* owner (39) / name (100) */
#define SCOPE_BRANCH_MAX	255
#define NAME_MAX_LEN		63

/* One requested operation, as a capability carries it. */
struct scope_req {
	const char	*op;
	const char	*repo;
	const char	*target;	/* may be NULL for ops without one */
};

/* "human:alice" / "agent:coder-1" with prefix kind ("human" or "agent"). */
int	name_valid(const char *s, const char *kind);
int	repo_valid(const char *s, int allow_wildcard);
int	branch_valid(const char *s, int allow_wildcard);
int	op_valid(const char *s);

/* ops: array of 1..SCOPE_OPS_MAX scopes. */
int	scope_validate(struct json_object *ops);
/* 1 if some scope in ops covers req. */
int	scope_covers(struct json_object *ops, const struct scope_req *req);
/* 0 if every child scope is within some parent scope; otherwise
 * TH_ERR_DENIED with a reason. */
int	scope_within(struct json_object *child, struct json_object *parent);

#endif
