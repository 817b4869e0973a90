/* Key provisioning, run by an administrator with the signer stopped (swtpm
 * and most tokens serve one client).  docs/keys.md explains the procedure. */
#ifndef TH_SIGNER_ADMIN_H
#define TH_SIGNER_ADMIN_H

#include "config.h"

#define ADMIN_PEM_MAX	65536	/* an RSA-4096 PEM is ~3.3 KB */

/* Creates the purpose's key inside its TPM or token: ES256 for
 * delegation-root and capability, the restricted attestation key for
 * attestation.  The github-app key is imported, never generated. */
int	admin_keygen(const struct config *cfg, enum purpose p);
/* Imports a PEM private key (the GitHub App's RSA key) as non-extractable.
 * The PEM file itself is left for the administrator to destroy. */
int	admin_import(const struct config *cfg, enum purpose p,
	    const char *pem_path);
/* Removes the purpose's key (rotation). */
int	admin_destroy(const struct config *cfg, enum purpose p);

#endif
