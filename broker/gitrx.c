#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "err.h"
#include "gitrx.h"
#include "utf8.h"

#define PKT_MAX		65520		/* largest pkt-line, length included */
#define PKT_DATA_MAX	(PKT_MAX - 4)
#define RAWSZ		20		/* SHA-1 */
#define PACK_HDR	12
#define ZCHUNK		16384		/* inflate output of discarded objects */
#define ZIN_MAX		(1U << 30)	/* zlib's avail_in is an unsigned */

/* Git's object types in a pack entry header. */
#define OBJ_COMMIT	1
#define OBJ_TREE	2
#define OBJ_BLOB	3
#define OBJ_TAG		4
#define OBJ_OFS_DELTA	6
#define OBJ_REF_DELTA	7
#define OBJ_UNKNOWN	0	/* resolved type of a delta we cannot tell */

enum phase { PH_COMMANDS, PH_PUSHOPTS, PH_PACK, PH_DONE };
enum pstate { PK_HDR, PK_OBJHDR, PK_OFS, PK_REFBASE, PK_ZDATA, PK_TRAILER };

struct commit {
	uint8_t		id[RAWSZ];
	uint8_t		tree[RAWSZ];
	uint64_t	off;		/* in the pack: commits come in order */
	size_t		coff;		/* content, in rx->pool */
	size_t		clen;
	uint32_t	parent0;	/* index into rx->parents */
	uint32_t	nparents;
};

struct gitrx {
	struct gitrx_limits lim;
	int		 err;		/* sticky, once set */
	char		 errmsg[256];
	enum phase	 phase;
	uint64_t	 body_bytes;

	/* The pkt-line being read. */
	uint8_t		 lenhex[4];
	size_t		 lenhave;
	uint8_t		*pkt;		/* PKT_DATA_MAX + 1 */
	size_t		 pktlen, pkthave;

	struct gitrx_cmd *cmds;
	size_t		 ncmds, cmdcap;
	char		*caps;
	int		 push_cert;
	int		 want_pushopts;
	size_t		 npushopts;

	/* The pack, as a stream. */
	enum pstate	 state;
	EVP_MD_CTX	*md;		/* over every pack byte but the trailer */
	uint64_t	 packoff;	/* pack bytes consumed */
	uint8_t		 fixed[RAWSZ];	/* header, base id or trailer so far */
	size_t		 fixedhave;
	uint32_t	 nobjects, objdone;
	uint64_t	 objoff;	/* where the current object starts */
	int		 objtype, restype;
	uint64_t	 objsize;
	unsigned	 shift;
	uint64_t	 ofs;
	unsigned	 ofsbytes;
	z_stream	 z;
	int		 zinit;
	uint64_t	 zout;
	uint64_t	 inflated;	/* by every object so far */
	int		 keep;		/* inflate into cbuf, not scratch */
	long		 base;		/* a commit delta's base commit */
	uint8_t		*cbuf;		/* the commit or commit delta read */
	size_t		 ccap;
	uint8_t		*dbuf;		/* a commit delta, applied */
	size_t		 dcap;
	uint8_t		 scratch[ZCHUNK];

	/* Every object's offset << 3 | resolved type, in pack order, so that an
	 * OFS_DELTA's base can be checked and typed by binary search. */
	uint64_t	*objs;
	size_t		 nobjs, objcap;

	/* The commit graph: commits, their parents and a hash index keyed
	 * with a secret so that chosen ids cannot pile up in one bucket.
	 * Commits' content is kept too (up to max_commit_bytes in all), as
	 * git stores many commits as deltas against earlier ones. */
	struct commit	*commits;
	uint8_t		*pool;
	size_t		 npool, poolcap;
	size_t		 ncommits, commitcap;
	char		(*parents)[GITRX_HEXSZ + 1];
	size_t		 nparents, parentcap;
	uint32_t	*hidx;		/* commit index + 1, 0 empty */
	size_t		 hcap;		/* power of two */
	uint64_t	 hkey[2];

	uint64_t	 ndeltas, ndelta_unknown, ndelta_commits;
};

static const char zero_hex[GITRX_HEXSZ + 1] =
    "0000000000000000000000000000000000000000";

void
gitrx_limits_default(struct gitrx_limits *lim)
{
	lim->max_commands = 64;
	lim->max_pack_bytes = 512ULL * 1024 * 1024;
	lim->max_objects = 4U * 1024 * 1024;
	lim->max_commits = 200000;
	lim->max_commit_size = 1024 * 1024;
	lim->max_commit_bytes = 64 * 1024 * 1024;
	lim->max_object_size = 512ULL * 1024 * 1024;
	/* Source code deflates 3-10 times and git's own commit deltas are a
	 * few times smaller than the commits: far inside these. */
	lim->inflate_free = 64ULL * 1024 * 1024;
	lim->inflate_ratio = 64;
	lim->commit_free = 8 * 1024 * 1024;
	lim->commit_ratio = 32;
}

