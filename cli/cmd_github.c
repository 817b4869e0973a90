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

#include "cap.h"
#include "cli.h"
#include "err.h"
#include "json.h"

#define GH_EXIT_REFUSED		3
#define GH_EXIT_GITHUB		4
#define GH_EXIT_UNAVAILABLE	5
#define BROKER_REPLY_MAX	(16 * 1024 * 1024)	/* evidence of 1000s of checks */

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (buf_len(b) + size * n > BROKER_REPLY_MAX)
		return 0;
	return buf_put(b, p, size * n) == 0 ? size * n : 0;
}

int
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
	/* By code first: GitHub's refusals come with 403 too (docs/api.md). */
	if (strcmp(code, "github_refused") == 0 ||
	    strcmp(code, "head_moved") == 0)
		return GH_EXIT_GITHUB;
	if (status == 403)
		return GH_EXIT_REFUSED;
	if (status == 409)
		return GH_EXIT_GITHUB;
	if (status == 502 || status == 503)
		return GH_EXIT_UNAVAILABLE;
	return 1;
}

static int
github_usage(void)
{
	fprintf(stderr,
	    "usage: threshold [--broker SOCKET] [--json] github COMMAND ...\n"
	    "  merge --repo OWNER/NAME --pr N [--target BRANCH (main)]\n"
	    "        [--method merge|squash|rebase]\n"
	    "  pr create --repo OWNER/NAME --head BRANCH --base BRANCH --title T\n"
	    "        [--body TEXT] [--draft]\n"
	    "  comment --repo OWNER/NAME --pr N --body TEXT\n"
	    "  deploy --repo OWNER/NAME --ref BRANCH [--environment E]\n"
	    "  dispatch --repo OWNER/NAME --workflow FILE|ID --ref BRANCH\n"
	    "        [--input KEY=VALUE ...]\n");
	return 2;
}

