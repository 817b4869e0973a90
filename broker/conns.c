#include <stdatomic.h>

#include "broker.h"
#include "conns.h"

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
conns_over(struct MHD_Connection *c, int *open)
{
	const union MHD_ConnectionInfo *ci;

	*open = 0;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci == NULL || ci->socket_context == NULL)
		return 0;
	*open = *(_Atomic int *)ci->socket_context;
	return *open > BROKER_CONNECTIONS_MAX;
}
