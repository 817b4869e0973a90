/* threshold github merge ...: an agent's one-shot operation through
 * thresholdd (request a capability, redeem it), with exit codes a script
 * can use:
 *   0 done, 1 error, 2 usage, 3 refused (capability or policy),
 *   4 GitHub refused (e.g. the head moved), 5 unavailable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "err.h"
#include "json.h"

#define GH_EXIT_REFUSED		3
#define GH_EXIT_GITHUB		4
#define GH_EXIT_UNAVAILABLE	5
#define BROKER_REPLY_MAX	(1024 * 1024)

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (buf_len(b) + size * n > BROKER_REPLY_MAX)
		return 0;
	return buf_put(b, p, size * n) == 0 ? size * n : 0;
}

/* POSTs body to the broker's path; *reply is the parsed JSON answer. */
static int
broker_post(const char *sock, const char *path, struct json_object *body,
    long *status, struct json_object **reply)
{
	struct curl_slist *hdr = NULL;
	struct buf *resp = buf_new();
	char url[256];
	CURL *c = NULL;
	CURLcode cc;
	int r;

	*reply = NULL;
	if (resp == NULL || (c = curl_easy_init()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	snprintf(url, sizeof(url), "http://localhost%s", path);
	hdr = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_object_to_json_string_ext(
	    body, JSON_C_TO_STRING_PLAIN));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if ((cc = curl_easy_perform(c)) != CURLE_OK) {
		r = th_fail(TH_ERR_UNAVAILABLE, "cannot reach thresholdd at %s: "
		    "%s", sock, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if ((r = json_parse_strict((const char *)buf_ptr(resp), buf_len(resp),
	    BROKER_REPLY_MAX, reply)) != 0)
		r = th_fail(TH_ERR_PROTOCOL, "thresholdd answered %ld with "
		    "something that is not JSON", *status);
 out:
	curl_slist_free_all(hdr);
	if (c != NULL)
		curl_easy_cleanup(c);
	buf_free(resp);
	return r;
}

/* Prints the broker's error and maps it to an exit code. */
static int
report_error(long status, struct json_object *reply)
{
	struct json_object *err;
	const char *code = "error", *msg = "no message";

	if (json_object_object_get_ex(reply, "error", &err)) {
		json_get_string(err, "code", &code);
		json_get_string(err, "message", &msg);
	}
	fprintf(stderr, "threshold: refused (%s): %s\n", code, msg);
	if (status == 403)
		return GH_EXIT_REFUSED;
	if (status == 409 || strcmp(code, "github_refused") == 0)
		return GH_EXIT_GITHUB;
	if (status == 502 || status == 503)
		return GH_EXIT_UNAVAILABLE;
	return 1;
}

static int
github_usage(void)
{
	fprintf(stderr,
	    "usage: threshold [--broker SOCKET] [--json] github merge --repo OWNER/NAME\n"
	    "           --pr N [--target BRANCH (default main)]\n"
	    "           [--method merge|squash|rebase]\n");
	return 2;
}

static int
github_merge(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "pr", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 't' },
		{ "method", required_argument, NULL, 'm' },
		{ NULL, 0, NULL, 0 }
	};
	struct json_object *req = NULL, *reply = NULL, *res, *v;
	const char *repo = NULL, *target = "main", *method = "merge", *cap;
	const char *sha = "?", *chain = "?";
	long long pr = 0;
	long status = 0;
	int ch, r, rc = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': repo = optarg; break;
		case 'p': pr = strtoll(optarg, NULL, 10); break;
		case 't': target = optarg; break;
		case 'm': method = optarg; break;
		default: return github_usage();
		}
	}
	if (optind != argc || repo == NULL || pr <= 0)
		return github_usage();
	req = json_object_new_object();
	json_object_object_add(req, "op", json_object_new_string("github.merge"));
	json_object_object_add(req, "repo", json_object_new_string(repo));
	json_object_object_add(req, "pr", json_object_new_int64(pr));
	json_object_object_add(req, "target", json_object_new_string(target));
	if ((r = broker_post(cli->broker_socket, "/v1/capabilities", req,
	    &status, &reply)) != 0) {
		cli_fail("%s", th_errmsg(r));
		rc = r == TH_ERR_UNAVAILABLE ? GH_EXIT_UNAVAILABLE : 1;
		goto out;
	}
	if (status != 201 || json_get_string(reply, "capability", &cap) != 0) {
		rc = report_error(status, reply);
		goto out;
	}
	json_object_put(req);
	req = json_object_new_object();
	json_object_object_add(req, "capability", json_object_new_string(cap));
	json_object_object_add(req, "merge_method",
	    json_object_new_string(method));
	json_object_put(reply);
	reply = NULL;
	if ((r = broker_post(cli->broker_socket, "/v1/redeem", req, &status,
	    &reply)) != 0) {
		cli_fail("%s", th_errmsg(r));
		rc = r == TH_ERR_UNAVAILABLE ? GH_EXIT_UNAVAILABLE : 1;
		goto out;
	}
	if (cli->json)
		printf("%s\n", json_object_to_json_string_ext(reply,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	if (status != 200) {
		rc = report_error(status, reply);
		goto out;
	}
	if (json_object_object_get_ex(reply, "result", &res) &&
	    json_object_object_get_ex(res, "sha", &v))
		sha = json_object_get_string(v);
	json_get_string(reply, "chain", &chain);
	if (!cli->json)
		printf("merged %s#%lld into %s as %s (authorised by %s)\n", repo,
		    pr, target, sha, chain);
	rc = 0;
 out:
	json_object_put(req);
	json_object_put(reply);
	return rc;
}

int
cmd_github(struct cli *cli, int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "merge") == 0)
		return github_merge(cli, argc, argv);
	return github_usage();
}
