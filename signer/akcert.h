/* The root's statement that the attestation key lives in the TPM of the
 * EK certificate (docs/audit-format.md, "Header", activation): made here,
 * whole, so that no peer can have the root certify a key of its choosing. */
#ifndef TH_SIGNER_AKCERT_H
#define TH_SIGNER_AKCERT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "keys.h"

/* TPM2_MakeCredential (in software, to the EK certificate's key) for the
 * AK's name, TPM2_ActivateCredential by the TPM, and, if the TPM gave the
 * secret back, a threshold-ak-cert+jwt signed by the delegation-root key
 * naming subject, appended to out. */
int	akcert_make(struct keys *k, const uint8_t *subject, size_t subject_len,
	    struct buf *out);

#endif
