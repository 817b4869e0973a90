/* thresholdd: the agents' API (docs/api.md).  It holds no private key:
 * capabilities and App JWTs are signed by threshold-signer. */
#ifndef TH_BROKER_H
#define TH_BROKER_H

#include <pthread.h>
#include <stdint.h>

#include "bconfig.h"
#include "cap.h"
#include "conns.h"
#include "alog.h"
#include "github.h"
#include "revoker.h"
#include "sigclient.h"
#include "store.h"

#define BROKER_BODY_MAX		(64 * 1024)
#define BROKER_CONNECTIONS_MAX	64	/* agents' connections served at once */
#define BROKER_CONNECTIONS_OVER	16	/* more, answered 503 busy and closed */
#define BROKER_TCP_CONNECTIONS_MAX 16	/* health and metrics on listen-tcp */
#define BROKER_TCP_IDLE_S	10	/* ... each closed after this idle */

/* Counted by every request thread. */
struct broker_metrics {
	_Atomic uint64_t	requests;
	_Atomic uint64_t	minted, mint_refused;
	_Atomic uint64_t	redeemed, redeem_refused;
	_Atomic uint64_t	policy_denied, github_refused, github_unavailable;
	_Atomic uint64_t	merges;
};

/* Refusals are recorded one by one up to a rate; beyond it they are
 * counted and recorded as one entry.  A caller without an agent identity
 * costs nothing to be, so all of them share one tight limit; each agent
 * has its own, looser one. */
#define REC_UNKNOWN_BURST	32
#define REC_UNKNOWN_PER_S	4
#define REC_AGENT_BURST		64
#define REC_AGENT_PER_S		8

struct rec_limit {
	pthread_mutex_t	 mu;
	const char	*agent;		/* NULL: callers without identity */
	int64_t		 burst, per_s;
	int64_t		 tokens, last_s;
	uint64_t	 held;		/* not recorded yet, one entry owed */
	char		 last[512];	/* the reason of the last one held */
	_Atomic uint64_t total;		/* ever held (metrics) */
};

struct broker {
	struct bconf		 cfg;
	struct store		*st;
	pthread_mutex_t		 signer_mu;
	struct sigc		*signer;
	struct cap_ctx		*cap;
	struct gh		*gh;
	struct revoker		*revoker;
	struct alog		*audit;
	struct broker_metrics	 m;
	struct rec_limit	 unknown;
	struct rec_limit	 agent_limit[BCONF_AGENTS_MAX];	/* by cfg.agents */
	struct conns		 conns;		/* on the agents' socket */
	struct conns		 git_conns;	/* on listen-git, named */
	int64_t			 started;	/* time(2) recovery began */
};

/* The outcome of one API call: HTTP status, stable error code (NULL on
 * success) and the JSON body. */
struct answer {
	unsigned		 status;
	const char		*code;
	struct json_object	*body;
	struct gh_token		*revoke_later;	/* revoked after replying */
	/* What a refusal is recorded against in the audit log. */
	const char		*agent;
	const struct cap_op	*op;
	const char		*jti;
};

/* The audit trail (record.c).  Each append is durable when it returns and
 * committed (countersigned) before rec_* reports success. */
int	rec_refusal(struct broker *b, const struct answer *ans,
	    const char *reason);
/* Sets up the refusal limits, once b->cfg is loaded. */
void	rec_limits_init(struct broker *b);
/* Records the refusals rec_refusal held back, if any (at shutdown). */
int	rec_refusals_held(struct broker *b);
/* How many refusals were ever held back (metrics). */
uint64_t rec_refusals_aggregated(struct broker *b);
int	rec_mint(struct broker *b, const char *agent, const char *capability,
	    size_t len);
/* An intent it could write but not countersign it closes with an outcome
 * "not attempted: ..." (best effort) before failing. */
int	rec_intent(struct broker *b, const struct cap_redeemed *red,
	    const char *capability, struct json_object *decision,
	    const struct gh_token *tok, int64_t *seq);
/* A git request that only reads (refs, fetch) with the token it was given:
 * request names it, e.g. "git-upload-pack". */
int	rec_read(struct broker *b, const struct cap_redeemed *red,
	    const char *capability, const char *request,
	    const struct gh_token *tok, int64_t *seq);
/* A token with more permissions than its intent's, for the same operation
 * (a push GitHub refused for changing workflows, sent again): durable and
 * countersigned before the token is used. */
int	rec_grant(struct broker *b, int64_t intent, const struct gh_token *tok,
	    struct json_object *permissions, const char *reason);
int	rec_outcome(struct broker *b, int64_t intent, long status,
	    struct json_object *result, const char *error, int64_t *seq,
	    int64_t *checkpoint);
/* What GitHub says became of an intent left without an outcome (status 0:
 * nothing could be looked up), committed. */
int	rec_recovered(struct broker *b, int64_t intent, long status,
	    struct json_object *result);

/* A request refused before any action (no agent identity, a body too
 * large or not strict JSON): the answer says why and the refusal is
 * recorded, against agent (NULL: "unknown"). */
void	act_refuse(struct broker *b, const char *agent, unsigned status,
	    const char *code, int r, struct answer *ans);
/* POST /v1/capabilities for agent. */
void	act_mint(struct broker *b, const char *agent, struct json_object *req,
	    struct answer *ans);
/* POST /v1/git-credential for agent: a github.push capability for the
 * repo if the delegation allows pushing, else github.fetch. */
void	act_git_credential(struct broker *b, const char *agent,
	    struct json_object *req, struct answer *ans);
/* POST /v1/redeem for agent: verify, evaluate policy live, act, revoke. */
void	act_redeem(struct broker *b, const char *agent,
	    struct json_object *req, struct answer *ans);

/* Records, for every intent the log holds without an outcome (the broker
 * died in between), what GitHub says happened. */
int	act_recover(struct broker *b);

/* Serves until SIGTERM/SIGINT. */
int	api_serve(struct broker *b);

/* git's smart HTTP on 127.0.0.1 (git.c), if configured. */
int	git_start(struct broker *b, void **daemon);
void	git_stop(void *daemon);

#endif
