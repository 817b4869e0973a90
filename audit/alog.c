#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "b64url.h"
#include "err.h"
#include "jcs.h"
#include "json.h"
#include "jwk.h"
#include "jws.h"
#include "alog.h"
#include "merkle.h"
#include "sha.h"
#include "stmt.h"
#include "typ.h"
#include "verify.h"

#define ALOG_BATCH_MAX		100000
#define ALOG_BODY_MAX		STMT_ENTRY_MAX	/* written as start reads */
#define PCR_SEL_SIZE		132	/* tpm2-tools' TPML_PCR_SELECTION dump */
#define PCR_DIG_SIZE		532	/* ... and TPML_DIGEST */
#define ALOG_COMMIT_DELAY_MS	10	/* background batching window */

struct alog {
	sqlite3		*db;
	struct sigc	*signer;
	pthread_mutex_t	 lock;
	pthread_cond_t	 done;
	char		 hh[JWS_HASH_LEN + 1];	/* header hash */
	char		 pcr_selection[128];
	int		 token_mode;	/* no TPM: the audit key signs */
	EVP_PKEY	*ak;		/* the header's: every countersignature
					 * is checked with it before it counts */
	int64_t		 seq;			/* last entry */
	uint8_t		 last[32];		/* its hash */
	int64_t		 committed;		/* last entry checkpointed */
	int64_t		 ckpt_n;
	char		 ckpt_prev[JWS_HASH_LEN + 1];	/* last statement hash */
	uint8_t		(*leaves)[MERKLE_HASH_LEN];	/* committed+1 .. seq */
	size_t		 nleaves, aleaves;
	int		 committing;
	char		(*links)[JWS_HASH_LEN + 1];	/* sorted */
	size_t		 nlinks, alinks;
	/* Held across alog_link's check and append: two threads linking the
	 * same delegation write it once. */
	pthread_mutex_t	 link_lock;
	pthread_t	 committer;
	pthread_cond_t	 pending;
	int		 running, stopping;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS header(id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS entries(seq INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL, ref INTEGER, body TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS entries_ref ON entries(ref);"
    /* What recovery asks: does an outcome already give this id? */
    "CREATE INDEX IF NOT EXISTS entries_result_id ON entries("
    "  json_extract(body, '$.result.id')) WHERE kind IN ('outcome',"
    "  'recovered');"
    /* And: has another intent to merge this pull request merged it? */
    "CREATE INDEX IF NOT EXISTS entries_intent_pr ON entries("
    "  json_extract(body, '$.op.repo'), json_extract(body, '$.op.pr'))"
    "  WHERE kind = 'intent';"
    "CREATE TABLE IF NOT EXISTS checkpoints(n INTEGER PRIMARY KEY,"
    "  body TEXT NOT NULL);"
    /* Append-only even for a careless hand: rows are never changed. */
    "CREATE TRIGGER IF NOT EXISTS entries_ro BEFORE UPDATE ON entries"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS entries_nd BEFORE DELETE ON entries"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ckpt_ro BEFORE UPDATE ON checkpoints"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS ckpt_nd BEFORE DELETE ON checkpoints"
    "  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

static int
db_fail(struct alog *l, const char *what)
{
	return th_fail(TH_ERR_IO, "audit log: %s: %s", what,
	    sqlite3_errmsg(l->db));
}

int
alog_pcr_values(const uint8_t *p, size_t len, struct json_object **out,
    char *sel, size_t sellen)
{
	struct json_object *a = NULL, *e;
	uint32_t nsel, ndig, i, j, bit, dcount, di = 0, dl = 0;
	const uint8_t *d;
	char hex[129], part[64];
	uint16_t alg, size;
	size_t k, used = 0;
	int r = TH_ERR_PROTOCOL;

	*out = NULL;
	sel[0] = '\0';
	if (len < PCR_SEL_SIZE + 4)
		goto out;
	nsel = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
	ndig = (uint32_t)p[132] | (uint32_t)p[133] << 8 |
	    (uint32_t)p[134] << 16 | (uint32_t)p[135] << 24;
	if (nsel == 0 || nsel > 16 || ndig > 16 ||
	    len != PCR_SEL_SIZE + 4 + (size_t)ndig * PCR_DIG_SIZE ||
	    (a = json_object_new_array()) == NULL)
		goto out;
	for (i = 0; i < nsel; i++) {
		alg = (uint16_t)(p[4 + i * 8] | p[5 + i * 8] << 8);
		size = p[6 + i * 8];
		if (size > 4 || (alg != 0x000b && alg != 0x0004))
			goto out;
		used += (size_t)snprintf(sel + used, sellen - used, "%s%s:",
		    i ? "+" : "", alg == 0x000b ? "sha256" : "sha1");
		/* Checked after every write: past sellen, sellen - used
		 * would wrap. */
		if (used >= sellen)
			goto out;
		for (j = 0, k = 0; j < size * 8u; j++) {
			if (!(p[7 + i * 8 + j / 8] & (1u << (j % 8))))
				continue;
			/* The next value in the flattened digest lists. */
			for (;;) {
				if (di >= ndig)
					goto out;
				d = p + PCR_SEL_SIZE + 4 + (size_t)di * PCR_DIG_SIZE;
				dcount = (uint32_t)d[0] | (uint32_t)d[1] << 8 |
				    (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
				if (dcount > 8)
					goto out;
				if (dl < dcount)
					break;
				di++;
				dl = 0;
			}
			d = p + PCR_SEL_SIZE + 4 + (size_t)di * PCR_DIG_SIZE + 4 +
			    (size_t)dl * 66;
			dl++;
			bit = (uint32_t)(d[0] | d[1] << 8);
			if (bit > 64)
				goto out;
			for (k = 0; k < bit; k++)
				snprintf(hex + 2 * k, 3, "%02x", d[2 + k]);
			hex[2 * bit] = '\0';
			e = json_object_new_object();
			json_object_object_add(e, "bank", json_object_new_string(
			    alg == 0x000b ? "sha256" : "sha1"));
			json_object_object_add(e, "pcr", json_object_new_int(
			    (int)j));
			json_object_object_add(e, "value",
			    json_object_new_string(hex));
			json_object_array_add(a, e);
			snprintf(part, sizeof(part), "%s%u",
			    sel[used - 1] == ':' ? "" : ",", j);
			used += (size_t)snprintf(sel + used, sellen - used, "%s",
			    part);
			if (used >= sellen)
				goto out;
		}
	}
	*out = a;
	a = NULL;
	r = 0;
 out:
	json_object_put(a);
	/* Said only on failure: a caller may still hold an earlier message. */
	return r == 0 ? 0 : th_fail(r, "malformed PCR values from the signer");
}

static int
insert_body(struct alog *l, const char *sql, int64_t key, const char *kind,
    int64_t ref, struct buf *body)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, key) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, (const char *)buf_ptr(body),
	    (int)buf_len(body), SQLITE_STATIC) != SQLITE_OK ||
	    (kind != NULL && (sqlite3_bind_text(st, 3, kind, -1,
	    SQLITE_STATIC) != SQLITE_OK || (ref > 0 ?
	    sqlite3_bind_int64(st, 4, ref) : sqlite3_bind_null(st, 4)) !=
	    SQLITE_OK)) || sqlite3_step(st) != SQLITE_DONE)
		r = db_fail(l, "write");
	sqlite3_finalize(st);
	return r;
}

