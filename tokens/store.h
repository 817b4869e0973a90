/* Threshold's token state in SQLite: installed certificates and delegations,
 * policies stored by hash, revocations, and spent capability ids.  A struct
 * store may be shared by threads: its calls take turns (the database itself
 * is safe across processes too).
 *
 * The database runs in WAL mode with synchronous=NORMAL: a commit survives
 * a crash of the process, not necessarily a power loss.  A spend lost that
 * way cannot be replayed: redeemers refuse capabilities minted before they
 * started (cap_ctx_set_not_before). */
#ifndef TH_STORE_H
#define TH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "jws.h"

#define STORE_INSTANCE_MAX	64
#define STORE_LEAVES_MAX	64

struct store;

enum store_kind { STORE_CERT = 1, STORE_DELEG = 2 };

struct store_row {
	enum store_kind	 kind;
	char		 hash[JWS_HASH_LEN + 1];
	char		 issuer[80];
	char		 subject[80];
	int64_t		 exp;
	int		 revoked;
};

int	store_open(const char *path, struct store **out);
void	store_close(struct store *s);			/* NULL ok */

/* This installation's id, created with the database: the capability
 * audience, "thresholdd:" + 22 random base64url characters. */
const char *store_instance(struct store *s);

/* Installs a token (idempotent for the same hash). */
int	store_put_token(struct store *s, enum store_kind kind,
	    const char *hash, const char *token, const char *issuer,
	    const char *subject, const char *parent, int64_t exp);
/* *out is malloc'd, NUL-terminated.  TH_ERR_NOT_FOUND if unknown. */
int	store_get_token(struct store *s, const char *hash,
	    enum store_kind *kind, char **out);
int	store_put_policy(struct store *s, const char *hash, const char *body);
int	store_get_policy(struct store *s, const char *hash, char **out);

/* Marks a token revoked; TH_ERR_NOT_FOUND if no such token. */
int	store_revoke(struct store *s, const char *hash);
/* 0 if none of hashes[0..n) is revoked; else TH_ERR_DENIED and *which is
 * the index of the first revoked one (a token no longer installed counts as
 * revoked).  n <= STORE_LINKS_MAX; one read of one snapshot. */
#define STORE_LINKS_MAX	8
int	store_check_revoked(struct store *s, char (*hashes)[JWS_HASH_LEN + 1],
	    size_t n, size_t *which);

/* The newest unrevoked, unexpired certificate of human sub. */
int	store_find_cert(struct store *s, const char *sub, int64_t now,
	    char hash[JWS_HASH_LEN + 1]);
/* Unexpired delegations to agent sub, unrevoked first, then newest first
 * (revoked ones are listed so that a refusal can say so). */
int	store_find_leaves(struct store *s, const char *sub, int64_t now,
	    char (*hashes)[JWS_HASH_LEN + 1], size_t max, size_t *n);
/* Calls fn for each installed token of kind (0 for all), oldest first. */
int	store_list(struct store *s, enum store_kind kind,
	    int (*fn)(const struct store_row *, void *), void *arg);

/* Records jti as spent until exp, atomically: TH_ERR_DENIED ("replayed")
 * if it already was.  Also prunes ids whose exp is before now. */
int	store_spend(struct store *s, const char *jti, int64_t exp,
	    int64_t now);
/* TH_ERR_DENIED ("replayed") if jti was spent, 0 if not. */
int	store_spent(struct store *s, const char *jti);

#endif
