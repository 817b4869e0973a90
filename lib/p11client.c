#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "err.h"
#include "jwk.h"
#include "jws.h"
#include "p11client.h"

#define P11C_ARGV_MAX	10
#define ES256_SIG_LEN	64
#define RS256_SIG_LEN	256

/* What one run of the helper produced. */
struct run {
	uint8_t	out[P11C_STDOUT_MAX + 1];		/* one over: overflow */
	size_t	outlen;
	char	err[P11C_STDERR_MAX + 1];	/* NUL-terminated */
	size_t	errlen;
};

static void
fd_close(int *fd)
{
	if (*fd != -1)
		close(*fd);
	*fd = -1;
}

/* Moves fd above 2 so that the spawn's dup2 onto 0, 1 and 2 neither
 * clobbers another pipe end nor keeps close-on-exec (dup2(fd, fd) does not
 * clear it), should the caller have fds 0-2 closed. */
static int
fd_lift(int *fd)
{
	int nfd;

	if (*fd > STDERR_FILENO)
		return 0;
	if ((nfd = fcntl(*fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)) == -1)
		return th_fail(TH_ERR_IO, "fcntl: %s", strerror(errno));
	close(*fd);
	*fd = nfd;
	return 0;
}

static long
ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long)(deadline->tv_sec - now.tv_sec) * 1000 +
	    (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms;
}

/* Reaps pid, killing it if it outlives the deadline; *status as from
 * waitpid.  Fails if the child cannot be reaped (SIGCHLD ignored by the
 * caller, say): its exit status is then unknown, never taken for success. */
static int
reap(pid_t pid, const struct timespec *deadline, int *status)
{
	struct timespec nap = { 0, 2 * 1000 * 1000 };
	pid_t w;

	for (;;) {
		if ((w = waitpid(pid, status, WNOHANG)) == pid)
			return 0;
		if (w == -1 && errno != EINTR)
			return th_fail(TH_ERR_INTERNAL, "waitpid: %s",
			    strerror(errno));
		if (w == 0 && ms_left(deadline) == 0)
			break;
		if (w == 0)
			nanosleep(&nap, NULL);
	}
	kill(pid, SIGKILL);
	while ((w = waitpid(pid, status, 0)) == -1 && errno == EINTR)
		;
	if (w != pid)
		return th_fail(TH_ERR_INTERNAL, "waitpid: %s", strerror(errno));
	return th_fail(TH_ERR_P11, P11C_HELPER_NAME " timed out after %d s",
	    P11C_TIMEOUT_S);
}

/* The helper's reason: its last line starting with P11C_HELPER_NAME ": "
 * (the module or libp11 may have printed lines of their own before it),
 * else its first line; printable ASCII only. */
static const char *
err_line(struct run *run)
{
	static const char prefix[] = P11C_HELPER_NAME ": ";
	char *line = run->err, *p, *nl;
	size_t i;

	run->err[run->errlen] = '\0';
	for (p = run->err; p != NULL && *p != '\0';
	    p = (nl = strchr(p, '\n')) == NULL ? NULL : nl + 1)
		if (strncmp(p, prefix, sizeof(prefix) - 1) == 0)
			line = p;
	for (i = 0; line[i] != '\0' && line[i] != '\n'; i++)
		if (line[i] < 0x20 || line[i] >= 0x7f)
			line[i] = '?';
	line[i] = '\0';
	return line;
}

/* Moves data until the helper has closed stdout and stderr, the input is
 * written (or the helper stopped reading it), or the deadline passes.
 * Stdout beyond P11C_STDOUT_MAX is TH_ERR_PROTOCOL; stderr beyond
 * P11C_STDERR_MAX is read and dropped. */
static int
pump(int *in, int *out, int *err, const uint8_t *input, size_t inlen,
    struct run *run, const struct timespec *deadline)
{
	struct pollfd pfd[3];
	uint8_t scratch[512];
	size_t done = 0;
	ssize_t n;
	long ms;
	int i;

