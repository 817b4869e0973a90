#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "akcert.h"
#include "jws.h"
#include "keyscert.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "sha.h"
#include "usock.h"

/* Who sent a request: what serving it needs to know of the connection. */
struct peer {
	int		 fd;
	uid_t		 uid;
	uint32_t	 purposes;	/* allow-uid's, a bit per purpose */
	pid_t		 pid;
};

struct client {
	struct peer	 peer;
	struct buf	*in;
	struct buf	*out;		/* a reply not yet taken by the peer */
	int		 busy;		/* a request is with the TPM lane */
};

/* Requests for the TPM are served by a thread of their own, the TPM lane:
 * a TPM takes ~0.5 ms to sign, a hardware one 100 ms or more to quote, and
 * one that stopped answering would otherwise hold up every PKCS#11
 * signature behind it.  Everything else is served inline by the main
 * thread.  A client has at most one request in flight (it is not read from
 * while busy), so the lane's queue never holds more than one per client. */
struct lane_job {
	struct peer	 peer;
	struct buf	*body;
	struct proto_req req;		/* decoded from body, points into it */
};

struct lane {
	struct server	*s;
	pthread_t	 th;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	struct lane_job	 q[SERVER_CLIENTS_MAX];
	size_t		 head, n;
	int		 stop;
	struct buf	*reply;
	int		 done_w;	/* completions to the main thread */
};

/* What the lane writes to its pipe when it has served a request: the
 * reply, which the main thread sends (a peer that does not read must not
 * hold up the lane), and whether the client must be dropped. */
struct lane_done {
	int		 fd;
	int		 drop;
	struct buf	*reply;		/* the main thread's now */
};

struct server {
	const struct config	*cfg;
	struct keys		*keys;
	int			 listen_fd;
	struct client		 clients[SERVER_CLIENTS_MAX];
	size_t			 nclients;
	struct buf		*reply;
	struct lane		*tpm;		/* NULL: no TPM configured */
	int			 done_r;
	size_t			 nuids;		/* distinct allowed uids */
	size_t			 uid_share;	/* connections each may hold */
};

typedef int (*handler_fn)(struct server *, const struct proto_req *,
    struct buf *);

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

static int
handle_health(struct server *s, const struct proto_req *req, struct buf *out)
{
	struct proto_health_item items[PROTO_HEALTH_MAX];
	size_t n;
	int r;

	(void)req;
	if ((r = keys_health(s->keys, items, &n)) != 0)
		return r;
	return proto_reply_health(out, items, n);
}

static int
request_purpose(const struct proto_req *req)
{
	int p;

	if ((p = purpose_from_name(req->purpose)) < 0)
		return th_fail(TH_ERR_NOT_FOUND, "unknown purpose \"%s\"",
		    req->purpose);
	return p;
}

/* An OK reply of one blob, b. */
static int
reply_one(struct buf *out, const struct buf *b)
{
	const uint8_t *blob[1] = { buf_ptr(b) };
	size_t len[1] = { buf_len(b) };

	return proto_reply_blobs(out, NULL, blob, len, 1);
}

static int
handle_pubkey(struct server *s, const struct proto_req *req, struct buf *out)
{
	const uint8_t *blob[1];
	size_t len[1];
	struct buf *spki = NULL;
	enum th_alg alg;
	int p, r;

	if ((p = request_purpose(req)) < 0)
		return p;
	if ((spki = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = keys_pubkey(s->keys, p, &alg, spki)) != 0)
		goto out;
	blob[0] = buf_ptr(spki);
	len[0] = buf_len(spki);
	r = proto_reply_blobs(out, th_alg_name(alg), blob, len, 1);
 out:
	buf_free(spki);
	return r;
}

