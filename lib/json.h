/* Strict JSON input for anything that arrives from outside (tokens, signer
 * payloads, GitHub replies): json-c in strict mode, whole input consumed, no
 * NUL bytes, bounded length and depth, and no duplicate member names in any
 * object (a verifier that takes the first of two "typ" members and one that
 * takes the last would disagree on what was signed). */
#ifndef TH_JSON_H
#define TH_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define JSON_DEPTH_MAX	16
/* json-c spends ~850 bytes on an empty object or array: "[{},{},...]"
 * would make a 1 MiB text ~280 MiB of memory.  At most this many objects
 * and arrays, plus one per JSON_CONTAINER_BYTES of text (denser than any
 * text of ours or GitHub's), bound it to ~50 times the text. */
#define JSON_CONTAINERS_MIN	64
#define JSON_CONTAINER_BYTES	16

/* On success *out is an owned reference (json_object_put it). */
int	json_parse_strict(const char *s, size_t len, size_t maxlen,
	    struct json_object **out);

/* Adds o's members (of every object in the tree) and objects and arrays
 * (o included) to the counts. */
void	json_count(struct json_object *o, size_t *members,
	    size_t *containers);

/* Typed member getters: TH_ERR_NOT_FOUND if absent, TH_ERR_INVALID if of
 * another type.  Strings are returned borrowed from obj. */
int	json_get_string(struct json_object *obj, const char *key,
	    const char **out);
int	json_get_int64(struct json_object *obj, const char *key, int64_t *out);

/* TH_ERR_INVALID if obj has a member not in names[0..n). */
int	json_only_members(struct json_object *obj, const char *const *names,
	    size_t n);
/* A string member of 1..maxlen bytes. */
int	json_get_string_len(struct json_object *obj, const char *key,
	    size_t maxlen, const char **out);
/* Adds key: BASE64URL(p[0..len)) (no padding) to obj. */
int	json_add_b64url(struct json_object *obj, const char *key,
	    const uint8_t *p, size_t len);

#endif
