#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "err.h"
#include "sigclient.h"

/* How long this connection's recent replies to one kind of request took
 * (type and purpose): a SoftHSM signature and a TPM quote differ 30-fold. */
struct sigc_pace {
	uint8_t		 type;
	char		 purpose[PROTO_PURPOSE_MAX + 1];
	uint32_t	 avg_us;	/* moving average, 0 until measured */
};

struct sigc {
	char		 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		 fd;
	struct buf	*req;
	struct buf	*rep;
	struct sigc_pace pace[SIGC_PACES];
	int		 npace;
};

/* Whoever answers at the path must be trusted with it: root, this
 * process's user, or the owner of the socket's directory (who controls
 * what is bound there anyway).  Another user's socket there means the
 * directory is writable by others, and its answers (public keys above all)
 * would be believed. */
static int
sigc_check_peer(const struct sigc *c, int fd)
{
	char dir[sizeof(c->path)], *slash;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct stat st;

	memcpy(dir, c->path, sizeof(dir));
	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
	    stat(dir, &st) != 0)
		return th_fail(TH_ERR_UNAVAILABLE, "cannot check who serves "
		    "the signer socket %s: %s", c->path, strerror(errno));
	if (cred.uid != 0 && cred.uid != geteuid() && cred.uid != st.st_uid)
		return th_fail(TH_ERR_UNAVAILABLE, "the signer socket %s is "
		    "served by uid %u, neither root, this user nor the owner "
		    "of %s (uid %u): refused; keep the socket in a directory "
		    "only the signer's user can write", c->path,
		    (unsigned)cred.uid, dir, (unsigned)st.st_uid);
	return 0;
}

static int
sigc_open_socket(struct sigc *c)
{
	struct timeval timeout = { .tv_sec = SIGC_TIMEOUT_S };
	struct sockaddr_un sun;
	int fd, r;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, c->path, sizeof(sun.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return th_fail(TH_ERR_IO, "socket: %s", strerror(errno));
	/* A wedged TPM must not wedge the caller: give up after a while. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout,
	    sizeof(timeout)) != 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO,
	    &timeout, sizeof(timeout)) != 0) {
		close(fd);
		return th_fail(TH_ERR_IO, "setsockopt: %s", strerror(errno));
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		close(fd);
		return th_fail(TH_ERR_UNAVAILABLE,
		    "cannot reach the signer at %s: %s", c->path,
		    strerror(errno));
	}
	if ((r = sigc_check_peer(c, fd)) != 0) {
		close(fd);
		return r;
	}
	c->fd = fd;
	return 0;
}

int
sigc_connect(const char *path, struct sigc **out)
{
	struct sigc *c = NULL;
	int r = TH_ERR_ALLOC;

	*out = NULL;
	if (strlen(path) >= sizeof(c->path))
		return th_fail(TH_ERR_CONFIG, "signer socket path too long");
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->req = buf_new()) == NULL || (c->rep = buf_new()) == NULL)
		goto out;
	c->fd = -1;
	strncpy(c->path, path, sizeof(c->path) - 1);
	if ((r = sigc_open_socket(c)) != 0)
		goto out;
	*out = c;
	c = NULL;
 out:
	sigc_close(c);
	return r;
}

void
sigc_close(struct sigc *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	buf_free(c->req);
	buf_free(c->rep);
	free(c);
}

/* Threads of this process waiting for the signer's reply right now. */
static atomic_int waiting;

static uint64_t
elapsed_us(const struct timespec *t0, const struct timespec *t1)
{
	return (uint64_t)((t1->tv_sec - t0->tv_sec) * 1000000 +
	    (t1->tv_nsec - t0->tv_nsec) / 1000);
}

/* Blocking in read() at once means the signer's reply must wake us, which
 * on a VM costs an inter-processor interrupt, paid by the signer in its
 * send() (~15 us of its time per reply, measured: the signer is the
 * bottleneck, so every client pays it), and more in this thread's wake-up:
 * with a 100 us bound, below a SoftHSM signature at a slow moment of a VM
 * (76-200 us), the socket added 95-155% to a raw signature; with 600 us,
 * 10-52% (bench_sign compare, alternated).  So the caller polls without
 * sleeping for a bounded while first, keeping the exchange on busy cores:
 * at most SIGC_SPIN_US of CPU per call, then an ordinary blocking read; and
 * only for requests whose recent replies came within that bound (a TPM
 * signature takes ~1 ms: spinning through it would take the CPU swtpm
 * needs and still end in a sleep).  Only while at most SIGC_SPINNERS
 * threads of this process wait on the signer: it serves one request at a
 * time, so the first waiter is being served and the second is next; later
 * waiters are two signatures or more away and would only take the cores the
 * signer and the working threads need (measured: 4 spinning threads on 2
 * cores push p99 from 0.5 to 4 ms). */
static void
sigc_spin(int fd)
{
	struct timespec t0, t;
	uint8_t c;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; atomic_load(&waiting) <= SIGC_SPINNERS; i++) {
		if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) != -1 ||
		    errno != EAGAIN)
			return;
		if (i % 8 != 7)
			continue;
		/* The signer may have been woken on this CPU (a Unix socket
		 * wakes its reader on the writer's): let it run. */
		sched_yield();
		if (i % 16 != 15)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (elapsed_us(&t0, &t) > SIGC_SPIN_US)
			return;
	}
}