struct gitrx *
gitrx_new(const struct gitrx_limits *lim)
{
	struct gitrx *rx;

	if ((rx = calloc(1, sizeof(*rx))) == NULL)
		return NULL;
	if (lim != NULL)
		rx->lim = *lim;
	else
		gitrx_limits_default(&rx->lim);
	if (rx->lim.max_commands == 0 || rx->lim.max_pack_bytes == 0 ||
	    rx->lim.max_objects == 0 || rx->lim.max_commits == 0 ||
	    rx->lim.max_commit_size == 0 || rx->lim.max_object_size == 0 ||
	    rx->lim.max_commit_bytes == 0 || rx->lim.inflate_ratio == 0 ||
	    rx->lim.commit_ratio == 0 || rx->lim.max_commits > UINT32_MAX / 8)
		goto fail;
	if ((rx->pkt = malloc(PKT_DATA_MAX + 1)) == NULL ||
	    (rx->md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(rx->md, EVP_sha1(), NULL) != 1 ||
	    RAND_bytes((uint8_t *)rx->hkey, sizeof(rx->hkey)) != 1)
		goto fail;
	return rx;
 fail:
	gitrx_free(rx);
	return NULL;
}

void
gitrx_free(struct gitrx *rx)
{
	if (rx == NULL)
		return;
	if (rx->zinit)
		inflateEnd(&rx->z);
	EVP_MD_CTX_free(rx->md);
	free(rx->pkt);
	free(rx->cmds);
	free(rx->caps);
	free(rx->cbuf);
	free(rx->dbuf);
	free(rx->pool);
	free(rx->objs);
	free(rx->commits);
	free(rx->parents);
	free(rx->hidx);
	free(rx);
}

/* Hex helpers.  Ids on the wire and in commits are lower case only: git
 * never writes anything else, and one spelling per id keeps comparisons
 * exact. */
static int
hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
hex_to_raw(const char *hex, uint8_t raw[RAWSZ])
{
	int hi, lo;
	size_t i;

	for (i = 0; i < RAWSZ; i++) {
		if ((hi = hexval((uint8_t)hex[2 * i])) < 0 ||
		    (lo = hexval((uint8_t)hex[2 * i + 1])) < 0)
			return -1;
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static void
raw_to_hex(const uint8_t raw[RAWSZ], char hex[GITRX_HEXSZ + 1])
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < RAWSZ; i++) {
		hex[2 * i] = digits[raw[i] >> 4];
		hex[2 * i + 1] = digits[raw[i] & 15];
	}
	hex[GITRX_HEXSZ] = '\0';
}

/* A NUL-terminated id argument from the caller. */
static int
arg_to_raw(const char *hex, uint8_t raw[RAWSZ])
{
	if (hex == NULL || strlen(hex) != GITRX_HEXSZ || hex_to_raw(hex, raw))
		return th_fail(TH_ERR_INVALID, "not a 40-digit lower-case "
		    "object id");
	return 0;
}

/* Commit graph. */

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static size_t
id_hash(const struct gitrx *rx, const uint8_t id[RAWSZ])
{
	uint64_t a, b;

	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	return (size_t)(mix64(a ^ rx->hkey[0]) ^ mix64(b ^ rx->hkey[1]));
}

/* Index of commit id, or -1. */
static long
commit_find(const struct gitrx *rx, const uint8_t id[RAWSZ])
{
	size_t i, mask;
	uint32_t v;

	if (rx->hcap == 0)
		return -1;
	mask = rx->hcap - 1;
	for (i = id_hash(rx, id) & mask; (v = rx->hidx[i]) != 0;
	    i = (i + 1) & mask)
		if (memcmp(rx->commits[v - 1].id, id, RAWSZ) == 0)
			return (long)(v - 1);
	return -1;
}

static void
hidx_insert(struct gitrx *rx, size_t ci)
{
	size_t i, mask = rx->hcap - 1;

	for (i = id_hash(rx, rx->commits[ci].id) & mask; rx->hidx[i] != 0;
	    i = (i + 1) & mask)
		;
	rx->hidx[i] = (uint32_t)(ci + 1);
}

/* Room for one more commit and np more parents; the index stays at most
 * half full. */
static int
graph_reserve(struct gitrx *rx, size_t np, size_t len)
{
	struct commit *c;
	char (*pa)[GITRX_HEXSZ + 1];
	uint8_t *pl;
	uint32_t *h;
	size_t n, i;

	if (rx->ncommits >= rx->lim.max_commits)
		return th_fail(TH_ERR_TOO_LONG, "more than %zu commits in the "
		    "pack", rx->lim.max_commits);
	/* Octopus merges are rare: four parents a commit on average is far
	 * beyond any real history and keeps the pool bounded. */
	if (np > rx->lim.max_commits * 4 - rx->nparents)
		return th_fail(TH_ERR_TOO_LONG, "too many parent links in the "
		    "pack");
	if (len > rx->lim.max_commit_bytes - rx->npool)
		return th_fail(TH_ERR_TOO_LONG, "commits larger than the limit "
		    "of %zu bytes in all", rx->lim.max_commit_bytes);
	/* Kept for the whole push: a delta of a few bytes can rebuild a
	 * megabyte commit. */
	if (rx->npool + len > rx->lim.commit_free +
	    (uint64_t)rx->lim.commit_ratio * rx->packoff)
		return th_fail(TH_ERR_TOO_LONG, "commits come to more than %u "
		    "times the pack's bytes so far (past the first %zu)",
		    rx->lim.commit_ratio, rx->lim.commit_free);
	if (rx->npool + len > rx->poolcap) {
		n = rx->poolcap ? rx->poolcap : 65536;
		while (n < rx->npool + len)
			n *= 2;
		if (n > rx->lim.max_commit_bytes)
			n = rx->lim.max_commit_bytes;
		if ((pl = realloc(rx->pool, n)) == NULL)
			return TH_ERR_ALLOC;
		rx->pool = pl;
		rx->poolcap = n;
	}
	if (rx->ncommits == rx->commitcap) {
		n = rx->commitcap ? rx->commitcap * 2 : 64;
		if (n > rx->lim.max_commits)
			n = rx->lim.max_commits;
		if ((c = reallocarray(rx->commits, n, sizeof(*c))) == NULL)
			return TH_ERR_ALLOC;
		rx->commits = c;
		rx->commitcap = n;
	}
	if (rx->nparents + np > rx->parentcap) {
		n = rx->parentcap ? rx->parentcap : 64;
		while (n < rx->nparents + np)
			n *= 2;
		if ((pa = reallocarray(rx->parents, n, sizeof(*pa))) == NULL)
			return TH_ERR_ALLOC;
		rx->parents = pa;
		rx->parentcap = n;
	}
	if ((rx->ncommits + 1) * 2 > rx->hcap) {
		n = rx->hcap ? rx->hcap * 2 : 128;
		if ((h = calloc(n, sizeof(*h))) == NULL)
			return TH_ERR_ALLOC;
		free(rx->hidx);
		rx->hidx = h;
		rx->hcap = n;
		for (i = 0; i < rx->ncommits; i++)
			hidx_insert(rx, i);
	}
	return 0;
}

/* "<key> <40 hex>\n" at p (len bytes left)? */
static int
id_line(const uint8_t *p, size_t len, const char *key, uint8_t raw[RAWSZ])
{
	size_t k = strlen(key);

	if (len < k + 1 + GITRX_HEXSZ + 1 || memcmp(p, key, k) != 0 ||
	    p[k] != ' ' || p[k + 1 + GITRX_HEXSZ] != '\n' ||
	    hex_to_raw((const char *)p + k + 1, raw) != 0)
		return -1;
	return 0;
}

static int
has_prefix(const uint8_t *p, size_t len, const char *s)
{
	size_t k = strlen(s);

	return len >= k && memcmp(p, s, k) == 0;
}

/* The commit just read, c[0..len): its id, and the tree and parent lines
 * that open its header (gitformat: tree, parents, author, committer, in
 * that order, as fsck wants them). */
static int
commit_done(struct gitrx *rx, const uint8_t *c, size_t len)
{
	const uint8_t *nl;
	size_t pos, np, i;
	uint8_t id[RAWSZ], tree[RAWSZ], praw[RAWSZ];
	char hdr[32];
	struct commit *cm;
	EVP_MD_CTX *md = NULL;
	int hl, r;

	hl = snprintf(hdr, sizeof(hdr), "commit %zu", len);
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1 ||
	    EVP_DigestUpdate(md, hdr, (size_t)hl + 1) != 1 ||
	    EVP_DigestUpdate(md, c, len) != 1 ||
	    EVP_DigestFinal_ex(md, id, NULL) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "SHA-1 of a commit");
		goto out;
	}
	if (id_line(c, len, "tree", tree) != 0) {
		r = th_fail(TH_ERR_INVALID, "commit object %u has no tree "
		    "line", rx->objdone);
		goto out;
	}
	pos = 5 + GITRX_HEXSZ + 1;
	for (np = 0; has_prefix(c + pos, len - pos, "parent "); np++) {
		if (id_line(c + pos, len - pos, "parent", praw) != 0) {
			r = th_fail(TH_ERR_INVALID, "commit object %u has a "
			    "malformed parent line", rx->objdone);
			goto out;
		}
		pos += 7 + GITRX_HEXSZ + 1;
	}
	if (!has_prefix(c + pos, len - pos, "author ") ||
	    (nl = memchr(c + pos, '\n', len - pos)) == NULL ||
	    !has_prefix(nl + 1, len - (size_t)(nl + 1 - c), "committer ")) {
		r = th_fail(TH_ERR_INVALID, "commit object %u lacks its author "
		    "or committer line", rx->objdone);
		goto out;
	}
	/* pack-objects never writes an object twice; refusing it keeps
	 * commits and their pack offsets one to one. */
	if (commit_find(rx, id) >= 0) {
		r = th_fail(TH_ERR_INVALID, "commit object %u is in the pack "
		    "twice", rx->objdone);
		goto out;
	}
	if ((r = graph_reserve(rx, np, len)) != 0)
		goto out;
	cm = &rx->commits[rx->ncommits];
	memcpy(cm->id, id, RAWSZ);
	memcpy(cm->tree, tree, RAWSZ);
	cm->off = rx->objoff;
	cm->coff = rx->npool;
	cm->clen = len;
	if (len > 0)
		memcpy(rx->pool + rx->npool, c, len);
	rx->npool += len;
	cm->parent0 = (uint32_t)rx->nparents;
	cm->nparents = (uint32_t)np;
	for (i = 0, pos = 5 + GITRX_HEXSZ + 1; i < np; i++) {
		memcpy(rx->parents[rx->nparents], c + pos + 7, GITRX_HEXSZ);
		rx->parents[rx->nparents++][GITRX_HEXSZ] = '\0';
		pos += 7 + GITRX_HEXSZ + 1;
	}
	hidx_insert(rx, rx->ncommits++);
	r = 0;
 out:
	EVP_MD_CTX_free(md);
	return r;
}

