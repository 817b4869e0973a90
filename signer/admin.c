#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "admin.h"
#include "buf.h"
#include "err.h"
#include "p11.h"
#include "tpm.h"

static const struct config_key *
configured(const struct config *cfg, enum purpose p)
{
	const struct config_key *k = &cfg->keys[p];

	if (k->backend == BACKEND_NONE) {
		th_fail(TH_ERR_CONFIG, "no key %s line in the configuration",
		    purpose_name(p));
		return NULL;
	}
	return k;
}

static const char *
pin_file(const struct config *cfg)
{
	return cfg->p11_pin_file[0] ? cfg->p11_pin_file : NULL;
}

int
admin_keygen(const struct config *cfg, enum purpose p)
{
	const struct config_key *k;
	struct tpm_ctx *tpm = NULL;
	struct p11_ctx *p11 = NULL;
	int r;

	if ((k = configured(cfg, p)) == NULL)
		return TH_ERR_CONFIG;
	if (p == PURPOSE_GITHUB_APP)
		return th_fail(TH_ERR_INVALID, "the github-app key comes from "
		    "GitHub: import its PEM with `import github-app FILE`");
	if (k->backend == BACKEND_TPM) {
		if ((r = tpm_open(cfg->tcti, &tpm)) != 0)
			goto out;
		r = p == PURPOSE_ATTESTATION ?
		    tpm_ak_create(tpm, k->tpm_handle) :
		    tpm_key_create(tpm, k->tpm_handle, TH_ALG_ES256);
	} else {
		if ((r = p11_open(cfg->p11_module, pin_file(cfg), &p11)) != 0)
			goto out;
		r = p11_key_generate(p11, k->uri, TH_ALG_ES256);
	}
 out:
	tpm_close(tpm);
	p11_close(p11);
	return r;
}

/* The PEM read into a buffer wiped when freed: stdio kept the file in a
 * buffer of its own that fclose freed unwiped, the whole key in base64
 * left in the heap. */
static int
read_pem(const char *path, struct buf *pem)
{
	int fd, r;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return th_fail(TH_ERR_IO, "cannot open %s: %s", path,
		    strerror(errno));
	r = buf_read_fd(pem, fd, path, ADMIN_PEM_MAX);
	close(fd);
	return r;
}

int
admin_import(const struct config *cfg, enum purpose p, const char *pem_path)
{
	const struct config_key *k;
	struct tpm_ctx *tpm = NULL;
	struct p11_ctx *p11 = NULL;
	EVP_PKEY *priv = NULL;
	struct buf *pem = NULL;
	BIO *bio = NULL;
	int r;

	if ((k = configured(cfg, p)) == NULL)
		return TH_ERR_CONFIG;
	if (p == PURPOSE_ATTESTATION)
		return th_fail(TH_ERR_INVALID, "the attestation key is made "
		    "inside the TPM; use keygen");
	if ((pem = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = read_pem(pem_path, pem)) != 0)
		goto out;
	if ((bio = BIO_new_mem_buf(buf_ptr(pem), (int)buf_len(pem))) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	priv = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (priv == NULL) {
		r = th_fail(TH_ERR_INVALID, "%s holds no PEM private key",
		    pem_path);
		goto out;
	}
	if (p == PURPOSE_GITHUB_APP ? EVP_PKEY_get_base_id(priv) != EVP_PKEY_RSA
	    : EVP_PKEY_get_base_id(priv) != EVP_PKEY_EC) {
		r = th_fail(TH_ERR_INVALID, "the %s key must be %s",
		    purpose_name(p), p == PURPOSE_GITHUB_APP ? "RSA" : "EC P-256");
		goto out;
	}
	if (k->backend == BACKEND_TPM) {
		if ((r = tpm_open(cfg->tcti, &tpm)) == 0)
			r = tpm_key_import(tpm, k->tpm_handle, priv);
	} else {
		if ((r = p11_open(cfg->p11_module, pin_file(cfg), &p11)) == 0)
			r = p11_key_import(p11, k->uri, priv);
	}
 out:
	EVP_PKEY_free(priv);	/* frees and wipes the key material */
	BIO_free(bio);		/* read-only over pem: holds no copy */
	buf_free(pem);		/* wiped */
	tpm_close(tpm);
	p11_close(p11);
	return r;
}

int
admin_destroy(const struct config *cfg, enum purpose p)
{
	const struct config_key *k;
	struct tpm_ctx *tpm = NULL;
	struct p11_ctx *p11 = NULL;
	int r;

	if ((k = configured(cfg, p)) == NULL)
		return TH_ERR_CONFIG;
	if (k->backend == BACKEND_TPM) {
		if ((r = tpm_open(cfg->tcti, &tpm)) == 0)
			r = tpm_key_evict(tpm, k->tpm_handle);
	} else {
		if ((r = p11_open(cfg->p11_module, pin_file(cfg), &p11)) == 0)
			r = p11_key_destroy(p11, k->uri);
	}
	tpm_close(tpm);
	p11_close(p11);
	return r;
}
