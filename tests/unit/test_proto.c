/* Signer protocol encoding: round trips, every bound, and mutations of golden
 * frames (each truncation and each single-bit flip must decode cleanly or be
 * refused, never crash, never read past the frame). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "proto.h"

/* Splits a frame into its body, checking the length prefix. */
static struct buf *
body_of(struct buf *frame)
{
	struct buf *b = buf_new();
	uint32_t n;

	assert_non_null(b);
	assert_int_equal(buf_get_u32(frame, &n), 0);
	assert_int_equal(n, buf_len(frame));
	assert_int_equal(buf_put(b, buf_ptr(frame), n), 0);
	return b;
}

static void
test_sign_roundtrip(void **state)
{
	struct proto_req req = { .type = PROTO_SIGN }, got;
	struct buf *f = buf_new(), *b;
	const char *payload = "eyJhbGciOiJFUzI1NiJ9.e30";

	(void)state;
	strcpy(req.purpose, "capability");
	req.data = (const uint8_t *)payload;
	req.data_len = strlen(payload);
	assert_int_equal(proto_req_encode(f, &req), 0);
	b = body_of(f);
	assert_int_equal(proto_req_decode(b, &got), 0);
	assert_int_equal(got.type, PROTO_SIGN);
	assert_string_equal(got.purpose, "capability");
	assert_int_equal(got.data_len, strlen(payload));
	assert_memory_equal(got.data, payload, got.data_len);
	buf_free(b);
	buf_free(f);
}

static void
test_every_request_roundtrips(void **state)
{
	uint8_t types[] = { PROTO_HEALTH, PROTO_PUBKEY, PROTO_QUOTE,
	    PROTO_EKCERT };
	uint8_t qual[PROTO_QUAL_MAX] = { 1, 2, 3 };
	struct proto_req req, got;
	struct buf *f, *b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types); i++) {
		memset(&req, 0, sizeof(req));
		req.type = types[i];
		strcpy(req.purpose, "github-app");
		req.data = qual;
		req.data_len = sizeof(qual);
		f = buf_new();
		assert_int_equal(proto_req_encode(f, &req), 0);
		b = body_of(f);
		assert_int_equal(proto_req_decode(b, &got), 0);
		assert_int_equal(got.type, types[i]);
		if (types[i] == PROTO_QUOTE)
			assert_memory_equal(got.data, qual, sizeof(qual));
		buf_free(b);
		buf_free(f);
	}
}

/* AKCERT and KEYSCERT name an audit log's instance, and nothing else. */
static void
test_subject_requests(void **state)
{
	uint8_t types[] = { PROTO_AKCERT, PROTO_KEYSCERT };
	const char *subject = "thresholdd:Ab0_.-";
	struct proto_req req, got;
	struct buf *f, *b;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types); i++) {
		memset(&req, 0, sizeof(req));
		req.type = types[i];
		req.data = (const uint8_t *)subject;
		req.data_len = strlen(subject);
		f = buf_new();
		assert_int_equal(proto_req_encode(f, &req), 0);
		b = body_of(f);
		assert_int_equal(proto_req_decode(b, &got), 0);
		assert_int_equal(got.type, types[i]);
		assert_int_equal(got.data_len, strlen(subject));
		assert_memory_equal(got.data, subject, strlen(subject));
		buf_free(b);
		buf_reset(f);
		req.data = (const uint8_t *)"a b";
		req.data_len = 3;
		assert_int_equal(proto_req_encode(f, &req), TH_ERR_INVALID);
		req.data_len = 0;
		assert_int_equal(proto_req_encode(f, &req), TH_ERR_INVALID);
		buf_free(f);
	}
}

static void
test_encode_refuses_out_of_bounds(void **state)
{
	static uint8_t big[PROTO_PAYLOAD_MAX + 1];
	struct proto_req req = { .type = PROTO_SIGN };
	struct buf *f = buf_new();

	(void)state;
	strcpy(req.purpose, "capability");
	req.data = big;
	req.data_len = sizeof(big);
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_TOO_LONG);
	req.type = PROTO_QUOTE;
	req.data_len = PROTO_QUAL_MAX + 1;
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_TOO_LONG);
	req.type = PROTO_PUBKEY;
	strcpy(req.purpose, "Capability");
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_INVALID);
	req.type = 0x7f;
	assert_int_equal(proto_req_encode(f, &req), TH_ERR_INVALID);
	buf_free(f);
}

