/* threshold human add|list|revoke: the humans authority flows from.  Their
 * certificates are signed by the delegation-root key inside the signer. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>

#include "cert.h"
#include "cli.h"
#include "err.h"
#include "jwk.h"
#include "p11client.h"
#include "sigclient.h"
#include "store.h"
#include "typ.h"

#define HUMAN_TTL_DEFAULT	(365 * 86400)

static int
human_usage(void)
{
	fprintf(stderr,
	    "usage: threshold human add NAME --name DISPLAY --email EMAIL\n"
	    "           --pubkey FILE.pem|pkcs11:URI [--pkcs11-module PATH]\n"
	    "           [--pin-file PATH] [--ttl DURATION]\n"
	    "       threshold human list\n"
	    "       threshold human revoke NAME\n");
	return 2;
}

static int
load_pubkey(const char *src, const char *module, const char *pin_file,
    EVP_PKEY **out)
{
	FILE *f;
	int r;

	*out = NULL;
	if (strncmp(src, "pkcs11:", 7) == 0) {
		if ((r = p11c_pubkey(p11c_default_helper(), module, pin_file,
		    src, out)) != 0)
			return cli_fail("%s", th_errmsg(r));
		return 0;
	}
	if ((f = fopen(src, "re")) == NULL)
		return cli_fail("cannot open %s: %s", src, strerror(errno));
	*out = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (*out == NULL)
		return cli_fail("%s holds no PEM public key", src);
	return 0;
}

/* Signs claims with the delegation-root key and checks the result. */
static int
issue(struct sigc *sc, struct json_object *claims, struct buf *tok)
{
	EVP_PKEY *root = NULL;
	struct cert *c = NULL;
	uint8_t sig[TH_SIG_MAX];
	char kid[JWK_THUMBPRINT_LEN + 1];
	enum th_alg alg;
	size_t siglen;
	int r;

	if ((r = sigc_pubkey(sc, "delegation-root", &alg, &root)) != 0 ||
	    (r = jwk_thumbprint(root, kid)) != 0 ||
	    (r = jws_signing_input(tok, TH_ALG_ES256, TYP_HUMAN_CERT, kid,
	    claims)) != 0 ||
	    (r = sigc_sign(sc, "delegation-root", buf_ptr(tok), buf_len(tok),
	    &alg, sig, &siglen)) != 0 ||
	    (r = jws_append_sig(tok, sig, siglen)) != 0 ||
	    (r = cert_parse((const char *)buf_ptr(tok), buf_len(tok), &c)) != 0)
		goto out;
	r = jws_verify(c->jws, root);
 out:
	cert_free(c);
	EVP_PKEY_free(root);
	return r;
}

