#include <stdint.h>
#include <string.h>

#include "utf8.h"

size_t
utf8_char(const unsigned char *s, size_t len)
{
	size_t n, k;
	uint32_t cp;

	if (len == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 1;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 2;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 3;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len <= n)
		return 0;
	for (k = 1; k <= n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n + 1;
}

int
utf8_valid(const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t i, k;

	for (i = 0; i < len; i += k) {
		/* Runs of ASCII, the usual case, without the decoder. */
		if (s[i] < 0x80) {
			k = 1;
			continue;
		}
		if ((k = utf8_char(s + i, len - i)) == 0)
			return 0;
	}
	return 1;
}

/* Characters that control a terminal or how text reads without being
 * seen: C1 controls (U+009B starts an escape sequence on many terminals),
 * line and paragraph separators, and bidirectional controls (U+202E can
 * make "gnp.exe" read as "exe.png"). */
static int
invisible_control(const unsigned char *c, size_t k)
{
	unsigned cp;

	if (k == 2) {
		cp = (unsigned)(c[0] & 0x1f) << 6 | (c[1] & 0x3f);
		return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c;
	}
	if (k != 3)
		return 0;
	cp = (unsigned)(c[0] & 0x0f) << 12 | (unsigned)(c[1] & 0x3f) << 6 |
	    (c[2] & 0x3f);
	return cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	    (cp >= 0x2066 && cp <= 0x2069);
}

void
utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t len = strlen(s), i, k;

	for (i = 0; i < len; i += k) {
		if ((k = utf8_char(p + i, len - i)) == 0) {
			p[i] = '?';
			k = 1;
		} else if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f))
			p[i] = '?';
		else if (invisible_control(p + i, k))
			memset(p + i, '?', k);
	}
}
