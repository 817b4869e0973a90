/* The signer protocol: frames exchanged on threshold-signer's Unix socket.
 * Specified in docs/signer-protocol.md; this is the one implementation of its
 * encoding, used by both the signer and its clients.
 *
 * frame   = u32 length || body		(length counts body; 1..PROTO_FRAME_MAX)
 * body    = u8 type || fields		(no trailing bytes allowed)
 * string  = u32 length || bytes */
#ifndef TH_PROTO_H
#define TH_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define PROTO_FRAME_MAX		(64 * 1024)
#define PROTO_PURPOSE_MAX	32	/* [a-z0-9-], at least one */
#define PROTO_PAYLOAD_MAX	(16 * 1024)
#define PROTO_QUAL_MAX		64
#define PROTO_MSG_MAX		512	/* error message */
#define PROTO_ALG_MAX		8
#define PROTO_BLOB_MAX		(16 * 1024)	/* key, signature, quote, cert */
#define PROTO_HEALTH_MAX	8	/* purposes in a HEALTH reply */
#define PROTO_ACTIVATE_MAX	1024	/* each ACTIVATE field */
#define PROTO_SUBJECT_MAX	128	/* AKCERT, KEYSCERT subject */

/* Requests. */
#define PROTO_HEALTH	0x01	/* no fields */
#define PROTO_PUBKEY	0x02	/* string purpose */
#define PROTO_SIGN	0x03	/* string purpose, string payload */
#define PROTO_QUOTE	0x04	/* string qualifying-data */
#define PROTO_EKCERT	0x05	/* no fields */
#define PROTO_AKPUBLIC	0x06	/* no fields */
#define PROTO_ACTIVATE	0x07	/* string credential-blob,
				 * string encrypted-secret */
#define PROTO_AKCERT	0x08	/* string subject */
#define PROTO_KEYSCERT	0x09	/* string subject */
/* Replies. */
#define PROTO_OK	0x80	/* fields depend on the request */
#define PROTO_ERROR	0x81	/* u32 code (positive), string message */

struct proto_req {
	uint8_t		 type;
	char		 purpose[PROTO_PURPOSE_MAX + 1];	/* PUBKEY, SIGN */
	const uint8_t	*data;		/* SIGN payload, QUOTE qualifying
					 * data, ACTIVATE credential blob,
					 * AKCERT, KEYSCERT subject */
	size_t		 data_len;
	const uint8_t	*data2;		/* ACTIVATE encrypted secret */
	size_t		 data2_len;
};

struct proto_health_item {
	char		purpose[PROTO_PURPOSE_MAX + 1];
	char		backend[16];		/* "tpm" or "pkcs11" */
	int		status;			/* 0 or TH_ERR_* */
	char		detail[PROTO_MSG_MAX + 1];
};

/* A decoded reply.  Blob pointers point into the frame buffer given to
 * proto_reply_decode and stay valid while it is unmodified. */
struct proto_reply {
	uint8_t		 type;			/* PROTO_OK or PROTO_ERROR */
	int		 code;			/* ERROR: negative TH_ERR_* */
	char		 msg[PROTO_MSG_MAX + 1];	/* ERROR */
	char		 alg[PROTO_ALG_MAX + 1];	/* PUBKEY, SIGN */
	const uint8_t	*blob[3];	/* PUBKEY: spki; SIGN: sig;
					 * QUOTE: attest, sig, pcrs; EKCERT: der;
					 * AKPUBLIC: tpmt_public, name;
					 * ACTIVATE: cert_info;
					 * AKCERT, KEYSCERT: token */
	size_t		 blob_len[3];
	size_t		 nhealth;
	struct proto_health_item health[PROTO_HEALTH_MAX];
};

/* Appends a complete frame (length included) for req to out. */
int	proto_req_encode(struct buf *out, const struct proto_req *req);
/* Decodes a frame body (as returned by proto_read_frame).  Every field is
 * bounded; unknown types, bad purpose names and trailing bytes are
 * TH_ERR_PROTOCOL. */
int	proto_req_decode(struct buf *body, struct proto_req *req);

/* Reply encoders append a complete frame to out. */
int	proto_reply_error(struct buf *out, int code, const char *msg);
int	proto_reply_blobs(struct buf *out, const char *alg,
	    const uint8_t *const blob[], const size_t blob_len[], size_t nblob);
int	proto_reply_health(struct buf *out,
	    const struct proto_health_item *items, size_t n);
/* Decodes a reply body to request type req_type (the layout of an OK reply
 * depends on it). */
int	proto_reply_decode(struct buf *body, uint8_t req_type,
	    struct proto_reply *rep);

/* Reads one frame from fd (blocking) into body (reset first): the length is
 * checked against PROTO_FRAME_MAX before anything is allocated.  TH_ERR_IO
 * with a detail on EOF or error. */
int	proto_read_frame(int fd, struct buf *body);
/* Writes all of buf to fd. */
int	proto_write_all(int fd, const uint8_t *p, size_t len);

/* True if s is a well-formed purpose name. */
int	proto_purpose_valid(const char *s);
/* True if p[len] is an AKCERT subject: 1-PROTO_SUBJECT_MAX bytes of
 * [A-Za-z0-9:_.-] (an audit log's instance name). */
int	proto_subject_valid(const uint8_t *p, size_t len);

#endif
