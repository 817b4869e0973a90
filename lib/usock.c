#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "usock.h"

/* chmod(2) of the socket just bound, not of what its name leads to now:
 * someone who can write the directory could have put a symlink or another
 * file there since the bind.  The name is opened without following a link
 * (O_PATH), checked to be a socket of ours, and changed through that open
 * file (/proc/self/fd: chmod has no fd form for an O_PATH file). */
static int
set_mode(const char *path, mode_t mode)
{
	char proc[64];
	struct stat st;
	int fd, r;

	if ((fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return th_fail(TH_ERR_IO, "cannot open %s just bound: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
	    st.st_uid != geteuid()) {
		r = th_fail(TH_ERR_IO, "%s is no longer the socket just bound "
		    "(is its directory writable by others?)", path);
		goto out;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, mode) != 0) {
		r = th_fail(TH_ERR_IO, "cannot set the mode of %s through %s "
		    "(is /proc mounted?): %s", path, proc, strerror(errno));
		goto out;
	}
	r = 0;
 out:
	close(fd);
	return r;
}

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
	if (r != 0) {
		r = th_fail(TH_ERR_IO, "cannot bind %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	if ((r = set_mode(path, mode)) != 0)
		goto fail;
	if (listen(fd, backlog) != 0) {
		r = th_fail(TH_ERR_IO, "cannot listen on %s: %s", path,
		    strerror(errno));
		goto fail;
	}
	return fd;
 fail:
	close(fd);
	return r;
}
