/* Revokes installation tokens on threads of its own, with its own GitHub
 * client, so that revocation is off every answer's path: neither the
 * answer that used the token nor the next request waits for it.  Stopping
 * drains the queue: no token is left alive on exit. */
#ifndef TH_REVOKER_H
#define TH_REVOKER_H

#include <stdint.h>

#include "alog.h"
#include "github.h"

struct revoker;

/* Each revocation is recorded in audit (an entry referring to the
 * token's intent). */
int	revoker_start(const char *base_url, const char *app_id,
	    struct alog *audit, struct revoker **out);
/* Takes ownership of tok (heap-allocated); it is wiped and freed once
 * revoked. */
void	revoker_push(struct revoker *rv, struct gh_token *tok);
/* Revokes what is queued, then stops the thread. */
void	revoker_stop(struct revoker *rv);			/* NULL ok */
void	revoker_counts(struct revoker *rv, uint64_t *revoked,
	    uint64_t *unknown);

#endif
