/* The HTTP side of thresholdd, on libmicrohttpd: a Unix socket for agents
 * (whose identity comes from the kernel, SO_PEERCRED) and optionally
 * loopback TCP for health and metrics.  Each agent's connection has a
 * thread of its own. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "broker.h"
#include "conns.h"
#include "err.h"
#include "json.h"
#include "log.h"
#include "usock.h"

struct conn {
	struct buf	*body;
	int		 too_big;
	struct gh_token	*revoke_later;
};

static enum MHD_Result
reply_close(struct MHD_Connection *c, unsigned status, const char *ctype,
    const char *text, int close_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(text), (void *)text,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", ctype);
	if (close_after)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
		    "close");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
reply(struct MHD_Connection *c, unsigned status, const char *ctype,
    const char *text)
{
	return reply_close(c, status, ctype, text, 0);
}

static enum MHD_Result
reply_json_close(struct MHD_Connection *c, struct answer *ans,
    int close_after)
{
	enum MHD_Result ret;

	ret = reply_close(c, ans->status, "application/json",
	    json_object_to_json_string_ext(ans->body, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE), close_after);
	json_object_put(ans->body);
	return ret;
}

static enum MHD_Result
reply_json(struct MHD_Connection *c, struct answer *ans)
{
	return reply_json_close(c, ans, 0);
}

static enum MHD_Result
reply_error(struct MHD_Connection *c, unsigned status, const char *code,
    const char *msg)
{
	struct answer ans = { .status = status };
	struct json_object *err = json_object_new_object();

	ans.body = json_object_new_object();
	json_object_object_add(err, "code", json_object_new_string(code));
	json_object_object_add(err, "message", json_object_new_string(msg));
	json_object_object_add(ans.body, "error", err);
	return reply_json(c, &ans);
}

/* The agent behind a Unix-socket connection, as the kernel named it when
 * the connection started (broker/conns.h); NULL for TCP or an unknown
 * uid. */
static const char *
peer_agent(struct MHD_Connection *c, uid_t *uid)
{
	const struct conns_peer *p = conns_peer(c);

	*uid = p != NULL && p->known ? p->uid : (uid_t)-1;
	return conns_agent(p);
}

/* The keys the broker signs with: capabilities, App JWTs, and the audit
 * log's countersignatures (a TPM quote, or the audit key without a TPM).
 * The delegation root is the operator's, not the broker's. */
static int
broker_key(const char *purpose)
{
	return strcmp(purpose, "capability") == 0 ||
	    strcmp(purpose, "github-app") == 0 ||
	    strcmp(purpose, "attestation") == 0 ||
	    strcmp(purpose, "audit") == 0;
}

/* 200 only if every key the broker needs answers: with one of them gone
 * (the TPM away, say) nothing can be authorised, whatever the signer's
 * own state. */
static enum MHD_Result
health(struct broker *b, struct MHD_Connection *c)
{
	struct proto_health_item bad;
	struct proto_reply rep;
	char text[PROTO_MSG_MAX + 128];
	size_t i;
	int r, nbad = 0;

	pthread_mutex_lock(&b->signer_mu);
	r = sigc_health(b->signer, &rep);
	/* rep points into the connection's buffer: copy under the lock. */
	for (i = 0; r == 0 && i < rep.nhealth; i++)
		if (rep.health[i].status != 0 &&
		    broker_key(rep.health[i].purpose) && nbad++ == 0)
			bad = rep.health[i];
	pthread_mutex_unlock(&b->signer_mu);
	if (r != 0) {
		snprintf(text, sizeof(text), "signer: %s", th_errmsg(r));
		return reply_error(c, 503, "signer_unavailable", text);
	}
	if (nbad > 0) {
		snprintf(text, sizeof(text), "signer: the %s key (%s) does not "
		    "answer: %s%s", bad.purpose, bad.backend, bad.detail,
		    nbad > 1 ? " (and other keys)" : "");
		return reply_error(c, 503, "signer_unavailable", text);
	}
	return reply(c, 200, "application/json",
	    "{\"status\":\"ok\",\"signer\":\"ok\"}");
}

