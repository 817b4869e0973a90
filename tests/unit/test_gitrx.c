/* git-receive-pack request parser: real packs made by git at test time,
 * fed in random chunks; the commit graph against git rev-list; ancestry for
 * a fast-forward and a rewrite; deletions without a pack; a 20 MiB blob;
 * malformed bodies of every kind; and random mutations for the
 * sanitizers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "err.h"
#include "gitrx.h"

#define ZEROS	"0000000000000000000000000000000000000000"
#define CAPS	"report-status side-band-64k agent=git/2.39"

/* A growable byte string: packs here outgrow struct buf's bound. */
struct bytes {
	uint8_t	*p;
	size_t	 len, cap;
};

static char tmp[256];
static char repo[300];

static void
put(struct bytes *b, const void *p, size_t len)
{
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2 + 64;
		assert_non_null(b->p = realloc(b->p, b->cap));
	}
	if (len > 0)
		memcpy(b->p + b->len, p, len);
	b->len += len;
}

static void
put_pkt(struct bytes *b, const void *p, size_t len)
{
	char hdr[5];

	assert_true(len + 4 <= 65520);
	snprintf(hdr, sizeof(hdr), "%04zx", len + 4);
	put(b, hdr, 4);
	put(b, p, len);
}

/* "old new ref" (with NUL and caps if caps) and LF, as one pkt-line. */
static void
put_cmd(struct bytes *b, const char *old, const char *new, const char *ref,
    const char *caps)
{
	char line[1024];
	int n;

	n = snprintf(line, sizeof(line), "%s %s %s", old, new, ref);
	assert_true(n > 0 && (size_t)n < sizeof(line) - 200);
	if (caps != NULL) {
		line[n++] = '\0';
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s", caps);
	}
	line[n++] = '\n';
	put_pkt(b, line, (size_t)n);
}

static void
put_flush(struct bytes *b)
{
	put(b, "0000", 4);
}

static void
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

/* Standard output of a command run in the repository. */
static void
capture(struct bytes *out, const char *fmt, ...)
{
	char cmd[2048], full[2400];
	uint8_t chunk[65536];
	va_list ap;
	FILE *f;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "cd '%s' && %s", repo, cmd);
	assert_non_null(f = popen(full, "r"));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		put(out, chunk, n);
	assert_int_equal(pclose(f), 0);
}

static void
rev(const char *name, char hex[41])
{
	struct bytes b = { 0 };

	capture(&b, "git rev-parse '%s'", name);
	assert_true(b.len == 41 && b.p[40] == '\n');
	memcpy(hex, b.p, 40);
	hex[40] = '\0';
	free(b.p);
}

/* git pack-objects --revs for "tips" (lines such as "NEW\n^OLD\n"). */
static void
pack(struct bytes *out, const char *tips, const char *opts)
{
	capture(out, "printf '%s' | git pack-objects --stdout --revs -q %s",
	    tips, opts);
}

static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Feeds b in random chunks (1 byte to 64 KiB, mostly small), then finishes;
 * the first error, or 0. */
static int
feed_all(struct gitrx *rx, const struct bytes *b, uint64_t seed)
{
	size_t off = 0, n;
	int r;

	rng = seed * 2654435761ULL + 1;
	while (off < b->len) {
		switch (rnd() % 4) {
		case 0:
			n = 1;
			break;
		case 1:
			n = 1 + rnd() % 16;
			break;
		case 2:
			n = 1 + rnd() % 4096;
			break;
		default:
			n = 1 + rnd() % 65536;
		}
		if (n > b->len - off)
			n = b->len - off;
		if ((r = gitrx_feed(rx, b->p + off, n)) != 0)
			return r;
		off += n;
	}
	return gitrx_finish(rx);
}

static int
parse(const struct gitrx_limits *lim, const struct bytes *b, uint64_t seed,
    struct gitrx **out)
{
	struct gitrx *rx;
	int r;

	assert_non_null(rx = gitrx_new(lim));
	r = feed_all(rx, b, seed);
	if (out != NULL)
		*out = rx;
	else
		gitrx_free(rx);
	return r;
}

/* Parses b expecting failure r whose message contains what. */
static void
expect_fail(const struct gitrx_limits *lim, const struct bytes *b, int r,
    const char *what)
{
	int got = parse(lim, b, 7, NULL);

	if (got != r || strstr(th_errmsg(got), what) == NULL)
		fail_msg("expected %d \"%s\", got %d \"%s\"", r, what, got,
		    th_errmsg(got));
}

/* The repository: c1 - c2 - merge(c3 on side) - c5 on main, and rw, which
 * amends c5.  Files are long enough for git to store deltas. */
static int
setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/test_gitrx.XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	snprintf(repo, sizeof(repo), "%s/r", tmp);
	setenv("HOME", tmp, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "A U Thor", 1);
	setenv("GIT_AUTHOR_EMAIL", "author@example.com", 1);
	setenv("GIT_COMMITTER_NAME", "C O Mitter", 1);
	setenv("GIT_COMMITTER_EMAIL", "committer@example.com", 1);
	return system("set -e; cd \"$HOME\"; git init -q -b main r; cd r;"
	    "seq 1 2000 > f; git add f; git commit -qm c1; git tag c1;"
	    "sed -i 's/^500$/five hundred/' f; git commit -qam c2;"
	    "git checkout -qb side c1; echo s > s; git add s;"
	    "git commit -qm c3; git checkout -q main;"
	    "git merge -q --no-edit -m merge side;"
	    "sed -i 's/^1500$/fifteen hundred/' f; git commit -qam c5;"
	    "git checkout -qb rw; echo more >> f; git commit -q --amend -am c5b;"
	    "git checkout -q main") == 0 ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

