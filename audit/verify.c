/* threshold audit verify: docs/audit-format.md, "Verification", steps 1-6
 * in order, then the auditor's expectations. */
#include <errno.h>
#include <stdarg.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sqlite3.h>

#include "b64url.h"
#include "cap.h"
#include "cert.h"
#include "chain.h"
#include "deleg.h"
#include "err.h"
#include "jcs.h"
#include "json.h"
#include "jwk.h"
#include "jws.h"
#include "merkle.h"
#include "policy.h"
#include "proto.h"
#include "scope.h"
#include "sha.h"
#include "stmt.h"
#include "store.h"
#include "typ.h"
#include "utf8.h"
#include "verify.h"
#include "vlines.h"
#include "vpool.h"

#define HASH_B64	(JWS_HASH_LEN + 1)
#define TOKEN_SIG_PREFIX "threshold-audit-checkpoint:"
#define SEL_BANKS_MAX	2	/* sha1 and sha256, each at most once */
#define AVERIFY_SEEN	8	/* capabilities remembered as checked */

enum kind {
	K_LINK = 1, K_MINT, K_REFUSAL, K_INTENT, K_OUTCOME, K_REVOCATION,
	K_RECOVERED, K_READ, K_GRANT
};
#define K_LAST	K_GRANT

static const char *const kind_names[] = { NULL, "link", "mint", "refusal",
    "intent", "outcome", "revocation", "recovered", "read", "grant" };

enum ckind { CK_QUOTE = 1, CK_TOKEN = 2 };

struct sel_bank {
	uint16_t	 alg;
	uint32_t	 mask;		/* bit i: PCR i */
};

struct pcr_expect {
	uint16_t	 alg;
	unsigned	 pcr;
	uint8_t		 value[32];
	size_t		 len;
};

struct cp_expect {
	uint64_t	 n;
	char		 qual[HASH_B64];
	int		 seen;
};

/* Distinct names, for the summary (open addressing). */
/* A set of strings whose members come from the log, which anyone may
 * have crafted: a balanced tree (tsearch), whose cost no choice of
 * strings can drive up, unlike an unkeyed hash table (names built to
 * collide made verification quadratic: hours for a large log). */
struct strset {
	void		*root;
	size_t		 n;
};

struct averify {
	int			 threads;	/* 0: one per CPU */
	EVP_PKEY		*root;
	X509_STORE		*ek_ca;
	struct pcr_expect	 pcrs[SEL_BANKS_MAX * AVERIFY_PCRS_MAX];
	size_t			 npcrs;
	struct cp_expect	 expect[AVERIFY_EXPECT_MAX];
	size_t			 nexpect;

	int			 fail_step;	/* -1: none yet */
	char			 fail_msg[AVERIFY_MSG_MAX];
	int			 finished;

	/* Step 1. */
	int			 have_header;
	char			 hh[HASH_B64];
	EVP_PKEY		*ak, *cap, *atten;
	struct jws_verifier	*capver;	/* cap, on this thread */
	enum ckind		 ckind;
	struct sel_bank		 sel[SEL_BANKS_MAX];
	size_t			 nsel, nsel_pcrs;
	char			 instance[PROTO_SUBJECT_MAX + 1];
	int			 ek_checked;
	char			 ek_hash[HASH_B64];	/* of ek_cert's DER */
	int			 ak_activated;

	/* Step 2; leaves and kinds feed steps 3 and 6. */
	uint64_t		 nentries;
	uint8_t			(*leaves)[MERKLE_HASH_LEN];
	uint8_t			*kinds;
	size_t			 aentries;
	char			 last_hash[HASH_B64];
	int64_t			 first_time, last_time;

	/* Step 5; capability signatures are checked by sigs' threads. */
	struct store		*st;
	struct chain_ctx	*chains;
	struct vpool		*sigs;
	int			 collecting;
	/* SHA-256 of the last capabilities whose signature was checked: the
	 * reads of one git exchange carry the same one. */
	uint8_t			 seen[AVERIFY_SEEN][SHA_LEN];
	size_t			 nseen;

	/* Steps 3, 4 and 7. */
	uint64_t		 ncp, ncp_read, cp_last;
	char			 cp_prev[HASH_B64];
	struct json_object	*pending[AVERIFY_PENDING_MAX];
	size_t			 npending;
	int			 have_clock;
	uint64_t		 clock;
	uint32_t		 reset, restart;
	uint64_t		 quotes, token_signed;
	char			 last_qual[HASH_B64];

	/* Summary. */
	uint64_t		 count[K_LAST + 1];	/* by kind */
	uint64_t		 unattached;	/* revocations without intent */
	struct strset		 humans, agents;
	struct strset		 intent_jtis;	/* each capability acts once */
};

/* P-256's group order, for the low-S rule of token signatures. */
static const uint8_t p256_order[32] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
	0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51
};

/* ---- failures ---- */

