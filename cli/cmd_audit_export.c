/* threshold audit export [--db PATH] [FILE]: the self-contained file an
 * auditor verifies offline (docs/audit-format.md). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "alog.h"
#include "cli.h"
#include "err.h"

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
		return cli_fail("cannot create %s", out);
	r = alog_export_db(db, f);
	if (f != stdout && fclose(f) != 0 && r == 0)
		r = th_fail(TH_ERR_IO, "writing %s failed", out);
	return r == 0 ? 0 : cli_fail("%s", th_errmsg(r));
}
