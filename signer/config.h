/* threshold-signer's configuration file (docs/keys.md, "Signer
 * configuration").  One directive per line, '#' starts a comment:
 *
 *   socket PATH			Unix socket to listen on
 *   socket-mode OCTAL			0600 (default) or 0660
 *   allow-uid UID [PURPOSE ...]	peer uid allowed to connect (repeatable);
 *					with purposes, it may sign and quote
 *					with those keys only
 *   tpm-tcti TCTI			tpm2-tss TCTI config string
 *   pkcs11-module PATH			PKCS#11 module
 *   pkcs11-pin-file PATH		user PIN (or pin-source in key URIs)
 *   github-app-id ID			the App's id or client id (JWT "iss")
 *   quote-pcrs SELECTION		e.g. sha256:0,1,2,3,4,5,6,7
 *   key PURPOSE tpm:HANDLE		a TPM persistent handle, e.g. 0x81000010
 *   key PURPOSE pkcs11:...		an RFC 7512 URI
 *
 * Purposes: delegation-root, capability, github-app, attestation,
 * attenuation, audit (checkpoint signatures where there is no TPM). */
#ifndef TH_SIGNER_CONFIG_H
#define TH_SIGNER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_PATH_MAX		108	/* sun_path */
#define CONFIG_VALUE_MAX	1024
#define CONFIG_UIDS_MAX		16
#define CONFIG_LINE_MAX		2048
#define CONFIG_APPID_MAX	64

enum purpose {
	PURPOSE_DELEGATION_ROOT = 0,
	PURPOSE_CAPABILITY,
	PURPOSE_GITHUB_APP,
	PURPOSE_ATTESTATION,
	PURPOSE_ATTENUATION,
	PURPOSE_AUDIT,
	PURPOSE_COUNT
};

enum backend { BACKEND_NONE = 0, BACKEND_TPM, BACKEND_PKCS11, BACKEND_COUNT };

struct config_key {
	enum backend	backend;
	uint32_t	tpm_handle;
	char		uri[CONFIG_VALUE_MAX];		/* pkcs11 */
};

struct config {
	char		socket[CONFIG_PATH_MAX];
	mode_t		socket_mode;
	uid_t		uids[CONFIG_UIDS_MAX];
	uint32_t	uid_purposes[CONFIG_UIDS_MAX];	/* bit per purpose;
							 * 0: all */
	size_t		nuids;
	char		tcti[CONFIG_VALUE_MAX];
	char		p11_module[CONFIG_VALUE_MAX];
	char		p11_pin_file[CONFIG_VALUE_MAX];
	char		app_id[CONFIG_APPID_MAX + 1];
	char		quote_pcrs[128];
	struct config_key keys[PURPOSE_COUNT];
};

/* Parses path into cfg; errors name the file and line. */
int		 config_load(const char *path, struct config *cfg);
const char	*purpose_name(enum purpose p);
/* -1 if name is not a purpose. */
int		 purpose_from_name(const char *name);
const char	*backend_name(enum backend b);
/* The purposes peer uid may use (a bit per purpose), or 0 if it may not
 * connect at all. */
uint32_t	 config_peer_purposes(const struct config *cfg, uid_t uid);

#endif