static int
human_add(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "email", required_argument, NULL, 'e' },
		{ "pubkey", required_argument, NULL, 'k' },
		{ "pkcs11-module", required_argument, NULL, 'm' },
		{ "pin-file", required_argument, NULL, 'p' },
		{ "ttl", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 }
	};
	const char *display = NULL, *email = NULL, *pubsrc = NULL;
	const char *module = CLI_PKCS11_MODULE_DEFAULT, *pin_file = NULL;
	struct json_object *claims = NULL;
	struct store *st = NULL;
	struct sigc *sc = NULL;
	struct buf *tok = NULL;
	EVP_PKEY *pub = NULL;
	struct cert *c = NULL;
	int64_t ttl = HUMAN_TTL_DEFAULT, now = (int64_t)time(NULL);
	char sub[80];
	int ch, r, rc = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'n': display = optarg; break;
		case 'e': email = optarg; break;
		case 'k': pubsrc = optarg; break;
		case 'm': module = optarg; break;
		case 'p': pin_file = optarg; break;
		case 't':
			if ((ttl = cli_duration(optarg)) < 0)
				return cli_fail("bad --ttl \"%s\" (e.g. 365d)",
				    optarg);
			break;
		default: return human_usage();
		}
	}
	if (optind != argc - 1 || display == NULL || email == NULL ||
	    pubsrc == NULL)
		return human_usage();
	snprintf(sub, sizeof(sub), "human:%s", argv[optind]);
	if (load_pubkey(pubsrc, module, pin_file, &pub) != 0)
		goto out;
	if ((r = cert_claims(sub, display, email, pub, now, now, now + ttl,
	    &claims)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	if (cli_open_store(cli, &st) != 0 || cli_open_signer(cli, &sc) != 0)
		goto out;
	if ((tok = buf_new()) == NULL)
		goto out;
	if ((r = issue(sc, claims, tok)) != 0 ||
	    (r = cert_parse((const char *)buf_ptr(tok), buf_len(tok), &c)) != 0 ||
	    (r = buf_put_u8(tok, '\0')) != 0 ||
	    (r = store_put_token(st, STORE_CERT, c->jws->hash,
	    (const char *)buf_ptr(tok), CERT_ISS, sub, NULL, c->exp)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	printf("%s\n", c->jws->hash);
	fprintf(stderr, "certified %s (%s <%s>) until %lld\n", sub, display,
	    email, (long long)c->exp);
	rc = 0;
 out:
	cert_free(c);
	buf_free(tok);
	json_object_put(claims);
	EVP_PKEY_free(pub);
	sigc_close(sc);
	store_close(st);
	return rc;
}

static int
print_row(const struct store_row *row, void *arg)
{
	struct cli *cli = arg;

	if (cli->json)
		printf("{\"kind\":\"%s\",\"hash\":\"%s\",\"issuer\":\"%s\","
		    "\"subject\":\"%s\",\"exp\":%lld,\"revoked\":%s}\n",
		    row->kind == STORE_CERT ? "certificate" : "delegation",
		    row->hash, row->issuer, row->subject, (long long)row->exp,
		    row->revoked ? "true" : "false");
	else
		printf("%s  %-24s <- %-24s exp %lld%s\n", row->hash,
		    row->subject, row->issuer, (long long)row->exp,
		    row->revoked ? "  REVOKED" : "");
	return 0;
}

static int
human_revoke(struct cli *cli, const char *name)
{
	char sub[80], hash[JWS_HASH_LEN + 1];
	struct store *st = NULL;
	int n = 0, r, rc = 1;

	snprintf(sub, sizeof(sub), "human:%s", name);
	if (cli_open_store(cli, &st) != 0)
		return 1;
	/* The newest unrevoked certificate, expired ones included, until
	 * none is left. */
	while ((r = store_find_cert(st, sub, INT64_MIN, hash)) == 0) {
		if ((r = store_revoke(st, hash)) != 0)
			break;
		n++;
	}
	if (r != TH_ERR_NOT_FOUND)
		rc = cli_fail("%s", th_errmsg(r));
	else if (n == 0)
		rc = cli_fail("%s has no unrevoked certificate", sub);
	else {
		fprintf(stderr, "revoked %d certificate(s) of %s; every chain "
		    "through them is refused from now on\n", n, sub);
		rc = 0;
	}
	store_close(st);
	return rc;
}

int
cmd_human(struct cli *cli, int argc, char **argv)
{
	struct store *st = NULL;
	int r;

	if (argc < 1)
		return human_usage();
	if (strcmp(argv[0], "add") == 0)
		return human_add(cli, argc, argv);
	if (strcmp(argv[0], "revoke") == 0 && argc == 2)
		return human_revoke(cli, argv[1]);
	if (strcmp(argv[0], "list") == 0 && argc == 1) {
		if (cli_open_store(cli, &st) != 0)
			return 1;
		r = store_list(st, STORE_CERT, print_row, cli);
		store_close(st);
		return r == 0 ? 0 : cli_fail("%s", th_errmsg(r));
	}
	return human_usage();
}
