/* Open connections of a libmicrohttpd daemon whose threads are one per
 * connection, and who is at the other end of each: the uid owning it
 * (SO_PEERCRED on the agents' socket; on the loopback TCP of the git
 * endpoint the kernel's socket table, broker/tcppeer.h) and its agent.
 *
 * Past BROKER_CONNECTIONS_MAX open, or CONNS_AGENT_MAX of one agent, a
 * request is answered "busy" rather than left waiting, unanswered, in the
 * listen queue until a connection closes (idle ones may hold every thread
 * for their timeout).  A connection is closed as soon as it is accepted
 * if its agent has CONNS_AGENT_OPEN_MAX open, or if its caller is no agent
 * and CONNS_STRANGERS_MAX such are open: one agent, or the other local
 * users, cannot take every other agent's turn. */
#ifndef TH_CONNS_H
#define TH_CONNS_H

#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "bconfig.h"

#define CONNS_AGENT_MAX		32	/* one agent's, served at once */
#define CONNS_AGENT_OPEN_MAX	40	/* one agent's, open */
#define CONNS_STRANGERS_MAX	8	/* callers no agent's, open */

/* A daemon's connections: the closure of conns_notify. */
struct conns {
	_Atomic int		 open;
	_Atomic int		 strangers;	/* open, from callers no agent */
	_Atomic int		 agent_open[BCONF_AGENTS_MAX];	/* by cfg */
	const struct bconf	*cfg;		/* NULL: callers not named */
	struct sockaddr_storage	 local;		/* a TCP listener's address;
						 * zero for the Unix socket */
};

/* Who connected: a connection's socket context. */
struct conns_peer {
	struct conns	*conns;
	int		 known;		/* uid found, else why says why not */
	uid_t		 uid;
	int		 agent;		/* index in cfg->agents, or -1 */
	int		 over;		/* one too many: dropped unanswered */
	char		 why[160];
};

/* MHD_OPTION_NOTIFY_CONNECTION's callback; its closure is the daemon's
 * struct conns. */
void	conns_notify(void *conns, struct MHD_Connection *c, void **socket_ctx,
	    enum MHD_ConnectionNotificationCode code);
/* 0, or TH_ERR_UNAVAILABLE saying so if c's daemon has more than
 * BROKER_CONNECTIONS_MAX connections open, or c's agent more than
 * CONNS_AGENT_MAX. */
int	conns_check(struct MHD_Connection *c);
/* 1 if c is one connection too many, closed as it was accepted: its
 * handler answers nothing (MHD_NO), even a request already sent. */
int	conns_dropped(struct MHD_Connection *c);
/* Who is at the other end of c; NULL if it was not looked at. */
const struct conns_peer *conns_peer(struct MHD_Connection *c);
/* p's agent name ("agent:NAME"), or NULL. */
const char *conns_agent(const struct conns_peer *p);

#endif
