#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bconfig.h"
#include "cap.h"
#include "err.h"
#include "github.h"
#include "scope.h"
#include "typ.h"

static int
set(char *dst, size_t dstsz, const char *v, const char *what)
{
	if (strlen(v) >= dstsz)
		return th_fail(TH_ERR_CONFIG, "%s too long", what);
	strcpy(dst, v);
	return 0;
}

static int
parse_agent(struct bconf *c, const char *uid, const char *name)
{
	struct bconf_agent *a;
	unsigned long u;
	size_t i;
	char *end;

	errno = 0;
	u = strtoul(uid, &end, 10);
	if (errno != 0 || *end != '\0' || end == uid || u >= UINT_MAX)
		return th_fail(TH_ERR_CONFIG, "bad uid \"%s\"", uid);
	if (c->nagents == BCONF_AGENTS_MAX)
		return th_fail(TH_ERR_CONFIG, "too many agents");
	a = &c->agents[c->nagents];
	snprintf(a->name, sizeof(a->name), "%s%s",
	    strncmp(name, "agent:", 6) ? "agent:" : "", name);
	if (!name_valid(a->name, "agent"))
		return th_fail(TH_ERR_CONFIG, "bad agent name \"%s\"", name);
	if (bconf_agent(c, (uid_t)u) >= 0)
		return th_fail(TH_ERR_CONFIG, "uid %lu given twice", u);
	/* One agent, one uid: its connection and refusal limits are its. */
	for (i = 0; i < c->nagents; i++)
		if (strcmp(c->agents[i].name, a->name) == 0)
			return th_fail(TH_ERR_CONFIG, "%s given twice (uids "
			    "%lu and %lu)", a->name,
			    (unsigned long)c->agents[i].uid, u);
	a->uid = (uid_t)u;
	c->nagents++;
	return 0;
}

static int
parse_tcp(const char *what, const char *v, char *host, size_t hostlen,
    int *portp)
{
	const char *colon = strrchr(v, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - v) >= hostlen)
		return th_fail(TH_ERR_CONFIG, "%s wants HOST:PORT", what);
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = '\0';
	if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0)
		return th_fail(TH_ERR_CONFIG, "%s is for loopback only", what);
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return th_fail(TH_ERR_CONFIG, "bad port in %s", what);
	*portp = (int)port;
	return 0;
}

static int
parse_line(struct bconf *c, char *line)
{
	char *name, *v, *v2, *end;
	unsigned long mode;
	long ttl;

	if ((name = strtok_r(line, " \t", &end)) == NULL || name[0] == '#')
		return 0;
	if ((v = strtok_r(NULL, " \t", &end)) == NULL)
		return th_fail(TH_ERR_CONFIG, "\"%s\" needs a value", name);
	v2 = strtok_r(NULL, " \t", &end);
	if (strcmp(name, "agent") == 0) {
		if (v2 == NULL || strtok_r(NULL, " \t", &end) != NULL)
			return th_fail(TH_ERR_CONFIG, "usage: agent UID NAME");
		return parse_agent(c, v, v2);
	}
	if (v2 != NULL)
		return th_fail(TH_ERR_CONFIG, "\"%s\" takes one value", name);
	if (strcmp(name, "listen") == 0)
		return set(c->listen, sizeof(c->listen), v, "listen");
	if (strcmp(name, "listen-tcp") == 0)
		return parse_tcp(name, v, c->tcp_host, sizeof(c->tcp_host),
		    &c->tcp_port);
	if (strcmp(name, "listen-git") == 0) {
		char host[64];

		return parse_tcp(name, v, host, sizeof(host), &c->git_port);
	}
	if (strcmp(name, "github-git-url") == 0)
		return set(c->git_url, sizeof(c->git_url), v,
		    "github-git-url");
	if (strcmp(name, "git-max-bytes") == 0) {
		long long n = strtoll(v, &end, 10);

		if (*end != '\0' || n < 1024 || n > (1LL << 40))
			return th_fail(TH_ERR_CONFIG, "git-max-bytes must be "
			    "1024..2^40");
		c->git_max_bytes = (int64_t)n;
		return 0;
	}
	if (strcmp(name, "git-push-seconds") == 0) {
		long long n = strtoll(v, &end, 10);

		if (*end != '\0' || n < 1 || n > 86400)
			return th_fail(TH_ERR_CONFIG, "git-push-seconds must be "
			    "1..86400");
		c->git_push_seconds = (int64_t)n;
		return 0;
	}
	if (strcmp(name, "signer") == 0)
		return set(c->signer, sizeof(c->signer), v, "signer");
	if (strcmp(name, "state") == 0)
		return set(c->state, sizeof(c->state), v, "state");
	if (strcmp(name, "audit") == 0)
		return set(c->audit, sizeof(c->audit), v, "audit");
	if (strcmp(name, "github-url") == 0)
		return set(c->github_url, sizeof(c->github_url), v,
		    "github-url");
	if (strcmp(name, "github-app-id") == 0)
		return set(c->app_id, sizeof(c->app_id), v, "github-app-id");
	if (strcmp(name, "socket-mode") == 0) {
		mode = strtoul(v, &end, 8);
		if (*end != '\0' || (mode != 0600 && mode != 0660 &&
		    mode != 0666))
			return th_fail(TH_ERR_CONFIG, "socket-mode must be "
			    "0600, 0660 or 0666");
		c->socket_mode = (mode_t)mode;
		return 0;
	}
	if (strcmp(name, "capability-ttl") == 0) {
		ttl = strtol(v, &end, 10);
		if (*end != '\0' || ttl < 1 || ttl > CAPABILITY_TTL_MAX)
			return th_fail(TH_ERR_CONFIG, "capability-ttl must be "
			    "1..%d", CAPABILITY_TTL_MAX);
		c->ttl = (int)ttl;
		return 0;
	}
	return th_fail(TH_ERR_CONFIG, "unknown directive \"%s\"", name);
}

