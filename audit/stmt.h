/* A checkpoint's statement (docs/audit-format.md, "Checkpoints"): what the
 * writer countersigns and the verifier recomputes. */
#ifndef TH_STMT_H
#define TH_STMT_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define STMT_ENTRY_MAX	(1024 * 1024)	/* a stored entry's bytes */

/* {"first","last","log","n","prev","root"} as a new object, and its
 * qualifying data Q = SHA-256(canonical(statement)). */
int	stmt_make(int64_t first, int64_t last, const char *log, int64_t n,
	    const char *prev, const char *root, struct json_object **stmt,
	    uint8_t q[32]);

/* An entry as the database stores it, b[0..n): strict JSON in its
 * canonical form, whose "seq" is seq and, with prev non-NULL, whose
 * "prev" is prev.  The parsed entry in *out if out is non-NULL. */
int	stmt_entry_check(const uint8_t *b, size_t n, int64_t seq,
	    const char *prev, struct json_object **out);

#endif
