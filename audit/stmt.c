#include "buf.h"
#include "err.h"
#include "jcs.h"
#include "sha.h"
#include "stmt.h"

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