/* Every commit of `git rev-list --parents range` is in the graph with the
 * same parents, and nothing else is. */
static void
check_graph(const struct gitrx *rx, const char *range)
{
	struct bytes out = { 0 };
	const char (*parents)[41];
	char *line, *save, *id, *p;
	size_t n, i, count = 0;

	capture(&out, "git rev-list --parents %s", range);
	put(&out, "", 1);
	for (line = strtok_r((char *)out.p, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		id = strtok(line, " ");
		if (gitrx_commit_parents(rx, id, &parents, &n) != 1)
			fail_msg("%s: commit %s not in the pack", range, id);
		for (i = 0; (p = strtok(NULL, " ")) != NULL; i++) {
			assert_true(i < n);
			assert_string_equal(parents[i], p);
		}
		assert_int_equal(i, n);
		count++;
	}
	assert_int_equal(gitrx_ncommits(rx), count);
	free(out.p);
}

static void
test_fast_forward(void **state)
{
	struct bytes body = { 0 }, pk = { 0 }, objs = { 0 };
	char old[41], new[41], tips[200], tree[41], want[41], bnd[4][41];
	const struct gitrx_cmd *c;
	struct gitrx *rx;
	size_t nb, hdr;
	uint64_t seed;

	(void)state;
	rev("c1", old);
	rev("main", new);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--delta-base-offset");
	put_cmd(&body, old, new, "refs/heads/main", CAPS);
	put_flush(&body);
	hdr = body.len;
	put(&body, pk.p, pk.len);
	capture(&objs, "git rev-list --objects %s ^%s | wc -l", new, old);
	put(&objs, "", 1);

	for (seed = 0; seed < 20; seed++) {
		assert_int_equal(parse(NULL, &body, seed, &rx), 0);
		assert_int_equal(gitrx_ncommands(rx), 1);
		c = gitrx_command(rx, 0);
		assert_string_equal(c->old, old);
		assert_string_equal(c->new, new);
		assert_string_equal(c->ref, "refs/heads/main");
		assert_false(c->is_create);
		assert_false(c->is_delete);
		assert_null(gitrx_command(rx, 1));
		assert_string_equal(gitrx_caps(rx), CAPS);
		assert_int_equal(gitrx_push_cert(rx), 0);
		assert_int_equal(gitrx_push_options(rx, NULL), 0);
		assert_int_equal(gitrx_body_bytes(rx), body.len);
		assert_int_equal(gitrx_pack_bytes(rx), body.len - hdr);
		assert_int_equal(gitrx_nobjects(rx),
		    strtoul((char *)objs.p, NULL, 10));
		/* Deltas of this pack all point inside it, and git
		 * stores one of these commits as a delta on another. */
		assert_int_equal(gitrx_ndeltas_unknown(rx), 0);
		assert_true(gitrx_ndelta_commits(rx) >= 1);
		check_graph(rx, "c1..main");
		rev("main^{tree}", want);
		assert_int_equal(gitrx_commit_tree(rx, new, tree), 1);
		assert_string_equal(tree, want);
		assert_int_equal(gitrx_ancestry(rx, new, old, bnd, 4, &nb), 1);
		gitrx_free(rx);
	}
	free(body.p);
	free(pk.p);
	free(objs.p);
}

/* A thin pack, as git push sends, may hold deltas against objects of the
 * server: typeless to us, still inflated and checked. */
static void
test_thin(void **state)
{
	struct bytes body = { 0 }, pk = { 0 };
	char old[41], new[41], tips[200], bnd[4][41];
	struct gitrx *rx;
	size_t nb;

	(void)state;
	rev("main^", old);
	rev("main", new);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--thin --delta-base-offset");
	put_cmd(&body, old, new, "refs/heads/main", CAPS);
	put_flush(&body);
	put(&body, pk.p, pk.len);
	assert_int_equal(parse(NULL, &body, 3, &rx), 0);
	assert_true(gitrx_ndeltas(rx) >= 1);
	assert_true(gitrx_ndeltas_unknown(rx) >= 1);
	check_graph(rx, "main^..main");
	assert_int_equal(gitrx_ancestry(rx, new, old, bnd, 4, &nb), 1);
	gitrx_free(rx);
	free(body.p);
	free(pk.p);
}

/* rw amends main's tip: not a fast-forward; the walk leaves the pack at
 * the merge, which the caller would check against the server. */
static void
test_rewrite(void **state)
{
	struct bytes body = { 0 }, pk = { 0 };
	char old[41], new[41], merge[41], c1[41], tips[200], bnd[4][41];
	const char (*parents)[41];
	struct gitrx *rx;
	size_t nb, n;

	(void)state;
	rev("main", old);
	rev("rw", new);
	rev("main^", merge);
	rev("c1", c1);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--thin --delta-base-offset");
	put_cmd(&body, old, new, "refs/heads/main", CAPS " atomic");
	put_flush(&body);
	put(&body, pk.p, pk.len);
	assert_int_equal(parse(NULL, &body, 11, &rx), 0);
	check_graph(rx, "main..rw");
	assert_int_equal(gitrx_commit_parents(rx, old, &parents, &n), 0);
	assert_int_equal(gitrx_ancestry(rx, new, old, bnd, 4, &nb), 0);
	assert_int_equal(nb, 1);
	assert_string_equal(bnd[0], merge);
	/* Not in the pack at all: the boundary is the commit itself. */
	assert_int_equal(gitrx_ancestry(rx, c1, old, bnd, 4, &nb), 0);
	assert_int_equal(nb, 1);
	assert_string_equal(bnd[0], c1);
	assert_int_equal(gitrx_ancestry(rx, new, new, bnd, 4, &nb), 1);
	assert_int_equal(gitrx_ancestry(rx, new, old, bnd, 0, &nb),
	    TH_ERR_TOO_LONG);
	assert_int_equal(gitrx_ancestry(rx, "xyz", old, bnd, 4, &nb),
	    TH_ERR_INVALID);
	gitrx_free(rx);
	free(body.p);
	free(pk.p);
}

/* Create, delete and update in one request, with push options; the full
 * history for the created branch. */
static void
test_multi(void **state)
{
	struct bytes body = { 0 }, pk = { 0 };
	char c1[41], new[41], tips[200], bnd[4][41], line[64];
	struct gitrx *rx;
	size_t nb, nopts;

	(void)state;
	rev("c1", c1);
	rev("main", new);
	snprintf(tips, sizeof(tips), "%s\\n", new);
	pack(&pk, tips, "--delta-base-offset");
	put_cmd(&body, ZEROS, new, "refs/heads/feature/x-1",
	    CAPS " push-options");
	put_cmd(&body, c1, ZEROS, "refs/tags/v1.0", NULL);
	put_cmd(&body, c1, new, "refs/heads/main", NULL);
	put_flush(&body);
	snprintf(line, sizeof(line), "ci.skip\n");
	put_pkt(&body, line, strlen(line));
	put_pkt(&body, "x=y", 3);
	put_flush(&body);
	put(&body, pk.p, pk.len);
	assert_int_equal(parse(NULL, &body, 5, &rx), 0);
	assert_int_equal(gitrx_ncommands(rx), 3);
	assert_true(gitrx_command(rx, 0)->is_create);
	assert_false(gitrx_command(rx, 0)->is_delete);
	assert_true(gitrx_command(rx, 1)->is_delete);
	assert_string_equal(gitrx_command(rx, 1)->ref, "refs/tags/v1.0");
	assert_int_equal(gitrx_push_options(rx, &nopts), 1);
	assert_int_equal(nopts, 2);
	check_graph(rx, "main");
	assert_int_equal(gitrx_ancestry(rx, new, c1, bnd, 4, &nb), 1);
	/* A root commit has no parent to leave by. */
	assert_int_equal(gitrx_ancestry(rx, new, ZEROS, bnd, 4, &nb), 0);
	assert_int_equal(nb, 0);
	gitrx_free(rx);
	free(body.p);
	free(pk.p);
}

static void
test_delete_only(void **state)
{
	struct bytes body = { 0 };
	char c1[41], bnd[1][41];
	struct gitrx *rx;
	size_t nb;

	(void)state;
	rev("c1", c1);
	put_cmd(&body, c1, ZEROS, "refs/heads/gone", CAPS);
	put_flush(&body);
	assert_int_equal(parse(NULL, &body, 1, &rx), 0);
	assert_int_equal(gitrx_pack_bytes(rx), 0);
	assert_true(gitrx_command(rx, 0)->is_delete);
	assert_int_equal(gitrx_ancestry(rx, c1, c1, bnd, 1, &nb), 1);
	/* receive-pack reads nothing after a deletion-only list. */
	assert_int_equal(gitrx_feed(rx, (const uint8_t *)"P", 1),
	    TH_ERR_INVALID);
	assert_int_equal(gitrx_finish(rx), TH_ERR_INVALID);
	gitrx_free(rx);
	free(body.p);
}

static void
test_big_blob(void **state)
{
	struct bytes body = { 0 }, pk = { 0 };
	char old[41], new[41], tips[200], bnd[4][41];
	struct gitrx *rx;
	size_t nb;

	(void)state;
	sh("cd '%s' && git checkout -qb big main && head -c 20971520 "
	    "/dev/urandom > big && git add big && git commit -qm big && "
	    "git checkout -q main", repo);
	rev("main", old);
	rev("big", new);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--thin --delta-base-offset");
	assert_true(pk.len > 20 * 1024 * 1024);
	put_cmd(&body, old, new, "refs/heads/main", CAPS);
	put_flush(&body);
	put(&body, pk.p, pk.len);
	assert_int_equal(parse(NULL, &body, 2, &rx), 0);
	check_graph(rx, "main..big");
	assert_int_equal(gitrx_ancestry(rx, new, old, bnd, 4, &nb), 1);
	gitrx_free(rx);
	free(body.p);
	free(pk.p);
}

/* A hand-made pack: objects given as (type, announced size, content), and
 * for deltas the base: 1 + its index for OFS_DELTA, its id for REF_DELTA. */
struct obj {
	int		 type;
	size_t		 size;
	const void	*data;
	size_t		 len;
	size_t		 ofs_base;
	const uint8_t	*ref_base;
};

static void
make_pack(struct bytes *out, const struct obj *o, size_t n, uint32_t count)
{
	uint8_t hdr[12] = { 'P', 'A', 'C', 'K', 0, 0, 0, 2 }, b, sum[20];
	uint8_t z[4096], ofs[16];
	uLongf zlen;
	size_t i, start = out->len, size, at[8], pos;
	uint64_t d;

	hdr[8] = count >> 24;
	hdr[9] = count >> 16;
	hdr[10] = count >> 8;
	hdr[11] = count;
	put(out, hdr, 12);
	assert_true(n <= 8);
	for (i = 0; i < n; i++) {
		at[i] = out->len - start;
		size = o[i].size;
		b = (uint8_t)(o[i].type << 4 | (size & 15));
		size >>= 4;
		while (size != 0) {
			b |= 0x80;
			put(out, &b, 1);
			b = size & 0x7f;
			size >>= 7;
		}
		put(out, &b, 1);
		if (o[i].type == 6) {
			assert_true(o[i].ofs_base >= 1 && o[i].ofs_base <= i);
			d = at[i] - at[o[i].ofs_base - 1];
			pos = sizeof(ofs) - 1;
			ofs[pos] = d & 127;
			while ((d >>= 7) != 0)
				ofs[--pos] = (uint8_t)(128 | (--d & 127));
			put(out, ofs + pos, sizeof(ofs) - pos);
		} else if (o[i].type == 7)
			put(out, o[i].ref_base, 20);
		zlen = sizeof(z);
		assert_int_equal(compress(z, &zlen, o[i].data, o[i].len),
		    Z_OK);
		put(out, z, zlen);
	}
	assert_int_equal(EVP_Digest(out->p + start, out->len - start, sum,
	    NULL, EVP_sha1(), NULL), 1);
	put(out, sum, 20);
}

#define TREE	"4b825dc642cb6eb9a060e54bf8d69288fbee4904"
#define PARENT	"1111111111111111111111111111111111111111"
#define COMMIT	"tree " TREE "\nparent " PARENT "\nauthor A <a@b> 0 +0000\n" \
		"committer A <a@b> 0 +0000\n\nmsg\n"

/* A body of one update and the given objects. */
static void
crafted(struct bytes *body, const struct obj *o, size_t n, uint32_t count)
{
	put_cmd(body, PARENT, "2222222222222222222222222222222222222222",
	    "refs/heads/main", CAPS);
	put_flush(body);
	make_pack(body, o, n, count);
}

/* Second commit, as a delta on COMMIT: copy its tree line, insert the
 * rest. */
#define PARENT2	"3333333333333333333333333333333333333333"
#define COMMIT2	"tree " TREE "\nparent " PARENT2 "\nauthor B <a@b> 0 +0000\n" \
		"committer B <a@b> 0 +0000\n\nsecond\n"

static size_t
delta_varint(uint8_t *d, size_t v)
{
	size_t n = 0;

	for (; v >= 0x80; v >>= 7)
		d[n++] = (uint8_t)(0x80 | (v & 0x7f));
	d[n++] = (uint8_t)v;
	return n;
}

static size_t
commit2_delta(uint8_t *d)
{
	size_t n = 0, left, off = 46, k;

	n += delta_varint(d + n, sizeof(COMMIT) - 1);
	n += delta_varint(d + n, sizeof(COMMIT2) - 1);
	d[n++] = 0x90;			/* copy, offset 0, one size byte */
	d[n++] = 46;
	for (left = sizeof(COMMIT2) - 1 - off; left > 0; left -= k) {
		k = left < 127 ? left : 127;
		d[n++] = (uint8_t)k;
		memcpy(d + n, COMMIT2 + off, k);
		n += k;
		off += k;
	}
	return n;
}

static void
sha1_hex(const char *type, const void *p, size_t len, char hex[41],
    uint8_t raw[20])
{
	char hdr[32];
	EVP_MD_CTX *md;
	size_t i;

	snprintf(hdr, sizeof(hdr), "%s %zu", type, len);
	assert_non_null(md = EVP_MD_CTX_new());
	assert_int_equal(EVP_DigestInit_ex(md, EVP_sha1(), NULL), 1);
	assert_int_equal(EVP_DigestUpdate(md, hdr, strlen(hdr) + 1), 1);
	assert_int_equal(EVP_DigestUpdate(md, p, len), 1);
	assert_int_equal(EVP_DigestFinal_ex(md, raw, NULL), 1);
	EVP_MD_CTX_free(md);
	for (i = 0; i < 20; i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
}

/* Commits stored whole and as OFS and REF deltas on one another. */
static void
test_crafted_deltas(void **state)
{
	struct bytes body = { 0 };
	uint8_t delta[256], raw1[20], raw2[20];
	char id1[41], id2[41], bnd[2][41];
	const char (*parents)[41];
	struct gitrx *rx;
	size_t dlen, n, nb;
	struct obj o[2] = {
		{ 1, sizeof(COMMIT) - 1, COMMIT, sizeof(COMMIT) - 1, 0, NULL },
		{ 6, 0, delta, 0, 1, NULL },
	};

	(void)state;
	sha1_hex("commit", COMMIT, sizeof(COMMIT) - 1, id1, raw1);
	sha1_hex("commit", COMMIT2, sizeof(COMMIT2) - 1, id2, raw2);
	dlen = commit2_delta(delta);
	o[1].size = o[1].len = dlen;
	crafted(&body, o, 2, 2);
	assert_int_equal(parse(NULL, &body, 4, &rx), 0);
	assert_int_equal(gitrx_ncommits(rx), 2);
	assert_int_equal(gitrx_ndelta_commits(rx), 1);
	assert_int_equal(gitrx_commit_parents(rx, id2, &parents, &n), 1);
	assert_int_equal(n, 1);
	assert_string_equal(parents[0], PARENT2);
	assert_int_equal(gitrx_ancestry(rx, id2, PARENT, bnd, 2, &nb), 0);
	assert_int_equal(nb, 1);
	assert_string_equal(bnd[0], PARENT2);
	gitrx_free(rx);

	o[1].type = 7;
	o[1].ofs_base = 0;
	o[1].ref_base = raw1;
	body.len = 0;
	crafted(&body, o, 2, 2);
	assert_int_equal(parse(NULL, &body, 4, &rx), 0);
	assert_int_equal(gitrx_commit_parents(rx, id2, &parents, &n), 1);
	gitrx_free(rx);

	/* A copy past the end of the base. */
	assert_int_equal(delta[4], 0x90);
	delta[4] = 0x91;		/* offset byte 200, size byte 46 */
	memmove(delta + 6, delta + 5, dlen - 5);
	delta[5] = 200;
	o[1].size = o[1].len = dlen + 1;
	body.len = 0;
	crafted(&body, o, 2, 2);
	expect_fail(NULL, &body, TH_ERR_INVALID, "malformed delta");
	free(body.p);
}

static void
test_crafted_commit(void **state)
{
	struct bytes body = { 0 };
	struct obj o = { 1, sizeof(COMMIT) - 1, COMMIT, sizeof(COMMIT) - 1,
	    0, NULL };
	const char (*parents)[41];
	char hdr[32], id[41], tree[41];
	uint8_t raw[20];
	EVP_MD_CTX *md;
	struct gitrx *rx;
	size_t n, i;

	(void)state;
	snprintf(hdr, sizeof(hdr), "commit %zu", sizeof(COMMIT) - 1);
	assert_non_null(md = EVP_MD_CTX_new());
	assert_int_equal(EVP_DigestInit_ex(md, EVP_sha1(), NULL), 1);
	assert_int_equal(EVP_DigestUpdate(md, hdr, strlen(hdr) + 1), 1);
	assert_int_equal(EVP_DigestUpdate(md, COMMIT, sizeof(COMMIT) - 1), 1);
	assert_int_equal(EVP_DigestFinal_ex(md, raw, NULL), 1);
	EVP_MD_CTX_free(md);
	for (i = 0; i < 20; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	crafted(&body, &o, 1, 1);
	assert_int_equal(parse(NULL, &body, 9, &rx), 0);
	assert_int_equal(gitrx_commit_parents(rx, id, &parents, &n), 1);
	assert_int_equal(n, 1);
	assert_string_equal(parents[0], PARENT);
	assert_int_equal(gitrx_commit_tree(rx, id, tree), 1);
	assert_string_equal(tree, TREE);
	gitrx_free(rx);
	free(body.p);
}

/* A few bytes of deflate or of delta copies standing for megabytes: the
 * pack's inflated bytes, and the commits kept, are bounded by a multiple
 * of the pack's size (past a free allowance). */
static void
test_budgets(void **state)
{
	static const char head[] = "tree " TREE "\nparent " PARENT "\nauthor "
	    "A <a@b> 0 +0000\ncommitter A <a@b> 0 +0000\n\n";
	struct bytes body = { 0 };
	struct gitrx_limits lim;
	struct gitrx *rx;
	size_t blen = 2 << 20, clen = 32 * 1024, i, n;
	uint8_t *zeros = calloc(1, blen), delta[7][16];
	char *commit = malloc(clen);
	struct obj o[8];

	(void)state;
	assert_non_null(zeros);
	assert_non_null(commit);
	/* 2 MiB of zeros deflate to ~2 KiB. */
	o[0] = (struct obj){ 3, blen, zeros, blen, 0, NULL };
	crafted(&body, o, 1, 1);
	gitrx_limits_default(&lim);
	lim.inflate_free = 1 << 20;
	expect_fail(&lim, &body, TH_ERR_TOO_LONG, "inflates to more than 64 "
	    "times its size (past the first 1048576 bytes): refused as a "
	    "compression bomb");
	assert_int_equal(parse(NULL, &body, 3, NULL), 0);

	/* A 32 KiB commit and seven deltas on it, each a copy of all but its
	 * last byte and a byte of its own: 256 KiB of commits. */
	memcpy(commit, head, sizeof(head) - 1);
	memset(commit + sizeof(head) - 1, 'a', clen - sizeof(head));
	commit[clen - 1] = '\n';
	o[0] = (struct obj){ 1, clen, commit, clen, 0, NULL };
	for (i = 0; i < 7; i++) {
		n = delta_varint(delta[i], clen);	/* base size */
		n += delta_varint(delta[i] + n, clen);	/* result size */
		delta[i][n++] = 0xb0;	/* copy from 0, two size bytes */
		delta[i][n++] = (uint8_t)((clen - 1) & 0xff);
		delta[i][n++] = (uint8_t)((clen - 1) >> 8);
		delta[i][n++] = 1;	/* insert one byte */
		delta[i][n++] = (uint8_t)('0' + i);
		o[i + 1] = (struct obj){ 6, n, delta[i], n, 1, NULL };
	}
	body.len = 0;
	crafted(&body, o, 8, 8);
	lim.commit_free = 64 * 1024;
	expect_fail(&lim, &body, TH_ERR_TOO_LONG, "commits come to more than "
	    "32 times the pack's bytes so far (past the first 65536)");
	assert_int_equal(parse(NULL, &body, 3, &rx), 0);
	assert_int_equal(gitrx_ncommits(rx), 8);
	gitrx_free(rx);
	free(body.p);
	free(commit);
	free(zeros);
}

static void
test_malformed_pack(void **state)
{
	struct bytes good = { 0 }, b = { 0 }, pk = { 0 };
	struct gitrx_limits lim;
	char old[41], new[41], tips[200];
	struct obj o[2] = {
		{ 3, 5, "abcd", 4, 0, NULL },	/* says 5, inflates to 4 */
		{ 3, 3, "abcd", 4, 0, NULL },	/* says 3, inflates to 4 */
	};
	struct obj bad_commit = { 1, 10, "author x\n\n", 10, 0, NULL };
	struct obj bad_type = { 5, 4, "abcd", 4, 0, NULL };
	struct obj blob = { 3, 4, "abcd", 4, 0, NULL };
	size_t hdr;

	(void)state;
	rev("c1", old);
	rev("main", new);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--delta-base-offset");
	put_cmd(&good, old, new, "refs/heads/main", CAPS);
	put_flush(&good);
	hdr = good.len;
	put(&good, pk.p, pk.len);

	/* Truncated: anywhere in the pack, finish says so. */
	put(&b, good.p, good.len - 10);
	expect_fail(NULL, &b, TH_ERR_TRUNCATED, "pack ends early");
	b.len = hdr + 5;
	expect_fail(NULL, &b, TH_ERR_TRUNCATED, "pack ends early");
	b.len = hdr;
	expect_fail(NULL, &b, TH_ERR_TRUNCATED, "no pack");
	/* Wrong trailer. */
	b.len = 0;
	put(&b, good.p, good.len);
	b.p[b.len - 1] ^= 1;
	expect_fail(NULL, &b, TH_ERR_INVALID, "pack checksum mismatch");
	/* Trailing bytes. */
	b.p[b.len - 1] ^= 1;
	put(&b, "x", 1);
	expect_fail(NULL, &b, TH_ERR_INVALID, "trailing bytes");
	/* Over the limit. */
	gitrx_limits_default(&lim);
	lim.max_pack_bytes = pk.len - 1;
	expect_fail(&lim, &good, TH_ERR_TOO_LONG, "pack larger than the limit");
	lim.max_pack_bytes = pk.len;
	assert_int_equal(parse(&lim, &good, 1, NULL), 0);
	/* Too many objects or commits for the limits. */
	gitrx_limits_default(&lim);
	lim.max_objects = 3;
	expect_fail(&lim, &good, TH_ERR_TOO_LONG, "more than 3 objects");
	gitrx_limits_default(&lim);
	lim.max_commits = 2;
	expect_fail(&lim, &good, TH_ERR_TOO_LONG, "more than 2 commits");
	gitrx_limits_default(&lim);
	lim.max_commit_size = 100;
	expect_fail(&lim, &good, TH_ERR_TOO_LONG, "commit larger");

	/* Object size mismatch, both ways. */
	b.len = 0;
	crafted(&b, &o[0], 1, 1);
	expect_fail(NULL, &b, TH_ERR_INVALID, "not the 5 announced");
	b.len = 0;
	crafted(&b, &o[1], 1, 1);
	expect_fail(NULL, &b, TH_ERR_INVALID, "more than its 3 bytes");
	/* Fewer objects than announced: the trailer is read as an object. */
	b.len = 0;
	crafted(&b, &blob, 1, 2);
	assert_true(parse(NULL, &b, 1, NULL) < 0);
	/* More objects than announced: the next one is read as trailer. */
	b.len = 0;
	{
		struct obj two[2] = { blob, blob };

		crafted(&b, two, 2, 1);
	}
	expect_fail(NULL, &b, TH_ERR_INVALID, "checksum mismatch");
	b.len = 0;
	crafted(&b, &bad_commit, 1, 1);
	expect_fail(NULL, &b, TH_ERR_INVALID, "no tree line");
	b.len = 0;
	crafted(&b, &bad_type, 1, 1);
	expect_fail(NULL, &b, TH_ERR_INVALID, "invalid type 5");
	/* Empty pack: complete. */
	b.len = 0;
	crafted(&b, NULL, 0, 0);
	assert_int_equal(parse(NULL, &b, 1, NULL), 0);
	/* Bad signature. */
	b.p[b.len - 32] = 'J';
	expect_fail(NULL, &b, TH_ERR_INVALID, "pack signature");
	free(good.p);
	free(b.p);
	free(pk.p);
}

static void
test_malformed_commands(void **state)
{
	static const char *bad_refs[] = {
		"heads/main", "refs/", "refs/heads/a..b", "refs/heads/x.lock",
		"refs/heads/x.lock/y", "refs/heads/x/", "refs/heads/a@{1}",
		"refs/heads/a\001b", "refs/heads/a b", "refs/heads/.hidden",
		"refs/heads//x", "refs/heads/x.", "refs/heads/a~1",
		"refs/heads/a:b", "refs/heads/a\\b", "refs/heads/a\177",
		"refs/heads/a*", "refs/heads/[x", "refs/heads/a^",
		"refs/heads/\xff", "refs/heads/caf\xc3",
	};
	struct bytes b = { 0 };
	struct gitrx_limits lim;
	struct gitrx *rx;
	char c1[41], ref[300];
	size_t i;
	int r;

	(void)state;
	rev("c1", c1);
	for (i = 0; i < sizeof(bad_refs) / sizeof(*bad_refs); i++) {
		b.len = 0;
		put_cmd(&b, c1, ZEROS, bad_refs[i], CAPS);
		put_flush(&b);
		expect_fail(NULL, &b, TH_ERR_INVALID, "invalid ref name");
	}
	memset(ref, 'a', sizeof(ref));
	memcpy(ref, "refs/heads/", 11);
	ref[255] = '\0';
	b.len = 0;
	put_cmd(&b, c1, ZEROS, ref, CAPS);
	put_flush(&b);
	assert_int_equal(parse(NULL, &b, 1, NULL), 0);
	ref[255] = 'a';
	ref[256] = '\0';
	b.len = 0;
	put_cmd(&b, c1, ZEROS, ref, CAPS);
	put_flush(&b);
	expect_fail(NULL, &b, TH_ERR_INVALID, "invalid ref name");

	/* Bad pkt-line lengths. */
	b.len = 0;
	put(&b, "zzzz", 4);
	expect_fail(NULL, &b, TH_ERR_PROTOCOL, "malformed pkt-line length");
	b.len = 0;
	put(&b, "0003", 4);
	expect_fail(NULL, &b, TH_ERR_PROTOCOL, "malformed pkt-line length");
	b.len = 0;
	put(&b, "0001", 4);
	expect_fail(NULL, &b, TH_ERR_PROTOCOL, "malformed pkt-line length");
	b.len = 0;
	put(&b, "fff1", 4);
	expect_fail(NULL, &b, TH_ERR_PROTOCOL, "malformed pkt-line length");
	b.len = 0;
	put(&b, "00", 2);
	expect_fail(NULL, &b, TH_ERR_TRUNCATED, "inside the commands");
	/* No commands at all. */
	b.len = 0;
	put_flush(&b);
	expect_fail(NULL, &b, TH_ERR_INVALID, "no ref updates");
	/* Too many commands. */
	gitrx_limits_default(&lim);
	lim.max_commands = 2;
	b.len = 0;
	put_cmd(&b, c1, ZEROS, "refs/heads/a", CAPS);
	put_cmd(&b, c1, ZEROS, "refs/heads/b", NULL);
	put_flush(&b);
	assert_int_equal(parse(&lim, &b, 1, NULL), 0);
	b.len -= 4;
	put_cmd(&b, c1, ZEROS, "refs/heads/c", NULL);
	put_flush(&b);
	expect_fail(&lim, &b, TH_ERR_TOO_LONG, "more than 2 ref updates");
	/* Duplicate ref, zero-to-zero, upper case, NUL after the first. */
	b.len = 0;
	put_cmd(&b, c1, ZEROS, "refs/heads/a", CAPS);
	put_cmd(&b, c1, ZEROS, "refs/heads/a", NULL);
	expect_fail(NULL, &b, TH_ERR_INVALID, "duplicate ref");
	b.len = 0;
	put_cmd(&b, ZEROS, ZEROS, "refs/heads/a", CAPS);
	expect_fail(NULL, &b, TH_ERR_INVALID, "neither creates");
	b.len = 0;
	put_cmd(&b, "ABCDEF0123456789ABCDEF0123456789ABCDEF01", ZEROS,
	    "refs/heads/a", CAPS);
	expect_fail(NULL, &b, TH_ERR_INVALID, "malformed command");
	b.len = 0;
	put_cmd(&b, c1, ZEROS, "refs/heads/a", CAPS);
	put_cmd(&b, c1, ZEROS, "refs/heads/b", "more caps");
	expect_fail(NULL, &b, TH_ERR_INVALID, "NUL in command 2");
	/* Signed, shallow and SHA-256 pushes. */
	b.len = 0;
	put_pkt(&b, "push-cert\0report-status\n", 24);
	put_pkt(&b, "certificate version 0.1\n", 24);
	expect_fail(NULL, &b, TH_ERR_DENIED, "signed pushes are not supported");
	assert_non_null(rx = gitrx_new(NULL));
	r = gitrx_feed(rx, b.p, b.len);
	assert_int_equal(r, TH_ERR_DENIED);
	assert_int_equal(gitrx_push_cert(rx), 1);
	/* Sticky: the same error, with its message, from then on. */
	th_errclear();
	assert_int_equal(gitrx_feed(rx, b.p, 4), TH_ERR_DENIED);
	assert_string_equal(th_errmsg(TH_ERR_DENIED),
	    "signed pushes are not supported");
	assert_int_equal(gitrx_finish(rx), TH_ERR_DENIED);
	gitrx_free(rx);
	b.len = 0;
	put_pkt(&b, "shallow 1111111111111111111111111111111111111111", 48);
	expect_fail(NULL, &b, TH_ERR_DENIED, "shallow");
	b.len = 0;
	put_cmd(&b, c1, ZEROS, "refs/heads/a", CAPS " object-format=sha256");
	expect_fail(NULL, &b, TH_ERR_DENIED, "SHA-1");
	/* Push options announced but the body stops in them. */
	b.len = 0;
	put_cmd(&b, c1, ZEROS, "refs/heads/a", "push-options");
	put_flush(&b);
	put_pkt(&b, "a=b", 3);
	expect_fail(NULL, &b, TH_ERR_TRUNCATED, "push options");
	free(b.p);
}

/* Random byte flips and cuts of valid bodies: errors, never crashes (run
 * under ASan/UBSan by `make asan`).  GITRX_FUZZ_N=300000 runs longer. */
static void
test_mutations(void **state)
{
	struct bytes good = { 0 }, pk = { 0 }, b = { 0 };
	struct obj o = { 1, sizeof(COMMIT) - 1, COMMIT, sizeof(COMMIT) - 1,
	    0, NULL };
	uint8_t delta[256];
	struct obj od[2] = {
		{ 1, sizeof(COMMIT) - 1, COMMIT, sizeof(COMMIT) - 1, 0, NULL },
		{ 6, 0, delta, 0, 1, NULL },
	};
	char old[41], new[41], tips[200], bnd[8][41];
	const char (*parents)[41];
	struct gitrx_limits lim;
	struct gitrx *rx;
	size_t nb, n, flips, k, dlen;
	uint64_t seed, pos;
	int i, r;

	(void)state;
	rev("c1", old);
	rev("main", new);
	snprintf(tips, sizeof(tips), "%s\\n^%s\\n", new, old);
	pack(&pk, tips, "--delta-base-offset");
	put_cmd(&good, old, new, "refs/heads/main", CAPS " push-options");
	put_flush(&good);
	put_pkt(&good, "opt", 3);
	put_flush(&good);
	put(&good, pk.p, pk.len);
	gitrx_limits_default(&lim);
	lim.max_commits = 8;
	lim.max_commit_size = 4096;
	lim.max_object_size = 1 << 20;
	for (i = 0; i < (getenv("GITRX_FUZZ_N") ? atoi(getenv("GITRX_FUZZ_N")) : 4000); i++) {
		seed = (uint64_t)i * 7919 + 13;
		b.len = 0;
		rng = seed;
		if (i % 10 == 8) {
			/* Mutate a delta before compression, so that it
			 * reaches the delta code past zlib's checksum. */
			dlen = commit2_delta(delta);
			for (k = 0; k < 1 + rnd() % 3; k++)
				delta[rnd() % dlen] ^= (uint8_t)(1 + rnd() % 255);
			if (rnd() % 2)
				dlen = rnd() % dlen + 1;
			od[1].size = od[1].len = dlen;
			if (rnd() % 2)
				od[1].size = rnd() % 300;
			crafted(&b, od, 2, 2);
			flips = 0;
		} else if (i % 10 == 9) {
			crafted(&b, &o, 1, 1);
			flips = 1 + rnd() % 4;
		} else {
			put(&b, good.p, good.len);
			flips = 1 + rnd() % 4;
		}
		for (k = 0; k < flips; k++) {
			pos = rnd() % b.len;
			b.p[pos] ^= (uint8_t)(1 + rnd() % 255);
		}
		if (i % 7 == 0)
			b.len = rnd() % b.len;
		assert_non_null(rx = gitrx_new(&lim));
		r = feed_all(rx, &b, seed);
		assert_true(r <= 0);
		(void)gitrx_ncommands(rx);
		(void)gitrx_commit_parents(rx, new, &parents, &n);
		(void)gitrx_ancestry(rx, new, old, bnd, 8, &nb);
		gitrx_free(rx);
	}
	free(good.p);
	free(pk.p);
	free(b.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fast_forward),
		cmocka_unit_test(test_thin),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_delete_only),
		cmocka_unit_test(test_crafted_commit),
		cmocka_unit_test(test_crafted_deltas),
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_malformed_pack),
		cmocka_unit_test(test_malformed_commands),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_big_blob),
	};

	return cmocka_run_group_tests_name("gitrx", tests, setup, teardown);
}
