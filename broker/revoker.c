#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "revoker.h"

#define REVOKER_QUEUE_MAX	1024
/* Revocations in flight at once: with agents served concurrently, one
 * thread would leave a token alive a GitHub round trip per token queued
 * ahead of it. */
#define REVOKER_THREADS		4

struct revoker {
	struct gh	*gh;		/* shared by the threads */
	struct alog	*audit;
	pthread_t	 thread[REVOKER_THREADS];
	size_t		 nthreads;
	pthread_mutex_t	 lock;
	pthread_cond_t	 wake;
	struct gh_token	*queue[REVOKER_QUEUE_MAX];
	size_t		 head, n;
	int		 stopping;
	uint64_t	 revoked, unknown;
};

static void
revoke_one(struct revoker *rv, struct gh_token *tok)
{
	struct json_object *e;
	int r;

	gh_token_revoke(rv->gh, tok);
	log_info("installation token %.12s...: %s", tok->fingerprint,
	    tok->revoke_msg);
	if ((e = json_object_new_object()) != NULL) {
		if (tok->intent > 0)
			json_object_object_add(e, "intent",
			    json_object_new_int64(tok->intent));
		json_object_object_add(e, "fingerprint",
		    json_object_new_string(tok->fingerprint));
		json_object_object_add(e, "result", json_object_new_string(
		    tok->revoked == 1 ? "revoked" : tok->revoke_msg));
		if ((r = alog_append(rv->audit, "revocation", e, NULL)) != 0)
			log_err("audit: revocation of %.12s... not recorded: %s",
			    tok->fingerprint, th_errmsg(r));
		json_object_put(e);
	}
	pthread_mutex_lock(&rv->lock);
	if (tok->revoked == 1)
		rv->revoked++;
	else
		rv->unknown++;
	pthread_mutex_unlock(&rv->lock);
	gh_token_free(tok);
}

static void *
run(void *arg)
{
	struct revoker *rv = arg;
	struct gh_token *tok;

	pthread_mutex_lock(&rv->lock);
	for (;;) {
		while (rv->n == 0 && !rv->stopping)
			pthread_cond_wait(&rv->wake, &rv->lock);
		if (rv->n == 0)
			break;
		tok = rv->queue[rv->head];
		rv->head = (rv->head + 1) % REVOKER_QUEUE_MAX;
		rv->n--;
		pthread_mutex_unlock(&rv->lock);
		revoke_one(rv, tok);
		pthread_mutex_lock(&rv->lock);
	}
	pthread_mutex_unlock(&rv->lock);
	return NULL;
}

int
revoker_start(const char *base_url, const char *app_id, struct alog *audit,
    struct revoker **out)
{
	struct revoker *rv;
	int r;

	if ((rv = calloc(1, sizeof(*rv))) == NULL)
		return TH_ERR_ALLOC;
	rv->audit = audit;
	/* Revocation authenticates with the token itself: no App JWT, so no
	 * signer connection on this thread. */
	if ((r = gh_new(base_url, app_id, NULL, &rv->gh)) != 0) {
		free(rv);
		return r;
	}
	pthread_mutex_init(&rv->lock, NULL);
	pthread_cond_init(&rv->wake, NULL);
	for (; rv->nthreads < REVOKER_THREADS; rv->nthreads++)
		if (pthread_create(&rv->thread[rv->nthreads], NULL, run,
		    rv) != 0)
			break;
	if (rv->nthreads == 0) {
		revoker_stop(rv);
		return th_fail(TH_ERR_INTERNAL, "cannot start the revoker");
	}
	*out = rv;
	return 0;
}

void
revoker_push(struct revoker *rv, struct gh_token *tok)
{
	pthread_mutex_lock(&rv->lock);
	if (rv->n == REVOKER_QUEUE_MAX) {
		/* Never drop a live token: revoke it here, late rather than
		 * never. */
		pthread_mutex_unlock(&rv->lock);
		revoke_one(rv, tok);
		return;
	}
	rv->queue[(rv->head + rv->n) % REVOKER_QUEUE_MAX] = tok;
	rv->n++;
	pthread_cond_signal(&rv->wake);
	pthread_mutex_unlock(&rv->lock);
}

void
revoker_stop(struct revoker *rv)
{
	size_t i;

	if (rv == NULL)
		return;
	pthread_mutex_lock(&rv->lock);
	rv->stopping = 1;
	pthread_cond_broadcast(&rv->wake);
	pthread_mutex_unlock(&rv->lock);
	for (i = 0; i < rv->nthreads; i++)
		pthread_join(rv->thread[i], NULL);
	gh_free(rv->gh);
	pthread_mutex_destroy(&rv->lock);
	pthread_cond_destroy(&rv->wake);
	free(rv);
}

void
revoker_counts(struct revoker *rv, uint64_t *revoked, uint64_t *unknown)
{
	pthread_mutex_lock(&rv->lock);
	*revoked = rv->revoked;
	*unknown = rv->unknown;
	pthread_mutex_unlock(&rv->lock);
}
