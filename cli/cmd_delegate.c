/* threshold delegate / threshold delegation list|revoke|install.
 *
 * A human delegates with her own key, on her PKCS#11 token, through
 * threshold-pkcs11-helper (this process never loads a PKCS#11 module).  An
 * agent re-delegates through the signer's attenuation key.  Either way the
 * new link is verified against the chain above it before it is installed,
 * so a widening link is refused here already. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cap.h"
#include "cert.h"
#include "chain.h"
#include "cli.h"
#include "deleg.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "p11client.h"
#include "policy.h"
#include "sigclient.h"
#include "store.h"
#include "typ.h"

#define DELEG_TTL_DEFAULT	(8 * 3600)
#define DELEG_ARGS_MAX		SCOPE_LIST_MAX

struct delegate_args {
	const char	*as, *to, *key, *module, *pin_file, *policy_file;
	const char	*parent;
	const char	*ops[SCOPE_OPS_MAX], *repos[DELEG_ARGS_MAX];
	const char	*targets[DELEG_ARGS_MAX];
	size_t		 nops, nrepos, ntargets;
	int		 by_hash;
	int64_t		 ttl;
};

static int
delegate_usage(void)
{
	fprintf(stderr,
	    "usage: threshold delegate --as HUMAN|agent:NAME --to AGENT\n"
	    "           --allow OP [--allow OP ...] --repo OWNER/NAME [--repo ...]\n"
	    "           [--target BRANCH ...] --policy FILE [--policy-by-hash]\n"
	    "           [--ttl DURATION]\n"
	    "           [--key pkcs11:URI [--pkcs11-module PATH] [--pin-file PATH]]\n"
	    "           [--parent HASH]\n"
	    "A human signs with --key on her own token; an agent's re-delegation is\n"
	    "signed by the signer's attenuation key below --parent (default: the\n"
	    "agent's newest delegation).\n");
	return 2;
}

static int
add_arg(const char **list, size_t *n, size_t max, const char *v,
    const char *what)
{
	if (*n == max)
		return cli_fail("at most %zu %s", max, what);
	list[(*n)++] = v;
	return 0;
}

static struct json_object *
string_array(const char *const *v, size_t n)
{
	struct json_object *a = json_object_new_array();
	size_t i;

	for (i = 0; a != NULL && i < n; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

static struct json_object *
build_ops(const struct delegate_args *a)
{
	struct json_object *ops = json_object_new_array(), *s;
	size_t i;

	for (i = 0; ops != NULL && i < a->nops; i++) {
		if ((s = json_object_new_object()) == NULL)
			break;
		json_object_object_add(s, "op",
		    json_object_new_string(a->ops[i]));
		json_object_object_add(s, "repos",
		    string_array(a->repos, a->nrepos));
		if (a->ntargets > 0)
			json_object_object_add(s, "targets",
			    string_array(a->targets, a->ntargets));
		json_object_array_add(ops, s);
	}
	return ops;
}

/* Reads and validates the policy file; *body is the file's text (for
 * installing by hash), *obj the parsed policy. */
static int
load_policy(const char *path, struct buf *body, struct json_object **obj)
{
	int r;

	if ((r = cli_read_file(path, POLICY_DOC_MAX, body)) != 0 ||
	    (r = json_parse_strict((const char *)buf_ptr(body), buf_len(body),
	    POLICY_DOC_MAX, obj)) != 0 || (r = policy_validate(*obj)) != 0)
		return cli_fail("policy %s: %s", path, th_errmsg(r));
	return buf_put_u8(body, '\0') == 0 ? 0 : 1;
}

/* Signs the delegation's signing input in tok: with the human's token key
 * for a first link, with the attenuation key for an agent's. */
