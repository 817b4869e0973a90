#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "err.h"

struct buf {
	uint8_t	*d;
	size_t	 off;	/* read position */
	size_t	 end;	/* write position */
	size_t	 alloc;
};

struct buf *
buf_new(void)
{
	return calloc(1, sizeof(struct buf));
}

void
buf_free(struct buf *b)
{
	if (b == NULL)
		return;
	if (b->d != NULL) {
		OPENSSL_cleanse(b->d, b->alloc);
		free(b->d);
	}
	free(b);
}

void
buf_reset(struct buf *b)
{
	if (b->d != NULL)
		OPENSSL_cleanse(b->d, b->alloc);
	b->off = b->end = 0;
}

size_t
buf_len(const struct buf *b)
{
	return b->end - b->off;
}

const uint8_t *
buf_ptr(const struct buf *b)
{
	return b->d == NULL ? (const uint8_t *)"" : b->d + b->off;
}

/* Make room for len more bytes, compacting first; never realloc() in place
 * because the old block must be wiped. */
static int
buf_grow(struct buf *b, size_t len)
{
	size_t need, nalloc;
	uint8_t *n;

	if (len > BUF_SIZE_MAX || buf_len(b) > BUF_SIZE_MAX - len)
		return th_fail(TH_ERR_TOO_LONG, "buffer would exceed %d bytes",
		    BUF_SIZE_MAX);
	if (b->off > 0 && b->end + len > b->alloc) {
		memmove(b->d, b->d + b->off, b->end - b->off);
		b->end -= b->off;
		OPENSSL_cleanse(b->d + b->end, b->alloc - b->end);
		b->off = 0;
	}
	need = b->end + len;
	/* An empty buffer gets its storage even for 0 bytes: callers form
	 * pointers into it (buf_reserve), never from NULL. */
	if (need <= b->alloc && b->d != NULL)
		return 0;
	for (nalloc = b->alloc ? b->alloc : 256; nalloc < need; nalloc *= 2)
		;
	if ((n = malloc(nalloc)) == NULL)
		return TH_ERR_ALLOC;
	if (b->d != NULL) {
		memcpy(n, b->d, b->end);
		OPENSSL_cleanse(b->d, b->alloc);
		free(b->d);
	}
	b->d = n;
	b->alloc = nalloc;
	return 0;
}

int
buf_reserve(struct buf *b, size_t len, uint8_t **p)
{
	int r;

	if ((r = buf_grow(b, len)) != 0)
		return r;
	*p = b->d + b->end;
	b->end += len;
	return 0;
}

int
buf_put(struct buf *b, const void *p, size_t len)
{
	uint8_t *dst;
	int r;

	if (len == 0)
		return 0;
	if ((r = buf_reserve(b, len, &dst)) != 0)
		return r;
	memcpy(dst, p, len);
	return 0;
}

int
buf_put_u8(struct buf *b, uint8_t v)
{
	return buf_put(b, &v, 1);
}

int
buf_put_u16(struct buf *b, uint16_t v)
{
	uint8_t x[2] = { v >> 8, v };

	return buf_put(b, x, sizeof(x));
}

int
buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };

	return buf_put(b, x, sizeof(x));
}

int
buf_put_u64(struct buf *b, uint64_t v)
{
	int r;

	if ((r = buf_put_u32(b, v >> 32)) != 0)
		return r;
	return buf_put_u32(b, (uint32_t)v);
}

int
buf_put_string(struct buf *b, const void *p, size_t len)
{
	int r;

	if (len > UINT32_MAX)
		return TH_ERR_TOO_LONG;
	if ((r = buf_put_u32(b, (uint32_t)len)) != 0)
		return r;
	return buf_put(b, p, len);
}

int
buf_put_cstring(struct buf *b, const char *s)
{
	return buf_put_string(b, s, strlen(s));
}

int
buf_consume(struct buf *b, size_t len)
{
	if (len > buf_len(b))
		return TH_ERR_TRUNCATED;
	b->off += len;
	return 0;
}

int
buf_get(struct buf *b, void *p, size_t len)
{
	if (len > buf_len(b))
		return TH_ERR_TRUNCATED;
	if (len > 0)
		memcpy(p, b->d + b->off, len);
	b->off += len;
	return 0;
}

int
buf_get_u8(struct buf *b, uint8_t *v)
{
	return buf_get(b, v, 1);
}

int
buf_get_u16(struct buf *b, uint16_t *v)
{
	uint8_t x[2];
	int r;

	if ((r = buf_get(b, x, sizeof(x))) != 0)
		return r;
	*v = (uint16_t)(x[0] << 8 | x[1]);
	return 0;
}

int
buf_get_u32(struct buf *b, uint32_t *v)
{
	uint8_t x[4];
	int r;

	if ((r = buf_get(b, x, sizeof(x))) != 0)
		return r;
	*v = (uint32_t)x[0] << 24 | (uint32_t)x[1] << 16 |
	    (uint32_t)x[2] << 8 | x[3];
	return 0;
}

int
buf_get_u64(struct buf *b, uint64_t *v)
{
	uint32_t hi, lo;

	if (buf_len(b) < 8)
		return TH_ERR_TRUNCATED;
	(void)buf_get_u32(b, &hi);
	(void)buf_get_u32(b, &lo);
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

int
buf_get_string_direct(struct buf *b, const uint8_t **p, size_t *len,
    size_t max)
{
	const uint8_t *d = buf_ptr(b);
	uint32_t n;

	if (buf_len(b) < 4)
		return TH_ERR_TRUNCATED;
	n = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
	    (uint32_t)d[2] << 8 | d[3];
	if (n > max)
		return TH_ERR_TOO_LONG;
	if (n > buf_len(b) - 4)
		return TH_ERR_TRUNCATED;
	*p = d + 4;
	*len = n;
	b->off += 4 + (size_t)n;
	return 0;
}

int
buf_get_cstring(struct buf *b, char *out, size_t outsz)
{
	const uint8_t *p;
	size_t len, save = b->off;
	int r;

	if (outsz == 0)
		return TH_ERR_INTERNAL;
	if ((r = buf_get_string_direct(b, &p, &len, outsz - 1)) != 0)
		return r;
	if (memchr(p, '\0', len) != NULL) {
		b->off = save;
		return TH_ERR_INVALID;
	}
	memcpy(out, p, len);
	out[len] = '\0';
	return 0;
}

int
buf_read_fd(struct buf *b, int fd, const char *name, size_t max)
{
	uint8_t tmp[4096];
	size_t total = 0;
	ssize_t n;
	int r = 0;

	while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = th_fail(TH_ERR_IO, "reading %s: %s", name,
			    strerror(errno));
			break;
		}
		if ((total += (size_t)n) > max) {
			r = th_fail(TH_ERR_TOO_LONG, "%s is larger than %zu "
			    "bytes", name, max);
			break;
		}
		if ((r = buf_put(b, tmp, (size_t)n)) != 0)
			break;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return r;
}
