#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "err.h"
#include "store.h"

#define STORE_BUSY_MS	5000

struct store {
	sqlite3		*db;
	char		 instance[STORE_INSTANCE_MAX + 1];
	sqlite3_stmt	*spend, *prune, *get, *live, *leaves, *spent;
	int64_t		 pruned;	/* when spent ids were last pruned */
	/* One connection and its prepared statements serve every thread,
	 * one call at a time.  Recursive: a store_list callback may ask
	 * the store again. */
	pthread_mutex_t	 mu;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tokens("
    "  hash TEXT PRIMARY KEY, kind INTEGER NOT NULL, token TEXT NOT NULL,"
    "  issuer TEXT NOT NULL, subject TEXT NOT NULL, parent TEXT,"
    "  exp INTEGER NOT NULL, created INTEGER NOT NULL,"
    "  revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS tokens_subject ON tokens(subject, kind);"
    "CREATE TABLE IF NOT EXISTS policies(hash TEXT PRIMARY KEY,"
    "  body TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS spent(jti TEXT PRIMARY KEY,"
    "  exp INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS spent_exp ON spent(exp);";

static int
db_fail(struct store *s, const char *what)
{
	return th_fail(TH_ERR_IO, "token store: %s: %s", what,
	    sqlite3_errmsg(s->db));
}

static int
load_instance(struct store *s)
{
	char id[JWS_JTI_LEN + 1], inst[STORE_INSTANCE_MAX + 1];
	sqlite3_stmt *st = NULL;
	int r;

	if ((r = jws_new_jti(id)) != 0)
		return r;
	snprintf(inst, sizeof(inst), "thresholdd:%s", id);
	/* The first opener creates the id; everyone else reads it. */
	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO meta(k, v) "
	    "VALUES('instance', ?)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, inst, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		r = db_fail(s, "instance id");
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(s->db, "SELECT v FROM meta WHERE k='instance'",
	    -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
	    sqlite3_column_bytes(st, 0) > STORE_INSTANCE_MAX) {
		r = db_fail(s, "instance id");
		goto out;
	}
	strcpy(s->instance, (const char *)sqlite3_column_text(st, 0));
 out:
	sqlite3_finalize(st);
	return r;
}

int
store_open(const char *path, struct store **out)
{
	pthread_mutexattr_t attr;
	struct store *s;
	int r;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return TH_ERR_ALLOC;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&s->mu, &attr);
	pthread_mutexattr_destroy(&attr);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		r = th_fail(TH_ERR_IO, "cannot open token store %s: %s", path,
		    s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
	if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;"
	    "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		r = db_fail(s, path);
		goto out;
	}
	if ((r = load_instance(s)) != 0)
		goto out;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO spent(jti, exp) "
	    "VALUES(?, ?)", -1, &s->spend, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "DELETE FROM spent WHERE exp < ?", -1,
	    &s->prune, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "SELECT kind, token FROM tokens "
	    "WHERE hash = ?", -1, &s->get, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "SELECT hash FROM tokens WHERE "
	    "revoked = 0 AND hash IN (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1,
	    &s->live, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "SELECT 1 FROM spent WHERE jti = ?", -1,
	    &s->spent, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->db, "SELECT hash FROM tokens WHERE kind = 2 "
	    "AND subject = ? AND exp > ? ORDER BY revoked, created DESC, "
	    "rowid DESC", -1, &s->leaves, NULL) != SQLITE_OK) {
		r = db_fail(s, "prepare");
		goto out;
	}
	*out = s;
	s = NULL;
 out:
	store_close(s);
	return r;
}

