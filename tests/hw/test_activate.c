/* Credential activation (TPM2_MakeCredential in software, lib/makecred.c;
 * TPM2_ActivateCredential in the TPM, tpm_activate_credential) against a
 * live swtpm, directly and through threshold-signer.
 *
 *	test_activate TCTI OUTDIR
 *		the direct suite (tpm/tpm.c + lib/makecred.c) and protocol
 *		round trips of AKPUBLIC and ACTIVATE.  Leaves in OUTDIR, for
 *		tpm2_activatecredential to judge our MakeCredential:
 *		ours.cred (tpm2-tools credential file made by makecred_make
 *		for the AK persisted at H_AK), ours.secret (the credential)
 *	test_activate - OUTDIR signer SOCKET
 *		through a running signer (sigc_ak_public, sigc_activate);
 *		leaves ak.name.hex (the AK's name, computed from its public
 *		area) and ek.pem (the EK certificate's key) for
 *		tpm2_makecredential, and ak.tpmt, ak.name (AKPUBLIC's two
 *		fields as sent) and ak.pem
 *	test_activate - OUTDIR tools SOCKET CREDFILE SECRETFILE [refused]
 *		activates a tpm2_makecredential file through the signer and
 *		compares the result with SECRETFILE (with "refused": the
 *		signer must refuse it with code 8)
 *	test_activate - OUTDIR noak SOCKET
 *		a signer without an attestation key refuses both requests
 *
 * swtpm serves one client at a time: the direct suite and the signer never
 * run at once.  After every direct test no transient object or session may
 * be left in the TPM. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "buf.h"
#include "err.h"
#include "makecred.h"
#include "proto.h"
#include "sigclient.h"
#include "tpm.h"
#include "tpmtest.h"

#define H_AK		0x81010110
#define H_SIGN		0x81000110	/* a non-restricted key: another name */
#define H_EK		TPM_EK_RSA_HANDLE
#define CRED_MAGIC	0xbadcc0de	/* tpm2-tools credential file header */
#define CRED_VERSION	1

static const char *sockpath;
static const char *tools_cred, *tools_secret;
static int tools_refused;

/* Helpers. */

static void
path_of(char *out, size_t outsz, const char *name)
{
	assert_true((size_t)snprintf(out, outsz, "%s/%s", outdir, name) <
	    outsz);
}

static struct buf *
read_file(const char *path)
{
	struct buf *b;
	uint8_t tmp[4096];
	size_t n;
	FILE *f;

	assert_non_null(b = buf_new());
	if ((f = fopen(path, "rb")) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		assert_ok(buf_put(b, tmp, n));
	assert_int_equal(ferror(f), 0);
	fclose(f);
	return b;
}

static void
random_bytes(uint8_t *p, size_t len)
{
	assert_int_equal(RAND_bytes(p, (int)len), 1);
}

/* The EK's public key from the certificate in the TPM's NV, as an enroller
 * would take it. */
static EVP_PKEY *
ek_from_der(const uint8_t *der, size_t len)
{
	const uint8_t *p = der;
	EVP_PKEY *k;
	X509 *x;

	assert_non_null(x = d2i_X509(NULL, &p, (long)len));
	assert_ptr_equal(p, der + len);
	assert_non_null(k = X509_get_pubkey(x));
	assert_true(EVP_PKEY_is_a(k, "RSA"));
	X509_free(x);
	return k;
}

static EVP_PKEY *
ek_from_tpm(void)
{
	struct buf *der;
	EVP_PKEY *k;

	assert_non_null(der = buf_new());
	assert_ok(tpm_ek_cert(ctx, der));
	k = ek_from_der(buf_ptr(der), buf_len(der));
	buf_free(der);
	return k;
}

struct cred {
	struct buf	*blob;		/* TPM2B_ID_OBJECT */
	struct buf	*secret;	/* TPM2B_ENCRYPTED_SECRET */
};

static void
cred_make(struct cred *c, EVP_PKEY *ek, const uint8_t *name, size_t name_len,
    const uint8_t *secret, size_t secret_len)
{
	assert_non_null(c->blob = buf_new());
	assert_non_null(c->secret = buf_new());
	assert_ok(makecred_make(ek, name, name_len, secret, secret_len,
	    c->blob, c->secret));
}

static void
cred_free(struct cred *c)
{
	buf_free(c->blob);
	buf_free(c->secret);
	c->blob = c->secret = NULL;
}

static int
activate(struct tpm_key *ak, const uint8_t *blob, size_t blob_len,
    const uint8_t *sec, size_t sec_len, struct buf *out)
{
	buf_reset(out);
	return tpm_activate_credential(ak, blob, blob_len, sec, sec_len, out);
}

static int
activate_cred(struct tpm_key *ak, const struct cred *c, struct buf *out)
{
	return activate(ak, buf_ptr(c->blob), buf_len(c->blob),
	    buf_ptr(c->secret), buf_len(c->secret), out);
}

/* The TPM name of a persistent object, read independently of tpm.c. */
static void
raw_name(uint32_t handle, TPM2B_NAME *out)
{
	TPM2B_NAME *n = NULL;
	ESYS_TR tr;

	raw_open();
	tr = raw_tr(handle);
	assert_rc_ok(Esys_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE,
	    ESYS_TR_NONE, NULL, &n, NULL));
	*out = *n;
	Esys_Free(n);
	Esys_TR_Close(esys, &tr);
	raw_close();
}

/* The TCG default RSA EK template (EK Credential Profile, L-1), kept here
 * independently of tpm.c to put the EK back after the fallback test. */
static void
ek_template(TPM2B_PUBLIC *t)
{
	static const uint8_t policy[32] = {
		0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90,
		0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e,
		0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14,
		0x69, 0xaa,
	};
	TPMT_PUBLIC *p = &t->publicArea;

	memset(t, 0, sizeof(*t));
	p->type = TPM2_ALG_RSA;
	p->nameAlg = TPM2_ALG_SHA256;
	p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
	    TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
	    TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
	p->authPolicy.size = sizeof(policy);
	memcpy(p->authPolicy.buffer, policy, sizeof(policy));
	p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
	p->parameters.rsaDetail.symmetric.keyBits.aes = 128;
	p->parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
	p->parameters.rsaDetail.keyBits = 2048;
	p->unique.rsa.size = 256;
}

