/* threshold: the command line for humans, agents and auditors. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "harden.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: threshold [--signer SOCKET] [--state DIR] [--broker SOCKET]\n"
	    "                 [--json] COMMAND ...\n"
	    "commands:\n"
	    "  signer health|pubkey|sign|quote|ekcert   talk to threshold-signer\n"
	    "  human add|list|revoke                    humans' certificates\n"
	    "  delegate --as WHO --to AGENT ...         grant an agent operations\n"
	    "  delegation list|revoke|install           installed delegations\n"
	    "  capability request|redeem                one operation, once\n"
	    "  github merge|pr create|comment|deploy|dispatch  act through thresholdd\n"
	    "  git-credential get                       git's credential helper (also run as\n"
	    "                                           git-credential-threshold)\n"
	    "  audit export|verify                      the audit log, for auditors\n"
	    "Run a command without arguments for its usage.\n");
	exit(2);
}

static int
run(int argc, char **argv)
{
	struct cli cli = { .signer_socket = NULL, .state_dir = NULL };
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--signer") == 0 && i + 1 < argc)
			cli.signer_socket = argv[++i];
		else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
			cli.state_dir = argv[++i];
		else if (strcmp(argv[i], "--broker") == 0 && i + 1 < argc)
			cli.broker_socket = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			cli.json = 1;
		else
			usage();
	}
	if (cli.signer_socket == NULL &&
	    (cli.signer_socket = getenv("THRESHOLD_SIGNER_SOCKET")) == NULL)
		cli.signer_socket = CLI_SIGNER_SOCKET_DEFAULT;
	if (cli.broker_socket == NULL &&
	    (cli.broker_socket = getenv("THRESHOLD_BROKER_SOCKET")) == NULL)
		cli.broker_socket = CLI_BROKER_SOCKET_DEFAULT;
	if (cli.state_dir == NULL &&
	    (cli.state_dir = getenv("THRESHOLD_STATE")) == NULL)
		cli.state_dir = CLI_STATE_DEFAULT;
	/* Run by git as a credential helper ("credential.helper threshold"). */
	if (strcmp(basename(argv[0]), "git-credential-threshold") == 0)
		return cmd_git_credential(&cli, argc - i, argv + i);
	if (i >= argc)
		usage();
	if (strcmp(argv[i], "git-credential") == 0)
		return cmd_git_credential(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "signer") == 0)
		return cmd_signer(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "human") == 0)
		return cmd_human(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "delegate") == 0)
		return cmd_delegate(&cli, argc - i, argv + i);
	if (strcmp(argv[i], "delegation") == 0)
		return cmd_delegation(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "capability") == 0)
		return cmd_capability(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "github") == 0)
		return cmd_github(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "audit") == 0 && i + 1 < argc &&
	    strcmp(argv[i + 1], "export") == 0)
		return audit_export_cmd(&cli, argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "audit") == 0)
		return cmd_audit(&cli, argc - i - 1, argv + i + 1);
	usage();
	return 2;
}

/* What a command printed must have reached its reader: a capability minted
 * into a full disk or a verification summary lost is a failure, not 0. */
int
main(int argc, char **argv)
{
	int rc;

	/* Capabilities and PINs pass through this process's memory. */
	harden_process();
	rc = run(argc, argv);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "threshold: writing standard output: %s\n",
		    strerror(errno != 0 ? errno : EIO));
		return rc != 0 ? rc : 1;
	}
	return rc;
}