void
store_close(struct store *s)
{
	if (s == NULL)
		return;
	sqlite3_finalize(s->spend);
	sqlite3_finalize(s->prune);
	sqlite3_finalize(s->get);
	sqlite3_finalize(s->live);
	sqlite3_finalize(s->leaves);
	sqlite3_finalize(s->spent);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

const char *
store_instance(struct store *s)
{
	return s->instance;
}

static int
put_token_locked(struct store *s, enum store_kind kind, const char *hash,
    const char *token, const char *issuer, const char *subject,
    const char *parent, int64_t exp)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO tokens(hash, "
	    "kind, token, issuer, subject, parent, exp, created) VALUES(?, ?, "
	    "?, ?, ?, ?, ?, strftime('%s','now'))", -1, &st, NULL) != SQLITE_OK
	    || sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int(st, 2, kind) != SQLITE_OK ||
	    sqlite3_bind_text(st, 3, token, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 4, issuer, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 5, subject, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 6, parent, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 7, exp) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		r = db_fail(s, "install token");
	sqlite3_finalize(st);
	return r;
}

static int
get_token_locked(struct store *s, const char *hash, enum store_kind *kind,
    char **out)
{
	int r = 0, rc = SQLITE_DONE;

	*out = NULL;
	sqlite3_reset(s->get);
	if (sqlite3_bind_text(s->get, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK)
		return db_fail(s, "get token");
	rc = sqlite3_step(s->get);
	if (rc == SQLITE_DONE)
		r = th_fail(TH_ERR_NOT_FOUND, "no installed token %.12s...",
		    hash);
	else if (rc != SQLITE_ROW)
		r = db_fail(s, "get token");
	else {
		*kind = sqlite3_column_int(s->get, 0);
		if ((*out = strdup((const char *)sqlite3_column_text(s->get,
		    1))) == NULL)
			r = TH_ERR_ALLOC;
	}
	sqlite3_reset(s->get);
	sqlite3_clear_bindings(s->get);
	return r;
}

static int
put_policy_locked(struct store *s, const char *hash, const char *body)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO policies(hash, "
	    "body) VALUES(?, ?)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		r = db_fail(s, "install policy");
	sqlite3_finalize(st);
	return r;
}

static int
get_policy_locked(struct store *s, const char *hash, char **out)
{
	sqlite3_stmt *st = NULL;
	int r = 0, rc = SQLITE_DONE;

	*out = NULL;
	if (sqlite3_prepare_v2(s->db, "SELECT body FROM policies WHERE "
	    "hash = ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK) {
		r = db_fail(s, "get policy");
		goto out;
	}
	if ((rc = sqlite3_step(st)) == SQLITE_DONE)
		r = th_fail(TH_ERR_NOT_FOUND, "policy %.12s... is not "
		    "installed", hash);
	else if (rc != SQLITE_ROW)
		r = db_fail(s, "get policy");
	else if ((*out = strdup((const char *)sqlite3_column_text(st, 0)))
	    == NULL)
		r = TH_ERR_ALLOC;
 out:
	sqlite3_finalize(st);
	return r;
}

static int
revoke_locked(struct store *s, const char *hash)
{
	sqlite3_stmt *st = NULL;
	int r = 0;

	if (sqlite3_prepare_v2(s->db, "UPDATE tokens SET revoked = 1 WHERE "
	    "hash = ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		r = db_fail(s, "revoke");
	else if (sqlite3_changes(s->db) == 0)
		r = th_fail(TH_ERR_NOT_FOUND, "no installed token %s", hash);
	sqlite3_finalize(st);
	return r;
}

static int
check_revoked_locked(struct store *s, char (*hashes)[JWS_HASH_LEN + 1],
    size_t n, size_t *which)
{
	sqlite3_stmt *st = s->live;
	uint8_t live[STORE_LINKS_MAX] = { 0 };
	const char *h;
	size_t i;
	int r = 0, rc;

	if (n > STORE_LINKS_MAX)
		return th_fail(TH_ERR_INVALID, "revocation check: %zu links, "
		    "at most %d", n, STORE_LINKS_MAX);
	/* One statement, so one read transaction for the whole chain; the
	 * parameters past n stay NULL, which matches nothing. */
	sqlite3_reset(st);
	for (i = 0; i < n; i++)
		if (sqlite3_bind_text(st, (int)i + 1, hashes[i], -1,
		    SQLITE_STATIC) != SQLITE_OK) {
			r = db_fail(s, "revocation check");
			goto out;
		}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		h = (const char *)sqlite3_column_text(st, 0);
		for (i = 0; h != NULL && i < n; i++)
			if (strcmp(h, hashes[i]) == 0)
				live[i] = 1;
	}
	if (rc != SQLITE_DONE) {
		r = db_fail(s, "revocation check");
		goto out;
	}
	for (i = 0; i < n; i++)
		if (!live[i]) {
			*which = i;
			r = TH_ERR_DENIED;
			break;
		}
 out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}

static int
find_cert_locked(struct store *s, const char *sub, int64_t now,
    char hash[JWS_HASH_LEN + 1])
{
	sqlite3_stmt *st = NULL;
	int r = 0, rc = SQLITE_DONE;

	if (sqlite3_prepare_v2(s->db, "SELECT hash FROM tokens WHERE kind = 1 "
	    "AND subject = ? AND revoked = 0 AND exp > ? ORDER BY created DESC,"
	    " rowid DESC LIMIT 1", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, sub, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, now) != SQLITE_OK) {
		r = db_fail(s, "find certificate");
		goto out;
	}
	if ((rc = sqlite3_step(st)) == SQLITE_DONE)
		r = th_fail(TH_ERR_NOT_FOUND, "%s has no valid certificate "
		    "(threshold human add)", sub);
	else if (rc != SQLITE_ROW)
		r = db_fail(s, "find certificate");
	else
		snprintf(hash, JWS_HASH_LEN + 1, "%s",
		    (const char *)sqlite3_column_text(st, 0));
 out:
	sqlite3_finalize(st);
	return r;
}

static int
find_leaves_locked(struct store *s, const char *sub, int64_t now,
    char (*hashes)[JWS_HASH_LEN + 1], size_t max, size_t *n)
{
	sqlite3_stmt *st = s->leaves;
	int r = 0, rc = SQLITE_DONE;

	*n = 0;
	sqlite3_reset(st);
	if (sqlite3_bind_text(st, 1, sub, -1, SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, now) != SQLITE_OK) {
		r = db_fail(s, "find delegations");
		goto out;
	}
	while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
		snprintf(hashes[(*n)++], JWS_HASH_LEN + 1, "%s",
		    (const char *)sqlite3_column_text(st, 0));
	if (*n < max && rc != SQLITE_DONE)
		r = db_fail(s, "find delegations");
 out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}

static int
list_locked(struct store *s, enum store_kind kind,
    int (*fn)(const struct store_row *, void *), void *arg)
{
	struct store_row row;
	sqlite3_stmt *st = NULL;
	int r = 0, rc = SQLITE_DONE;

	if (sqlite3_prepare_v2(s->db, "SELECT kind, hash, issuer, subject, "
	    "exp, revoked FROM tokens WHERE ?1 = 0 OR kind = ?1 ORDER BY "
	    "created, rowid", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int(st, 1, kind) != SQLITE_OK) {
		r = db_fail(s, "list");
		goto out;
	}
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&row, 0, sizeof(row));
		row.kind = sqlite3_column_int(st, 0);
		snprintf(row.hash, sizeof(row.hash), "%s",
		    (const char *)sqlite3_column_text(st, 1));
		snprintf(row.issuer, sizeof(row.issuer), "%s",
		    (const char *)sqlite3_column_text(st, 2));
		snprintf(row.subject, sizeof(row.subject), "%s",
		    (const char *)sqlite3_column_text(st, 3));
		row.exp = sqlite3_column_int64(st, 4);
		row.revoked = sqlite3_column_int(st, 5);
		r = fn(&row, arg);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_fail(s, "list");
 out:
	sqlite3_finalize(st);
	return r;
}

static int
spend_locked(struct store *s, const char *jti, int64_t exp, int64_t now)
{
	int r = 0, rc;

	/* Pruning is a write of its own: once a second is plenty, since
	 * ids live at most a minute. */
	if (now != s->pruned) {
		sqlite3_reset(s->prune);
		if (sqlite3_bind_int64(s->prune, 1, now) != SQLITE_OK ||
		    sqlite3_step(s->prune) != SQLITE_DONE)
			r = db_fail(s, "prune spent ids");
		sqlite3_reset(s->prune);
		if (r != 0)
			return r;
		s->pruned = now;
	}
	/* The primary key makes the insert the atomic test-and-set: of two
	 * concurrent redemptions exactly one insert succeeds. */
	sqlite3_reset(s->spend);
	if (sqlite3_bind_text(s->spend, 1, jti, -1, SQLITE_STATIC) !=
	    SQLITE_OK || sqlite3_bind_int64(s->spend, 2, exp) != SQLITE_OK)
		return db_fail(s, "spend");
	rc = sqlite3_step(s->spend);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		r = th_fail(TH_ERR_DENIED, "replayed: capability %s was already "
		    "redeemed", jti);
	else if (rc != SQLITE_DONE)
		r = db_fail(s, "spend");
	sqlite3_reset(s->spend);
	sqlite3_clear_bindings(s->spend);
	return r;
}

static int
spent_locked(struct store *s, const char *jti)
{
	sqlite3_stmt *st = s->spent;
	int r = 0, rc;

	sqlite3_reset(st);
	if (sqlite3_bind_text(st, 1, jti, -1, SQLITE_STATIC) != SQLITE_OK)
		return db_fail(s, "spent");
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = th_fail(TH_ERR_DENIED, "replayed: capability %s was already "
		    "redeemed", jti);
	else if (rc != SQLITE_DONE)
		r = db_fail(s, "spent");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}

/* The public calls: each one under the store's lock. */

#define LOCKED(s, call) do {						\
	int r_;								\
	pthread_mutex_lock(&(s)->mu);					\
	r_ = (call);							\
	pthread_mutex_unlock(&(s)->mu);					\
	return r_;							\
} while (0)

int
store_put_token(struct store *s, enum store_kind kind, const char *hash,
    const char *token, const char *issuer, const char *subject,
    const char *parent, int64_t exp)
{
	LOCKED(s, put_token_locked(s, kind, hash, token, issuer, subject,
	    parent, exp));
}

int
store_get_token(struct store *s, const char *hash, enum store_kind *kind,
    char **out)
{
	LOCKED(s, get_token_locked(s, hash, kind, out));
}

int
store_put_policy(struct store *s, const char *hash, const char *body)
{
	LOCKED(s, put_policy_locked(s, hash, body));
}

int
store_get_policy(struct store *s, const char *hash, char **out)
{
	LOCKED(s, get_policy_locked(s, hash, out));
}

int
store_revoke(struct store *s, const char *hash)
{
	LOCKED(s, revoke_locked(s, hash));
}

int
store_check_revoked(struct store *s, char (*hashes)[JWS_HASH_LEN + 1],
    size_t n, size_t *which)
{
	LOCKED(s, check_revoked_locked(s, hashes, n, which));
}

int
store_find_cert(struct store *s, const char *sub, int64_t now,
    char hash[JWS_HASH_LEN + 1])
{
	LOCKED(s, find_cert_locked(s, sub, now, hash));
}

int
store_find_leaves(struct store *s, const char *sub, int64_t now,
    char (*hashes)[JWS_HASH_LEN + 1], size_t max, size_t *n)
{
	LOCKED(s, find_leaves_locked(s, sub, now, hashes, max, n));
}

int
store_list(struct store *s, enum store_kind kind,
    int (*fn)(const struct store_row *, void *), void *arg)
{
	LOCKED(s, list_locked(s, kind, fn, arg));
}

int
store_spend(struct store *s, const char *jti, int64_t exp, int64_t now)
{
	LOCKED(s, spend_locked(s, jti, exp, now));
}

int
store_spent(struct store *s, const char *jti)
{
	LOCKED(s, spent_locked(s, jti));
}
