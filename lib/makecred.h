/* TPM2_MakeCredential in software (TPM 2.0 Library Part 1, "Credential
 * Protection" and "Protected Storage"; Part 3, TPM2_MakeCredential), for the
 * enroller that certifies an attestation key: it proves that the object
 * named `name` is resident in the same TPM as the EK, because only that TPM
 * can run TPM2_ActivateCredential on the result.  OpenSSL only; never links
 * tpm2-tss.
 *
 * Supported EK: RSA-2048 with nameAlg SHA-256 and AES-128-CFB as its
 * symmetric algorithm (TCG EK Credential Profile templates L-1 and H-1),
 * which is what the KDFs, OAEP and the symmetric wrap below assume.
 *
 *   seed        = 32 random bytes
 *   secret      = RSA-OAEP(EK, SHA-256, MGF1-SHA-256, label "IDENTITY\0",
 *                 seed)
 *   symKey      = KDFa(SHA-256, seed, "STORAGE", name, "", 128)
 *   hmacKey     = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256)
 *   encIdentity = AES-128-CFB(symKey, IV 0, u16 len || credential)
 *   integrity   = HMAC-SHA-256(hmacKey, encIdentity || name)
 *   TPM2B_ID_OBJECT        = u16 size || (u16 32 || integrity) ||
 *                            encIdentity
 *   TPM2B_ENCRYPTED_SECRET = u16 size || secret
 */
#ifndef TH_MAKECRED_H
#define TH_MAKECRED_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "buf.h"

#define MAKECRED_CRED_MAX	32	/* credential bytes (SHA-256 size) */
#define MAKECRED_NAME_MAX	(2 + 64)	/* nameAlg || digest */
#define MAKECRED_NAME_SHA256	(2 + 32)
#define MAKECRED_PUBLIC_MAX	1024	/* a marshalled TPMT_PUBLIC */
#define MAKECRED_EK_BITS	2048
/* Output sizes: u16 + (u16 + 32) + (u16 + cred_len); u16 + 256. */
#define MAKECRED_ID_OBJECT_MAX	(2 + 2 + 32 + 2 + MAKECRED_CRED_MAX)
#define MAKECRED_SECRET_LEN	(2 + MAKECRED_EK_BITS / 8)

/* Appends the marshalled TPM2B_ID_OBJECT (credentialBlob of
 * TPM2_ActivateCredential) to id_object and the marshalled
 * TPM2B_ENCRYPTED_SECRET (its secret) to enc_secret.
 *	ek		RSA-2048 public key of the EK (from its certificate)
 *	name		the TPM name of the key to credential: a 2-byte hash
 *			algorithm (SHA-1, SHA-256, SHA-384 or SHA-512) and a
 *			digest of that algorithm's size
 *	cred		1..MAKECRED_CRED_MAX bytes: what ActivateCredential
 *			returns on the right TPM for the right name
 * TH_ERR_INVALID for an unsupported key or a malformed name or credential,
 * TH_ERR_CRYPTO if OpenSSL fails, TH_ERR_ALLOC; after a failure the
 * outputs may hold a partial append (discard them).  Intermediate secrets
 * are wiped. */
int	makecred_make(EVP_PKEY *ek, const uint8_t *name, size_t name_len,
	    const uint8_t *cred, size_t cred_len,
	    struct buf *id_object, struct buf *enc_secret);

/* Checks that tpmt_public (a marshalled TPMT_PUBLIC, at most
 * MAKECRED_PUBLIC_MAX bytes) is an attestation key of the kind Threshold
 * makes and certifies: ECC NIST P-256, nameAlg SHA-256, scheme ECDSA with
 * SHA-256, no symmetric algorithm, no KDF, empty authPolicy, attributes
 * fixedTPM, fixedParent, sensitiveDataOrigin, restricted and sign set and
 * decrypt clear.  Parsed strictly: no trailing bytes.  On success appends
 * its TPM name (0x000b || SHA-256(tpmt_public), MAKECRED_NAME_SHA256 bytes)
 * to name and, if pub is not NULL, sets *pub to its public key (caller
 * frees).  An enroller computes the name from the public area it
 * certifies rather than trusting a name sent beside it.  TH_ERR_INVALID if
 * the area is malformed or not such a key. */
int	makecred_ak_public(const uint8_t *tpmt_public, size_t len,
	    struct buf *name, EVP_PKEY **pub);

#endif
