#!/usr/bin/python3
"""Seed corpora for the fuzz harnesses, made fresh from independent
sources: an audit log from tests/tools/make_audit_log.py (its lines, tokens,
quotes), signer frames built from docs/signer-protocol.md, and a real git
push body from git itself.

    seeds.py OUTDIR     writes OUTDIR/<harness>/<sha1 of the seed> and OUTDIR/root.pem
"""
import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Corpus:
    """A harness's seed directory; files are named by their content's
    SHA-1, as libFuzzer names its own, so several writers can share one."""
    def __init__(self, out, name):
        self.dir = os.path.join(out, name)
        os.makedirs(self.dir, exist_ok=True)

    def add(self, data):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(self.dir, hashlib.sha1(data).hexdigest()), "wb") as f:
            f.write(data)


def string(b):
    return struct.pack(">I", len(b)) + b


def audit_seeds(out, work):
    keys = os.path.join(work, "keys")
    log = os.path.join(work, "log.jsonl")
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests/tools/make_audit_log.py"),
                    "--out", log, "--entries", "40", "--batch", "8", "--keys-dir", keys],
                   check=True, stdout=subprocess.DEVNULL)
    os.replace(os.path.join(keys, "root.pem"), os.path.join(out, "root.pem"))
    lines = open(log, "rb").read().splitlines()
    averify, js, tokens, tpm = (Corpus(out, n) for n in ("averify", "json", "tokens", "tpm"))
    averify.add(b"\n".join(lines) + b"\n")
    averify.add(b"\n".join(lines[:12]) + b"\n")
    seen = set()
    for line in lines:
        js.add(line)
        obj = json.loads(line)
        cp = obj.get("checkpoint")
        if cp and cp.get("kind") == "tpm-quote":
            tpm.add(b"\x00" + b64d(cp["attest"]))
            tpm.add(b"\x01" + b64d(cp["sig"]))
        stack = [obj]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, str) and v.count(".") == 2 and v.startswith("eyJ"):
                if v in seen:
                    continue
                seen.add(v)
                typ = json.loads(b64d(v.split(".")[0])).get("typ", "")
                sel = {"threshold-human-cert+jwt": 2, "threshold-delegation+jwt": 3}.get(typ, 0)
                tokens.add(bytes([0]) + v.encode())
                if sel:
                    tokens.add(bytes([sel]) + v.encode())
                signing_input = v.rsplit(".", 1)[0].encode()
                tokens.add(bytes([1]) + signing_input)
                for purpose in range(4, 8):
                    tokens.add(bytes([purpose]) + signing_input)


def op_seeds(out):
    """Operations as agents ask for them (docs/api.md): selector 8 of
    fuzz_tokens, fields separated by NUL, the PR number last."""
    c = Corpus(out, "tokens")
    for op, repo, target, params, pr in (
            ("github.merge", "acme/backend", "main", "", 123),
            ("github.pr.create", "acme/backend", "main",
             '{"title":"Fix","head":"topic","body":"x","draft":true}', 0),
            ("github.comment", "acme/backend", "", '{"body":"LGTM"}', 7),
            ("github.deployment.create", "acme/backend", "v1.2", '{"environment":"prod"}', 0),
            ("github.workflow.dispatch", "acme/backend", "main",
             '{"workflow":"ci.yml","inputs":{"a":"b"}}', 0),
            ("github.push", "acme/backend", "", "", 0)):
        c.add(b"\x08" + b"\0".join(x.encode() for x in (op, repo, target, params)) +
              struct.pack(">I", pr))


def proto_seeds(out):
    c = Corpus(out, "proto")
    payload = b"eyJhbGciOiJFUzI1NiJ9.eyJpYXQiOjEsImV4cCI6Mn0"
    for body in (b"\x01", b"\x02" + string(b"capability"),
                 b"\x03" + string(b"capability") + string(payload),
                 b"\x04" + string(b"q" * 32), b"\x05", b"\x06",
                 b"\x07" + string(b"c" * 60) + string(b"s" * 256),
                 b"\x08" + string(b"thresholdd:host")):
        c.add(b"\x00" + body)
    ok_alg_blob = b"\x80" + string(b"ES256") + string(b"k" * 91)
    for req in (2, 3):
        c.add(bytes([0x80, req]) + ok_alg_blob)
    c.add(bytes([0x80, 4]) + b"\x80" + string(b"a" * 100) + string(b"s" * 72) + string(b"p" * 40))
    c.add(bytes([0x80, 1]) + b"\x80" + struct.pack(">I", 1) + string(b"capability") +
          string(b"pkcs11") + struct.pack(">I", 0) + string(b""))
    c.add(bytes([0x80, 3]) + b"\x81" + struct.pack(">I", 7) + string(b"refused: unknown purpose"))


def gitrx_seeds(out, work):
    c = Corpus(out, "gitrx")
    repo = os.path.join(work, "repo")
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@example.com",
               GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=work)

    def git(*args, **kw):
        return subprocess.run(["git", "-C", repo] + list(args), env=env, check=True,
                              stdout=subprocess.PIPE, **kw).stdout

    subprocess.run(["git", "init", "-q", repo], env=env, check=True)
    for i in range(3):
        with open(os.path.join(repo, "f%d" % i), "w") as f:
            f.write("line %d\n" % i * (i + 1))
        git("add", ".")
        git("commit", "-q", "-m", "c%d" % i)
    new = git("rev-parse", "HEAD").strip()
    old = git("rev-parse", "HEAD~2").strip()
    zero = b"0" * 40

    def pkt(b):
        return b"%04x" % (len(b) + 4) + b

    for base, first in ((old, old), (None, zero)):
        revs = (new + b"\n" + (b"^" + base + b"\n" if base else b""))
        pack = git("pack-objects", "--stdout", "--revs", "-q", input=revs)
        cmd = first + b" " + new + b" refs/heads/main\0report-status side-band-64k\n"
        body = pkt(cmd) + b"0000" + pack
        for piece in (0, 7, 255):
            c.add(bytes([piece]) + body)
    c.add(b"\x10" + pkt(new + b" " + zero + b" refs/heads/gone\0report-status\n") + b"0000")


