/* thresholdd's configuration file (docs/api.md, "Configuration").  One
 * directive per line, '#' starts a comment:
 *
 *   listen PATH			Unix socket for agents (required)
 *   socket-mode OCTAL			0600, 0660 or 0666 (default 0660)
 *   listen-tcp 127.0.0.1:PORT		optional; loopback only; health and
 *					metrics only (no identity over TCP)
 *   signer PATH			threshold-signer's socket
 *   state DIR				token store (DIR/threshold.db)
 *   audit PATH				the audit log (default DIR/audit.db)
 *   github-url URL			https://api.github.com, or a GHES
 *					https://HOST/api/v3
 *   github-app-id ID			the App's id or client id
 *   capability-ttl SECONDS		1..60, default 15
 *   listen-git 127.0.0.1:PORT		optional; git smart HTTP for agents
 *					(docs/api.md, "git")
 *   github-git-url URL			where git is served, default
 *					https://github.com
 *   git-max-bytes N			largest push or fetch reply, default
 *					2 GiB
 *   git-push-seconds N			longest a push body may take to
 *					arrive, 1..86400, default 3600
 *   agent UID NAME			a Unix uid and the agent it is
 *					(repeatable) */
#ifndef TH_BCONFIG_H
#define TH_BCONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BCONF_PATH_MAX		108
#define BCONF_VALUE_MAX		1024
#define BCONF_AGENTS_MAX	64

struct bconf_agent {
	uid_t	uid;
	char	name[80];		/* "agent:NAME" */
};

struct bconf {
	char			listen[BCONF_PATH_MAX];
	mode_t			socket_mode;
	char			tcp_host[64];
	int			tcp_port;	/* 0: no TCP */
	char			signer[BCONF_PATH_MAX];
	char			state[BCONF_VALUE_MAX];
	char			audit[BCONF_VALUE_MAX];
	char			github_url[BCONF_VALUE_MAX];
	char			app_id[64];
	int			ttl;
	int			git_port;	/* 0: no git endpoint */
	char			git_url[BCONF_VALUE_MAX];
	int64_t			git_max_bytes;
	int64_t			git_push_seconds;
	struct bconf_agent	agents[BCONF_AGENTS_MAX];
	size_t			nagents;
};

int		 bconf_load(const char *path, struct bconf *c);
/* The agent a uid is (its index in c->agents), or -1. */
int		 bconf_agent(const struct bconf *c, uid_t uid);

#endif
