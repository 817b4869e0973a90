/* Recovery's reading of GitHub's lists (recover.c), apart for the fuzzer:
 * which objects GitHub lists could be what an interrupted intent asked
 * for. */
#ifndef TH_RECOVER_H
#define TH_RECOVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

/* Objects the App made that one intent may be looked up among. */
#define REC_CANDIDATES	1000

/* An object the App may have made for an interrupted intent.  One GitHub
 * lists (a comment, pull request or deployment) is a candidate if the App
 * made it (author login_member.login is the App's login), no earlier than
 * since and no later than until, and, as far as the list's own filters
 * are not trusted, what the intent asked for: a comment's body, a pull
 * request's head branch. */
struct rec_made {
	const char		*login_member;	/* "user" or "creator" */
	const char		*id_member;	/* "id" or "number" */
	const char		*app;		/* "slug[bot]" */
	const char		*body;		/* NULL: not compared */
	const char		*head;		/* NULL: not compared */
	int			 newest_first;	/* the list is, by creation */
	time_t			 since, until;	/* made within */
	time_t			 last;		/* the last item's creation */
	int64_t			 ids[REC_CANDIDATES];
	size_t			 nids;
};

/* gh_list's callback over one listed item: a candidate's id is added to
 * m->ids; 1 stops the walk (m->newest_first, and the rest is older than
 * since); a negative error for an item without the members it needs, or
 * newer than the one before on a newest-first list. */
int	rec_made_match(struct json_object *item, void *arg);

#endif