	while (*out != -1 || *err != -1) {
		if (*in != -1 && done == inlen) {
			shutdown(*in, SHUT_WR);
			fd_close(in);
		}
		pfd[0].fd = *in;
		pfd[0].events = POLLOUT;
		pfd[1].fd = *out;
		pfd[1].events = POLLIN;
		pfd[2].fd = *err;
		pfd[2].events = POLLIN;
		if ((ms = ms_left(deadline)) == 0)
			return th_fail(TH_ERR_P11, P11C_HELPER_NAME " timed out "
			    "after %d s", P11C_TIMEOUT_S);
		if ((i = poll(pfd, 3, ms > INT_MAX ? INT_MAX : (int)ms)) == -1 &&
		    errno == EINTR)
			continue;
		if (i == -1)
			return th_fail(TH_ERR_IO, "poll: %s", strerror(errno));
		if (pfd[0].revents != 0) {
			n = send(*in, input + done, inlen - done,
			    MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				done += (size_t)n;
			else if (n == -1 && errno != EINTR && errno != EAGAIN)
				fd_close(in);	/* it stopped reading */
		}
		if (pfd[1].revents != 0) {
			n = read(*out, run->out + run->outlen,
			    sizeof(run->out) - run->outlen);
			if (n == 0 || (n == -1 && errno != EINTR &&
			    errno != EAGAIN))
				fd_close(out);
			else if (n > 0 && (run->outlen += (size_t)n) >
			    P11C_STDOUT_MAX)
				return th_fail(TH_ERR_PROTOCOL, P11C_HELPER_NAME
				    " wrote more than %d bytes", P11C_STDOUT_MAX);
		}
		if (pfd[2].revents != 0) {
			if (run->errlen < P11C_STDERR_MAX)
				n = read(*err, run->err + run->errlen,
				    P11C_STDERR_MAX - run->errlen);
			else
				n = read(*err, scratch, sizeof(scratch));
			if (n == 0 || (n == -1 && errno != EINTR &&
			    errno != EAGAIN))
				fd_close(err);
			else if (n > 0 && run->errlen < P11C_STDERR_MAX)
				run->errlen += (size_t)n;
		}
	}
	return 0;
}

/* 0 for exit 0; otherwise TH_ERR_P11 with the helper's reason. */
static int
exit_status(const char *helper, int status, struct run *run)
{
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (run->errlen > 0)
		return th_fail(TH_ERR_P11, "%s", err_line(run));
	if (WIFEXITED(status))
		return th_fail(TH_ERR_P11, "%s exited with status %d", helper,
		    WEXITSTATUS(status));
	return th_fail(TH_ERR_P11, "%s killed by signal %d", helper,
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Runs the helper with argv, input on its stdin; 0 only if it exited 0. */
static int
run_helper(const char *helper, char *const argv[], const uint8_t *input,
    size_t inlen, struct run *run)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct timespec deadline;
	sigset_t none, def;
	int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
	int fa_ok = 0, attr_ok = 0, status = 0, e, r = TH_ERR_INTERNAL;
	pid_t pid = -1;

	run->outlen = run->errlen = 0;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += P11C_TIMEOUT_S;
	/* stdin is a socket so that writing to an exited helper gives EPIPE
	 * (MSG_NOSIGNAL) rather than SIGPIPE. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) == -1 ||
	    pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		r = th_fail(TH_ERR_IO, "pipe: %s", strerror(errno));
		goto out;
	}
	if ((r = fd_lift(&in[0])) != 0 || (r = fd_lift(&in[1])) != 0 ||
	    (r = fd_lift(&out[0])) != 0 || (r = fd_lift(&out[1])) != 0 ||
	    (r = fd_lift(&err[0])) != 0 || (r = fd_lift(&err[1])) != 0)
		goto out;
	if ((e = posix_spawn_file_actions_init(&fa)) != 0) {
		r = th_fail(TH_ERR_ALLOC, "posix_spawn: %s", strerror(e));
		goto out;
	}
	fa_ok = 1;
	if ((e = posix_spawnattr_init(&attr)) != 0) {
		r = th_fail(TH_ERR_ALLOC, "posix_spawn: %s", strerror(e));
		goto out;
	}
	attr_ok = 1;
	/* The helper starts with no blocked signals and SIGPIPE default,
	 * whatever the caller set.  Every pipe end is close-on-exec; only the
	 * dup2 copies reach the helper. */
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	if ((e = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&attr, &def)) != 0 ||
	    (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, in[1],
	    STDIN_FILENO)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, out[1],
	    STDOUT_FILENO)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, err[1],
	    STDERR_FILENO)) != 0) {
		r = th_fail(TH_ERR_INTERNAL, "posix_spawn: %s", strerror(e));
		goto out;
	}
	if ((e = posix_spawnp(&pid, helper, &fa, &attr, argv, environ)) != 0) {
		pid = -1;
		r = th_fail(TH_ERR_UNAVAILABLE, "cannot run %s: %s", helper,
		    strerror(e));
		goto out;
	}
	fd_close(&in[1]);
	fd_close(&out[1]);
	fd_close(&err[1]);
	r = pump(&in[0], &out[0], &err[0], input, inlen, run, &deadline);
 out:
	fd_close(&in[0]);
	fd_close(&in[1]);
	fd_close(&out[0]);
	fd_close(&out[1]);
	fd_close(&err[0]);
	fd_close(&err[1]);
	if (pid != -1 && r != 0) {
		/* Already failed: keep that reason. */
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
	} else if (pid != -1 && (r = reap(pid, &deadline, &status)) == 0)
		r = exit_status(helper, status, run);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	return r;
}

