/* TPM 2.0 backend (tpm2-tss ESYS).  Only threshold-signer links this.
 *
 * Keys live at persistent handles.  Signing keys (ES256, RS256) are children
 * of a storage primary key (ECC P-256, the TCG SRK template) persisted at
 * TPM_SRK_HANDLE under the owner hierarchy.  The attestation key is a
 * restricted ECDSA P-256 signing key under the endorsement hierarchy, so its
 * quotes carry unobfuscated clock and reset counters.
 *
 * Password (empty) authorisation is used on the hot path: HMAC sessions cost
 * 5x in signing rate.  Every transient handle this module creates is flushed
 * before the call returns: swtpm has no resource manager.
 *
 * When the TPM goes away (connection lost), calls fail with
 * TH_ERR_UNAVAILABLE and the next call reconnects, so the signer recovers by
 * itself once the TPM is back.  A write to a TPM socket that was closed raises
 * SIGPIPE: the process must ignore it.  Not thread-safe: one tpm_ctx (and its
 * keys) per thread. */
#ifndef TH_TPM_H
#define TH_TPM_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "alg.h"
#include "buf.h"

#define TPM_SRK_HANDLE		0x81000001
/* Persistent handles (TCG Registry of Reserved TPM 2.0 Handles): signing
 * keys in the owner range, the attestation key in the endorsement one. */
#define TPM_OWNER_PERSIST_FIRST	0x81000000
#define TPM_OWNER_PERSIST_LAST	0x8100ffff
#define TPM_EK_PERSIST_FIRST	0x81010000
#define TPM_EK_PERSIST_LAST	0x8101ffff
#define TPM_EK_RSA_HANDLE	0x81010001	/* TCG: the RSA EK, if persisted */
#define TPM_QUALIFYING_MAX	64	/* bytes of qualifying data in a quote */
#define TPM_PCRSEL_MAX		128	/* chars in a selection string */

struct tpm_ctx;
struct tpm_key;

/* Connect through a TCTI config string, e.g. "swtpm:path=/tmp/x/swtpm.sock",
 * "swtpm:host=127.0.0.1,port=2321" or "device:/dev/tpmrm0". */
int	tpm_open(const char *tcti, struct tpm_ctx **out);
void	tpm_close(struct tpm_ctx *ctx);			/* NULL ok */

/* A cheap round trip to the TPM (e.g. TPM2_GetCapability); reconnects if
 * needed.  0 when the TPM answers. */
int	tpm_health(struct tpm_ctx *ctx);
/* The same, and the key still the object it was loaded as (after a
 * reconnect its handle is resolved again and its name compared). */
int	tpm_key_health(struct tpm_key *key);

/* Counts transient objects and sessions loaded in the TPM, whoever loaded
 * them (leak checks: this module leaves none behind). */
int	tpm_loaded_handles(struct tpm_ctx *ctx, uint32_t *objects,
	    uint32_t *sessions);

/* Creates a new non-restricted signing key (alg ES256 or RS256) under the SRK
 * (creating and persisting the SRK if absent) and persists it at handle
 * (0x81000000-0x8100ffff).  TH_ERR_EXISTS if the handle is occupied. */
int	tpm_key_create(struct tpm_ctx *ctx, uint32_t handle, enum th_alg alg);

/* Imports an external RSA-2048 private key (e.g. a GitHub App's PEM) under
 * the SRK so it can never be exported again, and persists it at handle.
 * TPM2_Import requires fixedTPM|fixedParent CLEAR on an imported object;
 * instead its empty authPolicy makes TPM2_Duplicate (DUP role, policy only)
 * impossible (details at the definition). */
int	tpm_key_import(struct tpm_ctx *ctx, uint32_t handle, EVP_PKEY *priv);

/* Creates the restricted ECDSA P-256/SHA-256 attestation key as a primary
 * key in the endorsement hierarchy and persists it at handle
 * (0x81010000-0x8101ffff). */
int	tpm_ak_create(struct tpm_ctx *ctx, uint32_t handle);

/* Removes a persistent key (rotation, tests).  Keys of ctx loaded from that
 * handle are refused from then on (TH_ERR_NOT_FOUND), as is a loaded key
 * whose handle turns out to hold a different object after a reconnect. */
int	tpm_key_evict(struct tpm_ctx *ctx, uint32_t handle);

/* Loads a persistent key once; the result caches its ESYS handle, algorithm
 * and public key.  Freed by tpm_key_free before tpm_close. */
