#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "proto.h"

int
proto_purpose_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > PROTO_PURPOSE_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return 0;
	return 1;
}

/* Prefix body (already in out from offset start) with its length. */
static int
frame_begin(struct buf *out, uint8_t type)
{
	int r;

	if ((r = buf_put_u32(out, 0)) != 0)	/* patched by frame_end */
		return r;
	return buf_put_u8(out, type);
}

static int
frame_end(struct buf *out, size_t start)
{
	uint8_t *p = (uint8_t *)buf_ptr(out) + start;
	size_t n = buf_len(out) - start - 4;

	if (n > PROTO_FRAME_MAX)
		return th_fail(TH_ERR_TOO_LONG, "frame of %zu bytes exceeds %d",
		    n, PROTO_FRAME_MAX);
	p[0] = n >> 24;
	p[1] = n >> 16;
	p[2] = n >> 8;
	p[3] = n;
	return 0;
}

int
proto_req_encode(struct buf *out, const struct proto_req *req)
{
	size_t start = buf_len(out);
	int r;

	if ((r = frame_begin(out, req->type)) != 0)
		return r;
	switch (req->type) {
	case PROTO_HEALTH:
	case PROTO_EKCERT:
	case PROTO_AKPUBLIC:
		break;
	case PROTO_PUBKEY:
		if (!proto_purpose_valid(req->purpose))
			return th_fail(TH_ERR_INVALID, "bad purpose name");
		r = buf_put_cstring(out, req->purpose);
		break;
	case PROTO_SIGN:
		if (!proto_purpose_valid(req->purpose))
			return th_fail(TH_ERR_INVALID, "bad purpose name");
		if (req->data_len > PROTO_PAYLOAD_MAX)
			return th_fail(TH_ERR_TOO_LONG,
			    "payload of %zu bytes exceeds %d", req->data_len,
			    PROTO_PAYLOAD_MAX);
		if ((r = buf_put_cstring(out, req->purpose)) == 0)
			r = buf_put_string(out, req->data, req->data_len);
		break;
	case PROTO_QUOTE:
		if (req->data_len > PROTO_QUAL_MAX)
			return th_fail(TH_ERR_TOO_LONG,
			    "qualifying data of %zu bytes exceeds %d",
			    req->data_len, PROTO_QUAL_MAX);
		r = buf_put_string(out, req->data, req->data_len);
		break;
	case PROTO_ACTIVATE:
		if (req->data_len > PROTO_ACTIVATE_MAX ||
		    req->data2_len > PROTO_ACTIVATE_MAX)
			return th_fail(TH_ERR_TOO_LONG,
			    "ACTIVATE field of %zu bytes exceeds %d",
			    req->data_len > req->data2_len ? req->data_len :
			    req->data2_len, PROTO_ACTIVATE_MAX);
		if ((r = buf_put_string(out, req->data, req->data_len)) == 0)
			r = buf_put_string(out, req->data2, req->data2_len);
		break;
	case PROTO_AKCERT:
	case PROTO_KEYSCERT:
		if (!proto_subject_valid(req->data, req->data_len))
			return th_fail(TH_ERR_INVALID, "bad subject");
		r = buf_put_string(out, req->data, req->data_len);
		break;
	default:
		return th_fail(TH_ERR_INVALID, "unknown request type %u",
		    req->type);
	}
	if (r != 0)
		return r;
	return frame_end(out, start);
}

static int
get_purpose(struct buf *b, char *out)
{
	int r;

	if ((r = buf_get_cstring(b, out, PROTO_PURPOSE_MAX + 1)) != 0) {
		out[0] = '\0';
		return th_fail(TH_ERR_PROTOCOL, "bad purpose field: %s",
		    th_strerror(r));
	}
	/* A refused name is not kept: the signer logs the purpose of
	 * every request, and a newline in it would forge a log line. */
	if (!proto_purpose_valid(out)) {
		out[0] = '\0';
		return th_fail(TH_ERR_PROTOCOL, "bad purpose name");
	}
	return 0;
}

