#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "err.h"

int
cli_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("threshold: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int
cli_read_file(const char *path, size_t max, struct buf *out)
{
	uint8_t tmp[4096];
	ssize_t n;
	size_t total = 0;
	int fd, r = 0;

	fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return th_fail(TH_ERR_IO, "cannot open %s: %s", path,
		    strerror(errno));
	while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = th_fail(TH_ERR_IO, "reading %s: %s", path,
			    strerror(errno));
			break;
		}
		if ((total += (size_t)n) > max) {
			r = th_fail(TH_ERR_TOO_LONG, "%s is larger than %zu "
			    "bytes", path, max);
			break;
		}
		if ((r = buf_put(out, tmp, (size_t)n)) != 0)
			break;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	return r;
}

int
cli_write_file(const char *path, const uint8_t *p, size_t len)
{
	FILE *f;
	int r = 0;

	if ((f = fopen(path, "we")) == NULL)
		return th_fail(TH_ERR_IO, "cannot create %s: %s", path,
		    strerror(errno));
	if (len > 0 && fwrite(p, 1, len, f) != len)
		r = th_fail(TH_ERR_IO, "writing %s failed", path);
	if (fclose(f) != 0 && r == 0)
		r = th_fail(TH_ERR_IO, "writing %s failed", path);
	return r;
}