/* Commands section. */

/* git check-ref-format, simplified but strict: a full name under refs/,
 * no component beginning with '.' or ending in ".lock", no "..", "@{",
 * "//", control characters, space or any of ~^:?*[\, no trailing '/' or
 * '.'; and UTF-8, which git does not require, but the audit log records
 * the name in canonical JSON, which holds only Unicode text. */
static int
ref_valid(const char *ref, size_t len)
{
	size_t i, comp = 0;	/* start of the current component */

	if (len <= 5 || len > GITRX_REF_MAX || memcmp(ref, "refs/", 5) != 0 ||
	    !utf8_valid(ref, len))
		return 0;
	for (i = 0; i < len; i++) {
		uint8_t c = (uint8_t)ref[i];

		if (c < 0x20 || c == 0x7f || strchr(" ~^:?*[\\", c) != NULL)
			return 0;
		/* ref is not NUL-terminated: look ahead inside it only. */
		if (c == '.' && (i == comp || (i + 1 < len &&
		    ref[i + 1] == '.')))
			return 0;
		if (c == '@' && i + 1 < len && ref[i + 1] == '{')
			return 0;
		if (c == '/') {
			if (i == comp || (i - comp >= 5 &&
			    memcmp(ref + i - 5, ".lock", 5) == 0))
				return 0;
			comp = i + 1;
		}
	}
	if (ref[len - 1] == '/' || ref[len - 1] == '.' ||
	    (len - comp >= 5 && memcmp(ref + len - 5, ".lock", 5) == 0))
		return 0;
	return 1;
}

/* Capabilities: printable words separated by single spaces. */
static int
caps_take(struct gitrx *rx, const uint8_t *p, size_t len)
{
	const char *w, *e;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return th_fail(TH_ERR_INVALID, "control character in "
			    "the capability list");
	if ((rx->caps = malloc(len + 1)) == NULL)
		return TH_ERR_ALLOC;
	memcpy(rx->caps, p, len);
	rx->caps[len] = '\0';
	for (w = rx->caps; *w != '\0'; w = *e ? e + 1 : e) {
		if ((e = strchr(w, ' ')) == NULL)
			e = w + strlen(w);
		if ((size_t)(e - w) == 12 && memcmp(w, "push-options", 12) == 0)
			rx->want_pushopts = 1;
		/* Ids here are SHA-1: a SHA-256 push would not parse. */
		if ((size_t)(e - w) > 14 && memcmp(w, "object-format=", 14) == 0 &&
		    !((size_t)(e - w) == 18 && memcmp(w + 14, "sha1", 4) == 0))
			return th_fail(TH_ERR_DENIED, "only SHA-1 repositories "
			    "are supported");
	}
	return 0;
}

