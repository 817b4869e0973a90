/* The root's statement of which keys this signer holds for an audit log's
 * header (docs/audit-format.md, "Header", keys): the capability and
 * attenuation keys and the checkpoint key, so that an auditor holding only
 * the root can tell them from keys a forger put in a header. */
#ifndef TH_SIGNER_KEYSCERT_H
#define TH_SIGNER_KEYSCERT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "keys.h"

/* A threshold-keys+jwt naming subject, signed by the delegation-root key,
 * appended to out.  Everything in it but the subject is the signer's own:
 * its keys as configured in cfg. */
int	keyscert_make(const struct config *cfg, struct keys *k,
	    const uint8_t *subject, size_t subject_len, struct buf *out);

#endif