int
proto_req_decode(struct buf *body, struct proto_req *req)
{
	int r;

	memset(req, 0, sizeof(*req));
	if ((r = buf_get_u8(body, &req->type)) != 0)
		return th_fail(TH_ERR_PROTOCOL, "empty frame");
	switch (req->type) {
	case PROTO_HEALTH:
	case PROTO_EKCERT:
	case PROTO_AKPUBLIC:
		break;
	case PROTO_PUBKEY:
		if ((r = get_purpose(body, req->purpose)) != 0)
			return r;
		break;
	case PROTO_SIGN:
		if ((r = get_purpose(body, req->purpose)) != 0)
			return r;
		if ((r = buf_get_string_direct(body, &req->data,
		    &req->data_len, PROTO_PAYLOAD_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL, "bad payload field: %s",
			    th_strerror(r));
		break;
	case PROTO_QUOTE:
		if ((r = buf_get_string_direct(body, &req->data,
		    &req->data_len, PROTO_QUAL_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL,
			    "bad qualifying-data field: %s", th_strerror(r));
		break;
	case PROTO_ACTIVATE:
		if ((r = buf_get_string_direct(body, &req->data,
		    &req->data_len, PROTO_ACTIVATE_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL,
			    "bad credential-blob field: %s", th_strerror(r));
		if ((r = buf_get_string_direct(body, &req->data2,
		    &req->data2_len, PROTO_ACTIVATE_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL,
			    "bad encrypted-secret field: %s", th_strerror(r));
		break;
	case PROTO_AKCERT:
	case PROTO_KEYSCERT:
		if ((r = buf_get_string_direct(body, &req->data,
		    &req->data_len, PROTO_SUBJECT_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL, "bad subject field: %s",
			    th_strerror(r));
		if (!proto_subject_valid(req->data, req->data_len))
			return th_fail(TH_ERR_PROTOCOL, "bad subject: 1-%d of "
			    "[A-Za-z0-9:_.-]", PROTO_SUBJECT_MAX);
		break;
	default:
		return th_fail(TH_ERR_PROTOCOL, "unknown request type 0x%02x",
		    req->type);
	}
	if (buf_len(body) != 0)
		return th_fail(TH_ERR_PROTOCOL, "%zu trailing bytes in request",
		    buf_len(body));
	return 0;
}

int
proto_reply_error(struct buf *out, int code, const char *msg)
{
	size_t start = buf_len(out), n = strlen(msg);
	int r;

	if (code >= 0 || code < TH_ERR_MAX)
		code = TH_ERR_INTERNAL;
	if (n > PROTO_MSG_MAX)
		n = PROTO_MSG_MAX;
	if ((r = frame_begin(out, PROTO_ERROR)) != 0 ||
	    (r = buf_put_u32(out, (uint32_t)-code)) != 0 ||
	    (r = buf_put_string(out, msg, n)) != 0)
		return r;
	return frame_end(out, start);
}

int
proto_reply_blobs(struct buf *out, const char *alg,
    const uint8_t *const blob[], const size_t blob_len[], size_t nblob)
{
	size_t i, start = buf_len(out);
	int r;

	if ((r = frame_begin(out, PROTO_OK)) != 0)
		return r;
	if (alg != NULL && (r = buf_put_cstring(out, alg)) != 0)
		return r;
	for (i = 0; i < nblob; i++) {
		if (blob_len[i] > PROTO_BLOB_MAX)
			return th_fail(TH_ERR_TOO_LONG, "reply field too long");
		if ((r = buf_put_string(out, blob[i], blob_len[i])) != 0)
			return r;
	}
	return frame_end(out, start);
}

int
proto_reply_health(struct buf *out, const struct proto_health_item *items,
    size_t n)
{
	size_t i, start = buf_len(out);
	int r;

	if (n > PROTO_HEALTH_MAX)
		return th_fail(TH_ERR_TOO_LONG, "too many purposes");
	if ((r = frame_begin(out, PROTO_OK)) != 0 ||
	    (r = buf_put_u32(out, (uint32_t)n)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		if ((r = buf_put_cstring(out, items[i].purpose)) != 0 ||
		    (r = buf_put_cstring(out, items[i].backend)) != 0 ||
		    (r = buf_put_u32(out, (uint32_t)-items[i].status)) != 0 ||
		    (r = buf_put_cstring(out, items[i].detail)) != 0)
			return r;
	}
	return frame_end(out, start);
}

static int
get_code(struct buf *b, int *code)
{
	uint32_t c;
	int r;

	if ((r = buf_get_u32(b, &c)) != 0)
		return r;
	if (c > (uint32_t)-TH_ERR_MAX)
		return TH_ERR_PROTOCOL;
	*code = -(int)c;
	return 0;
}

static int
decode_health(struct buf *b, struct proto_reply *rep)
{
	struct proto_health_item *it;
	uint32_t n, i;
	int r;

	if ((r = buf_get_u32(b, &n)) != 0)
		return r;
	if (n > PROTO_HEALTH_MAX)
		return TH_ERR_TOO_LONG;
	for (i = 0; i < n; i++) {
		it = &rep->health[i];
		if ((r = buf_get_cstring(b, it->purpose,
		    sizeof(it->purpose))) != 0 ||
		    (r = buf_get_cstring(b, it->backend,
		    sizeof(it->backend))) != 0 ||
		    (r = get_code(b, &it->status)) != 0 ||
		    (r = buf_get_cstring(b, it->detail,
		    sizeof(it->detail))) != 0)
			return r;
	}
	rep->nhealth = n;
	return 0;
}

int
proto_reply_decode(struct buf *body, uint8_t req_type, struct proto_reply *rep)
{
	size_t i, nblob = 0;
	int r, has_alg = 0;

	memset(rep, 0, sizeof(*rep));
	if ((r = buf_get_u8(body, &rep->type)) != 0)
		return th_fail(TH_ERR_PROTOCOL, "empty reply");
	if (rep->type == PROTO_ERROR) {
		if ((r = get_code(body, &rep->code)) != 0 ||
		    (r = buf_get_cstring(body, rep->msg,
		    sizeof(rep->msg))) != 0)
			return th_fail(TH_ERR_PROTOCOL, "malformed error reply");
		if (rep->code == 0)
			return th_fail(TH_ERR_PROTOCOL, "error reply with code 0");
		goto done;
	}
	if (rep->type != PROTO_OK)
		return th_fail(TH_ERR_PROTOCOL, "unknown reply type 0x%02x",
		    rep->type);
	switch (req_type) {
	case PROTO_HEALTH:
		if ((r = decode_health(body, rep)) != 0)
			return th_fail(TH_ERR_PROTOCOL,
			    "malformed HEALTH reply");
		goto done;
	case PROTO_PUBKEY:	has_alg = 1; nblob = 1; break;
	case PROTO_SIGN:	has_alg = 1; nblob = 1; break;
	case PROTO_QUOTE:	nblob = 3; break;
	case PROTO_EKCERT:	nblob = 1; break;
	case PROTO_AKPUBLIC:	nblob = 2; break;
	case PROTO_ACTIVATE:	nblob = 1; break;
	case PROTO_AKCERT:	nblob = 1; break;
	case PROTO_KEYSCERT:	nblob = 1; break;
	default:
		return th_fail(TH_ERR_INVALID, "unknown request type");
	}
	if (has_alg && (r = buf_get_cstring(body, rep->alg,
	    sizeof(rep->alg))) != 0)
		return th_fail(TH_ERR_PROTOCOL, "malformed alg in reply");
	for (i = 0; i < nblob; i++)
		if ((r = buf_get_string_direct(body, &rep->blob[i],
		    &rep->blob_len[i], PROTO_BLOB_MAX)) != 0)
			return th_fail(TH_ERR_PROTOCOL,
			    "malformed field %zu in reply", i);
 done:
	if (buf_len(body) != 0)
		return th_fail(TH_ERR_PROTOCOL, "%zu trailing bytes in reply",
		    buf_len(body));
	return 0;
}

static int
read_full(int fd, uint8_t *p, size_t len)
{
	ssize_t n;
	size_t off = 0;

	while (off < len) {
		n = read(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return th_fail(TH_ERR_IO, "read: %s", strerror(errno));
		if (n == 0)
			return th_fail(TH_ERR_IO, off == 0 && p != NULL ?
			    "connection closed" : "connection closed mid-frame");
		off += (size_t)n;
	}
	return 0;
}

int
proto_read_frame(int fd, struct buf *body)
{
	uint8_t first[4096], *p;
	uint32_t n;
	ssize_t got;
	size_t have;
	int r;

	buf_reset(body);
	/* One read usually brings the whole (small) frame.  A peer never has
	 * a second frame in flight, so anything past this frame is an error,
	 * never data to keep for later. */
	do
		got = recv(fd, first, sizeof(first), 0);
	while (got < 0 && errno == EINTR);
	if (got < 0)
		return th_fail(TH_ERR_IO, "read: %s", strerror(errno));
	if (got == 0)
		return th_fail(TH_ERR_IO, "connection closed");
	have = (size_t)got;
	if (have < 4 && (r = read_full(fd, first + have, 4 - have)) != 0)
		return r;
	if (have < 4)
		have = 4;
	n = (uint32_t)first[0] << 24 | (uint32_t)first[1] << 16 |
	    (uint32_t)first[2] << 8 | first[3];
	if (n == 0 || n > PROTO_FRAME_MAX)
		return th_fail(TH_ERR_PROTOCOL, "frame length %u out of range",
		    n);
	if (have - 4 > n)
		return th_fail(TH_ERR_PROTOCOL, "data after the frame");
	if ((r = buf_reserve(body, n, &p)) != 0)
		return r;
	memcpy(p, first + 4, have - 4);
	return read_full(fd, p + (have - 4), n - (have - 4));
}

int
proto_write_all(int fd, const uint8_t *p, size_t len)
{
	ssize_t n;
	size_t off = 0;

	while (off < len) {
		n = send(fd, p + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return th_fail(TH_ERR_IO, "write: %s", strerror(errno));
		off += (size_t)n;
	}
	return 0;
}

int
proto_subject_valid(const uint8_t *p, size_t len)
{
	size_t i;

	if (len == 0 || len > PROTO_SUBJECT_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= 'A' && p[i] <= 'Z') ||
		    (p[i] >= '0' && p[i] <= '9') || p[i] == ':' ||
		    p[i] == '_' || p[i] == '.' || p[i] == '-'))
			return 0;
	return 1;
}
