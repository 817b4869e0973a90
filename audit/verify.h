/* Offline verification of an audit log (docs/audit-format.md,
 * "Verification"), from public material only: the log, the auditor's root
 * key and optionally the EK manufacturer's CA, expected PCR values and
 * checkpoints recorded earlier.
 *
 * Two readers -- an export file (JSON lines) and the live SQLite database
 * (tables header(body), entries(seq, body), checkpoints(n, body)) -- feed
 * one core: averify_header once, then averify_entry / averify_checkpoint in
 * any interleaving (entries in sequence order), then averify_finish.  The
 * core streams: it keeps 33 bytes per entry (leaf hash, kind) and no entry
 * text, and judges the checks in the spec's order, steps 1 to 6, then the
 * auditor's expectations; the first failure of the lowest step is the one
 * reported, as one line naming its position ("entry 17: ...",
 * "checkpoint 3: ...", "line 9: ..." for an export line that does not
 * parse).  Anything malformed fails closed.  Capability signatures, the
 * bulk of the work, are checked on other threads when there are CPUs for
 * them (audit/vpool.h); their failures are reported at their entries all
 * the same.
 *
 * TPM structures (TPMS_ATTEST, TPMT_SIGNATURE) are parsed here from TPM 2.0
 * Part 2's big-endian marshalling, bounded as Part 2 bounds them; no TPM
 * library is linked.
 *
 * XXX: qualifiedSigner is not compared with the AK's name (the header
 * carries the AK as a JWK, not its TPMT_PUBLIC); the root's activation
 * statement vouches for the AK instead (docs/audit-format.md). */
#ifndef TH_AVERIFY_H
#define TH_AVERIFY_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

/* One export line: a body of up to 1 MiB (the writer's bound) and the
 * line's own members around it. */
#define AVERIFY_LINE_MAX	(1024 * 1024 + 64)
#define AVERIFY_ENTRIES_MAX	(4 * 1024 * 1024)
#define AVERIFY_CHECKPOINTS_MAX	(1024 * 1024)
#define AVERIFY_PENDING_MAX	1024	/* checkpoints read before their entries, */
#define AVERIFY_PENDING_BYTES	(32 * 1024)	/* each at most this long */
#define AVERIFY_PENDING_CONTAINERS 64	/* and with at most this many objects
					 * and arrays (itself, pcr_values and
					 * its up to 48 entries) */
#define AVERIFY_EXPECT_MAX	64	/* --expect-checkpoint */
#define AVERIFY_MSG_MAX		512
#define AVERIFY_CODE_MAX	64	/* a refusal's code */
#define AVERIFY_B64_MAX		4096	/* attest, sig as base64url */

/* TPM 2.0 Part 2 constants and bounds. */
#define AVERIFY_TPM_GENERATED	0xff544347u
#define AVERIFY_ST_ATTEST_QUOTE	0x8018
#define AVERIFY_ALG_SHA1	0x0004
#define AVERIFY_ALG_SHA256	0x000b
#define AVERIFY_ALG_ECDSA	0x0018
#define AVERIFY_NAME_MAX	68	/* sizeof(TPMU_NAME) */
#define AVERIFY_DATA_MAX	64	/* TPM2B_DATA: sizeof(TPMU_HA) */
#define AVERIFY_DIGEST_MAX	64	/* TPM2B_DIGEST */
#define AVERIFY_BANKS_MAX	16	/* TPML_PCR_SELECTION.count */
#define AVERIFY_SELECT_MAX	4	/* sizeofSelect: 32 PCRs */
#define AVERIFY_ECC_MAX		128	/* TPM2B_ECC_PARAMETER */
#define AVERIFY_PCRS_MAX	24	/* PCRs in one selection (0-23) */

struct averify_bank {
	uint16_t	 alg;
	uint8_t		 size;			/* sizeofSelect */
	uint8_t		 select[AVERIFY_SELECT_MAX];
};

/* A TPMS_ATTEST of type quote, fields in host order. */
struct averify_attest {
	uint32_t		 magic;
	uint16_t		 type;
	uint8_t			 signer[AVERIFY_NAME_MAX];
	size_t			 signer_len;
	uint8_t			 extra[AVERIFY_DATA_MAX];
	size_t			 extra_len;
	uint64_t		 clock;
	uint32_t		 reset_count, restart_count;
	uint8_t			 safe;
	uint64_t		 firmware;
	size_t			 nbanks;
	struct averify_bank	 banks[AVERIFY_BANKS_MAX];
	uint8_t			 pcr_digest[AVERIFY_DIGEST_MAX];
	size_t			 pcr_digest_len;
};

