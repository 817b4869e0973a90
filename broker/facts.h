/* What the broker reads from GitHub about one pull request, all of it
 * about one head SHA, as the policy needs it.  Filled by the GitHub client
 * (github.c) from bounded, validated replies; read by the policy evaluator
 * (peval.c).  Strings are NUL-terminated and fit their arrays. */
#ifndef TH_FACTS_H
#define TH_FACTS_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define FACTS_SHA_LEN		40
#define FACTS_LOGIN_MAX		39	/* GitHub's limit */
#define FACTS_REF_MAX		255
#define FACTS_NAME_MAX		255	/* check run name, status context */
#define FACTS_PATH_MAX		1024
#define FACTS_FILES_MAX		3000	/* GitHub lists at most 3000 */
#define FACTS_CHECKS_MAX	1000
#define FACTS_STATUSES_MAX	1000
#define FACTS_REVIEWS_MAX	1000
#define FACTS_APPROVERS_MAX	32	/* whose write access is looked up */

struct gh_pr {
	int64_t	number;
	char	head_sha[FACTS_SHA_LEN + 1];
	char	head_ref[FACTS_REF_MAX + 1];
	char	base_ref[FACTS_REF_MAX + 1];
	char	author[FACTS_LOGIN_MAX + 1];
	int	open;			/* state == "open" */
	int	merged;
	int	draft;
	int	mergeable;		/* 1, 0, or -1: not computed yet */
	int64_t	changed_files;		/* GitHub's count; -1 if not given */
	char	merged_by[FACTS_LOGIN_MAX + 1];	/* "" unless merged */
	char	merged_at[24];		/* YYYY-MM-DDTHH:MM:SSZ, or "" */
};

struct gh_check_run {
	char	name[FACTS_NAME_MAX + 1];
	char	status[24];		/* queued, in_progress, completed, ... */
	char	conclusion[24];		/* "" while not completed */
	int64_t	app_id;			/* the App that reported it; 0: none
					 * named */
};

struct gh_status {
	char	context[FACTS_NAME_MAX + 1];
	char	state[16];		/* error, failure, pending, success */
};

struct gh_review {
	int64_t	id;
	char	user[FACTS_LOGIN_MAX + 1];
	char	state[24];	/* APPROVED, CHANGES_REQUESTED, COMMENTED,
				 * DISMISSED, PENDING */
	char	commit_id[FACTS_SHA_LEN + 1];
	/* The reviewer's write access to the repository, as GitHub's
	 * collaborator permission says (admin, maintain or write): 1; less:
	 * 0; not known (not looked up, or the lookup failed): -1. */
	int	write;
};

struct gh_file {
	char	filename[FACTS_PATH_MAX + 1];
	char	previous[FACTS_PATH_MAX + 1];	/* renames; "" otherwise */
	char	status[16];
};

struct pr_facts {
	struct gh_pr		 pr;
	struct gh_check_run	*checks;	/* on pr.head_sha, in order */
	size_t			 nchecks;
	struct gh_status	*statuses;	/* on pr.head_sha */
	size_t			 nstatuses;
	struct gh_review	*reviews;	/* chronological */
	size_t			 nreviews;
	struct gh_file		*files;
	size_t			 nfiles;
	int			 files_complete;	/* all changed_files read */
	int			 files_pinned;	/* read for pr.head_sha (by
						 * comparison or trees), not
						 * for whatever the head was */
	int			 files_by_tree;	/* a rename is two paths */
	char			 files_why[160];	/* why not complete, if
							 * known ("": count) */
};

/* Frees the arrays (not f itself). */
void	facts_free(struct pr_facts *f);
/* 1 if a review in state decides its reviewer's verdict (APPROVED,
 * CHANGES_REQUESTED, DISMISSED); COMMENTED and PENDING leave the last
 * verdict standing. */
int	facts_is_verdict(const char *state);

/* GitHub's replies, parsed: every string checked against its array, every
 * list against its FACTS_*_MAX; TH_ERR_PROTOCOL (or TH_ERR_TOO_LONG) with
 * a one-line reason otherwise. */
enum facts_list { FACTS_CHECKS, FACTS_STATUS, FACTS_REVIEWS, FACTS_FILES,
	FACTS_LISTS };
/* String member key of o into dst[dstsz]; a missing optional one is "". */
int	facts_str(struct json_object *o, const char *key, char *dst,
	    size_t dstsz, int required);
/* A pull request (GET /repos/{repo}/pulls/{n}). */
int	facts_parse_pr(struct json_object *o, struct gh_pr *pr);
/* One page of check runs, combined statuses, reviews or files, appended
 * to f's list of that kind. */
int	facts_parse_page(enum facts_list kind, struct json_object *o,
	    struct pr_facts *f);

/* Appends one changed file (no previous name); TH_ERR_TOO_LONG past
 * FACTS_FILES_MAX. */
int	facts_add_file(struct pr_facts *f, const char *path,
	    const char *status);

#endif