static enum MHD_Result
metrics(struct broker *b, struct MHD_Connection *c)
{
	const struct broker_metrics *m = &b->m;
	uint64_t revoked, unknown;
	char text[2048];

	revoker_counts(b->revoker, &revoked, &unknown);
	snprintf(text, sizeof(text),
	    "# TYPE threshold_requests_total counter\n"
	    "threshold_requests_total %llu\n"
	    "# TYPE threshold_capabilities_total counter\n"
	    "threshold_capabilities_total{result=\"minted\"} %llu\n"
	    "threshold_capabilities_total{result=\"refused\"} %llu\n"
	    "# TYPE threshold_redemptions_total counter\n"
	    "threshold_redemptions_total{result=\"accepted\"} %llu\n"
	    "threshold_redemptions_total{result=\"refused\"} %llu\n"
	    "# TYPE threshold_operations_total counter\n"
	    "threshold_operations_total{op=\"github.merge\",result=\"done\"} %llu\n"
	    "threshold_operations_total{result=\"policy_denied\"} %llu\n"
	    "threshold_operations_total{result=\"github_refused\"} %llu\n"
	    "threshold_operations_total{result=\"github_unavailable\"} %llu\n"
	    "# TYPE threshold_token_revocations_total counter\n"
	    "threshold_token_revocations_total{result=\"revoked\"} %llu\n"
	    "threshold_token_revocations_total{result=\"unknown\"} %llu\n"
	    "# TYPE threshold_github_round_trips_total counter\n"
	    "threshold_github_round_trips_total %u\n"
	    "# TYPE threshold_refusals_aggregated_total counter\n"
	    "threshold_refusals_aggregated_total %llu\n",
	    (unsigned long long)m->requests, (unsigned long long)m->minted,
	    (unsigned long long)m->mint_refused,
	    (unsigned long long)m->redeemed,
	    (unsigned long long)m->redeem_refused,
	    (unsigned long long)m->merges,
	    (unsigned long long)m->policy_denied,
	    (unsigned long long)m->github_refused,
	    (unsigned long long)m->github_unavailable,
	    (unsigned long long)revoked, (unsigned long long)unknown,
	    gh_rounds(b->gh),
	    (unsigned long long)rec_refusals_aggregated(b));
	return reply(c, 200, "text/plain; version=0.0.4", text);
}

