/* Policy evaluation for a merge (docs/policy.md). */
#include <sys/stat.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "facts.h"
#include "peval.h"
#include "policy.h"

#define nitems(a)	(sizeof(a) / sizeof((a)[0]))

#define ZONEINFO_DIR	"/usr/share/zoneinfo"
#define TZ_NAME_MAX	64		/* as policy_validate */
#define LOCAL_MAX	96		/* "Tue 09:30 " + a zone name */
#define STALE_MAX	256		/* stale reviewers named in a reason */

/* Globs.  A pattern compiles to at most one token per byte, plus one for
 * an implicit leading "**" "/" (two tokens for three bytes otherwise); the
 * tokens are the states of an NFA whose last state (ntok) accepts. */
#define GLOB_MAX	FACTS_PATH_MAX
#define GLOB_STATES	(GLOB_MAX + 3)
#define GLOB_WORDS	((GLOB_STATES + 63) / 64)

enum {		/* the empty-transition types last: see glob_closure */
	G_LIT,		/* one byte */
	G_ANY,		/* '?': one byte but '/' */
	G_CLASS,	/* "[...]": one byte in the class, never '/' */
	G_DIRLOOP,	/* second half of G_DIRS: any byte, leave after '/' */
	G_STAR,		/* '*': any run of bytes without '/' */
	G_ANYSTR,	/* trailing "**": anything, '/' included */
	G_DIRS		/* "**" "/": skip it, or enter G_DIRLOOP */
};

struct gtok {
	uint8_t		type;
	uint8_t		ch;	/* G_LIT */
	uint16_t	pos;	/* G_CLASS: offset of its '[' in the pattern */
};

struct glob {
	const char	*pat;	/* without the anchoring '/' and trailing '/' */
	size_t		 len;
	int		 dironly;
	size_t		 ntok;
	struct gtok	 tok[GLOB_STATES];
};

static const char *const posix_classes[] = {
	"alnum", "alpha", "blank", "cntrl", "digit", "graph", "lower",
	"print", "punct", "space", "upper", "xdigit"
};

/* ASCII only, so that the locale cannot change what a policy protects. */
static int
posix_class_has(size_t idx, int c)
{
	int lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z';
	int digit = c >= '0' && c <= '9', graph = c > 0x20 && c < 0x7f;

	switch (idx) {
	case 0:	return lower || upper || digit;
	case 1:	return lower || upper;
	case 2:	return c == ' ' || c == '\t';
	case 3:	return c < 0x20 || c == 0x7f;
	case 4:	return digit;
	case 5:	return graph;
	case 6:	return lower;
	case 7:	return graph || c == ' ';
	case 8:	return graph && !lower && !upper && !digit;
	case 9:	return c == ' ' || (c >= '\t' && c <= '\r');
	case 10: return upper;
	case 11: return digit || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F');
	}
	return 0;
}

/* One possibly '\'-escaped byte of a class at p[*j]; -1 at the end. */
static int
class_byte(const char *p, size_t n, size_t *j)
{
	if (*j < n && p[*j] == '\\')
		(*j)++;
	if (*j >= n)
		return -1;
	return (unsigned char)p[(*j)++];
}

/* The class whose '[' is p[i]: 1 if byte c is in it, 0 if not (c < 0 only
 * checks the syntax), -1 if malformed; *end gets the offset after its ']'.
 * A leading '!' or '^' negates, a ']' right after it is literal, "a-z" is a
 * byte range, "[:name:]" a POSIX class, '\' escapes.  Malformed classes
 * (unterminated, reversed range, unknown name) are errors rather than
 * literals: a protected-path pattern that silently matched nothing would
 * leave its paths unprotected. */
static int
class_scan(const char *p, size_t i, size_t n, int c, size_t *end)
{
	size_t j = i + 1, first, k, m;
	int neg = 0, hit = 0, lo, hi;

	if (j < n && (p[j] == '!' || p[j] == '^')) {
		neg = 1;
		j++;
	}
	first = j;
	while (j < n && (p[j] != ']' || j == first)) {
		if (p[j] == '[' && j + 1 < n && p[j + 1] == ':') {
			for (k = j + 2; k + 1 < n &&
			    !(p[k] == ':' && p[k + 1] == ']'); k++)
				;
			if (k + 1 >= n)
				return -1;
			for (m = 0; m < nitems(posix_classes); m++)
				if (strlen(posix_classes[m]) == k - j - 2 &&
				    memcmp(posix_classes[m], p + j + 2,
				    k - j - 2) == 0)
					break;
			if (m == nitems(posix_classes))
				return -1;
			if (c >= 0 && posix_class_has(m, c))
				hit = 1;
			j = k + 2;
			continue;
		}
		if ((lo = class_byte(p, n, &j)) < 0)
			return -1;
		hi = lo;
		if (j + 1 < n && p[j] == '-' && p[j + 1] != ']') {
			j++;
			if ((hi = class_byte(p, n, &j)) < 0 || hi < lo)
				return -1;
		}
		if (c >= lo && c <= hi)
			hit = 1;
	}
	if (j >= n)
		return -1;
	*end = j + 1;
	return c < 0 ? 0 : hit != neg;
}