/* Without a TPM: an ES256 signature by the signer's audit key over
 * "threshold-audit-checkpoint:" + base64url(qual). */
static int
token_sign(struct alog *l, struct json_object *stmt, const uint8_t qual[32])
{
	char msg[96], q[JWS_HASH_LEN + 1];
	uint8_t sig[TH_SIG_MAX];
	enum th_alg alg;
	size_t siglen;
	int r;

	b64url_digest(qual, q);
	snprintf(msg, sizeof(msg), "threshold-audit-checkpoint:%s", q);
	if ((r = sigc_sign(l->signer, "audit", (const uint8_t *)msg,
	    strlen(msg), &alg, sig, &siglen)) != 0)
		return th_fail(r, "audit log: cannot countersign: %s",
		    th_errmsg(r));
	if (alg != TH_ALG_ES256 || siglen != 64 ||
	    (r = jws_es256_low_s(sig)) != 0)
		return th_fail(TH_ERR_PROTOCOL, "audit log: bad audit-key "
		    "signature");
	/* A signer whose audit key is no longer the header's would make a
	 * checkpoint no auditor can verify: nothing counts on it. */
	if (averify_token_sig(l->ak, sig, q) != 0)
		return th_fail(TH_ERR_CRYPTO, "audit log: the countersignature "
		    "does not verify with the log's key (the audit key "
		    "changed?)");
	json_object_object_add(stmt, "kind", json_object_new_string(
	    "token-signature"));
	if ((r = json_add_b64url(stmt, "qual", qual, 32)) != 0)
		return r;
	return json_add_b64url(stmt, "sig", sig, 64);
}

/* The quote is the header's AK's, over qual: a signer whose attestation
 * key is no longer the header's would make a checkpoint no auditor can
 * verify, and nothing may count on it. */
static int
quote_check(struct alog *l, const struct buf *attest, const struct buf *sig,
    const uint8_t qual[32])
{
	struct averify_attest *a;
	struct averify_sig s;
	int r = 0;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return TH_ERR_ALLOC;
	if (averify_parse_attest(buf_ptr(attest), buf_len(attest), a) != 0 ||
	    averify_parse_sig(buf_ptr(sig), buf_len(sig), &s) != 0 ||
	    averify_quote_sig(l->ak, buf_ptr(attest), buf_len(attest), &s)
	    != 0 || a->extra_len != 32 || memcmp(a->extra, qual, 32) != 0)
		r = th_fail(TH_ERR_CRYPTO, "audit log: the quote does not "
		    "verify with the log's attestation key over its qualifying "
		    "data (the key changed?)");
	free(a);
	return r;
}