/* Requests a capability for req and redeems it; prints the outcome. */
static int
run_op(struct cli *cli, struct json_object *req, const char *method,
    const char *what)
{
	struct json_object *red = NULL, *reply = NULL, *res, *v;
	const char *cap, *chain = "?";
	long status = 0;
	int r, rc = 1;

	if ((r = broker_post(cli->broker_socket, "/v1/capabilities", req,
	    &status, &reply)) != 0) {
		cli_fail("%s", th_errmsg(r));
		return r == TH_ERR_UNAVAILABLE ? GH_EXIT_UNAVAILABLE : 1;
	}
	if (status != 201 || json_get_string(reply, "capability", &cap) != 0) {
		rc = report_error(status, reply);
		goto out;
	}
	red = json_object_new_object();
	json_object_object_add(red, "capability", json_object_new_string(cap));
	if (method != NULL)
		json_object_object_add(red, "merge_method",
		    json_object_new_string(method));
	json_object_put(reply);
	reply = NULL;
	if ((r = broker_post(cli->broker_socket, "/v1/redeem", red, &status,
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
	json_get_string(reply, "chain", &chain);
	if (!cli->json) {
		printf("%s", what);
		if (json_object_object_get_ex(reply, "result", &res)) {
			if (json_object_object_get_ex(res, "sha", &v))
				printf(" as %s", json_object_get_string(v));
			else if (json_object_object_get_ex(res, "id", &v))
				printf(" (#%s)", json_object_get_string(v));
		}
		printf(" (authorised by %s)\n", chain);
	}
	rc = 0;
 out:
	json_object_put(red);
	json_object_put(reply);
	return rc;
}

static struct json_object *
new_req(const char *op, const char *repo, long long pr, const char *target)
{
	struct json_object *req = json_object_new_object();

	json_object_object_add(req, "op", json_object_new_string(op));
	json_object_object_add(req, "repo", json_object_new_string(repo));
	if (pr > 0)
		json_object_object_add(req, "pr", json_object_new_int64(pr));
	if (target != NULL)
		json_object_object_add(req, "target",
		    json_object_new_string(target));
	json_object_object_add(req, "params", json_object_new_object());
	return req;
}

static void
param(struct json_object *req, const char *k, const char *v)
{
	struct json_object *p;

	if (v == NULL)
		return;
	json_object_object_get_ex(req, "params", &p);
	json_object_object_add(p, k, json_object_new_string(v));
}

int
cmd_github(struct cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "repo", required_argument, NULL, 'r' },
		{ "pr", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 't' },
		{ "method", required_argument, NULL, 'm' },
		{ "head", required_argument, NULL, 'H' },
		{ "base", required_argument, NULL, 'B' },
		{ "title", required_argument, NULL, 'T' },
		{ "body", required_argument, NULL, 'b' },
		{ "draft", no_argument, NULL, 'd' },
		{ "ref", required_argument, NULL, 'R' },
		{ "environment", required_argument, NULL, 'e' },
		{ "workflow", required_argument, NULL, 'w' },
		{ "input", required_argument, NULL, 'i' },
		{ NULL, 0, NULL, 0 }
	};
	const char *repo = NULL, *target = NULL, *method = NULL, *head = NULL;
	const char *base = NULL, *title = NULL, *body = NULL, *ref = NULL;
	const char *env = NULL, *wf = NULL, *sub;
	struct json_object *req = NULL, *inputs = NULL, *p;
	char what[512], *eq;
	int64_t pr = 0;
	int ch, draft = 0, rc;

	if (argc < 1)
		return github_usage();
	sub = argv[0];
	if (strcmp(sub, "pr") == 0) {
		if (argc < 2 || strcmp(argv[1], "create") != 0)
			return github_usage();
		sub = "pr create";
		argc--;
		argv++;
	}
	inputs = json_object_new_object();
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'r': repo = optarg; break;
		case 'p':
			if (cli_number(optarg, 1, CAP_PR_MAX, &pr) != 0) {
				json_object_put(inputs);
				return cli_usage_fail("bad --pr \"%s\" (a pull request "
				    "number, 1..%lld)", optarg,
				    (long long)CAP_PR_MAX);
			}
			break;
		case 't': target = optarg; break;
		case 'm': method = optarg; break;
		case 'H': head = optarg; break;
		case 'B': base = optarg; break;
		case 'T': title = optarg; break;
		case 'b': body = optarg; break;
		case 'd': draft = 1; break;
		case 'R': ref = optarg; break;
		case 'e': env = optarg; break;
		case 'w': wf = optarg; break;
		case 'i':
			if ((eq = strchr(optarg, '=')) == NULL || eq == optarg) {
				json_object_put(inputs);
				return github_usage();
			}
			*eq = '\0';
			json_object_object_add(inputs, optarg,
			    json_object_new_string(eq + 1));
			break;
		default:
			json_object_put(inputs);
			return github_usage();
		}
	}
	rc = 2;
	if (optind != argc || repo == NULL)
		goto usage;
	if (strcmp(sub, "merge") == 0 && pr > 0) {
		req = new_req("github.merge", repo, pr, target ? target : "main");
		snprintf(what, sizeof(what), "merged %s#%lld into %s", repo, (long long)pr,
		    target ? target : "main");
		rc = run_op(cli, req, method ? method : "merge", what);
	} else if (strcmp(sub, "pr create") == 0 && head && base && title) {
		req = new_req("github.pr.create", repo, 0, base);
		param(req, "head", head);
		param(req, "title", title);
		param(req, "body", body);
		if (draft) {
			json_object_object_get_ex(req, "params", &p);
			json_object_object_add(p, "draft",
			    json_object_new_boolean(1));
		}
		snprintf(what, sizeof(what), "opened a pull request %s -> %s on "
		    "%s", head, base, repo);
		rc = run_op(cli, req, NULL, what);
	} else if (strcmp(sub, "comment") == 0 && pr > 0 && body) {
		req = new_req("github.comment", repo, pr, NULL);
		param(req, "body", body);
		snprintf(what, sizeof(what), "commented on %s#%lld", repo, (long long)pr);
		rc = run_op(cli, req, NULL, what);
	} else if (strcmp(sub, "deploy") == 0 && ref) {
		req = new_req("github.deployment.create", repo, 0, ref);
		param(req, "environment", env);
		snprintf(what, sizeof(what), "created a deployment of %s@%s",
		    repo, ref);
		rc = run_op(cli, req, NULL, what);
	} else if (strcmp(sub, "dispatch") == 0 && ref && wf) {
		req = new_req("github.workflow.dispatch", repo, 0, ref);
		param(req, "workflow", wf);
		if (json_object_object_length(inputs) > 0) {
			json_object_object_get_ex(req, "params", &p);
			json_object_object_add(p, "inputs",
			    json_object_get(inputs));
		}
		snprintf(what, sizeof(what), "dispatched %s on %s@%s", wf,
		    repo, ref);
		rc = run_op(cli, req, NULL, what);
	}
 usage:
	json_object_put(req);
	json_object_put(inputs);
	return rc == 2 ? github_usage() : rc;
}
