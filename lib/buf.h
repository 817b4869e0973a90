/* Growable byte buffer with typed, bounds-checked put/get (after OpenSSH's
 * sshbuf).  Integers are big-endian.  A "string" is a u32 length followed by
 * that many bytes.  Getters consume from the front and fail, consuming
 * nothing, when the data is short or a length exceeds the caller's bound.
 * Contents are wiped whenever memory is released, since buffers carry
 * signatures, PINs and tokens. */
#ifndef TH_BUF_H
#define TH_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE_MAX	(16 * 1024 * 1024)

struct buf;

struct buf	*buf_new(void);
void		 buf_free(struct buf *b);		/* NULL ok */
void		 buf_reset(struct buf *b);		/* wipe, empty */

size_t		 buf_len(const struct buf *b);		/* unread bytes */
const uint8_t	*buf_ptr(const struct buf *b);		/* first unread */

int	buf_put(struct buf *b, const void *p, size_t len);
int	buf_put_u8(struct buf *b, uint8_t v);
int	buf_put_u16(struct buf *b, uint16_t v);
int	buf_put_u32(struct buf *b, uint32_t v);
int	buf_put_u64(struct buf *b, uint64_t v);
int	buf_put_string(struct buf *b, const void *p, size_t len);
int	buf_put_cstring(struct buf *b, const char *s);
/* Appends len bytes and returns a pointer to them for the caller to fill;
 * valid until the next put. */
int	buf_reserve(struct buf *b, size_t len, uint8_t **p);

int	buf_get(struct buf *b, void *p, size_t len);
int	buf_get_u8(struct buf *b, uint8_t *v);
int	buf_get_u16(struct buf *b, uint16_t *v);
int	buf_get_u32(struct buf *b, uint32_t *v);
int	buf_get_u64(struct buf *b, uint64_t *v);
/* A string of at most max bytes; *p points into the buffer and stays valid
 * until the buffer is next modified. */
int	buf_get_string_direct(struct buf *b, const uint8_t **p, size_t *len,
	    size_t max);
/* A string copied out NUL-terminated into out[outsz]; refuses embedded NULs
 * and strings that do not fit. */
int	buf_get_cstring(struct buf *b, char *out, size_t outsz);
int	buf_consume(struct buf *b, size_t len);

/* Appends what fd holds up to its end, at most max bytes (refused past
 * them); name is what errors call it.  The bytes pass through no other
 * buffer that is not wiped (stdio's would keep a key or a PIN). */
int	buf_read_fd(struct buf *b, int fd, const char *name, size_t max);

#endif
