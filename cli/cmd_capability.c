/* threshold capability request|redeem: one operation, once.  (The broker
 * serves the same over its API, where the agent's name comes from the
 * kernel instead of --agent.) */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "cap.h"
#include "cli.h"
#include "err.h"
#include "sigclient.h"
#include "store.h"

static int
capability_usage(void)
{
	fprintf(stderr,
	    "usage: threshold capability request --agent NAME OP --repo OWNER/NAME\n"
	    "           [--pr N] [--target BRANCH]\n"
	    "       threshold capability redeem FILE|-\n");
	return 2;
}

static int
copy_arg(char *dst, size_t dstsz, const char *v, const char *what)
{
	if (strlen(v) >= dstsz)
		return cli_fail("%s too long", what);
	strcpy(dst, v);
	return 0;
}

static int
capability_request(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "agent", required_argument, NULL, 'a' },
		{ "repo", required_argument, NULL, 'r' },
		{ "pr", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	struct cap_op op;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct cap_ctx *cap = NULL;
	struct buf *tok = NULL;
	char agent[80] = "", desc[512];
	int ch, r, rc = 1;

	memset(&op, 0, sizeof(op));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			snprintf(agent, sizeof(agent), "%s%s",
			    strncmp(optarg, "agent:", 6) ? "agent:" : "", optarg);
			break;
		case 'r':
			if (copy_arg(op.repo, sizeof(op.repo), optarg, "--repo"))
				return 1;
			break;
		case 'p':
			if (cli_number(optarg, 1, CAP_PR_MAX, &op.pr) != 0)
				return cli_usage_fail("bad --pr \"%s\" (a pull request "
				    "number, 1..%lld)", optarg,
				    (long long)CAP_PR_MAX);
			break;
		case 't':
			if (copy_arg(op.target, sizeof(op.target), optarg,
			    "--target"))
				return 1;
			break;
		default: return capability_usage();
		}
	}
	if (optind != argc - 1 || agent[0] == '\0')
		return capability_usage();
	if (copy_arg(op.op, sizeof(op.op), argv[optind], "operation"))
		return 1;
	if ((r = cap_op_validate(&op)) != 0)
		return cli_fail("%s", th_errmsg(r));
	if ((tok = buf_new()) == NULL)
		goto out;
	if (cli_open_store(cli, &st) != 0 || cli_open_signer(cli, &sc) != 0 ||
	    cli_open_cap(cli, sc, st, &cap) != 0)
		goto out;
	if ((r = cap_mint(cap, sc, st, agent, &op, (int64_t)time(NULL), tok, desc,
	    sizeof(desc))) != 0) {
		rc = cli_fail("refused: %s", th_errmsg(r));
		goto out;
	}
	printf("%.*s\n", (int)buf_len(tok), (const char *)buf_ptr(tok));
	fprintf(stderr, "chain: %s\n", desc);
	rc = 0;
 out:
	buf_free(tok);
	cap_ctx_free(cap);
	sigc_close(sc);
	store_close(st);
	return rc;
}

/* When this machine booted, to the second below.  A power loss, which may
 * lose the store's record of the last spends (it does not sync each one),
 * is followed by a boot: nothing minted before it is redeemed. */
static int64_t
boot_time(void)
{
	struct timespec real, boot;
	int64_t ns;

	if (clock_gettime(CLOCK_REALTIME, &real) != 0 ||
	    clock_gettime(CLOCK_BOOTTIME, &boot) != 0)
		return 0;
	ns = ((int64_t)real.tv_sec - boot.tv_sec) * 1000000000 +
	    (real.tv_nsec - boot.tv_nsec);
	return ns / 1000000000;
}

static int
capability_redeem(struct cli *cli, const char *arg)
{
	struct cap_redeemed red;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct cap_ctx *cap = NULL;
	struct json_object *o = NULL;
	struct buf *in = NULL;
	char desc[512];
	size_t len;
	int r, rc = 1;

	if ((in = buf_new()) == NULL)
		return 1;
	/* Any local user reads another's argv (/proc/PID/cmdline): a token
	 * there is refused, and not echoed. */
	if (strncmp(arg, "eyJ", 3) == 0 && strchr(arg, '/') == NULL &&
	    access(arg, F_OK) != 0) {
		rc = cli_usage_fail("a capability is not taken on the command "
		    "line, where other users can read it: put it in a FILE "
		    "or give - and pipe it in");
		goto out;
	}
	if ((r = cli_read_file(arg, JWS_TOKEN_MAX + 2, in)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	for (len = buf_len(in); len > 0 && (buf_ptr(in)[len - 1] == '\n' ||
	    buf_ptr(in)[len - 1] == '\r'); len--)
		;
	if (cli_open_store(cli, &st) != 0 || cli_open_signer(cli, &sc) != 0 ||
	    cli_open_cap(cli, sc, st, &cap) != 0)
		goto out;
	cap_ctx_set_not_before(cap, boot_time());
	if ((r = cap_redeem(cap, st, (const char *)buf_ptr(in), len,
	    (int64_t)time(NULL), &red)) != 0) {
		rc = cli_fail("refused: %s", th_errmsg(r));
		goto out;
	}
	chain_describe(red.chain, desc, sizeof(desc));
	cap_redeemed_release(cap, &red);
	if (cli->json) {
		/* Built, not printed: a target or parameter may hold '"'. */
		if ((o = cap_op_json(&red.op)) == NULL) {
			rc = cli_fail("out of memory");
			goto out;
		}
		json_object_object_add(o, "agent",
		    json_object_new_string(red.agent));
		json_object_object_add(o, "jti", json_object_new_string(red.jti));
		json_object_object_add(o, "chain", json_object_new_string(desc));
		printf("%s\n", json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN));
	} else
		printf("ok: %s %s#%lld -> %s for %s (chain %s)\n", red.op.op,
		    red.op.repo, (long long)red.op.pr, red.op.target, red.agent,
		    desc);
	rc = 0;
 out:
	json_object_put(o);
	buf_free(in);
	cap_ctx_free(cap);
	sigc_close(sc);
	store_close(st);
	return rc;
}

int
cmd_capability(struct cli *cli, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "request") == 0)
		return capability_request(cli, argc, argv);
	if (argc == 2 && strcmp(argv[0], "redeem") == 0)
		return capability_redeem(cli, argv[1]);
	return capability_usage();
}