static int
glob_add(struct glob *g, int type, int ch, size_t pos)
{
	/* Cannot happen (one token per byte), but the array is fixed. */
	if (g->ntok >= GLOB_STATES - 1)
		return -1;
	g->tok[g->ntok].type = (uint8_t)type;
	g->tok[g->ntok].ch = (uint8_t)ch;
	g->tok[g->ntok].pos = (uint16_t)pos;
	g->ntok++;
	return 0;
}

/* No component of pat[0..n) (between its slashes, anchor and trailing
 * slash already taken off) is empty, "." or "..": GitHub's paths have
 * none, so such a pattern ("./.github/workflows", "a//b") would protect
 * nothing. */
static int
components_ok(const char *pat, size_t n)
{
	size_t i, start = 0, len;

	for (i = 0; i <= n; i++) {
		if (i < n && pat[i] == '\\') {
			i++;
			continue;
		}
		if (i < n && pat[i] != '/')
			continue;
		len = i - start;
		if (len == 0 || (len == 1 && pat[start] == '.') ||
		    (len == 2 && pat[start] == '.' && pat[start + 1] == '.'))
			return 0;
		start = i + 1;
	}
	return 1;
}

/* gitignore's rules: a trailing '/' restricts to directories, a leading
 * '/' anchors, and a pattern with no other '/' matches at any depth (as if
 * "**" "/" preceded it).  "**" is special only as a whole component:
 * leading or inner "**" "/" spans zero or more directories, a final "/"
 * "**" everything below; any other run of '*' is one '*'. */
static int
glob_compile(struct glob *g, const char *pat)
{
	size_t n, i, run, end;
	int anchored = 0, r;

	g->ntok = 0;
	g->dironly = 0;
	n = strnlen(pat, GLOB_MAX + 1);
	if (n == 0 || n > GLOB_MAX)
		return -1;
	/* git drops a trailing unescaped space ("x " is "x"); a stray one
	 * here would protect nothing, so it is no pattern at all. */
	if (pat[n - 1] == ' ') {
		for (i = n - 1; i > 0 && pat[i - 1] == '\\'; i--)
			;
		if ((n - 1 - i) % 2 == 0)
			return -1;
	}
	if (pat[n - 1] == '/') {
		g->dironly = 1;
		n--;
	}
	if (n > 0 && pat[0] == '/') {
		anchored = 1;
		pat++;
		n--;
	}
	if (n == 0 || !components_ok(pat, n))
		return -1;
	g->pat = pat;
	g->len = n;
	if (!anchored && memchr(pat, '/', n) == NULL &&
	    (glob_add(g, G_DIRS, 0, 0) != 0 ||
	    glob_add(g, G_DIRLOOP, 0, 0) != 0))
		return -1;
	for (i = 0; i < n; i++) {
		switch (pat[i]) {
		case '\\':
			if (++i >= n)
				return -1;
			r = glob_add(g, G_LIT, (unsigned char)pat[i], 0);
			break;
		case '?':
			r = glob_add(g, G_ANY, 0, 0);
			break;
		case '[':
			if (class_scan(pat, i, n, -1, &end) < 0)
				return -1;
			r = glob_add(g, G_CLASS, 0, i);
			i = end - 1;
			break;
		case '*':
			for (run = 1; i + run < n && pat[i + run] == '*'; run++)
				;
			if (run >= 2 && (i == 0 || pat[i - 1] == '/') &&
			    i + run == n)
				r = glob_add(g, G_ANYSTR, 0, 0);
			else if (run >= 2 && (i == 0 || pat[i - 1] == '/') &&
			    i + run < n && pat[i + run] == '/') {
				if ((r = glob_add(g, G_DIRS, 0, 0)) == 0)
					r = glob_add(g, G_DIRLOOP, 0, 0);
				run++;		/* the '/' is part of it */
			} else		/* any other run is one '*' */
				r = glob_add(g, G_STAR, 0, 0);
			i += run - 1;
			break;
		default:
			r = glob_add(g, G_LIT, (unsigned char)pat[i], 0);
			break;
		}
		if (r != 0)
			return -1;
	}
	return 0;
}

#define BIT_ISSET(s, i)	(((s)[(i) / 64] >> ((i) % 64)) & 1)
#define BIT_SET(s, i)	((s)[(i) / 64] |= (uint64_t)1 << ((i) % 64))

/* Follows the empty transitions: out of '*' and trailing "**" (which
 * loop), and from a "**" "/" both past it and into its loop; the loop
 * itself is left only by a '/', so "a/" "**" "/b" refuses "a/xb".  They
 * all go forward, so one ascending pass over the set bits suffices. */