/* argv for "helper --module M [--pin-file P] -- cmd uri". */
static int
make_argv(char *argv[P11C_ARGV_MAX], const char *helper, const char *module,
    const char *pin_file, const char *cmd, const char *uri)
{
	int n = 0;

	if (helper == NULL || *helper == '\0')
		return th_fail(TH_ERR_CONFIG, "no " P11C_HELPER_NAME);
	if (module == NULL || *module == '\0')
		return th_fail(TH_ERR_CONFIG, "no PKCS#11 module");
	if (uri == NULL || *uri == '\0')
		return th_fail(TH_ERR_INVALID, "no PKCS#11 URI");
	argv[n++] = (char *)helper;
	argv[n++] = (char *)"--module";
	argv[n++] = (char *)module;
	if (pin_file != NULL) {
		argv[n++] = (char *)"--pin-file";
		argv[n++] = (char *)pin_file;
	}
	argv[n++] = (char *)"--";
	argv[n++] = (char *)cmd;
	argv[n++] = (char *)uri;
	argv[n] = NULL;
	return 0;
}

int
p11c_pubkey(const char *helper, const char *module, const char *pin_file,
    const char *uri, EVP_PKEY **out)
{
	char *argv[P11C_ARGV_MAX];
	struct run *run = NULL;
	EVP_PKEY *pk = NULL;
	BIO *bio = NULL;
	int r;

	*out = NULL;
	if ((r = make_argv(argv, helper, module, pin_file, "pubkey", uri)) != 0)
		goto out;
	if ((run = calloc(1, sizeof(*run))) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "p11c_pubkey");
		goto out;
	}
	if ((r = run_helper(helper, argv, NULL, 0, run)) != 0)
		goto out;
	if ((bio = BIO_new_mem_buf(run->out, (int)run->outlen)) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "BIO_new_mem_buf");
		goto out;
	}
	if ((pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL ||
	    BIO_pending(bio) != 0) {
		r = th_fail(TH_ERR_PROTOCOL, P11C_HELPER_NAME " did not print "
		    "one PEM public key");
		goto out;
	}
	if (jwk_pkey_alg(pk) == TH_ALG_NONE) {
		r = th_fail(TH_ERR_PROTOCOL, P11C_HELPER_NAME " printed a key "
		    "that is neither EC P-256 nor RSA");
		goto out;
	}
	*out = pk;
	pk = NULL;
 out:
	EVP_PKEY_free(pk);
	BIO_free(bio);
	free(run);
	return r;
}

int
p11c_sign(const char *helper, const char *module, const char *pin_file,
    const char *uri, const uint8_t *input, size_t len, enum th_alg *alg,
    uint8_t sig[TH_SIG_MAX], size_t *siglen)
{
	char *argv[P11C_ARGV_MAX];
	struct run *run = NULL;
	struct jws *j = NULL;
	size_t want;
	int r;

	*alg = TH_ALG_NONE;
	*siglen = 0;
	if ((r = make_argv(argv, helper, module, pin_file, "sign", uri)) != 0)
		goto out;
	if (input == NULL) {
		r = th_fail(TH_ERR_INVALID, "no signing input");
		goto out;
	}
	/* Bounds the input (JWS_TOKEN_MAX) and gives the alg the helper
	 * checks against the key. */
	if ((r = jws_parse_input((const char *)input, len, &j)) != 0)
		goto out;
	want = j->alg == TH_ALG_ES256 ? ES256_SIG_LEN : RS256_SIG_LEN;
	if ((run = calloc(1, sizeof(*run))) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "p11c_sign");
		goto out;
	}
	if ((r = run_helper(helper, argv, input, len, run)) != 0)
		goto out;
	if (run->outlen != want) {
		r = th_fail(TH_ERR_PROTOCOL, P11C_HELPER_NAME " returned %zu "
		    "bytes, not a %zu-byte %s signature", run->outlen, want,
		    th_alg_name(j->alg));
		goto out;
	}
	memcpy(sig, run->out, want);
	*siglen = want;
	*alg = j->alg;
 out:
	jws_free(j);
	free(run);
	return r;
}

const char *
p11c_default_helper(void)
{
	static char path[PATH_MAX];
	char exe[PATH_MAX], *slash;
	ssize_t n;
	int len;

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0)
		return P11C_HELPER_NAME;
	exe[n] = '\0';
	if ((slash = strrchr(exe, '/')) == NULL)
		return P11C_HELPER_NAME;
	*slash = '\0';
	len = snprintf(path, sizeof(path), "%s/" P11C_HELPER_NAME, exe);
	if (len < 0 || (size_t)len >= sizeof(path) || access(path, X_OK) != 0)
		return P11C_HELPER_NAME;
	return path;
}
