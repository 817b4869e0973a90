/* threshold-signer's socket server: accepts allowed peers (SO_PEERCRED),
 * reads bounded frames, dispatches the request types it permits, and logs
 * every request and refusal.  One thread with poll() reads every connection
 * and serves the requests, but those that need the TPM, which a second
 * thread serves: a slow or stalled client never blocks the others (a reply
 * it does not take waits for it, and it is served nothing more meanwhile),
 * and a slow or stalled TPM only what needs it. */
#ifndef TH_SIGNER_SERVER_H
#define TH_SIGNER_SERVER_H

#include "config.h"
#include "keys.h"

#define SERVER_CLIENTS_MAX	64
/* Each uid allow-uid lets in holds at most an equal share of them (all
 * of them if it is the only one): other allowed uids (operators' tools),
 * even together, cannot take every connection and lock the broker out. */
#define SERVER_SPIN_US		200	/* busy-poll after a request */

/* Serves until SIGTERM or SIGINT; returns 0 then, negative on setup error. */
int	server_run(const struct config *cfg, struct keys *keys);

#endif