static void
glob_closure(const struct glob *g, uint64_t *s)
{
	size_t w, i, t, last;
	uint64_t bits;

	for (w = 0; w < GLOB_WORDS; w++) {
		bits = s[w];
		while (bits != 0) {
			i = w * 64 + (size_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (i >= g->ntok || g->tok[i].type < G_STAR)
				continue;
			last = g->tok[i].type == G_DIRS ? i + 2 : i + 1;
			for (t = i + 1; t <= last; t++) {
				BIT_SET(s, t);
				if (t / 64 == w)
					bits |= (uint64_t)1 << (t % 64);
			}
		}
	}
}

/* Runs the NFA over path: O(strlen(path) * ntok) at worst, whatever the
 * pattern, where backtracking over several "**" would be exponential. */
static int
glob_run(const struct glob *g, const char *path, size_t n)
{
	uint64_t cur[GLOB_WORDS], nxt[GLOB_WORDS], bits, live;
	const struct gtok *t;
	size_t k, w, i, end;
	int c;

	memset(cur, 0, sizeof(cur));
	BIT_SET(cur, 0);
	glob_closure(g, cur);
	for (k = 0; k < n; k++) {
		c = (unsigned char)path[k];
		/* A matching directory takes everything in it along, as in
		 * gitignore: "secrets" also protects "secrets/key". */
		if (c == '/' && BIT_ISSET(cur, g->ntok))
			return 1;
		memset(nxt, 0, sizeof(nxt));
		for (w = 0; w < GLOB_WORDS; w++) {
			for (bits = cur[w]; bits != 0; bits &= bits - 1) {
				i = w * 64 + (size_t)__builtin_ctzll(bits);
				if (i >= g->ntok)
					continue;
				t = &g->tok[i];
				switch (t->type) {
				case G_LIT:
					if (c == t->ch)
						BIT_SET(nxt, i + 1);
					break;
				case G_ANY:
					if (c != '/')
						BIT_SET(nxt, i + 1);
					break;
				case G_CLASS:
					if (c != '/' && class_scan(g->pat,
					    t->pos, g->len, c, &end) == 1)
						BIT_SET(nxt, i + 1);
					break;
				case G_STAR:
					if (c != '/')
						BIT_SET(nxt, i);
					break;
				case G_ANYSTR:
					BIT_SET(nxt, i);
					break;
				case G_DIRLOOP:
					BIT_SET(nxt, i);
					if (c == '/')
						BIT_SET(nxt, i + 1);
					break;
				case G_DIRS:	/* empty transitions only */
					break;
				}
			}
		}
		glob_closure(g, nxt);
		for (live = 0, w = 0; w < GLOB_WORDS; w++)
			live |= cur[w] = nxt[w];
		if (live == 0)
			return 0;
	}
	/* The path itself is a file, never a directory. */
	return !g->dironly && BIT_ISSET(cur, g->ntok);
}

/* Returns 1 on a match, 0 otherwise, and TH_ERR_INVALID (negative, so
 * still true to a caller testing != 0) for a malformed pattern or a path
 * that is empty, absolute or longer than FACTS_PATH_MAX. */
int
glob_match(const char *pattern, const char *path)
{
	struct glob g;
	size_t n;

	if (pattern == NULL || path == NULL)
		return th_fail(TH_ERR_INVALID, "glob: no pattern or path");
	n = strnlen(path, GLOB_MAX + 1);
	if (n == 0 || n > GLOB_MAX || path[0] == '/')
		return th_fail(TH_ERR_INVALID, "glob: path is empty, absolute "
		    "or too long");
	if (glob_compile(&g, pattern) != 0)
		return th_fail(TH_ERR_INVALID, "glob: malformed pattern %.*s",
		    GLOB_MAX, pattern);
	return glob_run(&g, path, n);
}

/* Time windows. */


/* The zone must be a TZif file: glibc silently falls back to UTC for a
 * name it cannot load, and /usr/share/zoneinfo also holds zone.tab and
 * friends, which are regular files but not zones. */
static int
zone_check(const char *tz)
{
	char path[sizeof(ZONEINFO_DIR) + TZ_NAME_MAX + 1], magic[4];
	struct stat st;
	int fd = -1, ok;

	if (strlen(tz) > TZ_NAME_MAX || !policy_tz_valid(tz))
		return th_fail(TH_ERR_INVALID, "unknown time zone %.*s",
		    TZ_NAME_MAX, tz);
	snprintf(path, sizeof(path), "%s/%s", ZONEINFO_DIR, tz);
	/* O_NONBLOCK: a FIFO planted there must not hang the broker. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	ok = fd != -1 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic) &&
	    memcmp(magic, "TZif", sizeof(magic)) == 0;
	if (fd != -1)
		close(fd);
	return ok ? 0 : th_fail(TH_ERR_INVALID, "unknown time zone %s", tz);
}

/* Minutes since midnight of member key, or -1 (policy_hhmm). */
static int
window_minutes(struct json_object *w, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(w, key, &v) ? policy_hhmm(v) : -1;
}

void
window_env_init(void)
{
	if (getenv("TZ") == NULL)
		(void)setenv("TZ", ":/etc/localtime", 0);
}

int
window_contains(struct json_object *window, time_t now, char *local,
    size_t locallen)
{
	/* TZ is process-wide: one evaluation at a time changes it.  In the
	 * broker, window_env_init made the changes replacements in place.
	 * XXX another thread calling localtime() meanwhile sees this zone
	 * (none in the broker: its logs and GitHub's dates are UTC). */
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static const char *const day[] = {	/* tm_wday order */
		"sun", "mon", "tue", "wed", "thu", "fri", "sat"
	};
	static const char *const Day[] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
	};
	char spec[sizeof(ZONEINFO_DIR) + TZ_NAME_MAX + 2], *saved = NULL;
	struct json_object *v, *days;
	const char *tz, *old, *s;
	struct tm tm;
	int r = 0, locked = 0, converted = 0, start, end, cur, today = 0;
	size_t i;

	if (local != NULL && locallen > 0)
		local[0] = '\0';
	if (window == NULL || !json_object_is_type(window, json_type_object) ||
	    !json_object_object_get_ex(window, "tz", &v) ||
	    !json_object_is_type(v, json_type_string))
		return th_fail(TH_ERR_INVALID, "time_window needs an IANA tz");
	tz = json_object_get_string(v);
	if ((start = window_minutes(window, "start")) < 0 ||
	    (end = window_minutes(window, "end")) < 0)
		return th_fail(TH_ERR_INVALID, "time_window needs start and "
		    "end as HH:MM");
	if (!json_object_object_get_ex(window, "days", &days) ||
	    !json_object_is_type(days, json_type_array))
		return th_fail(TH_ERR_INVALID, "time_window needs days");
	if ((r = zone_check(tz)) != 0)
		return r;
	/* ":" and an absolute path: glibc reads exactly the file checked
	 * above, whatever TZDIR says. */
	snprintf(spec, sizeof(spec), ":%s/%s", ZONEINFO_DIR, tz);

	if (pthread_mutex_lock(&lock) != 0) {
		r = th_fail(TH_ERR_INTERNAL, "time_window: cannot lock");
		goto out;
	}
	locked = 1;
	/* setenv() may free what getenv() returned: copy it first. */
	if ((old = getenv("TZ")) != NULL && (saved = strdup(old)) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "out of memory");
		goto out;
	}
	if (setenv("TZ", spec, 1) != 0) {
		r = th_fail(TH_ERR_ALLOC, "time_window: cannot set TZ");
		goto out;
	}
	/* localtime_r need not re-read TZ; tzset makes it. */
	tzset();
	converted = localtime_r(&now, &tm) != NULL;
	if ((saved != NULL ? setenv("TZ", saved, 1) : unsetenv("TZ")) != 0)
		r = th_fail(TH_ERR_INTERNAL, "time_window: cannot restore TZ");
	tzset();
	if (r != 0)
		goto out;
	if (!converted || tm.tm_wday < 0 || tm.tm_wday > 6) {
		r = th_fail(TH_ERR_INVALID, "time_window: cannot convert %lld",
		    (long long)now);
		goto out;
	}
	if (local != NULL && locallen > 0)
		snprintf(local, locallen, "%s %02d:%02d %s", Day[tm.tm_wday],
		    tm.tm_hour, tm.tm_min, tz);
	for (i = 0; i < json_object_array_length(days); i++) {
		s = json_object_get_string(json_object_array_get_idx(days, i));
		if (s != NULL && strcmp(s, day[tm.tm_wday]) == 0)
			today = 1;
	}
	cur = tm.tm_hour * 60 + tm.tm_min;
	r = today && start <= cur && cur < end;
 out:
	if (locked)
		pthread_mutex_unlock(&lock);
	free(saved);
	return r;
}