/* A TPM quote over the statement's hash, stored as checkpoint n. */
static int
countersign(struct alog *l, struct json_object *stmt, int64_t n,
    uint8_t qual[32])
{
	struct buf *attest = buf_new(), *sig = buf_new(), *pcrs = buf_new();
	struct buf *body = buf_new();
	struct json_object *vals = NULL;
	char sel[128];
	int r = TH_ERR_ALLOC;

	if (attest == NULL || sig == NULL || pcrs == NULL || body == NULL)
		goto out;
	if (l->token_mode) {
		r = token_sign(l, stmt, qual);
		if (r == 0 && (r = jcs_encode(body, stmt)) == 0)
			r = insert_body(l, "INSERT INTO checkpoints(n, body) "
			    "VALUES(?, ?)", n, NULL, 0, body);
		goto out;
	}
	if ((r = sigc_quote(l->signer, qual, 32, attest, sig, pcrs)) != 0) {
		r = th_fail(r, "audit log: cannot countersign: %s",
		    th_errmsg(r));
		goto out;
	}
	if ((r = quote_check(l, attest, sig, qual)) != 0 ||
	    (r = alog_pcr_values(buf_ptr(pcrs), buf_len(pcrs), &vals, sel,
	    sizeof(sel))) != 0)
		goto out;
	if (strcmp(sel, l->pcr_selection) != 0) {
		r = th_fail(TH_ERR_PROTOCOL, "audit log: the signer quoted %s, "
		    "the log's header says %s", sel, l->pcr_selection);
		goto out;
	}
	json_object_object_add(stmt, "kind", json_object_new_string(
	    "tpm-quote"));
	if ((r = json_add_b64url(stmt, "qual", qual, 32)) != 0 ||
	    (r = json_add_b64url(stmt, "attest", buf_ptr(attest),
	    buf_len(attest))) != 0 ||
	    (r = json_add_b64url(stmt, "sig", buf_ptr(sig),
	    buf_len(sig))) != 0 ||
	    (r = json_add_b64url(stmt, "pcrs", buf_ptr(pcrs),
	    buf_len(pcrs))) != 0)
		goto out;
	json_object_object_add(stmt, "pcr_values", vals);
	vals = NULL;
	if ((r = jcs_encode(body, stmt)) != 0)
		goto out;
	r = insert_body(l, "INSERT INTO checkpoints(n, body) VALUES(?, ?)", n,
	    NULL, 0, body);
 out:
	json_object_put(vals);
	buf_free(attest);
	buf_free(sig);
	buf_free(pcrs);
	buf_free(body);
	return r;
}

/* Called with the lock held and committing set; drops the lock around the
 * quote. */
static int
checkpoint(struct alog *l)
{
	struct json_object *stmt = NULL;
	uint8_t root[MERKLE_HASH_LEN], qual[32];
	uint8_t (*leaves)[MERKLE_HASH_LEN] = NULL;
	char rootb[JWS_HASH_LEN + 1], prevb[JWS_HASH_LEN + 1];
	int64_t first = l->committed + 1, last = l->seq, n = l->ckpt_n + 1;
	size_t count = l->nleaves;
	int r = TH_ERR_ALLOC;

	if ((leaves = malloc(count * sizeof(*leaves))) == NULL)
		return TH_ERR_ALLOC;
	memcpy(leaves, l->leaves, count * sizeof(*leaves));
	snprintf(prevb, sizeof(prevb), "%s", l->ckpt_prev);
	pthread_mutex_unlock(&l->lock);

	if ((r = merkle_root((const uint8_t (*)[MERKLE_HASH_LEN])leaves,
	    count, root)) != 0)
		goto out;
	b64url_digest(root, rootb);
	if ((r = stmt_make(first, last, l->hh, n, prevb, rootb, &stmt,
	    qual)) != 0)
		goto out;
	r = countersign(l, stmt, n, qual);
 out:
	pthread_mutex_lock(&l->lock);
	if (r == 0) {
		/* Entries appended meanwhile stay for the next batch. */
		memmove(l->leaves, l->leaves + count,
		    (l->nleaves - count) * sizeof(*l->leaves));
		l->nleaves -= count;
		l->committed = last;
		l->ckpt_n = n;
		b64url_digest(qual, l->ckpt_prev);
	}
	json_object_put(stmt);
	free(leaves);
	return r;
}

int
alog_commit(struct alog *l, int64_t seq, int64_t *n)
{
	int r = 0;

	pthread_mutex_lock(&l->lock);
	while (r == 0 && l->committed < seq) {
		if (l->committing) {
			/* A quote is in flight; it or the next one covers us. */
			pthread_cond_wait(&l->done, &l->lock);
			continue;
		}
		l->committing = 1;
		r = checkpoint(l);
		l->committing = 0;
		pthread_cond_broadcast(&l->done);
	}
	if (r == 0 && n != NULL)
		*n = l->ckpt_n;
	pthread_mutex_unlock(&l->lock);
	return r;
}

int
alog_append(struct alog *l, const char *kind, struct json_object *obj,
    int64_t *seq)
{
	return alog_append_before(l, kind, obj, INT64_MAX, seq);
}

