/* Which local user owns the other end of a loopback TCP connection.  The
 * kernel's socket table knows (NETLINK_SOCK_DIAG, as ss(8) asks it), so
 * the git endpoint names its caller as the agents' socket does with
 * SO_PEERCRED: by the uid that created the connecting socket. */
#ifndef TH_TCPPEER_H
#define TH_TCPPEER_H

#include <sys/socket.h>
#include <sys/types.h>

/* The uid owning the TCP socket whose own address is peer and whose remote
 * is local (both AF_INET or both AF_INET6): the caller's end of a
 * connection accepted at local.  TH_ERR_NOT_FOUND if this host has no
 * such socket (closed since, or not on this host), TH_ERR_IO if the
 * kernel does not answer; either way the caller is unknown. */
int	tcppeer_uid(const struct sockaddr *peer, const struct sockaddr *local,
	    uid_t *uid);
/* The same for the connection accepted as fd, whose own end must still be
 * established once the kernel has answered: a connection reset before it
 * was looked at may have had its addresses taken by another socket, whose
 * owner would otherwise be named. */
int	tcppeer_fd_uid(int fd, uid_t *uid);

#endif
