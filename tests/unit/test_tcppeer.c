/* tcppeer_uid against real loopback connections: the owner of the
 * caller's end, not of the broker's; nothing for a connection that is gone
 * or whose caller closed it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "tcppeer.h"

#define OTHER_UID	65534

struct conn {
	int			 lfd, cfd, afd;	/* listener, caller, accepted */
	struct sockaddr_in	 peer, local;	/* as the accepted end sees them */
};

static void
listen_lo(struct conn *c)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true((c->lfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(c->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(c->lfd, 4), 0);
	assert_int_equal(getsockname(c->lfd, (struct sockaddr *)&c->local,
	    &len), 0);
}

static void
connect_lo(struct conn *c)
{
	assert_true((c->cfd = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(connect(c->cfd, (struct sockaddr *)&c->local,
	    sizeof(c->local)), 0);
}

static void
accept_lo(struct conn *c)
{
	socklen_t len = sizeof(c->peer);

	assert_true((c->afd = accept(c->lfd, (struct sockaddr *)&c->peer,
	    &len)) >= 0);
}

static void
test_own_connection(void **state)
{
	struct conn c;
	uid_t uid;

	(void)state;
	listen_lo(&c);
	connect_lo(&c);
	accept_lo(&c);
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), 0);
	assert_int_equal(uid, getuid());
	assert_int_equal(tcppeer_fd_uid(c.afd, &uid), 0);
	assert_int_equal(uid, getuid());
	/* The caller closes its end: nobody holds it any more. */
	close(c.cfd);
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), TH_ERR_NOT_FOUND);
	assert_int_equal(uid, (uid_t)-1);
	assert_int_equal(tcppeer_fd_uid(c.afd, &uid), TH_ERR_NOT_FOUND);
	close(c.afd);
	/* A port nobody uses. */
	c.peer.sin_port = htons(1);
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), TH_ERR_NOT_FOUND);
	close(c.lfd);
}

/* A caller of another uid is named by its uid: the broker's own end (this
 * process's) would say ours. */
static void
test_other_user(void **state)
{
	struct conn c;
	int go[2], st;
	pid_t pid;
	uid_t uid;
	char x;

	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	listen_lo(&c);
	assert_int_equal(pipe(go), 0);
	if ((pid = fork()) == 0) {
		if (setgid(OTHER_UID) != 0 || setuid(OTHER_UID) != 0)
			_exit(1);
		connect_lo(&c);
		if (read(go[0], &x, 1) != 1)	/* until the parent has asked */
			_exit(2);
		_exit(0);
	}
	assert_true(pid > 0);
	accept_lo(&c);
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), 0);
	assert_int_equal(uid, OTHER_UID);
	assert_int_equal(tcppeer_fd_uid(c.afd, &uid), 0);
	assert_int_equal(uid, OTHER_UID);
	/* Asked the other way round, the kernel finds our end. */
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.local,
	    (struct sockaddr *)&c.peer, &uid), 0);
	assert_int_equal(uid, getuid());
	assert_int_equal(write(go[1], "x", 1), 1);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* It exited: its end is closed, so it is nobody's. */
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), TH_ERR_NOT_FOUND);
	close(go[0]);
	close(go[1]);
	close(c.afd);
	close(c.lfd);
}

/* A caller that sends a request and resets its connection before the
 * broker looks at it frees its address for another socket: looked up by
 * address, that socket's owner would be named for the reset connection's
 * request.  By the accepted fd it is nobody's. */
static void
test_reset_then_reused(void **state)
{
	struct linger lg = { 1, 0 };
	struct sockaddr_in from;
	socklen_t len = sizeof(from);
	struct conn c;
	int other, one = 1;
	uid_t uid;

	(void)state;
	listen_lo(&c);
	connect_lo(&c);
	assert_int_equal(getsockname(c.cfd, (struct sockaddr *)&from, &len), 0);
	assert_int_equal(write(c.cfd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	assert_int_equal(setsockopt(c.cfd, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof(lg)), 0);
	close(c.cfd);			/* RST: no TIME_WAIT keeps the port */
	assert_true((other = socket(AF_INET, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(setsockopt(other, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)), 0);
	assert_int_equal(bind(other, (struct sockaddr *)&from, sizeof(from)),
	    0);
	assert_int_equal(connect(other, (struct sockaddr *)&c.local,
	    sizeof(c.local)), 0);
	accept_lo(&c);			/* the reset one, first in the queue */
	assert_int_equal(c.peer.sin_port, from.sin_port);
	/* By address the kernel finds the new socket... */
	assert_int_equal(tcppeer_uid((struct sockaddr *)&c.peer,
	    (struct sockaddr *)&c.local, &uid), 0);
	/* ...which is not who sent what the accepted fd holds. */
	assert_int_equal(tcppeer_fd_uid(c.afd, &uid), TH_ERR_NOT_FOUND);
	assert_int_equal(uid, (uid_t)-1);
	close(other);
	close(c.afd);
	close(c.lfd);
}

static void
test_not_tcp(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sockaddr_in6 b = { .sin6_family = AF_INET6 };
	uid_t uid;

	(void)state;
	assert_int_equal(tcppeer_uid((struct sockaddr *)&a,
	    (struct sockaddr *)&b, &uid), TH_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_connection),
		cmocka_unit_test(test_other_user),
		cmocka_unit_test(test_reset_then_reused),
		cmocka_unit_test(test_not_tcp),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
