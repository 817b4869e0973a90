/* An entry's inclusion proof (docs/audit-format.md, "Inclusion proofs"):
 * what an auditor who holds a checkpoint needs to check that one entry is
 * in the log, without the rest of it. */
#ifndef TH_PROOF_H
#define TH_PROOF_H

#include <stdint.h>
#include <stdio.h>

/* Writes entry seq's proof from the audit database at path to out, as one
 * JSON object; TH_ERR_NOT_FOUND if there is no such entry or no checkpoint
 * covers it yet. */
int	proof_write_db(const char *path, int64_t seq, FILE *out);

#endif
