/* Inclusion proofs from the audit database: the RFC 6962 audit path of an
 * entry within its checkpoint's batch. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <sqlite3.h>

#include "b64url.h"
#include "buf.h"
#include "err.h"
#include "jcs.h"
#include "json.h"
#include "merkle.h"
#include "proof.h"
#include "stmt.h"

#define PROOF_BATCH_MAX		(1024 * 1024)	/* entries in one batch */
#define PROOF_BODY_MAX		(1024 * 1024)

/* A hash as a base64url JSON string; NULL if out of memory. */
static struct json_object *
hash_json(const uint8_t h[MERKLE_HASH_LEN])
{
	char s[B64URL_DIGEST_LEN + 1];

	b64url_digest(h, s);
	return json_object_new_string(s);
}

static int
parse_row(sqlite3_stmt *q, int col, struct json_object **out)
{
	const char *t = (const char *)sqlite3_column_text(q, col);
	int n = sqlite3_column_bytes(q, col);

	if (t == NULL || n <= 0 || n > PROOF_BODY_MAX)
		return th_fail(TH_ERR_PROTOCOL, "an audit row is empty or too "
		    "large");
	return json_parse_strict(t, (size_t)n, PROOF_BODY_MAX, out);
}

/* Row col of q, an entry with the given seq: its leaf hash, over its
 * canonical form (which is how it must be stored), and the entry if
 * keep. */
static int
row_leaf(sqlite3_stmt *q, int col, int64_t seq, uint8_t leaf[MERKLE_HASH_LEN],
    struct json_object **keep)
{
	const uint8_t *b = sqlite3_column_text(q, col);
	size_t n = (size_t)sqlite3_column_bytes(q, col);
	int r;

	if ((r = stmt_entry_check(b, n, seq, NULL, keep)) == 0)
		merkle_leaf(b, n, leaf);
	return r;
}

/* The checkpoint whose batch holds seq, and its first and last. */
static int
find_checkpoint(sqlite3 *db, int64_t seq, struct json_object **cp,
    int64_t *first, int64_t *last)
{
	sqlite3_stmt *q = NULL;
	int r, rc;

	*cp = NULL;
	if (sqlite3_prepare_v2(db, "SELECT body FROM checkpoints WHERE "
	    "json_extract(body, '$.first') <= ?1 AND "
	    "json_extract(body, '$.last') >= ?1 LIMIT 1", -1, &q, NULL) !=
	    SQLITE_OK || sqlite3_bind_int64(q, 1, seq) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "audit log: %s", sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = sqlite3_step(q)) == SQLITE_DONE) {
		r = th_fail(TH_ERR_NOT_FOUND, "entry %lld is not committed: no "
		    "checkpoint covers it (yet)", (long long)seq);
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = th_fail(TH_ERR_IO, "audit log: %s", sqlite3_errmsg(db));
		goto out;
	}
	if ((r = parse_row(q, 0, cp)) != 0 ||
	    (r = json_get_int64(*cp, "first", first)) != 0 ||
	    (r = json_get_int64(*cp, "last", last)) != 0)
		goto out;
	if (*first > seq || seq > *last)
		r = th_fail(TH_ERR_PROTOCOL, "audit log: checkpoint %lld..%lld "
		    "does not hold entry %lld", (long long)*first,
		    (long long)*last, (long long)seq);
 out:
	sqlite3_finalize(q);
	return r;
}

int
proof_write_db(const char *path, int64_t seq, FILE *out)
{
	uint8_t (*leaves)[MERKLE_HASH_LEN] = NULL;
	uint8_t path_h[MERKLE_PROOF_MAX][MERKLE_HASH_LEN], root[MERKLE_HASH_LEN];
	char root_b64[B64URL_DIGEST_LEN + 1];
	const char *cp_root;
	struct json_object *o = NULL, *cp = NULL, *entry = NULL, *arr;
	sqlite3_stmt *q = NULL;
	sqlite3 *db = NULL;
	int64_t first, last, n, i, s;
	size_t plen, k;
	int r;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "cannot open the audit log %s: %s", path,
		    db != NULL ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	if ((r = find_checkpoint(db, seq, &cp, &first, &last)) != 0)
		goto out;
	n = last - first + 1;
	if (n < 1 || n > PROOF_BATCH_MAX) {
		r = th_fail(TH_ERR_PROTOCOL, "checkpoint batch of %lld entries",
		    (long long)n);
		goto out;
	}
	if ((leaves = calloc((size_t)n, sizeof(*leaves))) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT seq, body FROM entries WHERE seq "
	    "BETWEEN ? AND ? ORDER BY seq", -1, &q, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 1, first) != SQLITE_OK ||
	    sqlite3_bind_int64(q, 2, last) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "audit log: %s", sqlite3_errmsg(db));
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (sqlite3_step(q) != SQLITE_ROW ||
		    (s = sqlite3_column_int64(q, 0)) != first + i) {
			r = th_fail(TH_ERR_PROTOCOL, "audit log: entries %lld..%lld "
			    "are not all there", (long long)first,
			    (long long)last);
			goto out;
		}
		if ((r = row_leaf(q, 1, s, leaves[i], s == seq ? &entry :
		    NULL)) != 0)
			goto out;
	}
	if ((r = json_get_string(cp, "root", &cp_root)) != 0 ||
	    (r = merkle_path((const uint8_t (*)[MERKLE_HASH_LEN])leaves,
	    (size_t)n, (size_t)(seq - first), path_h, &plen)) != 0 ||
	    (r = merkle_root((const uint8_t (*)[MERKLE_HASH_LEN])leaves,
	    (size_t)n, root)) != 0)
		goto out;
	/* A proof is handed out only if the batch hashes to the checkpoint's
	 * own root (rows altered since would otherwise get a proof of their
	 * own, consistent with nothing the TPM signed), and the path leads
	 * there. */
	b64url_digest(root, root_b64);
	if (strcmp(root_b64, cp_root) != 0 ||
	    merkle_verify(leaves[seq - first], (size_t)(seq - first),
	    (size_t)n, (const uint8_t (*)[MERKLE_HASH_LEN])path_h, plen,
	    root) != 0) {
		r = th_fail(TH_ERR_CRYPTO, "audit log: entries %lld..%lld do "
		    "not hash to their checkpoint's root (the database was "
		    "altered; run threshold audit verify)", (long long)first,
		    (long long)last);
		goto out;
	}
	o = json_object_new_object();
	arr = json_object_new_array();
	json_object_object_add(o, "seq", json_object_new_int64(seq));
	json_object_object_add(o, "entry", entry);
	entry = NULL;
	json_object_object_add(o, "leaf_index", json_object_new_int64(seq -
	    first));
	json_object_object_add(o, "tree_size", json_object_new_int64(n));
	json_object_object_add(o, "leaf", hash_json(leaves[seq - first]));
	json_object_object_add(o, "root", hash_json(root));
	json_object_object_add(o, "path", arr);
	for (k = 0; k < plen; k++)
		json_object_array_add(arr, hash_json(path_h[k]));
	json_object_object_add(o, "checkpoint", cp);
	cp = NULL;
	fprintf(out, "%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	r = fflush(out) == 0 ? 0 : th_fail(TH_ERR_IO, "write failed");
 out:
	json_object_put(o);
	json_object_put(cp);
	json_object_put(entry);
	sqlite3_finalize(q);
	sqlite3_close(db);
	free(leaves);
	return r;
}
