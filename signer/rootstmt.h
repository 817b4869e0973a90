/* Statements the delegation root makes, inside the signer, about the
 * signer's own keys (AKCERT, KEYSCERT): never about a key a peer names. */
#ifndef TH_SIGNER_ROOTSTMT_H
#define TH_SIGNER_ROOTSTMT_H

#include <json-c/json.h>
#include <openssl/evp.h>

#include "buf.h"
#include "keys.h"

/* The public key of purpose p, as the backend reports it. */
int	rootstmt_pubkey(struct keys *k, enum purpose p, EVP_PKEY **out);

/* claims signed by the delegation-root key as a compact JWS (ES256, typ,
 * kid the root's thumbprint), appended to out. */
int	rootstmt_sign(struct keys *k, const char *typ,
	    struct json_object *claims, struct buf *out);

#endif
