#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jcs.h"
#include "utf8.h"

/* RFC 8785 3.2.2.2: sort by UTF-16 code units.  For UTF-8 input that is
 * byte order except that code points above U+FFFF (4-byte sequences, lead
 * bytes 0xF0-0xF4, surrogate pairs D800-DBFF in UTF-16) sort before
 * U+E000-U+FFFF (3-byte sequences with lead bytes 0xEE-0xEF). */
static int
utf16_rank(unsigned char c)
{
	/* Between the lead bytes of U+D000-U+DFFF and of U+E000, in their
	 * own order (the code points', as their surrogate pairs'). */
	if (c >= 0xf0)
		return 0xed * 8 + 1 + (c - 0xf0);
	return c * 8;
}

static int
utf16_cmp(const char *a, const char *b)
{
	const unsigned char *x = (const unsigned char *)a;
	const unsigned char *y = (const unsigned char *)b;

	for (; *x != '\0' && *x == *y; x++, y++)
		;
	if (*x == *y)
		return 0;
	if (*x == '\0')
		return -1;
	if (*y == '\0')
		return 1;
	return utf16_rank(*x) - utf16_rank(*y);
}

static int
cmp_keys(const void *a, const void *b)
{
	return utf16_cmp(*(const char *const *)a, *(const char *const *)b);
}

static int
put_string(struct buf *out, const char *s, size_t len)
{
	char esc[8];
	size_t i, run;
	int r;

	if (!utf8_valid(s, len))
		return th_fail(TH_ERR_INVALID, "string is not valid UTF-8");
	if ((r = buf_put_u8(out, '"')) != 0)
		return r;
	for (i = 0; i < len; i += run) {
		unsigned char c = (unsigned char)s[i];

		/* Copy runs of characters that need no escape at once. */
		for (run = 0; i + run < len; run++) {
			c = (unsigned char)s[i + run];
			if (c < 0x20 || c == '"' || c == '\\')
				break;
		}
		if (run > 0) {
			if ((r = buf_put(out, s + i, run)) != 0)
				return r;
			continue;
		}
		run = 1;
		switch (c) {
		case '"':  r = buf_put(out, "\\\"", 2); break;
		case '\\': r = buf_put(out, "\\\\", 2); break;
		case '\b': r = buf_put(out, "\\b", 2); break;
		case '\f': r = buf_put(out, "\\f", 2); break;
		case '\n': r = buf_put(out, "\\n", 2); break;
		case '\r': r = buf_put(out, "\\r", 2); break;
		case '\t': r = buf_put(out, "\\t", 2); break;
		case '\0':
			/* Never written: the strict parser refuses it
			 * (lib/json.c). */
			return th_fail(TH_ERR_INVALID, "string holds U+0000");
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			r = buf_put(out, esc, 6);
		}
		if (r != 0)
			return r;
	}
	return buf_put_u8(out, '"');
}

static int
encode(struct buf *out, struct json_object *v, int depth)
{
	const char **keys = NULL;
	char num[32];
	size_t i, n;
	int r = 0;

	if (depth > JCS_DEPTH_MAX)
		return th_fail(TH_ERR_TOO_LONG, "JSON nested too deeply");
	switch (json_object_get_type(v)) {
	case json_type_null:
		return buf_put(out, "null", 4);
	case json_type_boolean:
		return json_object_get_boolean(v) ? buf_put(out, "true", 4) :
		    buf_put(out, "false", 5);
	case json_type_int:
		n = (size_t)snprintf(num, sizeof(num), "%lld",
		    (long long)json_object_get_int64(v));
		return buf_put(out, num, n);
	case json_type_double:
		return th_fail(TH_ERR_INVALID, "floats are not canonicalised");
	case json_type_string:
		return put_string(out, json_object_get_string(v),
		    (size_t)json_object_get_string_len(v));
	case json_type_array:
		if ((r = buf_put_u8(out, '[')) != 0)
			return r;
		for (i = 0; i < json_object_array_length(v); i++)
			if ((i > 0 && (r = buf_put_u8(out, ',')) != 0) ||
			    (r = encode(out, json_object_array_get_idx(v, i),
			    depth + 1)) != 0)
				return r;
		return buf_put_u8(out, ']');
	case json_type_object:
		n = (size_t)json_object_object_length(v);
		if (n > 0 && (keys = calloc(n, sizeof(*keys))) == NULL)
			return TH_ERR_ALLOC;
		i = 0;
		json_object_object_foreach(v, k, val) {
			(void)val;
			keys[i++] = k;
		}
		if (n > 1)
			qsort(keys, n, sizeof(*keys), cmp_keys);
		if ((r = buf_put_u8(out, '{')) != 0)
			goto out;
		for (i = 0; i < n; i++) {
			struct json_object *member;

			json_object_object_get_ex(v, keys[i], &member);
			if ((i > 0 && (r = buf_put_u8(out, ',')) != 0) ||
			    (r = put_string(out, keys[i], strlen(keys[i]))) != 0 ||
			    (r = buf_put_u8(out, ':')) != 0 ||
			    (r = encode(out, member, depth + 1)) != 0)
				goto out;
		}
		r = buf_put_u8(out, '}');
 out:
		free(keys);
		return r;
	}
	return th_fail(TH_ERR_INVALID, "unknown JSON type");
}

int
jcs_encode(struct buf *out, struct json_object *v)
{
	return encode(out, v, 0);
}
