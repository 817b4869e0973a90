/* Listening Unix sockets, for the signer and the broker. */
#ifndef TH_USOCK_H
#define TH_USOCK_H

#include <sys/types.h>

/* A listening socket at path with the given mode.  A stale socket there is
 * replaced; any other kind of file is refused.  Returns the descriptor or
 * a negative TH_ERR_*. */
int	usock_listen(const char *path, mode_t mode, int backlog);

#endif
