#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "b64url.h"
#include "buf.h"
#include "err.h"
#include "json.h"
#include "utf8.h"

void
json_count(struct json_object *o, size_t *members, size_t *containers)
{
	size_t i;

	switch (json_object_get_type(o)) {
	case json_type_object: {
		(*containers)++;
		json_object_object_foreach(o, k, v) {
			(void)k;
			(*members)++;
			json_count(v, members, containers);
		}
		break;
	}
	case json_type_array:
		(*containers)++;
		for (i = 0; i < json_object_array_length(o); i++)
			json_count(json_object_array_get_idx(o, i), members,
			    containers);
		break;
	default:
		break;
	}
}

static int
hex4(const char *s, size_t len, size_t i, unsigned *cp)
{
	size_t k;
	int d;

	*cp = 0;
	if (len - i < 4)
		return -1;
	for (k = 0; k < 4; k++) {
		d = s[i + k];
		if (d >= '0' && d <= '9')
			d -= '0';
		else if (d >= 'a' && d <= 'f')
			d -= 'a' - 10;
		else if (d >= 'A' && d <= 'F')
			d -= 'A' - 10;
		else
			return -1;
		*cp = *cp << 4 | (unsigned)d;
	}
	return 0;
}

/* The escapes of the string whose contents start at s[*i], up to its
 * closing quote (*i is left on it).  json-c turns a lone surrogate into
 * U+FFFD, so strings a signer or another verifier sees as different
 * would compare equal here; and its C strings end at an escaped U+0000. */
static int
scan_string(const char *s, size_t len, size_t *i)
{
	unsigned cp, lo;

	for (; *i < len && s[*i] != '"'; (*i)++) {
		/* RFC 8259 wants them escaped, and json-c lets them through:
		 * a verifier that follows the RFC would refuse what we take. */
		if ((unsigned char)s[*i] < 0x20)
			return th_fail(TH_ERR_INVALID, "invalid JSON: control "
			    "character 0x%02x unescaped in a string",
			    (unsigned char)s[*i]);
		if (s[*i] != '\\')
			continue;
		if (++(*i) == len)
			break;
		if (s[*i] != 'u')
			continue;
		if (hex4(s, len, *i + 1, &cp) != 0)
			return th_fail(TH_ERR_INVALID, "invalid JSON: a \\u "
			    "escape without four hex digits");
		*i += 4;
		if (cp == 0)
			return th_fail(TH_ERR_INVALID, "JSON string holds "
			    "U+0000");
		if (cp >= 0xdc00 && cp <= 0xdfff)
			return th_fail(TH_ERR_INVALID, "JSON string holds a "
			    "lone surrogate");
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (len - *i < 7 || s[*i + 1] != '\\' ||
			    s[*i + 2] != 'u' || hex4(s, len, *i + 3, &lo) != 0 ||
			    lo < 0xdc00 || lo > 0xdfff)
				return th_fail(TH_ERR_INVALID, "JSON string "
				    "holds a lone surrogate");
			*i += 6;
		}
	}
	return 0;
}

/* Whether the n decimal digits at d (no leading zero) fit in int64. */
static int
int64_digits(const char *d, size_t n, int neg)
{
	static const char max[] = "9223372036854775807";
	static const char min[] = "9223372036854775808";

	if (n != sizeof(max) - 1)
		return n < sizeof(max) - 1;
	return memcmp(d, neg ? min : max, n) <= 0;
}

/* The number at s[*i] (RFC 8259's grammar: json-c also takes "-01", "1."
 * and "1.e5"); an integer must fit in int64 (json-c clamps, so distinct
 * signed values would read alike).  *i is left on its last character. */
