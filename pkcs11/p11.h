/* PKCS#11 backend (libp11).  Only threshold-signer links this.
 *
 * Keys are named by RFC 7512 URIs, e.g.
 *   pkcs11:token=threshold;object=capability;type=private
 * The user PIN comes from a file given to p11_open, or from the URI's
 * pin-source=file:/path attribute; never from argv or the environment.  PIN
 * buffers are wiped after login.
 *
 * Imported and generated private keys are CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_SIGN only (no decrypt,
 * unwrap or derive); their public halves are stored beside them with the
 * same label and CKA_ID.  Without id= in the URI, the id is the first
 * P11_ID_DERIVED_LEN bytes of SHA-256 over the DER SubjectPublicKeyInfo.
 *
 * URIs: token=, manufacturer=, model=, serial=, slot-*=, library-*=,
 * object=, id= and type=private are matched; pin-source=file:/abs/path is
 * honoured; pin-value= is refused (TH_ERR_DENIED); module-name=,
 * module-path= and unknown path attributes are TH_ERR_INVALID (p11-kit
 * drops unknown query attributes).  A URI must name object= or id=, and
 * exactly one initialised token and one private key must match.
 *
 * Not thread-safe: the signer is single-threaded and each context, and every
 * key loaded from it, must be used by one thread at a time.  Use one context
 * per process (a second one would share and, on close, finalise the same
 * module instance).  Not fork-safe: open the context after forking.
 *
 * Limitation: libp11 keeps its own copy of the PIN (for re-login after fork)
 * until p11_close, which wipes it. */
#ifndef TH_P11_H
#define TH_P11_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "alg.h"

#define P11_URI_MAX	1024
#define P11_PIN_MAX	256	/* bytes in a PIN file, newline excluded */
#define P11_ID_MAX	64	/* bytes of CKA_ID in a URI */
#define P11_ID_DERIVED_LEN 16	/* bytes of a derived CKA_ID */

struct p11_ctx;
struct p11_key;

/* Loads the module (e.g. /usr/lib/softhsm/libsofthsm2.so).  pin_file may be
 * NULL when every URI carries pin-source. */
int	p11_open(const char *module, const char *pin_file, struct p11_ctx **out);
void	p11_close(struct p11_ctx *ctx);			/* NULL ok */

/* Generates a key pair inside the token named by uri (token= and object=
 * required; id= optional).  TH_ERR_EXISTS if an object with that label is
 * already there. */
int	p11_key_generate(struct p11_ctx *ctx, const char *uri, enum th_alg alg);

/* Stores an RSA-2048 or EC P-256 private key (and its public half) in the
 * token, non-extractable. */
int	p11_key_import(struct p11_ctx *ctx, const char *uri, EVP_PKEY *priv);

/* Deletes the private and public objects named by uri (rotation, tests). */
int	p11_key_destroy(struct p11_ctx *ctx, const char *uri);

/* Finds the key once (login included); the result caches what signing
 * needs (its own session, the object handle, the public key), so p11_sign
 * does no lookup.  Loading signs once and verifies the signature with the
 * public key object, so the public key reported is the one that verifies.
 * Freed by p11_key_free before p11_close.  A loaded key does not survive
 * p11_key_destroy of its object or the token going away (p11_sign then fails;
 * load it again). */
int	p11_key_load(struct p11_ctx *ctx, const char *uri, struct p11_key **out);
void	p11_key_free(struct p11_key *key);		/* NULL ok */
enum th_alg p11_key_alg(const struct p11_key *key);
/* A new reference to the public key, a plain OpenSSL key with no tie to
 * the token (caller frees with EVP_PKEY_free). */
int	p11_key_pubkey(struct p11_key *key, EVP_PKEY **out);
/* Asks the token about the key (its class): TH_ERR_UNAVAILABLE once the
 * token went away, or forgot the handle. */
int	p11_key_health(struct p11_key *key);

/* Signs a SHA-256 digest: ES256 r||s (64 bytes) or RS256 PKCS#1 v1.5
 * (256 bytes).  *siglen is the size of sig on input, the length used on
 * output. */
int	p11_sign(struct p11_key *key, const uint8_t digest[TH_DIGEST_LEN],
	    uint8_t *sig, size_t *siglen);

/* Tries to read the private key's CKA_VALUE (or a component) and to wrap
 * it; returns 0 only if the token refused both (CKR_ATTRIBUTE_SENSITIVE /
 * CKR_KEY_UNEXTRACTABLE or equivalent) and the key has CKA_SENSITIVE=true,
 * CKA_EXTRACTABLE=false.  For tests and `threshold-signer check`. */
int	p11_key_check_unexportable(struct p11_ctx *ctx, const char *uri);

#endif