/* A TPMT_SIGNATURE (ECDSA only). */
struct averify_sig {
	uint16_t	 alg, hash;
	uint8_t		 r[AVERIFY_ECC_MAX], s[AVERIFY_ECC_MAX];
	size_t		 rlen, slen;
};

/* Parses p[len] as a marshalled TPMS_ATTEST whose attested member is a
 * TPMS_QUOTE_INFO (type 0x8018; magic and type are checked).  Every length
 * is checked against its bound and the input must be consumed exactly;
 * TH_ERR_INVALID / TH_ERR_TRUNCATED / TH_ERR_TOO_LONG with a detail. */
int	averify_parse_attest(const uint8_t *p, size_t len,
	    struct averify_attest *out);
/* Parses p[len] as a TPMT_SIGNATURE: sigAlg ECDSA, hash SHA-256, TPM2B r
 * and s (1..AVERIFY_ECC_MAX bytes each), nothing after. */
int	averify_parse_sig(const uint8_t *p, size_t len, struct averify_sig *out);
/* 0 if sig is an ECDSA P-256 signature over SHA-256(attest[len]) by ak;
 * TH_ERR_CRYPTO otherwise. */
int	averify_quote_sig(EVP_PKEY *ak, const uint8_t *attest, size_t len,
	    const struct averify_sig *sig);
/* 0 if sig (r||s) is ak's ES256 signature of a token-signature checkpoint
 * whose qualifying data is qual (base64url); TH_ERR_CRYPTO otherwise. */
int	averify_token_sig(EVP_PKEY *ak, const uint8_t sig[64], const char *qual);

struct averify;

struct averify_summary {
	uint64_t	 entries, committed, uncommitted;
	uint64_t	 checkpoints, quotes, token_signed;
	uint64_t	 links, humans, agents;
	uint64_t	 mints, intents, reads, outcomes, recovered, revocations;
	uint64_t	 unattached;	/* revocations that name no intent */
	uint64_t	 refusals;
	int64_t		 first_time, last_time;	/* 0 if no entries */
	uint64_t	 last_n;		/* 0 if no checkpoint */
	char		 last_qual[44];		/* "" if no checkpoint */
	char		 header_hash[44];
	char		 instance[129];		/* PROTO_SUBJECT_MAX + 1 */
	char		 checkpoint_key[20];
	int		 ek_checked;		/* ek_cert chained to --ek-ca */
	int		 ak_activated;		/* the root certified AK-EK */
};

/* root: the delegation-root public key the auditor trusts (a reference is
 * taken); the header's root must equal it (RFC 7638 thumbprints). */
int	averify_new(EVP_PKEY *root, struct averify **out);
void	averify_free(struct averify *v);		/* NULL ok */
/* Verify with n threads in all (n >= 1; 1: none but the caller's);
 * by default one per CPU. */
void	averify_set_threads(struct averify *v, int n);
/* The EK manufacturer's CA certificates (PEM, one or more); ek_cert must
 * chain to them (a chain ending at an intermediate given here is
 * accepted). */
int	averify_set_ek_ca(struct averify *v, const char *pem_path);
/* Expected PCR values, "BANK:N=HEX,N=HEX,..." (BANK sha1 or sha256);
 * every quote must list each of them with that value.  May be repeated
 * for another bank. */
int	averify_expect_pcrs(struct averify *v, const char *spec);
/* "N:QUAL": checkpoint N must be present with qualifying data QUAL. */
int	averify_expect_checkpoint(struct averify *v, const char *spec);

/* Readers.  0 if the log verifies; TH_ERR_DENIED if it does not
 * (averify_failure says why); another code if the log could not be read
 * (th_errmsg says why). */
int	averify_file(struct averify *v, const char *path);	/* "-": stdin */
int	averify_db(struct averify *v, const char *path);

/* The core.  Objects are borrowed.  Each feeder returns 0 to go on and
 * TH_ERR_DENIED once the outcome is decided (the reader stops). */
int	averify_header(struct averify *v, struct json_object *header);
int	averify_entry(struct averify *v, struct json_object *entry);
int	averify_checkpoint(struct averify *v, struct json_object *cp);
int	averify_finish(struct averify *v);
/* Records a failure of the input itself (e.g. a line that does not parse)
 * at position pos; returns TH_ERR_DENIED. */
int	averify_malformed(struct averify *v, const char *pos, const char *why);

/* The first failure, "" if none; its step (1-6 as in the spec, 7 for the
 * auditor's expectations, 0 for malformed input). */
const char *averify_failure(const struct averify *v);
int	averify_failed_step(const struct averify *v);
/* Valid after a successful averify_finish. */
void	averify_summary(const struct averify *v, struct averify_summary *out);

#endif
