#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "facts.h"
#include "json.h"

void
facts_free(struct pr_facts *f)
{
	if (f == NULL)
		return;
	free(f->checks);
	free(f->statuses);
	free(f->reviews);
	free(f->files);
	f->checks = NULL;
	f->statuses = NULL;
	f->reviews = NULL;
	f->files = NULL;
	f->nchecks = f->nstatuses = f->nreviews = f->nfiles = 0;
	/* An emptied list is not a complete one: a protected-path rule run
	 * on freed facts must refuse, not see a PR with no files. */
	f->files_complete = 0;
}

/* Copies string member key of o into dst; a missing optional member
 * leaves "", anything too long or of another type is an error. */
int
facts_str(struct json_object *o, const char *key, char *dst, size_t dstsz,
    int required)
{
	struct json_object *v;

	dst[0] = '\0';
	if (!json_object_object_get_ex(o, key, &v) ||
	    json_object_is_type(v, json_type_null))
		return required ? th_fail(TH_ERR_PROTOCOL, "GitHub reply "
		    "lacks \"%s\"", key) : 0;
	if (!json_object_is_type(v, json_type_string) ||
	    (size_t)json_object_get_string_len(v) >= dstsz)
		return th_fail(TH_ERR_PROTOCOL, "GitHub reply: bad \"%s\"", key);
	memcpy(dst, json_object_get_string(v),
	    (size_t)json_object_get_string_len(v) + 1);
	return 0;
}

/* With null_ok, a null user (GitHub's schema allows it: a review whose
 * author's account is gone) is the empty login, which counts for nothing
 * (docs/policy.md); a pull request's author must be there. */
static int
copy_login(struct json_object *o, char *dst, int null_ok)
{
	struct json_object *user;

	if (!json_object_object_get_ex(o, "user", &user))
		return th_fail(TH_ERR_PROTOCOL, "GitHub reply lacks a user");
	if (user == NULL && null_ok) {
		dst[0] = '\0';
		return 0;
	}
	if (!json_object_is_type(user, json_type_object))
		return th_fail(TH_ERR_PROTOCOL, "GitHub reply lacks a user");
	return facts_str(user, "login", dst, FACTS_LOGIN_MAX + 1, 1);
}

int
facts_parse_pr(struct json_object *o, struct gh_pr *pr)
{
	struct json_object *head, *base, *v;
	const char *state;
	int r;

	memset(pr, 0, sizeof(*pr));
	if (!json_object_object_get_ex(o, "head", &head) ||
	    !json_object_object_get_ex(o, "base", &base) ||
	    (r = facts_str(head, "sha", pr->head_sha, sizeof(pr->head_sha), 1))
	    != 0 || strlen(pr->head_sha) != FACTS_SHA_LEN ||
	    (r = facts_str(head, "ref", pr->head_ref, sizeof(pr->head_ref), 1))
	    != 0 ||
	    (r = facts_str(base, "ref", pr->base_ref, sizeof(pr->base_ref), 1))
	    != 0 || (r = copy_login(o, pr->author, 0)) != 0 ||
	    (r = json_get_int64(o, "number", &pr->number)) != 0 ||
	    (r = json_get_string(o, "state", &state)) != 0)
		return th_fail(TH_ERR_PROTOCOL, "malformed pull request reply");
	pr->open = strcmp(state, "open") == 0;
	pr->merged = json_object_object_get_ex(o, "merged", &v) &&
	    json_object_get_boolean(v);
	pr->draft = json_object_object_get_ex(o, "draft", &v) &&
	    json_object_get_boolean(v);
	pr->mergeable = !json_object_object_get_ex(o, "mergeable", &v) ||
	    json_object_is_type(v, json_type_null) ? -1 :
	    json_object_get_boolean(v);
	/* Who merged it and when: recovery tells the App's merge from
	 * anyone else's. */
	if (json_object_object_get_ex(o, "merged_by", &v) &&
	    !json_object_is_type(v, json_type_null) &&
	    (!json_object_is_type(v, json_type_object) ||
	    facts_str(v, "login", pr->merged_by, sizeof(pr->merged_by), 1)
	    != 0))
		return th_fail(TH_ERR_PROTOCOL, "malformed pull request reply: "
		    "merged_by");
	if (facts_str(o, "merged_at", pr->merged_at, sizeof(pr->merged_at),
	    0) != 0)
		return th_fail(TH_ERR_PROTOCOL, "malformed pull request reply: "
		    "merged_at");
	/* The files list stops at 3000 with no next page: only this count
	 * tells a whole list from a cut one. */
	pr->changed_files = -1;
	if (json_object_object_get_ex(o, "changed_files", NULL) &&
	    ((r = json_get_int64(o, "changed_files", &pr->changed_files))
	    != 0 || pr->changed_files < 0))
		return th_fail(TH_ERR_PROTOCOL, "malformed pull request reply: "
		    "changed_files");
	return 0;
}

/* The App that reported a check run: app.id, or 0 when GitHub names
 * none (app is null). */
