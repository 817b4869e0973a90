#!/usr/bin/python3
"""GitHub REST API emulator for the Threshold test suite.

An independent, in-memory implementation of the parts of GitHub's REST API that
the broker uses (App JWT auth, installation tokens, pull requests, CI state,
comments, deployments, workflow dispatch), plus an unauthenticated admin API
under /_admin/ to seed state, inspect what happened and inject faults.

It also serves real git repositories over smart HTTP (/{owner}/{repo}.git/...), by
running git-http-backend as a CGI, with GitHub's Basic-auth/installation-token rules.

Only the Python standard library and python3-cryptography are used (plus the `git`
binaries for the git server).  Listens on loopback only.  See README.md next to this file.
"""

import argparse
import base64
import copy
import datetime
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

API_VERSION = "2022-11-28"
DOC = "https://docs.github.com/rest"
ALNUM = string.ascii_letters + string.digits
LEVELS = {"read": 1, "write": 2, "admin": 3}
REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")
FILE_STATUSES = ("added", "removed", "modified", "renamed", "copied", "changed", "unchanged")
CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_CONCLUSIONS = (None, "success", "failure", "neutral", "cancelled", "skipped",
                     "timed_out", "action_required", "stale")
STATUS_STATES = ("error", "failure", "pending", "success")
MERGE_METHODS = ("merge", "squash", "rebase")
MAX_PR_FILES = 3000
TREE_MAX_BYTES = 7 * 1024 * 1024   # GitHub: a recursive tree listing holds at most 7 MB
REPO_ROLES = ("admin", "maintain", "write", "triage", "read", "none")

# ---- git (smart HTTP) ----------------------------------------------------------------
GIT = "/usr/bin/git"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
ZERO_SHA = "0" * 40
GIT_DATE = "1704067200 +0000"   # fixed author/committer date of emulator-made commits
GIT_SERVICES = ("git-upload-pack", "git-receive-pack")
# /{owner}/{repo}[.git]/info/refs | git-upload-pack | git-receive-pack (at the server root)
GIT_PATH_RX = re.compile(r"/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?"
                         r"/(?P<rest>info/refs|git-upload-pack|git-receive-pack)")
GIT_DRAIN_MAX = 1 << 20         # request bodies of refused git requests are drained up to this
GIT_IO = 65536

# pre-receive hook written into every bare repository the emulator serves.  GitHub refuses a
# push that creates, modifies or deletes a workflow file unless the App token has
# `workflows: write`; the emulator passes that permission in EMU_WORKFLOWS_WRITE (1/0).
PRE_RECEIVE_HOOK = r"""#!/bin/sh
# Written by the GitHub emulator (tests/github-emulator/emulator.py).
# Refuses ref updates that create, modify or delete files under .github/workflows/
# unless the pushing token has workflows: write (EMU_WORKFLOWS_WRITE=1).
if [ "${EMU_WORKFLOWS_WRITE:-0}" = 1 ]; then cat >/dev/null; exit 0; fi
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
is_zero() { case "$1" in *[!0]*) return 1 ;; *) return 0 ;; esac; }
commit_files() {
    while read -r c; do
        git diff-tree -r --name-only --no-commit-id --root -m --first-parent "$c" -- .github/workflows/
    done
}
while read -r old new ref; do
    is_zero "$new" && continue          # ref deletion: no commit changes a file
    if is_zero "$old"; then             # new ref: the commits new to the repository
        git rev-list "$new" --not --all | commit_files >>"$out"
    else                                # update: every commit in old..new, plus the net change
        git rev-list "$old..$new" | commit_files >>"$out"
        git diff --name-only "$old" "$new" -- .github/workflows/ >>"$out"
    fi
done
f=$(grep . "$out" | sort | head -n 1)
if [ -n "$f" ]; then
    echo "refusing to allow a GitHub App to create or update workflow \`$f\` without \`workflows\` permission" >&2
    exit 1
fi
exit 0
"""

DEFAULT_CONFIG = {
    "token_ttl": 3600,          # seconds an installation token lives
    "token_length": 36,         # random characters after the prefix
    "token_prefix": "ghs_",
    "app_slug": "threshold-test",
    "rate_limit": 5000,         # primary limit per installation / per app JWT, per hour
    "unauth_rate_limit": 60,    # reported only; not enforced
    "clock_offset": 0,          # seconds added to the emulator's clock (drift tests)
    "implicit_metadata": True,  # tokens always carry metadata: read, as on GitHub
    "jwt_max_lifetime": 600,    # max exp - iat, and max exp - now
    "jwt_iat_leeway": 0,        # iat may be this far in the future (GitHub: none)
    "request_log_max": 100000,
    "api_created_pr_mergeable_null": True,  # POST /pulls answers mergeable null first
    "tree_entries_max": 100000,  # entries of a recursive tree listing before "truncated"
}


class ApiError(Exception):
    def __init__(self, status, message, extra=None, headers=None, doc=DOC):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}
        self.doc = doc


