#include <stdlib.h>

#include "facts.h"

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