/* One command pkt-line, trailing LF already removed. */
static int
command_take(struct gitrx *rx, const uint8_t *p, size_t len)
{
	struct gitrx_cmd *c;
	const uint8_t *nul;
	uint8_t raw[RAWSZ];
	size_t n, i, reflen;
	int r;

	if (has_prefix(p, len, "push-cert") && (len == 9 || p[9] == '\0' ||
	    p[9] == '\n')) {
		rx->push_cert = 1;
		return th_fail(TH_ERR_DENIED, "signed pushes are not "
		    "supported");
	}
	if (has_prefix(p, len, "shallow "))
		return th_fail(TH_ERR_DENIED, "shallow pushes are not "
		    "supported");
	if (rx->ncmds >= rx->lim.max_commands)
		return th_fail(TH_ERR_TOO_LONG, "more than %zu ref updates",
		    rx->lim.max_commands);
	/* The capability list rides on the first command only. */
	if ((nul = memchr(p, '\0', len)) != NULL) {
		if (rx->ncmds != 0)
			return th_fail(TH_ERR_INVALID, "NUL in command %zu",
			    rx->ncmds + 1);
		if ((r = caps_take(rx, nul + 1, len - (size_t)(nul + 1 - p)))
		    != 0)
			return r;
		len = (size_t)(nul - p);
	}
	if (len < 2 * GITRX_HEXSZ + 3 || p[GITRX_HEXSZ] != ' ' ||
	    p[2 * GITRX_HEXSZ + 1] != ' ' ||
	    hex_to_raw((const char *)p, raw) != 0 ||
	    hex_to_raw((const char *)p + GITRX_HEXSZ + 1, raw) != 0)
		return th_fail(TH_ERR_INVALID, "malformed command %zu",
		    rx->ncmds + 1);
	reflen = len - (2 * GITRX_HEXSZ + 2);
	if (!ref_valid((const char *)p + 2 * GITRX_HEXSZ + 2, reflen))
		return th_fail(TH_ERR_INVALID, "invalid ref name in command "
		    "%zu", rx->ncmds + 1);
	if (rx->ncmds == rx->cmdcap) {
		n = rx->cmdcap ? rx->cmdcap * 2 : 8;
		if (n > rx->lim.max_commands)
			n = rx->lim.max_commands;
		if ((c = reallocarray(rx->cmds, n, sizeof(*c))) == NULL)
			return TH_ERR_ALLOC;
		rx->cmds = c;
		rx->cmdcap = n;
	}
	c = &rx->cmds[rx->ncmds];
	memcpy(c->old, p, GITRX_HEXSZ);
	c->old[GITRX_HEXSZ] = '\0';
	memcpy(c->new, p + GITRX_HEXSZ + 1, GITRX_HEXSZ);
	c->new[GITRX_HEXSZ] = '\0';
	memcpy(c->ref, p + 2 * GITRX_HEXSZ + 2, reflen);
	c->ref[reflen] = '\0';
	c->is_create = strcmp(c->old, zero_hex) == 0;
	c->is_delete = strcmp(c->new, zero_hex) == 0;
	if (c->is_create && c->is_delete)
		return th_fail(TH_ERR_INVALID, "command %zu neither creates "
		    "nor deletes", rx->ncmds + 1);
	/* receive-pack refuses these too; one decision per ref. */
	for (i = 0; i < rx->ncmds; i++)
		if (strcmp(rx->cmds[i].ref, c->ref) == 0)
			return th_fail(TH_ERR_INVALID, "duplicate ref %s",
			    c->ref);
	rx->ncmds++;
	return 0;
}

/* The section after the commands and push options: a pack, unless every
 * command deletes (then receive-pack reads nothing more). */
static void
header_done(struct gitrx *rx)
{
	size_t i;

	for (i = 0; i < rx->ncmds; i++)
		if (!rx->cmds[i].is_delete)
			break;
	rx->phase = i < rx->ncmds ? PH_PACK : PH_DONE;
	rx->state = PK_HDR;
}

static int
pkt_done(struct gitrx *rx)
{
	size_t len = rx->pktlen;

	if (len > 0 && rx->pkt[len - 1] == '\n')
		len--;
	if (rx->phase == PH_COMMANDS)
		return command_take(rx, rx->pkt, len);
	if (memchr(rx->pkt, '\0', len) != NULL)
		return th_fail(TH_ERR_INVALID, "NUL in a push option");
	if (++rx->npushopts > GITRX_PUSHOPT_MAX)
		return th_fail(TH_ERR_TOO_LONG, "more than %d push options",
		    GITRX_PUSHOPT_MAX);
	return 0;
}

static int
flush_done(struct gitrx *rx)
{
	if (rx->phase == PH_COMMANDS) {
		if (rx->ncmds == 0)
			return th_fail(TH_ERR_INVALID, "no ref updates in the "
			    "request");
		if (rx->want_pushopts) {
			rx->phase = PH_PUSHOPTS;
			return 0;
		}
	}
	header_done(rx);
	return 0;
}

