/* A git push body (receive-pack request: pkt-line commands, push options,
 * the pack) as an agent sends it through thresholdd.  The first byte sets
 * the size of the pieces it is fed in, so a body split anywhere is
 * exercised; small limits make the limit checks reachable. */
#include <string.h>

#include "fuzz.h"
#include "gitrx.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gitrx_limits lim;
	char boundary[8][GITRX_HEXSZ + 1], tree[GITRX_HEXSZ + 1];
	const char (*parents)[GITRX_HEXSZ + 1];
	const struct gitrx_cmd *c;
	struct gitrx *rx;
	size_t piece, off, k, i, nb, np, nopts;
	int r;

	if (size < 2)
		return 0;
	gitrx_limits_default(&lim);
	lim.max_commands = 8;
	lim.max_pack_bytes = 1 << 20;
	lim.max_objects = 64;
	lim.max_commits = 32;
	lim.max_commit_size = 4096;
	lim.max_commit_bytes = 16384;
	lim.max_object_size = 1 << 16;
	lim.inflate_free = 1 << 15;
	lim.inflate_ratio = 8;
	lim.commit_free = 8192;
	lim.commit_ratio = 4;
	if ((rx = gitrx_new(&lim)) == NULL)
		return 0;
	piece = (size_t)data[0] + 1;
	data++;
	size--;
	r = 0;
	for (off = 0; r == 0 && off < size; off += k) {
		k = size - off < piece ? size - off : piece;
		r = gitrx_feed(rx, data + off, k);
	}
	if (r == 0)
		r = gitrx_finish(rx);
	FUZZ_ASSERT(gitrx_ncommands(rx) <= lim.max_commands);
	FUZZ_ASSERT(gitrx_ncommits(rx) <= lim.max_commits);
	(void)gitrx_push_options(rx, &nopts);
	(void)gitrx_caps(rx);
	for (i = 0; (c = gitrx_command(rx, i)) != NULL; i++) {
		FUZZ_ASSERT(strlen(c->old) == GITRX_HEXSZ &&
		    strlen(c->new) == GITRX_HEXSZ);
		if (gitrx_ancestry(rx, c->new, c->old, boundary, 8, &nb) >= 0)
			FUZZ_ASSERT(nb <= 8);
		if (gitrx_commit_parents(rx, c->new, &parents, &np) == 1 &&
		    np > 0)
			(void)gitrx_ancestry(rx, c->new, parents[np - 1],
			    boundary, 8, &nb);
		(void)gitrx_commit_tree(rx, c->new, tree);
	}
	gitrx_free(rx);
	return 0;
}