int
alog_append_before(struct alog *l, const char *kind, struct json_object *obj,
    int64_t before, int64_t *seq)
{
	struct json_object *e = NULL, *ref;
	struct buf *body = NULL;
	char prev[JWS_HASH_LEN + 1];
	uint8_t (*grown)[MERKLE_HASH_LEN];
	int64_t now;
	int r = TH_ERR_ALLOC;

	pthread_mutex_lock(&l->lock);
	/* Under the lock: the time checked is the time written. */
	if ((now = time(NULL)) >= before) {
		r = th_fail(TH_ERR_DENIED, "expired at %lld, before it could be "
		    "recorded", (long long)before);
		goto out;
	}
	if (l->nleaves == l->aleaves) {
		if (l->aleaves >= ALOG_BATCH_MAX) {
			r = th_fail(TH_ERR_UNAVAILABLE, "audit log: too many "
			    "uncommitted entries");
			goto out;
		}
		if ((grown = realloc(l->leaves, (l->aleaves ? l->aleaves * 2 :
		    256) * sizeof(*grown))) == NULL)
			goto out;
		l->leaves = grown;
		l->aleaves = l->aleaves ? l->aleaves * 2 : 256;
	}
	if ((e = json_object_new_object()) == NULL ||
	    (body = buf_new()) == NULL)
		goto out;
	json_object_object_foreach(obj, k, v)
		json_object_object_add(e, k, json_object_get(v));
	if (l->seq == 0)
		snprintf(prev, sizeof(prev), "%s", l->hh);
	else
		b64url_digest(l->last, prev);
	json_object_object_add(e, "v", json_object_new_int(1));
	json_object_object_add(e, "seq", json_object_new_int64(l->seq + 1));
	json_object_object_add(e, "time", json_object_new_int64(now));
	json_object_object_add(e, "prev", json_object_new_string(prev));
	json_object_object_add(e, "kind", json_object_new_string(kind));
	if ((r = jcs_encode(body, e)) != 0)
		goto out;
	if (buf_len(body) > ALOG_BODY_MAX) {
		r = th_fail(TH_ERR_TOO_LONG, "audit entry too large");
		goto out;
	}
	if ((r = insert_body(l, "INSERT INTO entries(seq, body, kind, ref) "
	    "VALUES(?, ?, ?, ?)", l->seq + 1, kind,
	    json_object_object_get_ex(obj, "intent", &ref) ?
	    json_object_get_int64(ref) : 0, body)) != 0)
		goto out;
	l->seq++;
	sha256(buf_ptr(body), buf_len(body), l->last);
	merkle_leaf(buf_ptr(body), buf_len(body), l->leaves[l->nleaves++]);
	if (seq != NULL)
		*seq = l->seq;
	pthread_cond_signal(&l->pending);
 out:
	pthread_mutex_unlock(&l->lock);
	json_object_put(e);
	buf_free(body);
	return r;
}

/* Whether hash is among the links logged (binary search of the sorted
 * set); *at is where it is or would go.  Call with l->lock held. */
static int
link_find(const struct alog *l, const char *hash, size_t *at)
{
	size_t lo = 0, hi = l->nlinks, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(l->links[mid], hash)) == 0) {
			*at = mid;
			return 1;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*at = lo;
	return 0;
}

/* Adds hash to the set of links logged (every link a log holds: with a
 * bound, the links past it were appended again at every use).  Call with
 * l->lock held. */
static int
link_add(struct alog *l, const char *hash)
{
	char (*grown)[JWS_HASH_LEN + 1];
	size_t at, n;

	if (strlen(hash) > JWS_HASH_LEN)
		return TH_ERR_INVALID;
	if (link_find(l, hash, &at))
		return 0;
	if (l->nlinks == l->alinks) {
		n = l->alinks ? l->alinks * 2 : 64;
		if ((grown = realloc(l->links, n * sizeof(*grown))) == NULL)
			return TH_ERR_ALLOC;
		l->links = grown;
		l->alinks = n;
	}
	memmove(l->links + at + 1, l->links + at,
	    (l->nlinks - at) * sizeof(*l->links));
	snprintf(l->links[at], JWS_HASH_LEN + 1, "%s", hash);
	l->nlinks++;
	return 0;
}

int
alog_has_link(struct alog *l, const char *hash)
{
	size_t at;
	int found;

	/* Read under the lock: alog_link may be adding one meanwhile. */
	pthread_mutex_lock(&l->lock);
	found = link_find(l, hash, &at);
	pthread_mutex_unlock(&l->lock);
	return found;
}

