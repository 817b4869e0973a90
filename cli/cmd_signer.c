/* threshold signer ...: operator access to threshold-signer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "b64url.h"
#include "buf.h"
#include "cli.h"
#include "err.h"
#include "jws.h"
#include "proto.h"
#include "sigclient.h"

static int
signer_usage(void)
{
	fprintf(stderr,
	    "usage: threshold signer health\n"
	    "       threshold signer pubkey PURPOSE\n"
	    "       threshold signer sign PURPOSE FILE|-   (a JWS signing input;\n"
	    "                                               prints the compact JWS)\n"
	    "       threshold signer quote HEX-QUALIFYING-DATA OUTDIR\n"
	    "                 (writes OUTDIR/attest.bin sig.bin pcrs.bin for "
	    "tpm2_checkquote)\n"
	    "       threshold signer ekcert\n");
	return 2;
}

static int
do_health(struct sigc *c)
{
	struct proto_reply rep;
	size_t i;
	int r, bad = 0;

	if ((r = sigc_health(c, &rep)) != 0)
		return cli_fail("%s", th_errmsg(r));
	for (i = 0; i < rep.nhealth; i++) {
		printf("%-16s %-7s %s\n", rep.health[i].purpose,
		    rep.health[i].backend, rep.health[i].detail);
		bad |= rep.health[i].status != 0;
	}
	return bad;
}

static int
do_pubkey(struct sigc *c, const char *purpose)
{
	EVP_PKEY *pk = NULL;
	enum th_alg alg;
	int r;

	if ((r = sigc_pubkey(c, purpose, &alg, &pk)) != 0)
		return cli_fail("%s", th_errmsg(r));
	r = PEM_write_PUBKEY(stdout, pk) ? 0 : cli_fail("cannot write PEM");
	EVP_PKEY_free(pk);
	return r;
}

static int
do_sign(struct sigc *c, const char *purpose, const char *path)
{
	struct buf *in = NULL, *out = NULL;
	uint8_t sig[TH_SIG_MAX];
	size_t siglen, len;
	enum th_alg alg;
	int r, rc = 1;

	if ((in = buf_new()) == NULL || (out = buf_new()) == NULL)
		goto out;
	if ((r = cli_read_file(path, PROTO_PAYLOAD_MAX, in)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	len = buf_len(in);
	while (len > 0 && (buf_ptr(in)[len - 1] == '\n' ||
	    buf_ptr(in)[len - 1] == '\r'))
		len--;
	if ((r = sigc_sign(c, purpose, buf_ptr(in), len, &alg, sig,
	    &siglen)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	if (buf_put(out, buf_ptr(in), len) != 0 ||
	    jws_append_sig(out, sig, siglen) != 0)
		goto out;
	printf("%.*s\n", (int)buf_len(out), (const char *)buf_ptr(out));
	rc = 0;
 out:
	buf_free(in);
	buf_free(out);
	return rc;
}

static int
hex_decode(const char *hex, uint8_t *out, size_t max, size_t *len)
{
	size_t i, n = strlen(hex);
	unsigned v;

	if (n % 2 != 0 || n / 2 > max)
		return -1;
	for (i = 0; i < n / 2; i++) {
		if (sscanf(hex + 2 * i, "%2x", &v) != 1 ||
		    strchr("0123456789abcdefABCDEF", hex[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", hex[2 * i + 1]) == NULL)
			return -1;
		out[i] = (uint8_t)v;
	}
	*len = n / 2;
	return 0;
}

static int
do_quote(struct sigc *c, const char *hex, const char *dir)
{
	struct buf *attest = NULL, *sig = NULL, *pcrs = NULL;
	uint8_t qual[PROTO_QUAL_MAX];
	char path[4096];
	size_t qlen;
	int r, rc = 1;

	if (hex_decode(hex, qual, sizeof(qual), &qlen) != 0)
		return cli_fail("qualifying data must be hex, at most %d bytes",
		    PROTO_QUAL_MAX);
	if ((attest = buf_new()) == NULL || (sig = buf_new()) == NULL ||
	    (pcrs = buf_new()) == NULL)
		goto out;
	if ((r = sigc_quote(c, qual, qlen, attest, sig, pcrs)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/attest.bin", dir);
	if ((r = cli_write_file(path, buf_ptr(attest), buf_len(attest))) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/sig.bin", dir);
	if ((r = cli_write_file(path, buf_ptr(sig), buf_len(sig))) != 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/pcrs.bin", dir);
	if ((r = cli_write_file(path, buf_ptr(pcrs), buf_len(pcrs))) != 0)
		goto fail;
	rc = 0;
	goto out;
 fail:
	rc = cli_fail("%s", th_errmsg(r));
 out:
	buf_free(attest);
	buf_free(sig);
	buf_free(pcrs);
	return rc;
}

static int
do_ekcert(struct sigc *c)
{
	struct buf *der;
	const uint8_t *p;
	X509 *x = NULL;
	int r, rc = 1;

	if ((der = buf_new()) == NULL)
		return 1;
	if ((r = sigc_ekcert(c, der)) != 0) {
		rc = cli_fail("%s", th_errmsg(r));
		goto out;
	}
	p = buf_ptr(der);
	if ((x = d2i_X509(NULL, &p, (long)buf_len(der))) == NULL) {
		rc = cli_fail("the EK certificate does not parse as X.509");
		goto out;
	}
	rc = PEM_write_X509(stdout, x) ? 0 : 1;
 out:
	X509_free(x);
	buf_free(der);
	return rc;
}

int
cmd_signer(struct cli *cli, int argc, char **argv)
{
	struct sigc *c = NULL;
	int r, rc;

	if (argc < 1)
		return signer_usage();
	if ((r = sigc_connect(cli->signer_socket, &c)) != 0)
		return cli_fail("%s", th_errmsg(r));
	if (strcmp(argv[0], "health") == 0 && argc == 1)
		rc = do_health(c);
	else if (strcmp(argv[0], "pubkey") == 0 && argc == 2)
		rc = do_pubkey(c, argv[1]);
	else if (strcmp(argv[0], "sign") == 0 && argc == 3)
		rc = do_sign(c, argv[1], argv[2]);
	else if (strcmp(argv[0], "quote") == 0 && argc == 3)
		rc = do_quote(c, argv[1], argv[2]);
	else if (strcmp(argv[0], "ekcert") == 0 && argc == 1)
		rc = do_ekcert(c);
	else
		rc = signer_usage();
	sigc_close(c);
	return rc;
}
