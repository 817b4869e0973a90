/* The threshold CLI: one binary for humans, agents and auditors.  Each
 * command group lives in its own cmd_*.c and returns a process exit code:
 * 0 success, 1 refused or failed, 2 usage. */
#ifndef TH_CLI_H
#define TH_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CLI_SIGNER_SOCKET_DEFAULT	"/run/threshold/signer.sock"
#define CLI_STATE_DEFAULT		"/var/lib/threshold"
#define CLI_BROKER_SOCKET_DEFAULT	"/run/threshold/broker.sock"
#define CLI_PKCS11_MODULE_DEFAULT	"/usr/lib/softhsm/libsofthsm2.so"
#define CLI_FILE_MAX			(1024 * 1024)

struct store;
struct sigc;
struct cap_ctx;

struct cli {
	const char	*signer_socket;
	const char	*state_dir;
	const char	*broker_socket;
	int		 json;
};

int	cmd_signer(struct cli *cli, int argc, char **argv);
int	cmd_human(struct cli *cli, int argc, char **argv);
int	cmd_delegate(struct cli *cli, int argc, char **argv);
int	cmd_delegation(struct cli *cli, int argc, char **argv);
int	cmd_capability(struct cli *cli, int argc, char **argv);
int	cmd_github(struct cli *cli, int argc, char **argv);
int	cmd_audit(struct cli *cli, int argc, char **argv);
/* threshold audit export (cmd_audit_export.c), dispatched by cmd_audit. */
int	audit_export_cmd(struct cli *cli, int argc, char **argv);
/* threshold audit proof SEQ (cmd_audit_export.c). */
int	audit_proof_cmd(struct cli *cli, int argc, char **argv);

/* The token store in the state directory, the signer, and a capability
 * context over both; each prints its own error and returns non-zero. */
int	cli_open_store(struct cli *cli, struct store **out);
int	cli_open_signer(struct cli *cli, struct sigc **out);
int	cli_open_cap(struct cli *cli, struct sigc *signer, struct store *st,
	    struct cap_ctx **out);
/* A decimal number in [min, max], digits only (no sign, space or suffix:
 * strtoll would read "12x" or " +12" as 12); 0, or -1 if it is not one. */
int	cli_number(const char *s, int64_t min, int64_t max, int64_t *out);
/* "90s", "15m", "8h", "365d" -> seconds; -1 if malformed or over 10 y. */
int64_t	cli_duration(const char *s);

/* POSTs body to the broker's path over its Unix socket; *reply is the
 * parsed JSON answer (cmd_github.c). */
struct json_object;
int	broker_post(const char *sock, const char *path, struct json_object *body,
	    long *status, struct json_object **reply);
/* git-credential-threshold ACTION (cmd_git.c). */
int	cmd_git_credential(struct cli *cli, int argc, char **argv);

/* Prints "threshold: MESSAGE" on stderr and returns 1. */
int	cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for a malformed argument: returns 2 (usage). */
int	cli_usage_fail(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
/* Reads a whole file ("-" for stdin) of at most max bytes into out. */
int	cli_read_file(const char *path, size_t max, struct buf *out);
int	cli_write_file(const char *path, const uint8_t *p, size_t len);

#endif
