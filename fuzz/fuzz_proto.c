/* The signer protocol's frame bodies: what threshold-signer decodes from
 * any allowed peer (requests) and what its clients decode from the socket
 * (replies).  The first byte picks the direction (and, for a reply, the
 * request type it answers). */
#include <string.h>

#include "buf.h"
#include "err.h"
#include "fuzz.h"
#include "proto.h"

static void
request(const uint8_t *p, size_t n)
{
	struct proto_req req, again;
	struct buf *body = buf_new(), *frame = buf_new(), *b2 = buf_new();

	if (body == NULL || frame == NULL || b2 == NULL ||
	    buf_put(body, p, n) != 0)
		goto out;
	if (proto_req_decode(body, &req) != 0)
		goto out;
	/* An accepted request re-encodes to the same body. */
	FUZZ_ASSERT(strlen(req.purpose) <= PROTO_PURPOSE_MAX);
	FUZZ_ASSERT(req.data_len <= PROTO_FRAME_MAX);
	FUZZ_ASSERT(proto_req_encode(frame, &req) == 0);
	FUZZ_ASSERT(buf_len(frame) == n + 4);
	FUZZ_ASSERT(memcmp(buf_ptr(frame) + 4, p, n) == 0);
	FUZZ_ASSERT(buf_put(b2, buf_ptr(frame) + 4, n) == 0);
	FUZZ_ASSERT(proto_req_decode(b2, &again) == 0);
	FUZZ_ASSERT(again.type == req.type &&
	    strcmp(again.purpose, req.purpose) == 0 &&
	    again.data_len == req.data_len && again.data2_len ==
	    req.data2_len);
 out:
	buf_free(body);
	buf_free(frame);
	buf_free(b2);
}

static void
reply(uint8_t req_type, const uint8_t *p, size_t n)
{
	struct proto_reply rep;
	struct buf *body = buf_new();
	const uint8_t *base;
	size_t i;

	if (body == NULL || buf_put(body, p, n) != 0)
		goto out;
	/* Blobs point into the body as it was before decoding. */
	base = buf_ptr(body);
	if (proto_reply_decode(body, req_type, &rep) != 0)
		goto out;
	FUZZ_ASSERT(strlen(rep.msg) <= PROTO_MSG_MAX);
	FUZZ_ASSERT(strlen(rep.alg) <= PROTO_ALG_MAX);
	FUZZ_ASSERT(rep.nhealth <= PROTO_HEALTH_MAX);
	for (i = 0; i < 3; i++) {
		FUZZ_ASSERT(rep.blob_len[i] <= n);
		FUZZ_ASSERT(rep.blob_len[i] == 0 || (rep.blob[i] >= base &&
		    rep.blob[i] + rep.blob_len[i] <= base + n));
	}
 out:
	buf_free(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[0] & 0x80)
		reply(data[1], data + 2, size - 2);
	else
		request(data + 1, size - 1);
	return 0;
}
