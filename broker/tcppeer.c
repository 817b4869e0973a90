#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "err.h"
#include "tcppeer.h"

#define TCPPEER_REPLY_MAX	8192	/* one inet_diag_msg and attributes */

/* Address and port of sa into the kernel's form; 0, or -1 if sa is
 * neither IPv4 nor IPv6. */
static int
diag_end(const struct sockaddr *sa, __be32 addr[4], __be16 *port)
{
	const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

	memset(addr, 0, 4 * sizeof(addr[0]));
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &in4->sin_addr, sizeof(in4->sin_addr));
		*port = in4->sin_port;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(addr, &in6->sin6_addr, sizeof(in6->sin6_addr));
		*port = in6->sin6_port;
		return 0;
	}
	return -1;
}

/* The kernel's one answer in rep[n] about the socket q asked for: 0 with
 * *uid, or an error (its message set). */
static int
answer(const struct inet_diag_req_v2 *q, uint32_t seq, struct nlmsghdr *h,
    ssize_t n, uid_t *uid)
{
	const struct inet_diag_msg *m;
	const struct nlmsgerr *e;

	for (; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_seq != seq)
			continue;
		if (h->nlmsg_type == NLMSG_ERROR) {
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
				break;
			e = NLMSG_DATA(h);
			return e->error == -ENOENT ? th_fail(TH_ERR_NOT_FOUND,
			    "no process on this host holds the connection") :
			    th_fail(TH_ERR_IO, "cannot ask the kernel who "
			    "connected: %s", strerror(-e->error));
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
		    h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
			break;
		m = NLMSG_DATA(h);
		/* The caller's end, not ours: the answer names the socket
		 * found by its own address, connected to ours. */
		if (m->idiag_family != q->sdiag_family ||
		    m->id.idiag_sport != q->id.idiag_sport ||
		    m->id.idiag_dport != q->id.idiag_dport ||
		    memcmp(m->id.idiag_src, q->id.idiag_src,
		    sizeof(m->id.idiag_src)) != 0 ||
		    memcmp(m->id.idiag_dst, q->id.idiag_dst,
		    sizeof(m->id.idiag_dst)) != 0)
			break;
		/* A socket no process holds (closed, waiting out its FIN or
		 * TIME_WAIT) has no owner: the kernel then says uid 0.  One
		 * not (or no longer) connected is not the caller either. */
		if (m->idiag_inode == 0 || m->idiag_state != TCP_ESTABLISHED)
			return th_fail(TH_ERR_NOT_FOUND, "the connection was "
			    "closed by the process that opened it");
		*uid = (uid_t)m->idiag_uid;
		return 0;
	}
	return th_fail(TH_ERR_IO, "the kernel's answer about a connection is "
	    "malformed");
}

int
tcppeer_uid(const struct sockaddr *peer, const struct sockaddr *local,
    uid_t *uid)
{
	struct {
		struct nlmsghdr		nlh;
		struct inet_diag_req_v2	req;
	} q;
	union {
		struct nlmsghdr	nlh;
		uint8_t		b[TCPPEER_REPLY_MAX];
	} rep;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK }, from;
	socklen_t fromlen = sizeof(from);
	struct timeval tv = { 1, 0 };
	ssize_t n = -1;
	int fd = -1, r;

	*uid = (uid_t)-1;
	memset(&q, 0, sizeof(q));
	if (peer->sa_family != local->sa_family ||
	    diag_end(peer, q.req.id.idiag_src, &q.req.id.idiag_sport) != 0 ||
	    diag_end(local, q.req.id.idiag_dst, &q.req.id.idiag_dport) != 0)
		return th_fail(TH_ERR_INVALID, "not a TCP/IP connection");
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;	/* this one socket, no dump */
	q.nlh.nlmsg_seq = 1;
	q.req.sdiag_family = peer->sa_family;
	q.req.sdiag_protocol = IPPROTO_TCP;
	q.req.idiag_states = ~0U;
	q.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	q.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	errno = EIO;
	if ((fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
	    NETLINK_SOCK_DIAG)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    sendto(fd, &q, sizeof(q), 0, (struct sockaddr *)&kernel,
	    sizeof(kernel)) != (ssize_t)sizeof(q) ||
	    (n = recvfrom(fd, &rep, sizeof(rep), 0, (struct sockaddr *)&from,
	    &fromlen)) < 0) {
		r = th_fail(TH_ERR_IO, "cannot ask the kernel who connected: %s",
		    strerror(errno));
		goto out;
	}
	if (fromlen < sizeof(from) || from.nl_pid != 0)	/* not the kernel */
		r = th_fail(TH_ERR_IO, "the answer about a connection is not "
		    "the kernel's");
	else
		r = answer(&q.req, q.nlh.nlmsg_seq, &rep.nlh, n, uid);
 out:
	if (fd >= 0)
		close(fd);
	return r;
}

int
tcppeer_fd_uid(int fd, uid_t *uid)
{
	struct sockaddr_storage peer, local;
	socklen_t plen = sizeof(peer), llen = sizeof(local);
	struct tcp_info ti;
	socklen_t tilen = sizeof(ti);
	int r;

	*uid = (uid_t)-1;
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0 ||
	    getsockname(fd, (struct sockaddr *)&local, &llen) != 0)
		return th_fail(TH_ERR_NOT_FOUND, "the connection is gone: %s",
		    strerror(errno));
	if ((r = tcppeer_uid((struct sockaddr *)&peer,
	    (struct sockaddr *)&local, uid)) != 0)
		return r;
	/* Asked after the kernel answered: while our end is established,
	 * its address pair belongs to this connection alone, so the socket
	 * found by it is the caller's.  Once reset, the pair is free for
	 * another socket, which the answer may have named. */
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tilen) != 0 ||
	    ti.tcpi_state != TCP_ESTABLISHED) {
		*uid = (uid_t)-1;
		return th_fail(TH_ERR_NOT_FOUND, "the connection was closed "
		    "by the process that opened it");
	}
	return 0;
}