/* Creates a primary in the endorsement hierarchy from t and persists it
 * at handle; returns its RSA modulus (if RSA) in n. */
static void
raw_persist_primary(const TPM2B_PUBLIC *t, uint32_t handle, BIGNUM **n)
{
	TPM2B_SENSITIVE_CREATE sens = { 0 };
	TPM2B_DATA outside = { 0 };
	TPML_PCR_SELECTION pcrs = { 0 };
	TPM2B_PUBLIC *pub = NULL;
	ESYS_TR obj = ESYS_TR_NONE, per = ESYS_TR_NONE;

	raw_open();
	assert_rc_ok(Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, t, &outside,
	    &pcrs, &obj, &pub, NULL, NULL, NULL));
	assert_rc_ok(Esys_EvictControl(esys, ESYS_TR_RH_OWNER, obj,
	    ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, handle, &per));
	assert_rc_ok(Esys_FlushContext(esys, obj));
	Esys_TR_Close(esys, &per);
	if (n != NULL)
		assert_non_null(*n = BN_bin2bn(pub->publicArea.unique.rsa.buffer,
		    pub->publicArea.unique.rsa.size, NULL));
	Esys_Free(pub);
	raw_close();
}

static struct tpm_key *
ak_load(void)
{
	struct tpm_key *ak;

	assert_ok(tpm_key_load(ctx, H_AK, &ak));
	return ak;
}

/* The AK's name as tpm_ak_public reports it, checked against the name
 * makecred_ak_public computes from the public area. */
static void
ak_name(struct tpm_key *ak, struct buf *name)
{
	struct buf *pub, *computed;

	assert_non_null(pub = buf_new());
	assert_non_null(computed = buf_new());
	assert_ok(tpm_ak_public(ak, pub, name));
	assert_ok(makecred_ak_public(buf_ptr(pub), buf_len(pub), computed,
	    NULL));
	assert_int_equal(buf_len(computed), buf_len(name));
	assert_memory_equal(buf_ptr(computed), buf_ptr(name), buf_len(name));
	buf_free(pub);
	buf_free(computed);
}

/* Direct tests. */

static void
test_clean_slate(void **state)
{
	(void)state;
	assert_ok(tpm_health(ctx));
	evict_if_present(H_AK);
	evict_if_present(H_SIGN);
	assert_ok(tpm_ak_create(ctx, H_AK));
	assert_ok(tpm_key_create(ctx, H_SIGN, TH_ALG_ES256));
}

static void
frame_body(const struct buf *frame, struct buf *body)
{
	buf_reset(body);
	assert_true(buf_len(frame) >= 4);
	assert_ok(buf_put(body, buf_ptr(frame) + 4, buf_len(frame) - 4));
}

