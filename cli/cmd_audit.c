/* threshold audit verify|export.
 *
 * verify checks a log offline (docs/audit-format.md, "Verification") from
 * an export file or the live database, with public material only, and
 * prints a summary whose last checkpoint the auditor records and passes
 * back with --expect-checkpoint next time, which catches truncation. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/pem.h>

#include "cli.h"
#include "err.h"
#include "verify.h"

static int
audit_usage(void)
{
	fprintf(stderr,
	    "usage: threshold audit verify FILE|--db PATH --root ROOT.pem\n"
	    "           [--ek-ca CA.pem] [--pcrs BANK:N=HEX,N=HEX,...]\n"
	    "           [--expect-checkpoint N:QUAL ...] [--threads N] [--json]\n"
	    "       threshold audit export [--db PATH] [FILE]\n"
	    "       threshold audit proof SEQ [--db PATH]   (one entry's inclusion proof)\n"
	    "verify exits 0 if the log verifies, 1 if it does not (the first\n"
	    "failure is printed with its position), 2 on a usage error.\n"
	    "--pcrs: every quote must carry these PCR values (others quoted\n"
	    "are not compared).  --expect-checkpoint: checkpoint N must be\n"
	    "present with qualifying data QUAL, as recorded from an earlier\n"
	    "verification.  --threads: verify with N threads in all (default:\n"
	    "one per CPU; 1: no helper threads).\n");
	return 2;
}

static int
load_root(const char *path, EVP_PKEY **out)
{
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return cli_fail("cannot open %s: %s", path, strerror(errno));
	*out = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (*out == NULL)
		return cli_fail("%s: not a PEM public key", path);
	return 0;
}

static void
fmt_time(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, len, "%lld", (long long)t);
}

static void
print_text(const struct averify_summary *s, int ek_given)
{
	char a[32], b[32];

	printf("verified: audit log of %s\n", s->instance);
	printf("  header hash      %s\n", s->header_hash);
	printf("  entries          %llu (%llu committed, %llu uncommitted)\n",
	    (unsigned long long)s->entries, (unsigned long long)s->committed,
	    (unsigned long long)s->uncommitted);
	printf("  checkpoints      %llu (%llu TPM quotes, %llu token "
	    "signatures)\n", (unsigned long long)s->checkpoints,
	    (unsigned long long)s->quotes, (unsigned long long)s->token_signed);
	printf("  humans           %llu\n", (unsigned long long)s->humans);
	printf("  agents           %llu\n", (unsigned long long)s->agents);
	printf("  actions          %llu intents, %llu mints\n",
	    (unsigned long long)s->intents, (unsigned long long)s->mints);
	printf("  reads            %llu (git refs and fetches)\n",
	    (unsigned long long)s->reads);
	printf("  outcomes         %llu, %llu recovered at restart\n",
	    (unsigned long long)s->outcomes, (unsigned long long)s->recovered);
	printf("  revocations      %llu (%llu of tokens that served no "
	    "intent or read)\n", (unsigned long long)s->revocations,
	    (unsigned long long)s->unattached);
	printf("  refusals         %llu\n", (unsigned long long)s->refusals);
	printf("  links            %llu\n", (unsigned long long)s->links);
	if (s->entries > 0) {
		fmt_time(s->first_time, a, sizeof(a));
		fmt_time(s->last_time, b, sizeof(b));
		printf("  time span        %s .. %s\n", a, b);
	}
	if (s->last_n > 0) {
		printf("  last checkpoint  %llu, qual %s\n",
		    (unsigned long long)s->last_n, s->last_qual);
		printf("  record it: --expect-checkpoint %llu:%s\n",
		    (unsigned long long)s->last_n, s->last_qual);
	} else
		printf("  last checkpoint  none: nothing is committed\n");
	printf("  EK certificate   %s\n", s->ek_checked ? "chains to --ek-ca" :
	    ek_given ? "not checked" : "not checked (no --ek-ca)");
	if (s->token_signed > 0)
		printf("  note: token-signed checkpoints prove the key holder "
		    "signed, not which TPM\n");
	printf("  AK bound to EK   %s\n", s->ak_activated ? "yes: activated "
	    "(TPM2_ActivateCredential), certified by the root" :
	    "no: the header has no activation");
}

static void
add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_int64((int64_t)v));
}

static int
print_json(const struct averify_summary *s, const struct averify *v,
    int verified)
{
	struct json_object *o = json_object_new_object(), *cp;

	if (o == NULL)
		return cli_fail("out of memory");
	json_object_object_add(o, "verified",
	    json_object_new_boolean(verified));
	if (!verified) {
		json_object_object_add(o, "step",
		    json_object_new_int(averify_failed_step(v)));
		json_object_object_add(o, "error",
		    json_object_new_string(averify_failure(v)));
	} else {
		json_object_object_add(o, "instance",
		    json_object_new_string(s->instance));
		json_object_object_add(o, "header_hash",
		    json_object_new_string(s->header_hash));
		json_object_object_add(o, "checkpoint_key",
		    json_object_new_string(s->checkpoint_key));
		add_u64(o, "entries", s->entries);
		add_u64(o, "committed", s->committed);
		add_u64(o, "uncommitted", s->uncommitted);
		add_u64(o, "checkpoints", s->checkpoints);
		add_u64(o, "tpm_quotes", s->quotes);
		add_u64(o, "token_signatures", s->token_signed);
		add_u64(o, "links", s->links);
		add_u64(o, "humans", s->humans);
		add_u64(o, "agents", s->agents);
		add_u64(o, "actions", s->intents);
		add_u64(o, "mints", s->mints);
		add_u64(o, "reads", s->reads);
		add_u64(o, "outcomes", s->outcomes);
		add_u64(o, "recovered", s->recovered);
		add_u64(o, "revocations", s->revocations);
		add_u64(o, "revocations_without_intent", s->unattached);
		add_u64(o, "refusals", s->refusals);
		if (s->entries > 0) {
			json_object_object_add(o, "first_time",
			    json_object_new_int64(s->first_time));
			json_object_object_add(o, "last_time",
			    json_object_new_int64(s->last_time));
		}
		if (s->last_n > 0) {
			cp = json_object_new_object();
			add_u64(cp, "n", s->last_n);
			json_object_object_add(cp, "qual",
			    json_object_new_string(s->last_qual));
			json_object_object_add(o, "last_checkpoint", cp);
		} else
			json_object_object_add(o, "last_checkpoint", NULL);
		json_object_object_add(o, "ek_cert_checked",
		    json_object_new_boolean(s->ek_checked));
		json_object_object_add(o, "ak_activated",
		    json_object_new_boolean(s->ak_activated));
	}
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return 0;
}

static int
audit_verify(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "root", required_argument, NULL, 'r' },
		{ "ek-ca", required_argument, NULL, 'e' },
		{ "pcrs", required_argument, NULL, 'p' },
		{ "expect-checkpoint", required_argument, NULL, 'x' },
		{ "json", no_argument, NULL, 'j' },
		{ "threads", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	const char *db = NULL, *root_path = NULL, *ek_ca = NULL, *file = NULL;
	const char *pcrs[4], *expect[AVERIFY_EXPECT_MAX];
	struct averify_summary sum;
	struct averify *v = NULL;
	EVP_PKEY *root = NULL;
	size_t npcrs = 0, nexpect = 0, i;
	int ch, json = cli->json, nthreads = 0, r, rc = 1;
	int64_t n;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': db = optarg; break;
		case 'r': root_path = optarg; break;
		case 'e': ek_ca = optarg; break;
		case 'p':
			if (npcrs == sizeof(pcrs) / sizeof(pcrs[0]))
				return audit_usage();
			pcrs[npcrs++] = optarg;
			break;
		case 'x':
			if (nexpect == AVERIFY_EXPECT_MAX)
				return audit_usage();
			expect[nexpect++] = optarg;
			break;
		case 'j': json = 1; break;
		case 't':
			if (cli_number(optarg, 1, 64, &n) != 0)
				return cli_usage_fail("bad --threads \"%s\" (1..64)",
				    optarg);
			nthreads = (int)n;
			break;
		default: return audit_usage();
		}
	}
	if (optind < argc)
		file = argv[optind++];
	if (optind != argc || root_path == NULL || (file == NULL) ==
	    (db == NULL))
		return audit_usage();
	if (load_root(root_path, &root) != 0)
		goto out;
	if ((r = averify_new(root, &v)) != 0 ||
	    (ek_ca != NULL && (r = averify_set_ek_ca(v, ek_ca)) != 0)) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	if (nthreads > 0)
		averify_set_threads(v, nthreads);
	for (i = 0; i < npcrs; i++)
		if ((r = averify_expect_pcrs(v, pcrs[i])) != 0) {
			rc = cli_fail("--pcrs: %s", th_errmsg(r));
			goto out;
		}
	for (i = 0; i < nexpect; i++)
		if ((r = averify_expect_checkpoint(v, expect[i])) != 0) {
			rc = cli_fail("--expect-checkpoint: %s", th_errmsg(r));
			goto out;
		}
	r = db != NULL ? averify_db(v, db) : averify_file(v, file);
	if (r == 0) {
		averify_summary(v, &sum);
		if (json)
			print_json(&sum, v, 1);
		else
			print_text(&sum, ek_ca != NULL);
		rc = 0;
	} else if (r == TH_ERR_DENIED) {
		if (json)
			print_json(NULL, v, 0);
		rc = cli_fail("audit log does not verify: %s",
		    averify_failure(v));
	} else
		rc = cli_fail("%s", th_errmsg(r));
 out:
	averify_free(v);
	EVP_PKEY_free(root);
	return rc;
}

int
cmd_audit(struct cli *cli, int argc, char **argv)
{
	if (argc < 1)
		return audit_usage();
	if (strcmp(argv[0], "verify") == 0)
		return audit_verify(cli, argc, argv);
	else if (strcmp(argv[0], "export") == 0)
		/* cli/cmd_audit_export.c */
		return audit_export_cmd(cli, argc, argv);
	else if (strcmp(argv[0], "proof") == 0)
		return audit_proof_cmd(cli, argc, argv);
	return audit_usage();
}