/* Evaluation. */

struct ectx {
	struct json_object	*policy;
	const struct pr_facts	*f;
	const char		*target;
	time_t			 now;
	struct json_object	*ev;
};

/* Adds v (a new reference, NULL if its allocation failed) to object o. */
static int
ev_set(struct json_object *o, const char *key, struct json_object *v)
{
	if (v == NULL || json_object_object_add(o, key, v) != 0) {
		json_object_put(v);
		return th_fail(TH_ERR_ALLOC, "out of memory");
	}
	return 0;
}

static int
ev_push(struct json_object *a, struct json_object *v)
{
	if (v == NULL || json_object_array_add(a, v) != 0) {
		json_object_put(v);
		return th_fail(TH_ERR_ALLOC, "out of memory");
	}
	return 0;
}

/* A new array under key; *a is borrowed from o. */
static int
ev_array(struct json_object *o, const char *key, struct json_object **a)
{
	*a = json_object_new_array();
	return ev_set(o, key, *a);
}

/* {k1: v1, k2: v2}, or NULL. */
static struct json_object *
ev_pair(const char *k1, const char *v1, const char *k2, const char *v2)
{
	struct json_object *o;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if (ev_set(o, k1, json_object_new_string(v1)) != 0 ||
	    ev_set(o, k2, json_object_new_string(v2)) != 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

#define TERMINATED(s)	(memchr((s), '\0', sizeof(s)) != NULL)

/* The facts come from our own GitHub client, but a bug there must not make
 * this code read past an array or trust a half-filled record. */
static int
facts_check(const struct pr_facts *f, const char *target)
{
	const struct gh_pr *pr = &f->pr;
	size_t i, tlen = strnlen(target, FACTS_REF_MAX + 1);

	if (tlen == 0 || tlen > FACTS_REF_MAX)
		return th_fail(TH_ERR_INVALID, "target is empty or too long");
	if (f->nchecks > FACTS_CHECKS_MAX ||
	    f->nstatuses > FACTS_STATUSES_MAX ||
	    f->nreviews > FACTS_REVIEWS_MAX || f->nfiles > FACTS_FILES_MAX ||
	    (f->nchecks > 0 && f->checks == NULL) ||
	    (f->nstatuses > 0 && f->statuses == NULL) ||
	    (f->nreviews > 0 && f->reviews == NULL) ||
	    (f->nfiles > 0 && f->files == NULL))
		return th_fail(TH_ERR_INVALID, "pull request facts out of "
		    "bounds");
	if (!TERMINATED(pr->head_sha) ||
	    strlen(pr->head_sha) != FACTS_SHA_LEN ||
	    strspn(pr->head_sha, "0123456789abcdef") != FACTS_SHA_LEN)
		return th_fail(TH_ERR_INVALID, "pull request head SHA is "
		    "malformed");
	if (!TERMINATED(pr->head_ref) || !TERMINATED(pr->base_ref) ||
	    !TERMINATED(pr->author))
		return th_fail(TH_ERR_INVALID, "pull request facts malformed");
	for (i = 0; i < f->nchecks; i++)
		if (!TERMINATED(f->checks[i].name) ||
		    !TERMINATED(f->checks[i].status) ||
		    !TERMINATED(f->checks[i].conclusion) ||
		    f->checks[i].app_id < 0)
			return th_fail(TH_ERR_INVALID, "check run malformed");
	for (i = 0; i < f->nstatuses; i++)
		if (!TERMINATED(f->statuses[i].context) ||
		    !TERMINATED(f->statuses[i].state))
			return th_fail(TH_ERR_INVALID, "status malformed");
	for (i = 0; i < f->nreviews; i++)
		if (!TERMINATED(f->reviews[i].user) ||
		    !TERMINATED(f->reviews[i].state) ||
		    !TERMINATED(f->reviews[i].commit_id))
			return th_fail(TH_ERR_INVALID, "review malformed");
	for (i = 0; i < f->nfiles; i++)
		if (!TERMINATED(f->files[i].filename) ||
		    !TERMINATED(f->files[i].previous) ||
		    !TERMINATED(f->files[i].status))
			return th_fail(TH_ERR_INVALID, "changed file "
			    "malformed");
	return 0;
}

static int
rule_pr(struct ectx *x, struct json_object *v)
{
	const struct gh_pr *pr = &x->f->pr;

	(void)v;
	/* A merged PR is closed too: name the more telling state. */
	if (pr->merged)
		return th_fail(TH_ERR_DENIED, "pull request is merged");
	if (!pr->open)
		return th_fail(TH_ERR_DENIED, "pull request is closed");
	if (pr->draft)
		return th_fail(TH_ERR_DENIED, "pull request is draft");
	if (strcmp(pr->base_ref, x->target) != 0)
		return th_fail(TH_ERR_DENIED, "pull request targets %s, not %s",
		    pr->base_ref, x->target);
	return 0;
}

static int
rule_targets(struct ectx *x, struct json_object *v)
{
	const char *s;
	size_t i;

	/* Exact names: an entry ending in "/" "*" (which policy_validate
	 * lets through) matches only a branch of that very name, i.e. none. */
	for (i = 0; i < json_object_array_length(v); i++) {
		s = json_object_get_string(json_object_array_get_idx(v, i));
		if (s != NULL && strcmp(s, x->target) == 0)
			return 0;
	}
	return th_fail(TH_ERR_DENIED, "target %s is not in allowed_targets",
	    x->target);
}

/* GitHub's branch protection counts a completed check run as passing when
 * its conclusion is success, neutral or skipped (a skipped job "reports
 * success"); anything else, or a run not yet completed, is not passing. */
static int
run_passes(const struct gh_check_run *c)
{
	return strcmp(c->status, "completed") == 0 &&
	    (strcmp(c->conclusion, "success") == 0 ||
	    strcmp(c->conclusion, "neutral") == 0 ||
	    strcmp(c->conclusion, "skipped") == 0);
}

/* What a run came to: its conclusion once completed, else its status. */
static const char *
run_verdict(const struct gh_check_run *c)
{
	const char *s;

	s = strcmp(c->status, "completed") == 0 ? c->conclusion : c->status;
	return *s != '\0' ? s : "unknown";
}

static int
rule_checks(struct ectx *x, struct json_object *v)
{
	const struct pr_facts *f = x->f;
	struct json_object *a, *run;
	const char *name;
	int64_t app_id, other;
	size_t i, j;
	int r;

	if ((r = ev_array(x->ev, "checks", &a)) != 0)
		return r;
	for (i = 0; i < f->nchecks; i++) {
		run = ev_pair("name", f->checks[i].name, "conclusion",
		    run_verdict(&f->checks[i]));
		if (run != NULL && ev_set(run, "app_id",
		    json_object_new_int64(f->checks[i].app_id)) != 0) {
			json_object_put(run);
			run = NULL;
		}
		if ((r = ev_push(a, run)) != 0)
			return r;
	}
	if ((r = ev_array(x->ev, "statuses", &a)) != 0)
		return r;
	for (i = 0; i < f->nstatuses; i++)
		if ((r = ev_push(a, ev_pair("context", f->statuses[i].context,
		    "state", f->statuses[i].state))) != 0)
			return r;

	/* No statuses at all is GitHub's "pending", never success: even an
	 * empty required_checks asks for some CI to have passed. */
	if (f->nchecks == 0 && f->nstatuses == 0)
		return th_fail(TH_ERR_DENIED, "required checks: none reported "
		    "on %.7s", f->pr.head_sha);
	for (i = 0; i < f->nchecks; i++)
		if (!run_passes(&f->checks[i]))
			return th_fail(TH_ERR_DENIED, "required checks: %s "
			    "is %s", f->checks[i].name,
			    run_verdict(&f->checks[i]));
	for (i = 0; i < f->nstatuses; i++)
		if (strcmp(f->statuses[i].state, "success") != 0)
			return th_fail(TH_ERR_DENIED, "required checks: %s "
			    "is %s", f->statuses[i].context,
			    *f->statuses[i].state ? f->statuses[i].state :
			    "unknown");
	/* Everything reported passed; now each named one must be there, from
	 * the App it is pinned to if it is. */
	for (i = 0; i < json_object_array_length(v); i++) {
		if (policy_check_entry(json_object_array_get_idx(v, i), &name,
		    &app_id) != 0)
			return th_fail(TH_ERR_DENIED, "required checks: bad "
			    "entry");
		other = 0;
		for (j = 0; j < f->nchecks; j++) {
			if (strcmp(f->checks[j].name, name) != 0)
				continue;
			if (app_id == 0 || f->checks[j].app_id == app_id)
				break;
			if (other == 0)
				other = f->checks[j].app_id;
		}
		if (j < f->nchecks)
			continue;
		if (app_id != 0 && other != 0)
			return th_fail(TH_ERR_DENIED, "required checks: %s "
			    "from App %lld is missing (App %lld reported it)",
			    name, (long long)app_id, (long long)other);
		if (app_id != 0)
			return th_fail(TH_ERR_DENIED, "required checks: %s "
			    "from App %lld is missing", name,
			    (long long)app_id);
		for (j = 0; j < f->nstatuses; j++)
			if (strcmp(f->statuses[j].context, name) == 0)
				break;
		if (j == f->nstatuses)
			return th_fail(TH_ERR_DENIED, "required checks: %s is "
			    "missing", name);
	}
	return 0;
}


static void
append_name(char *buf, size_t len, const char *name)
{
	size_t used = strlen(buf);

	/* Keep room for ", ..." so a long list ends visibly cut. */
	if (used + strlen(name) + 2 + 5 < len)
		snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
		    name);
	else if (used + 5 < len && (used < 3 ||
	    strcmp(buf + used - 3, "...") != 0))
		snprintf(buf + used, len - used, "%s...", used ? ", " : "");
}

static int
rule_approvals(struct ectx *x, struct json_object *v)
{
	const struct pr_facts *f = x->f;
	const struct gh_review *rv;
	struct json_object *a, *fresh_v;
	char stale[STALE_MAX] = "", nowrite[STALE_MAX] = "";
	char unknown[STALE_MAX] = "";
	int64_t need = json_object_get_int64(v), have = 0;
	size_t i, j;
	int r, fresh;

	fresh = json_object_object_get_ex(x->policy, "fresh_approvals",
	    &fresh_v) && json_object_get_boolean(fresh_v);
	if ((r = ev_array(x->ev, "approvers", &a)) != 0)
		return r;
	/* Reviews are chronological: a reviewer's verdict is the last one.
	 * Logins compare case-insensitively as on GitHub, which can only
	 * merge reviewers or exclude the author, never add an approval.
	 * Quadratic, but FACTS_REVIEWS_MAX bounds it. */
	for (i = 0; i < f->nreviews; i++) {
		rv = &f->reviews[i];
		if (rv->user[0] == '\0' || !facts_is_verdict(rv->state))
			continue;
		for (j = i + 1; j < f->nreviews; j++)
			if (facts_is_verdict(f->reviews[j].state) &&
			    strcasecmp(f->reviews[j].user, rv->user) == 0)
				break;
		if (j < f->nreviews || strcmp(rv->state, "APPROVED") != 0 ||
		    strcasecmp(rv->user, f->pr.author) == 0)
			continue;
		if (fresh && strcmp(rv->commit_id, f->pr.head_sha) != 0) {
			append_name(stale, sizeof(stale), rv->user);
			continue;
		}
		/* As on GitHub, only a reviewer who may write approves. */
		if (rv->write != 1) {
			append_name(rv->write == 0 ? nowrite : unknown,
			    STALE_MAX, rv->user);
			continue;
		}
		if ((r = ev_push(a, json_object_new_string(rv->user))) != 0)
			return r;
		have++;
	}
	if (have < need)
		return th_fail(TH_ERR_DENIED, "approvals: %lld of %lld required"
		    "%s%s%s%s%s%s%s%s%s", (long long)have, (long long)need,
		    *stale ? " (stale: " : "", stale, *stale ? ")" : "",
		    *nowrite ? " (without write access: " : "", nowrite,
		    *nowrite ? ")" : "",
		    *unknown ? " (write access not known: " : "", unknown,
		    *unknown ? ")" : "");
	return 0;
}

static int
files_unread(const struct pr_facts *f)
{
	if (f->files_why[0] != '\0')
		return th_fail(TH_ERR_DENIED, "changed files could not all be "
		    "read: %.*s", (int)sizeof(f->files_why), f->files_why);
	if (f->pr.changed_files < 0)
		return th_fail(TH_ERR_DENIED, "changed files could not all be "
		    "read: GitHub did not say how many the pull request has");
	if (f->pr.changed_files > FACTS_FILES_MAX)
		return th_fail(TH_ERR_DENIED, "changed files could not all be "
		    "read: GitHub listed %zu of the pull request's %lld (it "
		    "lists at most %d)", f->nfiles,
		    (long long)f->pr.changed_files, FACTS_FILES_MAX);
	return th_fail(TH_ERR_DENIED, "changed files could not all be read: "
	    "GitHub listed %zu of the pull request's %lld%s", f->nfiles,
	    (long long)f->pr.changed_files, f->files_pinned ? " comparing its "
	    "base with its head commit" : "");
}

static int
rule_paths(struct ectx *x, struct json_object *v)
{
	const struct pr_facts *f = x->f;
	const char *name[2], *pat;
	size_t i, k, p;
	int r, m;

	if ((r = ev_set(x->ev, "files", json_object_new_int64(
	    (int64_t)f->nfiles))) != 0)
		return r;
	/* A file GitHub did not list could be the protected one. */
	if (!f->files_complete)
		return files_unread(f);
	for (i = 0; i < f->nfiles; i++) {
		/* A rename moves a protected file as much as it adds one. */
		name[0] = f->files[i].filename;
		name[1] = f->files[i].previous;
		for (k = 0; k < 2; k++) {
			if (k == 1 && *name[k] == '\0')
				continue;
			for (p = 0; p < json_object_array_length(v); p++) {
				pat = json_object_get_string(
				    json_object_array_get_idx(v, p));
				if (pat == NULL)
					return th_fail(TH_ERR_DENIED,
					    "protected path: bad pattern");
				if ((m = glob_match(pat, name[k])) == 0)
					continue;
				if (m < 0)
					return th_fail(TH_ERR_DENIED,
					    "protected path: cannot match %s "
					    "against %s", name[k], pat);
				if ((r = ev_set(x->ev, "matched_path",
				    json_object_new_string(name[k]))) != 0)
					return r;
				return th_fail(TH_ERR_DENIED, "protected path: "
				    "%s matches %s", name[k], pat);
			}
		}
	}
	return 0;
}

static int
rule_max_files(struct ectx *x, struct json_object *v)
{
	const struct pr_facts *f = x->f;
	int64_t max = json_object_get_int64(v);
	int64_t n = (int64_t)f->nfiles;
	size_t i, added = 0, removed = 0;
	int r;

	/* Told from trees, a rename is two paths, one removed and one
	 * added: at least nfiles - min(added, removed) files changed. */
	if (f->files_by_tree) {
		for (i = 0; i < f->nfiles; i++) {
			added += strcmp(f->files[i].status, "added") == 0;
			removed += strcmp(f->files[i].status, "removed") == 0;
		}
		n -= (int64_t)(added < removed ? added : removed);
	}
	if (f->pr.changed_files > n)
		n = f->pr.changed_files;
	if ((r = ev_set(x->ev, "files", json_object_new_int64(n))) != 0)
		return r;
	if (n > max)
		return th_fail(TH_ERR_DENIED, "changed files: %lld, at most "
		    "%lld allowed", (long long)n, (long long)max);
	/* An incomplete list only gives a lower bound. */
	if (!f->files_complete)
		return files_unread(f);
	return 0;
}

static int
rule_window(struct ectx *x, struct json_object *v)
{
	char local[LOCAL_MAX];
	int r, e;

	r = window_contains(v, x->now, local, sizeof(local));
	if (r >= 0 && (e = ev_set(x->ev, "window",
	    json_object_new_string(local))) != 0)
		return e;
	if (r == 1)
		return 0;
	if (r == 0)
		return th_fail(TH_ERR_DENIED, "outside the time window (%s)",
		    local);
	if (r == TH_ERR_INVALID)
		return th_fail(TH_ERR_DENIED, "%s", th_errmsg(r));
	return r;
}

/* In evaluation order; the first failure is the reason.  pull_request is
 * not a policy member: it always runs. */
static const struct rule {
	const char	*name;
	int		 always;
	int		(*fn)(struct ectx *, struct json_object *);
} rules[] = {
	{ "pull_request",	1, rule_pr },
	{ "allowed_targets",	0, rule_targets },
	{ "required_checks",	0, rule_checks },
	{ "min_approvals",	0, rule_approvals },
	{ "protected_paths",	0, rule_paths },
	{ "max_changed_files",	0, rule_max_files },
	{ "time_window",	0, rule_window },
};

/* A member this evaluator does not know must refuse, not pass: if the
 * schema grows a rule before this file does, the rule still binds. */
/* Names the failed rule in the evidence and hands the evidence over (or
 * drops it); losing the name to a failed allocation still refuses. */
static int
conclude(int r, const char *failed, struct json_object *ev,
    struct json_object **evidence)
{
	if (failed != NULL && ev_set(ev, "failed_rule",
	    json_object_new_string(failed)) != 0)
		r = TH_ERR_ALLOC;
	if (evidence != NULL)
		*evidence = ev;
	else
		json_object_put(ev);
	return r;
}

static int
known_members(struct json_object *policy)
{
	size_t i;

	json_object_object_foreach(policy, k, val) {
		(void)val;
		if (strcmp(k, "fresh_approvals") == 0)	/* min_approvals' */
			continue;
		/* Rules of git pushes, judged by git.c as refs arrive. */
		if (strcmp(k, "allow_force_push") == 0 ||
		    strcmp(k, "allow_branch_delete") == 0 ||
		    strcmp(k, "max_push_bytes") == 0)
			continue;
		for (i = 0; i < nitems(rules); i++)
			if (!rules[i].always && strcmp(k, rules[i].name) == 0)
				break;
		if (i == nitems(rules))
			return th_fail(TH_ERR_DENIED, "policy rule %s is not "
			    "supported", k);
	}
	return 0;
}

int
peval_reads_files(struct json_object *policy)
{
	return json_object_object_get_ex(policy, "protected_paths", NULL) ||
	    json_object_object_get_ex(policy, "max_changed_files", NULL);
}

int
peval_merge(struct json_object *policy, const struct pr_facts *f,
    const char *target, time_t now, struct json_object **evidence)
{
	struct ectx x;
	struct json_object *ev = NULL, *list, *v;
	const char *failed = NULL;
	size_t i;
	int r;

	if (evidence != NULL)
		*evidence = NULL;
	if ((ev = json_object_new_object()) == NULL)
		return th_fail(TH_ERR_ALLOC, "out of memory");
	if (policy == NULL || f == NULL || target == NULL) {
		r = th_fail(TH_ERR_INVALID, "peval: missing argument");
		goto out;
	}
	/* Validated already; again, cheaply, so that no evaluation rests on
	 * a caller having remembered. */
	if ((r = policy_validate(policy)) != 0 ||
	    (r = known_members(policy)) != 0) {
		failed = "policy";
		goto out;
	}
	if ((r = facts_check(f, target)) != 0) {
		failed = "facts";
		goto out;
	}
	x.policy = policy;
	x.f = f;
	x.target = target;
	x.now = now;
	x.ev = ev;
	if ((r = ev_set(ev, "head_sha",
	    json_object_new_string(f->pr.head_sha))) != 0 ||
	    (r = ev_set(ev, "target", json_object_new_string(target))) != 0 ||
	    (r = ev_array(ev, "rules", &list)) != 0)
		goto out;
	for (i = 0; i < nitems(rules); i++) {
		v = NULL;
		if (!rules[i].always &&
		    !json_object_object_get_ex(policy, rules[i].name, &v))
			continue;
		if ((r = ev_push(list,
		    json_object_new_string(rules[i].name))) != 0)
			goto out;
		if ((r = rules[i].fn(&x, v)) != 0) {
			failed = rules[i].name;
			goto out;
		}
	}
	r = 0;
 out:
	return conclude(r, failed, ev, evidence);
}

int
peval_op(struct json_object *policy, const char *target, time_t now,
    struct json_object **evidence)
{
	struct ectx x;
	struct json_object *ev = NULL, *list, *v;
	const char *failed = NULL;
	int r;

	if (evidence != NULL)
		*evidence = NULL;
	if ((ev = json_object_new_object()) == NULL)
		return th_fail(TH_ERR_ALLOC, "out of memory");
	if (policy == NULL) {
		r = th_fail(TH_ERR_INVALID, "peval: missing argument");
		goto out;
	}
	if ((r = policy_validate(policy)) != 0 ||
	    (r = known_members(policy)) != 0) {
		failed = "policy";
		goto out;
	}
	memset(&x, 0, sizeof(x));
	x.policy = policy;
	x.target = target;
	x.now = now;
	x.ev = ev;
	if ((target != NULL && (r = ev_set(ev, "target",
	    json_object_new_string(target))) != 0) ||
	    (r = ev_array(ev, "rules", &list)) != 0)
		goto out;
	/* A branch-restricted policy holds an operation without a target
	 * (a comment) to nothing; one with a target must name an allowed
	 * branch. */
	if (target != NULL &&
	    json_object_object_get_ex(policy, "allowed_targets", &v)) {
		if ((r = ev_push(list, json_object_new_string(
		    "allowed_targets"))) != 0)
			goto out;
		if ((r = rule_targets(&x, v)) != 0) {
			failed = "allowed_targets";
			goto out;
		}
	}
	if (json_object_object_get_ex(policy, "time_window", &v)) {
		if ((r = ev_push(list, json_object_new_string(
		    "time_window"))) != 0)
			goto out;
		if ((r = rule_window(&x, v)) != 0) {
			failed = "time_window";
			goto out;
		}
	}
	r = 0;
 out:
	return conclude(r, failed, ev, evidence);
}