static int
sign_link(struct cli *cli, struct sigc *sc, const struct delegate_args *a,
    EVP_PKEY *key, int human, struct json_object *claims, struct buf *tok)
{
	char kid[JWK_THUMBPRINT_LEN + 1];
	uint8_t sig[TH_SIG_MAX];
	enum th_alg alg, got;
	size_t siglen;
	int r;

	(void)cli;
	alg = jwk_pkey_alg(key);
	if ((r = jwk_thumbprint(key, kid)) != 0 ||
	    (r = jws_signing_input(tok, alg, TYP_DELEGATION, kid, claims)) != 0)
		return r;
	if (human)
		r = p11c_sign(p11c_default_helper(), a->module, a->pin_file,
		    a->key, buf_ptr(tok), buf_len(tok), &got, sig, &siglen);
	else
		r = sigc_sign(sc, "attenuation", buf_ptr(tok), buf_len(tok),
		    &got, sig, &siglen);
	if (r != 0)
		return r;
	if (got != alg)
		return th_fail(TH_ERR_CRYPTO, "the key signed %s, its "
		    "certificate says %s", th_alg_name(got), th_alg_name(alg));
	return jws_append_sig(tok, sig, siglen);
}

/* The parent link and the key that must sign below it. */
static int
find_parent(struct sigc *sc, struct store *st, const struct delegate_args *a,
    const char *iss, int human, int64_t now, char parent[JWS_HASH_LEN + 1],
    EVP_PKEY **key)
{
	char leaves[1][JWS_HASH_LEN + 1];
	enum store_kind kind;
	struct cert *c = NULL;
	enum th_alg alg;
	char *tok = NULL;
	size_t n;
	int r;

	if (!human) {
		if (a->parent != NULL)
			snprintf(parent, JWS_HASH_LEN + 1, "%s", a->parent);
		else if ((r = store_find_leaves(st, iss, now, leaves, 1, &n))
		    != 0 || n == 0)
			return r != 0 ? r : th_fail(TH_ERR_NOT_FOUND, "%s holds "
			    "no delegation to pass on", iss);
		else
			snprintf(parent, JWS_HASH_LEN + 1, "%s", leaves[0]);
		return sigc_pubkey(sc, "attenuation", &alg, key);
	}
	if (a->key == NULL)
		return th_fail(TH_ERR_INVALID, "a human delegates with her own "
		    "key: give --key pkcs11:URI");
	if ((r = store_find_cert(st, iss, now, parent)) != 0 ||
	    (r = store_get_token(st, parent, &kind, &tok)) != 0 ||
	    (r = cert_parse(tok, strlen(tok), &c)) != 0)
		goto out;
	EVP_PKEY_up_ref(c->pub);
	*key = c->pub;
 out:
	cert_free(c);
	free(tok);
	return r;
}