/* At most one pkt-line's worth of p; *used gets what was taken. */
static int
feed_pkt(struct gitrx *rx, const uint8_t *p, size_t n, size_t *used)
{
	size_t take, len = 0, i;
	int v;

	if (rx->lenhave < 4) {
		take = 4 - rx->lenhave < n ? 4 - rx->lenhave : n;
		memcpy(rx->lenhex + rx->lenhave, p, take);
		rx->lenhave += take;
		*used = take;
		if (rx->lenhave < 4)
			return 0;
		/* pkt-line lengths are hex in either case (git's hexval). */
		for (i = 0; i < 4; i++) {
			uint8_t c = rx->lenhex[i];

			if (c >= 'A' && c <= 'F')
				c = (uint8_t)(c - 'A' + 'a');
			if ((v = hexval(c)) < 0)
				return th_fail(TH_ERR_PROTOCOL, "malformed "
				    "pkt-line length");
			len = len << 4 | (size_t)v;
		}
		if (len == 0) {
			rx->lenhave = 0;
			return flush_done(rx);
		}
		/* 0001-0003 are v2 delimiters or invalid; 0004 is an empty
		 * line, which this request never has. */
		if (len <= 4 || len > PKT_MAX)
			return th_fail(TH_ERR_PROTOCOL, "malformed pkt-line "
			    "length");
		rx->pktlen = len - 4;
		rx->pkthave = 0;
		return 0;
	}
	take = rx->pktlen - rx->pkthave < n ? rx->pktlen - rx->pkthave : n;
	memcpy(rx->pkt + rx->pkthave, p, take);
	rx->pkthave += take;
	*used = take;
	if (rx->pkthave < rx->pktlen)
		return 0;
	rx->lenhave = 0;
	return pkt_done(rx);
}

/* Pack section. */

