#include <string.h>

#include "buf.h"
#include "err.h"
#include "jcs.h"
#include "json.h"
#include "sha.h"
#include "stmt.h"

int
stmt_entry_check(const uint8_t *b, size_t n, int64_t seq, const char *prev,
    struct json_object **out)
{
	struct json_object *e = NULL;
	struct buf *c = NULL;
	const char *p;
	int64_t s;
	int r;

	if (b == NULL || n == 0 || n > STMT_ENTRY_MAX) {
		r = th_fail(TH_ERR_PROTOCOL, "audit log: entry %lld is empty "
		    "or too large", (long long)seq);
		goto out;
	}
	if ((c = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if (json_parse_strict((const char *)b, n, STMT_ENTRY_MAX, &e) != 0 ||
	    jcs_encode(c, e) != 0 || buf_len(c) != n ||
	    memcmp(buf_ptr(c), b, n) != 0 ||
	    json_get_int64(e, "seq", &s) != 0 || s != seq) {
		r = th_fail(TH_ERR_PROTOCOL, "audit log: entry %lld is not "
		    "stored as its canonical form with its own seq",
		    (long long)seq);
		goto out;
	}
	if (prev != NULL && (json_get_string(e, "prev", &p) != 0 ||
	    strcmp(p, prev) != 0)) {
		r = th_fail(TH_ERR_PROTOCOL, "audit log: entry %lld's prev is "
		    "not the hash of the entry before it", (long long)seq);
		goto out;
	}
	r = 0;
	if (out != NULL) {
		*out = e;
		e = NULL;
	}
 out:
	buf_free(c);
	json_object_put(e);
	return r;
}

int
stmt_make(int64_t first, int64_t last, const char *log, int64_t n,
    const char *prev, const char *root, struct json_object **stmt,
    uint8_t q[32])
{
	struct json_object *o;
	struct buf *canon = NULL;
	int r = TH_ERR_ALLOC;

	*stmt = NULL;
	if ((o = json_object_new_object()) == NULL ||
	    (canon = buf_new()) == NULL)
		goto out;
	json_object_object_add(o, "first", json_object_new_int64(first));
	json_object_object_add(o, "last", json_object_new_int64(last));
	json_object_object_add(o, "log", json_object_new_string(log));
	json_object_object_add(o, "n", json_object_new_int64(n));
	json_object_object_add(o, "prev", json_object_new_string(prev));
	json_object_object_add(o, "root", json_object_new_string(root));
	if ((r = jcs_encode(canon, o)) != 0)
		goto out;
	sha256(buf_ptr(canon), buf_len(canon), q);
	*stmt = o;
	o = NULL;
 out:
	json_object_put(o);
	buf_free(canon);
	return r;
}
