/* thresholdd: agents ask it to act on GitHub; it never shows them a
 * credential.  See docs/api.md. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "err.h"
#include "harden.h"
#include "log.h"
#include "peval.h"

static void
usage(void)
{
	fprintf(stderr, "usage: thresholdd -f CONFIG [-v]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	sigset_t stopsigs;
	struct broker b;
	const char *conf = NULL;
	enum log_level level = LOG_INFO;
	char db[PATH_MAX];
	int ch, r, held;

	harden_process();
	/* A full disk must fail a write (and so the operation, closed), not
	 * kill the broker. */
	signal(SIGXFSZ, SIG_IGN);
	/* Blocked before any thread starts, so every thread inherits it:
	 * api_serve takes SIGTERM and SIGINT with sigwait, which loses none
	 * (a flag set by a handler can land just before pause()).  One sent
	 * while starting waits there too: the broker then stops cleanly. */
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopsigs, NULL);
	window_env_init();
	while ((ch = getopt(argc, argv, "f:v")) != -1) {
		switch (ch) {
		case 'f': conf = optarg; break;
		case 'v': level = LOG_DEBUG; break;
		default: usage();
		}
	}
	if (conf == NULL || optind != argc)
		usage();
	log_init("thresholdd", level);
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.signer_mu, NULL);
	if ((r = bconf_load(conf, &b.cfg)) != 0)
		goto out;
	rec_limits_init(&b);
	snprintf(db, sizeof(db), "%s/threshold.db", b.cfg.state);
	/* Fail closed: without the signer nothing can be authorised, so do
	 * not pretend to serve. */
	if ((r = store_open(db, &b.st)) != 0 ||
	    (r = sigc_connect(b.cfg.signer, &b.signer)) != 0 ||
	    (r = cap_ctx_new(b.signer, store_instance(b.st), b.cfg.ttl,
	    &b.cap)) != 0 ||
	    (r = gh_new(b.cfg.github_url, b.cfg.app_id, b.cfg.signer, &b.gh)) != 0 ||
	    (r = alog_open(b.cfg.audit, b.cfg.signer, store_instance(b.st),
	    &b.audit)) != 0 || (r = alog_start_committer(b.audit)) != 0 ||
	    (r = revoker_start(b.cfg.github_url, b.cfg.app_id, b.audit,
	    &b.revoker)) != 0 ||
	    (r = act_recover(&b)) != 0)
		goto out;
	/* Nothing minted before now is honoured: a spend the store lost to
	 * a power loss must not make a capability good again. */
	cap_ctx_set_not_before(b.cap, (int64_t)time(NULL));
	log_info("instance %s, GitHub at %s", store_instance(b.st),
	    b.cfg.github_url);
	r = api_serve(&b);
	if ((held = rec_refusals_held(&b)) != 0)
		log_err("audit: held refusals not recorded: %s",
		    th_errmsg(held));
 out:
	if (r != 0)
		fprintf(stderr, "thresholdd: %s\n", th_errmsg(r));
	revoker_stop(b.revoker);	/* revokes whatever is still queued */
	alog_close(b.audit);		/* commits whatever is pending */
	gh_free(b.gh);
	cap_ctx_free(b.cap);
	sigc_close(b.signer);
	store_close(b.st);
	return r != 0;
}
