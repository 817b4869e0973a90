/* JSON canonicalisation (RFC 8785, JCS) of json-c values, restricted to
 * what Threshold's audit log holds: objects, arrays, strings, booleans,
 * null and integers (a float is refused: RFC 8785's number form is not
 * needed and not implemented).  Member names are sorted by their UTF-16
 * code units, strings escaped minimally, no whitespace. */
#ifndef TH_JCS_H
#define TH_JCS_H

#include <json-c/json.h>

#include "buf.h"

#define JCS_DEPTH_MAX	32

/* Appends the canonical form of v to out. */
int	jcs_encode(struct buf *out, struct json_object *v);

#endif
