/* Strict JSON (every body, token part and log line goes through it) and
 * its RFC 8785 canonical form (what the audit log hashes).  Whatever the
 * strict parser accepts and the encoder can encode must come back the
 * same: canonical(parse(canonical(x))) == canonical(x).  Only for objects
 * and arrays, the only top-level values Threshold reads: json-c cannot end
 * a bare top-level number without a byte after it ("6" is incomplete to
 * it, "6 " is not). */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "jcs.h"
#include "json.h"

#define MAXLEN	(64 * 1024)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o = NULL, *o2 = NULL;
	struct buf *c1 = buf_new(), *c2 = buf_new();

	if (c1 == NULL || c2 == NULL)
		goto out;
	if (json_parse_strict((const char *)data, size, MAXLEN, &o) != 0 ||
	    (!json_object_is_type(o, json_type_object) &&
	    !json_object_is_type(o, json_type_array)) || jcs_encode(c1, o) != 0)
		goto out;
	FUZZ_ASSERT(json_parse_strict((const char *)buf_ptr(c1), buf_len(c1),
	    MAXLEN * 6, &o2) == 0);
	FUZZ_ASSERT(jcs_encode(c2, o2) == 0);
	FUZZ_ASSERT(buf_len(c1) == buf_len(c2) &&
	    memcmp(buf_ptr(c1), buf_ptr(c2), buf_len(c1)) == 0);
 out:
	json_object_put(o);
	json_object_put(o2);
	buf_free(c1);
	buf_free(c2);
	return 0;
}
