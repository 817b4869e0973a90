/* threshold-signer: the only process that opens the TPM or the PKCS#11
 * token.  See docs/signer-protocol.md and docs/keys.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "admin.h"
#include "config.h"
#include "err.h"
#include "harden.h"
#include "keys.h"
#include "log.h"
#include "server.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: threshold-signer -f CONFIG [-v] [serve]\n"
	    "       threshold-signer -f CONFIG check\n"
	    "       threshold-signer -f CONFIG keygen PURPOSE\n"
	    "       threshold-signer -f CONFIG import PURPOSE PEMFILE\n"
	    "       threshold-signer -f CONFIG pubkey PURPOSE\n"
	    "       threshold-signer -f CONFIG destroy PURPOSE\n"
	    "PURPOSE: delegation-root, capability, github-app, attestation,\n"
	    "         attenuation\n");
	exit(2);
}


static int
print_pubkey(const struct config *cfg, enum purpose p)
{
	struct keys *keys = NULL;
	struct buf *spki = NULL;
	EVP_PKEY *pk = NULL;
	const uint8_t *d;
	enum th_alg alg;
	int r;

	if ((r = keys_new(cfg, &keys)) != 0 ||
	    (spki = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if ((r = keys_pubkey(keys, p, &alg, spki)) != 0)
		goto out;
	d = buf_ptr(spki);
	if ((pk = d2i_PUBKEY(NULL, &d, (long)buf_len(spki))) == NULL ||
	    !PEM_write_PUBKEY(stdout, pk))
		r = th_fail(TH_ERR_CRYPTO, "cannot write the public key");
 out:
	EVP_PKEY_free(pk);
	buf_free(spki);
	keys_free(keys);
	return r;
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct keys *keys = NULL;
	const char *conf = NULL, *cmd = "serve";
	enum log_level level = LOG_INFO;
	int ch, p = -1, r;

	harden_process();
	while ((ch = getopt(argc, argv, "f:v")) != -1) {
		switch (ch) {
		case 'f': conf = optarg; break;
		case 'v': level = LOG_DEBUG; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (conf == NULL)
		usage();
	if (argc > 0)
		cmd = argv[0];
	log_init("threshold-signer", level);
	if ((r = config_load(conf, &cfg)) != 0) {
		fprintf(stderr, "threshold-signer: %s\n", th_errmsg(r));
		return 1;
	}
	/* Only the file is read: no device is opened. */
	if (strcmp(cmd, "check") == 0 && argc == 1) {
		printf("%s: ok\n", conf);
		return 0;
	}
	if (strcmp(cmd, "serve") != 0) {
		if (argc < 2)
			usage();
		if ((p = purpose_from_name(argv[1])) < 0) {
			fprintf(stderr, "threshold-signer: unknown purpose "
			    "\"%s\"\n", argv[1]);
			return 2;
		}
	}
	if (strcmp(cmd, "serve") == 0 && argc <= 1) {
		if ((r = keys_new(&cfg, &keys)) == 0)
			r = server_run(&cfg, keys);
		keys_free(keys);
	} else if (strcmp(cmd, "keygen") == 0 && argc == 2) {
		if ((r = admin_keygen(&cfg, p)) == 0)
			fprintf(stderr, "created the %s key\n", argv[1]);
	} else if (strcmp(cmd, "import") == 0 && argc == 3) {
		if ((r = admin_import(&cfg, p, argv[2])) == 0)
			fprintf(stderr, "imported %s as the non-extractable %s "
			    "key; now destroy the PEM (shred -u %s) and any "
			    "copy of it\n", argv[2], argv[1], argv[2]);
	} else if (strcmp(cmd, "pubkey") == 0 && argc == 2) {
		r = print_pubkey(&cfg, p);
	} else if (strcmp(cmd, "destroy") == 0 && argc == 2) {
		if ((r = admin_destroy(&cfg, p)) == 0)
			fprintf(stderr, "destroyed the %s key\n", argv[1]);
	} else
		usage();
	if (r != 0) {
		fprintf(stderr, "threshold-signer: %s\n", th_errmsg(r));
		return 1;
	}
	return 0;
}
