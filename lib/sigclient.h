/* Client of threshold-signer (docs/signer-protocol.md), for the broker and
 * the CLI.  One connection, one request at a time; not thread-safe (give each
 * thread its own).  A broken connection is re-opened once per call, so a
 * restarted signer is picked up without the caller noticing.  A refusal by
 * the signer comes back as its error code with the signer's message as the
 * th_errmsg() detail. */
#ifndef TH_SIGCLIENT_H
#define TH_SIGCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "alg.h"
#include "buf.h"
#include "proto.h"

#define SIGC_TIMEOUT_S	30	/* per read or write on the socket */
#define SIGC_SPIN_US	600	/* busy-wait for a reply before sleeping */
#define SIGC_SPINNERS	2	/* waiting threads that busy-wait */
#define SIGC_PACES	8	/* kinds of request timed per connection */

struct sigc;

int	sigc_connect(const char *path, struct sigc **out);
void	sigc_close(struct sigc *c);			/* NULL ok */

/* rep->health[0..nhealth) describes each configured key. */
int	sigc_health(struct sigc *c, struct proto_reply *rep);
int	sigc_pubkey(struct sigc *c, const char *purpose, enum th_alg *alg,
	    EVP_PKEY **pkey);
/* sig must hold TH_SIG_MAX bytes; *siglen is set to the length used. */
int	sigc_sign(struct sigc *c, const char *purpose, const uint8_t *payload,
	    size_t len, enum th_alg *alg, uint8_t *sig, size_t *siglen);
int	sigc_quote(struct sigc *c, const uint8_t *qual, size_t qual_len,
	    struct buf *attest, struct buf *sig, struct buf *pcrs);
int	sigc_ekcert(struct sigc *c, struct buf *der);
/* AKPUBLIC: appends the attestation key's marshalled TPMT_PUBLIC and the
 * TPM name the signer reports for it.  An enroller should recompute the
 * name from the public area (makecred_ak_public) instead of trusting it. */
int	sigc_ak_public(struct sigc *c, struct buf *tpmt_public,
	    struct buf *name);
/* ACTIVATE: has the signer's TPM run TPM2_ActivateCredential on a
 * marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (each at most
 * PROTO_ACTIVATE_MAX bytes; lib/makecred.c makes them) and appends the
 * recovered credential to cert_info. */
int	sigc_activate(struct sigc *c, const uint8_t *credential_blob,
	    size_t blob_len, const uint8_t *secret, size_t secret_len,
	    struct buf *cert_info);

/* AKCERT: the signer proves its attestation key to be in the TPM of its EK
 * certificate (TPM2_MakeCredential, TPM2_ActivateCredential) and appends
 * the root-signed threshold-ak-cert+jwt naming subject (docs/audit-format.md,
 * "Header"). */
int	sigc_akcert(struct sigc *c, const char *subject, struct buf *token);
/* KEYSCERT: the delegation root's statement of the signer's capability,
 * attenuation and checkpoint keys for the audit log of subject (a
 * threshold-keys+jwt), appended to token. */
int	sigc_keyscert(struct sigc *c, const char *subject, struct buf *token);

#endif