/* The pace entry of req's kind; the oldest entry is reused when full. */
static struct sigc_pace *
sigc_pace_of(struct sigc *c, const struct proto_req *req)
{
	struct sigc_pace *p;
	int i;

	for (i = 0; i < c->npace; i++) {
		p = &c->pace[i];
		if (p->type == req->type && strcmp(p->purpose, req->purpose) == 0)
			return p;
	}
	if (c->npace < SIGC_PACES)
		p = &c->pace[c->npace++];
	else {
		memmove(&c->pace[0], &c->pace[1],
		    (SIGC_PACES - 1) * sizeof(c->pace[0]));
		p = &c->pace[SIGC_PACES - 1];
	}
	memset(p, 0, sizeof(*p));
	p->type = req->type;
	memcpy(p->purpose, req->purpose, sizeof(p->purpose));
	return p;
}

/* A reply delayed by the scheduler moves the average by at most an eighth
 * of 4 * SIGC_SPIN_US: spinning resumes within a few calls. */
static void
sigc_pace_update(struct sigc_pace *p, uint64_t us)
{
	if (us > 4 * SIGC_SPIN_US)
		us = 4 * SIGC_SPIN_US;
	p->avg_us = p->avg_us == 0 ? (uint32_t)us :
	    (uint32_t)((7 * (uint64_t)p->avg_us + us) / 8);
}

/* One request/reply exchange; on a broken connection reconnects and tries
 * once more.  On success rep's blobs point into c->rep. */
static int
sigc_call(struct sigc *c, const struct proto_req *req, struct proto_reply *rep)
{
	struct sigc_pace *pace = sigc_pace_of(c, req);
	struct timespec t0, t1;
	int r, attempt;

	buf_reset(c->req);
	if ((r = proto_req_encode(c->req, req)) != 0)
		return r;
	for (attempt = 0; attempt < 2; attempt++) {
		if (c->fd < 0 && (r = sigc_open_socket(c)) != 0)
			return r;
		/* Read even when the write failed: a signer that refuses a
		 * peer sends its reason and closes before reading. */
		atomic_fetch_add(&waiting, 1);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		(void)proto_write_all(c->fd, buf_ptr(c->req), buf_len(c->req));
		if (pace->avg_us <= SIGC_SPIN_US)
			sigc_spin(c->fd);
		r = proto_read_frame(c->fd, c->rep);
		atomic_fetch_sub(&waiting, 1);
		if (r == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t1);
			sigc_pace_update(pace, elapsed_us(&t0, &t1));
			break;
		}
		close(c->fd);
		c->fd = -1;
		if (r != TH_ERR_IO)
			return r;
	}
	if (r != 0)
		return th_fail(TH_ERR_UNAVAILABLE, "signer connection failed: %s",
		    th_errmsg(r));
	if ((r = proto_reply_decode(c->rep, req->type, rep)) != 0)
		return r;
	if (rep->type == PROTO_ERROR)
		return th_fail(rep->code, "signer: %s: %s",
		    th_strerror(rep->code), rep->msg);
	return 0;
}

int
sigc_health(struct sigc *c, struct proto_reply *rep)
{
	struct proto_req req = { .type = PROTO_HEALTH };

	return sigc_call(c, &req, rep);
}

static int
sigc_purpose(struct proto_req *req, const char *purpose)
{
	if (strlen(purpose) >= sizeof(req->purpose) ||
	    !proto_purpose_valid(purpose))
		return th_fail(TH_ERR_INVALID, "bad purpose name \"%s\"",
		    purpose);
	strcpy(req->purpose, purpose);
	return 0;
}

int
sigc_pubkey(struct sigc *c, const char *purpose, enum th_alg *alg,
    EVP_PKEY **pkey)
{
	struct proto_req req = { .type = PROTO_PUBKEY };
	struct proto_reply rep;
	const uint8_t *p;
	int r;

	*pkey = NULL;
	if ((r = sigc_purpose(&req, purpose)) != 0 ||
	    (r = sigc_call(c, &req, &rep)) != 0)
		return r;
	if ((*alg = th_alg_from_name(rep.alg)) == TH_ALG_NONE)
		return th_fail(TH_ERR_PROTOCOL, "signer sent unknown alg");
	p = rep.blob[0];
	if ((*pkey = d2i_PUBKEY(NULL, &p, (long)rep.blob_len[0])) == NULL ||
	    p != rep.blob[0] + rep.blob_len[0]) {
		EVP_PKEY_free(*pkey);
		*pkey = NULL;
		return th_fail(TH_ERR_PROTOCOL, "signer sent a bad public key");
	}
	return 0;
}

