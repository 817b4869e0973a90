#!/usr/bin/python3
"""Self-test of the GitHub emulator.  Run: /usr/bin/python3 tests/github-emulator/test_emulator.py"""

import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import Emulator, generate_rsa_keypair, make_jwt  # noqa: E402

APP_ID = 4242
REPO = "acme/widgets"
HEAD = "a" * 40
ALL_PERMS = {"contents": "write", "pull_requests": "write", "checks": "read",
             "statuses": "read", "issues": "write", "deployments": "write", "actions": "write"}


def parse_link(value):
    out = {}
    for part in value.split(","):
        m = re.match(r'\s*<([^>]+)>;\s*rel="([a-z]+)"', part)
        out[m.group(2)] = m.group(1)
    return out


class EmulatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gh = Emulator(app_id=APP_ID).start()

    @classmethod
    def tearDownClass(cls):
        cls.gh.stop()

    def setUp(self):
        gh = self.gh
        gh.reset()
        gh.add_repo({"full_name": REPO, "default_branch": "main",
                     "branches": {"main": "b" * 40, "topic": "c" * 40, "behind": "d" * 40},
                     "workflows": ["ci.yml", {"id": 777, "path": ".github/workflows/deploy.yml"}],
                     "behind_default": ["behind"]})
        gh.add_repo({"full_name": "acme/outside"})
        gh.add_installation({"id": 42, "account": "acme",
                             "repositories": [REPO, "acme/gadgets"], "permissions": ALL_PERMS})
        gh.add_pull({"repo": REPO, "number": 7, "head": {"sha": HEAD, "ref": "feature"},
                     "base": {"ref": "main"}, "user": {"login": "alice"}, "title": "Add widget",
                     "files": ["src/a.c", {"filename": "docs/new.md", "status": "renamed",
                                           "previous_filename": ".github/old.md"},
                               {"filename": "gone.txt", "status": "removed"}],
                     "reviews": [{"user": "bob", "state": "CHANGES_REQUESTED"},
                                 {"user": "bob", "state": "APPROVED", "commit_id": HEAD},
                                 {"user": "carol", "state": "COMMENTED", "commit_id": "e" * 40}]})
        gh.add_pull({"repo": "acme/gadgets", "number": 1})
        gh.add_pull({"repo": "acme/outside", "number": 1})

    # ------------------------------------------------------------------ helpers
    def token(self, repositories=None, permissions=None):
        return self.gh.mint_token(42, repositories, permissions)

    def get(self, path, tok, **kw):
        return self.gh.api("GET", path, token=tok, **kw)

    # ------------------------------------------------------------------ JWT
    def test_installation_lookup_with_jwt(self):
        r = self.gh.api("GET", "/repos/acme/widgets/installation", jwt=self.gh.jwt())
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], 42)
        self.assertEqual(r.json["account"]["login"], "acme")
        self.assertEqual(r.json["app_id"], APP_ID)
        self.assertEqual(r.json["repository_selection"], "selected")
        self.assertEqual(r.json["permissions"]["contents"], "write")
        for h in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-used",
                  "x-ratelimit-reset", "x-ratelimit-resource"):
            self.assertIsNotNone(r.header(h), h)
        r = self.gh.api("GET", "/repos/acme/outside/installation", jwt=self.gh.jwt())
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["message"], "Not Found")
        # GitHub Enterprise Server style prefix
        r = self.gh.api("GET", "/api/v3/repos/acme/widgets/installation", jwt=self.gh.jwt())
        self.assertEqual(r.status, 200)

    def test_jwt_rejections(self):
        gh = self.gh
        path = "/repos/acme/widgets/installation"
        other_key, _ = generate_rsa_keypair(gh.dir, "other")
        with open(other_key, "rb") as fh:
            other_pem = fh.read()
        with open(gh.pub_path, "rb") as fh:
            pub_pem = fh.read()
        decode = "A JSON web token could not be decoded"
        cases = [
            ("wrong key", make_jwt(other_pem, APP_ID), decode),
            ("alg none", make_jwt(None, APP_ID, alg="none"), decode),
            ("HS256 with public key", make_jwt(pub_pem, APP_ID, alg="HS256"), decode),
            ("RS512", make_jwt(gh.private_key_pem, APP_ID, alg="RS512"), decode),
            ("wrong iss", gh.jwt(iss=APP_ID + 1), decode),
            ("expired", gh.jwt(iat_offset=-700, exp_offset=-10),
             "'Expiration time' claim ('exp') must be a numeric value representing the future "
             "time at which the assertion expires"),
            ("exp-iat > 600", gh.jwt(iat_offset=-60, exp_offset=600),
             "'Expiration time' claim ('exp') is too far in the future"),
            ("exp > now+600", gh.jwt(iat_offset=0, exp_offset=620),
             "'Expiration time' claim ('exp') is too far in the future"),
            ("iat in future", gh.jwt(iat_offset=5, exp_offset=300),
             "'Issued at' claim ('iat') must be an Integer representing the time that the "
             "assertion was issued"),
            ("no iat", gh.jwt(drop=("iat",)),
             "'Issued at' claim ('iat') must be an Integer representing the time that the "
             "assertion was issued"),
            ("installation token", self.token(), decode),
            ("garbage", "eyJhbGciOi.x.y", decode),
        ]
        for name, cred, msg in cases:
            with self.subTest(name):
                r = gh.api("GET", path, jwt=cred)
                self.assertEqual(r.status, 401, r)
                self.assertEqual(r.json["message"], msg)
                self.assertIn("documentation_url", r.json)
        # iss as a string works; an iat back-dated by 60 s (GitHub's advice for
        # clock drift) works, and GitHub allows an iat no leeway into its future
        self.assertEqual(gh.api("GET", path, jwt=gh.jwt(iss=str(APP_ID))).status, 200)
        self.assertEqual(gh.api("GET", path, jwt=gh.jwt(iat_offset=-60, exp_offset=500)).status, 200)
        self.assertEqual(gh.api("GET", path, jwt=gh.jwt(iat_offset=2, exp_offset=500)).status, 401)
        # no Authorization at all
        self.assertEqual(gh.api("GET", path).status, 401)

    def test_key_rotation(self):
        _, pub2 = generate_rsa_keypair(self.gh.dir, "second")
        key2 = os.path.join(self.gh.dir, "second.key")
        with open(key2, "rb") as fh:
            k2 = fh.read()
        with open(pub2) as fh:
            self.gh.admin("POST", "app-keys", {"pem": fh.read()})
        for key in (self.gh.private_key_pem, k2):
            r = self.gh.api("GET", "/app/installations/42", jwt=make_jwt(key, APP_ID))
            self.assertEqual(r.status, 200, r)

    # ------------------------------------------------------------------ tokens
    def test_token_mint_shape(self):
        r = self.gh.api("POST", "/app/installations/42/access_tokens",
                        {"repositories": ["widgets"], "permissions": {"pull_requests": "read"}},
                        jwt=self.gh.jwt())
        self.assertEqual(r.status, 201, r)
        tok = r.json["token"]
        self.assertRegex(tok, r"^ghs_[A-Za-z0-9]{36}$")
        exp = time.mktime(time.strptime(r.json["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        self.assertAlmostEqual(exp - time.time(), 3600, delta=5)
        self.assertEqual(r.json["permissions"], {"pull_requests": "read", "metadata": "read"})
        self.assertEqual(r.json["repository_selection"], "selected")
        self.assertEqual([x["full_name"] for x in r.json["repositories"]], [REPO])
        self.assertTrue({"id", "name", "full_name"} <= set(r.json["repositories"][0]))
        # admin view never needs the token: it has the sha256
        toks = self.gh.tokens()
        self.assertEqual(toks[0]["sha256"], Emulator.token_hash(tok))
        self.assertEqual(toks[0]["repositories"], [REPO])
        # configurable length and lifetime
        self.gh.config(token_length=120, token_ttl=30)
        r = self.gh.api("POST", "/app/installations/42/access_tokens", {}, jwt=self.gh.jwt())
        self.assertEqual(len(r.json["token"]), 124)
        self.assertEqual(r.json["permissions"]["contents"], "write")  # no permissions -> all
        exp = time.mktime(time.strptime(r.json["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        self.assertAlmostEqual(exp - time.time(), 30, delta=5)

    def test_token_mint_rejections(self):
        def mint(body, iid=42):
            return self.gh.api("POST", "/app/installations/%d/access_tokens" % iid, body,
                               jwt=self.gh.jwt())
        r = mint({"repositories": ["outside"], "permissions": {"contents": "read"}})
        self.assertEqual(r.status, 422)
        self.assertIn("not accessible to the parent installation", r.json["message"])
        self.assertEqual(mint({"repositories": ["nope"]}).status, 422)
        r = mint({"repositories": ["widgets"], "permissions": {"administration": "write"}})
        self.assertEqual(r.status, 422)
        self.assertEqual(r.json["message"], "The permissions requested are not granted to this installation.")
        self.assertEqual(mint({"permissions": {"checks": "write"}}).status, 422)  # higher level
        self.assertEqual(mint({"permissions": {"checks": "bogus"}}).status, 422)
        self.assertEqual(mint({"repositories": "widgets"}).status, 422)
        self.assertEqual(mint({}, iid=999).status, 404)

    def test_scoping_and_permissions(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).status, 200)
        # repo in the installation but not in the token, or not in the installation
        r = self.get("/repos/acme/gadgets/pulls/1", tok)
        self.assertEqual((r.status, r.json["message"]), (404, "Not Found"))
        self.assertEqual(self.get("/repos/acme/outside/pulls/1", tok).status, 404)
        # in scope, permission missing
        r = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge", {"sha": HEAD}, token=tok)
        self.assertEqual((r.status, r.json["message"]), (403, "Resource not accessible by integration"))
        self.assertEqual(r.header("x-accepted-github-permissions"), "contents=write")
        r = self.get("/repos/acme/widgets/commits/%s/check-runs" % HEAD, tok)
        self.assertEqual(r.status, 403)
        r = self.gh.api("POST", "/repos/acme/widgets/issues/7/comments", {"body": "x"}, token=tok)
        self.assertEqual(r.status, 403)
        # issues:write alone is enough to comment; 'token' scheme accepted
        tok2 = self.token(["widgets"], {"issues": "write"})
        r = self.gh.api("POST", "/repos/acme/widgets/issues/7/comments", {"body": "x"},
                        token=tok2, scheme="token")
        self.assertEqual(r.status, 201)
        # pull_requests:write is not enough to merge (contents:write is)
        tok3 = self.token(["widgets"], {"pull_requests": "write"})
        r = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge", {"sha": HEAD}, token=tok3)
        self.assertEqual(r.status, 403)
        # unknown token
        r = self.get("/repos/acme/widgets/pulls/7", "ghs_" + "x" * 36)
        self.assertEqual((r.status, r.json["message"]), (401, "Bad credentials"))
        # no credentials on a private repo
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", None).status, 404)

    def test_revocation(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        r = self.gh.api("DELETE", "/installation/token", token=tok)
        self.assertEqual(r.status, 204)
        self.assertEqual(r.data, b"")
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual((r.status, r.json["message"]), (401, "Bad credentials"))
        self.assertEqual(self.gh.api("DELETE", "/installation/token", token=tok).status, 401)
        self.assertTrue(self.gh.tokens()[0]["revoked"])

    def test_expiry_via_admin(self):
        t1 = self.token(["widgets"], {"pull_requests": "read"})
        t2 = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.expire_tokens(Emulator.token_hash(t1))
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", t1).status, 401)
        self.assertEqual(self.gh.api("DELETE", "/installation/token", token=t1).status, 401)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", t2).status, 200)
        self.gh.expire_tokens("all")
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", t2).status, 401)
        self.assertTrue(all(t["expired"] for t in self.gh.tokens()))

    # ------------------------------------------------------------------ reads
    def test_pull_shape(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        j = r.json
        self.assertEqual((j["number"], j["state"], j["merged"], j["mergeable"], j["draft"]),
                         (7, "open", False, True, False))
        self.assertEqual(j["head"]["sha"], HEAD)
        self.assertEqual(j["head"]["ref"], "feature")
        self.assertEqual(j["base"]["ref"], "main")
        self.assertEqual(j["user"]["login"], "alice")
        self.assertEqual(j["title"], "Add widget")
        self.assertEqual(self.get("/repos/acme/widgets/pulls/99", tok).status, 404)
        self.gh.add_pull({"repo": REPO, "number": 7, "mergeable": None})
        self.assertIsNone(self.get("/repos/acme/widgets/pulls/7", tok).json["mergeable"])

    def test_files_pagination(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        files = [{"filename": "f%03d.c" % i} for i in range(249)]
        files.append({"filename": "new/name.c", "status": "renamed", "previous_filename": "old/name.c"})
        self.gh.add_pull({"repo": REPO, "number": 7, "files": files})
        url = "/repos/acme/widgets/pulls/7/files?per_page=100"
        seen, pages = [], 0
        while url:
            r = self.get(url, tok)
            self.assertEqual(r.status, 200)
            pages += 1
            seen += r.json
            links = parse_link(r.header("Link")) if r.header("Link") else {}
            if pages == 1:
                self.assertEqual(set(links), {"next", "last"})
                self.assertIn("page=2", links["next"])
                self.assertIn("page=3", links["last"])
                self.assertTrue(links["next"].startswith(self.gh.base_url + "/repos/acme/widgets/pulls/7/files?"))
                self.assertIn("per_page=100", links["next"])
            elif pages == 2:
                self.assertEqual(set(links), {"prev", "next", "last", "first"})
            else:
                self.assertEqual(set(links), {"prev", "first"})
                self.assertEqual(len(r.json), 50)
            url = links.get("next")
            if url:
                u = urllib.parse.urlsplit(url)
                url = u.path + "?" + u.query
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), 250)
        renamed = [f for f in seen if f["status"] == "renamed"]
        self.assertEqual(renamed[0]["previous_filename"], "old/name.c")
        self.assertTrue(all("previous_filename" not in f for f in seen if f["status"] != "renamed"))
        for k in ("filename", "status", "additions", "deletions", "changes"):
            self.assertIn(k, seen[0])
        # defaults and clamps
        r = self.get("/repos/acme/widgets/pulls/7/files", tok)
        self.assertEqual(len(r.json), 30)
        self.assertIn("page=9", parse_link(r.header("Link"))["last"])
        r = self.get("/repos/acme/widgets/pulls/7/files?per_page=1000", tok)
        self.assertEqual(len(r.json), 100)
        # /api/v3 prefix is kept in Link URLs
        r = self.get("/api/v3/repos/acme/widgets/pulls/7/files?per_page=100", tok)
        self.assertIn("/api/v3/repos/", parse_link(r.header("Link"))["next"])
        # GitHub lists at most 3000 files
        self.gh.add_pull({"repo": REPO, "number": 7, "files": {"generate": 3100}})
        r = self.get("/repos/acme/widgets/pulls/7/files?per_page=100&page=30", tok)
        self.assertEqual(len(r.json), 100)
        self.assertNotIn("next", parse_link(r.header("Link")))
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7/files?per_page=100&page=31", tok).json, [])

    def test_compare_without_git(self):
        tok = self.token(["widgets"], {"contents": "read"})
        path = "/repos/acme/widgets/compare/main...%s"
        r = self.get(path % HEAD + "?per_page=1", tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([f["filename"] for f in r.json["files"]], ["src/a.c", "docs/new.md", "gone.txt"])
        self.assertEqual(r.json["files"][1]["previous_filename"], ".github/old.md")
        self.assertIn("?ref=" + HEAD, r.json["files"][0]["contents_url"])
        self.assertEqual(self.get(path % HEAD + "?per_page=1&page=2", tok).json["files"], [])
        # The head moves on with other files: each commit keeps its own.
        self.gh.push(REPO, 7, "f" * 40, files=["b.c"])
        self.assertEqual([f["filename"] for f in self.get(path % ("f" * 40), tok).json["files"]], ["b.c"])
        self.assertEqual(len(self.get(path % HEAD, tok).json["files"]), 3)
        self.assertEqual(self.get(path % ("0" * 40), tok).status, 404)
        self.assertEqual(self.get(path % HEAD, self.token(["widgets"], {"issues": "read"})).status, 403)
        # Only against the pull request's base; its commits paged when asked.
        self.assertEqual(self.get("/repos/acme/widgets/compare/topic...%s" % HEAD, tok).status, 404)
        r = self.get(path % ("f" * 40) + "?per_page=1", tok)
        self.assertEqual((r.json["total_commits"], len(r.json["commits"])), (2, 1))
        self.assertIn('rel="next"', r.header("Link"))
        r = self.get(path % ("f" * 40), tok)
        self.assertEqual(r.json["commits"][-1]["sha"], "f" * 40)
        self.assertIsNone(r.header("Link"))

    def tree(self, ref, tok, recursive=True, status=200):
        r = self.get("/repos/acme/widgets/git/trees/%s%s" % (ref, "?recursive=1" if recursive else ""), tok)
        self.assertEqual(r.status, status, r)
        return r.json

    def tree_diff(self, base, head, tok):
        """Paths whose blob (mode, sha) differs between two recursive trees."""
        def blobs(ref):
            t = self.tree(ref, tok)
            self.assertFalse(t["truncated"])
            return {e["path"]: (e["mode"], e["sha"]) for e in t["tree"] if e["type"] == "blob"}
        a, b = blobs(base), blobs(head)
        return {p for p in set(a) | set(b) if a.get(p) != b.get(p)}

    def assert_tree_matches_compare(self, head, expected, tok):
        """The trees of compare's merge base and of `head` differ in exactly `expected`."""
        r = self.get("/repos/acme/widgets/compare/main...%s" % head, tok)
        self.assertEqual(r.status, 200, r)
        mb = r.json["merge_base_commit"]["sha"]
        self.assertEqual(self.tree_diff(mb, head, tok), set(expected))

    def test_git_tree_without_git(self):
        tok = self.token(["widgets"], {"contents": "read"})
        # PR 7 (setUp): src/a.c modified, .github/old.md -> docs/new.md, gone.txt removed.
        self.assert_tree_matches_compare(HEAD, {"src/a.c", ".github/old.md", "docs/new.md",
                                                "gone.txt"}, tok)
        # Another pull request with an added file, stacked on nothing: the base
        # tree grows with its removed file, PR 7's diff stays the same.
        self.gh.add_pull({"repo": REPO, "number": 9, "head": {"sha": "9" * 40, "ref": "nine"},
                          "base": {"ref": "main"},
                          "files": [{"filename": "src/lib/new.c", "status": "added"},
                                    {"filename": "src/a.c", "status": "modified"},
                                    {"filename": "old/x.c", "status": "removed"},
                                    {"filename": "b/y.c", "status": "renamed",
                                     "previous_filename": "a/y.c"}]})
        self.assert_tree_matches_compare("9" * 40, {"src/lib/new.c", "src/a.c", "old/x.c",
                                                    "a/y.c", "b/y.c"}, tok)
        self.assert_tree_matches_compare(HEAD, {"src/a.c", ".github/old.md", "docs/new.md",
                                                "gone.txt"}, tok)
        # Shape: subtrees listed before their contents, with their own sha.
        t = self.tree("9" * 40, tok)
        kinds = {e["path"]: e["type"] for e in t["tree"]}
        self.assertEqual((kinds["src"], kinds["src/lib"], kinds["src/lib/new.c"]), ("tree", "tree", "blob"))
        paths = [e["path"] for e in t["tree"]]
        self.assertLess(paths.index("src/lib"), paths.index("src/lib/new.c"))
        for e in t["tree"]:
            self.assertEqual(e["mode"], "040000" if e["type"] == "tree" else "100644")
            self.assertEqual("size" in e, e["type"] == "blob")
            self.assertTrue(e["url"].endswith(("/git/blobs/" if e["type"] == "blob" else "/git/trees/")
                                              + e["sha"]))
        self.assertNotIn(t["sha"], ("9" * 40, HEAD, "b" * 40))
        self.assertTrue(t["url"].endswith("/repos/acme/widgets/git/trees/" + t["sha"]))
        # The same tree by its branch name and by its own sha; without
        # `recursive`, only the top level; recursive=0 or false still recurses.
        self.assertEqual(self.tree("nine", tok), t)
        self.assertEqual(self.tree(t["sha"], tok), t)
        top = self.tree(t["sha"], tok, recursive=False)
        self.assertEqual([e["path"] for e in top["tree"]], [p for p in paths if "/" not in p])
        for v in ("0", "false", ""):
            r = self.get("/repos/acme/widgets/git/trees/nine?recursive=" + v, tok)
            self.assertEqual(r.json["tree"], t["tree"], v)
        # A subtree by its sha: paths relative to it.
        sub = [e for e in t["tree"] if e["path"] == "src"][0]
        st = self.tree(sub["sha"], tok)
        self.assertEqual({e["path"] for e in st["tree"]}, {"a.c", "lib", "lib/new.c"})
        # Deterministic; each head has its own tree, the base branch the base tree.
        self.assertEqual(self.tree("9" * 40, tok), t)
        self.assertNotEqual(self.tree(HEAD, tok)["sha"], t["sha"])
        self.assertEqual(self.tree("main", tok)["sha"], self.tree("b" * 40, tok)["sha"])
        # Unknown names and shas; truncation; permission.
        for bad in ("0" * 40, "nope", "e" * 40):
            r = self.get("/repos/acme/widgets/git/trees/" + bad, tok)
            self.assertEqual((r.status, r.json["message"]), (404, "Not Found"), bad)
            self.assertIn("documentation_url", r.json)
        self.gh.config(tree_entries_max=3)
        t3 = self.tree("9" * 40, tok)
        self.assertEqual((t3["tree"], t3["truncated"]), (t["tree"][:3], True))
        self.assertFalse(self.tree("9" * 40, tok, recursive=False)["truncated"])
        r = self.get("/repos/acme/widgets/git/trees/main", self.token(["widgets"], {"pull_requests": "read"}))
        self.assertEqual((r.status, r.json["message"]), (403, "Resource not accessible by integration"))
        self.assertEqual(r.header("x-accepted-github-permissions"), "contents=read")
        r = self.get("/repos/acme/widgets/git/trees/main", self.token(["gadgets"], {"contents": "read"}))
        self.assertEqual(r.status, 404)

    def test_git_tree_without_git_3001_files(self):
        tok = self.token(["widgets"], {"contents": "read"})
        statuses = ("modified", "added", "removed", "renamed")
        files, expected = [], set()
        for i in range(3001):
            f = {"filename": "m%d/sub%d/f%04d.c" % (i % 7, i % 3, i), "status": statuses[i % 4]}
            expected.add(f["filename"])
            if f["status"] == "renamed":
                f["previous_filename"] = "old/f%04d.c" % i
                expected.add(f["previous_filename"])
            files.append(f)
        self.gh.add_pull({"repo": REPO, "number": 7, "files": files})
        t0 = time.time()
        self.assert_tree_matches_compare(HEAD, expected, tok)
        self.assertLess(time.time() - t0, 10)
        t = self.tree(HEAD, tok)
        blobs = [e for e in t["tree"] if e["type"] == "blob"]
        # PR 7's files were replaced: its 3001 files, but the 750 removed ones.
        self.assertEqual(len(blobs), 3001 - 750)
        self.assertEqual(len(t["tree"]) - len(blobs), 7 + 7 * 3)   # m0..m6, each with sub0..sub2
        base = self.tree("main", tok)
        # modified (751), removed (750), renamed-away (750): all existed before.
        self.assertEqual(len([e for e in base["tree"] if e["type"] == "blob"]), 751 + 750 + 750)

    def test_git_tree_push_on_next(self):
        tok = self.token(["widgets"], {"contents": "read", "pull_requests": "read"})
        self.gh.admin("POST", "push-on-next", {"repo": REPO, "pr": 7, "sha": "9" * 40,
                                               "before": "files", "files": ["src/b.c"]})
        # The merge base's tree (by sha or name) does not fire it.
        self.tree("b" * 40, tok)
        self.tree("main", tok)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], HEAD)
        # The head's tree does: answered for the sha asked, the head moved on.
        self.gh.clear_requests()
        t = self.tree(HEAD, tok)
        self.assertIn("docs/new.md", [e["path"] for e in t["tree"]])
        self.assertEqual(self.gh.requests()[0]["push_on_next"]["sha"], "9" * 40)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], "9" * 40)
        # The pushed head is a tree too, with its own files.
        self.assert_tree_matches_compare("9" * 40, {"src/b.c"}, tok)
        self.assert_tree_matches_compare(HEAD, {"src/a.c", ".github/old.md", "docs/new.md",
                                                "gone.txt"}, tok)
        # "any" fires on a tree request as well.
        self.gh.push_on_next(REPO, 7, sha="8" * 40, before="any")
        self.tree("9" * 40, tok)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], "8" * 40)

    def test_reviews(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        r = self.get("/repos/acme/widgets/pulls/7/reviews", tok)
        self.assertEqual(r.status, 200)
        self.assertEqual([(x["user"]["login"], x["state"]) for x in r.json],
                         [("bob", "CHANGES_REQUESTED"), ("bob", "APPROVED"), ("carol", "COMMENTED")])
        self.assertEqual(r.json[1]["commit_id"], HEAD)
        self.assertEqual(r.json[2]["commit_id"], "e" * 40)
        times = [x["submitted_at"] for x in r.json]
        self.assertEqual(times, sorted(times))
        self.assertTrue(all(isinstance(x["id"], int) for x in r.json))
        r = self.get("/repos/acme/widgets/pulls/7/reviews?per_page=2", tok)
        self.assertEqual(len(r.json), 2)
        self.assertIn("next", parse_link(r.header("Link")))

    def test_collaborator_permission(self):
        gh = self.gh
        gh.add_repo({"full_name": REPO, "collaborators": {"dave": "maintain", "erin": "triage"}})
        gh.add_pull({"repo": REPO, "number": 8, "head": {"sha": "f" * 40, "ref": "x"},
                     "reviews": [{"user": "mallory", "state": "APPROVED",
                                  "author_association": "NONE"}]})
        tok = self.token(["widgets"], {"pull_requests": "read"})   # metadata: implicit
        perm = lambda u: self.get("/repos/acme/widgets/collaborators/%s/permission" % u, tok)
        self.assertEqual((perm("dave").json["permission"], perm("dave").json["role_name"]),
                         ("write", "maintain"))
        self.assertEqual(perm("erin").json["permission"], "read")
        # A seeded MEMBER reviewer writes; a stranger on a private repo has none.
        self.assertEqual(perm("bob").json["permission"], "write")
        self.assertEqual(perm("Mallory").json["permission"], "none")
        self.assertEqual(perm("nobody").json["permission"], "none")
        self.assertEqual(perm("bad%5Bbot%5D").status, 404)
        # Another repository's token does not reach a private one.
        other = self.token(["gadgets"], {"pull_requests": "read"})
        self.assertEqual(self.get("/repos/acme/widgets/collaborators/dave/permission",
                                  other).status, 404)
        gh.add_repo({"full_name": REPO, "private": False})
        self.assertEqual(perm("nobody").json["permission"], "read")

    def test_check_runs(self):
        tok = self.token(["widgets"], {"checks": "read"})
        self.gh.set_checks(REPO, HEAD, [
            {"name": "build", "status": "completed", "conclusion": "failure"},
            {"name": "build", "status": "completed", "conclusion": "success"},  # re-run, newer
            {"name": "lint", "status": "in_progress"},
            {"name": "docs", "status": "completed", "conclusion": "skipped"}])
        r = self.get("/repos/acme/widgets/commits/%s/check-runs" % HEAD, tok)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["total_count"], 3)
        runs = {c["name"]: c for c in r.json["check_runs"]}
        self.assertEqual(runs["build"]["conclusion"], "success")
        self.assertEqual((runs["lint"]["status"], runs["lint"]["conclusion"]), ("in_progress", None))
        self.assertEqual(runs["docs"]["head_sha"], HEAD)
        r = self.get("/repos/acme/widgets/commits/%s/check-runs?filter=all&per_page=2" % HEAD, tok)
        self.assertEqual((r.json["total_count"], len(r.json["check_runs"])), (4, 2))
        self.assertIn("next", parse_link(r.header("Link")))
        r = self.get("/repos/acme/widgets/commits/%s/check-runs" % ("f" * 40), tok)
        self.assertEqual(r.json, {"total_count": 0, "check_runs": []})
        # "latest" is per check suite: a newer success from another App does
        # not hide the CI App's failure; each run names its App.
        self.gh.set_checks(REPO, HEAD, [
            {"name": "build", "status": "completed", "conclusion": "failure", "app_id": 7},
            {"name": "build", "status": "completed", "conclusion": "success", "app_id": 99}])
        r = self.get("/repos/acme/widgets/commits/%s/check-runs" % HEAD, tok)
        self.assertEqual(sorted((c["app"]["id"], c["conclusion"]) for c in r.json["check_runs"]),
                         [(7, "failure"), (99, "success")])

    def test_combined_status(self):
        tok = self.token(["widgets"], {"statuses": "read"})
        url = "/repos/acme/widgets/commits/%s/status" % HEAD
        r = self.get(url, tok)
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json["state"], r.json["total_count"], r.json["statuses"], r.json["sha"]),
                         ("pending", 0, [], HEAD))
        self.gh.set_statuses(REPO, HEAD, [{"context": "ci/a", "state": "success"},
                                          {"context": "ci/b", "state": "success"}])
        self.assertEqual(self.get(url, tok).json["state"], "success")
        self.gh.set_statuses(REPO, HEAD, [{"context": "ci/a", "state": "success"},
                                          {"context": "ci/b", "state": "pending"}])
        self.assertEqual(self.get(url, tok).json["state"], "pending")
        self.gh.set_statuses(REPO, HEAD, [{"context": "ci/a", "state": "error"},
                                          {"context": "ci/b", "state": "pending"}])
        self.assertEqual(self.get(url, tok).json["state"], "failure")
        # the latest status per context wins
        self.gh.set_statuses(REPO, HEAD, [{"context": "ci/a", "state": "failure"},
                                          {"context": "ci/a", "state": "success"}])
        r = self.get(url, tok).json
        self.assertEqual((r["state"], r["total_count"]), ("success", 1))
        self.assertEqual(r["statuses"][0]["context"], "ci/a")

    # ------------------------------------------------------------------ merge
    def test_merge_success(self):
        tok = self.token(["widgets"], {"contents": "write", "pull_requests": "write"})
        r = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge",
                        {"sha": HEAD, "merge_method": "squash", "commit_title": "t",
                         "commit_message": "m"}, token=tok)
        self.assertEqual(r.status, 200, r)
        self.assertRegex(r.json["sha"], r"^[0-9a-f]{40}$")
        self.assertEqual((r.json["merged"], r.json["message"]), (True, "Pull Request successfully merged"))
        st = self.gh.state()
        pr = st["repos"][REPO]["pulls"]["7"]
        self.assertEqual((pr["state"], pr["merged"], pr["merge_commit_sha"]), ("closed", True, r.json["sha"]))
        self.assertEqual(st["repos"][REPO]["branches"]["main"], r.json["sha"])
        self.assertEqual(st["merges"][0]["merge_method"], "squash")
        self.assertEqual(st["merges"][0]["requested_sha"], HEAD)
        self.assertEqual(st["merges"][0]["commit_title"], "t")
        r = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge", {"sha": HEAD}, token=tok)
        self.assertEqual((r.status, r.json["message"]), (405, "Pull Request is not mergeable"))

    def test_merge_refusals(self):
        tok = self.token(["widgets"], {"contents": "write"})
        path = "/repos/acme/widgets/pulls/7/merge"
        r = self.gh.api("PUT", path, {"sha": "0" * 40}, token=tok)
        self.assertEqual((r.status, r.json["message"]),
                         (409, "Head branch was modified. Review and try the merge again."))
        r = self.gh.api("PUT", path, {"sha": HEAD, "merge_method": "octopus"}, token=tok)
        self.assertEqual(r.status, 422)
        self.gh.add_pull({"repo": REPO, "number": 7, "mergeable": False})
        r = self.gh.api("PUT", path, {"sha": HEAD}, token=tok)
        self.assertEqual((r.status, r.json["message"]), (405, "Pull Request is not mergeable"))
        self.assertEqual(self.gh.state()["merges"], [])
        self.assertEqual(self.gh.api("PUT", "/repos/acme/widgets/pulls/99/merge", {}, token=tok).status, 404)

    def test_push_between_check_and_merge(self):
        tok = self.token(["widgets"], {"contents": "write", "pull_requests": "read"})
        seen = self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"]
        self.gh.push_on_next(REPO, 7, sha="9" * 40, before="merge")
        # a GET does not trigger it
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], seen)
        r = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge", {"sha": seen}, token=tok)
        self.assertEqual(r.status, 409)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], "9" * 40)
        self.assertEqual(self.gh.state()["merges"], [])
        # plain push too
        self.gh.push(REPO, 7, "8" * 40)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).json["head"]["sha"], "8" * 40)
        log = self.gh.requests()
        self.assertTrue(any(e.get("push_on_next") for e in log))

    # ------------------------------------------------------------------ writes
    def test_create_pull(self):
        tok = self.token(["widgets"], {"pull_requests": "write"})
        path = "/repos/acme/widgets/pulls"
        r = self.gh.api("POST", path, {"head": "topic", "base": "main", "title": "T", "body": "B",
                                       "draft": True}, token=tok)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["number"], 8)
        self.assertEqual((r.json["head"]["ref"], r.json["head"]["sha"], r.json["base"]["ref"]),
                         ("topic", "c" * 40, "main"))
        self.assertTrue(r.json["draft"])
        self.assertEqual(r.json["user"]["login"], "threshold-test[bot]")
        self.assertTrue(r.header("Location").endswith("/repos/acme/widgets/pulls/8"))
        for body in ({"head": "main", "base": "main", "title": "x"},
                     {"head": "nope", "base": "main", "title": "x"},
                     {"head": "topic", "base": "nope", "title": "x"},
                     {"head": "topic", "base": "main"},
                     {"base": "main", "title": "x"},
                     {"head": "topic", "base": "main", "title": "dup"}):
            with self.subTest(body=body):
                r = self.gh.api("POST", path, body, token=tok)
                self.assertEqual(r.status, 422, r)
                self.assertEqual(r.json["message"], "Validation Failed")
        r = self.gh.api("POST", path, {"head": "acme:behind", "base": "main", "title": "x"}, token=tok)
        self.assertEqual(r.json["number"], 9)
        self.assertEqual(self.gh.api("POST", path, b"{nope", token=tok).status, 400)

    def test_comment(self):
        tok = self.token(["widgets"], {"pull_requests": "write"})
        r = self.gh.api("POST", "/repos/acme/widgets/issues/7/comments", {"body": "merged by policy"},
                        token=tok)
        self.assertEqual(r.status, 201, r)
        self.assertIsInstance(r.json["id"], int)
        self.assertEqual(r.json["body"], "merged by policy")
        self.assertEqual(r.json["user"]["login"], "threshold-test[bot]")
        self.assertEqual(self.gh.state()["comments"][0]["body"], "merged by policy")
        r = self.gh.api("POST", "/repos/acme/widgets/issues/99/comments", {"body": "x"}, token=tok)
        self.assertEqual(r.status, 404)
        r = self.gh.api("POST", "/repos/acme/widgets/issues/7/comments", {}, token=tok)
        self.assertEqual(r.status, 422)

    def test_deployment(self):
        tok = self.token(["widgets"], {"deployments": "write"})
        path = "/repos/acme/widgets/deployments"
        r = self.gh.api("POST", path, {"ref": "topic", "auto_merge": False, "environment": "staging",
                                       "payload": {"k": "v"}, "description": "d"}, token=tok)
        self.assertEqual(r.status, 201, r)
        self.assertEqual((r.json["ref"], r.json["sha"], r.json["environment"]), ("topic", "c" * 40, "staging"))
        self.assertIsInstance(r.json["id"], int)
        # auto_merge defaults to true: a branch behind the default branch is merged instead -> 202
        r = self.gh.api("POST", path, {"ref": "behind"}, token=tok)
        self.assertEqual(r.status, 202)
        self.assertEqual(r.json["message"], "Auto-merged main into behind on deployment.")
        # required contexts default to all contexts on the commit
        self.gh.set_statuses(REPO, "c" * 40, [{"context": "ci", "state": "failure"}])
        r = self.gh.api("POST", path, {"ref": "topic", "auto_merge": False}, token=tok)
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["message"], "Conflict: Commit status checks failed for topic.")
        r = self.gh.api("POST", path, {"ref": "topic", "auto_merge": False, "required_contexts": []},
                        token=tok)
        self.assertEqual(r.status, 201)
        self.assertEqual(r.json["environment"], "production")
        self.assertEqual(self.gh.api("POST", path, {"ref": "nope"}, token=tok).status, 422)
        self.assertEqual(self.gh.api("POST", path, {}, token=tok).status, 422)
        self.assertEqual(len(self.gh.state()["deployments"]), 2)

    def test_list_comments(self):
        w = self.token(["widgets"], {"issues": "write"})
        path = "/repos/acme/widgets/issues/7/comments"
        ids = [self.gh.api("POST", path, {"body": "c%d" % i}, token=w).json["id"] for i in range(3)]
        r = self.get(path + "?per_page=2", self.token(["widgets"], {"issues": "read"}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual([c["id"] for c in r.json], ids[:2])
        self.assertIn('rel="next"', r.header("Link"))
        self.assertEqual(r.json[0]["user"]["login"], "threshold-test[bot]")
        # pull_requests read also lists a pull request's comments
        r = self.get(path + "?page=2&per_page=2", self.token(["widgets"], {"pull_requests": "read"}))
        self.assertEqual([c["body"] for c in r.json], ["c2"])
        since = r.json[0]["updated_at"]
        r = self.get(path + "?since=" + since, w)
        self.assertTrue(r.json and all(c["updated_at"] >= since for c in r.json), r.json)
        self.assertEqual(self.get(path + "?since=2999-01-01T00:00:00Z", w).json, [])
        self.assertEqual(self.get(path + "?since=yesterday", w).status, 422)
        self.assertEqual(self.get("/repos/acme/widgets/issues/99/comments", w).status, 404)
        self.assertEqual(self.get(path, self.token(["widgets"], {"contents": "read"})).status, 403)

    def test_list_pulls(self):
        tok = self.token(["widgets"], {"pull_requests": "write"})
        path = "/repos/acme/widgets/pulls"
        n = self.gh.api("POST", path, {"head": "topic", "base": "main", "title": "T"}, token=tok).json["number"]
        r = self.get(path + "?state=all&head=acme:topic&base=main", tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([p["number"] for p in r.json], [n])
        self.assertEqual(r.json[0]["user"]["login"], "threshold-test[bot]")
        self.assertRegex(r.json[0]["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([p["number"] for p in self.get(path, tok).json], [n, 7])  # open, newest first
        self.assertEqual(self.get(path + "?head=other:topic&state=all", tok).json, [])
        # Without its owner the head filter is ignored, as GitHub does.
        self.assertEqual(len(self.get(path + "?head=nope&state=all", tok).json), 2)
        self.assertEqual(self.get(path + "?head=acme:topic&base=release", tok).json, [])
        self.assertEqual(self.get(path + "?state=closed", tok).json, [])
        self.assertEqual(self.get(path + "?state=merged", tok).status, 422)
        self.assertEqual(self.get(path, self.token(["widgets"], {"issues": "read"})).status, 403)

    def test_list_deployments(self):
        tok = self.token(["widgets"], {"deployments": "write"})
        path = "/repos/acme/widgets/deployments"
        a = self.gh.api("POST", path, {"ref": "topic", "auto_merge": False, "environment": "staging"},
                        token=tok).json["id"]
        b = self.gh.api("POST", path, {"ref": "topic", "auto_merge": False}, token=tok).json["id"]
        r = self.get(path, self.token(["widgets"], {"deployments": "read"}))
        self.assertEqual(r.status, 200, r)
        self.assertEqual([d["id"] for d in r.json], [b, a])  # newest first
        self.assertEqual(r.json[0]["creator"]["login"], "threshold-test[bot]")
        self.assertEqual([d["id"] for d in self.get(path + "?ref=topic&environment=staging", tok).json], [a])
        self.assertEqual([d["id"] for d in self.get(path + "?environment=production", tok).json], [b])
        self.assertEqual(self.get(path + "?ref=main", tok).json, [])
        self.assertEqual(self.get(path, self.token(["widgets"], {"issues": "read"})).status, 403)

    def test_dispatch(self):
        tok = self.token(["widgets"], {"actions": "write"})
        base = "/repos/acme/widgets/actions/workflows/%s/dispatches"
        r = self.gh.api("POST", base % "ci.yml", {"ref": "main", "inputs": {"x": "1"}}, token=tok)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.data, b"")
        self.assertEqual(self.gh.api("POST", base % "777", {"ref": "refs/heads/topic"}, token=tok).status, 204)
        self.assertEqual(self.gh.api("POST", base % "nope.yml", {"ref": "main"}, token=tok).status, 404)
        self.assertEqual(self.gh.api("POST", base % "ci.yml", {"ref": "nope"}, token=tok).status, 422)
        self.assertEqual(self.gh.api("POST", base % "ci.yml", {}, token=tok).status, 422)
        d = self.gh.state()["dispatches"]
        self.assertEqual([(x["workflow_path"], x["ref"]) for x in d],
                         [(".github/workflows/ci.yml", "main"), (".github/workflows/deploy.yml", "refs/heads/topic")])
        self.assertEqual(d[0]["inputs"], {"x": "1"})

    # ------------------------------------------------------------------ faults
    def test_fault_503_twice_then_ok(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.fault(method="GET", path_regex=r"/pulls/7$", status=503, times=2)
        codes = [self.get("/repos/acme/widgets/pulls/7", tok).status for _ in range(3)]
        self.assertEqual(codes, [503, 503, 200])
        self.assertEqual(self.gh.admin("GET", "faults"), [])

    def test_secondary_rate_limit(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.fault(path_regex="/pulls/", rate_limit={"kind": "secondary", "retry_after": 7})
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("retry-after"), "7")
        self.assertIn("secondary rate limit", r.json["message"])
        self.assertNotEqual(r.header("x-ratelimit-remaining"), "0")
        self.gh.fault(path_regex="/pulls/", rate_limit={"kind": "secondary", "status": 429})
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual(r.status, 429)
        self.assertIsNone(r.header("retry-after"))
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).status, 200)

    def test_primary_rate_limit(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.fault(path_regex="/pulls/", rate_limit={"kind": "primary", "reset_in": 30})
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("x-ratelimit-remaining"), "0")
        self.assertAlmostEqual(int(r.header("x-ratelimit-reset")), time.time() + 30, delta=3)
        self.assertIn("API rate limit exceeded", r.json["message"])
        # natural exhaustion of the per-installation budget
        self.gh.config(rate_limit=3)
        codes = [self.get("/repos/acme/widgets/pulls/7", tok).status for _ in range(5)]
        self.assertIn(403, codes)
        r = self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual((r.status, r.header("x-ratelimit-remaining")), (403, "0"))

    def test_latency_and_delay(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.latency(80)
        t0 = time.time()
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).status, 200)
        self.assertGreaterEqual(time.time() - t0, 0.08)
        self.gh.latency(0)
        self.gh.fault(path_regex="/pulls/7$", delay_ms=100)
        t0 = time.time()
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).status, 200)
        self.assertGreaterEqual(time.time() - t0, 0.1)

    def test_hang_and_close(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.fault(path_regex="/pulls/7$", hang_ms=1500)
        with self.assertRaises(socket.timeout):
            self.get("/repos/acme/widgets/pulls/7", tok, timeout=0.3)
        self.gh.fault(path_regex="/pulls/7$", close=True)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.get("/repos/acme/widgets/pulls/7", tok)
        self.assertEqual(self.get("/repos/acme/widgets/pulls/7", tok).status, 200)

    # ------------------------------------------------------------------ plumbing
    def test_request_log(self):
        tok = self.token(["widgets"], {"issues": "write"})
        self.gh.clear_requests()
        self.gh.api("POST", "/repos/acme/widgets/issues/7/comments", {"body": "hi"}, token=tok)
        self.gh.api("GET", "/repos/acme/widgets/installation", jwt=self.gh.jwt())
        log = self.gh.requests()
        self.assertEqual(len(log), 2)
        a, b = log
        self.assertEqual((a["method"], a["path"], a["status"], a["auth"]),
                         ("POST", "/repos/acme/widgets/issues/7/comments", 201, "token"))
        self.assertEqual(a["token_sha256"], Emulator.token_hash(tok))
        self.assertEqual(a["body"], {"body": "hi"})
        self.assertEqual(a["headers"]["User-Agent"], "threshold-test")
        self.assertEqual(a["headers"]["Accept"], "application/vnd.github+json")
        self.assertEqual(a["headers"]["X-GitHub-Api-Version"], "2022-11-28")
        self.assertEqual((b["auth"], b["jwt_claims"]["iss"]), ("jwt", APP_ID))
        self.assertEqual(b["jwt_claims"]["exp"] - b["jwt_claims"]["iat"], 600)
        self.assertEqual(len(self.gh.requests(since=a["seq"])), 1)

    def test_edge_header_checks(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        r = self.gh.api("GET", "/repos/acme/widgets/pulls/7", token=tok, user_agent=None)
        self.assertEqual(r.status, 403)
        self.assertIn("User-Agent", r.json["message"])
        r = self.gh.api("GET", "/repos/acme/widgets/pulls/7", token=tok, api_version="2020-01-01")
        self.assertEqual(r.status, 400)
        r = self.gh.api("GET", "/repos/acme/widgets/pulls/7", token=tok, api_version=None,
                        accept="application/json")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.gh.api("GET", "/nope", token=tok).status, 404)

    def test_keep_alive(self):
        tok = self.token(["widgets"], {"pull_requests": "read"})
        self.gh.clear_requests()
        conn = http.client.HTTPConnection("127.0.0.1", self.gh.port, timeout=5)
        r1 = self.gh.api("GET", "/repos/acme/widgets/pulls/7", token=tok, conn=conn)
        sock = conn.sock
        r2 = self.gh.api("PUT", "/repos/acme/widgets/pulls/7/merge", {"sha": "0" * 40}, token=tok, conn=conn)
        r3 = self.gh.api("DELETE", "/installation/token", token=tok, conn=conn)  # 204, no body
        r4 = self.gh.api("GET", "/repos/acme/widgets/pulls/7", token=tok, conn=conn)
        self.assertEqual([r1.status, r2.status, r3.status, r4.status], [200, 403, 204, 401])
        self.assertIs(conn.sock, sock)
        conn.close()
        ids = {e["connection_id"] for e in self.gh.requests()}
        self.assertEqual(len(ids), 1)

    def test_renamed_repo_redirect(self):
        self.gh.add_repo({"full_name": "acme/old-name", "moved_to": REPO})
        tok = self.token(["widgets"], {"pull_requests": "read"})
        r = self.get("/repos/acme/old-name/pulls/7", tok)
        self.assertEqual(r.status, 301)
        loc = urllib.parse.urlsplit(r.header("Location"))
        self.assertRegex(loc.path, r"^/repositories/\d+/pulls/7$")
        r = self.get(loc.path, tok)
        self.assertEqual((r.status, r.json["number"]), (200, 7))

    def test_seed_file(self):
        d = tempfile.mkdtemp(prefix="gh-emu-seed-")
        seed = os.path.join(d, "seed.json")
        with open(seed, "w") as fh:
            json.dump({"installations": [{"id": 5, "account": "o", "repositories": ["o/r"],
                                          "permissions": {"contents": "read"}}]}, fh)
        gh2 = Emulator(app_id=7, extra_args=["--state", seed], workdir=d).start()
        try:
            r = gh2.api("GET", "/repos/o/r/installation", jwt=gh2.jwt())
            self.assertEqual((r.status, r.json["id"]), (200, 5))
        finally:
            gh2.stop()
            shutil.rmtree(d, ignore_errors=True)


class GitTest(unittest.TestCase):
    """The git smart-HTTP server, with a real `git` client."""

    @classmethod
    def setUpClass(cls):
        cls.gh = Emulator(app_id=APP_ID).start()
        cls.tmp = tempfile.mkdtemp(prefix="gh-emu-gittest-")

    @classmethod
    def tearDownClass(cls):
        cls.gh.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        gh = self.gh
        gh.reset()
        self.home = tempfile.mkdtemp(dir=self.tmp)
        info = gh.add_git_repo(REPO, {"README.md": "hello\n", ".github/workflows/ci.yml": "on: push\n"},
                               protected=["main", "release"])
        self.initial = info["sha"]
        self.gd = info["path"]     # the bare repository
        gh.add_installation({"id": 42, "account": "acme", "repositories": [REPO, "acme/gadgets"],
                             "permissions": {"contents": "write", "workflows": "write",
                                             "pull_requests": "write"}})
        gh.add_git_repo("acme/gadgets", {"g.txt": "g\n"})

    def token(self, perms, repos=("widgets",)):
        return self.gh.mint_token(42, list(repos), perms)

    def git(self, *args, token=None, cwd=None, check=True):
        p = subprocess.run(["git"] + list(args), cwd=cwd or self.home, capture_output=True, text=True,
                           env=Emulator.git_env(self.home, token), timeout=60)
        if check and p.returncode != 0:
            self.fail("git %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
        return p

    def clone(self, token, repo=REPO, name="w"):
        d = os.path.join(self.home, name)
        self.git("clone", "-q", self.gh.git_url(repo), d, token=token)
        return d

    def commit(self, d, files, msg="change"):
        for path, content in files.items():
            full = os.path.join(d, path)
            if content is None:
                os.unlink(full)
                continue
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb" if isinstance(content, bytes) else "w") as fh:
                fh.write(content)
        self.git("add", "-A", cwd=d)
        self.git("commit", "-q", "-m", msg, cwd=d)
        return self.git("rev-parse", "HEAD", cwd=d).stdout.strip()

    def git_log(self):
        # A git request is logged after its streamed answer, which git may
        # have read already: settle waits for it.
        return [e for e in self.gh.requests(settle=True) if e.get("kind") == "git"]

    # ------------------------------------------------------------------ tests
    def test_admin_repo_and_rest_view(self):
        refs = self.gh.git_refs(REPO)
        self.assertEqual(refs, {"refs/heads/main": self.initial})
        tok = self.token({"contents": "read"})
        r = self.gh.api("GET", "/repos/acme/widgets", token=tok)
        self.assertEqual((r.status, r.json["default_branch"]), (200, "main"))
        self.gh.add_git_repo("acme/tools", {"a": "b"}, default_branch="trunk")
        self.assertEqual(list(self.gh.git_refs("acme/tools")), ["refs/heads/trunk"])
        self.assertEqual(self.gh.state()["repos"]["acme/tools"]["default_branch"], "trunk")
        # seed document form
        self.gh.load({"git_repos": [{"repo": "acme/seeded", "files": {"x": "y"}}]})
        self.assertIn("refs/heads/main", self.gh.git_refs("acme/seeded"))

    def test_clone_read_token_and_log(self):
        tok = self.token({"contents": "read"})
        self.gh.clear_requests()
        d = self.clone(tok)
        with open(os.path.join(d, "README.md")) as fh:
            self.assertEqual(fh.read(), "hello\n")
        log = self.git_log()
        ok = [e for e in log if e["status"] == 200]
        self.assertTrue(ok)
        for e in ok:
            self.assertEqual((e["service"], e["token_sha256"], e["repo"]),
                             ("git-upload-pack", Emulator.token_hash(tok), REPO))
        self.assertNotIn(tok, json.dumps(log))
        self.assertEqual({e["path"] for e in ok},
                         {"/acme/widgets.git/info/refs", "/acme/widgets.git/git-upload-pack"})
        # the same paths without .git work too
        self.git("ls-remote", self.gh.git_url(REPO, ""), token=tok)

    def test_push_refused_with_read_token(self):
        d = self.clone(self.token({"contents": "read"}))
        self.commit(d, {"a.txt": "a\n"})
        self.gh.clear_requests()
        p = self.git("push", "origin", "HEAD:main", cwd=d, token=self.token({"contents": "read"}),
                     check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Permission to acme/widgets.git denied", p.stderr)
        self.assertIn("403", p.stderr)
        self.assertEqual(self.gh.git_refs(REPO)["refs/heads/main"], self.initial)
        e = [e for e in self.git_log() if e["status"] == 403][0]
        self.assertEqual((e["service"], e["method"]), ("git-receive-pack", "GET"))
        # token for another repository: 403 as well, even for reading
        p = self.git("ls-remote", self.gh.git_url(REPO), token=self.token(
            {"contents": "write"}, repos=["gadgets"]), check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("denied", p.stderr)
        # raw: POST git-receive-pack is refused the same way
        r = self.gh.raw("POST", "/acme/widgets.git/git-receive-pack", b"0000", {
            "Authorization": "Basic " + base64.b64encode(
                b"x-access-token:" + self.token({"contents": "read"}).encode()).decode(),
            "Content-Type": "application/x-git-receive-pack-request"})
        self.assertEqual(r.status, 403)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))

    def test_push_with_write_token(self):
        d = self.clone(self.token({"contents": "read"}))
        new = self.commit(d, {"src/a.c": "int a;\n"})
        self.gh.add_pull({"repo": REPO, "number": 3, "head": {"sha": self.initial, "ref": "topic"},
                          "base": {"ref": "main"}})
        tok = self.token({"contents": "write"})
        self.gh.clear_requests()
        p = self.git("push", "origin", "HEAD:main", "HEAD:refs/heads/topic", cwd=d, token=tok)
        self.assertIn("HEAD -> main", p.stderr)
        refs = self.gh.git_refs(REPO)
        self.assertEqual((refs["refs/heads/main"], refs["refs/heads/topic"]), (new, new))
        rp = [e for e in self.git_log() if e["route"] == "git_receive_pack"]
        self.assertEqual(len(rp), 1)
        self.assertEqual((rp[0]["status"], rp[0]["token_sha256"]), (200, Emulator.token_hash(tok)))
        self.assertGreater(rp[0]["request_bytes"], 100)
        self.assertEqual(sorted(u["ref"] for u in rp[0]["ref_updates"]),
                         ["refs/heads/main", "refs/heads/topic"])
        # the REST view follows: branch table, open pull request head
        st = self.gh.state()["repos"][REPO]
        self.assertEqual((st["branches"]["main"], st["pulls"]["3"]["head"]["sha"]), (new, new))
        # deleting a branch
        self.git("push", "origin", ":topic", cwd=d, token=tok)
        self.assertNotIn("refs/heads/topic", self.gh.git_refs(REPO))
        self.assertNotIn("topic", self.gh.state()["repos"][REPO]["branches"])

    def test_no_credentials_and_dead_tokens(self):
        r = self.gh.raw("GET", "/acme/widgets.git/info/refs?service=git-upload-pack")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="GitHub"')
        p = self.git("ls-remote", self.gh.git_url(REPO), check=False)
        self.assertNotEqual(p.returncode, 0)
        tok = self.token({"contents": "write"})
        self.git("ls-remote", self.gh.git_url(REPO), token=tok)
        self.assertEqual(self.gh.api("DELETE", "/installation/token", token=tok).status, 204)
        self.gh.clear_requests()
        p = self.git("ls-remote", self.gh.git_url(REPO), token=tok, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Authentication failed", p.stderr)
        e = [e for e in self.git_log() if e["token_sha256"]][0]
        self.assertEqual((e["status"], e["token_state"]), (401, "revoked"))
        tok2 = self.token({"contents": "write"})
        self.gh.expire_tokens(Emulator.token_hash(tok2))
        p = self.git("ls-remote", self.gh.git_url(REPO), token=tok2, check=False)
        self.assertIn("Authentication failed", p.stderr)
        r = self.gh.raw("GET", "/acme/nope.git/info/refs?service=git-upload-pack", headers={
            "Authorization": "Basic " + base64.b64encode(
                b"x:" + self.token({"contents": "read"}).encode()).decode()})
        self.assertEqual(r.status, 404)

    def test_workflows_permission(self):
        d = self.clone(self.token({"contents": "read"}))
        self.commit(d, {".github/workflows/ci.yml": "on: [push, pull_request]\n"})
        p = self.git("push", "origin", "HEAD:main", cwd=d, token=self.token({"contents": "write"}),
                     check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("remote: refusing to allow a GitHub App to create or update workflow "
                      "`.github/workflows/ci.yml` without `workflows` permission", p.stderr)
        self.assertIn("[remote rejected]", p.stderr)
        self.assertEqual(self.gh.git_refs(REPO)["refs/heads/main"], self.initial)
        # a new branch carrying the change, and a deletion, are refused too
        p = self.git("push", "origin", "HEAD:refs/heads/wf", cwd=d,
                     token=self.token({"contents": "write"}), check=False)
        self.assertIn("without `workflows` permission", p.stderr)
        self.assertNotIn("refs/heads/wf", self.gh.git_refs(REPO))
        # with workflows: write it goes through
        new = self.git("rev-parse", "HEAD", cwd=d).stdout.strip()
        self.git("push", "origin", "HEAD:main", cwd=d,
                 token=self.token({"contents": "write", "workflows": "write"}))
        self.assertEqual(self.gh.git_refs(REPO)["refs/heads/main"], new)
        self.commit(d, {".github/workflows/ci.yml": None})
        p = self.git("push", "origin", "HEAD:main", cwd=d, token=self.token({"contents": "write"}),
                     check=False)
        self.assertIn("workflow `.github/workflows/ci.yml` without", p.stderr)
        # other files are fine without workflows
        self.git("reset", "-q", "--hard", "origin/main", cwd=d)
        self.commit(d, {"docs/x.md": "x\n"})
        self.git("push", "origin", "HEAD:main", cwd=d, token=self.token({"contents": "write"}))

    def test_branches_endpoint(self):
        tok = self.token({"metadata": "read"})
        r = self.gh.api("GET", "/repos/acme/widgets/branches/main", token=tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json["name"], r.json["commit"]["sha"], r.json["protected"]),
                         ("main", self.initial, True))
        c = self.gh.git_commit(REPO, "feature/x", {"f": "1"})
        r = self.gh.api("GET", "/repos/acme/widgets/branches/feature/x", token=tok)
        self.assertEqual((r.status, r.json["commit"]["sha"], r.json["protected"]),
                         (200, c["sha"], False))
        r = self.gh.api("GET", "/repos/acme/widgets/branches/nope", token=tok)
        self.assertEqual((r.status, r.json["message"]), (404, "Branch not found"))
        r = self.gh.api("GET", "/repos/acme/widgets/branches/main",
                        token=self.token({"contents": "read"}, repos=["gadgets"]))
        self.assertEqual(r.status, 404)

    def test_compare(self):
        tok = self.token({"contents": "read"})

        def cmp(base, head):
            r = self.gh.api("GET", "/repos/acme/widgets/compare/%s...%s" % (base, head), token=tok)
            self.assertEqual(r.status, 200, r)
            return (r.json["status"], r.json["ahead_by"], r.json["behind_by"],
                    r.json["merge_base_commit"]["sha"])
        i = self.initial
        self.assertEqual(cmp("main", "main"), ("identical", 0, 0, i))
        a1 = self.gh.git_commit(REPO, "topic", {"t": "1"}, parent=i)["sha"]
        a2 = self.gh.git_commit(REPO, "topic", {"t": "2"})["sha"]
        self.assertEqual(cmp("main", "topic"), ("ahead", 2, 0, i))
        self.assertEqual(cmp("topic", "main"), ("behind", 0, 2, i))
        self.assertEqual(cmp(i, a2), ("ahead", 2, 0, i))
        self.gh.git_commit(REPO, "main", {"m": "1"})
        self.assertEqual(cmp("main", "topic"), ("diverged", 2, 1, i))
        self.assertEqual(cmp(a1, "topic")[:3], ("ahead", 1, 0))
        for bad in ("main...nope", "nope...main", "0" * 40 + "...main"):
            r = self.gh.api("GET", "/repos/acme/widgets/compare/" + bad, token=tok)
            self.assertEqual(r.status, 404, bad)
        r = self.gh.api("GET", "/repos/acme/widgets/compare/main...topic",
                        token=self.token({"metadata": "read"}))
        self.assertEqual(r.status, 403)

    def test_git_tree(self):
        tok = self.token({"contents": "read"})
        c = self.gh.git_commit(REPO, "main", {"src/a.c": "int a;\n", "src/lib/b.c": "int b;\n",
                                              "run.sh": {"content": "#!/bin/sh\n", "executable": True}})
        gd = self.gd

        def ls(*args):
            out = subprocess.run(["git", "--git-dir", gd, "ls-tree", "-l", "-z"] + list(args) + ["main"],
                                 capture_output=True, text=True, check=True).stdout
            rows = []
            for rec in filter(None, out.split("\0")):
                meta, path = rec.split("\t", 1)
                mode, typ, sha, size = meta.split()
                rows.append((path, mode, typ, sha, None if size == "-" else int(size)))
            return rows

        def tree(ref, q="?recursive=1", status=200):
            r = self.gh.api("GET", "/repos/acme/widgets/git/trees/%s%s" % (ref, q), token=tok)
            self.assertEqual(r.status, status, r)
            return r.json

        def rows(t):
            return [(e["path"], e["mode"], e["type"], e["sha"], e.get("size")) for e in t["tree"]]
        t = tree("main")
        self.assertEqual(rows(t), ls("-r", "-t"))
        self.assertFalse(t["truncated"])
        got = {e["path"]: e for e in t["tree"]}
        self.assertEqual((got["run.sh"]["mode"], got["README.md"]["size"], got["src/lib"]["type"]),
                         ("100755", 6, "tree"))
        self.assertEqual(rows(tree("main", "")), ls())
        self.assertEqual([e["path"] for e in tree("main", "")["tree"]],
                         [".github", "README.md", "run.sh", "src"])
        # A commit sha, the tree's own sha, refs/heads/main: the same tree.
        tsha = subprocess.run(["git", "--git-dir", gd, "rev-parse", "main^{tree}"],
                              capture_output=True, text=True, check=True).stdout.strip()
        self.assertEqual(t["sha"], tsha)
        for ref in (c["sha"], tsha, "refs/heads/main"):
            self.assertEqual(tree(ref), t, ref)
        self.assertEqual(tree(got["src"]["sha"])["tree"][0]["path"], "a.c")
        self.assertNotEqual(tree(self.initial)["sha"], tsha)
        for v in ("0", "false"):
            self.assertEqual(tree("main", "?recursive=" + v), t)
        # Unknown: 404 like GitHub.
        for bad in ("0" * 40, "nope", "-r"):
            r = self.gh.api("GET", "/repos/acme/widgets/git/trees/" + bad, token=tok)
            self.assertEqual((r.status, r.json["message"]), (404, "Not Found"), bad)
        # Truncated recursive listing: the first entries.
        self.gh.config(tree_entries_max=4)
        t4 = tree("main")
        self.assertEqual((t4["tree"], t4["truncated"]), (t["tree"][:4], True))
        self.assertFalse(tree("main", "")["truncated"])
        # contents: read needed, as for compare.
        r = self.gh.api("GET", "/repos/acme/widgets/git/trees/main", token=self.token({"metadata": "read"}))
        self.assertEqual((r.status, r.header("x-accepted-github-permissions")), (403, "contents=read"))

    def test_public_repo_anonymous_clone(self):
        self.gh.add_git_repo("acme/open", {"o": "o\n"}, private=False)
        d = os.path.join(self.home, "o")
        self.git("clone", "-q", self.gh.git_url("acme/open"), d)
        self.commit(d, {"p": "p\n"})
        p = self.git("push", "origin", "HEAD:main", cwd=d, check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_fault_on_git_path(self):
        self.gh.fault(method="GET", path_regex=r"\.git/info/refs$", status=503)
        p = self.git("ls-remote", self.gh.git_url(REPO), token=self.token({"contents": "read"}),
                     check=False)
        self.assertIn("503", p.stderr)
        e = self.git_log()[-1]
        self.assertEqual((e["status"], e["route"]), (503, "git_info_refs"))
        self.assertIsNotNone(e["fault"])

    def test_large_push(self):
        d = self.clone(self.token({"contents": "read"}))
        new = self.commit(d, {"big.bin": os.urandom(20 << 20)})
        tok = self.token({"contents": "write"})
        self.gh.clear_requests()
        self.git("push", "-q", "origin", "HEAD:main", cwd=d, token=tok)
        self.assertEqual(self.gh.git_refs(REPO)["refs/heads/main"], new)
        # git first sends a 4-byte probe (to settle authentication), then the chunked pack
        rp = [e for e in self.git_log() if e["route"] == "git_receive_pack" and e["status"] == 200]
        big = max(rp, key=lambda e: e["request_bytes"])
        self.assertGreater(big["request_bytes"], 20 << 20)
        self.assertEqual(big["headers"]["Transfer-Encoding"], "chunked")
        self.assertEqual([u["new"] for u in big["ref_updates"]], [new])
        d2 = self.clone(tok, name="w2")
        self.assertEqual(os.path.getsize(os.path.join(d2, "big.bin")), 20 << 20)


if __name__ == "__main__":
    unittest.main(verbosity=2)
