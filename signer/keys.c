#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "err.h"
#include "keys.h"
#include "log.h"
#include "p11.h"
#include "sha.h"
#include "tpm.h"

/* The main thread and the TPM lane (signer/server.c) may call in at once:
 * each backend is used under its own lock, so a TPM that hangs holds up
 * only what needs the TPM.  No function holds two of them. */
struct keys {
	const struct config	*cfg;
	pthread_mutex_t		 mu[BACKEND_COUNT];
	struct tpm_ctx		*tpm;
	struct p11_ctx		*p11;
	struct tpm_key		*tkey[PURPOSE_COUNT];
	struct p11_key		*pkey[PURPOSE_COUNT];
	/* SHA-256 of each key's SubjectPublicKeyInfo when first loaded: a
	 * key found again (a PKCS#11 token back after a reset) must be the
	 * same key, not whatever now answers to its URI. */
	pthread_mutex_t		 pin_mu;	/* taken last, alone */
	uint8_t			 pinned[PURPOSE_COUNT][SHA_LEN];
	int			 is_pinned[PURPOSE_COUNT];
};

int
keys_new(const struct config *cfg, struct keys **out)
{
	int i;

	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return TH_ERR_ALLOC;
	(*out)->cfg = cfg;
	for (i = 0; i < BACKEND_COUNT; i++)
		pthread_mutex_init(&(*out)->mu[i], NULL);
	pthread_mutex_init(&(*out)->pin_mu, NULL);
	return 0;
}

static void
keys_drop(struct keys *k, enum purpose p)
{
	tpm_key_free(k->tkey[p]);
	p11_key_free(k->pkey[p]);
	k->tkey[p] = NULL;
	k->pkey[p] = NULL;
}

/* A PKCS#11 token that went away and came back is known to its module
 * only once the module is initialised again: the slot list and the key
 * handles it gave out are from before.  So every PKCS#11 key and the
 * module go, and the next request starts afresh.  Call with the PKCS#11
 * lock held (every PKCS#11 key is under it). */
static void
p11_reset(struct keys *k)
{
	int i;

	for (i = 0; i < PURPOSE_COUNT; i++)
		if (k->pkey[i] != NULL) {
			p11_key_free(k->pkey[i]);
			k->pkey[i] = NULL;
		}
	p11_close(k->p11);
	k->p11 = NULL;
}

/* Key p's token answered as one that went away: its handles are stale. */
static int
p11_gone(struct keys *k, enum purpose p, int r)
{
	p11_reset(k);
	return th_fail(r, "the %s key (pkcs11) is not available, looked for "
	    "again at the next request: %s", purpose_name(p), th_errmsg(r));
}

void
keys_free(struct keys *k)
{
	int i;

	if (k == NULL)
		return;
	for (i = 0; i < PURPOSE_COUNT; i++)
		keys_drop(k, i);
	tpm_close(k->tpm);
	p11_close(k->p11);
	for (i = 0; i < BACKEND_COUNT; i++)
		pthread_mutex_destroy(&k->mu[i]);
	pthread_mutex_destroy(&k->pin_mu);
	free(k);
}

static enum th_alg
key_alg(struct keys *k, enum purpose p)
{
	return k->tkey[p] != NULL ? tpm_key_alg(k->tkey[p]) :
	    p11_key_alg(k->pkey[p]);
}

/* Each purpose has one algorithm: tokens are ES256, GitHub wants RS256. */
static enum th_alg
purpose_alg(enum purpose p)
{
	return p == PURPOSE_GITHUB_APP ? TH_ALG_RS256 : TH_ALG_ES256;
}

static void
lock(struct keys *k, enum purpose p)
{
	pthread_mutex_lock(&k->mu[k->cfg->keys[p].backend]);
}

static void
unlock(struct keys *k, enum purpose p)
{
	pthread_mutex_unlock(&k->mu[k->cfg->keys[p].backend]);
}

/* Key p, just loaded, must be the key loaded first for p, and no other
 * purpose's: config.c refuses two purposes naming one handle or URI, but
 * not one object named by two URIs written differently. */
