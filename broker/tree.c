#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "tree.h"

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct tree_entry *)a)->name,
	    ((const struct tree_entry *)b)->name);
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

/* A file (0), a directory (1), or -1: malformed. */
static int
entry_kind(struct json_object *e)
{
	const char *type, *mode, *sha, *name;

	if (!json_object_is_type(e, json_type_object) ||
	    (name = member(e, "path", FACTS_PATH_MAX)) == NULL ||
	    strchr(name, '/') != NULL ||
	    (type = member(e, "type", 8)) == NULL ||
	    (mode = member(e, "mode", 7)) == NULL ||
	    strspn(mode, "01234567") != strlen(mode) ||
	    (sha = member(e, "sha", FACTS_SHA_LEN)) == NULL ||
	    strlen(sha) != FACTS_SHA_LEN ||
	    strspn(sha, "0123456789abcdef") != FACTS_SHA_LEN)
		return -1;
	if (strcmp(type, "tree") == 0)
		return 1;
	/* A submodule ("commit") changes when it points elsewhere: that is
	 * a change to the repository as much as a file's. */
	if (strcmp(type, "blob") == 0 || strcmp(type, "commit") == 0)
		return 0;
	return -1;
}

int
tree_parse(struct json_object *o, struct tree *t)
{
	struct json_object *list, *v, *e;
	size_t i, n, total = 0, len, at = 0;
	const char *name;
	int r = TH_ERR_PROTOCOL, kind;

	memset(t, 0, sizeof(t[0]));
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
	if (json_object_get_boolean(v))
		return th_fail(TH_ERR_TOO_LONG, "GitHub's listing of a "
		    "directory is truncated");
	if ((n = json_object_array_length(list)) > TREE_ENTRIES_MAX)
		return th_fail(TH_ERR_TOO_LONG, "a directory of more than %d "
		    "entries", TREE_ENTRIES_MAX);
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(list, i);
		if (entry_kind(e) < 0)
			return th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing "
			    "has a malformed entry (%zu)", i);
		total += strlen(member(e, "path", FACTS_PATH_MAX)) + 1;
	}
	if ((t->e = calloc(n ? n : 1, sizeof(*t->e))) == NULL ||
	    (t->names = malloc(total ? total : 1)) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(list, i);
		kind = entry_kind(e);
		name = member(e, "path", FACTS_PATH_MAX);
		len = strlen(name) + 1;
		memcpy(t->names + at, name, len);
		t->e[i].name = t->names + at;
		at += len;
		t->e[i].dir = kind == 1;
		snprintf(t->e[i].mode, sizeof(t->e[i].mode), "%s",
		    member(e, "mode", 7));
		memcpy(t->e[i].sha, member(e, "sha", FACTS_SHA_LEN),
		    FACTS_SHA_LEN + 1);
	}
	t->n = n;
	qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
	for (i = 1; i < t->n; i++)
		if (strcmp(t->e[i - 1].name, t->e[i].name) == 0) {
			r = th_fail(TH_ERR_PROTOCOL, "GitHub's tree listing "
			    "names an entry twice");
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
	free(t->names);
	memset(t, 0, sizeof(t[0]));
}

/* An entry on one side only, or of another kind on each: a file is added
 * or removed, a directory is listed next with nothing on the other side. */
static int
one_side(const struct tree_entry *x, int head, const char *full,
    struct pr_facts *f, struct tree_dir *dirs, size_t *ndirs,
    size_t dirs_max)
{
	struct tree_dir *d;

	if (!x->dir)
		return facts_add_file(f, full, head ? "added" : "removed");
	if (*ndirs >= dirs_max)
		return th_fail(TH_ERR_TOO_LONG, "more than %zu directories "
		    "changed", dirs_max);
	d = &dirs[(*ndirs)++];
	memset(d, 0, sizeof(*d));
	memcpy(head ? d->head : d->base, x->sha, FACTS_SHA_LEN + 1);
	memcpy(d->path, full, strlen(full) + 1);
	return 0;
}

int
tree_diff(const struct tree *base, const struct tree *head, const char *path,
    struct pr_facts *f, struct tree_dir *dirs, size_t *ndirs, size_t dirs_max)
{
	const struct tree_entry *b, *h;
	char full[FACTS_PATH_MAX + 2];
	size_t i = 0, k = 0;
	int c, r = 0;

	/* Both sorted: one walk, as a merge does. */
	while (r == 0 && (i < base->n || k < head->n)) {
		b = i < base->n ? &base->e[i] : NULL;
		h = k < head->n ? &head->e[k] : NULL;
		c = b == NULL ? 1 : h == NULL ? -1 : strcmp(b->name, h->name);
		/* Unchanged: nothing below it changed either, and its path,
		 * however long, is not needed. */
		if (c == 0 && b->dir == h->dir && strcmp(b->sha, h->sha) == 0 &&
		    strcmp(b->mode, h->mode) == 0) {
			i++;
			k++;
			continue;
		}
		if ((size_t)snprintf(full, sizeof(full), "%s%s%s", path,
		    *path ? "/" : "", c <= 0 ? b->name : h->name) >
		    FACTS_PATH_MAX)
			return th_fail(TH_ERR_TOO_LONG, "a path of more than "
			    "%d bytes", FACTS_PATH_MAX);
		if (c < 0) {
			r = one_side(b, 0, full, f, dirs, ndirs, dirs_max);
			i++;
		} else if (c > 0) {
			r = one_side(h, 1, full, f, dirs, ndirs, dirs_max);
			k++;
		} else {
			i++;
			k++;
			if (!b->dir && !h->dir)
				/* A mode change (made executable, turned into
				 * a link) is a change GitHub lists too. */
				r = facts_add_file(f, full, "modified");
			else if (b->dir && h->dir) {
				if ((r = one_side(b, 0, full, f, dirs, ndirs,
				    dirs_max)) == 0)
					memcpy(dirs[*ndirs - 1].head, h->sha,
					    FACTS_SHA_LEN + 1);
			} else if ((r = one_side(b, 0, full, f, dirs, ndirs,
			    dirs_max)) == 0)
				r = one_side(h, 1, full, f, dirs, ndirs,
				    dirs_max);
		}
	}
	return r;
}
