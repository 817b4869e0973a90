/* The lines of an export file, read ahead by the verifier's thread and
 * prepared by worker threads (parsed; an entry's canonical hash and Merkle
 * leaf computed), then handed back one at a time in file order.  What is
 * left to the verifier's thread is what depends on the lines before.
 * Without it that thread parsed and hashed every line itself and, whatever
 * the number of cores, verified no faster than one core parses. */
#ifndef TH_VLINES_H
#define TH_VLINES_H

#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "merkle.h"
#include "sha.h"

#define VLINES_BATCH	64	/* lines per hand-off to a worker, */
#define VLINES_BATCH_BYTES (256 * 1024)	/* or fewer once this many bytes */
#define VLINES_RING	8	/* batches read ahead: at most 8 x (256 KiB +
				 * one line) of text held, parsed or not */
#define VLINES_THREADS_MAX 8
#define VLINES_READ	(64 * 1024)	/* bytes read at a time */
#define VLINES_WHY_MAX	512

struct vline {
	unsigned long long	 lineno;		/* 1-based */
	const char		*bad;	/* refused by the reader (then the
					 * last line handed back), or NULL */
	struct json_object	*o;	/* the parsed line, or NULL (why) */
	int			 hashed;	/* an entry's h and leaf, or */
	int			 canon_r;	/* its canonical form failed (why) */
	char			 why[VLINES_WHY_MAX];
	uint8_t			 h[SHA_LEN];
	uint8_t			 leaf[MERKLE_HASH_LEN];
};

/* Prepares one line of len bytes (not NUL-terminated) into vl, whose
 * lineno and bad are already set and the rest zero.  Runs on any thread. */
typedef void	(*vlines_prep_fn)(const char *line, size_t len,
		    struct vline *vl);
/* Takes one prepared line, in file order, on the caller's thread; vl->o is
 * released after.  Non-zero stops the reading and is returned. */
typedef int	(*vlines_use_fn)(struct vline *vl, void *arg);

/* Reads f (called name in messages) to its end, or to the first line
 * longer than max bytes or empty, handed back with bad set; prepares lines
 * on nthreads threads (0: on this one).  Returns use's first non-zero
 * result, TH_ERR_IO if reading failed (every line read before handed back
 * first), else 0. */
int	vlines_run(FILE *f, const char *name, size_t max, int nthreads,
	    vlines_prep_fn prep, vlines_use_fn use, void *arg);

#endif