static int
key_pin(struct keys *k, enum purpose p)
{
	EVP_PKEY *pub = NULL;
	uint8_t *der = NULL, h[SHA_LEN];
	int i, r, len;

	r = k->tkey[p] != NULL ? tpm_key_pubkey(k->tkey[p], &pub) :
	    p11_key_pubkey(k->pkey[p], &pub);
	if (r != 0)
		goto out;
	if ((len = i2d_PUBKEY(pub, &der)) <= 0) {
		r = th_fail(TH_ERR_CRYPTO, "cannot encode the %s key's public "
		    "key", purpose_name(p));
		goto out;
	}
	sha256(der, (size_t)len, h);
	pthread_mutex_lock(&k->pin_mu);
	if (k->is_pinned[p] && memcmp(k->pinned[p], h, sizeof(h)) != 0) {
		r = th_fail(TH_ERR_DENIED, "the %s key (%s) found now is not "
		    "the key this signer started with (its public key "
		    "differs): restart the signer if it was replaced on "
		    "purpose", purpose_name(p),
		    backend_name(k->cfg->keys[p].backend));
		goto unlock;
	}
	for (i = 0; i < PURPOSE_COUNT; i++)
		if (i != (int)p && k->is_pinned[i] &&
		    memcmp(k->pinned[i], h, sizeof(h)) == 0) {
			r = th_fail(TH_ERR_CONFIG, "keys %s and %s are the same "
			    "key (one object under two URIs?): each purpose "
			    "needs its own", purpose_name(i), purpose_name(p));
			goto unlock;
		}
	memcpy(k->pinned[p], h, sizeof(h));
	k->is_pinned[p] = 1;
	r = 0;
 unlock:
	pthread_mutex_unlock(&k->pin_mu);
 out:
	OPENSSL_free(der);
	EVP_PKEY_free(pub);
	return r;
}

static int
key_ensure(struct keys *k, enum purpose p)
{
	const struct config_key *ck = &k->cfg->keys[p];
	int r;

	if (k->tkey[p] != NULL || k->pkey[p] != NULL)
		return 0;
	switch (ck->backend) {
	case BACKEND_TPM:
		if (k->tpm == NULL &&
		    (r = tpm_open(k->cfg->tcti, &k->tpm)) != 0)
			return r;
		if ((r = tpm_key_load(k->tpm, ck->tpm_handle,
		    &k->tkey[p])) != 0)
			return r;
		break;
	case BACKEND_PKCS11:
		if (k->p11 == NULL && (r = p11_open(k->cfg->p11_module,
		    k->cfg->p11_pin_file[0] ? k->cfg->p11_pin_file : NULL,
		    &k->p11)) != 0)
			return th_fail(r, "the %s key (pkcs11) cannot be "
			    "loaded: %s", purpose_name(p), th_errmsg(r));
		if ((r = p11_key_load(k->p11, ck->uri, &k->pkey[p])) != 0) {
			/* A token away: look again, from the module's
			 * initialisation, next time.  Only then: a key it
			 * does not hold, a bad URI or PIN must not tear down
			 * the keys loaded (any peer may ask HEALTH). */
			if (r == TH_ERR_UNAVAILABLE)
				p11_reset(k);
			return th_fail(r, "the %s key (pkcs11) cannot be "
			    "loaded: %s", purpose_name(p), th_errmsg(r));
		}
		break;
	default:
		return th_fail(TH_ERR_NOT_FOUND, "no %s key is configured",
		    purpose_name(p));
	}
	if (key_alg(k, p) != purpose_alg(p)) {
		r = th_fail(TH_ERR_CONFIG, "the %s key is %s, it must be %s",
		    purpose_name(p), th_alg_name(key_alg(k, p)),
		    th_alg_name(purpose_alg(p)));
		keys_drop(k, p);
		return r;
	}
	if ((r = key_pin(k, p)) != 0) {
		keys_drop(k, p);
		return r;
	}
	log_info("loaded %s key from %s", purpose_name(p),
	    backend_name(ck->backend));
	return 0;
}

int
keys_alg(struct keys *k, enum purpose p, enum th_alg *alg)
{
	int r;

	lock(k, p);
	if ((r = key_ensure(k, p)) == 0)
		*alg = key_alg(k, p);
	unlock(k, p);
	return r;
}

int
keys_pubkey(struct keys *k, enum purpose p, enum th_alg *alg,
    struct buf *spki)
{
	EVP_PKEY *pub = NULL;
	uint8_t *der = NULL;
	int r, len;

	lock(k, p);
	if ((r = key_ensure(k, p)) != 0)
		goto out;
	*alg = key_alg(k, p);
	r = k->tkey[p] != NULL ? tpm_key_pubkey(k->tkey[p], &pub) :
	    p11_key_pubkey(k->pkey[p], &pub);
	if (r != 0)
		goto out;
	if ((len = i2d_PUBKEY(pub, &der)) <= 0) {
		r = th_fail(TH_ERR_CRYPTO, "cannot encode public key");
		goto out;
	}
	r = buf_put(spki, der, (size_t)len);
 out:
	unlock(k, p);
	OPENSSL_free(der);
	EVP_PKEY_free(pub);
	return r;
}

