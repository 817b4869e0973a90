/* threshold-pkcs11-helper: the only process on the human's side that loads
 * a PKCS#11 module (after OpenSSH's ssh-pkcs11-helper), so that the
 * `threshold` CLI never links libp11 or p11-kit.  Spawned by lib/p11client.c.
 *
 *	threshold-pkcs11-helper --module PATH [--pin-file PATH] pubkey URI
 *	threshold-pkcs11-helper --module PATH [--pin-file PATH] sign URI
 *	threshold-pkcs11-helper --module PATH [--pin-file PATH] keygen URI ALG
 *
 * pubkey prints the key's SubjectPublicKeyInfo as PEM.  sign reads a JWS
 * signing input (header.claims, at most JWS_TOKEN_MAX bytes, nothing else:
 * no trailing newline) from stdin, refuses it unless jws_parse_input()
 * accepts it and its header alg is the key's algorithm, and writes the raw
 * JWS signature over it to stdout: exactly 64 bytes (ES256 r||s) or 256
 * bytes (RS256), nothing before or after.  keygen (ALG ES256 or RS256)
 * generates a non-extractable key pair on the token and prints its public
 * key as pubkey does.
 *
 * The PIN comes from --pin-file or the URI's pin-source=file:/path, never
 * from argv or the environment (pkcs11/p11.h).  Options are matched exactly
 * (no abbreviations, no --opt=value).  Exit 0 on success; 1 on failure, with
 * nothing on stdout and one line "threshold-pkcs11-helper: REASON" as the
 * last line on stderr (libp11 or the module may print lines of their own
 * before it); 2 on a usage error.
 *
 * XXX The helper signs any well-formed signing input its caller gives it;
 * it is the human's agent, not a privilege boundary against the CLI. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "alg.h"
#include "err.h"
#include "harden.h"
#include "jws.h"
#include "p11.h"
#include "sha.h"

#define PROG	"threshold-pkcs11-helper"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: " PROG " --module PATH [--pin-file PATH] pubkey URI\n"
	    "       " PROG " --module PATH [--pin-file PATH] sign URI "
	    "< SIGNING-INPUT\n"
	    "       " PROG " --module PATH [--pin-file PATH] keygen URI "
	    "ES256|RS256\n");
	exit(2);
}


/* One line, printable ASCII only: the message may carry token text. */
static void
die(int r)
{
	const char *m = th_errmsg(r);
	char line[512];
	size_t i;

	for (i = 0; m[i] != '\0' && i < sizeof(line) - 1; i++)
		line[i] = (m[i] >= 0x20 && m[i] < 0x7f) ? m[i] : '?';
	line[i] = '\0';
	fprintf(stderr, PROG ": %s\n", line);
	exit(1);
}

static int
write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, b, len)) == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return th_fail(TH_ERR_IO, "write: %s", strerror(errno));
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads all of stdin into in[JWS_TOKEN_MAX + 1]; refuses more than
 * JWS_TOKEN_MAX bytes. */
static int
read_input(char *in, size_t *len)
{
	size_t got = 0;
	ssize_t n;

	for (;;) {
		n = read(STDIN_FILENO, in + got, JWS_TOKEN_MAX + 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return th_fail(TH_ERR_IO, "reading the signing input: "
			    "%s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > JWS_TOKEN_MAX)
			return th_fail(TH_ERR_TOO_LONG, "signing input longer "
			    "than %d bytes", JWS_TOKEN_MAX);
	}
	*len = got;
	return 0;
}

static int
print_pubkey(struct p11_key *key)
{
	EVP_PKEY *pk = NULL;
	int r;

	if ((r = p11_key_pubkey(key, &pk)) != 0)
		return r;
	if (!PEM_write_PUBKEY(stdout, pk) || fflush(stdout) != 0)
		r = th_fail(TH_ERR_IO, "cannot write the public key");
	EVP_PKEY_free(pk);
	return r;
}

static int
cmd_pubkey(struct p11_ctx *ctx, const char *uri)
{
	struct p11_key *key = NULL;
	int r;

	if ((r = p11_key_load(ctx, uri, &key)) != 0)
		goto out;
	r = print_pubkey(key);
 out:
	p11_key_free(key);
	return r;
}

static int
cmd_keygen(struct p11_ctx *ctx, const char *uri, enum th_alg alg)
{
	struct p11_key *key = NULL;
	int r;

	if ((r = p11_key_generate(ctx, uri, alg)) != 0 ||
	    (r = p11_key_load(ctx, uri, &key)) != 0)
		goto out;
	r = print_pubkey(key);
 out:
	p11_key_free(key);
	return r;
}

/* The input was checked by main before the token was opened; here the
 * header's alg must also be the key's. */
static int
cmd_sign(struct p11_ctx *ctx, const char *uri, const struct jws *in)
{
	struct p11_key *key = NULL;
	uint8_t digest[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	size_t siglen = sizeof(sig);
	int r;

	if ((r = p11_key_load(ctx, uri, &key)) != 0)
		goto out;
	if (p11_key_alg(key) != in->alg) {
		r = th_fail(TH_ERR_DENIED, "signing input is %s, the key is "
		    "%s", th_alg_name(in->alg), th_alg_name(p11_key_alg(key)));
		goto out;
	}
	sha256((const uint8_t *)in->token, in->input_len, digest);
	if ((r = p11_sign(key, digest, sig, &siglen)) != 0 ||
	    (r = write_all(STDOUT_FILENO, sig, siglen)) != 0)
		goto out;
 out:
	OPENSSL_cleanse(digest, sizeof(digest));
	p11_key_free(key);
	return r;
}

int
main(int argc, char **argv)
{
	static char input[JWS_TOKEN_MAX + 1];
	struct p11_ctx *ctx = NULL;
	struct jws *in = NULL;
	const char *module = NULL, *pin_file = NULL, *cmd, *uri;
	enum th_alg alg = TH_ALG_NONE;
	size_t len = 0;
	int i, r;

	harden_process();
	/* Options matched exactly (getopt_long would take "--pin" for
	 * "--pin-file"); the first other word is the command. */
	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--module") == 0)
			module = argv[++i];
		else if (strcmp(argv[i], "--pin-file") == 0)
			pin_file = argv[++i];
		else
			usage();
	}
	argc -= i;
	argv += i;
	if (module == NULL || argc < 2)
		usage();
	cmd = argv[0];
	uri = argv[1];
	if (strcmp(cmd, "pubkey") == 0 || strcmp(cmd, "sign") == 0) {
		if (argc != 2)
			usage();
	} else if (strcmp(cmd, "keygen") == 0) {
		if (argc != 3)
			usage();
		if ((alg = th_alg_from_name(argv[2])) == TH_ALG_NONE)
			die(th_fail(TH_ERR_INVALID, "unknown algorithm \"%.16s\" "
			    "(ES256 or RS256)", argv[2]));
	} else
		usage();

	/* A bad signing input is refused before the token is touched. */
	if (strcmp(cmd, "sign") == 0 &&
	    ((r = read_input(input, &len)) != 0 ||
	    (r = jws_parse_input(input, len, &in)) != 0))
		die(r);

	if ((r = p11_open(module, pin_file, &ctx)) != 0)
		goto out;
	if (strcmp(cmd, "pubkey") == 0)
		r = cmd_pubkey(ctx, uri);
	else if (strcmp(cmd, "sign") == 0)
		r = cmd_sign(ctx, uri, in);
	else
		r = cmd_keygen(ctx, uri, alg);
 out:
	p11_close(ctx);
	jws_free(in);
	if (r != 0)
		die(r);
	return 0;
}
