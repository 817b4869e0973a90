/* Signature checks off the verifier's thread: a few threads verify JWS
 * signatures with one key while the verifier reads on.  Results come back
 * in submission order, so the verifier can still report the first failure
 * by position. */
#ifndef TH_VPOOL_H
#define TH_VPOOL_H

#include <stdint.h>

#include <openssl/evp.h>

#include "jws.h"

#define VPOOL_THREADS_MAX	8
#define VPOOL_QUEUE		1024	/* jobs in flight */
#define VPOOL_BATCH		8	/* jobs queued per worker wake-up */

struct vpool;

/* nthreads 1..VPOOL_THREADS_MAX; key is referenced. */
int	vpool_new(EVP_PKEY *key, int nthreads, struct vpool **out);
void	vpool_free(struct vpool *p);			/* NULL ok */
/* Queues the signature of j (its signing input and signature are copied)
 * as job tag; TH_ERR_TOO_LONG while VPOOL_QUEUE jobs are uncollected (the
 * caller collects one and submits again). */
int	vpool_submit(struct vpool *p, uint64_t tag, const struct jws *j);
/* The oldest job's result: 1 with *tag and *ok (1: verified), 0 if there
 * is no job, or (wait 0) the oldest is not finished.  Jobs are started in
 * batches of VPOOL_BATCH; waiting starts the rest. */
int	vpool_collect(struct vpool *p, int wait, uint64_t *tag, int *ok);

#endif