/* AKPUBLIC and ACTIVATE: encode, decode, bounds, strictness. */
static void
test_proto(void **state)
{
	uint8_t big[PROTO_ACTIVATE_MAX + 1], a[3] = { 1, 2, 3 };
	uint8_t b[2] = { 4, 5 };
	const uint8_t *blob[3] = { a, b, a };
	size_t len[3] = { sizeof(a), sizeof(b), sizeof(a) };
	struct proto_req req, got;
	struct proto_reply rep;
	struct buf *f, *body;

	(void)state;
	memset(big, 0x5a, sizeof(big));
	assert_non_null(f = buf_new());
	assert_non_null(body = buf_new());

	/* AKPUBLIC: type only. */
	memset(&req, 0, sizeof(req));
	req.type = PROTO_AKPUBLIC;
	assert_ok(proto_req_encode(f, &req));
	assert_int_equal(buf_len(f), 5);
	assert_memory_equal(buf_ptr(f), "\x00\x00\x00\x01\x06", 5);
	frame_body(f, body);
	assert_ok(proto_req_decode(body, &got));
	assert_int_equal(got.type, PROTO_AKPUBLIC);
	assert_ok(buf_put_u8(body, PROTO_AKPUBLIC));
	assert_ok(buf_put_u8(body, 0));
	assert_int_equal(proto_req_decode(body, &got), TH_ERR_PROTOCOL);

	/* ACTIVATE: two strings, in order. */
	buf_reset(f);
	memset(&req, 0, sizeof(req));
	req.type = PROTO_ACTIVATE;
	req.data = a;
	req.data_len = sizeof(a);
	req.data2 = b;
	req.data2_len = sizeof(b);
	assert_ok(proto_req_encode(f, &req));
	assert_int_equal(buf_len(f), 4 + 1 + 4 + 3 + 4 + 2);
	assert_memory_equal(buf_ptr(f), "\x00\x00\x00\x0e\x07"
	    "\x00\x00\x00\x03\x01\x02\x03\x00\x00\x00\x02\x04\x05", 18);
	frame_body(f, body);
	assert_ok(proto_req_decode(body, &got));
	assert_int_equal(got.type, PROTO_ACTIVATE);
	assert_int_equal(got.data_len, sizeof(a));
	assert_memory_equal(got.data, a, sizeof(a));
	assert_int_equal(got.data2_len, sizeof(b));
	assert_memory_equal(got.data2, b, sizeof(b));
	/* Every truncation is refused; so is a trailing byte. */
	{
		size_t cut, whole = buf_len(f) - 4;
		uint8_t copy[64];

		memcpy(copy, buf_ptr(f) + 4, whole);
		for (cut = 0; cut < whole; cut++) {
			buf_reset(body);
			assert_ok(buf_put(body, copy, cut));
			assert_int_equal(proto_req_decode(body, &got),
			    TH_ERR_PROTOCOL);
		}
		buf_reset(body);
		assert_ok(buf_put(body, copy, whole));
		assert_ok(buf_put_u8(body, 0));
		assert_int_equal(proto_req_decode(body, &got),
		    TH_ERR_PROTOCOL);
	}
	/* At the bound both ways; over it refused by encoder and decoder. */
	req.data = big;
	req.data_len = PROTO_ACTIVATE_MAX;
	req.data2 = big;
	req.data2_len = PROTO_ACTIVATE_MAX;
	buf_reset(f);
	assert_ok(proto_req_encode(f, &req));
	frame_body(f, body);
	assert_ok(proto_req_decode(body, &got));
	assert_int_equal(got.data_len, PROTO_ACTIVATE_MAX);
	assert_int_equal(got.data2_len, PROTO_ACTIVATE_MAX);
	req.data_len = PROTO_ACTIVATE_MAX + 1;
	buf_reset(f);
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_TOO_LONG);
	req.data_len = 1;
	req.data2_len = PROTO_ACTIVATE_MAX + 1;
	buf_reset(f);
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_TOO_LONG);
	buf_reset(body);
	assert_ok(buf_put_u8(body, PROTO_ACTIVATE));
	assert_ok(buf_put_string(body, big, 1));
	assert_ok(buf_put_string(body, big, PROTO_ACTIVATE_MAX + 1));
	assert_int_equal(proto_req_decode(body, &got), TH_ERR_PROTOCOL);
	buf_reset(body);
	assert_ok(buf_put_u8(body, PROTO_ACTIVATE));
	assert_ok(buf_put_string(body, big, PROTO_ACTIVATE_MAX + 1));
	assert_ok(buf_put_string(body, big, 1));
	assert_int_equal(proto_req_decode(body, &got), TH_ERR_PROTOCOL);

	/* Replies: AKPUBLIC has two blobs, ACTIVATE one. */
	buf_reset(f);
	assert_ok(proto_reply_blobs(f, NULL, blob, len, 2));
	frame_body(f, body);
	assert_ok(proto_reply_decode(body, PROTO_AKPUBLIC, &rep));
	assert_int_equal(rep.type, PROTO_OK);
	assert_int_equal(rep.blob_len[0], sizeof(a));
	assert_memory_equal(rep.blob[0], a, sizeof(a));
	assert_int_equal(rep.blob_len[1], sizeof(b));
	assert_memory_equal(rep.blob[1], b, sizeof(b));
	frame_body(f, body);
	assert_int_equal(proto_reply_decode(body, PROTO_ACTIVATE, &rep),
	    TH_ERR_PROTOCOL);		/* a second blob is trailing data */
	buf_reset(f);
	assert_ok(proto_reply_blobs(f, NULL, blob, len, 1));
	frame_body(f, body);
	assert_ok(proto_reply_decode(body, PROTO_ACTIVATE, &rep));
	assert_int_equal(rep.blob_len[0], sizeof(a));
	assert_memory_equal(rep.blob[0], a, sizeof(a));
	frame_body(f, body);
	assert_int_equal(proto_reply_decode(body, PROTO_AKPUBLIC, &rep),
	    TH_ERR_PROTOCOL);		/* the name is missing */
	buf_reset(f);
	assert_ok(proto_reply_blobs(f, NULL, blob, len, 3));
	frame_body(f, body);
	assert_int_equal(proto_reply_decode(body, PROTO_AKPUBLIC, &rep),
	    TH_ERR_PROTOCOL);
	buf_reset(f);
	assert_ok(proto_reply_error(f, TH_ERR_TPM, "no"));
	frame_body(f, body);
	assert_ok(proto_reply_decode(body, PROTO_ACTIVATE, &rep));
	assert_int_equal(rep.type, PROTO_ERROR);
	assert_int_equal(rep.code, TH_ERR_TPM);
	buf_free(f);
	buf_free(body);
}