static int
install(struct cli *cli, struct store *st, struct cap_ctx *cap,
    const char *token, size_t len)
{
	struct chain *ch = NULL;
	struct deleg *d = NULL;
	char path[512];
	int r;

	if ((r = deleg_parse(token, len, &d)) != 0 ||
	    (r = chain_verify_new(cap_chains(cap), st, token, len, &ch)) != 0 ||
	    (r = store_put_token(st, STORE_DELEG, d->jws->hash, d->jws->token,
	    d->iss, d->sub, d->parent, d->exp)) != 0) {
		r = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	chain_describe(ch, path, sizeof(path));
	if (cli->json)
		printf("{\"hash\":\"%s\",\"chain\":\"%s\"}\n", d->jws->hash,
		    path);
	else
		printf("%s\n", d->jws->hash);
	fprintf(stderr, "installed: %s\n", path);
 out:
	chain_free(ch);
	deleg_free(d);
	return r;
}

static int
parse_args(int argc, char **argv, struct delegate_args *a)
{
	static const struct option opts[] = {
		{ "as", required_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 'o' },
		{ "allow", required_argument, NULL, 'l' },
		{ "repo", required_argument, NULL, 'r' },
		{ "target", required_argument, NULL, 'g' },
		{ "policy", required_argument, NULL, 'P' },
		{ "policy-by-hash", no_argument, NULL, 'H' },
		{ "ttl", required_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "pkcs11-module", required_argument, NULL, 'm' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "parent", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	memset(a, 0, sizeof(*a));
	a->module = CLI_PKCS11_MODULE_DEFAULT;
	a->ttl = DELEG_TTL_DEFAULT;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': a->as = optarg; break;
		case 'o': a->to = optarg; break;
		case 'l':
			if (add_arg(a->ops, &a->nops, SCOPE_OPS_MAX, optarg,
			    "--allow"))
				return 1;
			break;
		case 'r':
			if (add_arg(a->repos, &a->nrepos, DELEG_ARGS_MAX, optarg,
			    "--repo"))
				return 1;
			break;
		case 'g':
			if (add_arg(a->targets, &a->ntargets, DELEG_ARGS_MAX,
			    optarg, "--target"))
				return 1;
			break;
		case 'P': a->policy_file = optarg; break;
		case 'H': a->by_hash = 1; break;
		case 't':
			if ((a->ttl = cli_duration(optarg)) < 0)
				return cli_fail("bad --ttl \"%s\" (e.g. 8h)",
				    optarg);
			break;
		case 'k': a->key = optarg; break;
		case 'm': a->module = optarg; break;
		case 'p': a->pin_file = optarg; break;
		case 'x': a->parent = optarg; break;
		default: return delegate_usage();
		}
	}
	if (optind != argc || a->as == NULL || a->to == NULL ||
	    a->nops == 0 || a->nrepos == 0 || a->policy_file == NULL)
		return delegate_usage();
	return 0;
}

int
cmd_delegate(struct cli *cli, int argc, char **argv)
{
	struct delegate_args a;
	struct json_object *ops = NULL, *policy = NULL, *claims = NULL;
	struct buf *body = NULL, *tok = NULL;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct cap_ctx *cap = NULL;
	EVP_PKEY *key = NULL;
	char iss[80], sub[80], parent[JWS_HASH_LEN + 1];
	char phash[JWS_HASH_LEN + 1];
	int64_t now = (int64_t)time(NULL);
	int human, r, rc = 1;

	if ((r = parse_args(argc, argv, &a)) != 0)
		return r;
	human = strncmp(a.as, "agent:", 6) != 0;
	snprintf(iss, sizeof(iss), "%s%s", human &&
	    strncmp(a.as, "human:", 6) != 0 ? "human:" : "", a.as);
	snprintf(sub, sizeof(sub), "%s%s", strncmp(a.to, "agent:", 6) ?
	    "agent:" : "", a.to);
	if ((body = buf_new()) == NULL || (tok = buf_new()) == NULL)
		goto out;
	if (load_policy(a.policy_file, body, &policy) != 0)
		goto out;
	if ((ops = build_ops(&a)) == NULL)
		goto out;
	if (cli_open_store(cli, &st) != 0 || cli_open_signer(cli, &sc) != 0 ||
	    cli_open_cap(cli, sc, st, &cap) != 0)
		goto out;
	if ((r = find_parent(sc, st, &a, iss, human, now, parent, &key)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	if (a.by_hash) {
		jws_hash(buf_ptr(body), buf_len(body) - 1, phash);
		if ((r = store_put_policy(st, phash,
		    (const char *)buf_ptr(body))) != 0) {
			rc = cli_fail("%s", th_errmsg(r));
			goto out;
		}
	}
	if ((r = deleg_claims(iss, sub, parent, ops, a.by_hash ? NULL : policy,
	    a.by_hash ? phash : NULL, now, now, now + a.ttl, &claims)) != 0 ||
	    (r = sign_link(cli, sc, &a, key, human, claims, tok)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	rc = install(cli, st, cap, (const char *)buf_ptr(tok), buf_len(tok));
 out:
	EVP_PKEY_free(key);
	json_object_put(ops);
	json_object_put(policy);
	json_object_put(claims);
	buf_free(body);
	buf_free(tok);
	cap_ctx_free(cap);
	sigc_close(sc);
	store_close(st);
	return rc;
}

static int
delegation_usage(void)
{
	fprintf(stderr,
	    "usage: threshold delegation list\n"
	    "       threshold delegation revoke HASH\n"
	    "       threshold delegation export HASH   (any installed token)\n"
	    "       threshold delegation install FILE|- [--policy FILE]\n");
	return 2;
}

static int
list_row(const struct store_row *row, void *arg)
{
	struct cli *cli = arg;

	if (cli->json)
		printf("{\"hash\":\"%s\",\"issuer\":\"%s\",\"subject\":\"%s\","
		    "\"exp\":%lld,\"revoked\":%s}\n", row->hash, row->issuer,
		    row->subject, (long long)row->exp,
		    row->revoked ? "true" : "false");
	else
		printf("%s  %-24s -> %-24s exp %lld%s\n", row->hash,
		    row->issuer, row->subject, (long long)row->exp,
		    row->revoked ? "  REVOKED" : "");
	return 0;
}

static int
delegation_install(struct cli *cli, int argc, char **argv)
{
	struct json_object *policy = NULL;
	struct buf *tok = NULL, *body = NULL;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct cap_ctx *cap = NULL;
	char phash[JWS_HASH_LEN + 1];
	size_t len;
	int r, rc = 1;

	if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--policy") == 0))
		return delegation_usage();
	if ((tok = buf_new()) == NULL || (body = buf_new()) == NULL)
		goto out;
	if ((r = cli_read_file(argv[1], JWS_TOKEN_MAX + 2, tok)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	for (len = buf_len(tok); len > 0 && (buf_ptr(tok)[len - 1] == '\n' ||
	    buf_ptr(tok)[len - 1] == '\r'); len--)
		;
	if (cli_open_store(cli, &st) != 0 || cli_open_signer(cli, &sc) != 0 ||
	    cli_open_cap(cli, sc, st, &cap) != 0)
		goto out;
	if (argc == 4) {
		if (load_policy(argv[3], body, &policy) != 0)
			goto out;
		jws_hash(buf_ptr(body), buf_len(body) - 1, phash);
		if ((r = store_put_policy(st, phash,
		    (const char *)buf_ptr(body))) != 0) {
			rc = cli_fail("%s", th_errmsg(r));
			goto out;
		}
	}
	rc = install(cli, st, cap, (const char *)buf_ptr(tok), len);
 out:
	json_object_put(policy);
	buf_free(tok);
	buf_free(body);
	cap_ctx_free(cap);
	sigc_close(sc);
	store_close(st);
	return rc;
}

int
cmd_delegation(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	int r;

	if (argc < 1)
		return delegation_usage();
	if (strcmp(argv[0], "install") == 0)
		return delegation_install(cli, argc, argv);
	if (cli_open_store(cli, &st) != 0)
		return 1;
	if (strcmp(argv[0], "list") == 0 && argc == 1)
		r = store_list(st, STORE_DELEG, list_row, cli);
	else if (strcmp(argv[0], "export") == 0 && argc == 2) {
		enum store_kind kind;
		char *tok;

		if ((r = store_get_token(st, argv[1], &kind, &tok)) == 0) {
			printf("%s\n", tok);
			free(tok);
		}
	} else if (strcmp(argv[0], "revoke") == 0 && argc == 2) {
		if ((r = store_revoke(st, argv[1])) == 0)
			fprintf(stderr, "revoked %s; chains through it are "
			    "refused from now on\n", argv[1]);
	} else {
		store_close(st);
		return delegation_usage();
	}
	store_close(st);
	return r == 0 ? 0 : cli_fail("%s", th_errmsg(r));
}
