/* UTF-8 as RFC 3629 defines it: shortest forms only, no surrogates,
 * nothing above U+10FFFF.  Canonical JSON (the audit log) holds only such
 * text, and error messages, which quote outside input, are kept to it. */
#ifndef TH_UTF8_H
#define TH_UTF8_H

#include <stddef.h>

/* Bytes of the well-formed character at s[0..len), 0 if there is none. */
size_t	utf8_char(const unsigned char *s, size_t len);
/* 1 if p[len] is well-formed UTF-8. */
int	utf8_valid(const void *p, size_t len);
/* In place: every byte that does not begin a well-formed character, and
 * every byte of a control character (C0, DEL, C1, line and paragraph
 * separators, bidirectional controls), becomes '?', so that s is one
 * printable line of UTF-8 that reads as it is. */
void	utf8_sanitize(char *s);

#endif