static size_t
fixed_take(struct gitrx *rx, size_t want, const uint8_t *p, size_t n)
{
	size_t take = want - rx->fixedhave < n ? want - rx->fixedhave : n;

	memcpy(rx->fixed + rx->fixedhave, p, take);
	rx->fixedhave += take;
	return take;
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
next_object(struct gitrx *rx)
{
	rx->state = rx->objdone == rx->nobjects ? PK_TRAILER : PK_OBJHDR;
	rx->shift = 0;
	rx->fixedhave = 0;
}

static int
objs_add(struct gitrx *rx)
{
	uint64_t *o;
	size_t n;

	if (rx->nobjs == rx->objcap) {
		n = rx->objcap ? rx->objcap * 2 : 256;
		if (n > rx->nobjects)
			n = rx->nobjects;
		if ((o = reallocarray(rx->objs, n, sizeof(*o))) == NULL)
			return TH_ERR_ALLOC;
		rx->objs = o;
		rx->objcap = n;
	}
	rx->objs[rx->nobjs++] = rx->objoff << 3 | (uint64_t)rx->restype;
	return 0;
}

/* Resolved type of the object starting at off, or -1 if none does. */
static int
objs_type_at(const struct gitrx *rx, uint64_t off)
{
	size_t lo = 0, hi = rx->nobjs, mid;
	uint64_t o;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		o = rx->objs[mid] >> 3;
		if (o == off)
			return (int)(rx->objs[mid] & 7);
		if (o < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Room for the object's inflated bytes, plus one to catch a stream longer
 * than announced. */
static int
cbuf_reserve(struct gitrx *rx)
{
	size_t need;

	if (rx->objsize > rx->lim.max_commit_size)
		return th_fail(TH_ERR_TOO_LONG, "commit%s larger than the "
		    "limit of %zu bytes", rx->objtype == OBJ_COMMIT ? "" :
		    " delta", rx->lim.max_commit_size);
	need = (size_t)rx->objsize + 1;
	if (need > rx->ccap) {
		free(rx->cbuf);
		rx->ccap = 0;
		if ((rx->cbuf = malloc(need)) == NULL)
			return TH_ERR_ALLOC;
		rx->ccap = need;
	}
	rx->keep = 1;
	return 0;
}

/* A delta takes its base's type.  One on a commit is kept whole, to be
 * applied to the base's content and parsed as a commit. */
static int
delta_typed(struct gitrx *rx, int basetype, long base)
{
	rx->restype = basetype;
	if (basetype == OBJ_UNKNOWN)
		rx->ndelta_unknown++;
	if (basetype != OBJ_COMMIT)
		return 0;
	rx->ndelta_commits++;
	rx->base = base;
	return cbuf_reserve(rx);
}

/* Commit at pack offset off, or -1. */
static long
commit_at(const struct gitrx *rx, uint64_t off)
{
	size_t lo = 0, hi = rx->ncommits, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (rx->commits[mid].off == off)
			return (long)mid;
		if (rx->commits[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* A size in a delta's header: seven bits a byte, little-endian. */
static int
delta_size(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	unsigned shift = 0;
	uint8_t b;

	*v = 0;
	do {
		if (*p == end || shift > 56)
			return -1;
		b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while (b & 0x80);
	return 0;
}

/* gitformat-pack's delta: base size, result size, then instructions that
 * copy a range of the base (high bit set; bits 0-3 say which offset bytes
 * follow, bits 4-6 which size bytes, size 0 meaning 0x10000) or insert the
 * next 1-127 bytes.  Applies cbuf's delta to the base commit into dbuf. */
static int
delta_apply(struct gitrx *rx, size_t *outlen)
{
	const struct commit *bc = &rx->commits[rx->base];
	const uint8_t *base = rx->pool + bc->coff;
	const uint8_t *p = rx->cbuf, *end = rx->cbuf + rx->objsize;
	uint64_t bsize, rsize, off, size;
	size_t o = 0;
	unsigned i;
	uint8_t b;

	if (delta_size(&p, end, &bsize) != 0 || bsize != bc->clen ||
	    delta_size(&p, end, &rsize) != 0)
		goto bad;
	if (rsize > rx->lim.max_commit_size)
		return th_fail(TH_ERR_TOO_LONG, "commit larger than the limit "
		    "of %zu bytes", rx->lim.max_commit_size);
	if (rsize > rx->dcap) {
		free(rx->dbuf);
		rx->dcap = 0;
		if ((rx->dbuf = malloc((size_t)rsize)) == NULL)
			return TH_ERR_ALLOC;
		rx->dcap = (size_t)rsize;
	}
	while (p < end) {
		b = *p++;
		if (b & 0x80) {
			off = size = 0;
			for (i = 0; i < 4; i++)
				if (b & 1U << i) {
					if (p == end)
						goto bad;
					off |= (uint64_t)*p++ << 8 * i;
				}
			for (i = 0; i < 3; i++)
				if (b & 1U << (4 + i)) {
					if (p == end)
						goto bad;
					size |= (uint64_t)*p++ << 8 * i;
				}
			if (size == 0)
				size = 0x10000;
			if (off > bsize || size > bsize - off ||
			    size > rsize - o)
				goto bad;
			memcpy(rx->dbuf + o, base + off, (size_t)size);
			o += (size_t)size;
		} else if (b != 0) {
			if (b > (size_t)(end - p) || b > rsize - o)
				goto bad;
			memcpy(rx->dbuf + o, p, b);
			p += b;
			o += b;
		} else
			goto bad;
	}
	if (o != rsize)
		goto bad;
	*outlen = o;
	return 0;
 bad:
	return th_fail(TH_ERR_INVALID, "object %u: malformed delta",
	    rx->objdone);
}

static int
zstart(struct gitrx *rx)
{
	if (!rx->zinit) {
		memset(&rx->z, 0, sizeof(rx->z));
		if (inflateInit(&rx->z) != Z_OK)
			return th_fail(TH_ERR_ALLOC, "inflateInit");
		rx->zinit = 1;
	} else if (inflateReset(&rx->z) != Z_OK)
		return th_fail(TH_ERR_INTERNAL, "inflateReset");
	rx->zout = 0;
	rx->state = PK_ZDATA;
	return 0;
}

/* The object header: type in bits 4-6 of the first byte, size in its low
 * four bits then seven bits a byte, little-endian, while bit 7 is set. */
static int
objhdr_byte(struct gitrx *rx, uint8_t b)
{
	int r;

	if (rx->shift == 0) {
		rx->objoff = rx->packoff;
		rx->objtype = b >> 4 & 7;
		rx->objsize = b & 15;
		rx->shift = 4;
	} else {
		if (rx->shift > 57)
			return th_fail(TH_ERR_INVALID, "object %u: size field "
			    "too long", rx->objdone);
		rx->objsize |= (uint64_t)(b & 0x7f) << rx->shift;
		rx->shift += 7;
	}
	if (b & 0x80)
		return 0;
	if (rx->objtype == 0 || rx->objtype == 5)
		return th_fail(TH_ERR_INVALID, "object %u has invalid type %d",
		    rx->objdone, rx->objtype);
	if (rx->objsize > rx->lim.max_object_size)
		return th_fail(TH_ERR_TOO_LONG, "object %u is larger than the "
		    "limit of %llu bytes", rx->objdone,
		    (unsigned long long)rx->lim.max_object_size);
	rx->restype = rx->objtype;
	rx->keep = 0;
	switch (rx->objtype) {
	case OBJ_COMMIT:
		if ((r = cbuf_reserve(rx)) != 0)
			return r;
		return zstart(rx);
	case OBJ_OFS_DELTA:
		rx->ndeltas++;
		rx->ofs = 0;
		rx->ofsbytes = 0;
		rx->state = PK_OFS;
		return 0;
	case OBJ_REF_DELTA:
		rx->ndeltas++;
		rx->fixedhave = 0;
		rx->state = PK_REFBASE;
		return 0;
	default:
		return zstart(rx);
	}
}

/* OFS_DELTA's distance back to its base: seven bits a byte, big-endian,
 * each continuation adding one so that no value has two encodings. */
static int
ofs_byte(struct gitrx *rx, uint8_t b)
{
	int t, r;

	if (rx->ofsbytes++ > 0) {
		if (rx->ofs >= (UINT64_MAX >> 7) - 1)
			return th_fail(TH_ERR_INVALID, "object %u: delta offset "
			    "too large", rx->objdone);
		rx->ofs = (rx->ofs + 1) << 7;
	}
	rx->ofs |= b & 0x7f;
	if (b & 0x80)
		return 0;
	if (rx->ofs == 0 || rx->ofs > rx->objoff ||
	    (t = objs_type_at(rx, rx->objoff - rx->ofs)) < 0)
		return th_fail(TH_ERR_INVALID, "object %u: delta base offset "
		    "is not an earlier object", rx->objdone);
	if ((r = delta_typed(rx, t, t == OBJ_COMMIT ?
	    commit_at(rx, rx->objoff - rx->ofs) : -1)) != 0)
		return r;
	if (rx->keep && rx->base < 0)
		return th_fail(TH_ERR_INTERNAL, "commit base not found");
	return zstart(rx);
}

/* Inflates what of p belongs to the current object; *ended once its
 * stream is over, with the bytes after it left for the next object. */
static int
zdata(struct gitrx *rx, const uint8_t *p, size_t n, size_t *used,
    int *ended)
{
	z_stream *z = &rx->z;
	size_t produced, room;
	int zr, commit = rx->keep;

	*ended = 0;
	z->next_in = (Bytef *)(uintptr_t)p;
	z->avail_in = n > ZIN_MAX ? ZIN_MAX : (uInt)n;
	for (;;) {
		if (commit) {
			room = rx->ccap - (size_t)rx->zout;
			z->next_out = rx->cbuf + rx->zout;
		} else {
			room = sizeof(rx->scratch);
			z->next_out = rx->scratch;
		}
		if (room > ZIN_MAX)
			room = ZIN_MAX;
		z->avail_out = (uInt)room;
		zr = inflate(z, Z_NO_FLUSH);
		produced = room - z->avail_out;
		rx->zout += produced;
		rx->inflated += produced;
		*used = n - z->avail_in;
		if (rx->inflated > rx->lim.inflate_free +
		    rx->lim.inflate_ratio * (rx->packoff + *used))
			return th_fail(TH_ERR_TOO_LONG, "object %u: the pack "
			    "inflates to more than %u times its size (past the "
			    "first %llu bytes): refused as a compression bomb",
			    rx->objdone, rx->lim.inflate_ratio,
			    (unsigned long long)rx->lim.inflate_free);
		if (rx->zout > rx->objsize)
			return th_fail(TH_ERR_INVALID, "object %u inflates to "
			    "more than its %llu bytes", rx->objdone,
			    (unsigned long long)rx->objsize);
		if (zr == Z_STREAM_END)
			break;
		if (zr == Z_BUF_ERROR && z->avail_in == 0)
			return 0;		/* wants more input */
		if (zr != Z_OK)
			return th_fail(TH_ERR_INVALID, "object %u: corrupt "
			    "deflate data", rx->objdone);
		if (z->avail_in == 0 && z->avail_out != 0)
			return 0;
	}
	if (rx->zout != rx->objsize)
		return th_fail(TH_ERR_INVALID, "object %u inflates to %llu "
		    "bytes, not the %llu announced", rx->objdone,
		    (unsigned long long)rx->zout,
		    (unsigned long long)rx->objsize);
	*ended = 1;
	return 0;
}

static int
object_done(struct gitrx *rx)
{
	size_t len = 0;
	int r;

	if (rx->objtype == OBJ_COMMIT &&
	    (r = commit_done(rx, rx->cbuf, (size_t)rx->objsize)) != 0)
		return r;
	if (rx->objtype != OBJ_COMMIT && rx->keep &&
	    ((r = delta_apply(rx, &len)) != 0 ||
	    (r = commit_done(rx, rx->dbuf, len)) != 0))
		return r;
	if ((r = objs_add(rx)) != 0)
		return r;
	rx->objdone++;
	next_object(rx);
	return 0;
}

/* One step of the pack state machine over p; *used gets what it took. */
static int
pack_step(struct gitrx *rx, const uint8_t *p, size_t n, size_t *used)
{
	uint8_t sum[RAWSZ];
	long ci;
	int r, ended;

	*used = 0;
	switch (rx->state) {
	case PK_HDR:
		*used = fixed_take(rx, PACK_HDR, p, n);
		if (rx->fixedhave < PACK_HDR)
			return 0;
		if (memcmp(rx->fixed, "PACK", 4) != 0)
			return th_fail(TH_ERR_INVALID, "pack signature "
			    "missing");
		if (be32(rx->fixed + 4) != 2 && be32(rx->fixed + 4) != 3)
			return th_fail(TH_ERR_INVALID, "unsupported pack "
			    "version %u", be32(rx->fixed + 4));
		rx->nobjects = be32(rx->fixed + 8);
		if (rx->nobjects > rx->lim.max_objects)
			return th_fail(TH_ERR_TOO_LONG, "pack announces more "
			    "than %u objects", rx->lim.max_objects);
		next_object(rx);
		return 0;
	case PK_OBJHDR:
		*used = 1;
		return objhdr_byte(rx, p[0]);
	case PK_OFS:
		*used = 1;
		return ofs_byte(rx, p[0]);
	case PK_REFBASE:
		*used = fixed_take(rx, RAWSZ, p, n);
		if (rx->fixedhave < RAWSZ)
			return 0;
		ci = commit_find(rx, rx->fixed);
		if ((r = delta_typed(rx, ci >= 0 ? OBJ_COMMIT : OBJ_UNKNOWN,
		    ci)) != 0)
			return r;
		return zstart(rx);
	case PK_ZDATA:
		if ((r = zdata(rx, p, n, used, &ended)) != 0 || !ended)
			return r;
		return object_done(rx);
	case PK_TRAILER:
		*used = fixed_take(rx, RAWSZ, p, n);
		if (rx->fixedhave < RAWSZ)
			return 0;
		if (EVP_DigestFinal_ex(rx->md, sum, NULL) != 1)
			return th_fail(TH_ERR_CRYPTO, "SHA-1 of the pack");
		if (memcmp(sum, rx->fixed, RAWSZ) != 0)
			return th_fail(TH_ERR_INVALID, "pack checksum "
			    "mismatch");
		rx->phase = PH_DONE;
		return 0;
	}
	return th_fail(TH_ERR_INTERNAL, "gitrx: bad state");
}

static int
feed_pack(struct gitrx *rx, const uint8_t *p, size_t n, size_t *used)
{
	enum pstate was = rx->state;
	int r;

	if (n > rx->lim.max_pack_bytes - rx->packoff)
		return th_fail(TH_ERR_TOO_LONG, "pack larger than the limit of "
		    "%llu bytes", (unsigned long long)rx->lim.max_pack_bytes);
	r = pack_step(rx, p, n, used);
	/* The checksum covers every byte before the trailer, including those
	 * of a step that failed: nothing reads the sum after an error. */
	if (was != PK_TRAILER && *used > 0 &&
	    EVP_DigestUpdate(rx->md, p, *used) != 1 && r == 0)
		r = th_fail(TH_ERR_CRYPTO, "SHA-1 of the pack");
	rx->packoff += *used;
	return r;
}

/* Keeps the first error, and says it again to every later call. */
static int
sticky(struct gitrx *rx, int r)
{
	if (rx->err == 0) {
		rx->err = r;
		snprintf(rx->errmsg, sizeof(rx->errmsg), "%s", th_errmsg(r));
	}
	return th_fail(rx->err, "%s", rx->errmsg);
}

int
gitrx_feed(struct gitrx *rx, const uint8_t *p, size_t n)
{
	size_t used;
	int r = 0;

	if (rx->err != 0)
		return sticky(rx, rx->err);
	rx->body_bytes += n;
	while (n > 0) {
		used = 0;
		switch (rx->phase) {
		case PH_COMMANDS:
		case PH_PUSHOPTS:
			r = feed_pkt(rx, p, n, &used);
			break;
		case PH_PACK:
			r = feed_pack(rx, p, n, &used);
			break;
		case PH_DONE:
			r = th_fail(TH_ERR_INVALID, "%s",
			    rx->packoff == 0 ? "data after a deletion-only "
			    "request" : "trailing bytes after the pack");
			break;
		}
		if (r != 0)
			goto out;
		/* Every state takes at least one byte or changes phase. */
		p += used;
		n -= used;
	}
 out:
	return r != 0 ? sticky(rx, r) : 0;
}

int
gitrx_finish(struct gitrx *rx)
{
	if (rx->err != 0)
		return sticky(rx, rx->err);
	switch (rx->phase) {
	case PH_DONE:
		return 0;
	case PH_COMMANDS:
		return sticky(rx, th_fail(TH_ERR_TRUNCATED, "request ends "
		    "inside the commands"));
	case PH_PUSHOPTS:
		return sticky(rx, th_fail(TH_ERR_TRUNCATED, "request ends "
		    "inside the push options"));
	case PH_PACK:
		break;
	}
	if (rx->packoff == 0)
		return sticky(rx, th_fail(TH_ERR_TRUNCATED, "request has no "
		    "pack"));
	return sticky(rx, th_fail(TH_ERR_TRUNCATED, "pack ends early, after "
	    "%u of %u objects", rx->objdone, rx->nobjects));
}

size_t
gitrx_ncommands(const struct gitrx *rx)
{
	return rx->ncmds;
}

const struct gitrx_cmd *
gitrx_command(const struct gitrx *rx, size_t i)
{
	return i < rx->ncmds ? &rx->cmds[i] : NULL;
}

const char *
gitrx_caps(const struct gitrx *rx)
{
	return rx->caps != NULL ? rx->caps : "";
}

int
gitrx_push_cert(const struct gitrx *rx)
{
	return rx->push_cert;
}

int
gitrx_push_options(const struct gitrx *rx, size_t *nopts)
{
	if (nopts != NULL)
		*nopts = rx->npushopts;
	return rx->want_pushopts;
}

uint64_t
gitrx_body_bytes(const struct gitrx *rx)
{
	return rx->body_bytes;
}

uint64_t
gitrx_pack_bytes(const struct gitrx *rx)
{
	return rx->packoff;
}

uint32_t
gitrx_nobjects(const struct gitrx *rx)
{
	return rx->nobjects;
}

size_t
gitrx_ncommits(const struct gitrx *rx)
{
	return rx->ncommits;
}

uint64_t
gitrx_ndeltas(const struct gitrx *rx)
{
	return rx->ndeltas;
}

uint64_t
gitrx_ndeltas_unknown(const struct gitrx *rx)
{
	return rx->ndelta_unknown;
}

uint64_t
gitrx_ndelta_commits(const struct gitrx *rx)
{
	return rx->ndelta_commits;
}

int
gitrx_commit_parents(const struct gitrx *rx, const char *id_hex,
    const char (**parents)[GITRX_HEXSZ + 1], size_t *n)
{
	uint8_t id[RAWSZ];
	long ci;
	int r;

	if ((r = arg_to_raw(id_hex, id)) != 0)
		return r;
	if ((ci = commit_find(rx, id)) < 0)
		return 0;
	*parents = (const char (*)[GITRX_HEXSZ + 1])
	    rx->parents + rx->commits[ci].parent0;
	*n = rx->commits[ci].nparents;
	return 1;
}

int
gitrx_commit_tree(const struct gitrx *rx, const char *id_hex,
    char tree_hex[GITRX_HEXSZ + 1])
{
	uint8_t id[RAWSZ];
	long ci;
	int r;

	if ((r = arg_to_raw(id_hex, id)) != 0)
		return r;
	if ((ci = commit_find(rx, id)) < 0)
		return 0;
	raw_to_hex(rx->commits[ci].tree, tree_hex);
	return 1;
}

/* Adds hex to the boundary unless there already; *over once it is full. */
static void
boundary_add(char (*boundary)[GITRX_HEXSZ + 1], size_t max, size_t *nb,
    const char *hex, int *over)
{
	size_t i;

	for (i = 0; i < *nb; i++)
		if (strcmp(boundary[i], hex) == 0)
			return;
	if (*nb >= max) {
		*over = 1;
		return;
	}
	memcpy(boundary[*nb], hex, GITRX_HEXSZ + 1);
	(*nb)++;
}

int
gitrx_ancestry(const struct gitrx *rx, const char *new_hex,
    const char *old_hex, char (*boundary)[GITRX_HEXSZ + 1], size_t max,
    size_t *nboundary)
{
	uint8_t newid[RAWSZ], oldid[RAWSZ], pid[RAWSZ];
	uint8_t *seen = NULL;
	uint32_t *queue = NULL;
	size_t head = 0, tail = 0, i;
	const struct commit *c;
	const char *ph;
	long ci;
	int r, over = 0;

	*nboundary = 0;
	if (rx->err != 0)
		return th_fail(rx->err, "%s", rx->errmsg);
	if (rx->phase != PH_DONE)
		return th_fail(TH_ERR_TRUNCATED, "the push request is not "
		    "complete");
	if ((r = arg_to_raw(new_hex, newid)) != 0 ||
	    (r = arg_to_raw(old_hex, oldid)) != 0)
		return r;
	if (memcmp(newid, oldid, RAWSZ) == 0)
		return 1;
	if ((ci = commit_find(rx, newid)) < 0) {
		boundary_add(boundary, max, nboundary, new_hex, &over);
		r = over ? th_fail(TH_ERR_TOO_LONG, "no room for the "
		    "boundary") : 0;
		goto out;
	}
	/* Each commit is queued at most once: both arrays are bounded by
	 * the graph, which is bounded by max_commits. */
	if ((seen = calloc(rx->ncommits, 1)) == NULL ||
	    (queue = calloc(rx->ncommits, sizeof(*queue))) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	seen[ci] = 1;
	queue[tail++] = (uint32_t)ci;
	while (head < tail) {
		c = &rx->commits[queue[head++]];
		for (i = 0; i < c->nparents; i++) {
			ph = rx->parents[c->parent0 + i];
			if (hex_to_raw(ph, pid) != 0) {
				r = th_fail(TH_ERR_INTERNAL, "bad parent id");
				goto out;
			}
			if (memcmp(pid, oldid, RAWSZ) == 0) {
				r = 1;
				goto out;
			}
			if ((ci = commit_find(rx, pid)) < 0)
				boundary_add(boundary, max, nboundary, ph,
				    &over);
			else if (!seen[ci]) {
				seen[ci] = 1;
				queue[tail++] = (uint32_t)ci;
			}
		}
	}
	r = over ? th_fail(TH_ERR_TOO_LONG, "more than %zu boundary commits",
	    max) : 0;
 out:
	free(seen);
	free(queue);
	return r;
}