static int
scan_number(const char *s, size_t len, size_t *i)
{
	size_t j = *i, d0, nd;
	int neg = 0, integer = 1;

	if (s[j] == '-') {
		neg = 1;
		j++;
	}
	d0 = j;
	if (j < len && s[j] == '0')
		j++;
	else if (j < len && s[j] >= '1' && s[j] <= '9')
		while (j < len && s[j] >= '0' && s[j] <= '9')
			j++;
	else
		goto bad;
	nd = j - d0;
	if (j < len && s[j] == '.') {
		integer = 0;
		if (++j == len || s[j] < '0' || s[j] > '9')
			goto bad;
		while (j < len && s[j] >= '0' && s[j] <= '9')
			j++;
	}
	if (j < len && (s[j] == 'e' || s[j] == 'E')) {
		integer = 0;
		if (++j < len && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j == len || s[j] < '0' || s[j] > '9')
			goto bad;
		while (j < len && s[j] >= '0' && s[j] <= '9')
			j++;
	}
	if (j < len && ((s[j] >= '0' && s[j] <= '9') || s[j] == '.' ||
	    s[j] == '+' || s[j] == '-' || s[j] == 'e' || s[j] == 'E'))
		goto bad;
	if (integer && !int64_digits(s + d0, nd, neg))
		return th_fail(TH_ERR_INVALID, "JSON integer out of range "
		    "(64-bit signed)");
	*i = j - 1;
	return 0;
 bad:
	return th_fail(TH_ERR_INVALID, "invalid JSON: malformed number");
}

/* What json-c lets through even in strict mode, refused; and the members
 * as written counted (every member of a valid JSON text has exactly one
 * ':' outside strings and no other ':' occurs there), for the duplicate
 * check.  Outside strings only RFC 8259 characters may appear (json-c
 * takes single-quoted strings). */
static int
scan_text(const char *s, size_t len, size_t *members, size_t *containers)
{
	/* Structure, white space, and the letters of true/false/null. */
	static const uint8_t plain[256] = {
		['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, [','] = 1,
		[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1,
		['t'] = 1, ['r'] = 1, ['u'] = 1, ['e'] = 1, ['f'] = 1,
		['a'] = 1, ['l'] = 1, ['s'] = 1, ['n'] = 1
	};
	size_t i;
	int r;

	*members = 0;
	*containers = 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '"') {
			i++;
			if ((r = scan_string(s, len, &i)) != 0)
				return r;
		} else if (s[i] == ':')
			(*members)++;
		else if (s[i] == '{' || s[i] == '[')
			(*containers)++;
		else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
			if ((r = scan_number(s, len, &i)) != 0)
				return r;
		} else if (!plain[(uint8_t)s[i]])
			return th_fail(TH_ERR_INVALID, "invalid JSON: "
			    "character 0x%02x outside a string",
			    (unsigned)(uint8_t)s[i]);
	}
	return 0;
}

/* The text is "null" with white space around it (s is not a C string). */
static int
is_null_text(const char *s, size_t len)
{
	size_t i = 0, n;

	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
	    s[i] == '\n'))
		i++;
	if (len - i < 4 || memcmp(s + i, "null", 4) != 0)
		return 0;
	for (n = i + 4; n < len; n++)
		if (s[n] != ' ' && s[n] != '\t' && s[n] != '\r' && s[n] != '\n')
			return 0;
	return 1;
}

