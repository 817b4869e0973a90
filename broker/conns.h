/* Open connections of a libmicrohttpd daemon whose threads are one per
 * connection: past BROKER_CONNECTIONS_MAX a request is answered "busy"
 * rather than left waiting, unanswered, in the listen queue until a
 * connection closes (idle ones may hold every thread for their timeout). */
#ifndef TH_CONNS_H
#define TH_CONNS_H

#include <microhttpd.h>

/* MHD_OPTION_NOTIFY_CONNECTION's callback; its closure is the daemon's
 * counter (an _Atomic int), which each connection it counts carries as
 * its socket context. */
void	conns_notify(void *counter, struct MHD_Connection *c,
	    void **socket_ctx, enum MHD_ConnectionNotificationCode code);
/* 0, or TH_ERR_UNAVAILABLE saying so if c's daemon counts its
 * connections and has more than BROKER_CONNECTIONS_MAX open. */
int	conns_check(struct MHD_Connection *c);

#endif
