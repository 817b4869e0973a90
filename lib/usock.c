#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "usock.h"

int
usock_listen(const char *path, mode_t mode, int backlog)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return th_fail(TH_ERR_CONFIG, "socket path %s too long", path);
	strcpy(sun.sun_path, path);
	/* Only a stale socket may be replaced, never another file. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return th_fail(TH_ERR_CONFIG, "%s exists and is not a "
			    "socket", path);
		unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return th_fail(TH_ERR_IO, "socket: %s", strerror(errno));
	/* Bind with no access at all, then open up to mode: there is no
	 * moment at which the socket is wider than configured. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r != 0 || chmod(path, mode) != 0 || listen(fd, backlog) != 0) {
		r = th_fail(TH_ERR_IO, "cannot listen on %s: %s", path,
		    strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}
