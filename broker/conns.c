#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void
found(struct conns *cs, uid_t uid, struct conns_peer *p)
{
	p->known = 1;
	p->uid = uid;
	p->agent = bconf_agent(cs->cfg, uid);
}

static int
tcp_listener(const struct conns *cs)
{
	return is_tcp((const struct sockaddr *)&cs->local);
}

/* Who is at the other end of the connection fd. */
static void
name_peer(struct conns *cs, int fd, struct conns_peer *p)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uid_t uid;
	int r;

	if (tcp_listener(cs)) {
		if ((r = tcppeer_fd_uid(fd, &uid)) == 0)
			found(cs, uid, p);
		else
			snprintf(p->why, sizeof(p->why), "%s", th_errmsg(r));
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		found(cs, cred.uid, p);
	else
		snprintf(p->why, sizeof(p->why), "SO_PEERCRED: %s",
		    strerror(errno));
}

/* Closed connections are logged up to CONNS_LOG_PER_S a second, then
 * counted into the next line logged: anyone local may connect in a loop. */
#define CONNS_LOG_PER_S	10

static void	log_closed(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));

static void
log_closed(const char *fmt, ...)
{
	static _Atomic long second;
	static _Atomic int logged, unlogged;
	char msg[256];
	va_list ap;
	long now = (long)time(NULL), then = second;
	int n;

	if (now != then && atomic_compare_exchange_strong(&second, &then, now))
		logged = 0;
	if (logged++ >= CONNS_LOG_PER_S) {
		unlogged++;
		return;
	}
	n = atomic_exchange(&unlogged, 0);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n > 0)
		log_warn("%s (and %d more connections closed unlogged)", msg, n);
	else
		log_warn("%s", msg);
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
		log_closed("connection from %s closed: it has %d open, at "
		    "most %d", cs->cfg->agents[p->agent].name, n,
		    CONNS_AGENT_OPEN_MAX);
		return 1;
	}
	if ((n = cs->strangers) < CONNS_STRANGERS_MAX)
		return 0;
	if (p->known)
		log_closed("connection from uid %u closed: not an agent, and "
		    "%d connections of callers that are no agent are open",
		    (unsigned)p->uid, n);
	else
		log_closed("connection closed: %s, and %d connections of "
		    "callers that are no agent are open", p->why, n);
	return 1;
}

void
conns_notify(void *closure, struct MHD_Connection *c, void **socket_ctx,
    enum MHD_ConnectionNotificationCode code)
{
	struct conns *cs = closure;
	struct conns_peer *p = *socket_ctx;
	const union MHD_ConnectionInfo *fd;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p == NULL)
			return;
		if (!p->over) {
			cs->open--;
			if (p->agent >= 0)
				cs->agent_open[p->agent]--;
			else if (cs->cfg != NULL)
				cs->strangers--;
		}
		free(p);
		*socket_ctx = NULL;
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_STARTED ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return;		/* uncounted and unnamed: git refuses its
				 * requests (no caller); the socket's handler
				 * still names it by SO_PEERCRED */
	p->conns = cs;
	p->agent = -1;
	snprintf(p->why, sizeof(p->why), "the connection was not looked at");
	fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (cs->cfg != NULL && fd != NULL)
		name_peer(cs, fd->connect_fd, p);
	*socket_ctx = p;
	if (fd != NULL && (p->over = over(cs, p))) {
		/* Nothing is read from it, and a request it already sent is
		 * dropped by the handlers (conns_dropped): libmicrohttpd
		 * then closes the connection (the fd stays its own).  Not
		 * counted: it is gone as far as the limits go. */
		(void)shutdown(fd->connect_fd, SHUT_RDWR);
		return;
	}
	cs->open++;
	if (p->agent >= 0)
		cs->agent_open[p->agent]++;
	else if (cs->cfg != NULL)
		cs->strangers++;
}

const struct conns_peer *
conns_peer(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci == NULL ? NULL : ci->socket_context;
}

int
conns_dropped(struct MHD_Connection *c)
{
	const struct conns_peer *p = conns_peer(c);

	return p != NULL && p->over;
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
