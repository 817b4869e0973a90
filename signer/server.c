#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include "check.h"
#include "err.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "sha.h"
#include "usock.h"

struct client {
	int		 fd;
	uid_t		 uid;
	uint32_t	 purposes;	/* allow-uid's, a bit per purpose */
	pid_t		 pid;
	struct buf	*in;
};

struct server {
	const struct config	*cfg;
	struct keys		*keys;
	int			 listen_fd;
	struct client		 clients[SERVER_CLIENTS_MAX];
	size_t			 nclients;
	struct buf		*reply;
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
};

static int
send_all(int fd, const uint8_t *p, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	ssize_t n;
	size_t off = 0;

	while (off < len) {
		n = send(fd, p + off, len - off, MSG_NOSIGNAL);
		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return th_fail(TH_ERR_IO, "send: %s", strerror(errno));
		if (poll(&pfd, 1, SERVER_WRITE_TIMEOUT_MS) <= 0)
			return th_fail(TH_ERR_IO, "client not reading replies");
	}
	return 0;
}

static void
client_drop(struct server *s, size_t i)
{
	close(s->clients[i].fd);
	buf_free(s->clients[i].in);
	s->clients[i] = s->clients[--s->nclients];
}

/* The key a request uses, if any: SIGN names it, QUOTE and the
 * activation requests use the attestation key; -1 for requests that use
 * no private key (HEALTH, PUBKEY, EKCERT). */
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
	default:
		return -1;
	}
}

/* Handles one frame body; returns non-zero if the connection must be
 * dropped (protocol violation or reply failure). */
static int
serve_frame(struct server *s, struct client *c, struct buf *body)
{
	struct proto_req req;
	const char *name = "?";
	char why[512];		/* th_errmsg's bound */
	size_t i;
	int r, p, fatal = 0;

	buf_reset(s->reply);
	if ((r = proto_req_decode(body, &req)) != 0) {
		fatal = 1;
		goto reply;
	}
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].type == req.type)
			break;
	if (i == sizeof(handlers) / sizeof(handlers[0])) {
		r = th_fail(TH_ERR_PROTOCOL, "request type 0x%02x not served",
		    req.type);
		fatal = 1;
		goto reply;
	}
	name = handlers[i].name;
	/* allow-uid may confine a peer to some keys (the broker, say, to
	 * everything but the delegation root). */
	p = key_used(&req);
	if (p >= 0 && (c->purposes & (1u << p)) == 0) {
		r = th_fail(TH_ERR_DENIED, "uid %u may not use the %s key "
		    "(allow-uid)", (unsigned)c->uid, purpose_name(p));
		goto reply;
	}
	r = handlers[i].fn(s, &req, s->reply);
 reply:
	if (r != 0) {
		snprintf(why, sizeof(why), "%s", th_errmsg(r));
		buf_reset(s->reply);
		if (proto_reply_error(s->reply, r, why) != 0) {
			buf_reset(s->reply);
			fatal = 1;
		}
	}
	if (buf_len(s->reply) > 0 &&
	    send_all(c->fd, buf_ptr(s->reply), buf_len(s->reply)) != 0)
		fatal = 1;
	/* Logged once the reply is on its way: the line's write(2) need not
	 * delay the peer, and nothing more is served before it is written. */
	if (r == 0)
		log_info("uid %u pid %d: %s %s: ok", (unsigned)c->uid,
		    (int)c->pid, name, req.purpose);
	else
		log_warn("uid %u pid %d: %s %s: refused: %s", (unsigned)c->uid,
		    (int)c->pid, name, req.purpose, why);
	return fatal ? -1 : 0;
}

/* Reads what is available and serves every complete frame.  Returns
 * non-zero if the client must be dropped. */
