/* Incremental parser of a git smart-HTTP git-receive-pack request body
 * (gitprotocol-pack: "update-request" = command list, flush, optional push
 * options, pack), so that the broker can decide on a push before it
 * forwards a single byte to the real server.
 *
 * The body is fed in chunks of any size as it arrives.  Memory stays
 * bounded whatever the input: one pkt-line at a time, the pack is never
 * buffered (only the state of the object being inflated, plus the content
 * of one commit up to max_commit_size), and every table grows only up to
 * its limit.  Every object is inflated to find where it ends and to check
 * its size; commits that are stored whole are parsed into an id -> parents
 * graph.  Any malformed input is an error, and after an error every later
 * call returns that same error.
 *
 * Refused on purpose: signed pushes (push-cert), shallow pushes, SHA-256
 * repositories (object-format other than sha1), duplicate ref names, an
 * empty command list. */
#ifndef TH_GITRX_H
#define TH_GITRX_H

#include <stddef.h>
#include <stdint.h>

#define GITRX_HEXSZ		40
#define GITRX_REF_MAX		255	/* longest ref name accepted */
#define GITRX_PUSHOPT_MAX	64	/* push options per request */

struct gitrx_limits {
	size_t		max_commands;	/* ref updates, e.g. 64 */
	uint64_t	max_pack_bytes;	/* pack with its trailer */
	uint32_t	max_objects;	/* announced object count */
	size_t		max_commits;	/* commits kept in the graph */
	size_t		max_commit_size; /* inflated size of one commit */
	size_t		max_commit_bytes; /* all commits' content, kept */
	uint64_t	max_object_size; /* inflated size of any object */
	/* What a pack may cost beyond its own size: a few bytes of deflate
	 * or of delta copies can stand for megabytes.  Inflated bytes in
	 * all, and commits' content kept, are each bounded by a free
	 * allowance plus a multiple of the pack bytes read so far. */
	uint64_t	inflate_free;
	unsigned	inflate_ratio;
	size_t		commit_free;
	unsigned	commit_ratio;
};

struct gitrx_cmd {
	char	old[GITRX_HEXSZ + 1];		/* lower-case hex */
	char	new[GITRX_HEXSZ + 1];
	char	ref[GITRX_REF_MAX + 1];
	int	is_create;			/* old is all zeros */
	int	is_delete;			/* new is all zeros */
};

struct gitrx;

/* 64 commands, 512 MiB of pack, 4M objects, 200000 commits of at most
 * 1 MiB, objects of at most 512 MiB. */
void	gitrx_limits_default(struct gitrx_limits *lim);

/* NULL lim means the defaults.  NULL if out of memory or a limit is 0. */
struct gitrx	*gitrx_new(const struct gitrx_limits *lim);
void		 gitrx_free(struct gitrx *rx);		/* NULL ok */

/* Consumes the next n bytes of the body.  0, or a negative TH_ERR_* with a
 * one-line th_fail() message ("malformed pkt-line length", "pack larger
 * than the limit of N bytes", "pack checksum mismatch", ...). */
int	gitrx_feed(struct gitrx *rx, const uint8_t *p, size_t n);

/* At the end of the body: 0 iff it was complete, that is the commands, their
 * flush, the push options if announced, and (unless every command is a
 * deletion) a whole pack with exactly its announced objects and a valid
 * SHA-1 trailer and nothing after it.  TH_ERR_TRUNCATED otherwise, or the
 * error the body already had. */
int	gitrx_finish(struct gitrx *rx);

/* Ref updates, in request order; gitrx_command is NULL past the end. */
size_t			 gitrx_ncommands(const struct gitrx *rx);
const struct gitrx_cmd	*gitrx_command(const struct gitrx *rx, size_t i);
/* Capability list of the first command (after its NUL); "" if none. */
const char	*gitrx_caps(const struct gitrx *rx);
int		 gitrx_push_cert(const struct gitrx *rx); /* 1 if one came */
/* 1 if the push-options capability was requested; *nopts (if not NULL)
 * gets how many options were sent.  Their text is not kept. */
int		 gitrx_push_options(const struct gitrx *rx, size_t *nopts);

uint64_t	 gitrx_body_bytes(const struct gitrx *rx);
uint64_t	 gitrx_pack_bytes(const struct gitrx *rx); /* incl. trailer */
uint32_t	 gitrx_nobjects(const struct gitrx *rx);   /* announced */
size_t		 gitrx_ncommits(const struct gitrx *rx);   /* in the graph */
uint64_t	 gitrx_ndeltas(const struct gitrx *rx);
/* Deltas whose type could not be told: REF_DELTA whose base is not a
 * commit of the pack (a thin pack's base on the server, or an object the
 * graph does not name) and OFS_DELTA chains down to one.  Any of these may
 * be a commit missing from the graph. */
uint64_t	 gitrx_ndeltas_unknown(const struct gitrx *rx);
/* Deltas known to be commits (base a commit of the pack): these commits
 * are not in the graph either, as their content is never rebuilt. */
uint64_t	 gitrx_ndelta_commits(const struct gitrx *rx);

/* 1 and *parents[0..*n) (lower-case hex, valid until gitrx_free) if the
 * pack holds commit id_hex whole, 0 if not, TH_ERR_INVALID if id_hex is not
 * 40 lower-case hex digits. */
int	gitrx_commit_parents(const struct gitrx *rx, const char *id_hex,
	    const char (**parents)[GITRX_HEXSZ + 1], size_t *n);
/* Same, for the commit's tree, copied to tree_hex. */
int	gitrx_commit_tree(const struct gitrx *rx, const char *id_hex,
	    char tree_hex[GITRX_HEXSZ + 1]);

/* Walks parents from new_hex through the commits of the pack (bounded:
 * visited set, queue, no recursion).  1 if old_hex is reached, or equals
 * new_hex: a fast-forward proved inside the pack.  Else 0, with
 * boundary[0..*nboundary) the distinct parents, not in the pack, where the
 * walk left it (so the caller can ask the server whether old_hex is an
 * ancestor of one of them); {new_hex} if new_hex itself is not a commit of
 * the pack.  TH_ERR_TOO_LONG if there are more than max of them,
 * TH_ERR_INVALID for bad hex, and the body's error, or TH_ERR_TRUNCATED, if
 * the body was not complete: a partial graph proves nothing. */
int	gitrx_ancestry(const struct gitrx *rx, const char *new_hex,
	    const char *old_hex, char (*boundary)[GITRX_HEXSZ + 1], size_t max,
	    size_t *nboundary);

#endif
