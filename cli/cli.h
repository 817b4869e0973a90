/* The threshold CLI: one binary for humans, agents and auditors.  Each
 * command group lives in its own cmd_*.c and returns a process exit code:
 * 0 success, 1 refused or failed, 2 usage. */
#ifndef TH_CLI_H
#define TH_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CLI_SIGNER_SOCKET_DEFAULT	"/run/threshold/signer.sock"
#define CLI_FILE_MAX			(1024 * 1024)

struct cli {
	const char	*signer_socket;
	int		 json;
};

int	cmd_signer(struct cli *cli, int argc, char **argv);

/* Prints "threshold: MESSAGE" on stderr and returns 1. */
int	cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file ("-" for stdin) of at most max bytes into out. */
int	cli_read_file(const char *path, size_t max, struct buf *out);
int	cli_write_file(const char *path, const uint8_t *p, size_t len);

#endif