int
alog_link(struct alog *l, const char *hash, const char *token,
    const char *policy)
{
	struct json_object *o;
	int r;

	pthread_mutex_lock(&l->link_lock);
	if (alog_has_link(l, hash)) {
		r = 0;
		goto out;
	}
	if ((o = json_object_new_object()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	json_object_object_add(o, "hash", json_object_new_string(hash));
	json_object_object_add(o, "token", json_object_new_string(token));
	if (policy != NULL)
		json_object_object_add(o, "policy",
		    json_object_new_string(policy));
	r = alog_append(l, "link", o, NULL);
	json_object_put(o);
	if (r != 0)
		goto out;
	/* Not remembered (out of memory): it is only logged again. */
	pthread_mutex_lock(&l->lock);
	(void)link_add(l, hash);
	pthread_mutex_unlock(&l->lock);
 out:
	pthread_mutex_unlock(&l->link_lock);
	return r;
}

/* The header of a new log: the keys an auditor needs, and what the TPM
 * quotes (learnt from a probe quote, which also proves the TPM works). */

/* The signer's KEYSCERT for instance, as the header's "keys". */
static int
header_keys(struct alog *l, struct json_object *h, const char *instance)
{
	struct buf *tok = buf_new();
	int r;

	if (tok == NULL)
		return TH_ERR_ALLOC;
	if ((r = sigc_keyscert(l->signer, instance, tok)) != 0)
		r = th_fail(r, "audit log: the root's statement of the keys: %s",
		    th_errmsg(r));
	else
		json_object_object_add(h, "keys", json_object_new_string_len(
		    (const char *)buf_ptr(tok), (int)buf_len(tok)));
	buf_free(tok);
	return r;
}

static int
make_header(struct alog *l, const char *instance, struct buf *body)
{
	static const char *const purposes[] = { "delegation-root", "capability",
	    "attenuation" };
	static const char *const names[] = { "root", "capability",
	    "attenuation" };
	struct json_object *h = NULL, *jwk, *vals = NULL;
	struct buf *ek = buf_new(), *a = buf_new(), *s = buf_new();
	struct buf *p = buf_new();
	uint8_t qual[32];
	EVP_PKEY *pk;
	enum th_alg alg;
	size_t i;
	int r = TH_ERR_ALLOC;

	if (ek == NULL || a == NULL || s == NULL || p == NULL ||
	    (h = json_object_new_object()) == NULL)
		goto out;
	json_object_object_add(h, "v", json_object_new_int(1));
	json_object_object_add(h, "log", json_object_new_string(
	    "threshold-audit"));
	json_object_object_add(h, "instance", json_object_new_string(instance));
	json_object_object_add(h, "created", json_object_new_int64(time(NULL)));
	for (i = 0; i < 3; i++) {
		r = sigc_pubkey(l->signer, purposes[i], &alg, &pk);
		if (r == TH_ERR_NOT_FOUND && i == 2) {
			json_object_object_add(h, names[i], NULL);
			continue;
		}
		if (r != 0) {
			r = th_fail(r, "audit log: %s key: %s", purposes[i],
			    th_errmsg(r));
			goto out;
		}
		r = jwk_from_pkey(pk, &jwk);
		EVP_PKEY_free(pk);
		if (r != 0)
			goto out;
		json_object_object_add(h, names[i], jwk);
	}
	/* The countersigning key: the TPM's attestation key, or where there
	 * is no TPM the signer's audit key. */
	r = sigc_pubkey(l->signer, "attestation", &alg, &pk);
	if (r == TH_ERR_NOT_FOUND) {
		l->token_mode = 1;
		r = sigc_pubkey(l->signer, "audit", &alg, &pk);
	}
	if (r != 0) {
		r = th_fail(r, "audit log: no countersigning key (attestation or "
		    "audit): %s", th_errmsg(r));
		goto out;
	}
	r = jwk_from_pkey(pk, &jwk);
	EVP_PKEY_free(pk);
	if (r != 0)
		goto out;
	json_object_object_add(h, "ak", jwk);
	json_object_object_add(h, "checkpoint_key", json_object_new_string(
	    l->token_mode ? "token-signature" : "tpm-quote"));
	/* The root's word that these keys are its signer's: without it a
	 * header's keys are anyone's. */
	if ((r = header_keys(l, h, instance)) != 0)
		goto out;
	if (l->token_mode) {
		json_object_object_add(h, "ek_cert", NULL);
		json_object_object_add(h, "pcr_selection", NULL);
		r = jcs_encode(body, h);
		goto out;
	}
	if (sigc_ekcert(l->signer, ek) == 0) {
		struct buf *act;

		json_add_b64url(h, "ek_cert", buf_ptr(ek), buf_len(ek));
		if ((act = buf_new()) == NULL) {
			r = TH_ERR_ALLOC;
			goto out;
		}
		/* The signer proves its AK and has the root say so. */
		if ((r = sigc_akcert(l->signer, instance, act)) != 0) {
			buf_free(act);
			r = th_fail(r, "audit log: AK activation: %s",
			    th_errmsg(r));
			goto out;
		}
		json_object_object_add(h, "activation",
		    json_object_new_string_len((const char *)buf_ptr(act),
		    (int)buf_len(act)));
		buf_free(act);
	} else {
		json_object_object_add(h, "ek_cert", NULL);
		json_object_object_add(h, "activation", NULL);
	}
	sha256((const uint8_t *)"threshold-audit-probe", 21, qual);
	if ((r = sigc_quote(l->signer, qual, sizeof(qual), a, s, p)) != 0) {
		r = th_fail(r, "audit log: the TPM cannot quote: %s",
		    th_errmsg(r));
		goto out;
	}
	if ((r = alog_pcr_values(buf_ptr(p), buf_len(p), &vals, l->pcr_selection,
	    sizeof(l->pcr_selection))) != 0)
		goto out;
	json_object_object_add(h, "pcr_selection",
	    json_object_new_string(l->pcr_selection));
	r = jcs_encode(body, h);
 out:
	json_object_put(vals);
	json_object_put(h);
	buf_free(ek);
	buf_free(a);
	buf_free(s);
	buf_free(p);
	return r;
}

/* Reloads what appending and committing need from an existing log, and
 * goes on from it only if it is as written: every entry canonical, with
 * its own seq and the previous entry's hash, and the last checkpoint's
 * batch hashing to its root.  (A broker that appended to an altered log
 * would countersign what no auditor can verify.) */
static int
load_state(struct alog *l)
{
	struct json_object *o = NULL;
	sqlite3_stmt *st = NULL;
	const char *qual, *hash, *root = NULL;
	char prev[B64URL_DIGEST_LEN + 1], want_root[B64URL_DIGEST_LEN + 1] = "";
	uint8_t (*batch)[MERKLE_HASH_LEN] = NULL, got[MERKLE_HASH_LEN];
	int64_t last = 0, first = 0;
	int r = 0, rc;

	if (sqlite3_prepare_v2(l->db, "SELECT n, body FROM checkpoints ORDER "
	    "BY n DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK)
		return db_fail(l, "read");
	if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		l->ckpt_n = sqlite3_column_int64(st, 0);
		if ((r = json_parse_strict((const char *)sqlite3_column_text(st,
		    1), (size_t)sqlite3_column_bytes(st, 1), ALOG_BODY_MAX,
		    &o)) != 0 || (r = json_get_int64(o, "last", &last)) != 0 ||
		    (r = json_get_int64(o, "first", &first)) != 0 ||
		    (r = json_get_string(o, "root", &root)) != 0 ||
		    strlen(root) != B64URL_DIGEST_LEN ||
		    (r = json_get_string(o, "qual", &qual)) != 0 ||
		    first < 1 || last < first || last - first >= ALOG_BATCH_MAX)
			r = th_fail(TH_ERR_INVALID, "audit log: unreadable last "
			    "checkpoint");
		else {
			snprintf(l->ckpt_prev, sizeof(l->ckpt_prev), "%s", qual);
			snprintf(want_root, sizeof(want_root), "%s", root);
			if ((batch = calloc((size_t)(last - first + 1),
			    sizeof(*batch))) == NULL)
				r = TH_ERR_ALLOC;
		}
		json_object_put(o);
		o = NULL;
	} else
		snprintf(l->ckpt_prev, sizeof(l->ckpt_prev), "%s", l->hh);
	sqlite3_finalize(st);
	st = NULL;
	l->committed = last;
	if (r != 0)
		goto out;
	if (sqlite3_prepare_v2(l->db, "SELECT seq, kind, body FROM entries "
	    "ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
		r = db_fail(l, "read");
		goto out;
	}
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *b = sqlite3_column_text(st, 2);
		size_t n = (size_t)sqlite3_column_bytes(st, 2);

		if (sqlite3_column_int64(st, 0) != l->seq + 1) {
			r = th_fail(TH_ERR_INVALID, "audit log: entry %lld is "
			    "missing", (long long)l->seq + 1);
			break;
		}
		if (l->seq == 0)
			snprintf(prev, sizeof(prev), "%s", l->hh);
		else
			b64url_digest(l->last, prev);
		if ((r = stmt_entry_check(b, n, l->seq + 1, prev, &o)) != 0) {
			r = th_fail(TH_ERR_INVALID, "%s: the log was altered; "
			    "run threshold audit verify, and move it aside to "
			    "start a new one", th_errmsg(r));
			break;
		}
		l->seq++;
		sha256(b, n, l->last);
		if (batch != NULL && l->seq >= first && l->seq <= last)
			merkle_leaf(b, n, batch[l->seq - first]);
		if (l->seq > l->committed) {
			if (l->nleaves == l->aleaves) {
				uint8_t (*g)[MERKLE_HASH_LEN] = realloc(l->leaves,
				    (l->aleaves ? l->aleaves * 2 : 256) *
				    sizeof(*g));

				if (g == NULL) {
					r = TH_ERR_ALLOC;
					break;
				}
				l->leaves = g;
				l->aleaves = l->aleaves ? l->aleaves * 2 : 256;
			}
			merkle_leaf(b, n, l->leaves[l->nleaves++]);
		}
		if (strcmp((const char *)sqlite3_column_text(st, 1), "link") == 0 &&
		    json_get_string(o, "hash", &hash) == 0)
			(void)link_add(l, hash);
		json_object_put(o);
		o = NULL;
	}
	sqlite3_finalize(st);
	if (r == 0 && l->committed > l->seq)
		r = th_fail(TH_ERR_INVALID, "audit log: checkpoint beyond the "
		    "last entry");
	if (r == 0 && batch != NULL) {
		if ((r = merkle_root((const uint8_t (*)[MERKLE_HASH_LEN])batch,
		    (size_t)(last - first + 1), got)) != 0)
			goto out;
		b64url_digest(got, prev);
		if (strcmp(prev, want_root) != 0)
			r = th_fail(TH_ERR_INVALID, "audit log: entries %lld..%lld "
			    "do not hash to their checkpoint's root: the log was "
			    "altered; run threshold audit verify, and move it "
			    "aside to start a new one", (long long)first,
			    (long long)last);
	}
 out:
	json_object_put(o);
	free(batch);
	return r;
}

/* Whether logged, a key the header names, is the signer's purpose key. */
static int
key_current(struct alog *l, EVP_PKEY *logged, const char *purpose,
    const char *path)
{
	EVP_PKEY *now = NULL;
	enum th_alg alg;
	int r;

	if ((r = sigc_pubkey(l->signer, purpose, &alg, &now)) != 0)
		return th_fail(r, "audit log: %s key: %s", purpose,
		    th_errmsg(r));
	if (EVP_PKEY_eq(logged, now) != 1)
		r = th_fail(TH_ERR_CONFIG, "audit log %s names another %s key "
		    "than the signer's (rotated?): move it aside to start a new "
		    "log", path, purpose);
	EVP_PKEY_free(now);
	return r;
}

/* An existing log goes on only if what it records would verify: its
 * header carries the root's keys statement and names the signer's
 * capability key and countersigning key (l->ak; a rotated key starts a new
 * log, docs/keys.md). */
static int
header_current(struct alog *l, struct json_object *h, const char *path)
{
	struct json_object *o;
	EVP_PKEY *cap = NULL;
	int r;

	if (!json_object_object_get_ex(h, "keys", NULL))
		return th_fail(TH_ERR_CONFIG, "audit log %s has no keys "
		    "statement (an older thresholdd made it, and it would not "
		    "verify): move it aside to start a new log", path);
	if (!json_object_object_get_ex(h, "capability", &o) ||
	    jwk_to_pkey(o, &cap) != 0)
		return th_fail(TH_ERR_INVALID, "audit log: unreadable header");
	if ((r = key_current(l, cap, "capability", path)) == 0)
		r = key_current(l, l->ak, l->token_mode ? "audit" :
		    "attestation", path);
	EVP_PKEY_free(cap);
	return r;
}

int
alog_open(const char *path, const char *signer_path, const char *instance,
    struct alog **out)
{
	struct json_object *h = NULL, *akj;
	struct alog *l;
	struct buf *body = NULL;
	sqlite3_stmt *st = NULL;
	const char *inst, *sel, *ck;
	uint8_t hh[32];
	int r;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return TH_ERR_ALLOC;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->link_lock, NULL);
	pthread_cond_init(&l->done, NULL);
	pthread_cond_init(&l->pending, NULL);
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "cannot open the audit log %s: %s", path,
		    l->db != NULL ? sqlite3_errmsg(l->db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(l->db, 5000);
	/* Every commit reaches the disk before the caller goes on. */
	if (sqlite3_exec(l->db, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=FULL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(l->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		r = db_fail(l, path);
		goto out;
	}
	if ((r = sigc_connect(signer_path, &l->signer)) != 0 ||
	    (body = buf_new()) == NULL)
		goto out;
	if (sqlite3_prepare_v2(l->db, "SELECT body FROM header", -1, &st,
	    NULL) != SQLITE_OK) {
		r = db_fail(l, "read header");
		goto out;
	}
	if (sqlite3_step(st) == SQLITE_ROW) {
		r = buf_put(body, sqlite3_column_text(st, 0),
		    (size_t)sqlite3_column_bytes(st, 0));
	} else if ((r = make_header(l, instance, body)) == 0)
		r = insert_body(l, "INSERT INTO header(id, body) VALUES(?, ?)",
		    1, NULL, 0, body);
	sqlite3_finalize(st);
	if (r != 0)
		goto out;
	if ((r = json_parse_strict((const char *)buf_ptr(body), buf_len(body),
	    ALOG_BODY_MAX, &h)) != 0 ||
	    (r = json_get_string(h, "instance", &inst)) != 0 ||
	    (r = json_get_string(h, "checkpoint_key", &ck)) != 0) {
		r = th_fail(TH_ERR_INVALID, "audit log: unreadable header");
		goto out;
	}
	l->token_mode = strcmp(ck, "token-signature") == 0;
	if (!json_object_object_get_ex(h, "ak", &akj) ||
	    jwk_to_pkey(akj, &l->ak) != 0) {
		r = th_fail(TH_ERR_INVALID, "audit log: unreadable header");
		goto out;
	}
	if (json_get_string(h, "pcr_selection", &sel) != 0)
		sel = "";
	if (strcmp(inst, instance) != 0) {
		r = th_fail(TH_ERR_CONFIG, "audit log %s belongs to %s, not %s",
		    path, inst, instance);
		goto out;
	}
	if ((r = header_current(l, h, path)) != 0)
		goto out;
	snprintf(l->pcr_selection, sizeof(l->pcr_selection), "%s", sel);
	sha256(buf_ptr(body), buf_len(body), hh);
	b64url_digest(hh, l->hh);
	if ((r = load_state(l)) != 0)
		goto out;
	*out = l;
	l = NULL;
 out:
	json_object_put(h);
	buf_free(body);
	alog_close(l);
	return r;
}

/* Commits whatever was appended, a little later, so that entries nobody
 * waits for (outcomes, revocations, mints) are countersigned too and
 * share quotes. */
static void *
committer(void *arg)
{
	struct alog *l = arg;
	struct timespec delay = { 0, ALOG_COMMIT_DELAY_MS * 1000000L };
	int64_t seq;

	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->stopping && l->committed >= l->seq)
			pthread_cond_wait(&l->pending, &l->lock);
		if (l->committed >= l->seq)
			break;
		pthread_mutex_unlock(&l->lock);
		nanosleep(&delay, NULL);
		pthread_mutex_lock(&l->lock);
		seq = l->seq;
		pthread_mutex_unlock(&l->lock);
		/* A failure (the TPM away) leaves the entries pending; the
		 * next append or commit tries again. */
		if (alog_commit(l, seq, NULL) != 0) {
			nanosleep(&delay, NULL);
			pthread_mutex_lock(&l->lock);
			if (l->stopping)
				break;
			continue;
		}
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int
alog_start_committer(struct alog *l)
{
	if (pthread_create(&l->committer, NULL, committer, l) != 0)
		return th_fail(TH_ERR_INTERNAL, "cannot start the audit "
		    "committer");
	l->running = 1;
	return 0;
}

void
alog_close(struct alog *l)
{
	if (l == NULL)
		return;
	if (l->running) {
		/* Commit what is pending before going. */
		pthread_mutex_lock(&l->lock);
		l->stopping = 1;
		pthread_cond_signal(&l->pending);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->committer, NULL);
	}
	sqlite3_close(l->db);
	sigc_close(l->signer);
	EVP_PKEY_free(l->ak);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->link_lock);
	pthread_cond_destroy(&l->done);
	pthread_cond_destroy(&l->pending);
	free(l->leaves);
	free(l->links);
	free(l);
}

int
alog_open_intents(struct alog *l,
    int (*fn)(int64_t seq, struct json_object *entry, void *arg), void *arg)
{
	struct json_object *o;
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(l->db, "SELECT seq, body FROM entries WHERE "
	    "kind = 'intent' AND seq NOT IN (SELECT ref FROM entries WHERE "
	    "kind IN ('outcome', 'recovered') AND ref IS NOT NULL) ORDER BY "
	    "seq", -1, &st, NULL) != SQLITE_OK)
		return db_fail(l, "read");
	while (r == 0 && sqlite3_step(st) == SQLITE_ROW) {
		o = NULL;
		if ((r = json_parse_strict((const char *)sqlite3_column_text(st,
		    1), (size_t)sqlite3_column_bytes(st, 1), ALOG_BODY_MAX,
		    &o)) == 0)
			r = fn(sqlite3_column_int64(st, 0), o, arg);
		json_object_put(o);
	}
	sqlite3_finalize(st);
	return r;
}

int
alog_result_named(struct alog *l, const char *op, const char *repo,
    int64_t id, int *named)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*named = 0;
	/* The whole log, by the entries_result_id index: ids are not
	 * ordered by the log's times, which follow a clock that may be set
	 * back. */
	if (sqlite3_prepare_v2(l->db, "SELECT 1 FROM entries o JOIN entries i "
	    "ON i.seq = o.ref WHERE o.kind IN ('outcome', 'recovered') AND "
	    "json_extract(o.body, '$.result.id') = ?1 AND i.kind = 'intent' "
	    "AND json_extract(i.body, '$.op.op') = ?2 AND "
	    "json_extract(i.body, '$.op.repo') = ?3 LIMIT 1", -1, &st,
	    NULL) != SQLITE_OK)
		return db_fail(l, "read");
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, op, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, repo, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*named = 1;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(l, "read");
}

int
alog_merge_claimed(struct alog *l, const char *repo, int64_t pr,
    int64_t except, int64_t *by)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*by = 0;
	if (sqlite3_prepare_v2(l->db, "SELECT i.seq FROM entries i JOIN "
	    "entries o ON o.ref = i.seq WHERE i.kind = 'intent' AND "
	    "json_extract(i.body, '$.op.repo') = ?1 AND "
	    "json_extract(i.body, '$.op.pr') = ?2 AND "
	    "json_extract(i.body, '$.op.op') = 'github.merge' AND "
	    "i.seq != ?3 AND o.kind IN ('outcome', 'recovered') AND "
	    "json_extract(o.body, '$.result.merged') = 1 LIMIT 1", -1, &st,
	    NULL) != SQLITE_OK)
		return db_fail(l, "read");
	sqlite3_bind_text(st, 1, repo, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, pr);
	sqlite3_bind_int64(st, 3, except);
	if ((rc = sqlite3_step(st)) == SQLITE_ROW)
		*by = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(l, "read");
}