int
json_parse_strict(const char *s, size_t len, size_t maxlen,
    struct json_object **out)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
	size_t members, containers, counted = 0, built = 0;
	int r = TH_ERR_INVALID;

	*out = NULL;
	if (len > maxlen)
		return th_fail(TH_ERR_TOO_LONG, "JSON of %zu bytes exceeds %zu",
		    len, maxlen);
	if (memchr(s, '\0', len) != NULL)
		return th_fail(TH_ERR_INVALID, "JSON contains a NUL byte");
	/* RFC 8259 section 8.1; and the audit log hashes the canonical form,
	 * which exists for Unicode text only.  (json-c's own check lets
	 * overlong forms through.) */
	if (!utf8_valid(s, len))
		return th_fail(TH_ERR_INVALID, "JSON is not valid UTF-8");
	if ((r = scan_text(s, len, &members, &containers)) != 0)
		return r;
	if (containers > JSON_CONTAINERS_MIN + len / JSON_CONTAINER_BYTES)
		return th_fail(TH_ERR_INVALID, "JSON has %zu objects and "
		    "arrays in %zu bytes (at most %zu)", containers, len,
		    (size_t)JSON_CONTAINERS_MIN + len / JSON_CONTAINER_BYTES);
	if ((tok = json_tokener_new_ex(JSON_DEPTH_MAX)) == NULL)
		return TH_ERR_ALLOC;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)len);
	/* A NULL with no error is the text "null", or json-c out of
	 * memory: not to be reported as the input's fault. */
	if (o == NULL && json_tokener_get_error(tok) == json_tokener_success) {
		r = is_null_text(s, len) ? th_fail(TH_ERR_INVALID, "invalid "
		    "JSON: null") : th_fail(TH_ERR_ALLOC, "out of memory "
		    "parsing JSON");
		goto out;
	}
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		r = th_fail(TH_ERR_INVALID, "invalid JSON: %s",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	if (json_tokener_get_parse_end(tok) != len) {
		r = th_fail(TH_ERR_INVALID, "trailing data after JSON");
		goto out;
	}
	json_count(o, &counted, &built);
	if (counted != members) {
		r = th_fail(TH_ERR_INVALID, "duplicate member name in JSON");
		goto out;
	}
	*out = o;
	o = NULL;
	r = 0;
 out:
	json_object_put(o);
	json_tokener_free(tok);
	return r;
}

int
json_get_string(struct json_object *obj, const char *key, const char **out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v))
		return th_fail(TH_ERR_NOT_FOUND, "missing \"%s\"", key);
	if (!json_object_is_type(v, json_type_string))
		return th_fail(TH_ERR_INVALID, "\"%s\" is not a string", key);
	*out = json_object_get_string(v);
	return 0;
}

int
json_get_int64(struct json_object *obj, const char *key, int64_t *out)
{
	struct json_object *v;

	if (!json_object_object_get_ex(obj, key, &v))
		return th_fail(TH_ERR_NOT_FOUND, "missing \"%s\"", key);
	if (!json_object_is_type(v, json_type_int))
		return th_fail(TH_ERR_INVALID, "\"%s\" is not an integer", key);
	errno = 0;
	*out = json_object_get_int64(v);
	if (errno != 0)
		return th_fail(TH_ERR_INVALID, "\"%s\" out of range", key);
	return 0;
}

int
json_only_members(struct json_object *obj, const char *const *names, size_t n)
{
	size_t i;

	json_object_object_foreach(obj, k, v) {
		(void)v;
		for (i = 0; i < n; i++)
			if (strcmp(k, names[i]) == 0)
				break;
		if (i == n)
			return th_fail(TH_ERR_INVALID, "member \"%.32s\" not "
			    "allowed", k);
	}
	return 0;
}

int
json_get_string_len(struct json_object *obj, const char *key, size_t maxlen,
    const char **out)
{
	int r;

	if ((r = json_get_string(obj, key, out)) != 0)
		return r;
	if ((*out)[0] == '\0' || strlen(*out) > maxlen)
		return th_fail(TH_ERR_INVALID, "\"%s\" must be 1 to %zu bytes",
		    key, maxlen);
	return 0;
}

int
json_add_b64url(struct json_object *obj, const char *key, const uint8_t *p,
    size_t len)
{
	struct buf *b = buf_new();
	int r;

	if (b == NULL)
		return TH_ERR_ALLOC;
	if ((r = b64url_encode(b, p, len)) == 0)
		r = json_object_object_add(obj, key, json_object_new_string_len(
		    (const char *)buf_ptr(b), (int)buf_len(b))) == 0 ? 0 :
		    TH_ERR_ALLOC;
	buf_free(b);
	return r;
}