static int
handle_sign(struct server *s, const struct proto_req *req, struct buf *out)
{
	uint8_t digest[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	const uint8_t *blob[1];
	size_t len[1], siglen;
	enum th_alg alg;
	int p, r;

	if ((p = request_purpose(req)) < 0)
		return p;
	if (p == PURPOSE_ATTESTATION)
		return th_fail(TH_ERR_DENIED,
		    "the attestation key signs only through QUOTE");
	if ((r = keys_alg(s->keys, p, &alg)) != 0 ||
	    (r = check_sign_payload(s->cfg, p, alg, req->data, req->data_len,
	    time(NULL))) != 0)
		return r;
	sha256(req->data, req->data_len, digest);
	if ((r = keys_sign(s->keys, p, digest, sig, &siglen)) != 0)
		return r;
	/* In the one form verifiers take (jws.c refuses a high s): a client
	 * appends it to the payload as it is. */
	if (alg == TH_ALG_ES256 && siglen == 64 &&
	    (r = jws_es256_low_s(sig)) != 0)
		return r;
	blob[0] = sig;
	len[0] = siglen;
	return proto_reply_blobs(out, th_alg_name(alg), blob, len, 1);
}

static int
need_attestation_key(const struct server *s)
{
	if (s->cfg->keys[PURPOSE_ATTESTATION].backend == BACKEND_NONE)
		return th_fail(TH_ERR_NOT_FOUND, "no attestation key is "
		    "configured");
	return 0;
}

static int
handle_quote(struct server *s, const struct proto_req *req, struct buf *out)
{
	struct buf *attest = NULL, *sig = NULL, *pcrs = NULL;
	const uint8_t *blob[3];
	size_t len[3];
	int r;

	if ((r = need_attestation_key(s)) != 0)
		return r;
	r = TH_ERR_ALLOC;
	if ((attest = buf_new()) == NULL || (sig = buf_new()) == NULL ||
	    (pcrs = buf_new()) == NULL)
		goto out;
	if ((r = keys_quote(s->keys, req->data, req->data_len, attest, sig,
	    pcrs)) != 0)
		goto out;
	blob[0] = buf_ptr(attest);
	len[0] = buf_len(attest);
	blob[1] = buf_ptr(sig);
	len[1] = buf_len(sig);
	blob[2] = buf_ptr(pcrs);
	len[2] = buf_len(pcrs);
	r = proto_reply_blobs(out, NULL, blob, len, 3);
 out:
	buf_free(attest);
	buf_free(sig);
	buf_free(pcrs);
	return r;
}

static int
handle_ekcert(struct server *s, const struct proto_req *req, struct buf *out)
{
	struct buf *der;
	int r;

	(void)req;
	if ((der = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = keys_ekcert(s->keys, der)) == 0)
		r = reply_one(out, der);
	buf_free(der);
	return r;
}

static int
handle_akpublic(struct server *s, const struct proto_req *req,
    struct buf *out)
{
	struct buf *pub = NULL, *name = NULL;
	const uint8_t *blob[2];
	size_t len[2];
	int r;

	(void)req;
	if ((r = need_attestation_key(s)) != 0)
		return r;
	r = TH_ERR_ALLOC;
	if ((pub = buf_new()) == NULL || (name = buf_new()) == NULL)
		goto out;
	if ((r = keys_ak_public(s->keys, pub, name)) != 0)
		goto out;
	blob[0] = buf_ptr(pub);
	len[0] = buf_len(pub);
	blob[1] = buf_ptr(name);
	len[1] = buf_len(name);
	r = proto_reply_blobs(out, NULL, blob, len, 2);
 out:
	buf_free(pub);
	buf_free(name);
	return r;
}

/* The recovered credential goes back to the peer that sent the challenge
 * and nowhere else (never to the log); its buffer is wiped on free. */
static int
handle_activate(struct server *s, const struct proto_req *req,
    struct buf *out)
{
	struct buf *info;
	int r;

	if ((r = need_attestation_key(s)) != 0)
		return r;
	if ((info = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = keys_activate(s->keys, req->data, req->data_len, req->data2,
	    req->data2_len, info)) == 0)
		r = reply_one(out, info);
	buf_free(info);
	return r;
}

/* The root's statement of this signer's capability, attenuation and
 * checkpoint keys: nothing in it comes from the peer but the subject. */
static int
handle_keyscert(struct server *s, const struct proto_req *req,
    struct buf *out)
{
	struct buf *tok;
	int r;

	if (s->cfg->keys[PURPOSE_DELEGATION_ROOT].backend == BACKEND_NONE)
		return th_fail(TH_ERR_NOT_FOUND, "no delegation-root key is "
		    "configured");
	if ((tok = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = keyscert_make(s->cfg, s->keys, req->data, req->data_len,
	    tok)) == 0)
		r = reply_one(out, tok);
	buf_free(tok);
	return r;
}

/* The root's statement about this signer's own AK and EK certificate:
 * nothing in it comes from the peer but the subject it names. */
static int
handle_akcert(struct server *s, const struct proto_req *req,
    struct buf *out)
{
	struct buf *tok;
	int r;

	if ((r = need_attestation_key(s)) != 0)
		return r;
	if (s->cfg->keys[PURPOSE_DELEGATION_ROOT].backend == BACKEND_NONE)
		return th_fail(TH_ERR_NOT_FOUND, "no delegation-root key is "
		    "configured");
	if ((tok = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = akcert_make(s->keys, req->data, req->data_len, tok)) == 0)
		r = reply_one(out, tok);
	buf_free(tok);
	return r;
}

/* The request types the signer serves; anything else is refused and the
 * connection dropped. */
static const struct {
	uint8_t		 type;
	const char	*name;
	handler_fn	 fn;
} handlers[] = {
	{ PROTO_HEALTH,	"HEALTH",	handle_health },
	{ PROTO_PUBKEY,	"PUBKEY",	handle_pubkey },
	{ PROTO_SIGN,	"SIGN",		handle_sign },
	{ PROTO_QUOTE,	"QUOTE",	handle_quote },
	{ PROTO_EKCERT,	"EKCERT",	handle_ekcert },
	{ PROTO_AKPUBLIC, "AKPUBLIC",	handle_akpublic },
	{ PROTO_ACTIVATE, "ACTIVATE",	handle_activate },
	{ PROTO_AKCERT,	"AKCERT",	handle_akcert },
	{ PROTO_KEYSCERT, "KEYSCERT",	handle_keyscert },
};

/* Sends what the socket takes now of p[len], never waiting: a peer that
 * does not read its replies must not hold up the thread serving everyone.
 * Returns the bytes sent, or -1 if the connection failed. */
static ssize_t
send_some(int fd, const uint8_t *p, size_t len)
{
	ssize_t n;
	size_t off = 0;

	while (off < len) {
		n = send(fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n >= 0)
			off += (size_t)n;
		else if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		else if (errno != EINTR)
			return -1;
	}
	return (ssize_t)off;
}

/* A reply: sent as far as the socket takes it now, the rest kept in the
 * client's out, sent as the peer reads (POLLOUT).  Until then nothing more
 * of the client is served.  Returns non-zero if the client must go. */
static int
client_reply(struct client *c, const struct buf *reply)
{
	ssize_t n = 0;

	if (buf_len(c->out) == 0 && (n = send_some(c->peer.fd,
	    buf_ptr(reply), buf_len(reply))) < 0)
		return -1;
	if ((size_t)n < buf_len(reply))
		return buf_put(c->out, buf_ptr(reply) + n,
		    buf_len(reply) - (size_t)n) != 0;
	return 0;
}

/* The peer can take more of its pending reply. */
static int
client_flush(struct client *c)
{
	ssize_t n;

	if ((n = send_some(c->peer.fd, buf_ptr(c->out), buf_len(c->out))) < 0)
		return -1;
	(void)buf_consume(c->out, (size_t)n);
	if (buf_len(c->out) == 0)
		buf_reset(c->out);	/* wiped: an ACTIVATE reply is secret */
	return 0;
}

static void
client_drop(struct server *s, size_t i)
{
	close(s->clients[i].peer.fd);
	buf_free(s->clients[i].in);
	buf_free(s->clients[i].out);
	s->clients[i] = s->clients[--s->nclients];
}

/* The key a request uses, if any: SIGN names it, QUOTE and the
 * activation requests use the attestation key, KEYSCERT stands for the
 * capability key; -1 for requests that use no private key (HEALTH,
 * PUBKEY, EKCERT). */
static int
key_used(const struct proto_req *req)
{
	switch (req->type) {
	case PROTO_SIGN:
		return purpose_from_name(req->purpose);
	case PROTO_QUOTE:
	case PROTO_AKPUBLIC:
	case PROTO_ACTIVATE:
	case PROTO_AKCERT:
		return PURPOSE_ATTESTATION;
	case PROTO_KEYSCERT:	/* the broker's statement, for its audit log */
		return PURPOSE_CAPABILITY;
	default:
		return -1;
	}
}

/* Serves a request decoded from a frame (decoded: proto_req_decode's
 * result, whose message is this thread's), its reply built in reply and,
 * on the main thread (client set), sent; returns non-zero if the
 * connection must be dropped (protocol violation or reply failure).  Runs
 * on the main thread or the TPM lane (client NULL): s is only read. */
static int
serve_request(struct server *s, const struct peer *c, struct client *client,
    const struct proto_req *req, int decoded, struct buf *reply)
{
	const char *name = "?";
	char why[512];		/* th_errmsg's bound */
	size_t i;
	int r, p, fatal = 0;

	buf_reset(reply);
	if ((r = decoded) != 0) {
		fatal = 1;
		goto reply;
	}
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].type == req->type)
			break;
	if (i == sizeof(handlers) / sizeof(handlers[0])) {
		r = th_fail(TH_ERR_PROTOCOL, "request type 0x%02x not served",
		    req->type);
		fatal = 1;
		goto reply;
	}
	name = handlers[i].name;
	/* allow-uid may confine a peer to some keys (the broker, say, to
	 * everything but the delegation root). */
	p = key_used(req);
	if (p >= 0 && (c->purposes & (1u << p)) == 0) {
		r = th_fail(TH_ERR_DENIED, "uid %u may not use the %s key "
		    "(allow-uid)", (unsigned)c->uid, purpose_name(p));
		goto reply;
	}
	r = handlers[i].fn(s, req, reply);
 reply:
	if (r != 0) {
		snprintf(why, sizeof(why), "%s", th_errmsg(r));
		buf_reset(reply);
		if (proto_reply_error(reply, r, why) != 0) {
			buf_reset(reply);
			fatal = 1;
		}
	}
	/* The main thread sends its replies here; the lane's go to the main
	 * thread with the reply buffer. */
	if (client != NULL && buf_len(reply) > 0 &&
	    client_reply(client, reply) != 0)
		fatal = 1;
	/* Logged once the reply is on its way: the line's write(2) need not
	 * delay the peer, and nothing more is served before it is written. */
	if (r == 0)
		log_info("uid %u pid %d: %s %s: ok", (unsigned)c->uid,
		    (int)c->pid, name, req->purpose);
	else
		log_warn("uid %u pid %d: %s %s: refused: %s", (unsigned)c->uid,
		    (int)c->pid, name, req->purpose, why);
	return fatal ? -1 : 0;
}