static int
client_input(struct server *s, struct client *c)
{
	uint8_t tmp[4096];
	const uint8_t *p;
	struct buf *body = NULL;
	uint32_t n;
	ssize_t got;
	int r = 0;

	if ((got = recv(c->fd, tmp, sizeof(tmp), 0)) <= 0)
		return got < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	if (buf_put(c->in, tmp, (size_t)got) != 0)
		return -1;
	while (r == 0 && buf_len(c->in) >= 4) {
		p = buf_ptr(c->in);
		n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		    (uint32_t)p[2] << 8 | p[3];
		if (n == 0 || n > PROTO_FRAME_MAX) {
			/* Refuse before buffering: the length is a lie or an
			 * attack, and nothing after it can be framed. */
			r = th_fail(TH_ERR_PROTOCOL, "frame length %u out of "
			    "range (1..%d)", n, PROTO_FRAME_MAX);
			log_warn("uid %u pid %d: refused: %s", (unsigned)c->uid,
			    (int)c->pid, th_errmsg(r));
			buf_reset(s->reply);
			if (proto_reply_error(s->reply, r, th_errmsg(r)) == 0)
				(void)send_all(c->fd, buf_ptr(s->reply),
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
		r = serve_frame(s, c, body);
		buf_free(body);
	}
	return r;
}

static void
accept_client(struct server *s)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
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
	if (config_peer_purposes(s->cfg, cred.uid) == 0 ||
	    s->nclients == SERVER_CLIENTS_MAX) {
		r = th_fail(TH_ERR_DENIED, s->nclients == SERVER_CLIENTS_MAX ?
		    "too many connections" : "peer uid %u is not allowed by "
		    "the signer's allow-uid", (unsigned)cred.uid);
		log_warn("uid %u pid %d: refused connection: %s",
		    (unsigned)cred.uid, (int)cred.pid, th_errmsg(r));
		buf_reset(s->reply);
		if (proto_reply_error(s->reply, r, th_errmsg(r)) == 0)
			(void)send_all(fd, buf_ptr(s->reply), buf_len(s->reply));
		close(fd);
		return;
	}
	c = &s->clients[s->nclients];
	if ((c->in = buf_new()) == NULL) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->purposes = config_peer_purposes(s->cfg, cred.uid);
	s->nclients++;
	log_debug("uid %u pid %d: connected", (unsigned)c->uid, (int)c->pid);
}

/* poll() that, for SERVER_SPIN_US after the last request, checks without
 * sleeping: a client's next request then needs no wake-up of this process,
 * which on a VM costs as much as a SoftHSM signature.  Idle, it sleeps. */
static int
poll_spin(struct pollfd *pfd, nfds_t n, struct timespec *busy_until)
{
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
		if ((r = poll(pfd, n, 0)) != 0)
			goto done;
	}
	r = poll(pfd, n, -1);
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
	struct pollfd pfd[SERVER_CLIENTS_MAX + 1];
	struct sigaction sa;
	struct server s;
	size_t i, n;
	int r;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.keys = keys;
	if ((s.reply = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((s.listen_fd = usock_listen(cfg->socket, cfg->socket_mode, 16)) < 0) {
		r = s.listen_fd;
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_info("listening on %s", cfg->socket);
	while (!stopping) {
		pfd[0].fd = s.listen_fd;
		pfd[0].events = POLLIN;
		for (i = 0; i < s.nclients; i++) {
			pfd[i + 1].fd = s.clients[i].fd;
			pfd[i + 1].events = POLLIN;
		}
		n = s.nclients;
		if (poll_spin(pfd, n + 1, &busy_until) < 0) {
			if (errno == EINTR)
				continue;
			r = th_fail(TH_ERR_IO, "poll: %s", strerror(errno));
			goto out;
		}
		/* Walk backwards: client_drop moves the last client into
		 * the freed slot. */
		for (i = n; i-- > 0;)
			if (pfd[i + 1].revents != 0 &&
			    client_input(&s, &s.clients[i]) != 0)
				client_drop(&s, i);
		if (pfd[0].revents & POLLIN)
			accept_client(&s);
	}
	log_info("stopping");
	r = 0;
 out:
	while (s.nclients > 0)
		client_drop(&s, s.nclients - 1);
	if (s.listen_fd >= 0) {
		close(s.listen_fd);
		unlink(cfg->socket);
	}
	buf_free(s.reply);
	return r;
}
