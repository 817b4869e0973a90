#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "cap.h"
#include "err.h"
#include "sigclient.h"
#include "store.h"

static int
vfail(int rc, const char *fmt, va_list ap)
{
	fputs("threshold: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return rc;
}

int
cli_fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(1, fmt, ap);
	va_end(ap);
	return rc;
}

int
cli_usage_fail(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vfail(2, fmt, ap);
	va_end(ap);
	return rc;
}

int
cli_read_file(const char *path, size_t max, struct buf *out)
{
	int fd, r;

	fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return th_fail(TH_ERR_IO, "cannot open %s: %s", path,
		    strerror(errno));
	r = buf_read_fd(out, fd, path, max);
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

int
cli_open_store(struct cli *cli, struct store **out)
{
	char path[PATH_MAX];
	int r;

	if ((size_t)snprintf(path, sizeof(path), "%s/threshold.db",
	    cli->state_dir) >= sizeof(path))
		return cli_fail("state directory path too long");
	if ((r = store_open(path, out)) != 0)
		return cli_fail("%s (is --state %s right?)", th_errmsg(r),
		    cli->state_dir);
	return 0;
}

int
cli_open_signer(struct cli *cli, struct sigc **out)
{
	int r;

	if ((r = sigc_connect(cli->signer_socket, out)) != 0)
		return cli_fail("%s", th_errmsg(r));
	return 0;
}

int
cli_open_cap(struct cli *cli, struct sigc *signer, struct store *st,
    struct cap_ctx **out)
{
	int r;

	(void)cli;
	if ((r = cap_ctx_new(signer, store_instance(st), CAP_TTL_DEFAULT,
	    out)) != 0)
		return cli_fail("%s", th_errmsg(r));
	return 0;
}

int
cli_number(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int64_t
cli_duration(const char *s)
{
	char *end;
	long long v;
	int64_t unit;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v <= 0 || end[0] == '\0' ||
	    end[1] != '\0')
		return -1;
	switch (end[0]) {
	case 's': unit = 1; break;
	case 'm': unit = 60; break;
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	default: return -1;
	}
	if (v > 10LL * 366 * 86400 / unit)
		return -1;
	return v * unit;
}
