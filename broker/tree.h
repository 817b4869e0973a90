/* The files in which two commits' trees differ, told one directory level
 * at a time from GitHub's tree listings (GET /repos/{repo}/git/trees/{sha},
 * not recursive): only directories whose SHAs differ are descended into,
 * so a large repository costs what the change touches, not its size.
 * They are the changed files of a pull request too long for a comparison
 * to list (300 or more), read for its head SHA and its merge base, not for
 * whatever the head is when GitHub is asked (docs/policy.md). */
#ifndef TH_TREE_H
#define TH_TREE_H

#include <stddef.h>

#include <json-c/json.h>

#include "facts.h"

#define TREE_ENTRIES_MAX	100000	/* in one directory's listing */

/* An entry of one directory: a file (a blob, a symbolic link or a
 * submodule) or a directory. */
struct tree_entry {
	const char	*name;			/* into tree.names */
	int		 dir;
	char		 mode[8];		/* "100644", "040000", ... */
	char		 sha[FACTS_SHA_LEN + 1];
};

struct tree {
	struct tree_entry	*e;		/* sorted by name (strcmp) */
	size_t			 n;
	char			*names;		/* the names, back to back */
};

/* A directory to descend into: its SHA on each side ("" where it is not
 * one) and its path from the root. */
struct tree_dir {
	char	base[FACTS_SHA_LEN + 1];
	char	head[FACTS_SHA_LEN + 1];
	char	path[FACTS_PATH_MAX + 1];
};

/* One listing, parsed: every entry checked (a name of 1..FACTS_PATH_MAX
 * bytes without '/', a known type, a numeric mode, a 40-hex sha), at most
 * TREE_ENTRIES_MAX of them, no name twice, and "truncated" false.
 * TH_ERR_PROTOCOL with a one-line reason otherwise. */
int	tree_parse(struct json_object *o, struct tree *t);
void	tree_free(struct tree *t);

/* One level of the walk: base and head are the listings of the directory
 * at path (either may be empty: the directory is on one side only).
 * Appends to f->files every file that differs ("added", "removed" or
 * "modified", with its full path), and to dirs[*ndirs] every directory
 * that differs, to be listed next.  0; TH_ERR_TOO_LONG past
 * FACTS_FILES_MAX files, dirs_max directories, or a path over
 * FACTS_PATH_MAX. */
int	tree_diff(const struct tree *base, const struct tree *head,
	    const char *path, struct pr_facts *f, struct tree_dir *dirs,
	    size_t *ndirs, size_t dirs_max);

#endif
