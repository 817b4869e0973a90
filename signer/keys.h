/* The signer's keys, one per purpose, over the TPM and PKCS#11 backends.
 * Backends are opened and keys loaded lazily and kept: a key is found once,
 * not per signature.  If a backend is unreachable the call fails with
 * TH_ERR_UNAVAILABLE and the next call tries again, so the signer recovers by
 * itself when the TPM or token comes back.  Callable from several threads:
 * each backend is used under its own lock. */
#ifndef TH_SIGNER_KEYS_H
#define TH_SIGNER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "alg.h"
#include "buf.h"
#include "config.h"
#include "proto.h"

struct keys;

int	keys_new(const struct config *cfg, struct keys **out);
void	keys_free(struct keys *k);			/* NULL ok */

/* The algorithm the purpose's key signs with (loads the key). */
int	keys_alg(struct keys *k, enum purpose p, enum th_alg *alg);
/* Appends the DER SubjectPublicKeyInfo. */
int	keys_pubkey(struct keys *k, enum purpose p, enum th_alg *alg,
	    struct buf *spki);
/* Signs a SHA-256 digest with the purpose's key; sig holds TH_SIG_MAX. */
int	keys_sign(struct keys *k, enum purpose p,
	    const uint8_t digest[TH_DIGEST_LEN], uint8_t *sig, size_t *siglen);
int	keys_quote(struct keys *k, const uint8_t *qual, size_t qual_len,
	    struct buf *attest, struct buf *sig, struct buf *pcrs);
int	keys_ekcert(struct keys *k, struct buf *der);
/* The attestation key's marshalled TPMT_PUBLIC and TPM name
 * (tpm_ak_public). */
int	keys_ak_public(struct keys *k, struct buf *tpmt_public,
	    struct buf *name);
/* TPM2_ActivateCredential with the attestation key and the RSA EK
 * (tpm_activate_credential): appends the recovered credential. */
int	keys_activate(struct keys *k, const uint8_t *credential_blob,
	    size_t blob_len, const uint8_t *secret, size_t secret_len,
	    struct buf *cert_info);
/* One item per configured key: can it be loaded and used right now? */
int	keys_health(struct keys *k, struct proto_health_item *items,
	    size_t *n);

#endif