static int
check_app(struct json_object *run, int64_t *app_id)
{
	struct json_object *app;

	*app_id = 0;
	if (!json_object_object_get_ex(run, "app", &app) ||
	    json_object_is_type(app, json_type_null))
		return 0;
	if (!json_object_is_type(app, json_type_object) ||
	    json_get_int64(app, "id", app_id) != 0 || *app_id < 1)
		return th_fail(TH_ERR_PROTOCOL, "GitHub reply: bad check run "
		    "\"app\"");
	return 0;
}

/* Grows *arr (of elements of size sz) to hold one more, bounded by max. */
static void *
push(void **arr, size_t *n, size_t sz, size_t max)
{
	void *p;

	if (*n >= max || (p = realloc(*arr, (*n + 1) * sz)) == NULL)
		return NULL;
	*arr = p;
	memset((char *)p + *n * sz, 0, sz);
	return (char *)p + (*n)++ * sz;
}

int
facts_parse_page(enum facts_list kind, struct json_object *o,
    struct pr_facts *f)
{
	struct json_object *a = o, *e;
	struct gh_check_run *c;
	struct gh_status *s;
	struct gh_review *rv;
	struct gh_file *fl;
	size_t i;
	int r = 0;

	if (kind == FACTS_CHECKS &&
	    !json_object_object_get_ex(o, "check_runs", &a))
		return th_fail(TH_ERR_PROTOCOL, "check-runs reply lacks runs");
	if (kind == FACTS_STATUS &&
	    !json_object_object_get_ex(o, "statuses", &a))
		return th_fail(TH_ERR_PROTOCOL, "status reply lacks statuses");
	if (!json_object_is_type(a, json_type_array))
		return th_fail(TH_ERR_PROTOCOL, "GitHub reply is not a list");
	for (i = 0; r == 0 && i < json_object_array_length(a); i++) {
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_object))
			return th_fail(TH_ERR_PROTOCOL, "bad list entry");
		switch (kind) {
		case FACTS_CHECKS:
			if ((c = push((void **)&f->checks, &f->nchecks,
			    sizeof(*c), FACTS_CHECKS_MAX)) == NULL)
				return th_fail(TH_ERR_TOO_LONG, "too many "
				    "check runs");
			if ((r = facts_str(e, "name", c->name, sizeof(c->name),
			    1)) == 0 && (r = facts_str(e, "status", c->status,
			    sizeof(c->status), 1)) == 0 &&
			    (r = facts_str(e, "conclusion", c->conclusion,
			    sizeof(c->conclusion), 0)) == 0)
				r = check_app(e, &c->app_id);
			break;
		case FACTS_STATUS:
			if ((s = push((void **)&f->statuses, &f->nstatuses,
			    sizeof(*s), FACTS_STATUSES_MAX)) == NULL)
				return th_fail(TH_ERR_TOO_LONG, "too many "
				    "statuses");
			if ((r = facts_str(e, "context", s->context,
			    sizeof(s->context), 1)) == 0)
				r = facts_str(e, "state", s->state,
				    sizeof(s->state), 1);
			break;
		case FACTS_REVIEWS:
			if ((rv = push((void **)&f->reviews, &f->nreviews,
			    sizeof(*rv), FACTS_REVIEWS_MAX)) == NULL)
				return th_fail(TH_ERR_TOO_LONG, "too many "
				    "reviews");
			rv->write = -1;
			if ((r = json_get_int64(e, "id", &rv->id)) == 0 &&
			    (r = copy_login(e, rv->user, 1)) == 0 &&
			    (r = facts_str(e, "state", rv->state,
			    sizeof(rv->state), 1)) == 0)
				r = facts_str(e, "commit_id", rv->commit_id,
				    sizeof(rv->commit_id), 0);
			break;
		case FACTS_FILES:
			if ((fl = push((void **)&f->files, &f->nfiles,
			    sizeof(*fl), FACTS_FILES_MAX)) == NULL)
				return th_fail(TH_ERR_TOO_LONG, "more than %d "
				    "changed files", FACTS_FILES_MAX);
			if ((r = facts_str(e, "filename", fl->filename,
			    sizeof(fl->filename), 1)) == 0 &&
			    (r = facts_str(e, "status", fl->status,
			    sizeof(fl->status), 1)) == 0)
				r = facts_str(e, "previous_filename",
				    fl->previous, sizeof(fl->previous), 0);
			break;
		default:
			break;
		}
	}
	return r;
}

int
facts_add_file(struct pr_facts *f, const char *path, const char *status)
{
	struct gh_file *fl;

	if (strlen(path) > FACTS_PATH_MAX || strlen(status) >=
	    sizeof(fl->status))
		return th_fail(TH_ERR_PROTOCOL, "changed file name too long");
	if (f->nfiles >= FACTS_FILES_MAX)
		return th_fail(TH_ERR_TOO_LONG, "more than %d changed files",
		    FACTS_FILES_MAX);
	if ((fl = push((void **)&f->files, &f->nfiles, sizeof(*fl),
	    FACTS_FILES_MAX)) == NULL)
		return TH_ERR_ALLOC;
	memcpy(fl->filename, path, strlen(path) + 1);
	memcpy(fl->status, status, strlen(status) + 1);
	return 0;
}

int
facts_is_verdict(const char *state)
{
	return strcmp(state, "APPROVED") == 0 ||
	    strcmp(state, "CHANGES_REQUESTED") == 0 ||
	    strcmp(state, "DISMISSED") == 0;
}
