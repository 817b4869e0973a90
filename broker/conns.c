#include <stdatomic.h>

#include "broker.h"
#include "conns.h"
#include "err.h"

void
conns_notify(void *counter, struct MHD_Connection *c, void **socket_ctx,
    enum MHD_ConnectionNotificationCode code)
{
	_Atomic int *open = counter;

	(void)c;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		(*open)++;
		*socket_ctx = counter;
	} else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
		(*open)--;
}

int
conns_check(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	int open;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci == NULL || ci->socket_context == NULL ||
	    (open = *(_Atomic int *)ci->socket_context) <=
	    BROKER_CONNECTIONS_MAX)
		return 0;
	return th_fail(TH_ERR_UNAVAILABLE, "busy: %d connections open, "
	    "thresholdd serves %d at once; retry when one closes", open,
	    BROKER_CONNECTIONS_MAX);
}
