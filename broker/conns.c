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

static int
agent_index(const struct bconf *cfg, uid_t uid)
{
	size_t i;

	for (i = 0; i < cfg->nagents; i++)
		if (cfg->agents[i].uid == uid)
			return (int)i;
	return -1;
}

static void
found(struct conns *cs, uid_t uid, struct conns_peer *p)
{
	p->known = 1;
	p->uid = uid;
	p->agent = agent_index(cs->cfg, uid);
}

/* Who is at the other end of the connection fd (from peer, if TCP). */
static void
name_peer(struct conns *cs, int fd, const struct sockaddr *peer,
    struct conns_peer *p)
{
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	struct ucred cred;
	uid_t uid;
	int r;

	if (!is_tcp(peer)) {
		len = sizeof(cred);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
			found(cs, cred.uid, p);
		else
			snprintf(p->why, sizeof(p->why), "SO_PEERCRED: %s",
			    strerror(errno));
		return;
	}
	if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) {
		snprintf(p->why, sizeof(p->why), "getsockname: %s",
		    strerror(errno));
		return;
	}
	if ((r = tcppeer_uid(peer, (struct sockaddr *)&local, &uid)) != 0) {
		snprintf(p->why, sizeof(p->why), "%s", th_errmsg(r));
		return;
	}
	found(cs, uid, p);
}

/* 1 (and logged) if a new connection from p's caller is one too many. */
static int
over(struct conns *cs, const struct conns_peer *p)
{
	int n;

	if (cs->cfg == NULL)
		return 0;
	if (p->agent >= 0) {
		if ((n = cs->agent_open[p->agent]) < CONNS_AGENT_OPEN_MAX)
			return 0;
		log_warn("connection from %s closed: it has %d open, at most "
		    "%d", cs->cfg->agents[p->agent].name, n,
		    CONNS_AGENT_OPEN_MAX);
		return 1;
	}
	if ((n = cs->strangers) < CONNS_STRANGERS_MAX)
		return 0;
	if (p->known)
		log_warn("connection from uid %u closed: not an agent, and %d "
		    "connections of callers that are no agent are open",
		    (unsigned)p->uid, n);
	else
		log_warn("connection closed: %s, and %d connections of callers "
		    "that are no agent are open", p->why, n);
	return 1;
}

void
conns_notify(void *closure, struct MHD_Connection *c, void **socket_ctx,
    enum MHD_ConnectionNotificationCode code)
{
	struct conns *cs = closure;
	struct conns_peer *p = *socket_ctx;
	const union MHD_ConnectionInfo *addr, *fd;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p == NULL)
			return;
		cs->open--;
		if (p->agent >= 0)
			cs->agent_open[p->agent]--;
		else if (cs->cfg != NULL)
			cs->strangers--;
		free(p);
		*socket_ctx = NULL;
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_STARTED ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return;		/* uncounted, unnamed: its requests refused */
	p->conns = cs;
	p->agent = -1;
	snprintf(p->why, sizeof(p->why), "the connection was not looked at");
	addr = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (cs->cfg != NULL && fd != NULL)
		name_peer(cs, fd->connect_fd, addr != NULL ? addr->client_addr :
		    NULL, p);
	if (fd != NULL && over(cs, p))
		/* libmicrohttpd then reads its end and closes the
		 * connection (the fd stays its own to close). */
		(void)shutdown(fd->connect_fd, SHUT_RDWR);
	cs->open++;
	if (p->agent >= 0)
		cs->agent_open[p->agent]++;
	else if (cs->cfg != NULL)
		cs->strangers++;
	*socket_ctx = p;
}

enum MHD_Result
conns_accept(void *closure, const struct sockaddr *addr, socklen_t addrlen)
{
	struct conns *cs = closure;
	struct conns_peer p;
	uid_t uid;
	int r;

	(void)addrlen;
	if (cs->cfg == NULL || !is_tcp(addr))
		return MHD_YES;
	memset(&p, 0, sizeof(p));
	p.agent = -1;
	if ((r = tcppeer_uid(addr, (const struct sockaddr *)&cs->local,
	    &uid)) != 0)
		snprintf(p.why, sizeof(p.why), "%s", th_errmsg(r));
	else
		found(cs, uid, &p);
	return over(cs, &p) ? MHD_NO : MHD_YES;
}

const struct conns_peer *
conns_peer(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci == NULL ? NULL : ci->socket_context;
}

const char *
conns_agent(const struct conns_peer *p)
{
	if (p == NULL || p->agent < 0)
		return NULL;
	return p->conns->cfg->agents[p->agent].name;
}

int
conns_check(struct MHD_Connection *c)
{
	const struct conns_peer *p = conns_peer(c);
	int open;

	if (p == NULL)
		return 0;
	if ((open = p->conns->open) > BROKER_CONNECTIONS_MAX)
		return th_fail(TH_ERR_UNAVAILABLE, "busy: %d connections open, "
		    "thresholdd serves %d at once; retry when one closes",
		    open, BROKER_CONNECTIONS_MAX);
	if (p->agent >= 0 && (open = p->conns->agent_open[p->agent]) >
	    CONNS_AGENT_MAX)
		return th_fail(TH_ERR_UNAVAILABLE, "busy: %s has %d "
		    "connections open, thresholdd serves %d of one agent at "
		    "once; retry when one closes", conns_agent(p), open,
		    CONNS_AGENT_MAX);
	return 0;
}