/* Builds a raw body from bytes. */
static struct buf *
raw(const void *p, size_t n)
{
	struct buf *b = buf_new();

	assert_int_equal(buf_put(b, p, n), 0);
	return b;
}

static void
test_decode_refuses_malformed(void **state)
{
	struct proto_req req;
	struct buf *b;
	/* SIGN, purpose length 0x100 (over the bound). */
	uint8_t longpurpose[] = { PROTO_SIGN, 0, 0, 1, 0 };
	/* SIGN, purpose "ok", payload length 2^32-1. */
	uint8_t hugepayload[] = { PROTO_SIGN, 0, 0, 0, 2, 'o', 'k',
	    0xff, 0xff, 0xff, 0xff };
	/* PUBKEY with a NUL inside the purpose. */
	uint8_t nul[] = { PROTO_PUBKEY, 0, 0, 0, 3, 'a', 0, 'b' };
	/* HEALTH with a trailing byte. */
	uint8_t trailing[] = { PROTO_HEALTH, 0 };
	/* QUOTE with 65 bytes of qualifying data claimed. */
	uint8_t longqual[] = { PROTO_QUOTE, 0, 0, 0, 65 };
	uint8_t unknown[] = { 0x42 };
	uint8_t upper[] = { PROTO_PUBKEY, 0, 0, 0, 1, 'A' };
	/* SIGN, purpose "a\nb": the signer logs the purpose it decoded, and
	 * a refused one must not reach the log (a forged line). */
	uint8_t newline[] = { PROTO_SIGN, 0, 0, 0, 3, 'a', '\n', 'b',
	    0, 0, 0, 0 };

	(void)state;
#define REFUSED(arr) do {						\
		memset(&req, 'x', sizeof(req));				\
		b = raw(arr, sizeof(arr));				\
		assert_int_equal(proto_req_decode(b, &req),		\
		    TH_ERR_PROTOCOL);					\
		assert_true(memchr(req.purpose, '\0',			\
		    sizeof(req.purpose)) != NULL);			\
		assert_true(req.purpose[0] == '\0' ||			\
		    proto_purpose_valid(req.purpose));			\
		buf_free(b);						\
	} while (0)
	REFUSED(newline);
	REFUSED(longpurpose);
	REFUSED(hugepayload);
	REFUSED(nul);
	REFUSED(trailing);
	REFUSED(longqual);
	REFUSED(unknown);
	REFUSED(upper);
	b = buf_new();
	assert_int_equal(proto_req_decode(b, &req), TH_ERR_PROTOCOL);
	buf_free(b);
#undef REFUSED
}

static void
test_mutations_never_crash(void **state)
{
	struct proto_req req = { .type = PROTO_SIGN }, got;
	struct buf *f = buf_new(), *golden, *b;
	const char *payload = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0";
	size_t i, bit, n;
	uint8_t *copy;
	int ok = 0;

	(void)state;
	strcpy(req.purpose, "github-app");
	req.data = (const uint8_t *)payload;
	req.data_len = strlen(payload);
	assert_int_equal(proto_req_encode(f, &req), 0);
	golden = body_of(f);
	n = buf_len(golden);
	copy = malloc(n);
	/* Every strict prefix is refused. */
	for (i = 0; i < n; i++) {
		b = raw(buf_ptr(golden), i);
		assert_int_not_equal(proto_req_decode(b, &got), 0);
		buf_free(b);
	}
	/* Every single-bit flip is refused or decodes within bounds. */
	for (i = 0; i < n; i++) {
		for (bit = 0; bit < 8; bit++) {
			memcpy(copy, buf_ptr(golden), n);
			copy[i] ^= (uint8_t)(1 << bit);
			b = raw(copy, n);
			if (proto_req_decode(b, &got) == 0) {
				ok++;
				assert_true(got.data_len <= PROTO_PAYLOAD_MAX);
				/* Types without a purpose field decode with
				 * an empty one. */
				assert_true(proto_purpose_valid(got.purpose) ||
				    got.type == PROTO_HEALTH ||
				    got.type == PROTO_QUOTE ||
				    got.type == PROTO_EKCERT ||
				    got.type == PROTO_AKPUBLIC ||
				    got.type == PROTO_ACTIVATE);
			}
			buf_free(b);
		}
	}
	/* Flips inside the payload bytes keep the frame well-formed. */
	assert_true(ok > 0);
	free(copy);
	buf_free(golden);
	buf_free(f);
}

