/* Client of threshold-pkcs11-helper (p11helper/main.c): the CLI's way to use
 * a key on the human's PKCS#11 token without linking libp11 or p11-kit.
 * Each call spawns the helper once (posix_spawnp, no shell; argv carries the
 * module path, the PIN file's path and the URI, never a PIN; it inherits the
 * environment, e.g. SOFTHSM2_CONF), feeds it its input, reads its stdout (at
 * most P11C_STDOUT_MAX bytes) and stderr (the first P11C_STDERR_MAX bytes
 * kept), and reaps it.  A helper that runs longer than P11C_TIMEOUT_S is
 * killed.
 *
 * Errors: the helper missing or not executable is TH_ERR_UNAVAILABLE; a
 * helper exiting non-zero or killed is TH_ERR_P11 with its reason, the last
 * stderr line starting with "threshold-pkcs11-helper: " (else the first
 * line; printable ASCII only), as the th_errmsg() detail; output that breaks
 * the framing below is TH_ERR_PROTOCOL.
 *
 * Not thread-safe where noted; safe to call from a process that has closed
 * fds 0-2.  SIGPIPE is not raised: the helper's stdin is a socketpair
 * written with MSG_NOSIGNAL. */
#ifndef TH_P11CLIENT_H
#define TH_P11CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "alg.h"

#define P11C_HELPER_NAME	"threshold-pkcs11-helper"
#define P11C_STDOUT_MAX		(16 * 1024)
#define P11C_STDERR_MAX		1024
#define P11C_TIMEOUT_S		60	/* whole call; a token may wait for
					 * a touch */

/* Public key of the private key named by uri, as the helper's `pubkey`
 * prints it (one PEM SubjectPublicKeyInfo, nothing else).  Only EC P-256 and
 * RSA keys are accepted.  pin_file may be NULL if uri has pin-source.
 * Caller frees *out with EVP_PKEY_free. */
int	p11c_pubkey(const char *helper, const char *module,
	    const char *pin_file, const char *uri, EVP_PKEY **out);

/* Signs input[0..len), a JWS signing input (header.claims, at most
 * JWS_TOKEN_MAX bytes), with the key named by uri.
 *
 * Framing: the helper's stdout is the raw JWS signature and nothing else.
 * *alg is the alg of input's header, parsed here with jws_parse_input()
 * before anything is spawned; the helper refuses to sign unless that alg is
 * the key's algorithm, so on success the signature is of that algorithm.
 * The length is then checked against it: 64 bytes (ES256 r||s) or 256 bytes
 * (RS256), TH_ERR_PROTOCOL otherwise.  The signature is not verified here:
 * callers that need to (the helper is a separate program) check it with
 * p11c_pubkey's key and jws_verify.  sig holds TH_SIG_MAX bytes; *siglen is
 * set to the length used. */
int	p11c_sign(const char *helper, const char *module, const char *pin_file,
	    const char *uri, const uint8_t *input, size_t len,
	    enum th_alg *alg, uint8_t sig[TH_SIG_MAX], size_t *siglen);

/* Path of threshold-pkcs11-helper beside the running executable (from
 * /proc/self/exe) if that file is executable, else the bare name, which
 * the spawn looks up in PATH.  Static storage; not thread-safe. */
const char *p11c_default_helper(void);

#endif
