#!/usr/bin/python3
"""Small helper for tests that drive the GitHub emulator.

    from client import Emulator
    with Emulator(app_id=12345) as gh:          # generates an App key pair, starts the server
        gh.add_installation({"id": 42, "account": "acme", "repositories": ["acme/widgets"],
                             "permissions": {"pull_requests": "write", "contents": "write"}})
        r = gh.api("GET", "/repos/acme/widgets/installation", jwt=gh.jwt())
        assert r.status == 200 and r.json["id"] == 42

Standard library + python3-cryptography + python3-jwt (PyJWT) only.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
PYTHON = "/usr/bin/python3"


def generate_rsa_keypair(directory, name="app", bits=2048):
    """Write NAME.key (PKCS#8 private) and NAME.pub (SPKI public); return (key_path, pub_path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    kp = os.path.join(directory, name + ".key")
    pp = os.path.join(directory, name + ".pub")
    with open(kp, "wb") as fh:
        fh.write(priv)
    os.chmod(kp, 0o600)
    with open(pp, "wb") as fh:
        fh.write(pub)
    return kp, pp


def make_jwt(private_key_pem, iss, iat_offset=-60, exp_offset=540, alg="RS256",
             now=None, extra_claims=None, drop=(), headers=None):
    """Mint an App JWT.  alg: RS256 (default; any PyJWT alg works), HS256 (the key bytes are
    the HMAC secret) or 'none' (unsigned)."""
    import base64
    import jwt as pyjwt
    now = int(time.time() if now is None else now)
    claims = {"iat": now + iat_offset, "exp": now + exp_offset, "iss": iss}
    claims.update(extra_claims or {})
    for k in drop:
        claims.pop(k, None)
    if alg == "none":
        def b64(d):
            return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
        return b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + "."
    if alg == "HS256":
        # Key-confusion attempt: the given key bytes (e.g. the App *public* key PEM) are used
        # as the HMAC secret.  PyJWT refuses PEM-looking secrets, so build it by hand.
        import hmac

        def b64(d):
            return base64.urlsafe_b64encode(d).rstrip(b"=").decode()
        h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        p = b64(json.dumps(claims).encode())
        k = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        sig = hmac.new(k, (h + "." + p).encode(), hashlib.sha256).digest()
        return h + "." + p + "." + b64(sig)
    return pyjwt.encode(claims, private_key_pem, algorithm=alg, headers=headers)


class Resp:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers            # http.client.HTTPMessage (case-insensitive get)
        self.data = data
        try:
            self.json = json.loads(data.decode()) if data else None
        except ValueError:
            self.json = None

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "<Resp %d %r>" % (self.status, self.json if self.json is not None else self.data[:200])


class Emulator:
    """Starts emulator.py in a subprocess; provides admin helpers and a request helper."""

    def __init__(self, app_id=12345, key_path=None, pub_path=None, extra_args=(), workdir=None,
                 verbose=False):
        self.app_id = app_id
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="gh-emu-")
        if key_path is None:
            key_path, pub_path = generate_rsa_keypair(self.dir)
        self.key_path, self.pub_path = key_path, pub_path
        with open(key_path, "rb") as fh:
            self.private_key_pem = fh.read()
        self.extra_args = list(extra_args)
        self.verbose = verbose
        self.proc = None
        self.port = None

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout=10):
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        cmd = [PYTHON, EMULATOR, "--port", "0", "--port-file", port_file,
               "--app-id", str(self.app_id), "--app-key", self.pub_path] + self.extra_args
        if self.verbose:
            cmd.append("--verbose")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("emulator exited with %s" % self.proc.returncode)
            try:
                with open(port_file) as fh:
                    txt = fh.read().strip()
                if txt:
                    self.port = int(txt)
                    return self
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("emulator did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    # -------------------------------------------------------------- HTTP
    def raw(self, method, path, body=None, headers=None, timeout=10, conn=None):
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Resp(r.status, r.headers, r.read())
        finally:
            if own:
                conn.close()

    def api(self, method, path, body=None, token=None, jwt=None, headers=None, user_agent="threshold-test",
            api_version="2022-11-28", accept="application/vnd.github+json", timeout=10, conn=None,
            scheme=None):
        hdrs = {}
        if user_agent is not None:
            hdrs["User-Agent"] = user_agent
        if api_version is not None:
            hdrs["X-GitHub-Api-Version"] = api_version
        if accept is not None:
            hdrs["Accept"] = accept
        if jwt is not None:
            hdrs["Authorization"] = "%s %s" % (scheme or "Bearer", jwt)
        elif token is not None:
            hdrs["Authorization"] = "%s %s" % (scheme or "Bearer", token)
        hdrs.update(headers or {})
        return self.raw(method, path, body, hdrs, timeout=timeout, conn=conn)

    def admin(self, method, path, body=None):
        r = self.raw(method, "/_admin/" + path.lstrip("/"), body)
        if r.status >= 400:
            raise RuntimeError("admin %s %s -> %d %r" % (method, path, r.status, r.json))
        return r.json

    # -------------------------------------------------------------- auth helpers
    def jwt(self, **kw):
        iss = kw.pop("iss", self.app_id)
        return make_jwt(self.private_key_pem, iss, **kw)

    def mint_token(self, installation_id, repositories=None, permissions=None, **kw):
        body = {}
        if repositories is not None:
            body["repositories"] = repositories
        if permissions is not None:
            body["permissions"] = permissions
        r = self.api("POST", "/app/installations/%d/access_tokens" % installation_id,
                     body, jwt=self.jwt(), **kw)
        if r.status != 201:
            raise RuntimeError("mint failed: %r" % r)
        return r.json["token"]

    # -------------------------------------------------------------- admin shortcuts
    def reset(self, **kw):
        return self.admin("POST", "reset", kw)

    def load(self, doc):
        return self.admin("POST", "load", doc)

    def config(self, **kw):
        return self.admin("POST", "config", kw)

    def add_installation(self, spec):
        return self.admin("POST", "installations", spec)

    def add_repo(self, spec):
        return self.admin("POST", "repos", spec)

    def add_pull(self, spec):
        return self.admin("POST", "pulls", spec)

    def add_reviews(self, repo, pr, reviews, replace=False):
        return self.admin("POST", "reviews", {"repo": repo, "pr": pr, "reviews": reviews,
                                              "replace": replace})

    def set_checks(self, repo, sha, check_runs):
        return self.admin("POST", "checks", {"repo": repo, "sha": sha, "check_runs": check_runs})

    def set_statuses(self, repo, sha, statuses):
        return self.admin("POST", "statuses", {"repo": repo, "sha": sha, "statuses": statuses})

    def push(self, repo, pr, sha=None, **kw):
        body = {"repo": repo, "pr": pr}
        if sha:
            body["sha"] = sha
        body.update(kw)
        return self.admin("POST", "push", body)

    def push_on_next(self, repo, pr, sha=None, before="merge"):
        body = {"repo": repo, "pr": pr, "before": before}
        if sha:
            body["sha"] = sha
        return self.admin("POST", "push-on-next", body)

    def fault(self, **spec):
        return self.admin("POST", "faults", spec)

    def clear_faults(self):
        return self.admin("DELETE", "faults")

    def latency(self, ms):
        return self.admin("POST", "latency", {"ms": ms})

    def state(self):
        return self.admin("GET", "state")

    def tokens(self):
        return self.admin("GET", "tokens")

    def expire_tokens(self, sha256="all"):
        return self.admin("POST", "tokens/expire", {"sha256": sha256})

    def requests(self, since=0, settle=False):
        """The request log; settle waits (up to 10 s) for git requests in flight."""
        return self.admin("GET", "requests?since=%d%s" % (since, "&settle=1" if settle else ""))

    def clear_requests(self):
        return self.admin("POST", "requests/clear")

    # -------------------------------------------------------------- git
    def add_git_repo(self, repo, files=None, default_branch="main", protected=None, **kw):
        """Create a bare repo with one commit (POST /_admin/git-repos); returns its info."""
        body = {"repo": repo, "default_branch": default_branch}
        if files is not None:
            body["files"] = files
        if protected is not None:
            body["protected"] = protected
        body.update(kw)
        return self.admin("POST", "git-repos", body)

    def git_refs(self, repo):
        return self.admin("GET", "git/%s/refs" % repo)

    def git_commit(self, repo, branch, files, message=None, parent=None):
        body = {"repo": repo, "branch": branch, "files": files}
        if message is not None:
            body["message"] = message
        if parent is not None:
            body["parent"] = parent
        return self.admin("POST", "git-commit", body)

    def git_url(self, repo, suffix=".git"):
        return "%s/%s%s" % (self.base_url, repo, suffix)

    @staticmethod
    def git_env(home, token=None, token_var="EMU_GIT_TOKEN"):
        """Environment for a `git` client subprocess: no system/user config, no prompts, and
        (with a token) a credential helper answering x-access-token:$EMU_GIT_TOKEN."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
               "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
               "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
               "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
               "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false"}
        if token is not None:
            env[token_var] = token
            env.update({"GIT_CONFIG_COUNT": "2",
                        "GIT_CONFIG_KEY_0": "credential.helper",
                        "GIT_CONFIG_VALUE_0": "",
                        "GIT_CONFIG_KEY_1": "credential.helper",
                        "GIT_CONFIG_VALUE_1": "!f() { echo username=x-access-token; "
                                              "echo password=$%s; }; f" % token_var})
        return env

    @staticmethod
    def token_hash(token):
        return hashlib.sha256(token.encode()).hexdigest()


if __name__ == "__main__":
    # Convenience: start an emulator with a fresh key pair and print how to reach it.
    with Emulator(app_id=int(sys.argv[1]) if len(sys.argv) > 1 else 12345) as gh:
        print("emulator at %s (app key %s); Ctrl-C to stop" % (gh.base_url, gh.key_path), flush=True)
        try:
            gh.proc.wait()
        except KeyboardInterrupt:
            pass