/* The lane a decoded request goes to: the TPM lane if it uses the TPM,
 * NULL to be served inline. */
static struct lane *
lane_for(struct server *s, const struct proto_req *req)
{
	int p;

	if (s->tpm == NULL)
		return NULL;
	switch (req->type) {
	case PROTO_SIGN:
	case PROTO_PUBKEY:
		p = purpose_from_name(req->purpose);
		return p >= 0 && s->cfg->keys[p].backend == BACKEND_TPM ?
		    s->tpm : NULL;
	case PROTO_HEALTH:	/* asks every key, the TPM's too */
	case PROTO_QUOTE:
	case PROTO_EKCERT:
	case PROTO_AKPUBLIC:
	case PROTO_ACTIVATE:
	case PROTO_AKCERT:
	case PROTO_KEYSCERT:	/* may read a TPM key's public part */
		return s->tpm;
	default:
		return NULL;
	}
}

static void
lane_submit(struct lane *l, const struct peer *peer, struct buf *body,
    const struct proto_req *req)
{
	pthread_mutex_lock(&l->mu);
	l->q[(l->head + l->n++) % SERVER_CLIENTS_MAX] =
	    (struct lane_job){ *peer, body, *req };
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* Serves the complete frames buffered from c, up to one handed to a lane.
 * Returns non-zero if the client must be dropped. */
static int
client_frames(struct server *s, struct client *c)
{
	const uint8_t *p;
	struct buf *body = NULL;
	struct proto_req req;
	struct lane *l;
	uint32_t n;
	int r = 0, decoded;

	while (r == 0 && !c->busy && buf_len(c->out) == 0 &&
	    buf_len(c->in) >= 4) {
		p = buf_ptr(c->in);
		n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		    (uint32_t)p[2] << 8 | p[3];
		if (n == 0 || n > PROTO_FRAME_MAX) {
			/* Refuse before buffering: the length is a lie or an
			 * attack, and nothing after it can be framed. */
			r = th_fail(TH_ERR_PROTOCOL, "frame length %u out of "
			    "range (1..%d)", n, PROTO_FRAME_MAX);
			log_warn("uid %u pid %d: refused: %s",
			    (unsigned)c->peer.uid, (int)c->peer.pid,
			    th_errmsg(r));
			buf_reset(s->reply);
			if (proto_reply_error(s->reply, r, th_errmsg(r)) == 0)
				(void)send_some(c->peer.fd, buf_ptr(s->reply),
				    buf_len(s->reply));
			return -1;
		}
		if (buf_len(c->in) - 4 < n)
			break;
		if ((body = buf_new()) == NULL ||
		    buf_put(body, p + 4, n) != 0) {
			buf_free(body);
			return -1;
		}
		(void)buf_consume(c->in, 4 + (size_t)n);
		decoded = proto_req_decode(body, &req);
		if (decoded == 0 && (l = lane_for(s, &req)) != NULL) {
			c->busy = 1;
			lane_submit(l, &c->peer, body, &req);
			break;
		}
		r = serve_request(s, &c->peer, c, &req, decoded, s->reply);
		buf_free(body);
	}
	return r;
}

/* Reads what is available and serves what it completes.  Returns non-zero
 * if the client must be dropped. */
static int
client_input(struct server *s, struct client *c)
{
	uint8_t tmp[4096];
	ssize_t got;

	if ((got = recv(c->peer.fd, tmp, sizeof(tmp), 0)) <= 0)
		return got < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (buf_put(c->in, tmp, (size_t)got) != 0)
		return -1;
	return client_frames(s, c);
}

/* A client's socket is ready: for its pending reply (and then for what it
 * already sent), or to be read.  Non-zero if it must be dropped. */
static int
client_ready(struct server *s, struct client *c)
{
	if (buf_len(c->out) == 0)
		return client_input(s, c);
	if (client_flush(c) != 0)
		return -1;
	return buf_len(c->out) == 0 ? client_frames(s, c) : 0;
}

static void *
lane_run(void *arg)
{
	struct lane *l = arg;
	struct lane_job job;
	struct lane_done done;
	struct buf *next;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (l->n == 0 && !l->stop)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->stop)
			break;
		job = l->q[l->head];
		l->head = (l->head + 1) % SERVER_CLIENTS_MAX;
		l->n--;
		pthread_mutex_unlock(&l->mu);
		memset(&done, 0, sizeof(done));
		done.fd = job.peer.fd;
		done.drop = serve_request(l->s, &job.peer, NULL, &job.req, 0,
		    l->reply) != 0;
		buf_free(job.body);
		/* The reply goes with the record and the lane takes a new
		 * buffer; without one, the client is dropped unanswered. */
		if ((next = buf_new()) == NULL) {
			buf_reset(l->reply);
			done.drop = 1;
		} else {
			done.reply = l->reply;
			l->reply = next;
		}
		/* Fewer than SERVER_CLIENTS_MAX records are ever in the pipe,
		 * far below its capacity: the write neither blocks nor splits. */
		if (write(l->done_w, &done, sizeof(done)) !=
		    (ssize_t)sizeof(done)) {
			log_err("TPM lane: uid %u pid %d: cannot hand the "
			    "connection back: %s", (unsigned)job.peer.uid,
			    (int)job.peer.pid, strerror(errno));
			buf_free(done.reply);
		}
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

/* Whether anything the signer may be asked to do is on a TPM. */
static int
tpm_configured(const struct config *cfg)
{
	int i;

	if (cfg->tcti[0] != '\0')
		return 1;
	for (i = 0; i < PURPOSE_COUNT; i++)
		if (cfg->keys[i].backend == BACKEND_TPM)
			return 1;
	return 0;
}

/* The TPM lane's thread takes no signals: SIGTERM stops the main loop. */
static int
lane_start(struct server *s, int done_w, struct lane **out)
{
	struct lane *l;
	sigset_t block, old;
	int r = TH_ERR_ALLOC;

	*out = NULL;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return TH_ERR_ALLOC;
	l->s = s;
	l->done_w = done_w;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if ((l->reply = buf_new()) == NULL)
		goto out;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	if (pthread_create(&l->th, NULL, lane_run, l) != 0)
		r = th_fail(TH_ERR_ALLOC, "cannot start the TPM thread");
	else
		r = 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
 out:
	if (r != 0) {
		pthread_mutex_destroy(&l->mu);
		pthread_cond_destroy(&l->cv);
		buf_free(l->reply);
		free(l);
		return r;
	}
	*out = l;
	return 0;
}

/* Waits for the request the lane is serving, if any (a TPM that hangs
 * holds the signer's exit as it did before the lane); queued ones are
 * dropped with their clients. */
static void
lane_stop(struct lane *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->th, NULL);
	while (l->n > 0) {
		buf_free(l->q[l->head].body);
		l->head = (l->head + 1) % SERVER_CLIENTS_MAX;
		l->n--;
	}
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cv);
	buf_free(l->reply);
	free(l);
}