static void
test_reply_roundtrips(void **state)
{
	struct proto_health_item items[2];
	struct proto_reply rep;
	const uint8_t *blobs[3] = { (const uint8_t *)"a",
	    (const uint8_t *)"bb", (const uint8_t *)"ccc" };
	size_t lens[3] = { 1, 2, 3 };
	struct buf *f, *b;

	(void)state;
	f = buf_new();
	assert_int_equal(proto_reply_blobs(f, "ES256", blobs, lens, 1), 0);
	b = body_of(f);
	assert_int_equal(proto_reply_decode(b, PROTO_SIGN, &rep), 0);
	assert_string_equal(rep.alg, "ES256");
	assert_int_equal(rep.blob_len[0], 1);
	buf_free(b);
	buf_free(f);

	f = buf_new();
	assert_int_equal(proto_reply_blobs(f, NULL, blobs, lens, 3), 0);
	b = body_of(f);
	assert_int_equal(proto_reply_decode(b, PROTO_QUOTE, &rep), 0);
	assert_memory_equal(rep.blob[2], "ccc", 3);
	buf_free(b);
	buf_free(f);
	/* A QUOTE-shaped reply is not a valid SIGN reply. */
	f = buf_new();
	assert_int_equal(proto_reply_blobs(f, NULL, blobs, lens, 3), 0);
	b = body_of(f);
	assert_int_not_equal(proto_reply_decode(b, PROTO_SIGN, &rep), 0);
	buf_free(b);
	buf_free(f);

	f = buf_new();
	assert_int_equal(proto_reply_error(f, TH_ERR_DENIED, "no"), 0);
	b = body_of(f);
	assert_int_equal(proto_reply_decode(b, PROTO_SIGN, &rep), 0);
	assert_int_equal(rep.type, PROTO_ERROR);
	assert_int_equal(rep.code, TH_ERR_DENIED);
	assert_string_equal(rep.msg, "no");
	buf_free(b);
	buf_free(f);

	memset(items, 0, sizeof(items));
	strcpy(items[0].purpose, "capability");
	strcpy(items[0].backend, "pkcs11");
	strcpy(items[0].detail, "ok");
	strcpy(items[1].purpose, "attestation");
	strcpy(items[1].backend, "tpm");
	items[1].status = TH_ERR_UNAVAILABLE;
	strcpy(items[1].detail, "gone");
	f = buf_new();
	assert_int_equal(proto_reply_health(f, items, 2), 0);
	b = body_of(f);
	assert_int_equal(proto_reply_decode(b, PROTO_HEALTH, &rep), 0);
	assert_int_equal(rep.nhealth, 2);
	assert_int_equal(rep.health[1].status, TH_ERR_UNAVAILABLE);
	assert_string_equal(rep.health[1].detail, "gone");
	buf_free(b);
	buf_free(f);
}

static void
test_read_frame_bounds(void **state)
{
	uint8_t huge[] = { 0x00, 0x01, 0x00, 0x01 };	/* 65537 */
	uint8_t zero[] = { 0, 0, 0, 0 };
	uint8_t shortf[] = { 0, 0, 0, 5, PROTO_HEALTH };
	uint8_t good[] = { 0, 0, 0, 1, PROTO_HEALTH };
	struct buf *b = buf_new();
	int sv[2];

	(void)state;
#define FRAME(arr, want) do {						\
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0); \
		assert_int_equal(write(sv[0], arr, sizeof(arr)),	\
		    (ssize_t)sizeof(arr));				\
		close(sv[0]);						\
		assert_int_equal(proto_read_frame(sv[1], b), want);	\
		close(sv[1]);						\
	} while (0)
	FRAME(huge, TH_ERR_PROTOCOL);
	FRAME(zero, TH_ERR_PROTOCOL);
	FRAME(shortf, TH_ERR_IO);
	FRAME(good, 0);
	assert_int_equal(buf_len(b), 1);
#undef FRAME
	buf_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_roundtrip),
		cmocka_unit_test(test_every_request_roundtrips),
		cmocka_unit_test(test_subject_requests),
		cmocka_unit_test(test_encode_refuses_out_of_bounds),
		cmocka_unit_test(test_decode_refuses_malformed),
		cmocka_unit_test(test_mutations_never_crash),
		cmocka_unit_test(test_reply_roundtrips),
		cmocka_unit_test(test_read_frame_bounds),
	};

	return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
