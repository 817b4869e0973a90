/* git-credential-threshold: git's credential helper for the broker's git
 * endpoint (docs/api.md, "git").  git asks for a credential for
 * http://127.0.0.1:PORT/OWNER/NAME.git; the answer is a capability, minted
 * by thresholdd for this agent (identified by the Unix socket) and that
 * repository, valid seconds and spent by the push.  No GitHub token ever
 * reaches the agent.
 *
 *   git config credential.helper "threshold --broker SOCKET"
 *   git config credential.useHttpPath true */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/crypto.h>

#include "cli.h"
#include "err.h"
#include "json.h"
#include "scope.h"

#define GITCRED_LINE_MAX	4096
#define GITCRED_LINES_MAX	64

/* "OWNER/NAME.git" or "/OWNER/NAME" into repo. */
static int
repo_from_path(const char *path, char *repo, size_t len)
{
	size_t n;

	while (*path == '/')
		path++;
	n = strlen(path);
	if (n > 4 && strcmp(path + n - 4, ".git") == 0)
		n -= 4;
	if (n >= len)
		return -1;
	memcpy(repo, path, n);
	repo[n] = '\0';
	return repo_valid(repo, 0) ? 0 : -1;
}

/* The broker's git endpoint is plain HTTP on the loopback: a capability
 * is handed to no other remote (a submodule's, github.com itself, any
 * host a repository names), where it would only leak. */
static int
is_broker_remote(const char *protocol, const char *host, long *port)
{
	static const char *const loopback[] = { "127.0.0.1", "localhost",
	    "[::1]" };
	const char *digits;
	size_t i, n;

	if (strcmp(protocol, "http") != 0)
		return 0;
	for (i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		n = strlen(loopback[i]);
		if (strncmp(host, loopback[i], n) != 0)
			continue;
		if (host[n] == '\0') {
			*port = 80;
			return 1;
		}
		digits = host + n + 1;
		if (host[n] == ':' && digits[0] != '\0' && strlen(digits) <= 5 &&
		    strspn(digits, "0123456789") == strlen(digits)) {
			*port = atol(digits);
			return 1;
		}
	}
	return 0;
}

int
cmd_git_credential(struct cli *cli, int argc, char **argv)
{
	struct json_object *req = NULL, *reply = NULL;
	char line[GITCRED_LINE_MAX], path[GITCRED_LINE_MAX] = "";
	char protocol[GITCRED_LINE_MAX] = "", host[GITCRED_LINE_MAX] = "";
	char repo[SCOPE_REPO_MAX + 1];
	const char *cap, *msg;
	long status = 0, port = 0;
	int r, rc = 1, lines = 0;

	if (argc != 1) {
		fprintf(stderr, "usage: git-credential-threshold [--broker "
		    "SOCKET] get|store|erase\n");
		return 2;
	}
	/* git tells us about a credential it used or rejected: nothing to
	 * keep, since each capability is good for one push. */
	if (strcmp(argv[0], "get") != 0)
		return 0;
	while (fgets(line, sizeof(line), stdin) != NULL) {
		if (strchr(line, '\n') == NULL || ++lines > GITCRED_LINES_MAX)
			return cli_fail("git's credential request is too long");
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '\0')
			break;
		if (strncmp(line, "path=", 5) == 0)
			snprintf(path, sizeof(path), "%s", line + 5);
		else if (strncmp(line, "protocol=", 9) == 0)
			snprintf(protocol, sizeof(protocol), "%s", line + 9);
		else if (strncmp(line, "host=", 5) == 0)
			snprintf(host, sizeof(host), "%s", line + 5);
	}
	/* No answer, as git's helpers do for what they do not know: git
	 * asks its other helpers, or the user. */
	if (!is_broker_remote(protocol, host, &port))
		return 0;
	if (path[0] == '\0')
		return cli_fail("git did not say which repository: git config "
		    "credential.useHttpPath true");
	if (repo_from_path(path, repo, sizeof(repo)) != 0)
		return cli_fail("\"%.200s\" is not OWNER/NAME.git", path);
	req = json_object_new_object();
	json_object_object_add(req, "repo", json_object_new_string(repo));
	/* The broker hands a capability only to its own git endpoint. */
	json_object_object_add(req, "port", json_object_new_int64(port));
	if ((r = broker_post(cli->broker_socket, "/v1/git-credential", req,
	    &status, &reply)) != 0) {
		cli_fail("%s", th_errmsg(r));
		goto out;
	}
	if (status != 201 || json_get_string(reply, "capability", &cap) != 0) {
		struct json_object *e;

		if (json_object_object_get_ex(reply, "error", &e) &&
		    json_get_string(e, "message", &msg) == 0)
			cli_fail("no capability for %s: %s", repo, msg);
		else
			cli_fail("no capability for %s (broker status %ld)", repo,
			    status);
		goto out;
	}
	printf("username=x-capability\npassword=%s\n", cap);
	fflush(stdout);
	rc = 0;
 out:
	json_object_put(req);
	json_object_put(reply);
	return rc;
}