static enum MHD_Result
handle(void *arg, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **ctx)
{
	struct broker *b = arg;
	struct conn *cn = *ctx;
	struct json_object *req = NULL;
	struct answer ans;
	const char *agent;
	uid_t uid;
	int r;

	(void)version;
	if (conns_dropped(c))
		return MHD_NO;
	if (cn == NULL) {
		if ((cn = calloc(1, sizeof(*cn))) == NULL ||
		    (cn->body = buf_new()) == NULL) {
			free(cn);
			return MHD_NO;
		}
		*ctx = cn;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (buf_len(cn->body) + *upload_size > BROKER_BODY_MAX)
			cn->too_big = 1;
		else if (buf_put(cn->body, upload, *upload_size) != 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	b->m.requests++;
	memset(&ans, 0, sizeof(ans));
	if ((r = conns_check(c)) != 0) {
		log_warn("refused: %s", th_errmsg(r));
		act_refuse(b, peer_agent(c, &uid), 503, "busy", r, &ans);
		return reply_json_close(c, &ans, 1);
	}
	if (strcmp(method, "GET") == 0 && strcmp(url, "/v1/health") == 0)
		return health(b, c);
	if (strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0)
		return metrics(b, c);
	/* Refused before any action, and recorded like every refusal. */
	agent = peer_agent(c, &uid);
	if (strcmp(method, "POST") != 0 || (strcmp(url, "/v1/capabilities") &&
	    strcmp(url, "/v1/redeem") && strcmp(url, "/v1/git-credential"))) {
		r = th_fail(TH_ERR_NOT_FOUND, "no such endpoint: %.16s %.128s "
		    "(see docs/api.md)", method, url);
		log_warn("refused: %s", th_errmsg(r));
		act_refuse(b, agent, 404, "not_found", r, &ans);
		return reply_json(c, &ans);
	}
	if (agent == NULL) {
		r = th_fail(TH_ERR_DENIED, uid == (uid_t)-1 ? "agent identity "
		    "comes from the Unix socket; use it, not TCP" : "uid %u is "
		    "not an agent in thresholdd's configuration",
		    (unsigned)uid);
		log_warn("refused: %s", th_errmsg(r));
		act_refuse(b, NULL, 403, "unknown_agent", r, &ans);
		return reply_json(c, &ans);
	}
	if (cn->too_big) {
		act_refuse(b, agent, 413, "bad_request", th_fail(TH_ERR_TOO_LONG,
		    "request body over 64 KiB"), &ans);
		return reply_json(c, &ans);
	}
	if ((r = json_parse_strict((const char *)buf_ptr(cn->body),
	    buf_len(cn->body), BROKER_BODY_MAX, &req)) != 0) {
		act_refuse(b, agent, 400, "bad_request", r, &ans);
		return reply_json(c, &ans);
	}
	if (strcmp(url, "/v1/capabilities") == 0)
		act_mint(b, agent, req, &ans);
	else if (strcmp(url, "/v1/git-credential") == 0)
		act_git_credential(b, agent, req, &ans);
	else
		act_redeem(b, agent, req, &ans);
	json_object_put(req);
	cn->revoke_later = ans.revoke_later;
	return reply_json(c, &ans);
}

/* After the answer went out: hand the operation's token to the revoker. */
static void
on_completed(void *arg, struct MHD_Connection *c, void **ctx,
    enum MHD_RequestTerminationCode toe)
{
	struct broker *b = arg;
	struct conn *cn = *ctx;

	(void)c;
	(void)toe;
	if (cn == NULL)
		return;
	if (cn->revoke_later != NULL)
		revoker_push(b->revoker, cn->revoke_later);
	buf_free(cn->body);
	free(cn);
	*ctx = NULL;
}

int
api_serve(struct broker *b)
{
	struct MHD_Daemon *ud = NULL, *td = NULL;
	void *gd = NULL;
	sigset_t stopsigs;
	int fd, sig, r = 0;

	if ((fd = usock_listen(b->cfg.listen, b->cfg.socket_mode, 64)) < 0)
		return fd;
	b->conns.cfg = &b->cfg;
	/* A thread per agent's connection: one operation waiting on GitHub
	 * holds up no other, nor health. */
	ud = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
	    handle, b, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, b,
	    MHD_OPTION_NOTIFY_CONNECTION, conns_notify, &b->conns,
	    MHD_OPTION_CONNECTION_TIMEOUT, 30u,
	    MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)(BROKER_CONNECTIONS_MAX + BROKER_CONNECTIONS_OVER),
	    MHD_OPTION_END);
	if (ud == NULL) {
		close(fd);
		return th_fail(TH_ERR_IO, "cannot start the HTTP server");
	}
	if (b->cfg.tcp_port != 0) {
		struct sockaddr_in sin;

		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)b->cfg.tcp_port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		/* TCP carries no identity: agents' endpoints refuse it and
		 * only health and metrics answer there. */
		/* Any local user can connect: bounded in number and in
		 * idle time, idle connections cannot take the descriptors
		 * the agents' socket and git endpoint need. */
		td = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
		    MHD_USE_ERROR_LOG, (uint16_t)b->cfg.tcp_port, NULL, NULL,
		    handle, b, MHD_OPTION_SOCK_ADDR, &sin,
		    MHD_OPTION_NOTIFY_COMPLETED, on_completed, b,
		    MHD_OPTION_CONNECTION_LIMIT,
		    (unsigned)BROKER_TCP_CONNECTIONS_MAX,
		    MHD_OPTION_CONNECTION_TIMEOUT,
		    (unsigned)BROKER_TCP_IDLE_S,
		    MHD_OPTION_END);
		if (td == NULL) {
			r = th_fail(TH_ERR_IO, "cannot listen on 127.0.0.1:%d",
			    b->cfg.tcp_port);
			goto out;
		}
	}
	if ((r = git_start(b, &gd)) != 0)
		goto out;
	/* main() blocked these in every thread before starting any. */
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	log_info("serving agents on %s", b->cfg.listen);
	while (sigwait(&stopsigs, &sig) != 0)
		;
	log_info("stopping (%s)", sig == SIGINT ? "SIGINT" : "SIGTERM");
 out:
	git_stop(gd);
	if (td != NULL)
		MHD_stop_daemon(td);
	MHD_stop_daemon(ud);
	unlink(b->cfg.listen);
	return r;
}
