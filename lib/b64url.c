#include <string.h>

#include "b64url.h"
#include "err.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Writes the encoding of p[len], B64URL_ENCODED_LEN(len) characters. */
static void
encode(char *dst, const uint8_t *p, size_t len)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		dst[o++] = alphabet[v >> 18 & 63];
		dst[o++] = alphabet[v >> 12 & 63];
		dst[o++] = alphabet[v >> 6 & 63];
		dst[o++] = alphabet[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		dst[o++] = alphabet[v >> 18 & 63];
		dst[o++] = alphabet[v >> 12 & 63];
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		dst[o++] = alphabet[v >> 18 & 63];
		dst[o++] = alphabet[v >> 12 & 63];
		dst[o++] = alphabet[v >> 6 & 63];
	}
}

int
b64url_encode(struct buf *out, const uint8_t *p, size_t len)
{
	uint8_t *dst;
	int r;

	if ((r = buf_reserve(out, B64URL_ENCODED_LEN(len), &dst)) != 0)
		return r;
	encode((char *)dst, p, len);
	return 0;
}

void
b64url_digest(const uint8_t d[32], char out[B64URL_DIGEST_LEN + 1])
{
	encode(out, d, 32);
	out[B64URL_DIGEST_LEN] = '\0';
}

static int
b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int
b64url_decode(struct buf *out, const char *s, size_t slen)
{
	uint8_t *dst;
	size_t i, o = 0, rem = slen % 4, outlen;
	uint32_t v = 0;
	int c, r, n = 0;

	if (rem == 1)
		return th_fail(TH_ERR_INVALID, "base64url: impossible length");
	outlen = slen / 4 * 3 + (rem ? rem - 1 : 0);
	if ((r = buf_reserve(out, outlen, &dst)) != 0)
		return r;
	for (i = 0; i < slen; i++) {
		if ((c = b64url_value(s[i])) < 0)
			return th_fail(TH_ERR_INVALID,
			    "base64url: invalid character at offset %zu", i);
		v = v << 6 | (uint32_t)c;
		if (++n == 4) {
			dst[o++] = v >> 16;
			dst[o++] = v >> 8;
			dst[o++] = v;
			v = 0;
			n = 0;
		}
	}
	if (n == 2) {
		if (v & 0xf)
			return th_fail(TH_ERR_INVALID,
			    "base64url: non-canonical trailing bits");
		dst[o++] = v >> 4;
	} else if (n == 3) {
		if (v & 0x3)
			return th_fail(TH_ERR_INVALID,
			    "base64url: non-canonical trailing bits");
		dst[o++] = v >> 10;
		dst[o++] = v >> 2;
	}
	return 0;
}

int
b64url_is(const char *s, size_t nbytes)
{
	size_t i, len = B64URL_ENCODED_LEN(nbytes);
	int c = 0;

	if (strlen(s) != len)
		return 0;
	for (i = 0; i < len; i++)
		if ((c = b64url_value(s[i])) < 0)
			return 0;
	/* The last character's unused low bits: 4 after one byte of a
	 * group, 2 after two. */
	return nbytes % 3 == 0 || (c & (nbytes % 3 == 1 ? 0xf : 0x3)) == 0;
}
