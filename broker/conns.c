#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conns.h"
#include "err.h"
#include "log.h"
#include "tcppeer.h"

static int
is_tcp(const struct sockaddr *sa)
{
	return sa != NULL && (sa->sa_family == AF_INET ||
	    sa->sa_family == AF_INET6);
}

/* The caller at peer, of a connection accepted at local, into p. */
static void
name_peer(struct conns *cs, const struct sockaddr *peer,
    const struct sockaddr *local, struct conns_peer *p)
{
	int r;

	if ((r = tcppeer_uid(peer, local, &p->uid)) != 0) {
		snprintf(p->why, sizeof(p->why), "%s", th_errmsg(r));
		return;
	}
	p->known = 1;
	p->agent = bconf_agent(cs->cfg, p->uid);
}

void
conns_notify(void *closure, struct MHD_Connection *c, void **socket_ctx,
    enum MHD_ConnectionNotificationCode code)
{
	struct conns *cs = closure;
	struct conns_peer *p = *socket_ctx;
	const union MHD_ConnectionInfo *addr, *fd;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p == NULL)
			return;
		cs->open--;
		if (p->stranger)
			cs->strangers--;
		free(p);
		*socket_ctx = NULL;
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_STARTED ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return;		/* uncounted, unnamed: its requests refused */
	p->conns = cs;
	snprintf(p->why, sizeof(p->why), "not a named connection");
	addr = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (cs->cfg != NULL && addr != NULL && fd != NULL &&
	    is_tcp(addr->client_addr)) {
		if (getsockname(fd->connect_fd, (struct sockaddr *)&local,
		    &len) == 0)
			name_peer(cs, addr->client_addr,
			    (struct sockaddr *)&local, p);
		else
			snprintf(p->why, sizeof(p->why), "getsockname: %s",
			    strerror(errno));
	}
	cs->open++;
	if (cs->cfg != NULL && p->agent == NULL) {
		p->stranger = 1;
		cs->strangers++;
	}
	*socket_ctx = p;
}

enum MHD_Result
conns_accept(void *closure, const struct sockaddr *addr, socklen_t addrlen)
{
	struct conns *cs = closure;
	struct conns_peer p;
	int n;

	(void)addrlen;
	if (cs->cfg == NULL || !is_tcp(addr))
		return MHD_YES;
	memset(&p, 0, sizeof(p));
	name_peer(cs, addr, (const struct sockaddr *)&cs->local, &p);
	if (p.agent != NULL || (n = cs->strangers) < CONNS_STRANGERS_MAX)
		return MHD_YES;
	if (p.known)
		log_warn("git: connection from uid %u closed: not an agent, "
		    "and %d connections of callers that are no agent are "
		    "open", (unsigned)p.uid, n);
	else
		log_warn("git: connection closed: %s, and %d connections of "
		    "callers that are no agent are open", p.why, n);
	return MHD_NO;
}

const struct conns_peer *
conns_peer(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci == NULL ? NULL : ci->socket_context;
}

int
conns_check(struct MHD_Connection *c)
{
	const struct conns_peer *p = conns_peer(c);
	int open;

	if (p == NULL || (open = p->conns->open) <= BROKER_CONNECTIONS_MAX)
		return 0;
	return th_fail(TH_ERR_UNAVAILABLE, "busy: %d connections open, "
	    "thresholdd serves %d at once; retry when one closes", open,
	    BROKER_CONNECTIONS_MAX);
}
