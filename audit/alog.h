/* alog: the audit log writer (docs/audit-format.md): append-only SQLite (WAL,
 * synchronous FULL), canonical-JSON entries chained by hash, committed in
 * batches whose RFC 6962 root is bound into the qualifying data of one
 * TPM2_Quote by the attestation key.  Thread-safe: appends are serialised;
 * commits group everything appended while a quote was in flight, so under
 * load the quote count grows with batches, not entries. */
#ifndef TH_ALOG_H
#define TH_ALOG_H

#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "sigclient.h"

struct alog;

/* Opens the log at path, creating it (and its header, from the signer's
 * public keys, EK certificate and a probe quote) if new.  signer_path is
 * the signer's socket: the log keeps a connection of its own.  instance is
 * the broker's id.  Fails closed: no signer, no TPM quote, no log. */
int	alog_open(const char *path, const char *signer_path,
	    const char *instance, struct alog **out);
void	alog_close(struct alog *l);			/* NULL ok */

/* Appends an entry of kind with the members of obj (not consumed), adding
 * v, seq, time and prev; durable when this returns.  *seq may be NULL. */
int	alog_append(struct alog *l, const char *kind, struct json_object *obj,
	    int64_t *seq);
/* As alog_append, but nothing is written, and TH_ERR_DENIED returned, if
 * the entry's time would not be before `before`: an entry naming a chain
 * that has expired by its own time would not verify. */
int	alog_append_before(struct alog *l, const char *kind,
	    struct json_object *obj, int64_t before, int64_t *seq);
/* 1 if the log already holds a link entry for hash. */
int	alog_has_link(struct alog *l, const char *hash);
/* Appends a link entry for token (with its hash) unless the log already
 * holds one; policy is the document a delegation names by policy_hash, or
 * NULL. */
int	alog_link(struct alog *l, const char *hash, const char *token,
	    const char *policy);
/* Returns once a checkpoint covers seq, quoting if need be; *n is that
 * checkpoint's number (may be NULL). */
int	alog_commit(struct alog *l, int64_t seq, int64_t *n);

/* Starts a thread that commits what nobody waits for, within ~10 ms of
 * its append; alog_close then commits what is pending before returning. */
int	alog_start_committer(struct alog *l);

/* Calls fn for every intent that has neither an outcome nor a recovered
 * entry (the broker died between them). */
int	alog_open_intents(struct alog *l,
	    int (*fn)(int64_t seq, struct json_object *entry, void *arg),
	    void *arg);

/* *by: an intent other than except to merge repo's pull request pr that an
 * outcome or recovered entry says merged it, or 0 (a pull request merges
 * once: an interrupted intent is not given another's merge). */
int	alog_merge_claimed(struct alog *l, const char *repo, int64_t pr,
	    int64_t except, int64_t *by);
/* *named 1 if an outcome or recovered entry of an intent to do op on repo
 * gives id as its result's "id" (the comment, deployment or pull request
 * number GitHub made for it). */
int	alog_result_named(struct alog *l, const char *op, const char *repo,
	    int64_t id, int *named);

/* The PCR values of tpm2-tools' serialized dump, as the signer's QUOTE
 * returns them (see tpm/tpm.c, pcrs_serialize), in selection order, and
 * the selection as a string in sel (at most sellen - 1 bytes); from the
 * signer, so bounded like any outside input. */
int	alog_pcr_values(const uint8_t *p, size_t len, struct json_object **out,
	    char *sel, size_t sellen);

/* Writes the export file (JSON lines: header, entries, checkpoints) of a
 * log database, one snapshot of it while a broker appends (threshold audit
 * export). */
int	alog_export_db(const char *path, FILE *out);

#endif