int
keys_sign(struct keys *k, enum purpose p, const uint8_t digest[TH_DIGEST_LEN],
    uint8_t *sig, size_t *siglen)
{
	int r;

	if (p == PURPOSE_ATTESTATION)
		return th_fail(TH_ERR_DENIED, "the attestation key only quotes");
	lock(k, p);
	if ((r = key_ensure(k, p)) != 0)
		goto out;
	*siglen = TH_SIG_MAX;
	if (k->tkey[p] != NULL) {
		r = tpm_sign(k->tkey[p], digest, sig, siglen);
		goto out;
	}
	r = p11_sign(k->pkey[p], digest, sig, siglen);
	if (r == TH_ERR_UNAVAILABLE)
		r = p11_gone(k, p, r);
 out:
	unlock(k, p);
	return r;
}

int
keys_quote(struct keys *k, const uint8_t *qual, size_t qual_len,
    struct buf *attest, struct buf *sig, struct buf *pcrs)
{
	int r;

	lock(k, PURPOSE_ATTESTATION);
	if ((r = key_ensure(k, PURPOSE_ATTESTATION)) == 0)
		r = tpm_quote(k->tkey[PURPOSE_ATTESTATION], k->cfg->quote_pcrs,
		    qual, qual_len, attest, sig, pcrs);
	unlock(k, PURPOSE_ATTESTATION);
	return r;
}

/* The attestation key, which must be on the TPM; call with its lock held. */
static int
ak_key(struct keys *k, struct tpm_key **ak)
{
	int r;

	if ((r = key_ensure(k, PURPOSE_ATTESTATION)) != 0)
		return r;
	if ((*ak = k->tkey[PURPOSE_ATTESTATION]) == NULL)
		return th_fail(TH_ERR_CONFIG, "the attestation key must be a "
		    "TPM key");
	return 0;
}

int
keys_ak_public(struct keys *k, struct buf *tpmt_public, struct buf *name)
{
	struct tpm_key *ak;
	int r;

	lock(k, PURPOSE_ATTESTATION);
	if ((r = ak_key(k, &ak)) == 0)
		r = tpm_ak_public(ak, tpmt_public, name);
	unlock(k, PURPOSE_ATTESTATION);
	return r;
}

int
keys_activate(struct keys *k, const uint8_t *credential_blob,
    size_t blob_len, const uint8_t *secret, size_t secret_len,
    struct buf *cert_info)
{
	struct tpm_key *ak;
	int r;

	lock(k, PURPOSE_ATTESTATION);
	if ((r = ak_key(k, &ak)) == 0)
		r = tpm_activate_credential(ak, credential_blob, blob_len,
		    secret, secret_len, cert_info);
	unlock(k, PURPOSE_ATTESTATION);
	return r;
}

int
keys_ekcert(struct keys *k, struct buf *der)
{
	int r;

	pthread_mutex_lock(&k->mu[BACKEND_TPM]);
	if (k->tpm == NULL && k->cfg->tcti[0] == '\0')
		r = th_fail(TH_ERR_NOT_FOUND, "no TPM is configured");
	else if (k->tpm == NULL && (r = tpm_open(k->cfg->tcti, &k->tpm)) != 0)
		;
	else
		r = tpm_ek_cert(k->tpm, der);
	pthread_mutex_unlock(&k->mu[BACKEND_TPM]);
	return r;
}

int
keys_health(struct keys *k, struct proto_health_item *items, size_t *n)
{
	struct proto_health_item *it;
	int i, r;

	*n = 0;
	for (i = 0; i < PURPOSE_COUNT && *n < PROTO_HEALTH_MAX; i++) {
		if (k->cfg->keys[i].backend == BACKEND_NONE)
			continue;
		it = &items[(*n)++];
		memset(it, 0, sizeof(*it));
		strcpy(it->purpose, purpose_name(i));
		strcpy(it->backend, backend_name(k->cfg->keys[i].backend));
		lock(k, i);
		r = key_ensure(k, i);
		if (r == 0 && k->tkey[i] != NULL)
			r = tpm_key_health(k->tkey[i]);
		else if (r == 0 && (r = p11_key_health(k->pkey[i])) ==
		    TH_ERR_UNAVAILABLE)
			r = p11_gone(k, i, r);
		it->status = r;
		snprintf(it->detail, sizeof(it->detail), "%s",
		    r == 0 ? "ok" : th_errmsg(r));
		unlock(k, i);
	}
	return 0;
}