static void
test_ak_public(void **state)
{
	struct tpm_key *ak, *key;
	struct buf *pub, *name, *n2, *bad;
	EVP_PKEY *fromarea = NULL, *fromtpm = NULL;
	TPM2B_NAME raw;
	TPMT_PUBLIC area;
	uint8_t *p;
	size_t off = 0, cut;

	(void)state;
	assert_non_null(pub = buf_new());
	assert_non_null(name = buf_new());
	assert_non_null(n2 = buf_new());
	assert_non_null(bad = buf_new());
	ak = ak_load();
	assert_ok(tpm_ak_public(ak, pub, name));
	/* The name is nameAlg SHA-256 || SHA-256 of the public area, and it
	 * is the name the TPM reports for the handle. */
	assert_int_equal(buf_len(name), MAKECRED_NAME_SHA256);
	assert_ok(makecred_ak_public(buf_ptr(pub), buf_len(pub), n2,
	    &fromarea));
	assert_int_equal(buf_len(n2), buf_len(name));
	assert_memory_equal(buf_ptr(n2), buf_ptr(name), buf_len(name));
	assert_ok(tpm_key_pubkey(ak, &fromtpm));
	assert_int_equal(EVP_PKEY_eq(fromarea, fromtpm), 1);
	tpm_key_free(ak);
	raw_name(H_AK, &raw);
	assert_int_equal(raw.size, buf_len(name));
	assert_memory_equal(raw.name, buf_ptr(name), raw.size);
	/* What we send is a well-formed TPMT_PUBLIC to tss2 too. */
	memset(&area, 0, sizeof(area));
	assert_rc_ok(Tss2_MU_TPMT_PUBLIC_Unmarshal(buf_ptr(pub), buf_len(pub),
	    &off, &area));
	assert_int_equal(off, buf_len(pub));
	assert_true(area.objectAttributes & TPMA_OBJECT_RESTRICTED);

	/* makecred_ak_public is strict: truncations, a trailing byte, a
	 * decryption key, a non-restricted key. */
	for (cut = 0; cut < buf_len(pub); cut++)
		assert_int_equal(makecred_ak_public(buf_ptr(pub), cut, n2,
		    NULL), TH_ERR_INVALID);
	buf_reset(bad);
	assert_ok(buf_put(bad, buf_ptr(pub), buf_len(pub)));
	assert_ok(buf_put_u8(bad, 0));
	assert_int_equal(makecred_ak_public(buf_ptr(bad), buf_len(bad), n2,
	    NULL), TH_ERR_INVALID);
	buf_reset(bad);
	assert_ok(buf_put(bad, buf_ptr(pub), buf_len(pub)));
	p = (uint8_t *)buf_ptr(bad);
	p[5] ^= 0x01;			/* clear restricted (0x00010000) */
	assert_int_equal(makecred_ak_public(p, buf_len(bad), n2, NULL),
	    TH_ERR_INVALID);
	p[5] ^= 0x01;
	p[5] ^= 0x02;			/* set decrypt (0x00020000) */
	assert_int_equal(makecred_ak_public(p, buf_len(bad), n2, NULL),
	    TH_ERR_INVALID);
	p[5] ^= 0x02;
	p[7] ^= 0x02;			/* clear fixedTPM */
	assert_int_equal(makecred_ak_public(p, buf_len(bad), n2, NULL),
	    TH_ERR_INVALID);
	p[7] ^= 0x02;
	p[3] = 0x04;			/* nameAlg SHA-1 */
	assert_int_equal(makecred_ak_public(p, buf_len(bad), n2, NULL),
	    TH_ERR_INVALID);
	p[3] = 0x0b;
	buf_reset(n2);
	assert_ok(makecred_ak_public(p, buf_len(bad), n2, NULL));
	/* Every single-bit flip is refused or yields another name. */
	for (cut = 0; cut < buf_len(bad); cut++) {
		int bit, r;

		for (bit = 0; bit < 8; bit++) {
			p[cut] ^= (uint8_t)(1u << bit);
			buf_reset(n2);
			r = makecred_ak_public(p, buf_len(bad), n2, NULL);
			if (r == 0)
				assert_memory_not_equal(buf_ptr(n2),
				    buf_ptr(name), buf_len(name));
			else
				assert_int_equal(r, TH_ERR_INVALID);
			p[cut] ^= (uint8_t)(1u << bit);
		}
	}

	/* Only the attestation key answers. */
	assert_ok(tpm_key_load(ctx, H_SIGN, &key));
	assert_int_equal(tpm_ak_public(key, pub, name), TH_ERR_DENIED);
	tpm_key_free(key);

	EVP_PKEY_free(fromarea);
	EVP_PKEY_free(fromtpm);
	buf_free(pub);
	buf_free(name);
	buf_free(n2);
	buf_free(bad);
}

/* The right secret comes back, for several credential sizes. */
static void
test_activate_ok(void **state)
{
	static const size_t sizes[] = { 32, 32, 32, 1, 16, 20, 31, 32 };
	struct tpm_key *ak;
	struct buf *name, *out;
	struct cred c;
	EVP_PKEY *ek;
	uint8_t secret[MAKECRED_CRED_MAX];
	size_t i;

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	ek = ek_from_tpm();
	ak = ak_load();
	ak_name(ak, name);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		random_bytes(secret, sizes[i]);
		cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
		    sizes[i]);
		assert_int_equal(buf_len(c.blob), 2 + 2 + 32 + 2 + sizes[i]);
		assert_int_equal(buf_len(c.secret), 2 + 256);
		assert_ok(activate_cred(ak, &c, out));
		assert_int_equal(buf_len(out), sizes[i]);
		assert_memory_equal(buf_ptr(out), secret, sizes[i]);
		cred_free(&c);
	}
	tpm_key_free(ak);
	EVP_PKEY_free(ek);
	buf_free(name);
	buf_free(out);
}

/* A credential made for another name is refused by the TPM: the name of
 * another key in the same TPM, a one-bit change of the AK's name, a random
 * name. */
static void
test_activate_other_name(void **state)
{
	struct tpm_key *ak;
	struct buf *name, *out;
	struct cred c;
	EVP_PKEY *ek;
	TPM2B_NAME other;
	uint8_t secret[32], n[MAKECRED_NAME_SHA256];
	int r;

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	ek = ek_from_tpm();
	raw_name(H_SIGN, &other);
	ak = ak_load();
	ak_name(ak, name);
	assert_int_equal(other.size, buf_len(name));
	assert_memory_not_equal(other.name, buf_ptr(name), other.size);
	random_bytes(secret, sizeof(secret));

	cred_make(&c, ek, other.name, other.size, secret, sizeof(secret));
	r = activate_cred(ak, &c, out);
	print_message("# credential for another key's name: %s\n",
	    th_errmsg(r));
	assert_int_equal(r, TH_ERR_TPM);
	assert_int_equal(buf_len(out), 0);
	cred_free(&c);

	memcpy(n, buf_ptr(name), sizeof(n));
	n[sizeof(n) - 1] ^= 0x01;
	cred_make(&c, ek, n, sizeof(n), secret, sizeof(secret));
	assert_int_equal(activate_cred(ak, &c, out), TH_ERR_TPM);
	cred_free(&c);

	n[0] = 0x00;
	n[1] = 0x0b;
	random_bytes(n + 2, sizeof(n) - 2);
	cred_make(&c, ek, n, sizeof(n), secret, sizeof(secret));
	assert_int_equal(activate_cred(ak, &c, out), TH_ERR_TPM);
	cred_free(&c);

	/* And the AK still activates its own credential afterwards. */
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	assert_ok(activate_cred(ak, &c, out));
	assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
	cred_free(&c);

	tpm_key_free(ak);
	EVP_PKEY_free(ek);
	buf_free(name);
	buf_free(out);
}