int
sigc_sign(struct sigc *c, const char *purpose, const uint8_t *payload,
    size_t len, enum th_alg *alg, uint8_t *sig, size_t *siglen)
{
	struct proto_req req = { .type = PROTO_SIGN };
	struct proto_reply rep;
	int r;

	req.data = payload;
	req.data_len = len;
	if ((r = sigc_purpose(&req, purpose)) != 0 ||
	    (r = sigc_call(c, &req, &rep)) != 0)
		return r;
	if ((*alg = th_alg_from_name(rep.alg)) == TH_ALG_NONE ||
	    rep.blob_len[0] > TH_SIG_MAX || rep.blob_len[0] == 0)
		return th_fail(TH_ERR_PROTOCOL, "signer sent a bad signature");
	memcpy(sig, rep.blob[0], rep.blob_len[0]);
	*siglen = rep.blob_len[0];
	return 0;
}

int
sigc_quote(struct sigc *c, const uint8_t *qual, size_t qual_len,
    struct buf *attest, struct buf *sig, struct buf *pcrs)
{
	struct proto_req req = { .type = PROTO_QUOTE };
	struct proto_reply rep;
	int r;

	req.data = qual;
	req.data_len = qual_len;
	if ((r = sigc_call(c, &req, &rep)) != 0)
		return r;
	if ((r = buf_put(attest, rep.blob[0], rep.blob_len[0])) != 0 ||
	    (r = buf_put(sig, rep.blob[1], rep.blob_len[1])) != 0 ||
	    (r = buf_put(pcrs, rep.blob[2], rep.blob_len[2])) != 0)
		return r;
	return 0;
}

int
sigc_ekcert(struct sigc *c, struct buf *der)
{
	struct proto_req req = { .type = PROTO_EKCERT };
	struct proto_reply rep;
	int r;

	if ((r = sigc_call(c, &req, &rep)) != 0)
		return r;
	return buf_put(der, rep.blob[0], rep.blob_len[0]);
}

int
sigc_ak_public(struct sigc *c, struct buf *tpmt_public, struct buf *name)
{
	struct proto_req req = { .type = PROTO_AKPUBLIC };
	struct proto_reply rep;
	int r;

	if ((r = sigc_call(c, &req, &rep)) != 0)
		return r;
	if (rep.blob_len[0] == 0 || rep.blob_len[1] == 0)
		return th_fail(TH_ERR_PROTOCOL, "signer sent an empty AK "
		    "public area or name");
	if ((r = buf_put(tpmt_public, rep.blob[0], rep.blob_len[0])) != 0 ||
	    (r = buf_put(name, rep.blob[1], rep.blob_len[1])) != 0)
		return r;
	return 0;
}

int
sigc_activate(struct sigc *c, const uint8_t *credential_blob,
    size_t blob_len, const uint8_t *secret, size_t secret_len,
    struct buf *cert_info)
{
	struct proto_req req = { .type = PROTO_ACTIVATE };
	struct proto_reply rep;
	int r;

	req.data = credential_blob;
	req.data_len = blob_len;
	req.data2 = secret;
	req.data2_len = secret_len;
	if ((r = sigc_call(c, &req, &rep)) != 0)
		return r;
	r = buf_put(cert_info, rep.blob[0], rep.blob_len[0]);
	/* The reply buffer held the credential: do not keep it around. */
	buf_reset(c->rep);
	return r;
}

/* A request naming a subject whose reply is one token (AKCERT,
 * KEYSCERT). */
static int
subject_call(struct sigc *c, uint8_t type, const char *subject,
    struct buf *token)
{
	struct proto_req req = { .type = type };
	struct proto_reply rep;
	int r;

	req.data = (const uint8_t *)subject;
	req.data_len = strlen(subject);
	if ((r = sigc_call(c, &req, &rep)) != 0)
		return r;
	if (rep.blob_len[0] == 0)
		return th_fail(TH_ERR_PROTOCOL, "signer sent an empty %s",
		    type == PROTO_AKCERT ? "AK certificate" : "keys statement");
	return buf_put(token, rep.blob[0], rep.blob_len[0]);
}

int
sigc_akcert(struct sigc *c, const char *subject, struct buf *token)
{
	return subject_call(c, PROTO_AKCERT, subject, token);
}

int
sigc_keyscert(struct sigc *c, const char *subject, struct buf *token)
{
	return subject_call(c, PROTO_KEYSCERT, subject, token);
}