class AdminError(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status
        self.message = message


class Response:
    def __init__(self, status, body=None, headers=None, close=False, raw=None, ctype=None):
        self.status = status
        self.body = body          # JSON-serialisable or None (no body)
        self.headers = dict(headers or {})
        self.close = close        # drop the connection without answering
        self.raw = raw            # bytes to send instead of JSON
        self.ctype = ctype        # Content-Type for raw bodies (default: JSON)


def error_body(status, message, doc=DOC, extra=None):
    b = {"message": message, "documentation_url": doc}
    if extra:
        b.update(extra)
    b["status"] = str(status)
    return b


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def rand_sha():
    return secrets.token_hex(20)


def sha256_hex(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def b64url_decode(s):
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def invalid_type(key, value, typename):
    return ApiError(422, "Invalid request.\n\nFor 'properties/%s', %s is not %s."
                    % (key, json.dumps(value), typename))


def check_type(body, key, types, typename, required=False):
    if key not in body or body[key] is None:
        if required:
            raise ApiError(422, "Invalid request.\n\n\"%s\" wasn't supplied." % key)
        return None
    v = body[key]
    ok = isinstance(v, types)
    if ok and isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    if not ok:
        raise invalid_type(key, v, typename)
    return v


def load_public_key(data):
    """Accept a public key, a private key (public half used) or a certificate."""
    if isinstance(data, str):
        data = data.encode()
    key = None
    for loader in (lambda d: serialization.load_pem_public_key(d),
                   lambda d: serialization.load_pem_private_key(d, None).public_key(),
                   lambda d: x509.load_pem_x509_certificate(d).public_key()):
        try:
            key = loader(data)
            break
        except Exception:
            continue
    if key is None:
        raise ValueError("cannot load a PEM public key")
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("App keys must be RSA")
    return key


def key_fingerprint(key):
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()


# --------------------------------------------------------------------------------------
# Routes.  Paths are matched after removing an optional /api/v3 prefix.
# auth: "jwt" (App JWT), "token" (installation token), "any" (anything or nothing)
# --------------------------------------------------------------------------------------
_OR = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ROUTES = [
    ("GET", r"/app", "app_get", "jwt"),
    ("GET", r"/app/installations", "app_installations", "jwt"),
    ("GET", r"/app/installations/(?P<iid>\d+)", "app_installation", "jwt"),
    ("POST", r"/app/installations/(?P<iid>\d+)/access_tokens", "create_token", "jwt"),
    ("GET", _OR + r"/installation", "repo_installation", "jwt"),
    ("DELETE", r"/installation/token", "revoke_token", "token"),
    ("GET", r"/installation/repositories", "installation_repos", "token"),
    ("GET", r"/rate_limit", "rate_limit", "any"),
    ("GET", _OR, "repo_get", "token"),
    ("GET", _OR + r"/branches/(?P<branch>.+)", "branch_get", "token"),
    ("GET", _OR + r"/collaborators/(?P<user>[^/]+)/permission", "collab_permission", "token"),
    ("GET", _OR + r"/compare/(?P<basehead>.+)", "compare", "token"),
    ("GET", _OR + r"/git/trees/(?P<tree_sha>.+)", "git_tree", "token"),
    ("POST", _OR + r"/pulls", "pull_create", "token"),
    ("GET", _OR + r"/pulls", "pulls_list", "token"),
    ("GET", _OR + r"/pulls/(?P<number>\d+)", "pull_get", "token"),
    ("PUT", _OR + r"/pulls/(?P<number>\d+)/merge", "pull_merge", "token"),
    ("GET", _OR + r"/pulls/(?P<number>\d+)/files", "pull_files", "token"),
    ("GET", _OR + r"/pulls/(?P<number>\d+)/reviews", "pull_reviews", "token"),
    ("GET", _OR + r"/commits/(?P<ref>.+?)/check-runs", "check_runs", "token"),
    ("GET", _OR + r"/commits/(?P<ref>.+?)/status", "combined_status", "token"),
    ("POST", _OR + r"/issues/(?P<number>\d+)/comments", "issue_comment", "token"),
    ("GET", _OR + r"/issues/(?P<number>\d+)/comments", "issue_comments", "token"),
    ("POST", _OR + r"/deployments", "deployment_create", "token"),
    ("GET", _OR + r"/deployments", "deployments_list", "token"),
    ("POST", _OR + r"/actions/workflows/(?P<wf>[^/]+)/dispatches", "dispatch", "token"),
]
ROUTES = [(m, re.compile(p), n, a) for (m, p, n, a) in ROUTES]

# push-on-next "before" names -> route names
BEFORE_ROUTES = {
    "merge": ("pull_merge",),
    "get": ("pull_get",),
    "pull": ("pull_get",),
    "files": ("pull_files", "compare", "git_tree"),
    "reviews": ("pull_reviews",),
    "any": ("pull_get", "pull_merge", "pull_files", "pull_reviews", "compare", "git_tree"),
}


class Ctx:
    """Everything a route handler needs about one request."""

    def __init__(self, emu, method, orig_path, path, prefix, query, headers, host):
        self.emu = emu
        self.method = method
        self.orig_path = orig_path  # as requested (with /api/v3 if any)
        self.path = path            # normalised
        self.prefix = prefix
        self.query_string = query
        self.query = urllib.parse.parse_qs(query, keep_blank_values=True)
        self.headers = headers
        self.host = host
        self.params = {}
        self.body = None
        self.route = None
        self.auth_kind = "none"
        self.token = None           # token record
        self.jwt_claims = None
        self.identity = None        # rate-limit bucket

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[-1] if v else default

    def qint(self, name, default):
        try:
            return int(self.q(name, default))
        except (TypeError, ValueError):
            return default

    def url(self, path):
        return "http://%s%s%s" % (self.host, self.prefix, path)

    def body_obj(self):
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.body


class Emulator:
    def __init__(self, app_id, keys, client_id=None, app_slug=None, seed=None,
                 git_root=None, git_home=None):
        self.lock = threading.RLock()
        # git requests stream their answer and are logged after it: a log read
        # with ?settle=1 waits until none is in flight.
        self.git_inflight = 0
        self.git_settled = threading.Condition(self.lock)
        self.git_root = git_root      # bare repositories live in git_root/owner/name.git
        self.git_home = git_home      # HOME for git subprocesses (empty: no user config)
        self.git_made = set()         # bare repos this emulator created (removed on reset)
        self.app_id = str(app_id)
        self.client_id = client_id
        self.initial_keys = list(keys)
        self.initial_slug = app_slug
        self.seed = seed
        self.conn_ids = itertools.count(1)
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self, reload_seed=False):
        with self.lock:
            self.config = dict(DEFAULT_CONFIG)
            if self.initial_slug:
                self.config["app_slug"] = self.initial_slug
            self.keys = list(self.initial_keys)
            self.installations = {}
            self.repos = {}          # lower(full_name) -> repo record
            self.tokens = {}         # sha256(token) -> token record
            self.faults = []
            self.latency_ms = 0
            self.push_on_next = []
            self.requests = []
            self.req_seq = 0
            self.ratelimits = {}
            self._ids = itertools.count(1001)
            self._fault_ids = itertools.count(1)
            self._synthetic_clock = time.time() - 86400
            self.events = []         # merges/comments/deployments/dispatches, in order
            for d in list(getattr(self, "git_made", ())):
                shutil.rmtree(d, ignore_errors=True)
            self.git_made = set()
            if reload_seed and self.seed:
                self.load(self.seed)

    def now(self):
        return time.time() + float(self.config.get("clock_offset", 0) or 0)

    def new_id(self):
        return next(self._ids)

    def synthetic_time(self):
        self._synthetic_clock += 1
        return iso(self._synthetic_clock)

    def load(self, doc):
        if not isinstance(doc, dict):
            raise AdminError("state document must be an object")
        with self.lock:
            if "config" in doc:
                self.set_config(doc["config"])
            for r in doc.get("repos", []):
                self.add_repo(r)
            for g in doc.get("git_repos", []):
                self.git_create(g)
            for i in doc.get("installations", []):
                self.add_installation(i)
            for p in doc.get("pulls", []):
                self.add_pull(p)
            for c in doc.get("checks", []):
                self.set_checks(c)
            for s in doc.get("statuses", []):
                self.set_statuses(s)
            for f in doc.get("faults", []):
                self.add_fault(f)
            if "latency_ms" in doc:
                self.latency_ms = int(doc["latency_ms"])

    def set_config(self, cfg):
        if not isinstance(cfg, dict):
            raise AdminError("config must be an object")
        for k, v in cfg.items():
            if k not in DEFAULT_CONFIG:
                raise AdminError("unknown config key %r" % k)
            self.config[k] = v

    def find_repo(self, full_name):
        return self.repos.get(str(full_name).lower())

    def repo_by_id(self, rid):
        for r in self.repos.values():
            if r["id"] == rid:
                return r
        return None

    def add_repo(self, spec):
        if isinstance(spec, str):
            spec = {"full_name": spec}
        full = spec.get("full_name")
        if not isinstance(full, str) or not re.fullmatch(r"[^/\s]+/[^/\s]+", full):
            raise AdminError("full_name must be 'owner/name'")
        with self.lock:
            r = self.find_repo(full)
            if r is None:
                owner, name = full.split("/")
                r = {"id": spec.get("id") or self.new_id(), "owner": owner, "name": name,
                     "full_name": full, "default_branch": "main", "branches": {},
                     "tags": {}, "private": True, "workflows": [], "behind_default": [],
                     "issues": [], "pulls": {}, "checks": {}, "statuses": {},
                     "comments": [], "deployments": [], "dispatches": [], "merges": [],
                     "next_number": 1, "moved_to": None,
                     "allowed_merge_methods": list(MERGE_METHODS),
                     "protected": [], "git": False, "collaborators": {}}
                self.repos[full.lower()] = r
            for k in ("default_branch", "private", "moved_to"):
                if k in spec:
                    r[k] = spec[k]
            if "allowed_merge_methods" in spec:
                r["allowed_merge_methods"] = list(spec["allowed_merge_methods"])
            if "protected" in spec:
                r["protected"] = [str(b) for b in spec["protected"] or []]
            for login, role in (spec.get("collaborators") or {}).items():
                if role not in REPO_ROLES:
                    raise AdminError("collaborator role must be one of %s" % ", ".join(REPO_ROLES))
                r["collaborators"][login.lower()] = role
            for b, sha in (spec.get("branches") or {}).items():
                r["branches"][b] = sha or rand_sha()
            for t, sha in (spec.get("tags") or {}).items():
                r["tags"][t] = sha or rand_sha()
            if r["default_branch"] not in r["branches"]:
                r["branches"][r["default_branch"]] = rand_sha()
            for w in spec.get("workflows") or []:
                self._add_workflow(r, w)
            if "behind_default" in spec:
                r["behind_default"] = list(spec["behind_default"])
            for n in spec.get("issues") or []:
                if int(n) not in r["issues"]:
                    r["issues"].append(int(n))
                r["next_number"] = max(r["next_number"], int(n) + 1)
            return r

    def _add_workflow(self, repo, w):
        if isinstance(w, (str, int)):
            w = {"path": str(w)} if isinstance(w, str) else {"id": w}
        path = w.get("path") or w.get("file")
        if path and "/" not in path:
            path = ".github/workflows/" + path
        wid = int(w.get("id") or self.new_id())
        if not path:
            path = ".github/workflows/workflow-%d.yml" % wid
        rec = {"id": wid, "path": path, "name": w.get("name") or os.path.basename(path),
               "state": w.get("state", "active"),
               "dispatchable": bool(w.get("dispatchable", True)),
               "inputs": w.get("inputs")}
        repo["workflows"] = [x for x in repo["workflows"]
                             if x["id"] != wid and x["path"] != path] + [rec]

    def add_installation(self, spec):
        with self.lock:
            iid = spec.get("id")
            iid = int(iid) if iid is not None else self.new_id()
            repos = []
            account = spec.get("account")
            if isinstance(account, dict):
                account = account.get("login")
            for full in spec.get("repositories") or []:
                if "/" not in full:
                    if not account:
                        raise AdminError("repository %r needs 'owner/' or an account" % full)
                    full = account + "/" + full
                r = self.find_repo(full) or self.add_repo({"full_name": full})
                repos.append(r["full_name"].lower())
                if not account:
                    account = r["owner"]
            if not account:
                raise AdminError("installation needs an account or repositories")
            perms = dict(spec.get("permissions") or {})
            for k, v in perms.items():
                if v not in LEVELS:
                    raise AdminError("permission level for %s must be read|write|admin" % k)
            perms.setdefault("metadata", "read")
            inst = {"id": iid, "account": account, "repositories": repos,
                    "repository_selection": spec.get("repository_selection", "selected"),
                    "permissions": perms, "suspended": bool(spec.get("suspended", False)),
                    "events": spec.get("events", []),
                    "target_type": spec.get("target_type", "Organization"),
                    "created_at": iso(self.now() - 86400 * 30)}
            self.installations[iid] = inst
            return inst

    def installation_repos(self, inst):
        if inst["repository_selection"] == "all":
            return [k for k, r in self.repos.items() if r["owner"].lower() == inst["account"].lower()]
        return list(inst["repositories"])

    def installation_for_repo(self, repo):
        key = repo["full_name"].lower()
        for inst in self.installations.values():
            if key in self.installation_repos(inst):
                return inst
        return None

    def _norm_file(self, f):
        if isinstance(f, str):
            f = {"filename": f}
        if not isinstance(f, dict) or not isinstance(f.get("filename"), str):
            raise AdminError("each file needs a filename")
        st = f.get("status", "modified")
        if st not in FILE_STATUSES:
            raise AdminError("bad file status %r" % st)
        add = int(f.get("additions", 1 if st != "removed" else 0))
        dele = int(f.get("deletions", 1 if st in ("modified", "removed", "changed") else 0))
        rec = {"sha": hashlib.sha1(f["filename"].encode()).hexdigest(),
               "filename": f["filename"], "status": st, "additions": add,
               "deletions": dele, "changes": int(f.get("changes", add + dele))}
        if st in ("renamed", "copied") and f.get("previous_filename"):
            rec["previous_filename"] = f["previous_filename"]
        elif st == "renamed":
            raise AdminError("renamed file %r needs previous_filename" % f["filename"])
        if "patch" in f:
            rec["patch"] = f["patch"]
        return rec

    def _norm_files(self, files):
        if files is None:
            return []
        if isinstance(files, int):
            files = {"generate": files}
        if isinstance(files, dict):
            n = int(files.get("generate", 0))
            pat = files.get("pattern", "src/file_{i:04d}.c")
            return [self._norm_file({"filename": pat.format(i=i)}) for i in range(n)]
        return [self._norm_file(f) for f in files]

    def _norm_review(self, rv, pr):
        if not isinstance(rv, dict):
            raise AdminError("review must be an object")
        user = rv.get("user", "reviewer")
        if isinstance(user, dict):
            user = user.get("login")
        state = str(rv.get("state", "APPROVED")).upper()
        if state not in REVIEW_STATES:
            raise AdminError("bad review state %r" % state)
        # "user": null is GitHub's for a review whose author's account is
        # gone (the schema's user is nullable).
        return {"id": int(rv.get("id") or self.new_id()),
                "user": None if user is None else
                {"login": user, "id": abs(hash(user)) % 10**8, "type": "User"},
                "body": rv.get("body", ""), "state": state,
                "commit_id": rv.get("commit_id") or pr["head"]["sha"],
                "submitted_at": None if state == "PENDING"
                else (rv.get("submitted_at") or self.synthetic_time()),
                "author_association": rv.get("author_association", "MEMBER")}

    def add_pull(self, spec):
        with self.lock:
            repo = self.find_repo(spec.get("repo", ""))
            if repo is None:
                repo = self.add_repo({"full_name": spec.get("repo", "")})
            number = spec.get("number")
            number = int(number) if number is not None else repo["next_number"]
            pr = repo["pulls"].get(number)
            if pr is None:
                pr = {"number": number, "id": self.new_id(), "state": "open",
                      "merged": False, "merged_at": None, "merge_commit_sha": None,
                      "merged_by": None, "closed_at": None, "mergeable": True,
                      "draft": False, "title": "PR %d" % number, "body": "",
                      "user": {"login": "octocat"},
                      "head": {"ref": "feature-%d" % number, "sha": rand_sha()},
                      "base": {"ref": repo["default_branch"]},
                      "files": [], "reviews": [], "commits": 1,
                      "created_at": self.synthetic_time(), "updated_at": None,
                      "compute_mergeable_on_get": False}
                repo["pulls"][number] = pr
            for k in ("state", "merged", "mergeable", "draft", "title", "body", "commits"):
                if k in spec:
                    pr[k] = spec[k]
            if "user" in spec:
                u = spec["user"]
                pr["user"] = {"login": u.get("login") if isinstance(u, dict) else u}
            if "merged_by" in spec:     # a login: merged by someone other than the App
                pr["merged_by"] = spec["merged_by"]
            if "head" in spec:
                h = spec["head"]
                pr["head"] = {"ref": h.get("ref", pr["head"]["ref"]),
                              "sha": h.get("sha") or pr["head"]["sha"]}
            if "base" in spec:
                pr["base"] = {"ref": spec["base"].get("ref", pr["base"]["ref"])}
                if spec["base"].get("sha"):
                    repo["branches"][pr["base"]["ref"]] = spec["base"]["sha"]
            if pr["state"] == "open":
                repo["branches"][pr["head"]["ref"]] = pr["head"]["sha"]
            repo["branches"].setdefault(pr["base"]["ref"], rand_sha())
            if "files" in spec:
                pr["files"] = self._norm_files(spec["files"])
            if "reviews" in spec:
                pr["reviews"] = [self._norm_review(r, pr) for r in spec["reviews"]]
            if pr["merged"]:
                pr["state"] = "closed"
                pr["merged_at"] = pr["merged_at"] or self.synthetic_time()
                pr["merge_commit_sha"] = pr["merge_commit_sha"] or rand_sha()
            if pr["state"] == "closed" and not pr["closed_at"]:
                pr["closed_at"] = self.synthetic_time()
            pr["updated_at"] = self.synthetic_time()
            pr.setdefault("files_at", {})[pr["head"]["sha"]] = pr["files"]
            repo["next_number"] = max(repo["next_number"], number + 1)
            return pr

    def add_reviews(self, spec):
        with self.lock:
            repo, pr = self._admin_pr(spec)
            new = [self._norm_review(r, pr) for r in spec.get("reviews", [])]
            if spec.get("replace"):
                pr["reviews"] = new
            else:
                pr["reviews"].extend(new)
            return pr

    def _admin_pr(self, spec):
        repo = self.find_repo(spec.get("repo", ""))
        if repo is None:
            raise AdminError("unknown repo %r" % spec.get("repo"), 404)
        num = spec.get("pr", spec.get("number"))
        pr = repo["pulls"].get(int(num)) if num is not None else None
        if pr is None:
            raise AdminError("unknown pull request %r" % num, 404)
        return repo, pr

    def _norm_check(self, c, sha):
        if isinstance(c, str):
            c = {"name": c}
        status = c.get("status", "completed")
        if status not in CHECK_STATUSES:
            raise AdminError("bad check status %r" % status)
        concl = c.get("conclusion", "success" if status == "completed" else None)
        if concl not in CHECK_CONCLUSIONS:
            raise AdminError("bad check conclusion %r" % concl)
        cid = int(c.get("id") or self.new_id())
        return {"id": cid, "name": c.get("name", "check"), "head_sha": sha,
                "status": status, "conclusion": concl,
                "external_id": c.get("external_id", ""),
                "started_at": c.get("started_at") or self.synthetic_time(),
                "completed_at": (c.get("completed_at") or self.synthetic_time())
                if status == "completed" else None,
                "app": {"id": c.get("app_id", 15368), "slug": c.get("app_slug", "github-actions")},
                "output": {"title": c.get("title"), "summary": c.get("summary"),
                           "text": None, "annotations_count": 0}}

    def set_checks(self, spec):
        with self.lock:
            repo = self.find_repo(spec.get("repo", "")) or self.add_repo({"full_name": spec.get("repo", "")})
            sha = spec.get("sha")
            if not sha:
                raise AdminError("sha required")
            new = [self._norm_check(c, sha) for c in spec.get("check_runs", [])]
            if spec.get("replace", True):
                repo["checks"][sha] = new
            else:
                repo["checks"].setdefault(sha, []).extend(new)
            return repo["checks"][sha]

    def set_statuses(self, spec):
        with self.lock:
            repo = self.find_repo(spec.get("repo", "")) or self.add_repo({"full_name": spec.get("repo", "")})
            sha = spec.get("sha")
            if not sha:
                raise AdminError("sha required")
            new = []
            for s in spec.get("statuses", []):
                if s.get("state") not in STATUS_STATES:
                    raise AdminError("bad status state %r" % s.get("state"))
                t = s.get("created_at") or self.synthetic_time()
                new.append({"id": int(s.get("id") or self.new_id()),
                            "context": s.get("context", "default"), "state": s["state"],
                            "description": s.get("description"),
                            "target_url": s.get("target_url"),
                            "created_at": t, "updated_at": t})
            if spec.get("replace", True):
                repo["statuses"][sha] = new
            else:
                repo["statuses"].setdefault(sha, []).extend(new)
            return repo["statuses"][sha]

    def push(self, spec):
        with self.lock:
            sha = spec.get("sha") or rand_sha()
            if spec.get("pr") is not None:
                repo, pr = self._admin_pr(spec)
                self._move_pr_head(repo, pr, sha, spec)
                return {"repo": repo["full_name"], "pr": pr["number"], "sha": sha}
            repo = self.find_repo(spec.get("repo", ""))
            if repo is None or not spec.get("branch"):
                raise AdminError("push needs repo and pr or branch")
            repo["branches"][spec["branch"]] = sha
            for pr in repo["pulls"].values():
                if pr["state"] == "open" and pr["head"]["ref"] == spec["branch"]:
                    self._move_pr_head(repo, pr, sha, spec)
            return {"repo": repo["full_name"], "branch": spec["branch"], "sha": sha}

    def _move_pr_head(self, repo, pr, sha, spec):
        pr["head"]["sha"] = sha
        repo["branches"][pr["head"]["ref"]] = sha
        if "mergeable" in spec:
            pr["mergeable"] = spec["mergeable"]
        if "files" in spec:
            pr["files"] = self._norm_files(spec["files"])
        pr["commits"] = pr.get("commits", 1) + 1
        pr["updated_at"] = self.synthetic_time()
        pr.setdefault("files_at", {})[sha] = pr["files"]

    def add_fault(self, f):
        if not isinstance(f, dict):
            raise AdminError("fault must be an object")
        try:
            rx = re.compile(f.get("path_regex", ".*"))
        except re.error as e:
            raise AdminError("bad path_regex: %s" % e)
        rl = f.get("rate_limit")
        if rl is not None and (not isinstance(rl, dict) or rl.get("kind") not in ("primary", "secondary")):
            raise AdminError("rate_limit.kind must be primary or secondary")
        if not any(k in f for k in ("status", "delay_ms", "hang_ms", "rate_limit", "close")):
            raise AdminError("fault needs status, delay_ms, hang_ms, rate_limit or close")
        times = f.get("times", 1)
        if times is not None and (not is_int(times) or (times < 1 and times != -1)):
            raise AdminError("times must be a positive integer, or -1/null for always")
        with self.lock:
            rec = {"id": next(self._fault_ids), "method": str(f.get("method", "*")).upper(),
                   "path_regex": rx.pattern, "rx": rx, "status": f.get("status"),
                   "body": f.get("body"), "headers": f.get("headers") or {},
                   "delay_ms": f.get("delay_ms"), "hang_ms": f.get("hang_ms"),
                   "then": f.get("then", "respond"), "rate_limit": rl,
                   "close": bool(f.get("close", False)), "skip": int(f.get("skip", 0)),
                   "times": None if times in (None, -1) else int(times), "hits": 0}
            self.faults.append(rec)
            return self._fault_view(rec)

    @staticmethod
    def _fault_view(rec):
        return {k: v for k, v in rec.items() if k != "rx"}

    # ------------------------------------------------------------------ views
    def state_view(self):
        with self.lock:
            repos = {}
            for r in self.repos.values():
                rv = copy.deepcopy(r)
                rv["pulls"] = {str(n): self._pr_admin_view(r, p) for n, p in r["pulls"].items()}
                repos[r["full_name"]] = rv
            return {"app_id": self.app_id, "client_id": self.client_id,
                    "config": dict(self.config),
                    "app_keys": [key_fingerprint(k) for k in self.keys],
                    "installations": [copy.deepcopy(i) for i in self.installations.values()],
                    "repos": repos,
                    "events": copy.deepcopy(self.events),
                    "merges": [e for e in copy.deepcopy(self.events) if e["type"] == "merge"],
                    "comments": [e for e in copy.deepcopy(self.events) if e["type"] == "comment"],
                    "deployments": [e for e in copy.deepcopy(self.events) if e["type"] == "deployment"],
                    "dispatches": [e for e in copy.deepcopy(self.events) if e["type"] == "dispatch"],
                    "pull_requests_created": [e for e in copy.deepcopy(self.events) if e["type"] == "pull_create"],
                    "tokens": self.tokens_view(),
                    "faults": [self._fault_view(f) for f in self.faults],
                    "latency_ms": self.latency_ms,
                    "push_on_next": copy.deepcopy(self.push_on_next)}

    def _pr_admin_view(self, repo, pr):
        v = copy.deepcopy(pr)
        v["base"]["sha"] = repo["branches"].get(pr["base"]["ref"])
        return v

    def tokens_view(self):
        now = self.now()
        out = []
        for h, t in self.tokens.items():
            v = {k: copy.deepcopy(t[k]) for k in t if k != "expires_ts"}
            v["expired"] = now >= t["expires_ts"]
            out.append(v)
        return out

    # ------------------------------------------------------------------ request log
    def log_request(self, entry):
        with self.lock:
            self.req_seq += 1
            entry["seq"] = self.req_seq
            self.requests.append(entry)
            excess = len(self.requests) - int(self.config["request_log_max"])
            if excess > 0:
                del self.requests[:excess]

    # ------------------------------------------------------------------ main entry
    def handle_api(self, h, method, raw_path, query, body_bytes, conn_id):
        t0 = time.time()
        hdr = h.headers
        entry = {"kind": "api", "time": iso(t0), "t": t0, "method": method, "path": raw_path,
                 "query": urllib.parse.parse_qs(query, keep_blank_values=True),
                 "query_string": query, "connection_id": conn_id, "auth": "none",
                 "token_sha256": None, "jwt_claims": None, "jwt_header": None,
                 "headers": {k: hdr.get(k) for k in ("User-Agent", "Accept",
                                                     "X-GitHub-Api-Version",
                                                     "Content-Type", "Connection")},
                 "body": None, "fault": None, "route": None, "status": None}
        if body_bytes:
            try:
                entry["body"] = json.loads(body_bytes.decode("utf-8"))
            except Exception:
                entry["body"] = body_bytes.decode("utf-8", "replace")
        try:
            resp = self._handle_api(h, entry, method, raw_path, query, body_bytes)
        except Exception:
            traceback.print_exc()
            resp = Response(500, error_body(500, "Server Error"))
        entry["status"] = None if resp.close else resp.status
        entry["dropped"] = resp.close
        entry["duration_ms"] = round((time.time() - t0) * 1000, 3)
        if resp.body is not None and isinstance(resp.body, dict) and "message" in resp.body:
            entry["response_message"] = resp.body["message"]
        self.log_request(entry)
        return resp

    def _sleep(self, ms):
        end = time.time() + ms / 1000.0
        while not self.stopping.is_set():
            left = end - time.time()
            if left <= 0:
                break
            self.stopping.wait(min(left, 0.1))

    def _match_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if f["method"] not in ("*", method):
                    continue
                if not f["rx"].search(path):
                    continue
                if f["skip"] > 0:
                    f["skip"] -= 1
                    continue
                f["hits"] += 1
                if f["times"] is not None:
                    f["times"] -= 1
                    if f["times"] <= 0:
                        self.faults.remove(f)
                return dict(f)
        return None

    def _handle_api(self, h, entry, method, raw_path, query, body_bytes):
        hdr = h.headers
        host = hdr.get("Host") or "127.0.0.1:%d" % h.server.server_address[1]
        prefix = ""
        path = raw_path
        if path == "/api/v3" or path.startswith("/api/v3/"):
            prefix, path = "/api/v3", path[len("/api/v3"):] or "/"
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"
        ctx = Ctx(self, method, raw_path, path, prefix, query, hdr, host)

        if self.latency_ms:
            self._sleep(self.latency_ms)

        # --- edge checks
        if not hdr.get("User-Agent"):
            return self._finish(ctx, Response(403, error_body(
                403, "Request forbidden by administrative rules. Please make sure your "
                "request has a User-Agent header "
                "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).")))

        # --- faults
        f = self._match_fault(method, path)
        if f is not None:
            entry["fault"] = f["id"]
            resp = self._apply_fault(ctx, f)
            if resp is not None:
                return resp

        ver = hdr.get("X-GitHub-Api-Version")
        if ver is not None and ver != API_VERSION:
            return self._finish(ctx, Response(400, error_body(
                400, "API version %s is not supported." % ver,
                "https://docs.github.com/rest/overview/api-versions")))
        accept = hdr.get("Accept")
        if accept is not None and not any(a in accept for a in (
                "application/vnd.github", "application/json", "*/*")):
            return self._finish(ctx, Response(415, error_body(
                415, "Unsupported 'Accept' header: %s. Must accept 'application/json'." % accept)))

        # --- body
        if body_bytes and method in ("POST", "PUT", "PATCH", "DELETE"):
            try:
                ctx.body = json.loads(body_bytes.decode("utf-8"))
            except Exception:
                return self._finish(ctx, Response(400, error_body(400, "Problems parsing JSON")))

        # --- /repositories/{id}/... form
        m = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
        if m:
            with self.lock:
                r = self.repo_by_id(int(m.group(1)))
            if r is None:
                return self._finish(ctx, Response(404, error_body(404, "Not Found")))
            path = "/repos/%s%s" % (r["full_name"], m.group(2) or "")
            ctx.path = path

        # --- routing
        route = None
        for (rm, rx, name, auth) in ROUTES:
            mm = rx.fullmatch(path)
            if mm and (rm == method or (method == "HEAD" and rm == "GET")):
                route = (name, auth)
                ctx.params = {k: urllib.parse.unquote(v) for k, v in mm.groupdict().items()}
                break
        if route is None:
            return self._finish(ctx, Response(404, error_body(404, "Not Found")))
        ctx.route = route[0]
        entry["route"] = route[0]

        # --- renamed repositories
        if "owner" in ctx.params:
            with self.lock:
                r = self.find_repo("%s/%s" % (ctx.params["owner"], ctx.params["repo"]))
                target = self.find_repo(r["moved_to"]) if r and r.get("moved_to") else None
            if target is not None:
                rest = re.sub(r"^/repos/[^/]+/[^/]+", "", path)
                loc = ctx.url("/repositories/%d%s" % (target["id"], rest))
                if query:
                    loc += "?" + query
                st = 301 if method in ("GET", "HEAD") else 307
                return self._finish(ctx, Response(st, {"message": "Moved Permanently", "url": loc,
                                                       "documentation_url": DOC},
                                                  {"Location": loc}))

        # --- authentication
        try:
            self._authenticate(ctx, entry, route[1])
        except ApiError as e:
            return self._finish(ctx, self._error_response(e))

        # --- primary rate limit (natural exhaustion)
        if ctx.identity and ctx.route != "rate_limit":
            with self.lock:
                b = self._bucket(ctx.identity)
                if b["used"] >= b["limit"]:
                    return self._finish(ctx, Response(403, error_body(
                        403, self._rate_limit_message(ctx),
                        "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")),
                        count=False)

        # --- push-on-next race helper
        with self.lock:
            for p in list(self.push_on_next):
                if ctx.route not in BEFORE_ROUTES.get(p["before"], ()):
                    continue
                if ("%s/%s" % (ctx.params.get("owner"), ctx.params.get("repo"))).lower() != p["repo_key"]:
                    continue
                if ctx.route in ("compare", "git_tree"):
                    # A comparison whose head is the pull request's head now, or
                    # the tree of that head: reading the files the pull request
                    # has.  Another tree (the merge base's) does not fire it.
                    r_ = self.find_repo(p["repo_key"])
                    cur = r_["pulls"].get(p["pr"]) if r_ else None
                    asked = ctx.params["basehead"].partition("...")[2] \
                        if ctx.route == "compare" else ctx.params["tree_sha"]
                    if cur is None or asked != cur["head"]["sha"]:
                        continue
                elif int(ctx.params.get("number", -1)) != p["pr"]:
                    continue
                self.push_on_next.remove(p)
                spec = dict(p["spec"])
                self.push(spec)
                entry["push_on_next"] = spec

        # --- handler
        try:
            with self.lock:
                resp = getattr(self, "r_" + ctx.route)(ctx)
        except ApiError as e:
            resp = self._error_response(e)
        return self._finish(ctx, resp)

    def _error_response(self, e):
        return Response(e.status, error_body(e.status, e.message, e.doc, e.extra), e.headers)

    def _rate_limit_message(self, ctx):
        if ctx.token:
            return "API rate limit exceeded for installation ID %s." % ctx.token["installation_id"]
        return "API rate limit exceeded for app ID %s." % self.app_id

    def _bucket(self, identity):
        now = time.time()
        b = self.ratelimits.get(identity)
        limit = int(self.config["rate_limit"])
        if identity.startswith("ip:"):
            limit = int(self.config["unauth_rate_limit"])
        if b is None or now >= b["reset"]:
            b = {"used": 0, "reset": int(now) + 3600, "limit": limit}
            self.ratelimits[identity] = b
        b["limit"] = limit
        return b

    def _finish(self, ctx, resp, count=True):
        if resp.close:
            return resp
        with self.lock:
            ident = ctx.identity or "ip:127.0.0.1"
            b = self._bucket(ident)
            if count and ctx.route != "rate_limit" and not ident.startswith("ip:"):
                b["used"] += 1
            rl = {"x-ratelimit-limit": str(b["limit"]),
                  "x-ratelimit-remaining": str(max(0, b["limit"] - b["used"])),
                  "x-ratelimit-used": str(b["used"]),
                  "x-ratelimit-reset": str(int(b["reset"] + float(self.config["clock_offset"] or 0))),
                  "x-ratelimit-resource": "core"}
        for k, v in rl.items():
            resp.headers.setdefault(k, v)
        return resp

    def _apply_fault(self, ctx, f):
        if f.get("delay_ms"):
            self._sleep(int(f["delay_ms"]))
        if f.get("hang_ms"):
            self._sleep(int(f["hang_ms"]))
            if f.get("then") == "close":
                return Response(0, close=True)
        if f.get("close"):
            return Response(0, close=True)
        rl = f.get("rate_limit")
        if rl:
            now = self.now()
            limit = int(self.config["rate_limit"])
            if rl["kind"] == "primary":
                reset = int(now + float(rl.get("reset_in", 60)))
                hdrs = {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0",
                        "x-ratelimit-used": str(limit), "x-ratelimit-reset": str(reset),
                        "x-ratelimit-resource": rl.get("resource", "core")}
                if rl.get("omit_reset"):    # a proxy that drops it, say
                    del hdrs["x-ratelimit-reset"]
                msg = ("API rate limit exceeded for installation ID %s. If you reach out to GitHub "
                       "Support for help, please include the request ID %s."
                       % (rl.get("installation_id", "1"), secrets.token_hex(8).upper()))
                st = int(rl.get("status", 403))
                doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-primary-rate-limits"
            else:
                with self.lock:
                    ident = ctx.identity or "ip:127.0.0.1"
                    b = self._bucket(ident)
                    hdrs = {"x-ratelimit-limit": str(b["limit"]),
                            "x-ratelimit-remaining": str(max(0, b["limit"] - b["used"])),
                            "x-ratelimit-used": str(b["used"]),
                            "x-ratelimit-reset": str(int(b["reset"])),
                            "x-ratelimit-resource": "core"}
                if rl.get("retry_after") is not None:
                    hdrs["retry-after"] = str(rl["retry_after"])
                msg = ("You have exceeded a secondary rate limit. Please wait a few minutes before "
                       "you try again. If you reach out to GitHub Support for help, please include "
                       "the request ID %s." % secrets.token_hex(8).upper())
                st = int(rl.get("status", 403))
                doc = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
            hdrs.update(f.get("headers") or {})
            body = f.get("body") if f.get("body") is not None else error_body(st, msg, doc)
            return Response(st, body, hdrs)
        if f.get("status"):
            st = int(f["status"])
            body = f.get("body")
            if body is None:
                msgs = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable",
                        504: "Gateway Timeout", 404: "Not Found", 401: "Bad credentials",
                        403: "Forbidden", 422: "Validation Failed", 409: "Conflict",
                        405: "Method Not Allowed"}
                body = error_body(st, msgs.get(st, "Error"))
            return self._finish(ctx, Response(st, body, f.get("headers") or {}))
        return None  # delay-only fault: carry on normally

    # ------------------------------------------------------------------ authentication
    def _authenticate(self, ctx, entry, kind):
        auth = ctx.headers.get("Authorization")
        scheme, cred = None, None
        if auth:
            parts = auth.strip().split(None, 1)
            scheme = parts[0].lower()
            cred = parts[1].strip() if len(parts) > 1 else ""
        looks_jwt = bool(cred) and cred.count(".") == 2 and cred.startswith("eyJ")
        if auth is None:
            entry["auth"] = "none"
        elif scheme in ("bearer", "token") and looks_jwt:
            entry["auth"] = "jwt"
        elif scheme in ("bearer", "token"):
            entry["auth"] = "token"
            entry["token_sha256"] = sha256_hex(cred)
        else:
            entry["auth"] = scheme or "other"
        ctx.auth_kind = entry["auth"]

        if kind == "any":
            if entry["auth"] == "token":
                with self.lock:
                    t = self.tokens.get(entry["token_sha256"])
                    if t and not t["revoked"] and self.now() < t["expires_ts"]:
                        ctx.token = t
                        ctx.identity = "inst:%s" % t["installation_id"]
            return

        if kind == "jwt":
            if entry["auth"] != "jwt" or scheme != "bearer":
                raise ApiError(401, "A JSON web token could not be decoded")
            claims = self._verify_jwt(cred, entry)
            ctx.jwt_claims = claims
            ctx.identity = "app:%s" % self.app_id
            return

        # installation-token endpoints
        if entry["auth"] == "none":
            ctx.identity = None
            return  # anonymous: handlers decide (404 on private repos)
        if entry["auth"] == "jwt":
            self._verify_jwt(cred, entry)
            ctx.identity = "app:%s" % self.app_id
            raise ApiError(403, "Resource not accessible by integration",
                           doc="https://docs.github.com/rest")
        if entry["auth"] != "token" or not cred:
            raise ApiError(401, "Bad credentials")
        with self.lock:
            t = self.tokens.get(entry["token_sha256"])
            if t is None or t["revoked"] or self.now() >= t["expires_ts"]:
                if t is not None:
                    entry["token_state"] = "revoked" if t["revoked"] else "expired"
                else:
                    entry["token_state"] = "unknown"
                raise ApiError(401, "Bad credentials")
            t["uses"] += 1
            t["last_used_at"] = iso(self.now())
            ctx.token = t
            ctx.identity = "inst:%s" % t["installation_id"]

    def _verify_jwt(self, cred, entry):
        bad = ApiError(401, "A JSON web token could not be decoded")
        parts = cred.split(".")
        if len(parts) != 3:
            raise bad
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except Exception:
            raise bad
        entry["jwt_header"] = header
        entry["jwt_claims"] = claims
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise bad
        if header.get("alg") != "RS256":
            entry["jwt_error"] = "alg %r rejected" % header.get("alg")
            raise bad
        signing_input = (parts[0] + "." + parts[1]).encode("ascii")
        ok = False
        for key in self.keys:
            try:
                key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
                ok = True
                break
            except InvalidSignature:
                continue
        if not ok:
            entry["jwt_error"] = "signature"
            raise bad
        iss = claims.get("iss")
        if iss is None or isinstance(iss, bool) or not isinstance(iss, (int, str)):
            entry["jwt_error"] = "iss missing"
            raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
        if str(iss) != self.app_id and (self.client_id is None or iss != self.client_id):
            entry["jwt_error"] = "iss mismatch"
            raise bad
        now = self.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        iat_msg = ("'Issued at' claim ('iat') must be an Integer representing the time "
                   "that the assertion was issued")
        if not is_int(iat):
            entry["jwt_error"] = "iat type"
            raise ApiError(401, iat_msg)
        if iat > now + float(self.config["jwt_iat_leeway"]):
            entry["jwt_error"] = "iat in the future"
            raise ApiError(401, iat_msg)
        if not is_num(exp) or exp <= now:
            entry["jwt_error"] = "exp type or expired"
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value "
                                "representing the future time at which the assertion expires")
        maxlife = float(self.config["jwt_max_lifetime"])
        if exp - iat > maxlife or exp > now + maxlife:
            entry["jwt_error"] = "exp too far"
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return claims

    # ------------------------------------------------------------------ authorisation
    def _require_repo(self, ctx, perms, level):
        """Return the repo if the caller may use `perms` (alternatives) at `level`."""
        repo = self.find_repo("%s/%s" % (ctx.params["owner"], ctx.params["repo"]))
        if repo is None:
            raise ApiError(404, "Not Found")
        need = LEVELS[level]
        t = ctx.token
        if t is None:  # anonymous
            if repo["private"] or need > 1:
                if need > 1 and not repo["private"]:
                    raise ApiError(401, "Requires authentication")
                raise ApiError(404, "Not Found")
            return repo
        if not self._token_covers(t, repo):
            if repo["private"] or need > 1:
                raise ApiError(404, "Not Found")
            return repo  # public repo, read access
        tp = t["permissions"]
        if not any(LEVELS.get(tp.get(p), 0) >= need for p in perms):
            accepted = "; ".join("%s=%s" % (p, level) for p in perms)
            raise ApiError(403, "Resource not accessible by integration",
                           headers={"x-accepted-github-permissions": accepted})
        return repo

    def _token_covers(self, t, repo):
        key = repo["full_name"].lower()
        if t["repositories"] is None:
            inst = self.installations.get(t["installation_id"])
            return inst is not None and key in self.installation_repos(inst)
        return key in t["repositories"]

    def _pr(self, repo, number):
        pr = repo["pulls"].get(int(number))
        if pr is None:
            raise ApiError(404, "Not Found")
        return pr

    def _bot(self):
        slug = self.config["app_slug"]
        return {"login": slug + "[bot]", "id": 41898282 + int(self.app_id) % 1000,
                "type": "Bot", "html_url": "https://github.com/apps/" + slug}

    def _resolve_ref(self, repo, ref, allow_sha=True):
        """Return the commit sha for a branch, tag, refs/... or a 40-hex sha, else None."""
        for pfx in ("refs/heads/", "heads/"):
            if ref.startswith(pfx) and ref[len(pfx):] in repo["branches"]:
                return repo["branches"][ref[len(pfx):]]
        for pfx in ("refs/tags/", "tags/"):
            if ref.startswith(pfx) and ref[len(pfx):] in repo["tags"]:
                return repo["tags"][ref[len(pfx):]]
        if ref in repo["branches"]:
            return repo["branches"][ref]
        if ref in repo["tags"]:
            return repo["tags"][ref]
        if allow_sha and re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        return None

    # ------------------------------------------------------------------ JSON shapes
    def _user(self, login):
        return {"login": login, "id": abs(hash(login)) % 10**8, "type": "User",
                "html_url": "https://github.com/" + login}

    def _repo_json(self, ctx, repo):
        return {"id": repo["id"], "node_id": "R_%d" % repo["id"], "name": repo["name"],
                "full_name": repo["full_name"], "private": repo["private"],
                "owner": {"login": repo["owner"], "type": "Organization"},
                "html_url": "https://github.com/" + repo["full_name"],
                "url": ctx.url("/repos/" + repo["full_name"]),
                "default_branch": repo["default_branch"],
                "allow_merge_commit": "merge" in repo["allowed_merge_methods"],
                "allow_squash_merge": "squash" in repo["allowed_merge_methods"],
                "allow_rebase_merge": "rebase" in repo["allowed_merge_methods"]}

    def _pr_json(self, ctx, repo, pr):
        base_sha = repo["branches"].get(pr["base"]["ref"])
        adds = sum(f["additions"] for f in pr["files"])
        dels = sum(f["deletions"] for f in pr["files"])
        rj = {"id": repo["id"], "name": repo["name"], "full_name": repo["full_name"],
              "private": repo["private"], "default_branch": repo["default_branch"]}
        mergeable = pr["mergeable"]
        if pr["merged"] or pr["state"] == "closed":
            mstate = "unknown"
        elif mergeable is None:
            mstate = "unknown"
        elif mergeable is False:
            mstate = "dirty"
        else:
            mstate = "draft" if pr["draft"] else "clean"
        return {"url": ctx.url("/repos/%s/pulls/%d" % (repo["full_name"], pr["number"])),
                "id": pr["id"], "node_id": "PR_%d" % pr["id"],
                "html_url": "https://github.com/%s/pull/%d" % (repo["full_name"], pr["number"]),
                "number": pr["number"], "state": pr["state"], "locked": False,
                "title": pr["title"], "body": pr["body"], "user": self._user(pr["user"]["login"]),
                "created_at": pr["created_at"], "updated_at": pr["updated_at"],
                "closed_at": pr["closed_at"], "merged_at": pr["merged_at"],
                "merge_commit_sha": pr["merge_commit_sha"], "draft": pr["draft"],
                "head": {"label": "%s:%s" % (repo["owner"], pr["head"]["ref"]),
                         "ref": pr["head"]["ref"], "sha": pr["head"]["sha"],
                         "user": {"login": repo["owner"]}, "repo": rj},
                "base": {"label": "%s:%s" % (repo["owner"], pr["base"]["ref"]),
                         "ref": pr["base"]["ref"], "sha": base_sha,
                         "user": {"login": repo["owner"]}, "repo": rj},
                "merged": pr["merged"], "mergeable": mergeable, "rebaseable": mergeable,
                "mergeable_state": mstate,
                "merged_by": self._user(pr["merged_by"]) if pr["merged_by"] else None,
                "comments": sum(1 for c in repo["comments"] if c["issue_number"] == pr["number"]),
                "review_comments": 0, "commits": pr.get("commits", 1),
                "additions": adds, "deletions": dels, "changed_files": len(pr["files"])}

    def _installation_json(self, ctx, inst):
        return {"id": inst["id"],
                "account": {"login": inst["account"], "id": abs(hash(inst["account"])) % 10**8,
                            "type": inst["target_type"]},
                "app_id": int(self.app_id) if self.app_id.isdigit() else self.app_id,
                "app_slug": self.config["app_slug"], "client_id": self.client_id,
                "target_id": abs(hash(inst["account"])) % 10**8,
                "target_type": inst["target_type"],
                "repository_selection": inst["repository_selection"],
                "permissions": dict(inst["permissions"]), "events": list(inst["events"]),
                "access_tokens_url": ctx.url("/app/installations/%d/access_tokens" % inst["id"]),
                "repositories_url": ctx.url("/installation/repositories"),
                "html_url": "https://github.com/organizations/%s/settings/installations/%d"
                            % (inst["account"], inst["id"]),
                "created_at": inst["created_at"], "updated_at": inst["created_at"],
                "single_file_name": None, "has_multiple_single_files": False,
                "single_file_paths": [],
                "suspended_at": iso(self.now()) if inst["suspended"] else None,
                "suspended_by": None}

    def _paginate(self, ctx, items, default=30, maximum=100):
        per = ctx.qint("per_page", default)
        if per < 1:
            per = default
        per = min(per, maximum)
        page = max(1, ctx.qint("page", 1))
        total = len(items)
        last = max(1, math.ceil(total / per))
        chunk = items[(page - 1) * per: page * per]
        headers = {}
        if last > 1 or page > 1:
            base_q = [(k, v) for (k, v) in urllib.parse.parse_qsl(ctx.query_string, keep_blank_values=True)
                      if k != "page"]

            def link(p, rel):
                q = urllib.parse.urlencode(base_q + [("page", str(p))])
                return '<http://%s%s?%s>; rel="%s"' % (ctx.host, ctx.orig_path, q, rel)
            links = []
            if page > 1:
                links.append(link(min(page - 1, last), "prev"))
            if page < last:
                links.append(link(page + 1, "next"))
                links.append(link(last, "last"))
            if page > 1:
                links.append(link(1, "first"))
            if links:
                headers["Link"] = ", ".join(links)
        return chunk, headers, total

    # ------------------------------------------------------------------ handlers: App
    def r_app_get(self, ctx):
        slug = self.config["app_slug"]
        return Response(200, {"id": int(self.app_id) if self.app_id.isdigit() else self.app_id,
                              "slug": slug, "client_id": self.client_id, "name": slug,
                              "owner": {"login": "threshold"},
                              "installations_count": len(self.installations),
                              "permissions": {}, "events": []})

    def r_app_installations(self, ctx):
        items = [self._installation_json(ctx, i) for i in
                 sorted(self.installations.values(), key=lambda i: i["id"])]
        chunk, hdrs, _ = self._paginate(ctx, items)
        return Response(200, chunk, hdrs)

    def r_app_installation(self, ctx):
        inst = self.installations.get(int(ctx.params["iid"]))
        if inst is None:
            raise ApiError(404, "Not Found")
        return Response(200, self._installation_json(ctx, inst))

    def r_repo_installation(self, ctx):
        repo = self.find_repo("%s/%s" % (ctx.params["owner"], ctx.params["repo"]))
        inst = self.installation_for_repo(repo) if repo else None
        if inst is None:
            raise ApiError(404, "Not Found",
                           doc="https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app")
        return Response(200, self._installation_json(ctx, inst))

    def r_create_token(self, ctx):
        doc = "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app"
        inst = self.installations.get(int(ctx.params["iid"]))
        if inst is None:
            raise ApiError(404, "Not Found", doc=doc)
        if inst["suspended"]:
            raise ApiError(403, "This installation has been suspended", doc=doc)
        body = ctx.body_obj()
        names = check_type(body, "repositories", list, "of type array")
        ids = check_type(body, "repository_ids", list, "of type array")
        perms = check_type(body, "permissions", dict, "of type object")
        inst_repos = self.installation_repos(inst)
        not_acc = ApiError(422, "There is at least one repository that does not exist or is "
                                "not accessible to the parent installation.", doc=doc)
        selected = None
        if names is not None or ids is not None:
            selected = []
            for n in names or []:
                if not isinstance(n, str):
                    raise invalid_type("repositories", names, "an array of strings")
                if "/" in n:
                    raise not_acc  # names only; owner comes from the installation
                key = ("%s/%s" % (inst["account"], n)).lower()
                if key not in inst_repos:
                    raise not_acc
                if key not in selected:
                    selected.append(key)
            for rid in ids or []:
                if not is_int(rid):
                    raise invalid_type("repository_ids", ids, "an array of integers")
                r = self.repo_by_id(rid)
                if r is None or r["full_name"].lower() not in inst_repos:
                    raise not_acc
                if r["full_name"].lower() not in selected:
                    selected.append(r["full_name"].lower())
            if len(selected) > 500:
                raise ApiError(422, "Too many repositories requested (maximum 500).", doc=doc)
        ip = inst["permissions"]
        if perms is None:
            granted = dict(ip)
        else:
            granted = {}
            for k, v in perms.items():
                if v not in LEVELS:
                    raise ApiError(422, "Invalid request.\n\nFor 'properties/%s', %s is not one of "
                                        "[\"read\", \"write\"]." % (k, json.dumps(v)), doc=doc)
                if LEVELS.get(ip.get(k), 0) < LEVELS[v]:
                    raise ApiError(422, "The permissions requested are not granted to this "
                                        "installation.", doc=doc)
                granted[k] = v
            if self.config["implicit_metadata"]:
                granted.setdefault("metadata", "read")
        length = int(self.config["token_length"])
        token = self.config["token_prefix"] + "".join(secrets.choice(ALNUM) for _ in range(length))
        now = self.now()
        exp_ts = int(now) + int(self.config["token_ttl"])
        h = sha256_hex(token)
        rec = {"id": self.new_id(), "sha256": h, "token": token, "installation_id": inst["id"],
               "repositories": selected, "permissions": granted, "created_at": iso(now),
               "expires_at": iso(exp_ts), "expires_ts": exp_ts, "revoked": False,
               "revoked_at": None, "uses": 0, "last_used_at": None,
               "requested": {"repositories": names, "repository_ids": ids, "permissions": perms},
               "jwt_iat": (ctx.jwt_claims or {}).get("iat"),
               "jwt_exp": (ctx.jwt_claims or {}).get("exp")}
        self.tokens[h] = rec
        out = {"token": token, "expires_at": rec["expires_at"], "permissions": granted,
               "repository_selection": "selected" if selected is not None
               else inst["repository_selection"]}
        if selected is not None:
            out["repositories"] = [self._repo_json(ctx, self.find_repo(k)) for k in selected]
        return Response(201, out)

    def r_revoke_token(self, ctx):
        if ctx.token is None:
            raise ApiError(401, "Requires authentication")
        ctx.token["revoked"] = True
        ctx.token["revoked_at"] = iso(self.now())
        return Response(204)

    def r_installation_repos(self, ctx):
        if ctx.token is None:
            raise ApiError(401, "Requires authentication")
        t = ctx.token
        inst = self.installations.get(t["installation_id"])
        keys = t["repositories"] if t["repositories"] is not None else \
            (self.installation_repos(inst) if inst else [])
        items = [self._repo_json(ctx, self.find_repo(k)) for k in keys if self.find_repo(k)]
        chunk, hdrs, total = self._paginate(ctx, items)
        return Response(200, {"total_count": total, "repository_selection":
                              "selected" if t["repositories"] is not None else
                              (inst or {}).get("repository_selection", "selected"),
                              "repositories": chunk}, hdrs)

    def r_rate_limit(self, ctx):
        ident = ctx.identity or "ip:127.0.0.1"
        b = self._bucket(ident)
        core = {"limit": b["limit"], "used": b["used"],
                "remaining": max(0, b["limit"] - b["used"]), "reset": int(b["reset"])}
        return Response(200, {"resources": {"core": core}, "rate": core})

    # ------------------------------------------------------------------ handlers: repos
    def r_repo_get(self, ctx):
        repo = self._require_repo(ctx, ["metadata"], "read")
        return Response(200, self._repo_json(ctx, repo))

    def r_branch_get(self, ctx):
        repo = self._require_repo(ctx, ["contents", "metadata"], "read")
        name = ctx.params["branch"]
        gd = self.git_dir(repo)
        if gd is not None:
            sha = self.git_refs(gd).get("refs/heads/" + name)
        else:
            sha = repo["branches"].get(name)
        if sha is None:
            raise ApiError(404, "Branch not found",
                           doc="https://docs.github.com/rest/branches/branches#get-a-branch")
        prot = name in repo.get("protected", [])
        burl = ctx.url("/repos/%s/branches/%s" % (repo["full_name"], urllib.parse.quote(name)))
        return Response(200, {
            "name": name,
            "commit": {"sha": sha, "url": ctx.url("/repos/%s/commits/%s" % (repo["full_name"], sha))},
            "_links": {"self": burl, "html": "https://github.com/%s/tree/%s" % (repo["full_name"], name)},
            "protected": prot,
            "protection": {"enabled": prot, "required_status_checks": {
                "enforcement_level": "non_admins" if prot else "off", "contexts": [], "checks": []}},
            "protection_url": burl + "/protection"})

    def r_collab_permission(self, ctx):
        """A user's permission on the repository.  `permission` is the legacy
        level (admin, write, read, none: maintain reads as write, triage as
        read), `role_name` the role.  A user the repository does not list is a
        collaborator with write access if seeded as a reviewer associated
        OWNER, MEMBER or COLLABORATOR (the emulator's default, so a seeded
        approval counts); otherwise read on a public repository, none on a
        private one."""
        repo = self._require_repo(ctx, ["metadata"], "read")
        login = ctx.params["user"]
        if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", login):
            raise ApiError(404, "Not Found",
                           doc="https://docs.github.com/rest/collaborators/collaborators"
                               "#get-repository-permissions-for-a-user")
        role = repo["collaborators"].get(login.lower())
        if role is None:
            role = "none" if repo["private"] else "read"
            for pr in repo["pulls"].values():
                for rv in pr.get("reviews", []):
                    if ((rv["user"] or {}).get("login") or "").lower() == login.lower() and \
                            rv.get("author_association") in ("OWNER", "MEMBER", "COLLABORATOR"):
                        role = "write"
        legacy = {"admin": "admin", "maintain": "write", "write": "write",
                  "triage": "read", "read": "read", "none": "none"}[role]
        return Response(200, {"permission": legacy, "role_name": role,
                              "user": {"login": login, "type": "User"}})

    def r_compare(self, ctx):
        repo = self._require_repo(ctx, ["contents"], "read")
        doc = "https://docs.github.com/rest/commits/commits#compare-two-commits"
        base, sep, head = ctx.params["basehead"].partition("...")
        if not sep or not base or not head:
            raise ApiError(404, "Not Found", doc=doc)
        gd = self.git_dir(repo)
        if gd is None:
            return self._compare_pulls(ctx, repo, base, head, doc)
        b, hd = self.git_resolve(gd, base), self.git_resolve(gd, head)
        if b is None or hd is None:
            raise ApiError(404, "Not Found", doc=doc)
        p = self.git(gd, "merge-base", b, hd, check=False)
        mb = p.stdout.decode().strip()
        if p.returncode != 0 or not mb:
            raise ApiError(404, "No common ancestor between %s and %s." % (base, head), doc=doc)
        ahead = int(self.git(gd, "rev-list", "--count", "%s..%s" % (b, hd)).strip())
        behind = int(self.git(gd, "rev-list", "--count", "%s..%s" % (hd, b)).strip())
        if b == hd:
            status = "identical"
        elif mb == b:
            status = "ahead"       # base is an ancestor of head
        elif mb == hd:
            status = "behind"      # head is an ancestor of base
        else:
            status = "diverged"
        commits = []
        log = self.git(gd, "log", "--reverse", "--max-count=250", "--format=%H%x00%P%x00%s",
                       "%s..%s" % (b, hd))
        for line in log.splitlines():
            sha, parents, subject = (line.split("\0") + ["", ""])[:3]
            commits.append({"sha": sha, "commit": {"message": subject},
                            "parents": [{"sha": x} for x in parents.split()]})
        files = []
        st = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied",
              "T": "changed"}
        # Renames detected, as GitHub does: one entry, with the old name.
        for line in self.git(gd, "diff", "--name-status", "-M", mb, hd).splitlines()[:300]:
            parts = line.split("\t")
            f = {"filename": parts[-1], "status": st.get(parts[0][:1], "modified")}
            if parts[0][:1] in ("R", "C") and len(parts) == 3:
                f["previous_filename"] = parts[1]
            files.append(f)
        url = ctx.url("/repos/%s/compare/%s...%s" % (repo["full_name"], base, head))
        return Response(200, {
            "url": url, "html_url": "https://github.com/%s/compare/%s...%s" % (repo["full_name"], base, head),
            "base_commit": {"sha": b}, "merge_base_commit": {"sha": mb},
            "status": status, "ahead_by": ahead, "behind_by": behind,
            "total_commits": ahead, "commits": commits, "files": files})

    def _file_items(self, ctx, repo, sha, files):
        items = []
        for f in files:
            v = dict(f)
            v["blob_url"] = "https://github.com/%s/blob/%s/%s" % (repo["full_name"], sha, f["filename"])
            v["raw_url"] = "https://github.com/%s/raw/%s/%s" % (repo["full_name"], sha, f["filename"])
            v["contents_url"] = ctx.url("/repos/%s/contents/%s?ref=%s" % (
                repo["full_name"], urllib.parse.quote(f["filename"]), sha))
            items.append(v)
        return items

    def _compare_pulls(self, ctx, repo, base, head, doc):
        """A repository without git objects: the commits its pull requests' heads have
        been are known with the files each changed against the pull request's base, so
        comparing a base branch with one of them lists those (at most 300, on the first
        page only, as GitHub does)."""
        b, hd = self._resolve_ref(repo, base), self._resolve_ref(repo, head)
        if b is None or hd is None:
            raise ApiError(404, "Not Found", doc=doc)
        # Only against the base the pull request's files were made for: the
        # model knows no other diff.
        found = [p for p in repo["pulls"].values()
                 if hd in p.get("files_at", {}) and base in (p["base"]["ref"], repo["branches"].get(p["base"]["ref"]))]
        if not found:
            raise ApiError(404, "Not Found", doc=doc)
        pr = found[0]
        # The pull request's commits, oldest first, its head last; pages of
        # commits (with a Link) only when asked for, files on the first only.
        n = pr.get("commits", 1)
        commits = [{"sha": sha256_hex("%s:%d:%d" % (hd, pr["number"], i))[:40],
                    "commit": {"message": "%s (%d)" % (pr["title"], i)}, "parents": []}
                   for i in range(n - 1)]
        commits.append({"sha": hd, "commit": {"message": pr["title"]}, "parents": []})
        paged = ctx.q("page") is not None or ctx.q("per_page") is not None
        hdrs = {}
        if paged:
            commits, hdrs, _ = self._paginate(ctx, commits)
        else:
            commits = commits[-250:]
        files = pr["files_at"][hd][:300] if not paged or ctx.qint("page", 1) <= 1 else []
        url = ctx.url("/repos/%s/compare/%s...%s" % (repo["full_name"], base, head))
        return Response(200, {
            "url": url, "html_url": "https://github.com/%s/compare/%s...%s" % (repo["full_name"], base, head),
            "base_commit": {"sha": b}, "merge_base_commit": {"sha": b},
            "status": "ahead", "ahead_by": n, "behind_by": 0,
            "total_commits": n, "commits": commits,
            "files": self._file_items(ctx, repo, hd, files)}, hdrs)

    # ------------------------------------------------------------------ git trees
    def r_git_tree(self, ctx):
        """GET /repos/{o}/{r}/git/trees/{tree_sha}: a tree's entries, from git for a
        git-backed repository, else from the model of its pull requests' files."""
        repo = self._require_repo(ctx, ["contents"], "read")
        doc = "https://docs.github.com/rest/git/trees#get-a-tree"
        want = ctx.params["tree_sha"]
        # GitHub: any value enables it, even 0 or false; only its absence does not.
        recursive = "recursive" in ctx.query
        gd = self.git_dir(repo)
        if gd is not None:
            sha, entries = self._git_tree_entries(gd, want, recursive)
        else:
            sha, entries = self._model_tree_entries(repo, want, recursive)
        if sha is None:
            raise ApiError(404, "Not Found", doc=doc)
        base = "/repos/%s/git/" % repo["full_name"]
        limit = int(self.config["tree_entries_max"])
        items, size, truncated = [], 0, False
        for (path, mode, typ, osha, osize) in entries:
            e = {"path": path, "mode": mode, "type": typ, "sha": osha}
            if typ == "blob":
                e["size"] = osize
                e["url"] = ctx.url(base + "blobs/" + osha)
            elif typ == "tree":
                e["url"] = ctx.url(base + "trees/" + osha)
            # (a submodule's commit is in another repository: no url)
            if recursive:
                # GitHub's limits hold for recursive listings: the first
                # entries, up to 100,000 (tree_entries_max) and 7 MB.
                size += len(json.dumps(e)) + 1
                if len(items) >= limit or size > TREE_MAX_BYTES:
                    truncated = True
                    break
            items.append(e)
        return Response(200, {"sha": sha, "url": ctx.url(base + "trees/" + sha),
                              "tree": items, "truncated": truncated})

    def _git_tree_entries(self, gd, rev, recursive):
        """(tree sha, [(path, mode, type, sha, size)]) in git's order, for a tree or
        commit sha or a ref name; (None, []) if git knows no tree by that name."""
        if not rev or rev.startswith("-") or any(c in rev for c in "\0\n "):
            return None, []
        p = self.git(gd, "rev-parse", "--verify", "--quiet", rev + "^{tree}", check=False)
        tree = p.stdout.decode().strip() if p.returncode == 0 else ""
        if not tree:
            return None, []
        # -t: subtrees are entries too (before their contents), as on GitHub;
        # -l: blob sizes; -z: paths unquoted.
        args = ["ls-tree", "-l", "-z"] + (["-r", "-t"] if recursive else []) + [tree]
        entries = []
        for rec in self.git(gd, *args).split("\0"):
            if not rec:
                continue
            meta, _, path = rec.partition("\t")
            mode, typ, sha, size = meta.split()
            entries.append((path, mode, typ, sha, int(size) if size.isdigit() else None))
        return tree, entries

    # A repository without git objects has trees made up from its pull requests,
    # consistent with _compare_pulls: the tree of the merge base it answers (the
    # base branch's tip) and the tree of a head H differ, blob by blob, in exactly
    # the files the pull request lists at H.
    #   - base tree (any commit the repo knows that is no pull request's head):
    #     every path some pull request lists as existing before its change
    #     (modified/changed/removed/unchanged, previous_filename of renamed/copied),
    #     blob sha from ("base", path);
    #   - tree of a head H: the tree of its pull request's base tip (the base
    #     tree, or the head of the pull request it is stacked on), minus H's
    #     removed files and renamed-away names, plus its other files with blob
    #     sha from (H, path);
    #   - directories are tree entries whose sha is git's tree hash of their
    #     sorted children, so tree shas are not commit shas and are stable.
    @staticmethod
    def _model_blob(key, path):
        return hashlib.sha1(("blob\0%s\0%s" % (key, path)).encode()).hexdigest()

    def _model_base_files(self, repo):
        """path -> (mode, blob sha) of the base tree."""
        files, done = {}, set()
        for pr in repo["pulls"].values():
            for fl in pr.get("files_at", {}).values():
                if id(fl) in done:   # a push without new files shares the list
                    continue
                done.add(id(fl))
                for f in fl:
                    st = f["status"]
                    if st in ("renamed", "copied"):
                        name = f.get("previous_filename")
                    elif st in ("modified", "changed", "removed", "unchanged"):
                        name = f["filename"]
                    else:
                        continue
                    if name and name not in files:
                        files[name] = ("100644", self._model_blob("base", name))
        return files

    def _model_head_pr(self, repo, sha):
        """The pull request whose head `sha` is or has been (as _compare_pulls picks it)."""
        for pr in repo["pulls"].values():
            if sha in pr.get("files_at", {}):
                return pr
        return None

    def _model_files(self, repo, commit, base_files, seen=()):
        """path -> (mode, blob sha) of the tree of a commit the repository knows."""
        pr = self._model_head_pr(repo, commit)
        if pr is None:
            return dict(base_files)
        below = repo["branches"].get(pr["base"]["ref"])
        if below is not None and below != commit and below not in seen \
                and self._model_head_pr(repo, below) is not None:
            # Stacked on another pull request's head: its tree is the base.
            files = self._model_files(repo, below, base_files, seen + (commit,))
        else:
            files = dict(base_files)
        for f in pr["files_at"][commit]:
            st, name = f["status"], f["filename"]
            if st == "removed":
                files.pop(name, None)
                continue
            if st == "renamed" and f.get("previous_filename"):
                files.pop(f["previous_filename"], None)
            if st != "unchanged":
                files[name] = ("100644", self._model_blob(commit, name))
        return files

    @staticmethod
    def _model_tree(files):
        """Root node of the directory tree of `files`; every node gets its git tree
        hash ("sha") and its entries in git's order ("entries": name, mode, type,
        sha, child node or None)."""
        def node():
            return {"blobs": {}, "dirs": {}}
        root = node()
        for path, (mode, sha) in files.items():
            parts = path.split("/")
            n = root
            for d in parts[:-1]:
                n = n["dirs"].setdefault(d, node())
            n["blobs"][parts[-1]] = (mode, sha)

        def seal(n):
            # git sorts a tree's entries by name, a subtree's name as if it ended in "/".
            keyed = [(name, name, mode, "blob", sha, None) for name, (mode, sha) in n["blobs"].items()]
            for name, child in n["dirs"].items():
                seal(child)
                keyed.append((name + "/", name, "040000", "tree", child["sha"], child))
            keyed.sort(key=lambda k: k[0].encode())
            body = b"".join(b"%s %s\0" % (mode.lstrip("0").encode(), name.encode()) + bytes.fromhex(sha)
                            for (_, name, mode, _, sha, _) in keyed)
            n["sha"] = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
            n["entries"] = [k[1:] for k in keyed]
        seal(root)
        return root

    def _model_tree_entries(self, repo, want, recursive):
        """As _git_tree_entries, from the model: `want` is a ref name, a commit the
        repository knows (a branch or tag tip, a merge commit, a pull request's head
        now or before) or the sha of one of their trees or subtrees."""
        base_files = self._model_base_files(repo)
        known = set(repo["branches"].values()) | set(repo["tags"].values())
        for pr in repo["pulls"].values():
            known.update(pr.get("files_at", {}))
            if pr.get("merge_commit_sha"):
                known.add(pr["merge_commit_sha"])
        commit = self._resolve_ref(repo, want, allow_sha=False)
        if commit is None and want in known:
            commit = want
        found = None
        if commit is not None:
            found = self._model_tree(self._model_files(repo, commit, base_files))
        elif re.fullmatch(r"[0-9a-f]{40}", want):
            # A tree sha: look through the trees of every state the model has
            # (the base tree once, then each head's).
            states = [None] + [c for c in known if self._model_head_pr(repo, c) is not None]
            for c in states:
                files = dict(base_files) if c is None else self._model_files(repo, c, base_files)
                stack = [self._model_tree(files)]
                while stack and found is None:
                    n = stack.pop()
                    if n["sha"] == want:
                        found = n
                    stack.extend(e[4] for e in n["entries"] if e[4] is not None)
                if found is not None:
                    break
        if found is None:
            return None, []
        entries = []

        def walk(n, prefix):
            for (name, mode, typ, sha, child) in n["entries"]:
                size = int(sha[:3], 16) + 1 if typ == "blob" else None   # made up, stable
                entries.append((prefix + name, mode, typ, sha, size))
                if recursive and child is not None:
                    walk(child, prefix + name + "/")
        walk(found, "")
        return found["sha"], entries

    def r_pull_get(self, ctx):
        repo = self._require_repo(ctx, ["pull_requests"], "read")
        pr = self._pr(repo, ctx.params["number"])
        out = self._pr_json(ctx, repo, pr)
        if pr.get("compute_mergeable_on_get") and pr["mergeable"] is None:
            pr["mergeable"] = True  # "computed" for the next GET
            pr["compute_mergeable_on_get"] = False
        return Response(200, out)

    def r_pull_files(self, ctx):
        repo = self._require_repo(ctx, ["pull_requests"], "read")
        pr = self._pr(repo, ctx.params["number"])
        items = self._file_items(ctx, repo, pr["head"]["sha"], pr["files"][:MAX_PR_FILES])
        chunk, hdrs, _ = self._paginate(ctx, items)
        return Response(200, chunk, hdrs)

    def r_pull_reviews(self, ctx):
        repo = self._require_repo(ctx, ["pull_requests"], "read")
        pr = self._pr(repo, ctx.params["number"])
        items = []
        for rv in pr["reviews"]:
            v = copy.deepcopy(rv)
            v["node_id"] = "PRR_%d" % rv["id"]
            v["html_url"] = "https://github.com/%s/pull/%d#pullrequestreview-%d" % (
                repo["full_name"], pr["number"], rv["id"])
            v["pull_request_url"] = ctx.url("/repos/%s/pulls/%d" % (repo["full_name"], pr["number"]))
            if v["submitted_at"] is None:
                del v["submitted_at"]
            items.append(v)
        chunk, hdrs, _ = self._paginate(ctx, items)
        return Response(200, chunk, hdrs)

    def r_pull_merge(self, ctx):
        doc = "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request"
        repo = self._require_repo(ctx, ["contents"], "write")
        pr = self._pr(repo, ctx.params["number"])
        body = ctx.body_obj()
        sha = check_type(body, "sha", str, "of type string")
        method = check_type(body, "merge_method", str, "of type string") or "merge"
        title = check_type(body, "commit_title", str, "of type string")
        message = check_type(body, "commit_message", str, "of type string")
        if method not in MERGE_METHODS:
            raise ApiError(422, "Validation Failed", doc=doc, extra={"errors": [
                {"resource": "PullRequest", "code": "invalid", "field": "merge_method",
                 "message": "merge_method must be one of merge, squash, rebase"}]})
        if method not in repo["allowed_merge_methods"]:
            raise ApiError(405, {"merge": "Merge commits are not allowed on this repository.",
                                 "squash": "Squash merges are not allowed on this repository.",
                                 "rebase": "Rebase merges are not allowed on this repository."}[method],
                           doc=doc)
        if pr["merged"] or pr["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable", doc=doc)
        if sha is not None and sha != pr["head"]["sha"]:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.", doc=doc)
        if pr["draft"]:
            raise ApiError(405, "Pull Request is still a draft", doc=doc)
        if pr["mergeable"] is False:
            raise ApiError(405, "Pull Request is not mergeable", doc=doc)
        base_ref = pr["base"]["ref"]
        merge_sha = hashlib.sha1(("%s:%s:%s:%s" % (pr["head"]["sha"], repo["branches"].get(base_ref),
                                                   method, secrets.token_hex(8))).encode()).hexdigest()
        old_base = repo["branches"].get(base_ref)
        repo["branches"][base_ref] = merge_sha
        now = iso(self.now())
        pr.update({"state": "closed", "merged": True, "merged_at": now, "closed_at": now,
                   "merge_commit_sha": merge_sha, "merged_by": self._bot()["login"],
                   "mergeable": None, "updated_at": now})
        ev = {"type": "merge", "repo": repo["full_name"], "pr": pr["number"],
              "requested_sha": sha, "head_sha": pr["head"]["sha"], "merge_method": method,
              "commit_title": title, "commit_message": message, "merge_sha": merge_sha,
              "base_ref": base_ref, "old_base_sha": old_base, "time": now,
              "token_sha256": ctx.token["sha256"] if ctx.token else None}
        repo["merges"].append(ev)
        self.events.append(ev)
        return Response(200, {"sha": merge_sha, "merged": True,
                              "message": "Pull Request successfully merged"})

    def r_pull_create(self, ctx):
        doc = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"
        repo = self._require_repo(ctx, ["pull_requests"], "write")
        body = ctx.body_obj()
        title = check_type(body, "title", str, "of type string")
        head = check_type(body, "head", str, "of type string")
        base = check_type(body, "base", str, "of type string")
        text = check_type(body, "body", str, "of type string")
        draft = check_type(body, "draft", bool, "of type boolean")
        check_type(body, "maintainer_can_modify", bool, "of type boolean")

        def vf(errors):
            return ApiError(422, "Validation Failed", extra={"errors": errors}, doc=doc)
        missing = [f for f, v in (("head", head), ("base", base)) if not v]
        if missing:
            raise vf([{"resource": "PullRequest", "field": f, "code": "missing_field"} for f in missing])
        if not title:
            raise vf([{"resource": "PullRequest", "field": "title", "code": "missing_field"}])
        head_ref = head
        if ":" in head:
            owner, head_ref = head.split(":", 1)
            if owner.lower() != repo["owner"].lower():
                raise vf([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        if base not in repo["branches"]:
            raise vf([{"resource": "PullRequest", "field": "base", "code": "invalid"}])
        if head_ref not in repo["branches"]:
            raise vf([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
        if head_ref == base or repo["branches"][head_ref] == repo["branches"][base]:
            raise vf([{"resource": "PullRequest", "code": "custom",
                       "message": "No commits between %s and %s" % (base, head_ref)}])
        for p in repo["pulls"].values():
            if p["state"] == "open" and p["head"]["ref"] == head_ref and p["base"]["ref"] == base:
                raise vf([{"resource": "PullRequest", "code": "custom",
                           "message": "A pull request already exists for %s:%s."
                                      % (repo["owner"], head_ref)}])
        number = repo["next_number"]
        pr = self.add_pull({"repo": repo["full_name"], "number": number, "title": title,
                            "body": text or "", "draft": bool(draft),
                            "head": {"ref": head_ref, "sha": repo["branches"][head_ref]},
                            "base": {"ref": base}, "user": self._bot()["login"]})
        pr["created_at"] = pr["updated_at"] = iso(self.now())
        if self.config["api_created_pr_mergeable_null"]:
            pr["mergeable"] = None
            pr["compute_mergeable_on_get"] = True
        ev = {"type": "pull_create", "repo": repo["full_name"], "pr": number, "head": head_ref,
              "base": base, "title": title, "body": text, "draft": bool(draft),
              "time": iso(self.now()), "token_sha256": ctx.token["sha256"] if ctx.token else None}
        self.events.append(ev)
        out = self._pr_json(ctx, repo, pr)
        return Response(201, out, {"Location": out["url"]})

    def r_check_runs(self, ctx):
        repo = self._require_repo(ctx, ["checks"], "read")
        ref = ctx.params["ref"]
        sha = self._resolve_ref(repo, ref)
        if sha is None:
            raise ApiError(422, "No commit found for SHA: %s" % ref,
                           doc="https://docs.github.com/rest/checks/runs#list-check-runs-for-a-git-reference")
        runs = list(repo["checks"].get(sha, []))
        if ctx.q("check_name"):
            runs = [r for r in runs if r["name"] == ctx.q("check_name")]
        if ctx.q("status"):
            runs = [r for r in runs if r["status"] == ctx.q("status")]
        if ctx.q("filter", "latest") == "latest":
            # GitHub keeps the newest run of each name within a check
            # suite, not across suites: another App's run of the same name
            # never hides this one.  A suite here is the App's runs on the
            # commit (GitHub makes one per App and head SHA by default).
            latest = {}
            for r in runs:
                k = (r["app"]["id"], r["name"])
                if k not in latest or r["id"] > latest[k]["id"]:
                    latest[k] = r
            runs = [r for r in runs if latest[(r["app"]["id"], r["name"])] is r]
        items = []
        for r in runs:
            v = copy.deepcopy(r)
            v["node_id"] = "CR_%d" % r["id"]
            v["url"] = ctx.url("/repos/%s/check-runs/%d" % (repo["full_name"], r["id"]))
            v["html_url"] = "https://github.com/%s/runs/%d" % (repo["full_name"], r["id"])
            v["details_url"] = v["html_url"]
            items.append(v)
        chunk, hdrs, total = self._paginate(ctx, items)
        return Response(200, {"total_count": total, "check_runs": chunk}, hdrs)

    def r_combined_status(self, ctx):
        repo = self._require_repo(ctx, ["statuses"], "read")
        ref = ctx.params["ref"]
        sha = self._resolve_ref(repo, ref)
        if sha is None:
            raise ApiError(422, "No commit found for SHA: %s" % ref,
                           doc="https://docs.github.com/rest/commits/statuses#get-the-combined-status-for-a-specific-reference")
        latest = {}
        for s in repo["statuses"].get(sha, []):
            latest[s["context"]] = s  # later entries are newer
        sts = list(latest.values())
        states = [s["state"] for s in sts]
        if not states:
            combined = "pending"
        elif "error" in states or "failure" in states:
            combined = "failure"
        elif "pending" in states:
            combined = "pending"
        else:
            combined = "success"
        items = [dict(s, node_id="SC_%d" % s["id"],
                      url=ctx.url("/repos/%s/statuses/%s" % (repo["full_name"], sha)),
                      avatar_url=None) for s in sts]
        chunk, hdrs, total = self._paginate(ctx, items, default=100)
        return Response(200, {"state": combined, "sha": sha, "total_count": total,
                              "statuses": chunk,
                              "repository": {"id": repo["id"], "full_name": repo["full_name"]},
                              "commit_url": ctx.url("/repos/%s/commits/%s" % (repo["full_name"], sha)),
                              "url": ctx.url("/repos/%s/commits/%s/status" % (repo["full_name"], sha))},
                        hdrs)

    def r_issue_comment(self, ctx):
        repo = self._require_repo(ctx, ["issues", "pull_requests"], "write")
        number = int(ctx.params["number"])
        if number not in repo["pulls"] and number not in repo["issues"]:
            raise ApiError(404, "Not Found")
        body = ctx.body_obj()
        text = check_type(body, "body", str, "of type string", required=True)
        cid = self.new_id()
        now = iso(self.now())
        url = ctx.url("/repos/%s/issues/comments/%d" % (repo["full_name"], cid))
        c = {"id": cid, "node_id": "IC_%d" % cid, "url": url,
             "html_url": "https://github.com/%s/pull/%d#issuecomment-%d" % (repo["full_name"], number, cid),
             "issue_url": ctx.url("/repos/%s/issues/%d" % (repo["full_name"], number)),
             "body": text, "user": self._bot(), "created_at": now, "updated_at": now,
             "author_association": "NONE", "issue_number": number}
        repo["comments"].append(c)
        self.events.append({"type": "comment", "repo": repo["full_name"], "issue_number": number,
                            "id": cid, "body": text, "time": now,
                            "token_sha256": ctx.token["sha256"] if ctx.token else None})
        out = {k: v for k, v in c.items() if k != "issue_number"}
        return Response(201, out, {"Location": url})

    def _since(self, ctx):
        """The `since` filter (ISO 8601), as GitHub takes it: 422 if unreadable."""
        v = ctx.q("since")
        if v is None:
            return None
        try:
            t = datetime.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError(422, "Invalid value for parameter 'since': %s" % v)
        return iso(t.replace(tzinfo=datetime.timezone.utc).timestamp())

    def r_issue_comments(self, ctx):
        repo = self._require_repo(ctx, ["issues", "pull_requests"], "read")
        number = int(ctx.params["number"])
        if number not in repo["pulls"] and number not in repo["issues"]:
            raise ApiError(404, "Not Found")
        since = self._since(ctx)
        items = [{k: v for k, v in c.items() if k != "issue_number"} for c in repo["comments"]
                 if c["issue_number"] == number and (since is None or c["updated_at"] >= since)]
        chunk, hdrs, _ = self._paginate(ctx, items)
        return Response(200, chunk, hdrs)

    def r_pulls_list(self, ctx):
        repo = self._require_repo(ctx, ["pull_requests"], "read")
        state = ctx.q("state", "open")
        if state not in ("open", "closed", "all"):
            raise ApiError(422, "Validation Failed", extra={"errors": [
                {"resource": "PullRequest", "field": "state", "code": "invalid"}]})
        head, base = ctx.q("head"), ctx.q("base")
        if head is not None and ":" not in head:
            head = None  # GitHub ignores a head filter without its owner
        elif head is not None:
            owner, head = head.split(":", 1)
            if owner.lower() != repo["owner"].lower():
                head = "\0"  # another owner's fork: no branch here matches
        out = []
        for pr in repo["pulls"].values():
            if state != "all" and pr["state"] != state:
                continue
            if head is not None and pr["head"]["ref"] != head:
                continue
            if base is not None and pr["base"]["ref"] != base:
                continue
            out.append(pr)
        out.sort(key=lambda p: (p["created_at"], p["number"]),
                 reverse=ctx.q("direction", "desc") != "asc")
        chunk, hdrs, _ = self._paginate(ctx, out)
        return Response(200, [self._pr_json(ctx, repo, p) for p in chunk], hdrs)

    def r_deployments_list(self, ctx):
        repo = self._require_repo(ctx, ["deployments"], "read")
        out = [d for d in reversed(repo["deployments"])
               if all(ctx.q(k) is None or d[k] == ctx.q(k)
                      for k in ("sha", "ref", "task", "environment"))]
        chunk, hdrs, _ = self._paginate(ctx, out)
        return Response(200, chunk, hdrs)

    def r_deployment_create(self, ctx):
        doc = "https://docs.github.com/rest/deployments/deployments#create-a-deployment"
        repo = self._require_repo(ctx, ["deployments"], "write")
        body = ctx.body_obj()
        ref = check_type(body, "ref", str, "of type string", required=True)
        auto_merge = check_type(body, "auto_merge", bool, "of type boolean")
        required = check_type(body, "required_contexts", list, "of type array")
        env = check_type(body, "environment", str, "of type string") or "production"
        task = check_type(body, "task", str, "of type string") or "deploy"
        desc = check_type(body, "description", str, "of type string")
        payload = body.get("payload", {})
        if payload is None:
            payload = {}
        if not isinstance(payload, (dict, str)):
            raise invalid_type("payload", payload, "of type object or string")
        if required is not None and not all(isinstance(c, str) for c in required):
            raise invalid_type("required_contexts", required, "an array of strings")
        sha = self._resolve_ref(repo, ref)
        if sha is None:
            raise ApiError(422, "No ref found for: %s" % ref, doc=doc)
        branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
        if (auto_merge is None or auto_merge) and branch in repo["behind_default"] \
                and branch in repo["branches"] and branch != repo["default_branch"]:
            repo["behind_default"].remove(branch)
            repo["branches"][branch] = rand_sha()
            for p in repo["pulls"].values():
                if p["state"] == "open" and p["head"]["ref"] == branch:
                    p["head"]["sha"] = repo["branches"][branch]
            self.events.append({"type": "deployment_auto_merge", "repo": repo["full_name"],
                                "ref": ref, "new_sha": repo["branches"][branch],
                                "time": iso(self.now())})
            return Response(202, {"message": "Auto-merged %s into %s on deployment."
                                             % (repo["default_branch"], branch)})
        latest = {}
        for s in repo["statuses"].get(sha, []):
            latest[s["context"]] = s["state"]
        needed = list(latest.keys()) if required is None else required
        failing = [{"context": c, "state": latest.get(c, "missing")}
                   for c in needed if latest.get(c) != "success"]
        if failing:
            raise ApiError(409, "Conflict: Commit status checks failed for %s." % ref, doc=doc,
                           extra={"errors": [{"contexts": failing, "resource": "Deployment",
                                              "field": "required_contexts", "code": "invalid"}]})
        did = self.new_id()
        now = iso(self.now())
        d = {"id": did, "node_id": "DE_%d" % did,
             "url": ctx.url("/repos/%s/deployments/%d" % (repo["full_name"], did)),
             "sha": sha, "ref": ref, "task": task, "payload": payload,
             "original_environment": env, "environment": env, "description": desc,
             "creator": self._bot(), "created_at": now, "updated_at": now,
             "statuses_url": ctx.url("/repos/%s/deployments/%d/statuses" % (repo["full_name"], did)),
             "repository_url": ctx.url("/repos/" + repo["full_name"]),
             "transient_environment": bool(body.get("transient_environment", False)),
             "production_environment": bool(body.get("production_environment", env == "production"))}
        repo["deployments"].append(d)
        ev = dict(d, type="deployment", repo=repo["full_name"], auto_merge=auto_merge,
                  required_contexts=required, time=now,
                  token_sha256=ctx.token["sha256"] if ctx.token else None)
        self.events.append(ev)
        return Response(201, d, {"Location": d["url"]})

    def r_dispatch(self, ctx):
        doc = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"
        repo = self._require_repo(ctx, ["actions"], "write")
        wf_id = ctx.params["wf"]
        wf = None
        for w in repo["workflows"]:
            if (wf_id.isdigit() and w["id"] == int(wf_id)) or os.path.basename(w["path"]) == wf_id:
                wf = w
                break
        if wf is None:
            raise ApiError(404, "Not Found", doc=doc)
        body = ctx.body_obj()
        ref = check_type(body, "ref", str, "of type string", required=True)
        inputs = check_type(body, "inputs", dict, "of type object")
        if wf["state"] != "active":
            raise ApiError(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow", doc=doc)
        if not wf["dispatchable"]:
            raise ApiError(422, "Workflow does not have 'workflow_dispatch' trigger", doc=doc)
        sha = self._resolve_ref(repo, ref, allow_sha=False)
        if sha is None:
            raise ApiError(422, "No ref found for: %s" % ref, doc=doc)
        inputs = inputs or {}
        if len(inputs) > 25:
            raise ApiError(422, "you may only define up to 25 `inputs` for a `workflow_dispatch` event",
                           doc=doc)
        declared = wf.get("inputs")
        if isinstance(declared, (list, dict)):
            names = list(declared.keys()) if isinstance(declared, dict) else list(declared)
            extra = sorted(k for k in inputs if k not in names)
            if extra:
                raise ApiError(422, "Unexpected inputs provided: %s" % json.dumps(extra), doc=doc)
            if isinstance(declared, dict):
                for n, spec in declared.items():
                    if isinstance(spec, dict) and spec.get("required") and n not in inputs:
                        raise ApiError(422, "Required input '%s' not provided" % n, doc=doc)
        now = iso(self.now())
        d = {"type": "dispatch", "repo": repo["full_name"], "workflow_id": wf["id"],
             "workflow_path": wf["path"], "ref": ref, "sha": sha, "inputs": inputs, "time": now,
             "token_sha256": ctx.token["sha256"] if ctx.token else None}
        repo["dispatches"].append(d)
        self.events.append(d)
        return Response(204)

    # ------------------------------------------------------------------ git repositories
    def git_env(self, extra=None):
        """Fixed environment for every git subprocess: no system or user config."""
        env = {"PATH": "/usr/bin:/bin", "HOME": self.git_home or "/nonexistent",
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
               "GIT_AUTHOR_NAME": "GitHub Emulator", "GIT_AUTHOR_EMAIL": "emulator@example.invalid",
               "GIT_COMMITTER_NAME": "GitHub Emulator",
               "GIT_COMMITTER_EMAIL": "emulator@example.invalid",
               "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE}
        env.update(extra or {})
        return env

    def git(self, gd, *args, input=None, extra_env=None, check=True):
        p = subprocess.run([GIT, "--git-dir", gd] + list(args), input=input,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=self.git_env(extra_env), cwd=gd)
        if check and p.returncode != 0:
            raise AdminError("git %s failed: %s" % (" ".join(args[:2]),
                                                    p.stderr.decode("utf-8", "replace").strip()), 500)
        return p.stdout.decode("utf-8", "replace") if check else p

    def git_dir(self, repo):
        """Path of the bare repository of a repo record (None if it has none)."""
        if not repo or not repo.get("git") or not self.git_root:
            return None
        return os.path.join(self.git_root, repo["owner"], repo["name"] + ".git")

    def git_refs(self, gd):
        out = self.git(gd, "for-each-ref", "--format=%(objectname) %(refname)")
        refs = {}
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            if name:
                refs[name] = sha
        return refs

    def git_resolve(self, gd, rev):
        """Commit sha for a branch, tag, refs/... name or (abbreviated) sha; None if unknown."""
        if not rev or rev.startswith("-") or any(c in rev for c in "\0\n "):
            return None
        p = self.git(gd, "rev-parse", "--verify", "--quiet", rev + "^{commit}", check=False)
        if p.returncode != 0:
            return None
        return p.stdout.decode().strip() or None

    @staticmethod
    def _git_file(path, v):
        """(mode, bytes) for a file spec; None means delete."""
        if v is None:
            return None
        mode = "100644"
        if isinstance(v, str):
            return mode, v.encode("utf-8")
        if not isinstance(v, dict):
            raise AdminError("file %r: content must be a string, an object or null" % path)
        if v.get("executable"):
            mode = "100755"
        mode = str(v.get("mode", mode))
        if mode not in ("100644", "100755", "120000"):
            raise AdminError("file %r: mode must be 100644, 100755 or 120000" % path)
        if "base64" in v:
            return mode, base64.b64decode(v["base64"])
        return mode, str(v.get("content", "")).encode("utf-8")

    def _git_commit(self, gd, parent, files, message):
        """Write a commit on top of `parent` (None: root commit) changing `files`."""
        tmp = tempfile.mkdtemp(prefix="emu-index-", dir=self.git_home)
        try:
            ienv = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            if parent:
                self.git(gd, "read-tree", parent, extra_env=ienv)
            else:
                self.git(gd, "read-tree", "--empty", extra_env=ienv)
            for path, v in (files or {}).items():
                path = str(path).strip("/")
                if not path or path.startswith(".git/") or "/../" in "/" + path + "/":
                    raise AdminError("bad file path %r" % path)
                f = self._git_file(path, v)
                if f is None:
                    self.git(gd, "update-index", "--force-remove", "--", path, extra_env=ienv)
                    continue
                blob = self.git(gd, "hash-object", "-w", "--stdin", input=f[1]).strip()
                self.git(gd, "update-index", "--add", "--cacheinfo", "%s,%s,%s" % (f[0], blob, path),
                         extra_env=ienv)
            tree = self.git(gd, "write-tree", extra_env=ienv).strip()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        args = ["commit-tree", tree, "-m", message or "Update"]
        if parent:
            args[2:2] = ["-p", parent]
        return self.git(gd, *args).strip()

    def _git_install(self, gd):
        self.git(gd, "config", "http.receivepack", "true")
        self.git(gd, "config", "uploadpack.allowFilter", "true")
        self.git(gd, "config", "uploadpack.allowReachableSHA1InWant", "true")
        os.makedirs(os.path.join(gd, "hooks"), exist_ok=True)
        hook = os.path.join(gd, "hooks", "pre-receive")
        with open(hook, "w") as fh:
            fh.write(PRE_RECEIVE_HOOK)
        os.chmod(hook, 0o755)

    def git_create(self, spec):
        """POST /_admin/git-repos: a bare repo with one commit on the default branch."""
        if not isinstance(spec, dict):
            raise AdminError("git repo spec must be an object")
        if not self.git_root:
            raise AdminError("no --git-root", 500)
        full = spec.get("repo") or spec.get("full_name")
        if not isinstance(full, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", full) \
                or full.endswith(".git") or ".." in full:
            raise AdminError("repo must be 'owner/name' (letters, digits, '.', '_', '-')")
        branch = spec.get("default_branch", "main")
        files = spec.get("files")
        if files is None:
            files = {"README.md": "# %s\n" % full.split("/")[1]}
        if not isinstance(files, dict):
            raise AdminError("files must be an object {path: content}")
        with self.lock:
            existing = self.find_repo(full)
            if existing is not None:
                full = existing["full_name"]   # keep the stored spelling
            owner, name = full.split("/")
            gd = os.path.join(self.git_root, owner, name + ".git")
            if os.path.exists(gd):
                if not spec.get("replace", True):
                    raise AdminError("%s already exists" % gd, 409)
                shutil.rmtree(gd)
            os.makedirs(os.path.dirname(gd), exist_ok=True)
            p = subprocess.run([GIT, "init", "-q", "--bare", "--template=", "-b", branch, gd],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.git_env())
            if p.returncode != 0:
                raise AdminError("git init failed: %s" % p.stderr.decode("utf-8", "replace"), 400)
            self.git_made.add(gd)
            self._git_install(gd)
            sha = self._git_commit(gd, None, files, spec.get("message", "Initial commit"))
            self.git(gd, "update-ref", "refs/heads/" + branch, sha, ZERO_SHA)
            for b in spec.get("branches") or []:   # extra branches at the initial commit
                self.git(gd, "update-ref", "refs/heads/" + b, sha, ZERO_SHA)
            rspec = {"full_name": full, "default_branch": branch}
            for k in ("private", "protected", "id"):
                if k in spec:
                    rspec[k] = spec[k]
            repo = self.add_repo(rspec)
            repo["git"] = True
            self.git_sync(repo)
            return {"repo": repo["full_name"], "path": gd, "default_branch": branch,
                    "sha": sha, "refs": self.git_refs(gd),
                    "clone_url": "/%s.git" % repo["full_name"]}

    def git_admin_commit(self, spec):
        """POST /_admin/git-commit: a commit made "by someone else" directly on a branch."""
        with self.lock:
            repo = self.find_repo(spec.get("repo", ""))
            gd = self.git_dir(repo)
            if gd is None:
                raise AdminError("no git repository for %r" % spec.get("repo"), 404)
            branch = spec.get("branch") or repo["default_branch"]
            old = self.git_resolve(gd, "refs/heads/" + branch)
            parent = spec.get("parent")
            parent = self.git_resolve(gd, parent) if parent else (
                old or self.git_resolve(gd, "refs/heads/" + repo["default_branch"]))
            if parent is None:
                raise AdminError("unknown parent %r" % spec.get("parent"), 404)
            sha = self._git_commit(gd, parent, spec.get("files") or {},
                                   spec.get("message", "Commit on " + branch))
            self.git(gd, "update-ref", "refs/heads/" + branch, sha, old or ZERO_SHA)
            self.git_sync(repo)
            return {"repo": repo["full_name"], "branch": branch, "sha": sha,
                    "parent": parent, "old": old}

    def git_sync(self, repo, before=None):
        """Copy branches/tags from the bare repo into the in-memory table (REST routes use
        it).  `before` (refs before a push) makes deleted refs disappear too; open pull
        requests whose head branch moved follow it, as on GitHub.  Returns ref updates."""
        gd = self.git_dir(repo)
        refs = self.git_refs(gd)
        updates = []
        if before is not None:
            for ref in sorted(set(before) | set(refs)):
                if before.get(ref) != refs.get(ref):
                    updates.append({"ref": ref, "old": before.get(ref, ZERO_SHA),
                                    "new": refs.get(ref, ZERO_SHA)})
        with self.lock:
            for u in updates:
                for pfx, table in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
                    if u["ref"].startswith(pfx) and u["new"] == ZERO_SHA:
                        name = u["ref"][len(pfx):]
                        if not (table == "branches" and name == repo["default_branch"]):
                            repo[table].pop(name, None)
            for ref, sha in refs.items():
                if ref.startswith("refs/heads/"):
                    b = ref[len("refs/heads/"):]
                    if repo["branches"].get(b) != sha:
                        repo["branches"][b] = sha
                        for pr in repo["pulls"].values():
                            if pr["state"] == "open" and pr["head"]["ref"] == b \
                                    and pr["head"]["sha"] != sha:
                                self._move_pr_head(repo, pr, sha, {})
                elif ref.startswith("refs/tags/"):
                    repo["tags"][ref[len("refs/tags/"):]] = sha
        return updates

    # ------------------------------------------------------------------ git smart HTTP
    def git_prepare(self, h, entry, m, method, query):
        """Authenticate and authorise one smart-HTTP request.  Returns a Response (refusal)
        or a dict describing the CGI call."""
        def text(status, msg, headers=None):
            entry["response_message"] = msg
            return Response(status, raw=(msg + "\n").encode(), headers=headers,
                            ctype="text/plain; charset=utf-8")
        rest = m.group("rest")
        qs = urllib.parse.parse_qs(query, keep_blank_values=True)
        if rest == "info/refs":
            service = (qs.get("service") or ["git-upload-pack"])[-1]
            if method not in ("GET", "HEAD"):
                return text(405, "Method Not Allowed")
        else:
            service = rest
            if method != "POST":
                return text(405, "Method Not Allowed")
        entry["service"] = service
        if service not in GIT_SERVICES:
            return text(403, "Unsupported service: %s" % service)
        write = service == "git-receive-pack"

        if self.latency_ms:
            self._sleep(self.latency_ms)
        host = h.headers.get("Host") or "127.0.0.1"
        ctx = Ctx(self, method, entry["path"], entry["path"], "", query, h.headers, host)
        f = self._match_fault(method, entry["path"])
        if f is not None:
            entry["fault"] = f["id"]
            resp = self._apply_fault(ctx, f)
            if resp is not None:
                return resp

        # --- credentials: HTTP Basic, the password is the token (username ignored)
        auth = h.headers.get("Authorization")
        token = None
        if auth:
            parts = auth.strip().split(None, 1)
            entry["auth"] = parts[0].lower()
            if parts[0].lower() == "basic" and len(parts) == 2:
                try:
                    user, _, token = base64.b64decode(parts[1].strip(), validate=True) \
                        .decode("utf-8").partition(":")
                    entry["basic_user"] = user
                except Exception:
                    token = None
        need_auth = {"WWW-Authenticate": 'Basic realm="GitHub"'}
        t = None
        if token:
            entry["token_sha256"] = sha256_hex(token)
            with self.lock:
                t = self.tokens.get(entry["token_sha256"])
                if t is None or t["revoked"] or self.now() >= t["expires_ts"]:
                    entry["token_state"] = ("unknown" if t is None else
                                            "revoked" if t["revoked"] else "expired")
                    return text(401, "Invalid username or token. Password authentication is "
                                     "not supported for Git operations.", need_auth)
                entry["token_state"] = "valid"
                t["uses"] += 1
                t["last_used_at"] = iso(self.now())

        with self.lock:
            repo = self.find_repo("%s/%s" % (m.group("owner"), m.group("repo")))
            gd = self.git_dir(repo)
            public = repo is not None and not repo["private"]
            if t is None and not (public and not write and gd):
                return text(401, "Invalid username or token. Password authentication is not "
                                 "supported for Git operations." if token or auth else
                            "Authentication required.", need_auth)
            if gd is None or not os.path.isdir(gd):
                return text(404, "Repository not found.")
            entry["repo"] = repo["full_name"]
            bot = self.config["app_slug"] + "[bot]"
            denied = "Permission to %s.git denied to %s." % (repo["full_name"], bot)
            wf = False
            if t is not None:
                covers = self._token_covers(t, repo)
                level = LEVELS.get(t["permissions"].get("contents"), 0)
                if not covers and not (public and not write):
                    entry["refusal"] = "repository not covered by the token"
                    return text(403, denied)
                if covers and level < (2 if write else 1) and not (public and not write):
                    entry["refusal"] = "token lacks contents:%s" % ("write" if write else "read")
                    return text(403, denied)
                wf = LEVELS.get(t["permissions"].get("workflows"), 0) >= 2
                entry["workflows_write"] = wf
                user = bot
            else:
                user = "anonymous"
        env = self.git_env({
            "GIT_PROJECT_ROOT": self.git_root, "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/%s/%s.git/%s" % (repo["owner"], repo["name"], rest),
            "REQUEST_METHOD": method, "QUERY_STRING": query or "",
            "REMOTE_USER": user, "REMOTE_ADDR": h.client_address[0],
            "EMU_WORKFLOWS_WRITE": "1" if wf else "0",
            "GIT_HTTP_MAX_REQUEST_BUFFER": str(256 << 20)})
        for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                  "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            env.pop(k, None)   # http-backend derives the reflog identity from REMOTE_USER
        for hdr, var in (("Content-Type", "CONTENT_TYPE"), ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                         ("Git-Protocol", "GIT_PROTOCOL"), ("Content-Length", "CONTENT_LENGTH")):
            v = h.headers.get(hdr)
            if v is not None:
                env[var] = v
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            env.pop("CONTENT_LENGTH", None)   # http-backend then reads until EOF
        entry["git_protocol"] = h.headers.get("Git-Protocol")
        plan = {"env": env, "repo": repo, "gd": gd, "service": service,
                "push": write and rest == "git-receive-pack"}
        if plan["push"]:
            plan["before"] = self.git_refs(gd)
        return plan

    def git_finish(self, plan, entry):
        if plan.get("push"):
            entry["ref_updates"] = self.git_sync(plan["repo"], plan["before"])
        else:
            entry["ref_updates"] = []

    # ------------------------------------------------------------------ admin API
    def handle_admin(self, method, path, query, body):
        q = urllib.parse.parse_qs(query)
        body = body if body is not None else {}
        if method == "GET" and path == "/_admin/health":
            return 200, {"ok": True, "app_id": self.app_id, "pid": os.getpid()}
        if method == "GET" and path == "/_admin/state":
            return 200, self.state_view()
        if method == "POST" and path == "/_admin/reset":
            self.reset(reload_seed=bool(body.get("reload_seed", False)))
            return 200, {"ok": True}
        if method == "POST" and path == "/_admin/load":
            self.load(body)
            return 200, {"ok": True}
        if path == "/_admin/config":
            if method == "POST":
                with self.lock:
                    self.set_config(body)
            with self.lock:
                return 200, dict(self.config)
        if method == "POST" and path == "/_admin/app-keys":
            try:
                key = load_public_key(body.get("pem", ""))
            except ValueError as e:
                raise AdminError(str(e))
            with self.lock:
                if body.get("replace"):
                    self.keys = [key]
                else:
                    self.keys.append(key)
                if len(self.keys) > 25:
                    self.keys.pop(0)
                return 200, {"keys": [key_fingerprint(k) for k in self.keys]}
        if method == "POST" and path == "/_admin/installations":
            inst = self.add_installation(body)
            return 201, copy.deepcopy(inst)
        if method == "POST" and path == "/_admin/repos":
            r = self.add_repo(body)
            with self.lock:
                return 201, {k: copy.deepcopy(v) for k, v in r.items() if k != "pulls"}
        if method == "POST" and path == "/_admin/pulls":
            pr = self.add_pull(body)
            with self.lock:
                return 201, copy.deepcopy(pr)
        if method == "POST" and path == "/_admin/reviews":
            pr = self.add_reviews(body)
            with self.lock:
                return 200, copy.deepcopy(pr["reviews"])
        if method == "POST" and path == "/_admin/checks":
            return 201, copy.deepcopy(self.set_checks(body))
        if method == "POST" and path == "/_admin/statuses":
            return 201, copy.deepcopy(self.set_statuses(body))
        if method == "POST" and path == "/_admin/git-repos":
            return 201, self.git_create(body)
        if method == "POST" and path == "/_admin/git-commit":
            return 201, self.git_admin_commit(body)
        m = re.fullmatch(r"/_admin/git/([^/]+)/([^/]+?)(?:\.git)?/refs", path)
        if method == "GET" and m:
            with self.lock:
                gd = self.git_dir(self.find_repo(m.group(1) + "/" + m.group(2)))
            if gd is None:
                raise AdminError("no git repository for %s/%s" % m.groups(), 404)
            return 200, self.git_refs(gd)
        if method == "POST" and path == "/_admin/push":
            return 200, self.push(body)
        if method == "POST" and path == "/_admin/push-on-next":
            with self.lock:
                repo, pr = self._admin_pr(body)
                before = body.get("before", "merge")
                if before not in BEFORE_ROUTES:
                    raise AdminError("before must be one of %s" % ", ".join(BEFORE_ROUTES))
                spec = {"repo": repo["full_name"], "pr": pr["number"],
                        "sha": body.get("sha") or rand_sha()}
                for k in ("mergeable", "files"):
                    if k in body:
                        spec[k] = body[k]
                p = {"repo_key": repo["full_name"].lower(), "pr": pr["number"],
                     "before": before, "spec": spec}
                self.push_on_next.append(p)
                return 201, copy.deepcopy(p)
        if method == "GET" and path == "/_admin/tokens":
            with self.lock:
                return 200, self.tokens_view()
        if method == "POST" and path in ("/_admin/tokens/expire", "/_admin/tokens/revoke"):
            with self.lock:
                sel = [t for h, t in self.tokens.items()
                       if body.get("all") or body.get("sha256") == "all" or h == body.get("sha256")
                       or (body.get("token") is not None and t["token"] == body.get("token"))]
                if not sel and not body.get("all") and body.get("sha256") != "all":
                    raise AdminError("no such token", 404)
                for t in sel:
                    if path.endswith("expire"):
                        t["expires_ts"] = int(self.now()) - 1
                        t["expires_at"] = iso(t["expires_ts"])
                    else:
                        t["revoked"] = True
                        t["revoked_at"] = iso(self.now())
                return 200, {"count": len(sel)}
        if method == "GET" and path == "/_admin/requests":
            since = int(q.get("since", ["0"])[0])
            with self.lock:
                if q.get("settle", ["0"])[0] == "1":
                    self.git_settled.wait_for(lambda: self.git_inflight == 0, timeout=10)
                return 200, [copy.deepcopy(r) for r in self.requests if r["seq"] > since]
        if method == "POST" and path == "/_admin/requests/clear":
            with self.lock:
                # A git request answered before the clear is logged after
                # its answer: it belongs to what is cleared.
                self.git_settled.wait_for(lambda: self.git_inflight == 0, timeout=10)
                self.requests = []
            return 200, {"ok": True}
        if path == "/_admin/faults":
            if method == "GET":
                with self.lock:
                    return 200, [self._fault_view(f) for f in self.faults]
            if method == "POST":
                if isinstance(body, dict) and "faults" in body:
                    return 201, [self.add_fault(f) for f in body["faults"]]
                return 201, self.add_fault(body)
            if method == "DELETE":
                with self.lock:
                    self.faults = []
                return 200, {"ok": True}
        if method == "POST" and path == "/_admin/faults/clear":
            with self.lock:
                self.faults = []
            return 200, {"ok": True}
        if path == "/_admin/latency":
            if method == "POST":
                with self.lock:
                    self.latency_ms = int(body.get("ms", 0))
            return 200, {"ms": self.latency_ms}
        raise AdminError("no such admin endpoint: %s %s" % (method, path), 404)


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this

    def version_string(self):
        return "GitHub.com"

    def setup(self):
        super().setup()
        try:  # answer in one segment, no Nagle/delayed-ACK stalls on keep-alive connections
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.conn_id = next(self.server.emu.conn_ids)

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("emulator: %s - %s\n" % (self.address_string(), fmt % args))

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # ------------------------------------------------------------------ git smart HTTP
    def _iter_body(self):
        """Yield the request body in pieces (Content-Length or chunked), never all at once."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("end of stream inside a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                while size > 0:
                    d = self.rfile.read(min(size, GIT_IO))
                    if not d:
                        raise ConnectionError("end of stream inside a chunk")
                    size -= len(d)
                    yield d
                self.rfile.readline(65537)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            while n > 0:
                d = self.rfile.read(min(n, GIT_IO))
                if not d:
                    raise ConnectionError("end of stream inside the body")
                n -= len(d)
                yield d

    def _drain_body(self):
        """Read and drop the body of a refused request, or give up and close the connection."""
        n = 0
        try:
            for d in self._iter_body():
                n += len(d)
                if n > GIT_DRAIN_MAX:
                    self.close_connection = True
                    break
        except (ConnectionError, OSError, ValueError):
            self.close_connection = True
        return n

    def _git(self, emu, m, path, query):
        t0 = time.time()
        with emu.lock:
            emu.git_inflight += 1
        hdr = self.headers
        entry = {"kind": "git", "time": iso(t0), "t": t0, "method": self.command, "path": path,
                 "query": urllib.parse.parse_qs(query, keep_blank_values=True),
                 "query_string": query, "connection_id": self.conn_id, "auth": "none",
                 "token_sha256": None, "token_state": None, "jwt_claims": None,
                 "jwt_header": None,
                 "headers": {k: hdr.get(k) for k in ("User-Agent", "Accept", "Content-Type",
                                                     "Content-Encoding", "Transfer-Encoding",
                                                     "Content-Length", "Git-Protocol",
                                                     "Connection")},
                 "body": None, "fault": None, "route": "git_" + m.group("rest").replace(
                     "info/refs", "info_refs").replace("git-", "").replace("-", "_"),
                 "status": None, "repo": None, "service": None, "request_bytes": 0,
                 "response_bytes": 0, "ref_updates": None, "dropped": False}
        try:
            plan = emu.git_prepare(self, entry, m, self.command, query)
            if isinstance(plan, Response):
                if plan.close:
                    entry["dropped"] = True
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                else:
                    entry["request_bytes"] = self._drain_body()
                    entry["status"] = plan.status
                    self._send(plan)
            else:
                self._git_cgi(emu, plan, entry)
        except Exception:
            traceback.print_exc()
            self.close_connection = True
            if entry["status"] is None:
                entry["status"] = 500
                self._send(Response(500, raw=b"Internal Server Error\n", ctype="text/plain"))
        finally:
            entry["duration_ms"] = round((time.time() - t0) * 1000, 3)
            emu.log_request(entry)
            with emu.lock:
                emu.git_inflight -= 1
                emu.git_settled.notify_all()

    def _git_cgi(self, emu, plan, entry):
        proc = subprocess.Popen([GIT_HTTP_BACKEND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=plan["env"], cwd=emu.git_root)
        feed = {"bytes": 0, "complete": False, "error": None}
        errbuf = bytearray()
        end_chunk = False

        def feeder():
            try:
                for d in self._iter_body():
                    feed["bytes"] += len(d)
                    proc.stdin.write(d)
                proc.stdin.flush()
                feed["complete"] = True
            except Exception as e:   # client went away, or the CGI stopped reading
                feed["error"] = "%s: %s" % (type(e).__name__, e)
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        def errs():
            for line in proc.stderr:
                if len(errbuf) < 65536:
                    errbuf.extend(line)

        tf = threading.Thread(target=feeder, daemon=True)
        te = threading.Thread(target=errs, daemon=True)
        tf.start()
        te.start()
        out = proc.stdout
        try:
            buf = b""
            while b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) < 65536:
                d = out.read1(GIT_IO)
                if not d:
                    break
                buf += d
            i, j = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
            if i >= 0 and (j < 0 or i < j):
                head, rest = buf[:i], buf[i + 4:]
            elif j >= 0:
                head, rest = buf[:j], buf[j + 2:]
            else:
                head, rest = None, b""
            if head is None:   # the CGI died before its headers
                proc.wait()
                tf.join(5)
                te.join(5)
                if not feed["complete"]:
                    self.close_connection = True
                msg = "git-http-backend failed: %s" % errbuf.decode("utf-8", "replace").strip()
                entry["status"] = 500
                entry["response_message"] = msg
                self._send(Response(500, raw=(msg + "\n").encode(), ctype="text/plain"))
                return
            status, reason, headers = 200, None, []
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k.lower() == "status":
                    code, _, reason = v.partition(" ")
                    status = int(code)
                elif k:
                    headers.append((k, v))
            entry["status"] = status
            self.send_response(status, reason or None)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("X-GitHub-Request-Id", "%s:%s" % (secrets.token_hex(4).upper(),
                                                               secrets.token_hex(6).upper()))
            has_body = self.command != "HEAD" and status not in (204, 304)
            if has_body:
                self.send_header("Transfer-Encoding", "chunked")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            d = rest
            while True:
                if d and has_body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(d), d))
                    sent += len(d)
                d = out.read1(GIT_IO)
                if not d:
                    break
            self.wfile.flush()
            entry["response_bytes"] = sent
            # The last chunk waits for git_finish: once git has its whole
            # answer, the REST view (branches, pull request heads) shows the push.
            end_chunk = has_body
        except (BrokenPipeError, ConnectionResetError, socket.timeout) as e:
            self.close_connection = True
            entry["dropped"] = True
            entry["client_error"] = type(e).__name__
            proc.kill()
        finally:
            rc = proc.wait()
            tf.join(30)
            te.join(5)
            if tf.is_alive() or not feed["complete"]:
                self.close_connection = True   # the request body was not fully read
            entry["request_bytes"] = feed["bytes"]
            entry["cgi_exit"] = rc
            entry["cgi_stderr"] = errbuf.decode("utf-8", "replace")[-4000:] or None
            if feed["error"]:
                entry["request_error"] = feed["error"]
            try:
                emu.git_finish(plan, entry)
            except Exception:
                traceback.print_exc()
            if end_chunk:
                try:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError as e:
                    self.close_connection = True
                    entry["dropped"] = True
                    entry["client_error"] = type(e).__name__

    def _dispatch(self):
        emu = self.server.emu
        split = urllib.parse.urlsplit(self.path)
        gm = GIT_PATH_RX.fullmatch(split.path)
        if gm:   # git smart HTTP: the body is streamed, not read here
            self._git(emu, gm, split.path, split.query)
            return
        try:
            body = self._read_body()
        except Exception:
            self.close_connection = True
            self._send(Response(400, error_body(400, "Problems reading request body")))
            return
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        if path.startswith("/_admin/") or path == "/_admin":
            self._admin(emu, path, split.query, body)
            return
        resp = emu.handle_api(self, self.command, path, split.query, body, self.conn_id)
        if resp.close:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._send(resp)

    def _admin(self, emu, path, query, body):
        try:
            obj = json.loads(body.decode("utf-8")) if body else None
        except Exception:
            self._send(Response(400, {"error": "invalid JSON"}))
            return
        try:
            status, out = emu.handle_admin(self.command, path, query, obj)
        except AdminError as e:
            status, out = e.status, {"error": e.message}
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            status, out = 400, {"error": "%s: %s" % (type(e).__name__, e)}
        self._send(Response(status, out))

    def _send(self, resp):
        if resp.raw is not None:
            data = resp.raw
        elif resp.body is None:
            data = b""
        else:
            data = json.dumps(resp.body, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(resp.status)
            has_body = resp.status not in (204, 304) and not (100 <= resp.status < 200)
            if has_body:
                self.send_header("Content-Type", resp.ctype or "application/json; charset=utf-8")
            self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            self.send_header("X-GitHub-Api-Version-Selected", API_VERSION)
            self.send_header("X-GitHub-Request-Id", "%s:%s" % (secrets.token_hex(4).upper(),
                                                               secrets.token_hex(6).upper()))
            for k, v in resp.headers.items():
                self.send_header(k, str(v))
            if has_body:
                self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self._headers_buffer.append(b"\r\n")
            if has_body and self.command != "HEAD":
                self._headers_buffer.append(data)
            self.flush_headers()  # status line, headers and body in a single write
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description="GitHub REST API emulator (loopback only)")
    ap.add_argument("--host", default="127.0.0.1", help="127.0.0.1 or ::1 (loopback only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--client-id", help="also accept this as the JWT iss")
    ap.add_argument("--app-slug", default=None)
    ap.add_argument("--app-key", action="append", required=True,
                    help="App public key PEM (repeat for rotation; a private key or cert also works)")
    ap.add_argument("--state", help="JSON seed document loaded at start (same format as /_admin/load)")
    ap.add_argument("--dump-state", help="write the final state here on SIGTERM")
    ap.add_argument("--git-root", help="directory for the bare git repositories "
                    "(default: a fresh temporary directory, removed on exit)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    if args.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("the emulator only listens on loopback")
    keys = []
    for p in args.app_key:
        with open(p, "rb") as fh:
            keys.append(load_public_key(fh.read()))
    seed = None
    if args.state:
        with open(args.state) as fh:
            seed = json.load(fh)
    git_home = tempfile.mkdtemp(prefix="gh-emu-githome-")
    own_git_root = not args.git_root
    git_root = os.path.abspath(args.git_root) if args.git_root else \
        tempfile.mkdtemp(prefix="gh-emu-git-")
    os.makedirs(git_root, exist_ok=True)

    def cleanup():
        shutil.rmtree(git_home, ignore_errors=True)
        if own_git_root:
            shutil.rmtree(git_root, ignore_errors=True)
    emu = Emulator(args.app_id, keys, client_id=args.client_id, app_slug=args.app_slug, seed=seed,
                   git_root=git_root, git_home=git_home)
    try:
        if seed:
            emu.load(seed)
    except Exception:
        cleanup()
        raise

    cls = Server
    if ":" in args.host:
        class Server6(Server):
            address_family = socket.AF_INET6
        cls = Server6
    srv = cls(("127.0.0.1" if args.host == "localhost" else args.host, args.port), Handler)
    srv.emu = emu
    srv.verbose = args.verbose
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    if args.verbose:
        sys.stderr.write("emulator: listening on %s:%d\n" % (args.host, port))

    def stop(signum, frame):
        emu.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        cleanup()
        if args.dump_state:
            with open(args.dump_state, "w") as fh:
                json.dump(emu.state_view(), fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