/* A credential made for another EK (a fresh RSA-2048 key) is refused. */
static void
test_activate_other_ek(void **state)
{
	struct tpm_key *ak;
	struct buf *name, *out;
	struct cred c;
	EVP_PKEY *other;
	uint8_t secret[32];
	int r;

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	assert_non_null(other = EVP_RSA_gen(2048));
	ak = ak_load();
	ak_name(ak, name);
	random_bytes(secret, sizeof(secret));
	cred_make(&c, other, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	r = activate_cred(ak, &c, out);
	print_message("# credential for another EK: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_TPM);
	assert_int_equal(buf_len(out), 0);
	cred_free(&c);
	tpm_key_free(ak);
	EVP_PKEY_free(other);
	buf_free(name);
	buf_free(out);
}

/* One flipped bit anywhere in the integrity HMAC, the encrypted identity
 * or the encrypted seed makes the TPM refuse; broken framing is refused
 * before the TPM sees it. */
static void
test_activate_tampered(void **state)
{
	struct tpm_key *ak, *key;
	struct buf *name, *out, *copy;
	struct cred c;
	EVP_PKEY *ek;
	uint8_t secret[32], *p;
	size_t i, bl, sl;
	static const size_t blob_at[] = { 4, 20, 35, 36, 37, 38, 50, 69 };
	static const size_t sec_at[] = { 2, 3, 100, 257 };

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	assert_non_null(copy = buf_new());
	ek = ek_from_tpm();
	ak = ak_load();
	ak_name(ak, name);
	random_bytes(secret, sizeof(secret));
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	bl = buf_len(c.blob);
	sl = buf_len(c.secret);
	assert_int_equal(bl, 70);
	assert_int_equal(sl, 258);

	for (i = 0; i < sizeof(blob_at) / sizeof(blob_at[0]); i++) {
		buf_reset(copy);
		assert_ok(buf_put(copy, buf_ptr(c.blob), bl));
		p = (uint8_t *)buf_ptr(copy);
		p[blob_at[i]] ^= 0x40;
		if (activate(ak, p, bl, buf_ptr(c.secret), sl, out) !=
		    TH_ERR_TPM)
			fail_msg("blob with byte %zu flipped not refused",
			    blob_at[i]);
	}
	for (i = 0; i < sizeof(sec_at) / sizeof(sec_at[0]); i++) {
		buf_reset(copy);
		assert_ok(buf_put(copy, buf_ptr(c.secret), sl));
		p = (uint8_t *)buf_ptr(copy);
		p[sec_at[i]] ^= 0x01;
		if (activate(ak, buf_ptr(c.blob), bl, p, sl, out) !=
		    TH_ERR_TPM)
			fail_msg("secret with byte %zu flipped not refused",
			    sec_at[i]);
	}

	/* Framing: truncated, trailing byte, size field too large, empty,
	 * NULL. */
	assert_int_equal(activate(ak, buf_ptr(c.blob), bl - 1,
	    buf_ptr(c.secret), sl, out), TH_ERR_INVALID);
	assert_int_equal(activate(ak, buf_ptr(c.blob), bl,
	    buf_ptr(c.secret), sl - 1, out), TH_ERR_INVALID);
	assert_int_equal(activate(ak, buf_ptr(c.blob), 1,
	    buf_ptr(c.secret), sl, out), TH_ERR_INVALID);
	buf_reset(copy);
	assert_ok(buf_put(copy, buf_ptr(c.blob), bl));
	assert_ok(buf_put_u8(copy, 0));
	assert_int_equal(activate(ak, buf_ptr(copy), bl + 1,
	    buf_ptr(c.secret), sl, out), TH_ERR_INVALID);
	buf_reset(copy);
	assert_ok(buf_put(copy, buf_ptr(c.secret), sl));
	assert_ok(buf_put_u8(copy, 0));
	assert_int_equal(activate(ak, buf_ptr(c.blob), bl, buf_ptr(copy),
	    sl + 1, out), TH_ERR_INVALID);
	assert_int_equal(activate(ak, (const uint8_t *)"\x00\x00", 2,
	    buf_ptr(c.secret), sl, out), TH_ERR_INVALID);
	assert_int_equal(activate(ak, buf_ptr(c.blob), bl,
	    (const uint8_t *)"\x00\x00", 2, out), TH_ERR_INVALID);
	{
		/* A size larger than a TPM2B_ID_OBJECT can hold. */
		uint8_t huge[2 + 1024];

		memset(huge, 0, sizeof(huge));
		huge[0] = 0x04;		/* 1024 */
		assert_int_equal(activate(ak, huge, sizeof(huge),
		    buf_ptr(c.secret), sl, out), TH_ERR_INVALID);
		assert_int_equal(activate(ak, buf_ptr(c.blob), bl, huge,
		    sizeof(huge), out), TH_ERR_INVALID);
	}
	assert_int_equal(activate(ak, NULL, 0, buf_ptr(c.secret), sl, out),
	    TH_ERR_INVALID);
	assert_int_equal(activate(ak, buf_ptr(c.blob), bl, NULL, 0, out),
	    TH_ERR_INVALID);

	/* Only the attestation key activates. */
	assert_ok(tpm_key_load(ctx, H_SIGN, &key));
	assert_int_equal(activate_cred(key, &c, out), TH_ERR_DENIED);
	tpm_key_free(key);

	/* The untouched credential still works. */
	assert_ok(activate_cred(ak, &c, out));
	assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
	cred_free(&c);
	tpm_key_free(ak);
	EVP_PKEY_free(ek);
	buf_free(name);
	buf_free(out);
	buf_free(copy);
}

static void
test_makecred_args(void **state)
{
	struct buf *b, *s;
	EVP_PKEY *ek, *ec, *rsa3k;
	uint8_t name[MAKECRED_NAME_MAX], secret[MAKECRED_CRED_MAX + 1];

	(void)state;
	assert_non_null(b = buf_new());
	assert_non_null(s = buf_new());
	assert_non_null(ek = EVP_RSA_gen(2048));
	assert_non_null(ec = EVP_EC_gen("P-256"));
	assert_non_null(rsa3k = EVP_RSA_gen(3072));
	memset(secret, 7, sizeof(secret));
	memset(name, 0, sizeof(name));
	name[1] = 0x0b;
	assert_ok(makecred_make(ek, name, 34, secret, 32, b, s));
	assert_int_equal(makecred_make(ek, name, 33, secret, 32, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(ek, name, 35, secret, 32, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(ek, NULL, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	name[1] = 0x0c;		/* SHA-384: 48 bytes */
	assert_int_equal(makecred_make(ek, name, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	assert_ok(makecred_make(ek, name, 50, secret, 32, b, s));
	name[1] = 0x04;		/* SHA-1: 20 bytes */
	assert_ok(makecred_make(ek, name, 22, secret, 32, b, s));
	name[1] = 0x0d;		/* SHA-512 */
	assert_ok(makecred_make(ek, name, 66, secret, 32, b, s));
	name[1] = 0x0e;		/* not a hash */
	assert_int_equal(makecred_make(ek, name, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	name[1] = 0x0b;
	assert_int_equal(makecred_make(ek, name, 34, secret, 0, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(ek, name, 34, secret,
	    MAKECRED_CRED_MAX + 1, b, s), TH_ERR_INVALID);
	assert_int_equal(makecred_make(ek, name, 34, NULL, 32, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(ec, name, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(rsa3k, name, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	assert_int_equal(makecred_make(NULL, name, 34, secret, 32, b, s),
	    TH_ERR_INVALID);
	EVP_PKEY_free(ek);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa3k);
	buf_free(b);
	buf_free(s);
}

/* Without a persistent EK (or with something else at its handle) the EK
 * is derived from the TCG template, used and flushed; the derived key is
 * the one the EK certificate names. */
static void
test_ek_fallback(void **state)
{
	struct tpm_key *ak;
	struct buf *name, *out;
	struct cred c;
	EVP_PKEY *ek;
	BIGNUM *n = NULL, *certn = NULL;
	TPM2B_PUBLIC t;
	uint8_t secret[32];
	uint32_t objects, sessions;

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	ek = ek_from_tpm();
	assert_int_equal(EVP_PKEY_get_bn_param(ek, OSSL_PKEY_PARAM_RSA_N,
	    &certn), 1);
	ak = ak_load();
	ak_name(ak, name);
	tpm_key_free(ak);

	assert_ok(tpm_key_evict(ctx, H_EK));
	ak = ak_load();
	random_bytes(secret, sizeof(secret));
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	assert_ok(activate_cred(ak, &c, out));
	assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
	assert_ok(tpm_loaded_handles(ctx, &objects, &sessions));
	assert_int_equal(objects, 0);
	assert_int_equal(sessions, 0);
	/* Refusals on this path flush the derived EK too. */
	cred_free(&c);
	cred_make(&c, ek, (const uint8_t *)"\x00\x0b"
	    "0123456789abcdef0123456789abcdef", 34, secret, sizeof(secret));
	assert_int_equal(activate_cred(ak, &c, out), TH_ERR_TPM);
	assert_ok(tpm_loaded_handles(ctx, &objects, &sessions));
	assert_int_equal(objects, 0);
	assert_int_equal(sessions, 0);
	cred_free(&c);
	tpm_key_free(ak);

	/* Something that is not an EK at the EK's handle: not used. */
	memset(&t, 0, sizeof(t));
	t.publicArea.type = TPM2_ALG_ECC;
	t.publicArea.nameAlg = TPM2_ALG_SHA256;
	t.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM |
	    TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
	    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED |
	    TPMA_OBJECT_DECRYPT;
	t.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
	t.publicArea.parameters.eccDetail.symmetric.keyBits.aes = 128;
	t.publicArea.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
	t.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
	t.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
	t.publicArea.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
	raw_persist_primary(&t, H_EK, NULL);
	ak = ak_load();
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	assert_ok(activate_cred(ak, &c, out));
	assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
	cred_free(&c);
	tpm_key_free(ak);
	assert_ok(tpm_key_evict(ctx, H_EK));

	/* Put the EK back where swtpm_setup left it; it is the certified
	 * key. */
	ek_template(&t);
	raw_persist_primary(&t, H_EK, &n);
	assert_int_equal(BN_cmp(n, certn), 0);
	BN_free(n);
	BN_free(certn);
	EVP_PKEY_free(ek);
	buf_free(name);
	buf_free(out);
}

/* For tpm2_activatecredential: a tpm2-tools credential file that we made
 * for H_AK (left persisted). */
static void
test_write_for_tools(void **state)
{
	struct tpm_key *ak;
	struct buf *name, *file;
	struct cred c;
	EVP_PKEY *ek;
	uint8_t secret[32];

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(file = buf_new());
	ek = ek_from_tpm();
	ak = ak_load();
	ak_name(ak, name);
	tpm_key_free(ak);
	random_bytes(secret, sizeof(secret));
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	assert_ok(buf_put_u32(file, CRED_MAGIC));
	assert_ok(buf_put_u32(file, CRED_VERSION));
	assert_ok(buf_put(file, buf_ptr(c.blob), buf_len(c.blob)));
	assert_ok(buf_put(file, buf_ptr(c.secret), buf_len(c.secret)));
	write_file("ours.cred", buf_ptr(file), buf_len(file));
	write_file("ours.secret", secret, sizeof(secret));
	cred_free(&c);
	EVP_PKEY_free(ek);
	buf_free(name);
	buf_free(file);
}

/* Through the signer. */

static struct sigc *sc;

static int
signer_setup(void **state)
{
	int r;

	(void)state;
	if ((r = sigc_connect(sockpath, &sc)) != 0) {
		fprintf(stderr, "sigc_connect: %s\n", th_errmsg(r));
		return -1;
	}
	return 0;
}

static int
signer_teardown(void **state)
{
	(void)state;
	sigc_close(sc);
	sc = NULL;
	return 0;
}

static EVP_PKEY *
signer_ek(void)
{
	struct buf *der;
	EVP_PKEY *k;

	assert_non_null(der = buf_new());
	assert_ok(sigc_ekcert(sc, der));
	k = ek_from_der(buf_ptr(der), buf_len(der));
	buf_free(der);
	return k;
}

/* The AK's name, computed by the enroller from the public area the signer
 * sent, and checked against the name the signer claims. */
static void
signer_ak_name(struct buf *name, EVP_PKEY **akpub)
{
	struct buf *pub, *claimed;

	assert_non_null(pub = buf_new());
	assert_non_null(claimed = buf_new());
	assert_ok(sigc_ak_public(sc, pub, claimed));
	assert_ok(makecred_ak_public(buf_ptr(pub), buf_len(pub), name,
	    akpub));
	assert_int_equal(buf_len(claimed), buf_len(name));
	assert_memory_equal(buf_ptr(claimed), buf_ptr(name), buf_len(name));
	write_file("ak.tpmt", buf_ptr(pub), buf_len(pub));
	write_file("ak.name", buf_ptr(claimed), buf_len(claimed));
	buf_free(pub);
	buf_free(claimed);
}

/* Sends one raw frame and returns the decoded reply to request type. */
static void
raw_exchange(const struct buf *frame, uint8_t type, struct proto_reply *rep,
    struct buf *body)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_true(strlen(sockpath) < sizeof(sun.sun_path));
	strcpy(sun.sun_path, sockpath);
	assert_true((fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_ok(proto_write_all(fd, buf_ptr(frame), buf_len(frame)));
	assert_ok(proto_read_frame(fd, body));
	assert_ok(proto_reply_decode(body, type, rep));
	/* A protocol violation closes the connection. */
	if (rep->type == PROTO_ERROR && rep->code == TH_ERR_PROTOCOL)
		assert_int_equal(proto_read_frame(fd, body), TH_ERR_IO);
	close(fd);
}

static void
test_signer(void **state)
{
	struct buf *name, *out, *frame, *body;
	struct proto_reply rep;
	struct proto_req req;
	struct cred c;
	EVP_PKEY *ek, *other, *akpub = NULL;
	uint8_t secret[32], n[MAKECRED_NAME_SHA256];
	uint8_t big[PROTO_ACTIVATE_MAX + 1];
	char path[1024];
	FILE *f;
	int r;

	(void)state;
	assert_non_null(name = buf_new());
	assert_non_null(out = buf_new());
	assert_non_null(frame = buf_new());
	assert_non_null(body = buf_new());
	ek = signer_ek();
	signer_ak_name(name, &akpub);

	/* Files for tpm2_makecredential. */
	write_hex("ak.name.hex", buf_ptr(name), buf_len(name));
	path_of(path, sizeof(path), "ek.pem");
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_PUBKEY(f, ek), 1);
	assert_int_equal(fclose(f), 0);
	path_of(path, sizeof(path), "ak.pem");
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(PEM_write_PUBKEY(f, akpub), 1);
	assert_int_equal(fclose(f), 0);

	/* The right secret comes back, several times over one connection. */
	for (r = 0; r < 4; r++) {
		random_bytes(secret, sizeof(secret));
		cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
		    sizeof(secret));
		buf_reset(out);
		assert_ok(sigc_activate(sc, buf_ptr(c.blob), buf_len(c.blob),
		    buf_ptr(c.secret), buf_len(c.secret), out));
		assert_int_equal(buf_len(out), sizeof(secret));
		assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
		cred_free(&c);
	}

	/* Another name: the signer's TPM refuses (code 8). */
	memcpy(n, buf_ptr(name), sizeof(n));
	n[5] ^= 0x80;
	cred_make(&c, ek, n, sizeof(n), secret, sizeof(secret));
	buf_reset(out);
	r = sigc_activate(sc, buf_ptr(c.blob), buf_len(c.blob),
	    buf_ptr(c.secret), buf_len(c.secret), out);
	print_message("# signer, other name: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_TPM);
	assert_int_equal(buf_len(out), 0);
	cred_free(&c);

	/* Another EK: refused. */
	assert_non_null(other = EVP_RSA_gen(2048));
	cred_make(&c, other, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	r = sigc_activate(sc, buf_ptr(c.blob), buf_len(c.blob),
	    buf_ptr(c.secret), buf_len(c.secret), out);
	print_message("# signer, other EK: %s\n", th_errmsg(r));
	assert_int_equal(r, TH_ERR_TPM);
	EVP_PKEY_free(other);

	/* Malformed TPM2Bs: refused by the signer (code 3). */
	assert_int_equal(sigc_activate(sc, buf_ptr(c.blob),
	    buf_len(c.blob) - 1, buf_ptr(c.secret), buf_len(c.secret), out),
	    TH_ERR_INVALID);
	/* Over the field bound: the client refuses to send it... */
	memset(big, 0, sizeof(big));
	assert_int_equal(sigc_activate(sc, big, sizeof(big),
	    buf_ptr(c.secret), buf_len(c.secret), out), TH_ERR_TOO_LONG);
	cred_free(&c);
	/* ...and the signer refuses it on the wire (code 15, closed). */
	assert_ok(buf_put_u32(frame, 1 + 4 + sizeof(big) + 4));
	assert_ok(buf_put_u8(frame, PROTO_ACTIVATE));
	assert_ok(buf_put_string(frame, big, sizeof(big)));
	assert_ok(buf_put_string(frame, big, 0));
	raw_exchange(frame, PROTO_ACTIVATE, &rep, body);
	assert_int_equal(rep.type, PROTO_ERROR);
	assert_int_equal(rep.code, TH_ERR_PROTOCOL);
	/* AKPUBLIC with a field: a protocol violation. */
	buf_reset(frame);
	assert_ok(buf_put_u32(frame, 2));
	assert_ok(buf_put_u8(frame, PROTO_AKPUBLIC));
	assert_ok(buf_put_u8(frame, 0));
	raw_exchange(frame, PROTO_AKPUBLIC, &rep, body);
	assert_int_equal(rep.type, PROTO_ERROR);
	assert_int_equal(rep.code, TH_ERR_PROTOCOL);
	/* A well-formed AKPUBLIC by hand. */
	buf_reset(frame);
	memset(&req, 0, sizeof(req));
	req.type = PROTO_AKPUBLIC;
	assert_ok(proto_req_encode(frame, &req));
	raw_exchange(frame, PROTO_AKPUBLIC, &rep, body);
	assert_int_equal(rep.type, PROTO_OK);
	assert_int_equal(rep.blob_len[1], buf_len(name));
	assert_memory_equal(rep.blob[1], buf_ptr(name), buf_len(name));

	/* The signer still serves, and its TPM still activates. */
	random_bytes(secret, sizeof(secret));
	cred_make(&c, ek, buf_ptr(name), buf_len(name), secret,
	    sizeof(secret));
	buf_reset(out);
	assert_ok(sigc_activate(sc, buf_ptr(c.blob), buf_len(c.blob),
	    buf_ptr(c.secret), buf_len(c.secret), out));
	assert_memory_equal(buf_ptr(out), secret, sizeof(secret));
	cred_free(&c);

	EVP_PKEY_free(ek);
	EVP_PKEY_free(akpub);
	buf_free(name);
	buf_free(out);
	buf_free(frame);
	buf_free(body);
}

/* A tpm2_makecredential file, activated through the signer. */
static void
test_signer_tools(void **state)
{
	struct buf *file, *secret, *out;
	const uint8_t *p;
	size_t len, bl, sl;
	uint32_t magic, version;
	int r;

	(void)state;
	file = read_file(tools_cred);
	secret = read_file(tools_secret);
	assert_non_null(out = buf_new());
	p = buf_ptr(file);
	len = buf_len(file);
	assert_true(len > 8 + 2);
	magic = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	version = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 |
	    (uint32_t)p[6] << 8 | p[7];
	assert_int_equal(magic, CRED_MAGIC);
	assert_int_equal(version, CRED_VERSION);
	bl = 2 + ((size_t)p[8] << 8 | p[9]);
	assert_true(8 + bl + 2 <= len);
	sl = len - 8 - bl;
	assert_int_equal(sl, 2 + ((size_t)p[8 + bl] << 8 | p[8 + bl + 1]));
	r = sigc_activate(sc, p + 8, bl, p + 8 + bl, sl, out);
	print_message("# tpm2_makecredential blob through the signer: %s\n",
	    r == 0 ? "ok" : th_errmsg(r));
	if (tools_refused) {
		assert_int_equal(r, TH_ERR_TPM);
	} else {
		assert_ok(r);
		assert_int_equal(buf_len(out), buf_len(secret));
		assert_memory_equal(buf_ptr(out), buf_ptr(secret),
		    buf_len(secret));
	}
	buf_free(file);
	buf_free(secret);
	buf_free(out);
}

static void
test_signer_noak(void **state)
{
	struct buf *a, *b;
	uint8_t x[4] = { 0, 2, 0, 0 };
	int r;

	(void)state;
	assert_non_null(a = buf_new());
	assert_non_null(b = buf_new());
	r = sigc_ak_public(sc, a, b);
	print_message("# AKPUBLIC without an attestation key: %s\n",
	    th_errmsg(r));
	assert_int_equal(r, TH_ERR_NOT_FOUND);
	assert_int_equal(sigc_activate(sc, x, sizeof(x), x, sizeof(x), a),
	    TH_ERR_NOT_FOUND);
	assert_int_equal(buf_len(a), 0);
	buf_free(a);
	buf_free(b);
}

static void
usage(void)
{
	fprintf(stderr, "usage: test_activate TCTI OUTDIR\n"
	    "       test_activate - OUTDIR signer|noak SOCKET\n"
	    "       test_activate - OUTDIR tools SOCKET CREDFILE SECRETFILE "
	    "[refused]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest direct[] = {
		cmocka_unit_test_teardown(test_clean_slate, no_leftovers),
		cmocka_unit_test(test_proto),
		cmocka_unit_test(test_makecred_args),
		cmocka_unit_test_teardown(test_ak_public, no_leftovers),
		cmocka_unit_test_teardown(test_activate_ok, no_leftovers),
		cmocka_unit_test_teardown(test_activate_other_name,
		    no_leftovers),
		cmocka_unit_test_teardown(test_activate_other_ek,
		    no_leftovers),
		cmocka_unit_test_teardown(test_activate_tampered,
		    no_leftovers),
		cmocka_unit_test_teardown(test_ek_fallback, no_leftovers),
		cmocka_unit_test_teardown(test_write_for_tools, no_leftovers),
	};
	const struct CMUnitTest signer[] = {
		cmocka_unit_test(test_signer),
	};
	const struct CMUnitTest tools[] = {
		cmocka_unit_test(test_signer_tools),
	};
	const struct CMUnitTest noak[] = {
		cmocka_unit_test(test_signer_noak),
	};

	if (argc < 3)
		usage();
	tcti = argv[1];
	outdir = argv[2];
	signal(SIGPIPE, SIG_IGN);
	if (argc == 3)
		return cmocka_run_group_tests_name("activate", direct,
		    group_setup, group_teardown);
	if (argc < 5)
		usage();
	sockpath = argv[4];
	if (strcmp(argv[3], "signer") == 0 && argc == 5)
		return cmocka_run_group_tests_name("activate via signer",
		    signer, signer_setup, signer_teardown);
	if (strcmp(argv[3], "noak") == 0 && argc == 5)
		return cmocka_run_group_tests_name("activate, no AK", noak,
		    signer_setup, signer_teardown);
	if (strcmp(argv[3], "tools") == 0 && (argc == 7 || (argc == 8 &&
	    strcmp(argv[7], "refused") == 0))) {
		tools_cred = argv[5];
		tools_secret = argv[6];
		tools_refused = argc == 8;
		return cmocka_run_group_tests_name("activate tpm2-tools blob",
		    tools, signer_setup, signer_teardown);
	}
	usage();
	return 2;
}