static int fail(struct averify *v, int step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int collect_sigs(struct averify *v, int wait);

/* Keeps the failure of the lowest step (0, malformed input, ranks first);
 * within a step the first one, as steps are checked in log order. */
static int
fail(struct averify *v, int step, const char *fmt, ...)
{
	va_list ap;

	/* Signature results of earlier entries come first: a step 5
	 * failure is reported at the lowest entry. */
	if (step == 5 && v->sigs != NULL && !v->collecting)
		collect_sigs(v, 1);
	if (v->fail_step < 0 || step < v->fail_step) {
		va_start(ap, fmt);
		vsnprintf(v->fail_msg, sizeof(v->fail_msg), fmt, ap);
		va_end(ap);
		/* It quotes the log (a kind, a typ, a name, cut to a bound
		 * that can split a character): one printable line of UTF-8,
		 * for a terminal and for --json alike. */
		utf8_sanitize(v->fail_msg);
		v->fail_step = step;
	}
	return TH_ERR_DENIED;
}

/* Whether checks of step are still worth making: no failure of this or an
 * earlier step is known. */
static int
active(const struct averify *v, int step)
{
	return v->fail_step < 0 || step < v->fail_step;
}

/* Steps 0-2 decide the outcome at once: the reader may stop. */
static int
decided(const struct averify *v)
{
	return v->fail_step >= 0 && v->fail_step <= 2;
}

int
averify_malformed(struct averify *v, const char *pos, const char *why)
{
	return fail(v, 0, "%s: %s", pos, why);
}

const char *
averify_failure(const struct averify *v)
{
	return v->fail_step < 0 ? "" : v->fail_msg;
}

int
averify_failed_step(const struct averify *v)
{
	return v->fail_step;
}

/* ---- small helpers ---- */

/* Decodes base64url s into out, at most max bytes. */
static int
b64_decode(const char *s, size_t max, struct buf *out)
{
	size_t n = strlen(s);

	buf_reset(out);
	if (n > B64URL_ENCODED_LEN(max))
		return th_fail(TH_ERR_TOO_LONG, "longer than %zu bytes", max);
	return b64url_decode(out, s, n);
}

/* json-c keeps an integer above INT64_MAX as a uint64 (clamped to
 * UINT64_MAX) and clamps one below INT64_MIN to INT64_MIN, silently; both
 * would let two texts share a canonical form.  The strict parser refuses
 * both, so INT64_MIN read is INT64_MIN written; what is built otherwise
 * must still be int64 (docs/audit-format.md: -2^63 .. 2^63-1). */
static int
ints_in_range(struct json_object *o, int depth)
{
	size_t i;

	if (depth > JCS_DEPTH_MAX)
		return 0;
	switch (json_object_get_type(o)) {
	case json_type_double:
		return 0;
	case json_type_int:
		return !(json_object_get_int64(o) == INT64_MAX &&
		    json_object_get_uint64(o) != (uint64_t)INT64_MAX);
	case json_type_array:
		for (i = 0; i < json_object_array_length(o); i++)
			if (!ints_in_range(json_object_array_get_idx(o, i),
			    depth + 1))
				return 0;
		return 1;
	case json_type_object: {
		json_object_object_foreach(o, k, val) {
			(void)k;
			if (!ints_in_range(val, depth + 1))
				return 0;
		}
		return 1;
	}
	default:
		return 1;
	}
}

/* The canonical form of o into canon (reset first). */
static int
canonical(struct json_object *o, struct buf *canon)
{
	buf_reset(canon);
	if (!ints_in_range(o, 0))
		return th_fail(TH_ERR_INVALID, "a number is not a 64-bit "
		    "integer");
	return jcs_encode(canon, o);
}

/* 1 if a and b have the same canonical form. */
static int
same_json(struct json_object *a, struct json_object *b)
{
	struct buf *x = buf_new(), *y = buf_new();
	int same = 0;

	if (x != NULL && y != NULL && canonical(a, x) == 0 &&
	    canonical(b, y) == 0)
		same = buf_len(x) == buf_len(y) &&
		    memcmp(buf_ptr(x), buf_ptr(y), buf_len(x)) == 0;
	buf_free(x);
	buf_free(y);
	return same;
}

static int
strset_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* 0 if str was added, 1 if it was there already, or a negative error. */
static int
strset_add(struct strset *s, const char *str)
{
	char *copy;

	if (tfind(str, &s->root, strset_cmp) != NULL)
		return 1;
	if ((copy = strdup(str)) == NULL)
		return TH_ERR_ALLOC;
	if (tsearch(copy, &s->root, strset_cmp) == NULL) {
		free(copy);
		return TH_ERR_ALLOC;
	}
	s->n++;
	return 0;
}

static void
strset_free(struct strset *s)
{
	tdestroy(s->root, free);
	memset(s, 0, sizeof(*s));
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly 2 * len hex digits. */
static int
hex_decode(const char *s, size_t slen, uint8_t *out, size_t len)
{
	size_t i;
	int hi, lo;

	if (slen != 2 * len)
		return -1;
	for (i = 0; i < len; i++) {
		if ((hi = hexval(s[2 * i])) < 0 ||
		    (lo = hexval(s[2 * i + 1])) < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void
hex_encode(const uint8_t *p, size_t len, char *out)
{
	size_t i;

	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
	out[2 * len] = '\0';
}

static const char *
bank_name(uint16_t alg)
{
	return alg == AVERIFY_ALG_SHA1 ? "sha1" : alg == AVERIFY_ALG_SHA256 ?
	    "sha256" : "?";
}

static size_t
bank_len(uint16_t alg)
{
	return alg == AVERIFY_ALG_SHA1 ? 20 : 32;
}

/* "sha1" / "sha256" at s, followed by ':'; *alg and the rest. */
static const char *
parse_bank(const char *s, uint16_t *alg)
{
	if (strncmp(s, "sha256:", 7) == 0) {
		*alg = AVERIFY_ALG_SHA256;
		return s + 7;
	}
	if (strncmp(s, "sha1:", 5) == 0) {
		*alg = AVERIFY_ALG_SHA1;
		return s + 5;
	}
	return NULL;
}

/* A PCR number 0-23 without leading zeros. */
static const char *
parse_pcr(const char *s, unsigned *n)
{
	if (*s < '0' || *s > '9')
		return NULL;
	*n = (unsigned)(*s++ - '0');
	if (*n != 0 && *s >= '0' && *s <= '9')
		*n = *n * 10 + (unsigned)(*s++ - '0');
	return *n < AVERIFY_PCRS_MAX ? s : NULL;
}

/* A selection as tpm/tpm.c and the log writer spell it: "BANK:N,N,..."
 * banks joined by '+', each bank at most once, PCRs distinct. */
static int
parse_selection(const char *s, struct sel_bank *sel, size_t *nsel,
    size_t *npcrs)
{
	unsigned n;
	size_t i;

	*nsel = *npcrs = 0;
	for (;;) {
		if (*nsel == SEL_BANKS_MAX ||
		    (s = parse_bank(s, &sel[*nsel].alg)) == NULL)
			return -1;
		for (i = 0; i < *nsel; i++)
			if (sel[i].alg == sel[*nsel].alg)
				return -1;
		sel[*nsel].mask = 0;
		for (;;) {
			if ((s = parse_pcr(s, &n)) == NULL ||
			    (sel[*nsel].mask & (1u << n)))
				return -1;
			sel[*nsel].mask |= 1u << n;
			(*npcrs)++;
			if (*s != ',')
				break;
			s++;
		}
		(*nsel)++;
		if (*s == '\0')
			return 0;
		if (*s++ != '+')
			return -1;
	}
}

/* ---- TPM structures ---- */

struct rd {
	const uint8_t	*p;
	size_t		 len, off;
};

static int
rd_bytes(struct rd *r, size_t n, const char *what, const uint8_t **out)
{
	if (r->len - r->off < n)
		return th_fail(TH_ERR_TRUNCATED, "%s: input ends after %zu "
		    "bytes", what, r->len);
	*out = r->p + r->off;
	r->off += n;
	return 0;
}

static int
rd_u8(struct rd *r, const char *what, uint8_t *v)
{
	const uint8_t *p = NULL;
	int e;

	if ((e = rd_bytes(r, 1, what, &p)) != 0)
		return e;
	*v = p[0];
	return 0;
}

static int
rd_u16(struct rd *r, const char *what, uint16_t *v)
{
	const uint8_t *p = NULL;
	int e;

	if ((e = rd_bytes(r, 2, what, &p)) != 0)
		return e;
	*v = (uint16_t)(p[0] << 8 | p[1]);
	return 0;
}

static int
rd_u32(struct rd *r, const char *what, uint32_t *v)
{
	const uint8_t *p = NULL;
	int e;

	if ((e = rd_bytes(r, 4, what, &p)) != 0)
		return e;
	*v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	return 0;
}

static int
rd_u64(struct rd *r, const char *what, uint64_t *v)
{
	uint32_t hi, lo;
	int e;

	if ((e = rd_u32(r, what, &hi)) != 0 || (e = rd_u32(r, what, &lo)) != 0)
		return e;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

/* A TPM2B: u16 size, then size (at most max) bytes copied to out. */
static int
rd_tpm2b(struct rd *r, const char *what, uint8_t *out, size_t max,
    size_t *len)
{
	const uint8_t *p = NULL;
	uint16_t n;
	int e;

	if ((e = rd_u16(r, what, &n)) != 0)
		return e;
	if (n > max)
		return th_fail(TH_ERR_TOO_LONG, "%s: size %u exceeds %zu", what,
		    n, max);
	if ((e = rd_bytes(r, n, what, &p)) != 0)
		return e;
	memcpy(out, p, n);
	*len = n;
	return 0;
}

int
averify_parse_attest(const uint8_t *p, size_t len, struct averify_attest *a)
{
	struct rd r = { p, len, 0 };
	const uint8_t *sel = NULL;
	uint32_t count;
	size_t i;
	int e;

	memset(a, 0, sizeof(*a));
	if ((e = rd_u32(&r, "magic", &a->magic)) != 0)
		return e;
	if (a->magic != AVERIFY_TPM_GENERATED)
		return th_fail(TH_ERR_INVALID, "magic 0x%08x is not "
		    "TPM_GENERATED_VALUE", a->magic);
	if ((e = rd_u16(&r, "type", &a->type)) != 0)
		return e;
	if (a->type != AVERIFY_ST_ATTEST_QUOTE)
		return th_fail(TH_ERR_INVALID, "type 0x%04x is not a quote",
		    a->type);
	if ((e = rd_tpm2b(&r, "qualifiedSigner", a->signer, AVERIFY_NAME_MAX,
	    &a->signer_len)) != 0 ||
	    (e = rd_tpm2b(&r, "extraData", a->extra, AVERIFY_DATA_MAX,
	    &a->extra_len)) != 0 ||
	    (e = rd_u64(&r, "clock", &a->clock)) != 0 ||
	    (e = rd_u32(&r, "resetCount", &a->reset_count)) != 0 ||
	    (e = rd_u32(&r, "restartCount", &a->restart_count)) != 0 ||
	    (e = rd_u8(&r, "safe", &a->safe)) != 0 ||
	    (e = rd_u64(&r, "firmwareVersion", &a->firmware)) != 0 ||
	    (e = rd_u32(&r, "pcrSelect.count", &count)) != 0)
		return e;
	if (a->safe > 1)
		return th_fail(TH_ERR_INVALID, "safe is %u, not YES or NO",
		    a->safe);
	if (count > AVERIFY_BANKS_MAX)
		return th_fail(TH_ERR_TOO_LONG, "pcrSelect.count %u exceeds %d",
		    count, AVERIFY_BANKS_MAX);
	a->nbanks = count;
	for (i = 0; i < count; i++) {
		if ((e = rd_u16(&r, "pcrSelections.hash",
		    &a->banks[i].alg)) != 0 ||
		    (e = rd_u8(&r, "pcrSelections.sizeofSelect",
		    &a->banks[i].size)) != 0)
			return e;
		if (a->banks[i].size > AVERIFY_SELECT_MAX)
			return th_fail(TH_ERR_TOO_LONG, "sizeofSelect %u exceeds "
			    "%d", a->banks[i].size, AVERIFY_SELECT_MAX);
		if ((e = rd_bytes(&r, a->banks[i].size, "pcrSelect",
		    &sel)) != 0)
			return e;
		memcpy(a->banks[i].select, sel, a->banks[i].size);
	}
	if ((e = rd_tpm2b(&r, "pcrDigest", a->pcr_digest, AVERIFY_DIGEST_MAX,
	    &a->pcr_digest_len)) != 0)
		return e;
	if (r.off != len)
		return th_fail(TH_ERR_INVALID, "%zu bytes after the quote",
		    len - r.off);
	return 0;
}

int
averify_parse_sig(const uint8_t *p, size_t len, struct averify_sig *s)
{
	struct rd r = { p, len, 0 };
	int e;

	memset(s, 0, sizeof(*s));
	if ((e = rd_u16(&r, "sigAlg", &s->alg)) != 0)
		return e;
	if (s->alg != AVERIFY_ALG_ECDSA)
		return th_fail(TH_ERR_INVALID, "sigAlg 0x%04x is not ECDSA",
		    s->alg);
	if ((e = rd_u16(&r, "hash", &s->hash)) != 0)
		return e;
	if (s->hash != AVERIFY_ALG_SHA256)
		return th_fail(TH_ERR_INVALID, "hash 0x%04x is not SHA-256",
		    s->hash);
	if ((e = rd_tpm2b(&r, "signatureR", s->r, AVERIFY_ECC_MAX,
	    &s->rlen)) != 0 ||
	    (e = rd_tpm2b(&r, "signatureS", s->s, AVERIFY_ECC_MAX,
	    &s->slen)) != 0)
		return e;
	if (s->rlen == 0 || s->slen == 0)
		return th_fail(TH_ERR_INVALID, "empty r or s");
	if (r.off != len)
		return th_fail(TH_ERR_INVALID, "%zu bytes after the signature",
		    len - r.off);
	return 0;
}

/* ECDSA P-256 over SHA-256(msg) with (r, s) as big-endian integers. */
static int
ecdsa_verify(EVP_PKEY *key, const uint8_t *r, size_t rlen, const uint8_t *s,
    size_t slen, const uint8_t *msg, size_t msglen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t *der = NULL;
	int derlen, ret = th_fail(TH_ERR_CRYPTO, "bad signature");

	if (jwk_pkey_alg(key) != TH_ALG_ES256)
		return th_fail(TH_ERR_CRYPTO, "the key is not EC P-256");
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (br = BN_bin2bn(r, (int)rlen, NULL)) == NULL ||
	    (bs = BN_bin2bn(s, (int)slen, NULL)) == NULL ||
	    !ECDSA_SIG_set0(es, br, bs))
		goto out;
	br = bs = NULL;
	if ((derlen = i2d_ECDSA_SIG(es, &der)) <= 0 ||
	    (md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) <= 0)
		goto out;
	if (EVP_DigestVerify(md, der, (size_t)derlen, msg, msglen) == 1)
		ret = 0;
 out:
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return ret;
}

int
averify_quote_sig(EVP_PKEY *ak, const uint8_t *attest, size_t len,
    const struct averify_sig *sig)
{
	if (sig->alg != AVERIFY_ALG_ECDSA || sig->hash != AVERIFY_ALG_SHA256 ||
	    sig->rlen == 0 || sig->rlen > AVERIFY_ECC_MAX || sig->slen == 0 ||
	    sig->slen > AVERIFY_ECC_MAX)
		return th_fail(TH_ERR_CRYPTO, "not an ECDSA SHA-256 signature");
	return ecdsa_verify(ak, sig->r, sig->rlen, sig->s, sig->slen, attest,
	    len);
}

int
averify_token_sig(EVP_PKEY *ak, const uint8_t sig[64], const char *qual)
{
	char msg[sizeof(TOKEN_SIG_PREFIX) + HASH_B64];

	if ((size_t)snprintf(msg, sizeof(msg), "%s%s", TOKEN_SIG_PREFIX,
	    qual) >= sizeof(msg))
		return th_fail(TH_ERR_INVALID, "qualifying data too long");
	return ecdsa_verify(ak, sig, 32, sig + 32, 32, (const uint8_t *)msg,
	    strlen(msg));
}

/* 1 if the 32-byte s exceeds n / 2 (or on error). */
static int
high_s(const uint8_t s[32])
{
	BIGNUM *n = BN_bin2bn(p256_order, 32, NULL), *v = BN_bin2bn(s, 32, NULL);
	int high = 1;

	if (n != NULL && v != NULL && BN_rshift1(n, n))
		high = BN_cmp(v, n) > 0;
	BN_free(n);
	BN_free(v);
	return high;
}

/* ---- setup ---- */

int
averify_new(EVP_PKEY *root, struct averify **out)
{
	struct averify *v;

	*out = NULL;
	if (root == NULL || jwk_pkey_alg(root) == TH_ALG_NONE)
		return th_fail(TH_ERR_INVALID, "the root key is not EC P-256 or "
		    "RSA");
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return TH_ERR_ALLOC;
	EVP_PKEY_up_ref(root);
	v->root = root;
	v->fail_step = -1;
	*out = v;
	return 0;
}

void
averify_set_threads(struct averify *v, int n)
{
	v->threads = n > 0 ? n : 0;
}

/* Threads to verify with, this one included. */
static long
threads(const struct averify *v)
{
	return v->threads > 0 ? v->threads : sysconf(_SC_NPROCESSORS_ONLN);
}

void
averify_free(struct averify *v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < v->npending; i++)
		json_object_put(v->pending[i]);
	vpool_free(v->sigs);
	chain_ctx_free(v->chains);
	store_close(v->st);
	EVP_PKEY_free(v->root);
	EVP_PKEY_free(v->ak);
	jws_verifier_free(v->capver);
	EVP_PKEY_free(v->cap);
	EVP_PKEY_free(v->atten);
	X509_STORE_free(v->ek_ca);
	free(v->leaves);
	free(v->kinds);
	strset_free(&v->humans);
	strset_free(&v->agents);
	strset_free(&v->intent_jtis);
	free(v);
}

int
averify_set_ek_ca(struct averify *v, const char *pem_path)
{
	X509_STORE *s;

	if ((s = X509_STORE_new()) == NULL)
		return TH_ERR_ALLOC;
	if (X509_STORE_load_file(s, pem_path) != 1) {
		X509_STORE_free(s);
		return th_fail(TH_ERR_INVALID, "%s: no PEM certificate could "
		    "be read", pem_path);
	}
	X509_STORE_free(v->ek_ca);
	v->ek_ca = s;
	return 0;
}

int
averify_expect_pcrs(struct averify *v, const char *spec)
{
	struct pcr_expect *e;
	const char *s = spec, *end;
	uint16_t alg;
	unsigned n;
	size_t i;

	for (;;) {
		if ((s = parse_bank(s, &alg)) == NULL)
			goto bad;
		for (;;) {
			if ((s = parse_pcr(s, &n)) == NULL || *s++ != '=')
				goto bad;
			for (end = s; hexval(*end) >= 0; end++)
				;
			for (i = 0; i < v->npcrs; i++)
				if (v->pcrs[i].alg == alg && v->pcrs[i].pcr == n)
					goto bad;
			if (v->npcrs == sizeof(v->pcrs) / sizeof(v->pcrs[0]))
				goto bad;
			e = &v->pcrs[v->npcrs];
			e->alg = alg;
			e->pcr = n;
			e->len = bank_len(alg);
			if (hex_decode(s, (size_t)(end - s), e->value, e->len) != 0)
				goto bad;
			v->npcrs++;
			s = end;
			if (*s != ',')
				break;
			s++;
		}
		if (*s == '\0')
			return 0;
		if (*s++ != '+')
			goto bad;
	}
 bad:
	return th_fail(TH_ERR_INVALID, "bad PCR values \"%.64s\" (e.g. "
	    "sha256:0=HEX,7=HEX; each PCR once, HEX the bank's digest size)",
	    spec);
}

int
averify_expect_checkpoint(struct averify *v, const char *spec)
{
	struct cp_expect *e;
	char *end;
	unsigned long long n;
	size_t i;

	if (v->nexpect == AVERIFY_EXPECT_MAX)
		return th_fail(TH_ERR_TOO_LONG, "at most %d expected checkpoints",
		    AVERIFY_EXPECT_MAX);
	if (spec[0] < '1' || spec[0] > '9' ||
	    (n = strtoull(spec, &end, 10)) == 0 || *end != ':' ||
	    n > AVERIFY_CHECKPOINTS_MAX || strlen(end + 1) != JWS_HASH_LEN ||
	    strspn(end + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvw"
	    "xyz0123456789-_") != JWS_HASH_LEN)
		return th_fail(TH_ERR_INVALID, "bad expected checkpoint "
		    "\"%.64s\" (N:QUAL, QUAL the 43-character qualifying "
		    "data)", spec);
	for (i = 0; i < v->nexpect; i++)
		if (v->expect[i].n == n)
			return th_fail(TH_ERR_INVALID, "checkpoint %llu expected "
			    "twice", n);
	e = &v->expect[v->nexpect++];
	e->n = n;
	snprintf(e->qual, sizeof(e->qual), "%s", end + 1);
	e->seen = 0;
	return 0;
}

/* ---- step 1: the header ---- */

/* A JWK member into a key; ES256 only when es256. */
static int
header_key(struct averify *v, struct json_object *h, const char *name,
    int optional, int es256, EVP_PKEY **out)
{
	struct json_object *o;
	int r;

	*out = NULL;
	if (!json_object_object_get_ex(h, name, &o) ||
	    json_object_is_type(o, json_type_null)) {
		if (optional)
			return 0;
		return fail(v, 1, "header: no \"%s\" key", name);
	}
	if ((r = jwk_to_pkey(o, out)) != 0)
		return fail(v, 1, "header: \"%s\" is not a valid JWK: %s", name,
		    th_errmsg(r));
	if (es256 && jwk_pkey_alg(*out) != TH_ALG_ES256)
		return fail(v, 1, "header: \"%s\" is not an EC P-256 key",
		    name);
	return 0;
}

static int
check_ek(struct averify *v, struct json_object *h)
{
	struct json_object *o;
	X509_STORE_CTX *ctx = NULL;
	X509 *cert = NULL;
	struct buf *der = NULL;
	const uint8_t *p = NULL;
	int r, err;

	if (!json_object_object_get_ex(h, "ek_cert", &o) ||
	    json_object_is_type(o, json_type_null)) {
		if (v->ek_ca == NULL)
			return 0;
		return fail(v, 1, "header: --ek-ca given, but the header has no "
		    "ek_cert");
	}
	if (!json_object_is_type(o, json_type_string))
		return fail(v, 1, "header: ek_cert is not a string");
	if ((der = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = b64_decode(json_object_get_string(o), 16384, der)) != 0) {
		r = fail(v, 1, "header: ek_cert: %s", th_errmsg(r));
		goto out;
	}
	p = buf_ptr(der);
	if ((cert = d2i_X509(NULL, &p, (long)buf_len(der))) == NULL ||
	    p != buf_ptr(der) + buf_len(der)) {
		r = fail(v, 1, "header: ek_cert is not a DER certificate");
		goto out;
	}
	jws_hash(buf_ptr(der), buf_len(der), v->ek_hash);	/* activation's */
	r = 0;
	if (v->ek_ca == NULL)
		goto out;
	if ((ctx = X509_STORE_CTX_new()) == NULL ||
	    !X509_STORE_CTX_init(ctx, v->ek_ca, cert, NULL)) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_verify_cert(ctx) != 1) {
		err = X509_STORE_CTX_get_error(ctx);
		r = fail(v, 1, "header: ek_cert does not chain to --ek-ca: %s",
		    X509_verify_cert_error_string(err));
		goto out;
	}
	v->ek_checked = 1;
 out:
	X509_STORE_CTX_free(ctx);
	X509_free(cert);
	buf_free(der);
	return r;
}

static int
is_null(struct json_object *h, const char *name)
{
	struct json_object *o;

	return !json_object_object_get_ex(h, name, &o) ||
	    json_object_is_type(o, json_type_null);
}

/* A token-signature log has no TPM, so nothing of one: an EK certificate or
 * activation there would let a token's signature pass for the TPM's word.
 * And an EK certificate stands for the machine only with the activation
 * binding the AK to it. */
static int
check_no_tpm(struct averify *v, struct json_object *h)
{
	if (v->ckind == CK_TOKEN && (!is_null(h, "ek_cert") ||
	    !is_null(h, "activation") || !is_null(h, "pcr_selection")))
		return fail(v, 1, "header: a token-signature log has no TPM, "
		    "but ek_cert, activation or pcr_selection is set");
	if (!is_null(h, "ek_cert") && is_null(h, "activation"))
		return fail(v, 1, "header: ek_cert without an activation (the "
		    "AK is not bound to that EK)");
	return 0;
}

/* Whether claim name is the JWK of key (equal RFC 7638 thumbprints), or
 * null when key is NULL. */
static int
claim_is_key(struct json_object *claims, const char *name, EVP_PKEY *key)
{
	struct json_object *o;
	EVP_PKEY *pk = NULL;
	int eq;

	if (!json_object_object_get_ex(claims, name, &o))
		return 0;
	if (json_object_is_type(o, json_type_null))
		return key == NULL;
	if (key == NULL || jwk_to_pkey(o, &pk) != 0)
		return 0;
	eq = EVP_PKEY_eq(pk, key) == 1;
	EVP_PKEY_free(pk);
	return eq;
}

/* A statement of the root's in the header (member what, a string): a JWS
 * of type typ signed by the root, iss "threshold:root", sub this
 * instance, an integer iat.  *out the parsed statement on success. */
static int
root_statement(struct averify *v, struct json_object *o, const char *what,
    const char *typ, struct jws **out)
{
	struct jws *j = NULL;
	const char *s;
	int64_t iat;
	int r;

	*out = NULL;
	if (!json_object_is_type(o, json_type_string))
		return fail(v, 1, "header: %s is not a string", what);
	if ((r = jws_parse(json_object_get_string(o),
	    (size_t)json_object_get_string_len(o), &j)) != 0)
		return fail(v, 1, "header: %s: %s", what, th_errmsg(r));
	if (strcmp(j->typ, typ) != 0)
		r = fail(v, 1, "header: %s is not a %s", what, typ);
	else if (jws_verify(j, v->root) != 0)
		r = fail(v, 1, "header: %s is not signed by the root", what);
	else if (json_get_string(j->claims, "iss", &s) != 0 ||
	    strcmp(s, "threshold:root") != 0 ||
	    json_get_string(j->claims, "sub", &s) != 0 ||
	    strcmp(s, v->instance) != 0 ||
	    json_get_int64(j->claims, "iat", &iat) != 0)
		r = fail(v, 1, "header: %s: iss, sub (this instance) or iat "
		    "is wrong", what);
	if (r != 0) {
		jws_free(j);
		return r;
	}
	*out = j;
	return 0;
}

/* The root's word that the AK was activated against the EK certificate in
 * this header: a threshold-ak-cert+jwt (docs/audit-format.md, "Header"). */
static int
check_activation(struct averify *v, struct json_object *h)
{
	struct json_object *o, *ek;
	struct jws *j = NULL;
	const char *s;
	int r;

	if (!json_object_object_get_ex(h, "activation", &o) ||
	    json_object_is_type(o, json_type_null))
		return 0;
	if (!json_object_object_get_ex(h, "ek_cert", &ek) ||
	    !json_object_is_type(ek, json_type_string))
		return fail(v, 1, "header: activation without an ek_cert");
	if ((r = root_statement(v, o, "activation", TYP_AK_CERT, &j)) != 0)
		return r;
	if (json_get_string(j->claims, "method", &s) != 0 ||
	    strcmp(s, "TPM2_ActivateCredential") != 0) {
		r = fail(v, 1, "header: activation: method is not "
		    "TPM2_ActivateCredential");
		goto out;
	}
	if (json_get_string(j->claims, "ek_cert", &s) != 0 ||
	    strcmp(s, v->ek_hash) != 0) {
		r = fail(v, 1, "header: activation is for another EK "
		    "certificate");
		goto out;
	}
	if (!claim_is_key(j->claims, "ak", v->ak)) {
		r = fail(v, 1, "header: activation is for another attestation "
		    "key");
		goto out;
	}
	v->ak_activated = 1;
	r = 0;
 out:
	jws_free(j);
	return r;
}

/* The root's word that the header's capability, attenuation and
 * checkpoint keys are its signer's: a threshold-keys+jwt
 * (docs/audit-format.md, "Header").  Without it anyone could write a
 * header with keys of their own and sign capabilities and checkpoints. */
static int
check_keys(struct averify *v, struct json_object *h, const char *ckind)
{
	static const char *const members[] = { "iss", "sub", "iat",
	    "checkpoint_key", "ak", "capability", "attenuation" };
	struct json_object *o;
	struct jws *j = NULL;
	const char *s;
	int r;

	if (!json_object_object_get_ex(h, "keys", &o) ||
	    !json_object_is_type(o, json_type_string))
		return fail(v, 1, "header: no keys statement (the root's word "
		    "for the capability, attenuation and checkpoint keys)");
	if ((r = root_statement(v, o, "keys", TYP_KEYS_CERT, &j)) != 0)
		return r;
	if (json_only_members(j->claims, members,
	    sizeof(members) / sizeof(members[0])) != 0) {
		r = fail(v, 1, "header: keys: a member other than %s",
		    "iss, sub, iat, checkpoint_key, ak, capability, "
		    "attenuation");
		goto out;
	}
	if (json_get_string(j->claims, "checkpoint_key", &s) != 0 ||
	    strcmp(s, ckind) != 0) {
		r = fail(v, 1, "header: keys: the root names another "
		    "checkpoint_key");
		goto out;
	}
	if (!claim_is_key(j->claims, "ak", v->ak)) {
		r = fail(v, 1, "header: ak is not the key the root names");
		goto out;
	}
	if (!claim_is_key(j->claims, "capability", v->cap)) {
		r = fail(v, 1, "header: capability is not the key the root "
		    "names");
		goto out;
	}
	if (!claim_is_key(j->claims, "attenuation", v->atten)) {
		r = fail(v, 1, "header: attenuation is not the key the root "
		    "names");
		goto out;
	}
	r = 0;
 out:
	jws_free(j);
	return r;
}

int
averify_header(struct averify *v, struct json_object *h)
{
	static const char *const members[] = { "v", "log", "instance",
	    "created", "checkpoint_key", "ak", "pcr_selection", "ek_cert",
	    "root", "capability", "attenuation", "activation", "keys" };
	struct json_object *o;
	char tp_log[JWK_THUMBPRINT_LEN + 1], tp_mine[JWK_THUMBPRINT_LEN + 1];
	EVP_PKEY *hroot = NULL;
	struct buf *canon = NULL;
	const char *s, *ckind;
	uint8_t hh[32];
	int64_t n;
	long ncpu;
	int r;

	if (v->have_header)
		return fail(v, 0, "header: a second header");
	v->have_header = 1;
	if (!json_object_is_type(h, json_type_object))
		return fail(v, 1, "header: not a JSON object");
	if ((r = json_only_members(h, members,
	    sizeof(members) / sizeof(members[0]))) != 0)
		return fail(v, 1, "header: %s", th_errmsg(r));
	if (json_get_int64(h, "v", &n) != 0 || n != 1)
		return fail(v, 1, "header: v is not 1");
	if (json_get_string(h, "log", &s) != 0 ||
	    strcmp(s, "threshold-audit") != 0)
		return fail(v, 1, "header: log is not \"threshold-audit\"");
	if ((r = json_get_string(h, "instance", &s)) != 0 ||
	    (r = json_get_int64(h, "created", &n)) != 0)
		return fail(v, 1, "header: %s", th_errmsg(r));
	if (!proto_subject_valid((const uint8_t *)s, strlen(s)))
		return fail(v, 1, "header: instance is not 1 to %d characters "
		    "of A-Z a-z 0-9 : _ . -", PROTO_SUBJECT_MAX);
	snprintf(v->instance, sizeof(v->instance), "%s", s);
	if ((r = json_get_string(h, "checkpoint_key", &s)) != 0)
		return fail(v, 1, "header: %s", th_errmsg(r));
	ckind = s;
	if (strcmp(s, "tpm-quote") == 0)
		v->ckind = CK_QUOTE;
	else if (strcmp(s, "token-signature") == 0)
		v->ckind = CK_TOKEN;
	else
		return fail(v, 1, "header: checkpoint_key \"%.32s\" is neither "
		    "tpm-quote nor token-signature", s);
	if (json_object_object_get_ex(h, "pcr_selection", &o) &&
	    !json_object_is_type(o, json_type_null)) {
		if (!json_object_is_type(o, json_type_string) ||
		    parse_selection(json_object_get_string(o), v->sel, &v->nsel,
		    &v->nsel_pcrs) != 0)
			return fail(v, 1, "header: pcr_selection is not "
			    "\"BANK:N,N,...\" (sha1 or sha256, PCRs 0-23)");
	} else if (v->ckind == CK_QUOTE)
		return fail(v, 1, "header: no pcr_selection");
	if ((r = header_key(v, h, "ak", 0, 1, &v->ak)) != 0 ||
	    (r = header_key(v, h, "root", 0, 0, &hroot)) != 0 ||
	    (r = header_key(v, h, "capability", 0, 1, &v->cap)) != 0 ||
	    (r = header_key(v, h, "attenuation", 1, 1, &v->atten)) != 0)
		goto out;
	if ((r = jws_verifier_new(v->cap, &v->capver)) != 0) {
		r = fail(v, 1, "header: capability key: %s", th_errmsg(r));
		goto out;
	}
	if (jwk_thumbprint(hroot, tp_log) != 0 ||
	    jwk_thumbprint(v->root, tp_mine) != 0) {
		r = fail(v, 1, "header: cannot compute key thumbprints");
		goto out;
	}
	if (strcmp(tp_log, tp_mine) != 0) {
		r = fail(v, 1, "header: root is not the auditor's root key "
		    "(--root): log %s, given %s", tp_log, tp_mine);
		goto out;
	}
	if ((r = check_keys(v, h, ckind)) != 0 ||
	    (r = check_no_tpm(v, h)) != 0 || (r = check_ek(v, h)) != 0 ||
	    (r = check_activation(v, h)) != 0)
		goto out;
	if ((canon = buf_new()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if ((r = canonical(h, canon)) != 0) {
		r = fail(v, 1, "header: %s", th_errmsg(r));
		goto out;
	}
	sha256(buf_ptr(canon), buf_len(canon), hh);
	b64url_digest(hh, v->hh);
	snprintf(v->cp_prev, sizeof(v->cp_prev), "%s", v->hh);
	snprintf(v->last_hash, sizeof(v->last_hash), "%s", v->hh);
	if ((r = store_open(":memory:", &v->st)) != 0 ||
	    (r = chain_ctx_new(v->root, v->atten, &v->chains)) != 0)
		goto out;
	/* With more than one CPU, capability signatures (the bulk of the
	 * work) are checked on other threads; without, or if they cannot
	 * start, here. */
	ncpu = threads(v);
	if (ncpu > 1 && vpool_new(v->cap, ncpu > 4 ? 4 : (int)ncpu,
	    &v->sigs) != 0)
		v->sigs = NULL;
 out:
	EVP_PKEY_free(hroot);
	buf_free(canon);
	if (r == 0 && v->fail_step >= 0)
		r = TH_ERR_DENIED;
	return r;
}

/* ---- steps 3, 4 and 7: checkpoints ---- */

static int
check_pcr_values(struct averify *v, uint64_t k, struct json_object *cp,
    const struct averify_attest *a)
{
	static const char *const members[] = { "bank", "pcr", "value" };
	struct json_object *vals, *e;
	uint8_t val[32], digest[32];
	uint8_t all[SEL_BANKS_MAX * AVERIFY_PCRS_MAX * 32];
	char got[65], want[65];
	const char *bank, *hex;
	size_t b, i, idx = 0, j, used = 0;
	int64_t pcr;
	unsigned n;

	/* The quoted selection is the header's, bank for bank. */
	if (a->nbanks != v->nsel)
		goto badsel;
	for (b = 0; b < v->nsel; b++) {
		uint32_t mask = 0;

		if (a->banks[b].alg != v->sel[b].alg)
			goto badsel;
		for (j = 0; j < a->banks[b].size; j++)
			mask |= (uint32_t)a->banks[b].select[j] << (8 * j);
		if (mask != v->sel[b].mask)
			goto badsel;
	}
	if (!json_object_object_get_ex(cp, "pcr_values", &vals) ||
	    !json_object_is_type(vals, json_type_array))
		return fail(v, 0, "checkpoint %llu: no pcr_values array",
		    (unsigned long long)k);
	if (json_object_array_length(vals) != v->nsel_pcrs)
		return fail(v, 3, "checkpoint %llu: pcr_values lists %zu PCRs, "
		    "the quote selects %zu", (unsigned long long)k,
		    json_object_array_length(vals), v->nsel_pcrs);
	for (b = 0; b < v->nsel; b++) {
		for (n = 0; n < AVERIFY_PCRS_MAX; n++) {
			if (!(v->sel[b].mask & (1u << n)))
				continue;
			e = json_object_array_get_idx(vals, idx++);
			if (!json_object_is_type(e, json_type_object) ||
			    json_only_members(e, members, 3) != 0 ||
			    json_get_string(e, "bank", &bank) != 0 ||
			    json_get_int64(e, "pcr", &pcr) != 0 ||
			    json_get_string(e, "value", &hex) != 0)
				return fail(v, 0, "checkpoint %llu: pcr_values "
				    "entry %zu is not {bank, pcr, value}",
				    (unsigned long long)k, idx);
			if (strcmp(bank, bank_name(v->sel[b].alg)) != 0 ||
			    pcr != (int64_t)n)
				return fail(v, 3, "checkpoint %llu: pcr_values "
				    "entry %zu is %.8s:%lld, the quote's "
				    "selection order says %s:%u",
				    (unsigned long long)k, idx, bank,
				    (long long)pcr, bank_name(v->sel[b].alg), n);
			if (hex_decode(hex, strlen(hex), val,
			    bank_len(v->sel[b].alg)) != 0)
				return fail(v, 3, "checkpoint %llu: PCR %s:%u "
				    "value is not %zu bytes of hex",
				    (unsigned long long)k, bank, n,
				    bank_len(v->sel[b].alg));
			memcpy(all + used, val, bank_len(v->sel[b].alg));
			used += bank_len(v->sel[b].alg);
			for (i = 0; i < v->npcrs; i++) {
				if (v->pcrs[i].alg != v->sel[b].alg ||
				    v->pcrs[i].pcr != n)
					continue;
				if (memcmp(v->pcrs[i].value, val,
				    v->pcrs[i].len) == 0)
					continue;
				hex_encode(val, v->pcrs[i].len, got);
				hex_encode(v->pcrs[i].value, v->pcrs[i].len,
				    want);
				return fail(v, 3, "checkpoint %llu: PCR %s:%u "
				    "is %s, expected %s (--pcrs)",
				    (unsigned long long)k, bank, n, got, want);
			}
		}
	}
	sha256(all, used, digest);
	if (a->pcr_digest_len != sizeof(digest) ||
	    memcmp(a->pcr_digest, digest, sizeof(digest)) != 0)
		return fail(v, 3, "checkpoint %llu: pcr_values do not match the "
		    "quote's pcrDigest", (unsigned long long)k);
	/* Every PCR the auditor named must be quoted. */
	for (i = 0; i < v->npcrs; i++) {
		for (b = 0; b < v->nsel; b++)
			if (v->sel[b].alg == v->pcrs[i].alg &&
			    (v->sel[b].mask & (1u << v->pcrs[i].pcr)))
				break;
		if (b == v->nsel)
			return fail(v, 3, "checkpoint %llu: PCR %s:%u (--pcrs) "
			    "is not quoted", (unsigned long long)k,
			    bank_name(v->pcrs[i].alg), v->pcrs[i].pcr);
	}
	return 0;
 badsel:
	return fail(v, 3, "checkpoint %llu: the quote's PCR selection is not "
	    "the header's pcr_selection", (unsigned long long)k);
}

static int
check_quote(struct averify *v, uint64_t k, struct json_object *cp,
    const uint8_t q[32], struct averify_attest *a)
{
	struct averify_sig sig;
	struct buf *att = buf_new(), *sb = buf_new();
	const char *s;
	int r;

	if (att == NULL || sb == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	if (json_get_string(cp, "attest", &s) != 0) {
		r = fail(v, 0, "checkpoint %llu: no attest string",
		    (unsigned long long)k);
		goto out;
	}
	if ((r = b64_decode(s, AVERIFY_B64_MAX, att)) != 0 ||
	    (r = averify_parse_attest(buf_ptr(att), buf_len(att), a)) != 0) {
		r = fail(v, 3, "checkpoint %llu: attest: %s",
		    (unsigned long long)k, th_errmsg(r));
		goto out;
	}
	json_get_string(cp, "sig", &s);
	if ((r = b64_decode(s, AVERIFY_B64_MAX, sb)) != 0 ||
	    (r = averify_parse_sig(buf_ptr(sb), buf_len(sb), &sig)) != 0) {
		r = fail(v, 3, "checkpoint %llu: sig: %s", (unsigned long long)k,
		    th_errmsg(r));
		goto out;
	}
	if (averify_quote_sig(v->ak, buf_ptr(att), buf_len(att), &sig) != 0) {
		r = fail(v, 3, "checkpoint %llu: quote signature does not verify "
		    "with the header's AK", (unsigned long long)k);
		goto out;
	}
	if (a->extra_len != 32 || memcmp(a->extra, q, 32) != 0) {
		r = fail(v, 3, "checkpoint %llu: the quote's extraData is not "
		    "the checkpoint's qualifying data (a replayed or foreign "
		    "quote)", (unsigned long long)k);
		goto out;
	}
	r = check_pcr_values(v, k, cp, a);
 out:
	buf_free(att);
	buf_free(sb);
	return r;
}

static int
check_token_sig(struct averify *v, uint64_t k, const char *sig,
    const char *qual)
{
	struct buf *b = buf_new();
	int r;

	if (b == NULL)
		return TH_ERR_ALLOC;
	if (b64_decode(sig, 64, b) != 0 || buf_len(b) != 64) {
		r = fail(v, 3, "checkpoint %llu: sig is not a 64-byte ES256 "
		    "signature", (unsigned long long)k);
		goto out;
	}
	if (high_s(buf_ptr(b) + 32)) {
		r = fail(v, 3, "checkpoint %llu: token signature has a high S "
		    "(not canonical)", (unsigned long long)k);
		goto out;
	}
	if (averify_token_sig(v->ak, buf_ptr(b), qual) != 0) {
		r = fail(v, 3, "checkpoint %llu: token signature does not "
		    "verify with the header's AK", (unsigned long long)k);
		goto out;
	}
	r = 0;
 out:
	buf_free(b);
	return r;
}

/* Step 4 for quote k, against the previous quote. */
static void
check_clock(struct averify *v, uint64_t k, const struct averify_attest *a)
{
	if (v->have_clock && active(v, 4)) {
		if (a->reset_count < v->reset)
			fail(v, 4, "checkpoint %llu: TPM clock went backwards "
			    "(reset %u -> %u)", (unsigned long long)k, v->reset,
			    a->reset_count);
		else if (a->reset_count == v->reset &&
		    a->restart_count < v->restart)
			fail(v, 4, "checkpoint %llu: TPM clock went backwards "
			    "(restart %u -> %u)", (unsigned long long)k,
			    v->restart, a->restart_count);
		else if (a->reset_count == v->reset && a->clock < v->clock)
			fail(v, 4, "checkpoint %llu: TPM clock went backwards "
			    "(clock %llu -> %llu ms)", (unsigned long long)k,
			    (unsigned long long)v->clock,
			    (unsigned long long)a->clock);
	}
	v->have_clock = 1;
	v->clock = a->clock;
	v->reset = a->reset_count;
	v->restart = a->restart_count;
}

static int
process_checkpoint(struct averify *v, struct json_object *cp)
{
	static const char *const members[] = { "first", "last", "log", "n",
	    "prev", "root", "qual", "kind", "attest", "sig", "pcrs",
	    "pcr_values" };
	struct json_object *stmt = NULL, *o;
	struct averify_attest a;
	const char *log, *prev, *root, *qual, *kind, *sig;
	char want[HASH_B64];
	uint8_t h[32];
	uint64_t k = v->ncp + 1;
	int64_t n, first, last;
	size_t i;
	int r;

	if (!active(v, 3))
		return 0;
	if (!json_object_is_type(cp, json_type_object))
		return fail(v, 0, "checkpoint %llu: not a JSON object",
		    (unsigned long long)k);
	if ((r = json_only_members(cp, members,
	    sizeof(members) / sizeof(members[0]))) != 0 ||
	    (r = json_get_int64(cp, "n", &n)) != 0 ||
	    (r = json_get_int64(cp, "first", &first)) != 0 ||
	    (r = json_get_int64(cp, "last", &last)) != 0 ||
	    (r = json_get_string(cp, "log", &log)) != 0 ||
	    (r = json_get_string(cp, "prev", &prev)) != 0 ||
	    (r = json_get_string(cp, "root", &root)) != 0 ||
	    (r = json_get_string(cp, "qual", &qual)) != 0 ||
	    (r = json_get_string(cp, "kind", &kind)) != 0 ||
	    (r = json_get_string(cp, "sig", &sig)) != 0)
		return fail(v, 0, "checkpoint %llu: %s", (unsigned long long)k,
		    th_errmsg(r));
	if (n != (int64_t)k)
		return fail(v, 3, n > (int64_t)k ? "checkpoint %llu is missing "
		    "(checkpoint %lld follows checkpoint %llu)" :
		    "checkpoint %llu: found checkpoint %lld again, or out of "
		    "order (after checkpoint %llu)", (unsigned long long)k,
		    (long long)n, (unsigned long long)k - 1);
	if (strcmp(log, v->hh) != 0)
		return fail(v, 3, "checkpoint %llu: log is not this log's header "
		    "hash", (unsigned long long)k);
	if (first != (int64_t)v->cp_last + 1 || last < first)
		return fail(v, 3, "checkpoint %llu: covers entries %lld..%lld, "
		    "but its batch must start at entry %llu",
		    (unsigned long long)k, (long long)first, (long long)last,
		    (unsigned long long)v->cp_last + 1);
	if (last > (int64_t)v->nentries)
		return fail(v, 3, "checkpoint %llu: covers entries %lld..%lld, "
		    "but the log ends at entry %llu", (unsigned long long)k,
		    (long long)first, (long long)last,
		    (unsigned long long)v->nentries);
	if (strcmp(prev, v->cp_prev) != 0)
		return k == 1 ? fail(v, 3, "checkpoint 1: prev is not the header "
		    "hash") : fail(v, 3, "checkpoint %llu: prev does not match "
		    "the hash of checkpoint %llu's statement",
		    (unsigned long long)k, (unsigned long long)k - 1);
	if ((r = merkle_root((const uint8_t (*)[MERKLE_HASH_LEN])
	    v->leaves + (first - 1), (size_t)(last - first + 1), h)) != 0)
		return r;
	b64url_digest(h, want);
	if (strcmp(root, want) != 0)
		return fail(v, 3, "checkpoint %llu: root does not match the "
		    "Merkle root of entries %lld..%lld", (unsigned long long)k,
		    (long long)first, (long long)last);
	/* Q = H(canonical(statement)); the next checkpoint's prev. */
	if ((r = stmt_make(first, last, log, n, prev, root, &stmt, h)) != 0)
		goto out;
	b64url_digest(h, want);
	if (strcmp(qual, want) != 0) {
		r = fail(v, 3, "checkpoint %llu: qual is not the hash of its "
		    "statement", (unsigned long long)k);
		goto out;
	}
	if (strcmp(kind, v->ckind == CK_QUOTE ? "tpm-quote" :
	    "token-signature") != 0) {
		r = fail(v, 3, "checkpoint %llu: kind \"%.32s\", but the "
		    "header's checkpoint_key is %s", (unsigned long long)k, kind,
		    v->ckind == CK_QUOTE ? "tpm-quote" : "token-signature");
		goto out;
	}
	if (v->ckind == CK_QUOTE) {
		if ((r = check_quote(v, k, cp, h, &a)) != 0)
			goto out;
		check_clock(v, k, &a);
		v->quotes++;
	} else {
		if (json_object_object_get_ex(cp, "attest", &o) ||
		    json_object_object_get_ex(cp, "pcrs", &o) ||
		    json_object_object_get_ex(cp, "pcr_values", &o)) {
			r = fail(v, 0, "checkpoint %llu: a token-signature "
			    "checkpoint carries attest, pcrs or pcr_values",
			    (unsigned long long)k);
			goto out;
		}
		if ((r = check_token_sig(v, k, sig, qual)) != 0)
			goto out;
		v->token_signed++;
	}
	v->ncp = k;
	v->cp_last = (uint64_t)last;
	snprintf(v->cp_prev, sizeof(v->cp_prev), "%s", want);
	snprintf(v->last_qual, sizeof(v->last_qual), "%s", qual);
	for (i = 0; i < v->nexpect; i++) {
		if (v->expect[i].n != k)
			continue;
		v->expect[i].seen = 1;
		if (strcmp(v->expect[i].qual, qual) != 0 && active(v, 7))
			fail(v, 7, "checkpoint %llu: qualifying data %s, but "
			    "the auditor expected %s (--expect-checkpoint): "
			    "this is not the log the auditor saw",
			    (unsigned long long)k, qual, v->expect[i].qual);
	}
	r = 0;
 out:
	json_object_put(stmt);
	return r;
}

/* A checkpoint's "last" if it is an integer, else 0 (it is then processed
 * at once, and fails). */
static int64_t
cp_last_of(struct json_object *cp)
{
	int64_t last = 0;

	if (json_object_is_type(cp, json_type_object))
		json_get_int64(cp, "last", &last);
	return last;
}

/* Processes queued checkpoints whose entries have all been read (all of
 * them at the end). */
static int
drain(struct averify *v, int all)
{
	struct json_object *cp;
	int r;

	while (v->npending > 0 && !decided(v) &&
	    (all || cp_last_of(v->pending[0]) <= (int64_t)v->nentries)) {
		cp = v->pending[0];
		memmove(v->pending, v->pending + 1,
		    (v->npending - 1) * sizeof(*v->pending));
		v->npending--;
		r = process_checkpoint(v, cp);
		json_object_put(cp);
		if (r != 0 && r != TH_ERR_DENIED)
			return r;
	}
	return decided(v) ? TH_ERR_DENIED : 0;
}

/* Only a checkpoint of a checkpoint's size waits for its entries: up to
 * AVERIFY_PENDING_MAX of them are held, parsed, and a crafted one
 * (megabytes of "[{},{},...]") would each cost hundreds of MiB. */
static int
cp_holdable(struct json_object *cp)
{
	size_t len = 0, members = 0, containers = 0;

	if (!json_object_is_type(cp, json_type_object))
		return 0;
	json_count(cp, &members, &containers);
	if (containers > AVERIFY_PENDING_CONTAINERS)
		return 0;
	(void)json_object_to_json_string_length(cp, JSON_C_TO_STRING_PLAIN,
	    &len);
	return len > 0 && len <= AVERIFY_PENDING_BYTES;
}

int
averify_checkpoint(struct averify *v, struct json_object *cp)
{
	int r;

	if (!v->have_header)
		return fail(v, 0, "checkpoint before the header");
	if (decided(v))
		return TH_ERR_DENIED;
	if (++v->ncp_read > AVERIFY_CHECKPOINTS_MAX)
		return fail(v, 0, "more than %d checkpoints",
		    AVERIFY_CHECKPOINTS_MAX);
	if (v->npending == 0 && cp_last_of(cp) <= (int64_t)v->nentries) {
		r = process_checkpoint(v, cp);
		if (r != 0 && r != TH_ERR_DENIED)
			return r;
		return decided(v) ? TH_ERR_DENIED : 0;
	}
	if (v->npending == AVERIFY_PENDING_MAX)
		return fail(v, 0, "more than %d checkpoints ahead of the entries "
		    "they cover", AVERIFY_PENDING_MAX);
	if (!cp_holdable(cp))
		return fail(v, 0, "checkpoint %llu (read ahead of the entries it "
		    "covers) has more than %d objects and arrays or %d bytes: "
		    "not a checkpoint", (unsigned long long)(v->ncp +
		    v->npending + 1), AVERIFY_PENDING_CONTAINERS,
		    AVERIFY_PENDING_BYTES);
	v->pending[v->npending++] = json_object_get(cp);
	return 0;
}

/* ---- steps 2, 5 and 6: entries ---- */

static int
entry_string(struct averify *v, uint64_t seq, struct json_object *e,
    const char *key, size_t max, const char **out)
{
	int r;

	if ((r = json_get_string(e, key, out)) != 0)
		return fail(v, 0, "entry %llu: %s", (unsigned long long)seq,
		    th_errmsg(r));
	if (strlen(*out) > max)
		return fail(v, 0, "entry %llu: \"%s\" longer than %zu bytes",
		    (unsigned long long)seq, key, max);
	return 0;
}

static int
entry_member(struct averify *v, uint64_t seq, struct json_object *e,
    const char *key, json_type type, struct json_object **out)
{
	if (!json_object_object_get_ex(e, key, out) ||
	    !json_object_is_type(*out, type))
		return fail(v, 0, "entry %llu: \"%s\" missing or not %s",
		    (unsigned long long)seq, key, type == json_type_array ?
		    "an array" : "an object");
	return 0;
}

/* A delegation naming its policy by policy_hash carries the document in
 * its link entry (and only such a delegation carries one); the document is
 * kept for the chain checks, which resolve the hash. */
static int
link_policy(struct averify *v, uint64_t seq, struct json_object *e,
    const struct deleg *d)
{
	struct json_object *x;
	const char *policy;
	char h[HASH_B64];

	if (d->policy_hash == NULL) {
		if (json_object_object_get_ex(e, "policy", &x))
			return fail(v, 5, "entry %llu: link carries a policy "
			    "its delegation does not name",
			    (unsigned long long)seq);
		return 0;
	}
	if (!json_object_object_get_ex(e, "policy", &x))
		return fail(v, 5, "entry %llu: link's delegation names its "
		    "policy by hash, and the entry does not carry it",
		    (unsigned long long)seq);
	if (entry_string(v, seq, e, "policy", POLICY_DOC_MAX, &policy) != 0)
		return TH_ERR_DENIED;
	jws_hash(policy, strlen(policy), h);
	if (strcmp(h, d->policy_hash) != 0)
		return fail(v, 5, "entry %llu: link's policy is not the one its "
		    "delegation names (policy_hash)", (unsigned long long)seq);
	return store_put_policy(v->st, d->policy_hash, policy);
}

static int
do_link(struct averify *v, uint64_t seq, struct json_object *e)
{
	const char *token, *hash;
	char h[HASH_B64];
	struct cert *c = NULL;
	struct deleg *d = NULL;
	struct jws *j = NULL;
	int r;

	if (entry_string(v, seq, e, "token", JWS_TOKEN_MAX, &token) != 0 ||
	    entry_string(v, seq, e, "hash", JWS_HASH_LEN, &hash) != 0)
		return TH_ERR_DENIED;
	if (!active(v, 5))
		return 0;
	jws_hash(token, strlen(token), h);
	if (strcmp(h, hash) != 0)
		return fail(v, 5, "entry %llu: link's hash is not the hash of its "
		    "token", (unsigned long long)seq);
	if ((r = jws_parse(token, strlen(token), &j)) != 0)
		return fail(v, 5, "entry %llu: link token: %s",
		    (unsigned long long)seq, th_errmsg(r));
	if (strcmp(j->typ, TYP_HUMAN_CERT) == 0) {
		if ((r = cert_parse(token, strlen(token), &c)) != 0)
			r = fail(v, 5, "entry %llu: link: %s",
			    (unsigned long long)seq, th_errmsg(r));
		else if (json_object_object_get_ex(e, "policy", NULL))
			r = fail(v, 5, "entry %llu: link carries a policy, and "
			    "its token is a certificate", (unsigned long long)seq);
		else if (jws_verify(j, v->root) != 0)
			/* Not counted among the humans, nor trusted later. */
			r = fail(v, 5, "entry %llu: link: a human certificate "
			    "not signed by the root", (unsigned long long)seq);
		else if ((r = store_put_token(v->st, STORE_CERT, hash, token,
		    CERT_ISS, c->sub, NULL, c->exp)) == 0)
			r = strset_add(&v->humans, c->sub) < 0 ? TH_ERR_ALLOC : 0;
	} else if (strcmp(j->typ, TYP_DELEGATION) == 0) {
		if ((r = deleg_parse(token, strlen(token), &d)) != 0)
			r = fail(v, 5, "entry %llu: link: %s",
			    (unsigned long long)seq, th_errmsg(r));
		else if ((r = link_policy(v, seq, e, d)) == 0)
			r = store_put_token(v->st, STORE_DELEG, hash, token,
			    d->iss, d->sub, d->parent, d->exp);
	} else
		r = fail(v, 5, "entry %llu: link token is neither a human "
		    "certificate nor a delegation (typ \"%.40s\")",
		    (unsigned long long)seq, j->typ);
	jws_free(j);
	cert_free(c);
	deleg_free(d);
	return r;
}

/* The 1-based position of the first of chain's links that is not in the
 * log, or 0; a store failure is left in *r. */
static size_t
missing_link(struct averify *v, struct json_object *chain, int *r)
{
	enum store_kind kind;
	char *tok;
	size_t i, n = json_object_array_length(chain);
	int e;

	for (i = 0; i < n; i++) {
		e = store_get_token(v->st, json_object_get_string(
		    json_object_array_get_idx(chain, i)), &kind, &tok);
		free(tok);
		if (e == TH_ERR_NOT_FOUND)
			return i + 1;
		if (e != 0) {
			*r = e;
			return 0;
		}
	}
	return 0;
}

/* check_chain's work; *cp is the chain it got from the cache, if any. */
static int
check_chain_held(struct averify *v, uint64_t seq, const char *what,
    const char *agent, struct json_object *op, struct json_object *chain,
    int64_t time, const struct chain **cp)
{
	const struct chain *c = NULL;
	struct json_object *x;
	struct scope_req req;
	const char *h;
	size_t i, n = json_object_array_length(chain);
	int r;

	if (n < 2 || n > CHAIN_LINKS_MAX)
		return fail(v, 5, "entry %llu: %s's chain has %zu links (2 to "
		    "%d)", (unsigned long long)seq, what, n, CHAIN_LINKS_MAX);
	for (i = 0; i < n; i++) {
		x = json_object_array_get_idx(chain, i);
		if (!json_object_is_type(x, json_type_string) ||
		    json_object_get_string_len(x) != JWS_HASH_LEN)
			return fail(v, 5, "entry %llu: %s's chain link %zu is "
			    "not a token hash", (unsigned long long)seq, what,
			    i + 1);
	}
	h = json_object_get_string(json_object_array_get_idx(chain, n - 1));
	r = chain_get(v->chains, v->st, h, &c);
	*cp = c;
	if (r == TH_ERR_ALLOC || r == TH_ERR_IO)
		return r;
	for (i = 0; r == 0 && i < n; i++)
		if (c->n != n || strcmp(c->hashes[i], json_object_get_string(
		    json_object_array_get_idx(chain, i))) != 0)
			r = TH_ERR_INVALID;
	/* A chain that verified and matches has every link in the log (it
	 * was read from there); otherwise name a missing link, if any. */
	if (r != 0 && (i = missing_link(v, chain, &r)) != 0)
		return fail(v, 5, "entry %llu: %s's chain link %zu is not in "
		    "the log", (unsigned long long)seq, what, i);
	if (r == TH_ERR_ALLOC || r == TH_ERR_IO)
		return r;
	if (r == TH_ERR_INVALID)
		return fail(v, 5, "entry %llu: %s's chain does not match "
		    "the links its last link descends from",
		    (unsigned long long)seq, what);
	if (r != 0)
		return fail(v, 5, "entry %llu: %s's chain does not verify: %s",
		    (unsigned long long)seq, what, th_errmsg(r));
	/* Time only: the log records no revocation of links (its store is
	 * filled from link entries, and nothing in it is ever revoked). */
	if ((r = chain_check_time(c, time)) != 0) {
		if (r != TH_ERR_DENIED)
			return r;
		return fail(v, 5, "entry %llu: %s's chain is not valid at the "
		    "entry's time %lld: %s", (unsigned long long)seq, what,
		    (long long)time, th_errmsg(r));
	}
	if (strcmp(c->names[n - 1], agent) != 0)
		return fail(v, 5, "entry %llu: %s's agent %.80s is not the "
		    "chain's delegate %s", (unsigned long long)seq, what, agent,
		    c->names[n - 1]);
	memset(&req, 0, sizeof(req));
	if (json_get_string(op, "op", &req.op) != 0 ||
	    json_get_string(op, "repo", &req.repo) != 0 ||
	    (json_object_object_get_ex(op, "target", &x) &&
	    json_get_string(op, "target", &req.target) != 0))
		return fail(v, 5, "entry %llu: %s's op has no op and repo "
		    "strings", (unsigned long long)seq, what);
	if (!scope_covers(c->ops, &req))
		return fail(v, 5, "entry %llu: %s's chain does not cover %.64s "
		    "on %.140s", (unsigned long long)seq, what, req.op,
		    req.repo);
	return 0;
}

/* The verified chain named by chain (an array of link hashes), live at
 * time, whose delegate is agent and which covers op. */
static int
check_chain(struct averify *v, uint64_t seq, const char *what,
    const char *agent, struct json_object *op, struct json_object *chain,
    int64_t time)
{
	const struct chain *c = NULL;
	int r;

	r = check_chain_held(v, seq, what, agent, op, chain, time, &c);
	chain_put(v->chains, c);
	return r;
}

/* An intent's or a read's capability: signed by the capability key, and
 * its claims are the entry's. */
static int
cap_sig_fail(struct averify *v, uint64_t seq)
{
	return fail(v, 5, "entry %llu: %s's capability does not verify "
	    "with the header's capability key", (unsigned long long)seq,
	    kind_names[v->kinds[seq - 1]]);
}

/* Results of the signature checks handed to the pool, in entry order;
 * with wait, all of them. */
static int
collect_sigs(struct averify *v, int wait)
{
	uint64_t tag;
	int ok, r = 0;

	v->collecting = 1;
	while (vpool_collect(v->sigs, wait, &tag, &ok))
		if (!ok)
			r = cap_sig_fail(v, tag);
	v->collecting = 0;
	return r;
}

/* A capability's signature: checked now, or queued for the pool (whose
 * verdict is recorded when collected, at its entry).  A capability whose
 * exact bytes were checked at an earlier entry is not checked again: if
 * they failed, that earlier entry is the one reported. */
static int
sig_check(struct averify *v, uint64_t seq, const struct jws *j)
{
	uint64_t tag;
	size_t i;
	int r = 0, ok;

	for (i = 0; i < v->nseen && i < AVERIFY_SEEN; i++)
		if (memcmp(v->seen[i], j->digest, SHA_LEN) == 0)
			return 0;
	memcpy(v->seen[v->nseen++ % AVERIFY_SEEN], j->digest, SHA_LEN);
	if (v->sigs == NULL)
		return jws_verify_with(v->capver, j) == 0 ? 0 :
		    cap_sig_fail(v, seq);
	while ((r = vpool_submit(v->sigs, seq, j)) == TH_ERR_TOO_LONG) {
		/* Full: the oldest verdict first. */
		v->collecting = 1;
		if (vpool_collect(v->sigs, 1, &tag, &ok) && !ok)
			cap_sig_fail(v, tag);
		v->collecting = 0;
	}
	if (r != 0)
		return jws_verify_with(v->capver, j) == 0 ? 0 :
		    cap_sig_fail(v, seq);
	return collect_sigs(v, 0);
}

static int
check_capability(struct averify *v, uint64_t seq, enum kind kind,
    const char *cap, const char *agent, const char *jti,
    struct json_object *op, struct json_object *chain, int64_t time)
{
	const char *what = kind_names[kind], *s;
	struct json_object *x;
	struct jws *j = NULL;
	int64_t iat;
	int r;

	if ((r = jws_parse(cap, strlen(cap), &j)) != 0)
		return fail(v, 5, "entry %llu: %s's capability is malformed: "
		    "%s", (unsigned long long)seq, what, th_errmsg(r));
	if (strcmp(j->typ, TYP_CAPABILITY) != 0)
		r = fail(v, 5, "entry %llu: %s's capability has typ "
		    "\"%.40s\"", (unsigned long long)seq, what, j->typ);
	else if ((r = sig_check(v, seq, j)) != 0)
		;
	else if (cap_claims_check(j->claims, &iat) != 0)
		r = fail(v, 5, "entry %llu: %s's capability is malformed: %s",
		    (unsigned long long)seq, what, th_errmsg(TH_ERR_INVALID));
	else if (iat > time + CAP_SKEW)
		/* Redeemed before it was issued: the broker refuses that. */
		r = fail(v, 5, "entry %llu: %s's capability was issued %lld s "
		    "after the entry's time", (unsigned long long)seq, what,
		    (long long)(iat - time));
	else if (json_get_string(j->claims, "sub", &s) != 0 ||
	    strcmp(s, agent) != 0)
		r = fail(v, 5, "entry %llu: %s's agent is not its "
		    "capability's sub", (unsigned long long)seq, what);
	else if (json_get_string(j->claims, "jti", &s) != 0 ||
	    strcmp(s, jti) != 0)
		r = fail(v, 5, "entry %llu: %s's jti is not its capability's",
		    (unsigned long long)seq, what);
	else if (json_get_string(j->claims, "aud", &s) != 0 ||
	    strcmp(s, v->instance) != 0)
		/* Minted by this log's broker, for itself (docs/tokens.md). */
		r = fail(v, 5, "entry %llu: %s's capability is for another "
		    "broker (aud is not this log's instance)",
		    (unsigned long long)seq, what);
	else if (!json_object_object_get_ex(j->claims, "op", &x) ||
	    !same_json(x, op))
		r = fail(v, 5, "entry %llu: %s's op is not its capability's",
		    (unsigned long long)seq, what);
	else if (!json_object_object_get_ex(j->claims, "chain", &x) ||
	    !same_json(x, chain))
		r = fail(v, 5, "entry %llu: %s's chain is not its "
		    "capability's", (unsigned long long)seq, what);
	else
		r = 0;
	jws_free(j);
	return r;
}

static int
do_action(struct averify *v, uint64_t seq, enum kind kind,
    struct json_object *e, int64_t time)
{
	struct json_object *op, *chain;
	const char *agent, *jti, *cap = NULL;
	const char *what = kind_names[kind];
	int r;

	if (entry_string(v, seq, e, "agent", CHAIN_NAME_MAX, &agent) != 0 ||
	    entry_string(v, seq, e, "jti", JWS_JTI_LEN, &jti) != 0 ||
	    entry_member(v, seq, e, "op", json_type_object, &op) != 0 ||
	    entry_member(v, seq, e, "chain", json_type_array, &chain) != 0 ||
	    (kind != K_MINT && entry_string(v, seq, e, "capability",
	    JWS_TOKEN_MAX, &cap) != 0))
		return TH_ERR_DENIED;
	if (name_valid(agent, "agent") && strset_add(&v->agents, agent) < 0)
		return TH_ERR_ALLOC;
	if (!active(v, 5))
		return 0;
	/* The broker spends a capability before acting on it: a second
	 * intent under one jti is a replayed or copied entry. */
	if (kind == K_INTENT) {
		if ((r = strset_add(&v->intent_jtis, jti)) < 0)
			return TH_ERR_ALLOC;
		if (r == 1)
			return fail(v, 5, "entry %llu: intent: capability %s "
			    "already acted in an earlier intent (capabilities "
			    "are single-use)", (unsigned long long)seq, jti);
	}
	if ((r = check_chain(v, seq, what, agent, op, chain, time)) != 0)
		return r;
	if (kind != K_MINT)
		return check_capability(v, seq, kind, cap, agent, jti, op,
		    chain, time);
	return 0;
}

static int
do_reference(struct averify *v, uint64_t seq, enum kind kind,
    struct json_object *e)
{
	struct json_object *x;
	int64_t ref;
	int r;

	/* XXX: docs/audit-format.md gives every revocation an intent, but the
	 * broker also revokes tokens that served no intent (facts read for a
	 * refused operation) and logs those without one.  Such a revocation
	 * claims no action, so it is accepted, and counted apart. */
	if (kind == K_REVOCATION && !json_object_object_get_ex(e, "intent", &x)) {
		v->unattached++;
		return 0;
	}
	if ((r = json_get_int64(e, "intent", &ref)) != 0)
		return fail(v, 0, "entry %llu: %s", (unsigned long long)seq,
		    th_errmsg(r));
	/* A revocation may close a read's token as well as an intent's. */
	if (active(v, 6) && (ref < 1 || ref >= (int64_t)seq ||
	    (v->kinds[ref - 1] != K_INTENT && !(kind == K_REVOCATION &&
	    v->kinds[ref - 1] == K_READ))))
		return fail(v, 6, "entry %llu: %s refers to entry %lld, which is "
		    "not an earlier %s", (unsigned long long)seq,
		    kind_names[kind], (long long)ref, kind == K_REVOCATION ?
		    "intent or read" : "intent");
	return 0;
}

static int
grow_entries(struct averify *v)
{
	uint8_t (*l)[MERKLE_HASH_LEN];
	uint8_t *k;
	size_t n;

	if (v->nentries < v->aentries)
		return 0;
	n = v->aentries ? v->aentries * 2 : 1024;
	if (n > AVERIFY_ENTRIES_MAX)
		n = AVERIFY_ENTRIES_MAX;
	if ((l = realloc(v->leaves, n * sizeof(*l))) == NULL)
		return TH_ERR_ALLOC;
	v->leaves = l;
	if ((k = realloc(v->kinds, n)) == NULL)
		return TH_ERR_ALLOC;
	v->kinds = k;
	v->aentries = n;
	return 0;
}

/* An entry; pre, if not NULL, holds its canonical hash and leaf (or why
 * its canonical form failed), computed by a vlines worker. */
static int
entry_pre(struct averify *v, struct json_object *e, const struct vline *pre)
{
	struct buf *canon = NULL;
	const char *prev, *kname, *str;
	uint64_t seq = v->nentries + 1;
	int64_t ver, s, time;
	uint8_t h[32];
	enum kind kind;
	int r;

	if (!v->have_header)
		return fail(v, 0, "entry before the header");
	if (decided(v))
		return TH_ERR_DENIED;
	if (v->nentries == AVERIFY_ENTRIES_MAX)
		return fail(v, 0, "more than %d entries", AVERIFY_ENTRIES_MAX);
	if ((r = grow_entries(v)) != 0)
		return r;
	if (!json_object_is_type(e, json_type_object))
		return fail(v, 0, "entry %llu: not a JSON object",
		    (unsigned long long)seq);
	if ((r = json_get_int64(e, "v", &ver)) != 0 ||
	    (r = json_get_int64(e, "seq", &s)) != 0 ||
	    (r = json_get_int64(e, "time", &time)) != 0 ||
	    (r = json_get_string(e, "prev", &prev)) != 0 ||
	    (r = json_get_string(e, "kind", &kname)) != 0)
		return fail(v, 0, "entry %llu: %s", (unsigned long long)seq,
		    th_errmsg(r));
	if (ver != 1)
		return fail(v, 0, "entry %llu: v is %lld, not 1",
		    (unsigned long long)seq, (long long)ver);
	/* Step 2. */
	if (s != (int64_t)seq)
		return fail(v, 2, "entry %llu: out of sequence: found seq %lld "
		    "(an entry deleted, inserted or moved)",
		    (unsigned long long)seq, (long long)s);
	if (strcmp(prev, v->last_hash) != 0)
		return seq == 1 ? fail(v, 2, "entry 1: prev is not the header "
		    "hash") : fail(v, 2, "entry %llu: prev does not match the "
		    "hash of entry %llu", (unsigned long long)seq,
		    (unsigned long long)seq - 1);
	if (pre != NULL && pre->canon_r != 0) {
		r = fail(v, 0, "entry %llu: %s", (unsigned long long)seq,
		    pre->why);
		goto out;
	}
	if (pre != NULL && pre->hashed) {
		memcpy(h, pre->h, sizeof(h));
		memcpy(v->leaves[seq - 1], pre->leaf, MERKLE_HASH_LEN);
	} else {
		if ((canon = buf_new()) == NULL)
			return TH_ERR_ALLOC;
		if ((r = canonical(e, canon)) != 0) {
			r = fail(v, 0, "entry %llu: %s",
			    (unsigned long long)seq, th_errmsg(r));
			goto out;
		}
		sha256(buf_ptr(canon), buf_len(canon), h);
		merkle_leaf(buf_ptr(canon), buf_len(canon),
		    v->leaves[seq - 1]);
	}
	b64url_digest(h, v->last_hash);
	for (kind = K_LINK; kind <= K_LAST; kind++)
		if (strcmp(kname, kind_names[kind]) == 0)
			break;
	if (kind > K_LAST) {
		r = fail(v, 0, "entry %llu: unknown kind \"%.32s\"",
		    (unsigned long long)seq, kname);
		goto out;
	}
	v->kinds[seq - 1] = (uint8_t)kind;
	v->nentries = seq;
	v->count[kind]++;
	if (seq == 1)
		v->first_time = time;
	v->last_time = time;
	switch (kind) {
	case K_LINK:
		r = do_link(v, seq, e);
		break;
	case K_MINT:
	case K_INTENT:
	case K_READ:
		r = do_action(v, seq, kind, e, time);
		break;
	case K_OUTCOME:
	case K_REVOCATION:
	case K_RECOVERED:
	case K_GRANT:
		r = do_reference(v, seq, kind, e);
		break;
	case K_REFUSAL:
		/* docs/audit-format.md: each a string; the agent's name is
		 * counted if it is one ("unknown" is not). */
		if ((r = entry_string(v, seq, e, "agent", CHAIN_NAME_MAX,
		    &kname)) != 0 ||
		    (r = entry_string(v, seq, e, "code", AVERIFY_CODE_MAX,
		    &str)) != 0 ||
		    (r = entry_string(v, seq, e, "reason", SIZE_MAX, &str))
		    != 0)
			break;
		if (name_valid(kname, "agent"))
			r = strset_add(&v->agents, kname) < 0 ?
			    TH_ERR_ALLOC : 0;
		break;
	}
	if (r != 0 && r != TH_ERR_DENIED)
		goto out;
	r = drain(v, 0);
 out:
	buf_free(canon);
	if (r == 0 && decided(v))
		r = TH_ERR_DENIED;
	return r;
}

int
averify_entry(struct averify *v, struct json_object *e)
{
	return entry_pre(v, e, NULL);
}

/* ---- the end ---- */

int
averify_finish(struct averify *v)
{
	size_t i;
	int r;

	if (!v->have_header)
		return fail(v, 0, "the log has no header");
	if (v->sigs != NULL)
		collect_sigs(v, 1);
	if ((r = drain(v, 1)) != 0 && r != TH_ERR_DENIED)
		return r;
	if (v->npcrs > 0 && v->quotes == 0 && active(v, 3))
		fail(v, 3, "--pcrs given, but the log has no TPM quote whose "
		    "PCR values could be checked");
	for (i = 0; i < v->nexpect && active(v, 7); i++)
		if (!v->expect[i].seen)
			fail(v, 7, "checkpoint %llu: expected "
			    "(--expect-checkpoint), but the log has %llu "
			    "checkpoint%s: it was truncated",
			    (unsigned long long)v->expect[i].n,
			    (unsigned long long)v->ncp, v->ncp == 1 ? "" : "s");
	v->finished = 1;
	return v->fail_step < 0 ? 0 : TH_ERR_DENIED;
}

void
averify_summary(const struct averify *v, struct averify_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->entries = v->nentries;
	s->committed = v->cp_last;
	s->uncommitted = v->nentries - v->cp_last;
	s->checkpoints = v->ncp;
	s->quotes = v->quotes;
	s->token_signed = v->token_signed;
	s->links = v->count[K_LINK];
	s->humans = v->humans.n;
	s->agents = v->agents.n;
	s->mints = v->count[K_MINT];
	s->intents = v->count[K_INTENT];
	s->reads = v->count[K_READ];
	s->outcomes = v->count[K_OUTCOME];
	s->recovered = v->count[K_RECOVERED];
	s->revocations = v->count[K_REVOCATION];
	s->unattached = v->unattached;
	s->refusals = v->count[K_REFUSAL];
	s->first_time = v->first_time;
	s->last_time = v->last_time;
	s->last_n = v->ncp;
	snprintf(s->last_qual, sizeof(s->last_qual), "%s", v->last_qual);
	snprintf(s->header_hash, sizeof(s->header_hash), "%s", v->hh);
	snprintf(s->instance, sizeof(s->instance), "%s", v->instance);
	snprintf(s->checkpoint_key, sizeof(s->checkpoint_key), "%s",
	    v->ckind == CK_QUOTE ? "tpm-quote" : v->ckind == CK_TOKEN ?
	    "token-signature" : "");
	s->ek_checked = v->ek_checked;
	s->ak_activated = v->ak_activated;
}

/* ---- readers ---- */

/* What a vlines worker does to a line: parse it and, for an entry, hash
 * its canonical form (docs/audit-format.md, step 2). */
static void
prep_line(const char *line, size_t len, struct vline *vl)
{
	struct json_object *inner;
	struct buf *canon;
	const char *type;
	int r;

	if ((r = json_parse_strict(line, len, AVERIFY_LINE_MAX, &vl->o)) != 0) {
		vl->o = NULL;
		snprintf(vl->why, sizeof(vl->why), "%s", th_errmsg(r));
		return;
	}
	if (!json_object_is_type(vl->o, json_type_object) ||
	    json_get_string(vl->o, "type", &type) != 0 ||
	    strcmp(type, "entry") != 0 ||
	    !json_object_object_get_ex(vl->o, "entry", &inner) ||
	    !json_object_is_type(inner, json_type_object))
		return;
	if ((canon = buf_new()) == NULL)
		return;		/* hashed later, on the verifier's thread */
	if ((r = canonical(inner, canon)) != 0) {
		vl->canon_r = r;
		snprintf(vl->why, sizeof(vl->why), "%s", th_errmsg(r));
	} else {
		sha256(buf_ptr(canon), buf_len(canon), vl->h);
		merkle_leaf(buf_ptr(canon), buf_len(canon), vl->leaf);
		vl->hashed = 1;
	}
	buf_free(canon);
}

/* One export line, prepared: {"type":T, T:OBJECT}. */
static int
file_line(struct vline *vl, void *arg)
{
	static const char *const names[] = { "type", "header", "entry",
	    "checkpoint" };
	struct averify *v = arg;
	struct json_object *o = vl->o, *inner;
	const char *type;
	char pos[48];
	unsigned long long lineno = vl->lineno;

	snprintf(pos, sizeof(pos), "line %llu", lineno);
	if (vl->bad != NULL)
		return averify_malformed(v, pos, vl->bad);
	if (o == NULL)
		return averify_malformed(v, pos, vl->why);
	if (!json_object_is_type(o, json_type_object) ||
	    json_object_object_length(o) != 2 ||
	    json_only_members(o, names, 4) != 0 ||
	    json_get_string(o, "type", &type) != 0 ||
	    strcmp(type, "type") == 0 ||
	    !json_object_object_get_ex(o, type, &inner))
		return averify_malformed(v, pos, "not {\"type\":T,T:{...}} "
		    "with T header, entry or checkpoint");
	if (lineno == 1 && strcmp(type, "header") != 0)
		return averify_malformed(v, pos, "the first line is not the "
		    "header");
	if (strcmp(type, "header") == 0)
		return lineno == 1 ? averify_header(v, inner) :
		    averify_malformed(v, pos, "a second header");
	if (strcmp(type, "entry") == 0)
		return entry_pre(v, inner, vl);
	return averify_checkpoint(v, inner);
}

int
averify_file(struct averify *v, const char *path)
{
	struct stat st;
	FILE *f;
	long ncpu;
	int r;

	if (strcmp(path, "-") == 0)
		f = stdin;
	else if ((f = fopen(path, "re")) == NULL)
		return th_fail(TH_ERR_IO, "cannot open %s: %s", path,
		    strerror(errno));
	else if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(f);
		return th_fail(TH_ERR_IO, "%s is a directory, not an exported "
		    "log (threshold audit export)", path);
	}
	ncpu = threads(v);
	/* One thread per core parses and hashes; this one takes the lines
	 * in order. */
	r = vlines_run(f, path, AVERIFY_LINE_MAX, ncpu > 1 ? (ncpu >
	    VLINES_THREADS_MAX ? VLINES_THREADS_MAX : (int)ncpu) : 0,
	    prep_line, file_line, v);
	if (r == 0)
		r = averify_finish(v);
	if (f != stdin)
		fclose(f);
	return r;
}

/* Rows of sql (key INTEGER, body TEXT) fed to fn; the key must be the
 * body's member keyname. */
static int
db_rows(struct averify *v, sqlite3 *db, const char *sql, const char *what,
    const char *keyname, int (*fn)(struct averify *, struct json_object *))
{
	struct json_object *o;
	sqlite3_stmt *st = NULL;
	char pos[64];
	int64_t key, member;
	int r = 0, rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return averify_malformed(v, what, sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		key = sqlite3_column_int64(st, 0);
		snprintf(pos, sizeof(pos), "%s row %lld", what, (long long)key);
		if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
		    sqlite3_column_type(st, 1) != SQLITE_TEXT ||
		    sqlite3_column_bytes(st, 1) > AVERIFY_LINE_MAX) {
			r = averify_malformed(v, pos, "not an integer key and a "
			    "text body of at most 1 MiB");
			break;
		}
		o = NULL;
		if ((r = json_parse_strict((const char *)sqlite3_column_text(st,
		    1), (size_t)sqlite3_column_bytes(st, 1), AVERIFY_LINE_MAX,
		    &o)) != 0) {
			r = averify_malformed(v, pos, th_errmsg(r));
			break;
		}
		if (json_object_is_type(o, json_type_object) &&
		    json_get_int64(o, keyname, &member) == 0 && member != key) {
			json_object_put(o);
			r = averify_malformed(v, pos, "the body's number is not "
			    "the row's");
			break;
		}
		r = fn(v, o);
		json_object_put(o);
		if (r != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = th_fail(TH_ERR_IO, "reading the audit database: %s",
		    sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return r;
}

int
averify_db(struct averify *v, const char *path)
{
	struct json_object *o = NULL;
	sqlite3_stmt *st = NULL;
	sqlite3 *db = NULL;
	int r, rc;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "cannot open %s: %s", path,
		    db != NULL ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	/* One read transaction: a snapshot, while the broker appends. */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "%s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_prepare_v2(db, "SELECT body FROM header", -1, &st, NULL) !=
	    SQLITE_OK) {
		r = averify_malformed(v, "header", sqlite3_errmsg(db));
		goto out;
	}
	if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? averify_malformed(v, "header", "the "
		    "header table is empty") : th_fail(TH_ERR_IO, "%s: %s",
		    path, sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_column_type(st, 0) != SQLITE_TEXT ||
	    sqlite3_column_bytes(st, 0) > AVERIFY_LINE_MAX) {
		r = averify_malformed(v, "header", "not a text body of at most "
		    "1 MiB");
		goto out;
	}
	if ((r = json_parse_strict((const char *)sqlite3_column_text(st, 0),
	    (size_t)sqlite3_column_bytes(st, 0), AVERIFY_LINE_MAX, &o)) != 0) {
		r = averify_malformed(v, "header", th_errmsg(r));
		goto out;
	}
	if (sqlite3_step(st) != SQLITE_DONE) {
		r = averify_malformed(v, "header", "more than one header row");
		goto out;
	}
	if ((r = averify_header(v, o)) != 0 ||
	    (r = db_rows(v, db, "SELECT seq, body FROM entries ORDER BY seq",
	    "entries", "seq", averify_entry)) != 0 ||
	    (r = db_rows(v, db, "SELECT n, body FROM checkpoints ORDER BY n",
	    "checkpoints", "n", averify_checkpoint)) != 0)
		goto out;
	r = averify_finish(v);
 out:
	json_object_put(o);
	sqlite3_finalize(st);
	if (db != NULL)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	if (r == 0 && v->fail_step >= 0)
		r = TH_ERR_DENIED;
	return r;
}
