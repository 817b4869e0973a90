/* A checkpoint's statement (docs/audit-format.md, "Checkpoints"): what the
 * writer countersigns and the verifier recomputes. */
#ifndef TH_STMT_H
#define TH_STMT_H

#include <stdint.h>

#include <json-c/json.h>

/* {"first","last","log","n","prev","root"} as a new object, and its
 * qualifying data Q = SHA-256(canonical(statement)). */
int	stmt_make(int64_t first, int64_t last, const char *log, int64_t n,
	    const char *prev, const char *root, struct json_object **stmt,
	    uint8_t q[32]);

#endif
