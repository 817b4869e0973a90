/* The files in which two commits' trees differ, from GitHub's recursive
 * tree listings (GET /repos/{repo}/git/trees/{sha}?recursive=1).  They are
 * the changed files of a pull request too long for a comparison to list
 * (more than 300), read for its head SHA and its merge base, not for
 * whatever the head is when GitHub is asked (docs/policy.md). */
#ifndef TH_TREE_H
#define TH_TREE_H

#include <stddef.h>

#include <json-c/json.h>

#include "facts.h"

#define TREE_ENTRIES_MAX	100000	/* GitHub lists no more */

/* A file of a tree: a blob, a symbolic link or a submodule. */
struct tree_entry {
	const char	*path;			/* into tree.paths */
	char		 mode[8];		/* "100644", "160000", ... */
	char		 sha[FACTS_SHA_LEN + 1];
};

struct tree {
	struct tree_entry	*e;		/* sorted by path (strcmp) */
	size_t			 n;
	char			*paths;		/* the paths, back to back */
	int			 truncated;	/* GitHub did not list all */
};

/* One listing, parsed: every entry checked (path of 1..FACTS_PATH_MAX
 * bytes, a known type, a numeric mode, a 40-hex sha), at most
 * TREE_ENTRIES_MAX of them, no path twice; directories left out.
 * TH_ERR_PROTOCOL with a one-line reason otherwise. */
int	tree_parse(struct json_object *o, struct tree *t);
void	tree_free(struct tree *t);

/* Appends to f->files every path whose file differs between base and
 * head (status "added", "removed" or "modified").  Neither may be
 * truncated.  0, or TH_ERR_TOO_LONG past FACTS_FILES_MAX files (f then
 * holds the first ones). */
int	tree_diff(const struct tree *base, const struct tree *head,
	    struct pr_facts *f);

#endif