static int
export_rows(sqlite3 *db, const char *sql, const char *type, FILE *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return th_fail(TH_ERR_IO, "audit export: %s", sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fprintf(out, "{\"type\":\"%s\",\"%s\":%s}\n", type, type,
		    (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return th_fail(TH_ERR_IO, "audit export: %s", sqlite3_errmsg(db));
	return ferror(out) ? th_fail(TH_ERR_IO, "audit export: write failed") :
	    0;
}

static int
export_db(sqlite3 *db, FILE *out)
{
	int r;

	if ((r = export_rows(db, "SELECT body FROM header", "header", out)) ||
	    (r = export_rows(db, "SELECT body FROM entries ORDER BY seq",
	    "entry", out)) ||
	    (r = export_rows(db, "SELECT body FROM checkpoints ORDER BY n",
	    "checkpoint", out)))
		return r;
	return fflush(out) == 0 ? 0 : th_fail(TH_ERR_IO, "write failed");
}

int
alog_export_db(const char *path, FILE *out)
{
	sqlite3 *db = NULL;
	int r;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "cannot open the audit log %s: %s", path,
		    db != NULL ? sqlite3_errmsg(db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	/* One read transaction, one snapshot: three SELECTs on their own
	 * would each see the log as of their start, and a broker appending
	 * meanwhile gives checkpoints over entries the export does not hold
	 * (a healthy log that fails verification). */
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "audit export: %s", sqlite3_errmsg(db));
		goto out;
	}
	r = export_db(db, out);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
 out:
	sqlite3_close(db);
	return r;
}
