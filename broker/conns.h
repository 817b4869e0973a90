/* Open connections of a libmicrohttpd daemon whose threads are one per
 * connection: past BROKER_CONNECTIONS_MAX a request is answered "busy"
 * rather than left waiting, unanswered, in the listen queue until a
 * connection closes (idle ones may hold every thread for their timeout).
 * On a loopback TCP listener each connection's caller is also named, by
 * the uid owning its end (broker/tcppeer.h), and callers that are no
 * agent hold at most CONNS_STRANGERS_MAX connections at once. */
#ifndef TH_CONNS_H
#define TH_CONNS_H

#include <sys/socket.h>
#include <sys/types.h>

#include <microhttpd.h>

#include "bconfig.h"

#define CONNS_STRANGERS_MAX	8

/* A daemon's connections: the closure of conns_notify and conns_accept. */
struct conns {
	_Atomic int		 open;
	_Atomic int		 strangers;	/* open, from callers no agent */
	const struct bconf	*cfg;		/* NULL: callers not named */
	struct sockaddr_storage	 local;		/* the listener's address */
};

/* Who connected: a named connection's socket context. */
struct conns_peer {
	struct conns	*conns;
	int		 known;		/* uid found, else why says why not */
	uid_t		 uid;
	const char	*agent;		/* uid's agent name, or NULL */
	int		 stranger;	/* named, and no agent (or unknown) */
	char		 why[160];
};

/* MHD_OPTION_NOTIFY_CONNECTION's callback; its closure is the daemon's
 * struct conns. */
void	conns_notify(void *conns, struct MHD_Connection *c, void **socket_ctx,
	    enum MHD_ConnectionNotificationCode code);
/* MHD's accept policy for a named listener: a connection from a caller
 * that is no agent (or cannot be named) is closed at once while
 * CONNS_STRANGERS_MAX such are open; otherwise it is served, and its
 * requests are answered with the reason. */
enum MHD_Result conns_accept(void *conns, const struct sockaddr *addr,
	    socklen_t addrlen);
/* 0, or TH_ERR_UNAVAILABLE saying so if c's daemon counts its
 * connections and has more than BROKER_CONNECTIONS_MAX open. */
int	conns_check(struct MHD_Connection *c);
/* Who is at the other end of c, on a named listener; NULL if c's
 * connection was not named (not even its uid's absence). */
const struct conns_peer *conns_peer(struct MHD_Connection *c);

#endif
