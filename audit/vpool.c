/* A ring of jobs: submitted at enq, handed to workers at taken, collected
 * at col (col <= taken <= enq, enq - col <= VPOOL_QUEUE). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "vpool.h"

struct job {
	uint64_t	 tag;
	struct jws	 j;		/* alg, token (the input), sig */
	int		 done, ok;
};

struct vpool;

struct worker {
	struct vpool		*p;
	struct jws_verifier	*ver;	/* this thread's own */
};

struct vpool {
	EVP_PKEY	*key;
	struct worker	 wk[VPOOL_THREADS_MAX];
	pthread_mutex_t	 mu;
	pthread_cond_t	 work, done;
	struct job	 ring[VPOOL_QUEUE];
	uint64_t	 enq, taken, col;
	int		 stop;
	pthread_t	 th[VPOOL_THREADS_MAX];
	int		 nth;
};

static void *
worker(void *arg)
{
	struct worker *w = arg;
	struct vpool *p = w->p;
	struct job *jb;
	int ok;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->taken == p->enq && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->taken == p->enq)
			break;
		jb = &p->ring[p->taken++ % VPOOL_QUEUE];
		pthread_mutex_unlock(&p->mu);
		ok = jws_verify_with(w->ver, &jb->j) == 0;
		pthread_mutex_lock(&p->mu);
		jb->ok = ok;
		jb->done = 1;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int
vpool_new(EVP_PKEY *key, int nthreads, struct vpool **out)
{
	struct vpool *p;
	int i, r;

	*out = NULL;
	if (nthreads < 1 || nthreads > VPOOL_THREADS_MAX)
		return th_fail(TH_ERR_INVALID, "vpool: 1..%d threads",
		    VPOOL_THREADS_MAX);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return TH_ERR_ALLOC;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	EVP_PKEY_up_ref(key);
	p->key = key;
	for (i = 0; i < nthreads; i++) {
		p->wk[i].p = p;
		if ((r = jws_verifier_new(key, &p->wk[i].ver)) != 0) {
			vpool_free(p);
			return r;
		}
		if (pthread_create(&p->th[i], NULL, worker, &p->wk[i]) != 0)
			break;
		p->nth++;
	}
	if (p->nth == 0) {
		vpool_free(p);
		return th_fail(TH_ERR_ALLOC, "vpool: no thread");
	}
	*out = p;
	return 0;
}

void
vpool_free(struct vpool *p)
{
	uint64_t i;
	int k;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (k = 0; k < p->nth; k++)
		pthread_join(p->th[k], NULL);
	for (i = p->col; i < p->enq; i++)
		free(p->ring[i % VPOOL_QUEUE].j.token);
	for (k = 0; k < VPOOL_THREADS_MAX; k++)
		jws_verifier_free(p->wk[k].ver);
	EVP_PKEY_free(p->key);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int
vpool_submit(struct vpool *p, uint64_t tag, const struct jws *j)
{
	struct job *jb;
	char *input;

	if (j->siglen > sizeof(j->sig) ||
	    (input = malloc(j->input_len + 1)) == NULL)
		return TH_ERR_ALLOC;
	memcpy(input, j->token, j->input_len);
	input[j->input_len] = '\0';
	pthread_mutex_lock(&p->mu);
	if (p->enq - p->col == VPOOL_QUEUE) {
		pthread_mutex_unlock(&p->mu);
		free(input);
		return TH_ERR_TOO_LONG;
	}
	jb = &p->ring[p->enq % VPOOL_QUEUE];
	memset(jb, 0, sizeof(*jb));
	jb->tag = tag;
	jb->j.alg = j->alg;
	jb->j.token = input;
	jb->j.token_len = j->input_len;
	jb->j.input_len = j->input_len;
	memcpy(jb->j.sig, j->sig, j->siglen);
	jb->j.siglen = j->siglen;
	p->enq++;
	/* A worker is woken per VPOOL_BATCH jobs, not per job: a wake-up
	 * costs the submitter a system call and the worker a context switch,
	 * together a noticeable part of one verification. */
	if (p->enq - p->taken >= VPOOL_BATCH)
		pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int
vpool_collect(struct vpool *p, int wait, uint64_t *tag, int *ok)
{
	struct job *jb;
	int got = 0;

	pthread_mutex_lock(&p->mu);
	if (p->col == p->enq)
		goto out;
	jb = &p->ring[p->col % VPOOL_QUEUE];
	while (wait && !jb->done) {
		/* Jobs short of a batch are waiting for a worker too. */
		pthread_cond_broadcast(&p->work);
		pthread_cond_wait(&p->done, &p->mu);
	}
	if (!jb->done)
		goto out;
	*tag = jb->tag;
	*ok = jb->ok;
	free(jb->j.token);
	jb->j.token = NULL;
	p->col++;
	got = 1;
 out:
	pthread_mutex_unlock(&p->mu);
	return got;
}