/* The lane's replies sent: their clients are read from again, and what
 * they already sent is served. */
static void
lane_completions(struct server *s)
{
	struct lane_done done;
	struct client *c;
	size_t i;
	int r;

	while (read(s->done_r, &done, sizeof(done)) == (ssize_t)sizeof(done)) {
		for (i = 0; i < s->nclients; i++)
			if (s->clients[i].busy &&
			    s->clients[i].peer.fd == done.fd)
				break;
		if (i == s->nclients) {
			buf_free(done.reply);
			continue;
		}
		c = &s->clients[i];
		c->busy = 0;
		r = done.drop;
		if (done.reply != NULL && buf_len(done.reply) > 0) {
			if (r == 0)
				r = client_reply(c, done.reply);
			else	/* its error reply, if the socket takes it */
				(void)send_some(c->peer.fd,
				    buf_ptr(done.reply), buf_len(done.reply));
		}
		buf_free(done.reply);
		if (r != 0 || client_frames(s, c) != 0)
			client_drop(s, i);
	}
}

static void
accept_client(struct server *s)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
	size_t i, held;
	int fd, r;

	if ((fd = accept4(s->listen_fd, NULL, NULL,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		log_warn("refused a connection: SO_PEERCRED: %s",
		    strerror(errno));
		close(fd);
		return;
	}
	for (i = held = 0; i < s->nclients; i++)
		held += s->clients[i].peer.uid == cred.uid;
	if (config_peer_purposes(s->cfg, cred.uid) == 0)
		r = th_fail(TH_ERR_DENIED, "peer uid %u is not allowed by the "
		    "signer's allow-uid", (unsigned)cred.uid);
	else if (s->nclients == SERVER_CLIENTS_MAX)
		r = th_fail(TH_ERR_DENIED, "too many connections (%d)",
		    SERVER_CLIENTS_MAX);
	else if (held >= s->uid_share)
		r = th_fail(TH_ERR_DENIED, "uid %u already holds %zu "
		    "connections, its share of %d among %zu allowed uids",
		    (unsigned)cred.uid, s->uid_share, SERVER_CLIENTS_MAX,
		    s->nuids);
	else
		r = 0;
	if (r != 0) {
		log_warn("uid %u pid %d: refused connection: %s",
		    (unsigned)cred.uid, (int)cred.pid, th_errmsg(r));
		buf_reset(s->reply);
		if (proto_reply_error(s->reply, r, th_errmsg(r)) == 0)
			(void)send_some(fd, buf_ptr(s->reply),
			    buf_len(s->reply));
		close(fd);
		return;
	}
	c = &s->clients[s->nclients];
	if ((c->in = buf_new()) == NULL || (c->out = buf_new()) == NULL) {
		buf_free(c->in);
		close(fd);
		return;
	}
	c->peer.fd = fd;
	c->peer.uid = cred.uid;
	c->peer.pid = cred.pid;
	c->peer.purposes = config_peer_purposes(s->cfg, cred.uid);
	c->busy = 0;
	s->nclients++;
	log_debug("uid %u pid %d: connected", (unsigned)c->peer.uid,
	    (int)c->peer.pid);
}

/* poll() that, for SERVER_SPIN_US after the last request, checks without
 * sleeping: a client's next request then needs no wake-up of this process,
 * which on a VM costs as much as a SoftHSM signature.  Idle, it sleeps.
 * SIGTERM and SIGINT are blocked but while in ppoll: one that arrives
 * anywhere else stays pending and makes the next ppoll return EINTR, so
 * the loop sees it at once, instead of after the next request. */
static int
poll_spin(struct pollfd *pfd, nfds_t n, struct timespec *busy_until,
    const sigset_t *waitmask)
{
	static const struct timespec zero = { 0, 0 };
	struct timespec now;
	unsigned i;
	int r;

	for (i = 0;; i++) {
		/* A client's thread may be runnable on this CPU: let it
		 * make the request we are waiting for (on a small machine it
		 * otherwise waits for the end of our time slice, ms). */
		if (i % 8 == 7)
			sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > busy_until->tv_sec ||
		    (now.tv_sec == busy_until->tv_sec &&
		    now.tv_nsec >= busy_until->tv_nsec))
			break;
		if ((r = ppoll(pfd, n, &zero, waitmask)) != 0)
			goto done;
	}
	r = ppoll(pfd, n, NULL, waitmask);
 done:
	if (r > 0) {
		clock_gettime(CLOCK_MONOTONIC, busy_until);
		busy_until->tv_nsec += SERVER_SPIN_US * 1000L;
		if (busy_until->tv_nsec >= 1000000000L) {
			busy_until->tv_sec++;
			busy_until->tv_nsec -= 1000000000L;
		}
	}
	return r;
}