int	tpm_key_load(struct tpm_ctx *ctx, uint32_t handle, struct tpm_key **out);
void	tpm_key_free(struct tpm_key *key);		/* NULL ok */
enum th_alg tpm_key_alg(const struct tpm_key *key);
/* A new reference to the public key (caller frees with EVP_PKEY_free). */
int	tpm_key_pubkey(struct tpm_key *key, EVP_PKEY **out);

/* Signs a SHA-256 digest.  ES256: sig is r||s (64 bytes); RS256: PKCS#1
 * v1.5 (256 bytes).  *siglen is the size of sig on input, the length used on
 * output.  Refuses a restricted (attestation) key. */
int	tpm_sign(struct tpm_key *key, const uint8_t digest[TH_DIGEST_LEN],
	    uint8_t *sig, size_t *siglen);

/* TPM2_Quote with the attestation key over pcrsel (tpm2-tools syntax without
 * ranges, e.g. "sha256:0,1,2,3,4,5,6,7") with qualifying data qual.
 * Appends to attest the TPMS_ATTEST bytes (what tpm2_quote -m writes), to
 * sig the marshalled TPMT_SIGNATURE (tpm2_quote -s), and to pcrs the PCR
 * values in tpm2-tools' serialized format (TPML_PCR_SELECTION, u32 count,
 * TPML_DIGEST[count]; tpm2_quote -o with -F serialized: raw little-endian C
 * structures, not TPM marshalling), so tpm2_checkquote can verify the three
 * files.  TH_ERR_DENIED if ak is not a restricted ES256 key. */
int	tpm_quote(struct tpm_key *ak, const char *pcrsel,
	    const uint8_t *qual, size_t qual_len,
	    struct buf *attest, struct buf *sig, struct buf *pcrs);

/* Appends the DER EK certificate read from its NV index (RSA 0x01c00002,
 * else ECC P-256 0x01c0000a, else ECC P-384 0x01c00016).  TH_ERR_NOT_FOUND
 * if there is none. */
int	tpm_ek_cert(struct tpm_ctx *ctx, struct buf *der);

/* Appends the attestation key's public area as a marshalled TPMT_PUBLIC to
 * tpmt_public and its TPM name (nameAlg u16 || digest of the TPMT_PUBLIC,
 * 34 bytes for SHA-256) to name, both read from the TPM (TPM2_ReadPublic)
 * and checked against the name the key was loaded with.  TH_ERR_DENIED if
 * ak is not a restricted ES256 key. */
int	tpm_ak_public(struct tpm_key *ak, struct buf *tpmt_public,
	    struct buf *name);

/* TPM2_ActivateCredential with ak as activateHandle (ADMIN role, empty
 * password) and the RSA EK as keyHandle: recovers the credential that
 * TPM2_MakeCredential (e.g. lib/makecred.c) sealed to the EK's public key
 * and ak's name.  It succeeds only in the TPM that holds that EK and an
 * object of that name, which is what makes it evidence for an enroller.
 *	credential_blob	a marshalled TPM2B_ID_OBJECT (u16 size || bytes)
 *	secret		a marshalled TPM2B_ENCRYPTED_SECRET
 * Both are parsed strictly (no trailing bytes), TH_ERR_INVALID otherwise.
 * The EK is the one persisted at TPM_EK_RSA_HANDLE if that is an RSA-2048
 * restricted decryption key with the TCG EK policy; otherwise it is created
 * as a primary from the TCG default RSA template (EK Credential Profile,
 * template L-1) and flushed afterwards.  The EK's USER role needs a policy
 * session satisfying PolicySecret(TPM_RH_ENDORSEMENT) (empty endorsement
 * auth); it is flushed, as is every other transient object, on every path.
 * Appends the certInfo bytes (the credential; no size prefix) to cert_info.
 * A credential made for another EK or another name is refused by the TPM
 * (TH_ERR_TPM).  TH_ERR_DENIED if ak is not a restricted ES256 key.
 * XXX The session is unsalted, so certInfo crosses the TPM bus in the
 * clear; our copy is wiped, the ESYS response buffer keeps it until the
 * next command overwrites it. */
int	tpm_activate_credential(struct tpm_key *ak,
	    const uint8_t *credential_blob, size_t blob_len,
	    const uint8_t *secret, size_t secret_len, struct buf *cert_info);

#endif
