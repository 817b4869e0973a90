/* threshold audit export [--db PATH] [FILE]: the self-contained file an
 * auditor verifies offline; threshold audit proof SEQ [--db PATH]: one
 * entry's inclusion proof (docs/audit-format.md). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "alog.h"
#include "cli.h"
#include "err.h"
#include "proof.h"

int
audit_export_cmd(struct cli *cli, int argc, char **argv)
{
	char db[PATH_MAX];
	const char *out = NULL;
	FILE *f = stdout;
	int i, r;

	snprintf(db, sizeof(db), "%s/audit.db", cli->state_dir);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			snprintf(db, sizeof(db), "%s", argv[++i]);
		else if (out == NULL && argv[i][0] != '-')
			out = argv[i];
		else {
			fprintf(stderr, "usage: threshold audit export [--db PATH] "
			    "[FILE]\n");
			return 2;
		}
	}
	if (out != NULL && (f = fopen(out, "we")) == NULL)
		return cli_fail("cannot create %s: %s", out, strerror(errno));
	r = alog_export_db(db, f);
	if (f != stdout && fclose(f) != 0 && r == 0)
		r = th_fail(TH_ERR_IO, "writing %s failed", out);
	return r == 0 ? 0 : cli_fail("%s", th_errmsg(r));
}

int
audit_proof_cmd(struct cli *cli, int argc, char **argv)
{
	char db[PATH_MAX];
	int64_t v;
	long long seq = 0;
	int i, r;

	snprintf(db, sizeof(db), "%s/audit.db", cli->state_dir);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
			snprintf(db, sizeof(db), "%s", argv[++i]);
		else if (seq == 0 && argv[i][0] != '-') {
			if (cli_number(argv[i], 1, INT64_MAX, &v) == 0)
				seq = v;
			else
				seq = -1;
		} else
			seq = -1;
	}
	if (seq < 1) {
		fprintf(stderr, "usage: threshold audit proof SEQ [--db PATH]\n");
		return 2;
	}
	r = proof_write_db(db, (int64_t)seq, stdout);
	return r == 0 ? 0 : cli_fail("%s", th_errmsg(r));
}
