#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "tree.h"

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tree_entry *)a)->path,
	    ((const struct tree_entry *)b)->path);
}

/* String member key of e, of 1..max bytes, borrowed. */
static const char *
member(struct json_object *e, const char *key, size_t max)
{
	struct json_object *v;
	size_t len;

	if (!json_object_object_get_ex(e, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	len = (size_t)json_object_get_string_len(v);
	return len >= 1 && len <= max ? json_object_get_string(v) : NULL;
}

/* A file (kept), a directory (0: left out), or -1: malformed. */
static int
is_file(struct json_object *e)
{
	const char *type, *mode, *sha, *path;

	if (!json_object_is_type(e, json_type_object) ||
	    (path = member(e, "path", FACTS_PATH_MAX)) == NULL ||
	    (type = member(e, "type", 8)) == NULL ||
	    (mode = member(e, "mode", 7)) == NULL ||
	    strspn(mode, "01234567") != strlen(mode) ||
	    (sha = member(e, "sha", FACTS_SHA_LEN)) == NULL ||
	    strlen(sha) != FACTS_SHA_LEN ||
	    strspn(sha, "0123456789abcdef") != FACTS_SHA_LEN)
		return -1;
	if (strcmp(type, "tree") == 0)
		return 0;
	/* A submodule ("commit") changes when it points elsewhere: that is
	 * a change to the repository as much as a file's. */
	if (strcmp(type, "blob") == 0 || strcmp(type, "commit") == 0)
		return 1;
	return -1;
}

int
tree_parse(struct json_object *o, struct tree *t)
{
	struct json_object *list, *v, *e;
	size_t i, n, total = 0, len, at = 0;
	const char *path;
	int r = TH_ERR_PROTOCOL, k;

	memset(t, 0, sizeof(*t));
	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "tree", &list) ||
	    !json_object_is_type(list, json_type_array))
		return th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing has no "
		    "tree");
	/* Without the flag a cut listing could pass for a whole one. */
	if (!json_object_object_get_ex(o, "truncated", &v) ||
	    !json_object_is_type(v, json_type_boolean))
		return th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing does "
		    "not say whether it is complete");
	t->truncated = json_object_get_boolean(v);
	if ((n = json_object_array_length(list)) > TREE_ENTRIES_MAX)
		return th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing has "
		    "more than %d entries", TREE_ENTRIES_MAX);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(list, i);
		if ((k = is_file(e)) < 0)
			return th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing "
			    "has a malformed entry (%zu)", i);
		if (k == 1) {
			total += strlen(member(e, "path", FACTS_PATH_MAX)) + 1;
			t->n++;
		}
	}
	if ((t->e = calloc(t->n ? t->n : 1, sizeof(*t->e))) == NULL ||
	    (t->paths = malloc(total ? total : 1)) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	for (i = k = 0; i < n; i++) {
		e = json_object_array_get_idx(list, i);
		if (is_file(e) != 1)
			continue;
		path = member(e, "path", FACTS_PATH_MAX);
		len = strlen(path) + 1;
		memcpy(t->paths + at, path, len);
		t->e[k].path = t->paths + at;
		at += len;
		snprintf(t->e[k].mode, sizeof(t->e[k].mode), "%s",
		    member(e, "mode", 7));
		memcpy(t->e[k].sha, member(e, "sha", FACTS_SHA_LEN),
		    FACTS_SHA_LEN + 1);
		k++;
	}
	qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
	for (i = 1; i < t->n; i++)
		if (strcmp(t->e[i - 1].path, t->e[i].path) == 0) {
			r = th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing "
			    "names a path twice");
			goto out;
		}
	r = 0;
 out:
	if (r != 0)
		tree_free(t);
	return r;
}

void
tree_free(struct tree *t)
{
	free(t->e);
	free(t->paths);
	memset(t, 0, sizeof(*t));
}

int
tree_diff(const struct tree *base, const struct tree *head,
    struct pr_facts *f)
{
	size_t i = 0, k = 0;
	int c, r = 0;

	if (base->truncated || head->truncated)
		return th_fail(TH_ERR_INVALID, "a truncated tree listing");
	/* Both sorted: one walk, as a merge does. */
	while (r == 0 && (i < base->n || k < head->n)) {
		if (i == base->n)
			c = 1;
		else if (k == head->n)
			c = -1;
		else
			c = strcmp(base->e[i].path, head->e[k].path);
		if (c < 0)
			r = facts_add_file(f, base->e[i++].path, "removed");
		else if (c > 0)
			r = facts_add_file(f, head->e[k++].path, "added");
		else {
			/* A mode change (made executable, turned into a
			 * link) is a change GitHub lists too. */
			if (strcmp(base->e[i].sha, head->e[k].sha) != 0 ||
			    strcmp(base->e[i].mode, head->e[k].mode) != 0)
				r = facts_add_file(f, head->e[k].path,
				    "modified");
			i++;
			k++;
		}
	}
	return r;
}
