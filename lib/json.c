#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "b64url.h"
#include "buf.h"
#include "err.h"
#include "json.h"
#include "utf8.h"

/* Members in the tree, objects nested in arrays included. */
static size_t
count_members(struct json_object *o)
{
	size_t n = 0, i;

	switch (json_object_get_type(o)) {
	case json_type_object: {
		json_object_object_foreach(o, k, v) {
			(void)k;
			n += 1 + count_members(v);
		}
		break;
	}
	case json_type_array:
		for (i = 0; i < json_object_array_length(o); i++)
			n += count_members(json_object_array_get_idx(o, i));
		break;
	default:
		break;
	}
	return n;
}

/* Every member of a valid JSON text has exactly one ':' outside strings and
 * no other ':' occurs there, so this counts members as written.  It also
 * catches the extensions json-c accepts even in strict mode (single-quoted
 * strings): outside strings only RFC 8259 characters may appear, else the
 * count is SIZE_MAX and can match no tree. */
static size_t
count_colons(const char *s, size_t len)
{
	/* Outside strings: structure, white space, numbers, true/false/null. */
	static const uint8_t plain[256] = {
		['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, [','] = 1,
		[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1,
		['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
		['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
		['-'] = 1, ['+'] = 1, ['.'] = 1, ['e'] = 1, ['E'] = 1,
		['t'] = 1, ['r'] = 1, ['u'] = 1, ['f'] = 1, ['a'] = 1,
		['l'] = 1, ['s'] = 1, ['n'] = 1
	};
	size_t i, n = 0;
	int in_str = 0;

	for (i = 0; i < len; i++) {
		if (in_str) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				in_str = 0;
		} else if (s[i] == '"')
			in_str = 1;
		else if (s[i] == ':')
			n++;
		else if (!plain[(uint8_t)s[i]])
			return SIZE_MAX;
	}
	return n;
}

/* 1 if the text escapes U+0000 ("\u0000" after an even run of
 * backslashes).  json-c keeps such a string whole but its C string ends
 * there: a check on the C string would see "a" where a signature, the log's
 * canonical form or another verifier sees "a\u0000b" (or a key would be
 * cut short). */
static int
nul_escape(const char *s, size_t len)
{
	const char *p = s, *end = s + len, *q;
	size_t k;

	while ((q = memmem(p, (size_t)(end - p), "\\u0000", 6)) != NULL) {
		for (k = 0; q - k > s && q[-(ptrdiff_t)k - 1] == '\\'; k++)
			;
		if (k % 2 == 0)
			return 1;
		p = q + 1;
	}
	return 0;
}

int
json_parse_strict(const char *s, size_t len, size_t maxlen,
    struct json_object **out)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL;
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
	if (nul_escape(s, len))
		return th_fail(TH_ERR_INVALID, "JSON string holds U+0000");
	if ((tok = json_tokener_new_ex(JSON_DEPTH_MAX)) == NULL)
		return TH_ERR_ALLOC;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		r = th_fail(TH_ERR_INVALID, "invalid JSON: %s",
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	if (json_tokener_get_parse_end(tok) != len) {
		r = th_fail(TH_ERR_INVALID, "trailing data after JSON");
		goto out;
	}
	if (count_members(o) != count_colons(s, len)) {
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