/* A directive other than agent given on a second line: refused, naming
 * both (the last would win silently: a socket-mode 0666 below a 0600).
 * seen[] holds each directive's name and line. */
#define BCONF_DIRECTIVES_MAX	32

struct seen {
	char	name[32];
	int	line;
};

static int
once(struct seen *seen, size_t *nseen, const char *line, int n)
{
	char name[32];
	size_t i, len;

	line += strspn(line, " \t");
	len = strcspn(line, " \t");
	if (len == 0 || line[0] == '#' || len >= sizeof(name) ||
	    (len == 5 && memcmp(line, "agent", 5) == 0))
		return 0;
	memcpy(name, line, len);
	name[len] = '\0';
	for (i = 0; i < *nseen; i++)
		if (strcmp(seen[i].name, name) == 0)
			return th_fail(TH_ERR_CONFIG, "\"%s\" given twice "
			    "(lines %d and %d)", name, seen[i].line, n);
	if (*nseen < BCONF_DIRECTIVES_MAX) {
		snprintf(seen[*nseen].name, sizeof(seen[0].name), "%s", name);
		seen[(*nseen)++].line = n;
	}
	return 0;
}

int
bconf_load(const char *path, struct bconf *c)
{
	struct seen seen[BCONF_DIRECTIVES_MAX];
	size_t nseen = 0;
	char line[2048];
	FILE *f;
	int r = 0, n = 0;

	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	c->ttl = CAP_TTL_DEFAULT;
	c->git_max_bytes = (int64_t)2 << 30;
	c->git_push_seconds = 3600;
	snprintf(c->git_url, sizeof(c->git_url), "https://github.com");
	if ((f = fopen(path, "re")) == NULL)
		return th_fail(TH_ERR_CONFIG, "cannot open %s: %s", path,
		    strerror(errno));
	while (r == 0 && fgets(line, sizeof(line), f) != NULL) {
		n++;
		/* A longer line would be read on as a directive of its own. */
		if (strchr(line, '\n') == NULL && !feof(f)) {
			r = th_fail(TH_ERR_CONFIG, "%s:%d: line longer than %zu "
			    "bytes", path, n, sizeof(line) - 2);
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if ((r = once(seen, &nseen, line, n)) != 0)
			r = th_fail(r, "%s:%d: %s", path, n, th_errmsg(r));
		else if ((r = parse_line(c, line)) != 0)
			r = th_fail(r, "%s:%d: %s", path, n, th_errmsg(r));
	}
	fclose(f);
	if (r == 0 && c->audit[0] == '\0' && (size_t)snprintf(c->audit,
	    sizeof(c->audit), "%s/audit.db", c->state) >= sizeof(c->audit))
		r = th_fail(TH_ERR_CONFIG, "state path too long");
	if (r == 0 && (c->listen[0] == '\0' || c->signer[0] == '\0' ||
	    c->state[0] == '\0' || c->github_url[0] == '\0' ||
	    c->app_id[0] == '\0'))
		r = th_fail(TH_ERR_CONFIG, "%s: listen, signer, state, "
		    "github-url and github-app-id are required", path);
	/* git sends each installation token to it. */
	if (r == 0 && !gh_url_ok(c->git_url))
		r = th_fail(TH_ERR_CONFIG, "%s: github-git-url must be https:// "
		    "(or http:// on loopback, for tests)", path);
	return r;
}

int
bconf_agent(const struct bconf *c, uid_t uid)
{
	size_t i;

	for (i = 0; i < c->nagents; i++)
		if (c->agents[i].uid == uid)
			return (int)i;
	return -1;
}