def github_seeds(out):
    """Replies as docs of GitHub's REST API show them; byte 0 is the
    harness's selector (0 checks, 1 statuses, 2 reviews, 3 files, 4 PR, 5 header lines,
    6 + 8k a recovery list page, k's bits choosing its matching rules, 7 two tree
    listings separated by a NUL byte)."""
    c = Corpus(out, "github")
    sha = "ab" * 20
    c.add(b"\x04" + json.dumps({"number": 7, "state": "open", "draft": False, "merged": False,
                                "mergeable": True, "head": {"sha": sha, "ref": "topic"},
                                "base": {"ref": "main"}, "user": {"login": "bob"}}).encode())
    c.add(b"\x00" + json.dumps({"total_count": 2, "check_runs": [
        {"name": "ci/test", "status": "completed", "conclusion": "success",
         "app": {"id": 15368, "slug": "github-actions"}},
        {"name": "lint", "status": "in_progress", "conclusion": None, "app": None}]}).encode())
    c.add(b"\x00" + json.dumps({"total_count": 2, "check_runs": [
        {"name": "lint", "status": "completed", "conclusion": "success", "app": {"id": 99}},
        {"name": "lint", "status": "completed", "conclusion": "success",
         "app": {"id": 15368}}]}).encode())
    c.add(b"\x01" + json.dumps({"state": "success", "statuses": [
        {"context": "ci/test", "state": "success"}]}).encode())
    c.add(b"\x02" + json.dumps([{"id": 1, "user": {"login": "carol"}, "state": "APPROVED",
                                 "commit_id": sha},
                                {"id": 2, "user": {"login": "dave"}, "state": "CHANGES_REQUESTED",
                                 "commit_id": sha}]).encode())
    c.add(b"\x05" + b"HTTP/2 200\r\nlink: <https://api.github.com/repositories/1/pulls/7/files?page=2>; "
          b'rel="next", <https://api.github.com/repositories/1/pulls/7/files?page=30>; rel="last"\r\n'
          b"x-ratelimit-remaining: 4999\r\nx-ratelimit-reset: 1764000000\r\nretry-after: 3\r\n\r\n")
    bot = {"login": "threshold[bot]", "type": "Bot"}
    # comments (user, id, body): rules 4 -> selector 6 + 8 * 4
    c.add(bytes([6 + 8 * 4]) + json.dumps([
        {"id": 11, "user": bot, "body": "LGTM", "created_at": "2025-11-24T16:00:01Z"},
        {"id": 12, "user": {"login": "carol"}, "body": "LGTM", "created_at": "2025-11-24T16:00:02Z"},
        {"id": 13, "user": None, "body": "LGTM", "created_at": "2025-11-24T16:00:03Z"}]).encode())
    # pull requests, newest first (user, number, head): rules 2 | 8 | 16
    c.add(bytes([6 + 8 * 26]) + json.dumps([
        {"number": 9, "user": bot, "head": {"ref": "topic"}, "created_at": "2025-11-24T16:00:09Z"},
        {"number": 8, "user": bot, "head": {"ref": "other"}, "created_at": "2025-11-24T15:00:00Z"}]).encode())
    # deployments, newest first (creator, id): rules 1 | 16
    c.add(bytes([6 + 8 * 17]) + json.dumps([
        {"id": 501, "creator": bot, "created_at": "2025-11-24T16:00:05Z"},
        {"id": 500, "creator": bot, "created_at": "2020-01-01T00:00:00Z"}]).encode())
    def tree(entries, truncated=False):
        return json.dumps({"sha": "cd" * 20, "truncated": truncated, "tree": [
            {"path": p, "mode": m, "type": t, "sha": s, "size": 1} for (t, m, s, p) in entries]}).encode()
    base = [("tree", "040000", "01" * 20, "src"), ("blob", "100644", "02" * 20, "a.c"),
            ("blob", "100644", "03" * 20, "README"), ("commit", "160000", "04" * 20, "vendor"),
            ("blob", "100644", "07" * 20, "x")]
    head = [("tree", "040000", "11" * 20, "src"), ("blob", "100755", "02" * 20, "a.c"),
            ("tree", "040000", "05" * 20, ".github"), ("commit", "160000", "06" * 20, "vendor"),
            ("tree", "040000", "08" * 20, "x")]
    c.add(b"\x07" + tree(base) + b"\0" + tree(head))
    c.add(b"\x07" + tree(base) + b"\0" + tree(head, True))
    c.add(b"\x03" + json.dumps([{"filename": "src/a.c", "status": "modified"},
                                {"filename": ".github/workflows/ci.yml", "status": "added"},
                                {"filename": "keys/new.pem", "status": "renamed",
                                 "previous_filename": "secrets/old.pem"}]).encode())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        audit_seeds(out, work)
        gitrx_seeds(out, work)
    proto_seeds(out)
    op_seeds(out)
    github_seeds(out)


if __name__ == "__main__":
    main()