int
server_run(const struct config *cfg, struct keys *keys)
{
	struct timespec busy_until = { 0, 0 };
	struct pollfd pfd[SERVER_CLIENTS_MAX + 2];
	struct sigaction sa;
	sigset_t stopsigs, waitmask;
	struct server s;
	size_t i, n;
	int r, done[2] = { -1, -1 };

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.keys = keys;
	s.listen_fd = -1;
	for (i = 0; i < cfg->nuids; i++) {
		for (n = 0; n < i && cfg->uids[n] != cfg->uids[i]; n++)
			;
		s.nuids += n == i;
	}
	s.uid_share = SERVER_CLIENTS_MAX / (s.nuids > 0 ? s.nuids : 1);
	if ((s.reply = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if (tpm_configured(cfg)) {
		if (pipe2(done, O_CLOEXEC | O_NONBLOCK) != 0) {
			r = th_fail(TH_ERR_IO, "pipe: %s", strerror(errno));
			goto out;
		}
		s.done_r = done[0];
		if ((r = lane_start(&s, done[1], &s.tpm)) != 0)
			goto out;
	}
	if ((s.listen_fd = usock_listen(cfg->socket, cfg->socket_mode, 16)) < 0) {
		r = s.listen_fd;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopsigs, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	log_info("listening on %s", cfg->socket);
	while (!stopping) {
		pfd[0].fd = s.listen_fd;
		pfd[0].events = POLLIN;
		for (i = 0; i < s.nclients; i++) {
			/* A busy client is not read: its next request waits
			 * for the reply to the one the lane serves; nor one
			 * whose reply the peer has not all taken yet. */
			pfd[i + 1].fd = s.clients[i].peer.fd;
			if (buf_len(s.clients[i].out) > 0)
				pfd[i + 1].events = POLLOUT;
			else if (!s.clients[i].busy)
				pfd[i + 1].events = POLLIN;
			else
				pfd[i + 1].fd = -1;
		}
		n = s.nclients;
		pfd[n + 1].fd = s.tpm != NULL ? s.done_r : -1;
		pfd[n + 1].events = POLLIN;
		if (poll_spin(pfd, n + 2, &busy_until, &waitmask) < 0) {
			if (errno == EINTR)
				continue;
			r = th_fail(TH_ERR_IO, "poll: %s", strerror(errno));
			goto out;
		}
		/* Walk backwards: client_drop moves the last client into
		 * the freed slot. */
		for (i = n; i-- > 0;)
			if (pfd[i + 1].revents != 0 &&
			    client_ready(&s, &s.clients[i]) != 0)
				client_drop(&s, i);
		if (pfd[n + 1].revents != 0)
			lane_completions(&s);
		if (pfd[0].revents & POLLIN)
			accept_client(&s);
	}
	log_info("stopping");
	r = 0;
 out:
	lane_stop(s.tpm);
	/* Replies the lane handed over but nobody took. */
	if (s.tpm != NULL) {
		struct lane_done left;

		while (read(s.done_r, &left, sizeof(left)) ==
		    (ssize_t)sizeof(left))
			buf_free(left.reply);
	}
	while (s.nclients > 0)
		client_drop(&s, s.nclients - 1);
	if (s.listen_fd >= 0) {
		close(s.listen_fd);
		unlink(cfg->socket);
	}
	if (done[0] >= 0) {
		close(done[0]);
		close(done[1]);
	}
	buf_free(s.reply);
	return r;
}
