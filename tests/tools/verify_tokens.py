#!/usr/bin/python3
"""Independent verifier for Threshold tokens, written from docs/tokens.md alone.

    verify_tokens.py chain --root ROOT_PEM [--attenuation ATT_PEM] [--now UNIX]
                           [--policy-dir DIR] [--revoked=HASH]... TOKEN_FILE...
    verify_tokens.py capability --cap-key CAP_PEM --aud AUD [--now UNIX]
                           --root ROOT_PEM [--attenuation ATT_PEM] [--policy-dir DIR]
                           [--revoked=HASH]... CAP_FILE TOKEN_FILE...
    verify_tokens.py hash FILE

TOKEN_FILEs hold one compact JWS each (trailing whitespace is ignored): the human
certificate first, then delegation_1..n.  Exit status: 0 valid, 1 invalid, 2 usage or I/O
error.  Signatures are checked with python3-cryptography directly (not PyJWT) so that every
rule of the "Common format" section is enforced explicitly here.

docs/policy.md did not exist when this was written; the policy format and the "Narrowing"
rules implemented below were given alongside the brief (see validate_policy / policy_narrows).
The push rules (allow_force_push, allow_branch_delete, max_push_bytes) and required checks pinned
to a GitHub App ({"context", "app_id"}) were added later from docs/policy.md's tables.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_TOKEN_BYTES = 16384
MIN_DELEGATIONS, MAX_DELEGATIONS = 1, 7
MAX_CAP_TTL = 60
CAP_CLOCK_SKEW = 2

TYP_CERT = "threshold-human-cert+jwt"
TYP_DELEGATION = "threshold-delegation+jwt"
TYP_CAPABILITY = "threshold-capability+jwt"

B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
NAME = r"[a-z0-9][a-z0-9._-]{0,62}"
HUMAN_RE = re.compile(r"human:(" + NAME + r")")
AGENT_RE = re.compile(r"agent:(" + NAME + r")")
AUD_RE = re.compile(r"thresholdd:([A-Za-z0-9_-]{22})")
# Repository and branch syntax is not specified beyond OWNER/NAME, OWNER/* and "P/*";
# accept printable, non-space ASCII, '/' only as the separator, '*' only as the wildcard.
_SEG = r"[\x21-\x29\x2b-\x2e\x30-\x7e]+"          # printable ASCII minus '*' and '/'
_BRANCH = r"[\x21-\x29\x2b-\x7e]+"                  # printable ASCII minus '*'
REPO_PATTERN_RE = re.compile(_SEG + r"/(?:" + _SEG + r"|\*)")
REPO_RE = re.compile(_SEG + r"/" + _SEG)
TARGET_PATTERN_RE = re.compile(_BRANCH + r"(?:/\*)?")
BRANCH_RE = re.compile(_BRANCH)
HHMM_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
TZ_RE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
INT64_MAX = 2**63 - 1
PR_MAX = 2**31 - 1


class Fail(Exception):
    """A token or a chain is invalid; str() is the reason."""


class LinkFail(Exception):
    """Link K of a chain (1 = the certificate) is invalid."""

    def __init__(self, k, reason):
        super().__init__(f"link {k}: {reason}")
        self.k = k
        self.reason = reason


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# encodings


def b64e(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64d(s, what):
    """Strict RFC 4648 section 5 decoding without padding: alphabet only, canonical."""
    if not isinstance(s, str):
        raise Fail(f"{what}: not a string")
    if not B64URL_RE.fullmatch(s):
        bad = next(c for c in s if not re.fullmatch(r"[A-Za-z0-9_-]", c))
        raise Fail(f"{what}: not strict base64url (character {bad!r})")
    if len(s) % 4 == 1:
        raise Fail(f"{what}: not strict base64url (impossible length {len(s)})")
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    if b64e(raw) != s:
        raise Fail(f"{what}: not strict base64url (non-zero trailing bits)")
    return raw


def token_hash(token):
    """BASE64URL(SHA-256(token)) over the exact ASCII bytes."""
    return b64e(hashlib.sha256(token).digest())


def is_hash(s):
    if not isinstance(s, str) or len(s) != 43:
        return False
    try:
        return len(b64d(s, "hash")) == 32
    except Fail:
        return False


def _dup_hook(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise Fail(f"duplicate member name {k!r}")
        seen.add(k)
    return dict(pairs)


def _bad_constant(c):
    raise Fail(f"non-JSON number {c}")


def _check_strings(v):
    """Reject lone surrogates (\\ud800 escapes), which are not Unicode scalar values."""
    if isinstance(v, str):
        v.encode("utf-8")
    elif isinstance(v, list):
        for x in v:
            _check_strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            k.encode("utf-8")
            _check_strings(x)


def parse_json(data, what):
    """RFC 8259 JSON from UTF-8 bytes; duplicate member names anywhere are an error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Fail(f"{what}: not UTF-8")
    try:
        value = json.loads(text, object_pairs_hook=_dup_hook, parse_constant=_bad_constant)
        _check_strings(value)
    except Fail as e:
        raise Fail(f"{what}: {e}")
    except UnicodeEncodeError:
        raise Fail(f"{what}: lone surrogate in a string")
    except RecursionError:
        raise Fail(f"{what}: nested too deeply")
    except ValueError as e:
        raise Fail(f"{what}: invalid JSON ({e})")
    return value


# --------------------------------------------------------------------------------------------
# keys


def load_public_key(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read key {path}: {e.strerror}")
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        pass
    try:
        return serialization.load_pem_private_key(data, None).public_key()
    except (ValueError, TypeError):
        pass
    try:
        from cryptography import x509
        return x509.load_pem_x509_certificate(data).public_key()
    except ValueError:
        pass
    raise UsageError(f"{path}: not a PEM public key, private key or certificate")


def key_alg(pub):
    """The only JWS alg a key may be used with, or None."""
    if isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(pub, rsa.RSAPublicKey) and 2048 <= pub.key_size <= 4096:
        return "RS256"
    return None


def _uint_bytes(n):
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def thumbprint(pub):
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        members = {"crv": "P-256", "kty": "EC",
                   "x": b64e(nums.x.to_bytes(32, "big")), "y": b64e(nums.y.to_bytes(32, "big"))}
    else:
        nums = pub.public_numbers()
        members = {"e": b64e(_uint_bytes(nums.e)), "kty": "RSA", "n": b64e(_uint_bytes(nums.n))}
    canon = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")
    return b64e(hashlib.sha256(canon).digest())


def jwk_to_key(jwk, what="jwk"):
    """A certificate's jwk: exactly {kty:EC,crv:P-256,x,y} or {kty:RSA,n,e}."""
    if not isinstance(jwk, dict):
        raise Fail(f"{what}: not an object")
    kty = jwk.get("kty")
    if kty == "EC":
        if set(jwk) != {"kty", "crv", "x", "y"}:
            raise Fail(f"{what}: EC key must have exactly kty, crv, x, y (has {sorted(jwk)})")
        if jwk["crv"] != "P-256":
            raise Fail(f"{what}: crv must be P-256")
        x = b64d(jwk["x"], f"{what}.x")
        y = b64d(jwk["y"], f"{what}.y")
        if len(x) != 32 or len(y) != 32:
            raise Fail(f"{what}: x and y must be 32 bytes")
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()
        except ValueError:
            raise Fail(f"{what}: point is not on P-256")
    if kty == "RSA":
        if set(jwk) != {"kty", "n", "e"}:
            raise Fail(f"{what}: RSA key must have exactly kty, n, e (has {sorted(jwk)})")
        n = b64d(jwk["n"], f"{what}.n")
        e = b64d(jwk["e"], f"{what}.e")
        for name, v in (("n", n), ("e", e)):
            if not v or v[0] == 0:
                raise Fail(f"{what}.{name}: not a minimal big-endian integer")
        n_int, e_int = int.from_bytes(n, "big"), int.from_bytes(e, "big")
        if not 2048 <= n_int.bit_length() <= 4096:
            raise Fail(f"{what}: RSA modulus of {n_int.bit_length()} bits (2048-4096 allowed)")
        try:
            return rsa.RSAPublicNumbers(e_int, n_int).public_key()
        except ValueError as err:
            raise Fail(f"{what}: invalid RSA key ({err})")
    raise Fail(f"{what}: kty must be EC or RSA")


def verify_signature(pub, alg, signing_input, sig):
    if alg == "ES256":
        if len(sig) != 64:
            return False
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        # docs/tokens.md: s must be in the lower half, so that no second
        # valid encoding (r, n - s) of a signature -- and so of a token hash
        # -- exists.
        if not (0 < r < order and 0 < s <= order // 2):
            return False
        try:
            pub.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        except InvalidSignature:
            return False
    if alg == "RS256":
        if len(sig) != (pub.key_size + 7) // 8:
            return False
        try:
            pub.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False
    return False


# --------------------------------------------------------------------------------------------
# compact JWS


class Jws:
    def __init__(self, raw, header, claims, signing_input, signature):
        self.raw = raw
        self.header = header
        self.claims = claims
        self.signing_input = signing_input
        self.signature = signature
        self.hash = token_hash(raw)

    @property
    def alg(self):
        return self.header["alg"]


def parse_jws(token, typ):
    """Parse and check the common format (not the signature, not the claims)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Fail(f"token is {len(token)} bytes (at most {MAX_TOKEN_BYTES})")
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        raise Fail("token is not ASCII")
    parts = text.split(".")
    if len(parts) != 3:
        raise Fail(f"not a compact JWS ({len(parts)} parts)")
    header_raw = b64d(parts[0], "header")
    claims_raw = b64d(parts[1], "claims")
    signature = b64d(parts[2], "signature")
    header = parse_json(header_raw, "header")
    if not isinstance(header, dict):
        raise Fail("header is not a JSON object")
    extra = set(header) - {"alg", "typ", "kid"}
    if extra:
        raise Fail(f"header has member(s) {sorted(extra)} (only alg, typ, kid allowed)")
    if "alg" not in header:
        raise Fail("header has no alg")
    if header["alg"] not in ("ES256", "RS256") or not isinstance(header["alg"], str):
        raise Fail(f"unsupported alg {header['alg']!r}")
    if "typ" not in header:
        raise Fail("header has no typ")
    if header["typ"] != typ or not isinstance(header["typ"], str):
        raise Fail(f"typ is {header['typ']!r}, expected {typ!r}")
    if "kid" in header and not isinstance(header["kid"], str):
        raise Fail("kid is not a string")
    claims = parse_json(claims_raw, "claims")
    if not isinstance(claims, dict):
        raise Fail("claims are not a JSON object")
    return Jws(token, header, claims, (parts[0] + "." + parts[1]).encode("ascii"), signature)


def check_signed_by(jws, pub, whose):
    """alg must match the key type, kid (if any) must be the key's thumbprint, and the
    signature must verify.  Returns a reason, or None."""
    expected = key_alg(pub)
    if expected is None:
        return f"{whose} key is not an EC P-256 or RSA 2048-4096 key"
    if jws.alg != expected:
        return f"alg {jws.alg} does not match the {whose} key ({expected})"
    if "kid" in jws.header and jws.header["kid"] != thumbprint(pub):
        return f"kid does not match the {whose} key's thumbprint"
    if not verify_signature(pub, jws.alg, jws.signing_input, jws.signature):
        return f"bad signature (expected the {whose} key)"
    return None


# --------------------------------------------------------------------------------------------
# claims


def _exact_claims(claims, required, optional=(), noun="claim", where=""):
    extra = set(claims) - set(required) - set(optional)
    if extra:
        raise Fail(f"{where}unknown {noun}(s) {sorted(extra)}")
    missing = [c for c in required if c not in claims]
    if missing:
        raise Fail(f"{where}missing {noun}(s) {missing}")


def _string(obj, key, what=None):
    v = obj[key]
    if not isinstance(v, str):
        raise Fail(f"{what or key} is not a string")
    return v


def _integer(obj, key, lo=0, hi=INT64_MAX, what=None):
    v = obj[key]
    if type(v) is not int:
        raise Fail(f"{what or key} is not an integer")
    if not lo <= v <= hi:
        raise Fail(f"{what or key} = {v} out of range {lo}..{hi}")
    return v


def _jti(claims):
    v = _string(claims, "jti")
    if len(v) != 22:
        raise Fail("jti is not 22 base64url characters")
    try:
        b64d(v, "jti")
    except Fail as e:
        raise Fail(str(e))
    return v


def _times(claims, names=("iat", "nbf", "exp")):
    for t in names:
        _integer(claims, t)
    if "nbf" in names and claims["nbf"] > claims["exp"]:
        raise Fail("nbf > exp")


def check_cert_claims(c):
    _exact_claims(c, ["iss", "sub", "name", "email", "jwk", "jti", "iat", "nbf", "exp"])
    if c["iss"] != "threshold:root":
        raise Fail(f"iss is {c['iss']!r}, expected 'threshold:root'")
    if not isinstance(c["sub"], str) or not HUMAN_RE.fullmatch(c["sub"]):
        raise Fail(f"sub {c['sub']!r} is not human:NAME")
    name = _string(c, "name")
    if not 1 <= len(name.encode("utf-8")) <= 128:
        raise Fail("name is not 1-128 bytes")
    email = _string(c, "email")
    if not 3 <= len(email.encode("utf-8")) <= 254 or "@" not in email:
        raise Fail("email is not 3-254 bytes containing '@'")
    jwk_to_key(c["jwk"])
    _jti(c)
    _times(c)


def check_scope(s, what):
    if not isinstance(s, dict):
        raise Fail(f"{what} is not an object")
    _exact_claims(s, ["op", "repos"], ["targets"], "member", f"{what}: ")
    if not _string(s, "op", f"{what}.op"):
        raise Fail(f"{what}.op is empty")
    repos = s["repos"]
    if not isinstance(repos, list) or not 1 <= len(repos) <= 32:
        raise Fail(f"{what}.repos is not an array of 1-32 repositories")
    for r in repos:
        if not isinstance(r, str) or not REPO_PATTERN_RE.fullmatch(r):
            raise Fail(f"{what}.repos: {r!r} is not OWNER/NAME or OWNER/*")
    if "targets" in s:
        targets = s["targets"]
        if not isinstance(targets, list) or not 1 <= len(targets) <= 32:
            raise Fail(f"{what}.targets is not an array of 1-32 branches")
        for t in targets:
            if not isinstance(t, str) or not TARGET_PATTERN_RE.fullmatch(t):
                raise Fail(f"{what}.targets: {t!r} is not a branch name or P/*")


def check_delegation_claims(c):
    _exact_claims(c, ["iss", "sub", "parent", "jti", "iat", "nbf", "exp", "ops"],
                  ["policy", "policy_hash"])
    iss = c["iss"]
    if not isinstance(iss, str) or not (HUMAN_RE.fullmatch(iss) or AGENT_RE.fullmatch(iss)):
        raise Fail(f"iss {iss!r} is not human:NAME or agent:NAME")
    if not isinstance(c["sub"], str) or not AGENT_RE.fullmatch(c["sub"]):
        raise Fail(f"sub {c['sub']!r} is not agent:NAME")
    if not is_hash(c["parent"]):
        raise Fail("parent is not a token hash (43 base64url characters)")
    _jti(c)
    _times(c)
    ops = c["ops"]
    if not isinstance(ops, list) or not 1 <= len(ops) <= 16:
        raise Fail("ops is not an array of 1-16 scopes")
    for i, s in enumerate(ops):
        check_scope(s, f"ops[{i}]")
    if ("policy" in c) == ("policy_hash" in c):
        raise Fail("exactly one of policy and policy_hash is required")
    if "policy" in c:
        validate_policy(c["policy"], "policy")
    elif not is_hash(c["policy_hash"]):
        raise Fail("policy_hash is not a hash (43 base64url characters)")


def check_capability_claims(c):
    _exact_claims(c, ["iss", "aud", "sub", "jti", "iat", "exp", "op", "chain"])
    if c["iss"] != "threshold:broker":
        raise Fail(f"iss is {c['iss']!r}, expected 'threshold:broker'")
    if not isinstance(c["aud"], str) or not AUD_RE.fullmatch(c["aud"]):
        raise Fail(f"aud {c['aud']!r} is not thresholdd: + 22 base64url characters")
    b64d(AUD_RE.fullmatch(c["aud"]).group(1), "aud")
    if not isinstance(c["sub"], str) or not AGENT_RE.fullmatch(c["sub"]):
        raise Fail(f"sub {c['sub']!r} is not agent:NAME")
    _jti(c)
    _times(c, ("iat", "exp"))
    op = c["op"]
    if not isinstance(op, dict):
        raise Fail("op is not an object")
    _exact_claims(op, ["op", "repo"], ("pr", "target", "params"), "member", "op: ")
    if not _string(op, "op", "op.op"):
        raise Fail("op.op is empty")
    if op["op"] not in OPS:
        raise Fail(f"op.op {op['op']!r} is not an operation")
    needs_pr, needs_target, allowed, required = OPS[op["op"]]
    if not isinstance(op["repo"], str) or not REPO_RE.fullmatch(op["repo"]):
        raise Fail(f"op.repo {op['repo']!r} is not OWNER/NAME")
    if ("pr" in op) != needs_pr:
        raise Fail(f"op.pr is {'missing' if needs_pr else 'not allowed'} for {op['op']}")
    if needs_pr:
        _integer(op, "pr", 1, PR_MAX, "op.pr")
    if ("target" in op) != needs_target:
        raise Fail(f"op.target is {'missing' if needs_target else 'not allowed'} for {op['op']}")
    if needs_target and (not isinstance(op["target"], str) or not BRANCH_RE.fullmatch(op["target"])):
        raise Fail(f"op.target {op['target']!r} is not a branch name")
    params = op.get("params", {})
    if not isinstance(params, dict):
        raise Fail("op.params is not an object")
    _exact_claims(params, sorted(required), sorted(set(allowed) - set(required)), "parameter", "op.params: ")
    for k, v in params.items():
        if k == "draft":
            ok = isinstance(v, bool)
        elif k == "inputs":
            ok = isinstance(v, dict) and len(v) <= 10 and all(isinstance(x, str) for x in v.values())
        else:
            ok = isinstance(v, str) and v != ""
        if not ok:
            raise Fail(f"op.params.{k} has a bad value")
    chain = c["chain"]
    if not isinstance(chain, list) or not (1 + MIN_DELEGATIONS <= len(chain)
                                           <= 1 + MAX_DELEGATIONS):
        raise Fail(f"chain is not an array of {1 + MIN_DELEGATIONS}-{1 + MAX_DELEGATIONS} hashes")
    for h in chain:
        if not is_hash(h):
            raise Fail(f"chain entry {h!r} is not a token hash")


# --------------------------------------------------------------------------------------------
# policy (format and "Narrowing", as given with the brief; later rules from docs/policy.md)

_tz_cache = None


def _valid_tz(name):
    global _tz_cache
    if not isinstance(name, str) or not TZ_RE.fullmatch(name):
        return False
    if _tz_cache is None:
        try:
            import zoneinfo
            _tz_cache = zoneinfo.available_timezones()
        except Exception:
            _tz_cache = set()
    return not _tz_cache or name in _tz_cache


def _string_list(p, key, what):
    v = p[key]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise Fail(f"{what}.{key} is not a list of strings")


def _check_entry(e):
    """(context, app_id) of a required_checks entry (app_id None: any source), or None."""
    if isinstance(e, str):
        return (e, None) if 1 <= len(e.encode()) <= 256 else None
    if (isinstance(e, dict) and set(e) == {"context", "app_id"}
            and isinstance(e["context"], str) and 1 <= len(e["context"].encode()) <= 256
            and type(e["app_id"]) is int and 1 <= e["app_id"] < 2 ** 53):
        return (e["context"], e["app_id"])
    return None


def validate_policy(p, what="policy"):
    if not isinstance(p, dict):
        raise Fail(f"{what} is not a JSON object")
    allowed = {"required_checks", "protected_paths", "allowed_targets", "min_approvals",
               "max_changed_files", "fresh_approvals", "time_window", "allow_force_push",
               "allow_branch_delete", "max_push_bytes"}
    extra = set(p) - allowed
    if extra:
        raise Fail(f"{what} has unknown member(s) {sorted(extra)}")
    for key in ("protected_paths", "allowed_targets"):
        if key in p:
            _string_list(p, key, what)
    if "required_checks" in p:
        rc = p["required_checks"]
        if (not isinstance(rc, list) or len(rc) > 64
                or any(_check_entry(e) is None for e in rc)):
            raise Fail(f"{what}.required_checks is not a list of names or "
                       "{context, app_id} objects")
    for key in ("allow_force_push", "allow_branch_delete"):
        if key in p and not isinstance(p[key], bool):
            raise Fail(f"{what}.{key} is not a boolean")
    if p.get("allow_branch_delete") is True and p.get("allow_force_push") is not True:
        raise Fail(f"{what}.allow_branch_delete needs allow_force_push")
    if "max_push_bytes" in p:
        _integer(p, "max_push_bytes", 1, 2 ** 40, f"{what}.max_push_bytes")
    if "allowed_targets" in p:
        for t in p["allowed_targets"]:
            if not BRANCH_RE.fullmatch(t):
                raise Fail(f"{what}.allowed_targets: {t!r} is not a branch name")
    for key in ("min_approvals", "max_changed_files"):
        if key in p:
            _integer(p, key, 0, 3000, f"{what}.{key}")
    if "fresh_approvals" in p and not isinstance(p["fresh_approvals"], bool):
        raise Fail(f"{what}.fresh_approvals is not a boolean")
    if "time_window" in p:
        tw = p["time_window"]
        w = f"{what}.time_window"
        if not isinstance(tw, dict):
            raise Fail(f"{w} is not an object")
        if set(tw) != {"tz", "days", "start", "end"}:
            raise Fail(f"{w} must have exactly tz, days, start, end")
        if not _valid_tz(tw["tz"]):
            raise Fail(f"{w}.tz {tw['tz']!r} is not an IANA time zone")
        if not isinstance(tw["days"], list) or not all(d in DAYS for d in tw["days"]):
            raise Fail(f"{w}.days is not a subset of {DAYS}")
        for key in ("start", "end"):
            if not isinstance(tw[key], str) or not HHMM_RE.fullmatch(tw[key]):
                raise Fail(f"{w}.{key} is not HH:MM")
        if not tw["start"] < tw["end"]:
            raise Fail(f"{w}: start is not before end")


def policy_narrows(child, parent):
    """None if child keeps every condition of parent and is at least as strict, else why."""
    for key in ("allow_force_push", "allow_branch_delete"):
        if child.get(key) is True and parent.get(key) is not True:
            return f"policy grants {key} its parent does not"
    for key in parent:
        if key not in child and key not in ("allow_force_push", "allow_branch_delete"):
            return f"policy drops {key}"
    if "required_checks" in parent:
        have = [_check_entry(e) for e in child["required_checks"]]
        for ctx, app in map(_check_entry, parent["required_checks"]):
            # A pinned check stays pinned to its App; an unpinned one may be pinned.
            if not any(c == ctx and (app is None or a == app) for c, a in have):
                return f"policy required_checks drops {ctx}" + (
                    f" from App {app}" if app is not None else "")
    if "protected_paths" in parent and not set(child["protected_paths"]) >= set(
            parent["protected_paths"]):
        missing = sorted(set(parent["protected_paths"]) - set(child["protected_paths"]))
        return f"policy protected_paths drops {missing}"
    if "max_push_bytes" in parent and child["max_push_bytes"] > parent["max_push_bytes"]:
        return "policy max_push_bytes raised"
    if "allowed_targets" in parent and not set(child["allowed_targets"]) <= set(
            parent["allowed_targets"]):
        added = sorted(set(child["allowed_targets"]) - set(parent["allowed_targets"]))
        return f"policy allowed_targets adds {added}"
    if "min_approvals" in parent and child["min_approvals"] < parent["min_approvals"]:
        return (f"policy min_approvals lowered from {parent['min_approvals']} to "
                f"{child['min_approvals']}")
    if "max_changed_files" in parent and child["max_changed_files"] > parent["max_changed_files"]:
        return (f"policy max_changed_files raised from {parent['max_changed_files']} to "
                f"{child['max_changed_files']}")
    if parent.get("fresh_approvals") is True and child["fresh_approvals"] is not True:
        return "policy fresh_approvals turned off"
    if "time_window" in parent:
        p, c = parent["time_window"], child["time_window"]
        if c["tz"] != p["tz"]:
            return "policy time_window changes tz"
        if not set(c["days"]) <= set(p["days"]):
            return "policy time_window adds days"
        if c["start"] < p["start"] or c["end"] > p["end"]:
            return "policy time_window widens hours"
    return None


def resolve_policy(claims, policy_dir):
    if "policy" in claims:
        return claims["policy"]
    h = claims["policy_hash"]
    if policy_dir is None:
        raise Fail(f"policy_hash {h} but no --policy-dir")
    path = os.path.join(policy_dir, h + ".json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise Fail(f"policy {h} not found")
    if token_hash(data) != h:
        raise Fail(f"policy file {h}.json does not hash to {h}")
    p = parse_json(data, f"policy {h}")
    validate_policy(p, f"policy {h}")
    return p


# --------------------------------------------------------------------------------------------
# scopes


def repo_covers(pattern, repo):
    return pattern == repo or (pattern.endswith("/*") and repo.split("/", 1)[0] == pattern[:-2])


def target_covers(pattern, target):
    return pattern == target or (pattern.endswith("/*") and target.startswith(pattern[:-1]))


def repo_within(child, parent):
    # a/b within a/b or a/*; a/* only within a/*
    if child == parent:
        return True
    return (parent.endswith("/*") and not child.endswith("/*")
            and child.split("/", 1)[0] == parent[:-2])


def target_within(child, parent):
    # "by the same rule" read as the covering rule: equal, or parent P/* and child starts
    # with P/ (so release/1/* is within release/*).
    return child == parent or (parent.endswith("/*") and child.startswith(parent[:-1]))


def scope_within(child, parent):
    """None if child scope is within parent scope, else why."""
    if child["op"] != parent["op"]:
        return f"op {child['op']} is not {parent['op']}"
    for r in child["repos"]:
        if not any(repo_within(r, pr) for pr in parent["repos"]):
            return f"op {child['op']}: repo {r} not within {parent['repos']}"
    if "targets" in parent:
        if "targets" not in child:
            return f"op {child['op']}: drops targets {parent['targets']} (any target)"
        for t in child["targets"]:
            if not any(target_within(t, pt) for pt in parent["targets"]):
                return f"op {child['op']}: target {t} not within {parent['targets']}"
    return None


def ops_within(child_ops, parent_ops):
    for i, s in enumerate(child_ops):
        reasons = [scope_within(s, p) for p in parent_ops]
        if all(r is not None for r in reasons):
            same_op = [r for r, p in zip(reasons, parent_ops) if p["op"] == s["op"]]
            why = same_op[0] if same_op else f"op {s['op']} not granted by the parent"
            return f"scope {i + 1}: {why}"
    return None


# docs/tokens.md, "Capability": what each operation takes besides its repo:
# (needs pr, needs target, allowed params, required params).
OPS = {
    "github.merge": (True, True, set(), set()),
    "github.pr.create": (False, True, {"head", "title", "body", "draft"}, {"head", "title"}),
    "github.comment": (True, False, {"body"}, {"body"}),
    "github.deployment.create": (False, True, {"environment", "description"}, set()),
    "github.workflow.dispatch": (False, True, {"workflow", "inputs"}, {"workflow"}),
}


def scope_covers(scope, op, repo, target):
    if scope["op"] != op:
        return False
    if not any(repo_covers(r, repo) for r in scope["repos"]):
        return False
    # Targets restrict only operations that have one (a comment has none).
    if target is not None and "targets" in scope and \
            not any(target_covers(t, target) for t in scope["targets"]):
        return False
    return True


# --------------------------------------------------------------------------------------------
# chains


def verify_chain(tokens, root, attenuation, now, policy_dir=None, revoked=()):
    """tokens: [certificate, delegation_1..n] as bytes.  Raises LinkFail(K, reason)."""
    revoked = set(revoked)
    if len(tokens) < 1 + MIN_DELEGATIONS:
        raise LinkFail(len(tokens) + 1, "chain has no delegation")
    if len(tokens) > 1 + MAX_DELEGATIONS:
        raise LinkFail(1 + MAX_DELEGATIONS + 1,
                       f"chain has {len(tokens) - 1} delegations (at most {MAX_DELEGATIONS})")
    links = []
    for k, tok in enumerate(tokens, 1):
        try:
            if k == 1:
                jws = parse_jws(tok, TYP_CERT)
                check_cert_claims(jws.claims)
            else:
                jws = parse_jws(tok, TYP_DELEGATION)
                check_delegation_claims(jws.claims)
        except Fail as e:
            raise LinkFail(k, f"malformed {'certificate' if k == 1 else 'delegation'}: {e}")
        links.append(jws)
    cert = links[0]
    c = cert.claims

    # 1. the certificate is valid
    why = check_signed_by(cert, root, "delegation-root")
    if why:
        raise LinkFail(1, why)
    if not c["nbf"] <= now:
        raise LinkFail(1, f"certificate not yet valid (nbf {c['nbf']} > now {now})")
    if not now < c["exp"]:
        raise LinkFail(1, f"certificate expired (exp {c['exp']} <= now {now})")
    if cert.hash in revoked:
        raise LinkFail(1, "revoked")

    # 2. signatures and iss/sub linkage
    for k in range(2, len(links) + 1):
        d, above = links[k - 1].claims, links[k - 2].claims
        if d["iss"] != above["sub"]:
            raise LinkFail(k, f"iss {d['iss']} is not the sub of link {k - 1} ({above['sub']})")
        if k == 2:
            why = check_signed_by(links[k - 1], jwk_to_key(c["jwk"]), f"{c['sub']} certificate")
        elif attenuation is None:
            why = "re-delegation needs the attenuation key (--attenuation)"
        else:
            why = check_signed_by(links[k - 1], attenuation, "attenuation")
        if why:
            raise LinkFail(k, why)

    # 3. parents
    for k in range(2, len(links) + 1):
        if links[k - 1].claims["parent"] != links[k - 2].hash:
            raise LinkFail(k, f"parent is not the hash of link {k - 1}")

    # 4. times and revocation
    for k in range(2, len(links) + 1):
        d = links[k - 1].claims
        if not d["nbf"] <= now:
            raise LinkFail(k, f"not yet valid (nbf {d['nbf']} > now {now})")
        if not now < d["exp"]:
            raise LinkFail(k, f"expired (exp {d['exp']} <= now {now})")
        if links[k - 1].hash in revoked:
            raise LinkFail(k, "revoked")

    # 5. attenuation
    policies = [None]
    for k in range(2, len(links) + 1):
        d, above = links[k - 1].claims, links[k - 2].claims
        try:
            policies.append(resolve_policy(d, policy_dir))
        except Fail as e:
            raise LinkFail(k, str(e))
        if d["nbf"] < above["nbf"]:
            raise LinkFail(k, f"widens scope: nbf {d['nbf']} before link {k - 1}'s {above['nbf']}")
        if d["exp"] > above["exp"]:
            raise LinkFail(k, f"widens scope: exp {d['exp']} after link {k - 1}'s {above['exp']}")
        if k > 2:
            why = ops_within(d["ops"], above["ops"])
            if why:
                raise LinkFail(k, f"widens scope: {why}")
            why = policy_narrows(policies[k - 1], policies[k - 2])
            if why:
                raise LinkFail(k, f"widens scope: {why}")
    return links


def chain_names(links):
    return " -> ".join([links[0].claims["sub"]] + [l.claims["sub"] for l in links[1:]])


# --------------------------------------------------------------------------------------------
# capabilities


def verify_capability(cap, cap_key, aud, now, tokens, root, attenuation, policy_dir=None,
                      revoked=()):
    """Redeeming checks 1-5 of docs/tokens.md "Capability" (no replay state). Raises Fail."""
    # 1. parses, typ
    try:
        jws = parse_jws(cap, TYP_CAPABILITY)
        check_capability_claims(jws.claims)
    except Fail as e:
        raise Fail(f"malformed capability: {e}")
    c = jws.claims
    # 2. signature
    why = check_signed_by(jws, cap_key, "capability")
    if why:
        raise Fail(f"bad signature ({why})")
    # 3. audience
    if c["aud"] != aud:
        raise Fail(f"wrong audience ({c['aud']})")
    # 4. time
    if not c["iat"] <= now + CAP_CLOCK_SKEW:
        raise Fail(f"issued in the future (iat {c['iat']}, now {now})")
    if not now < c["exp"]:
        raise Fail(f"expired (exp {c['exp']} <= now {now})")
    if not 0 < c["exp"] - c["iat"] <= MAX_CAP_TTL:
        raise Fail(f"lifetime exp - iat = {c['exp'] - c['iat']} not in 1..{MAX_CAP_TTL}")
    # 5. chain
    given = [token_hash(t) for t in tokens]
    if c["chain"] != given:
        raise Fail("chain mismatch: the capability's chain array is not the hashes of the "
                   "given tokens")
    try:
        links = verify_chain(tokens, root, attenuation, now, policy_dir, revoked)
    except LinkFail as e:
        raise Fail(str(e))
    last = links[-1].claims
    if c["sub"] != last["sub"]:
        raise Fail(f"requester {c['sub']} is not the chain's delegate {last['sub']}")
    op = c["op"]
    if not any(scope_covers(s, op["op"], op["repo"], op.get("target")) for s in last["ops"]):
        raise Fail(f"operation {op['op']} {op['repo']} -> {op.get('target')} not covered by the chain")
    return jws


# --------------------------------------------------------------------------------------------
# CLI


def read_token(path):
    try:
        with open(path, "rb") as f:
            return f.read().rstrip()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}")


def _common(p):
    p.add_argument("--root", required=True, help="delegation-root public key (PEM)")
    p.add_argument("--attenuation", help="attenuation public key (PEM)")
    p.add_argument("--now", type=int, help="Unix time to verify at (default: now)")
    p.add_argument("--policy-dir", help="directory of policies stored as <hash>.json")
    p.add_argument("--revoked", action="append", default=[], metavar="HASH",
                   help="treat the token with this hash as revoked (repeatable; write "
                        "--revoked=HASH, since a hash may start with '-')")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="verify_tokens.py",
                                 description="Verify Threshold tokens per docs/tokens.md")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("chain", help="verify a delegation chain")
    _common(pc)
    pc.add_argument("tokens", nargs="+", metavar="TOKEN_FILE")
    pk = sub.add_parser("capability", help="verify a capability and its chain")
    pk.add_argument("--cap-key", required=True, help="capability public key (PEM)")
    pk.add_argument("--aud", required=True, help="this broker's id")
    _common(pk)
    pk.add_argument("cap", metavar="CAP_FILE")
    pk.add_argument("tokens", nargs="+", metavar="TOKEN_FILE")
    ph = sub.add_parser("hash", help="print a token's hash")
    ph.add_argument("file", metavar="FILE")
    args = ap.parse_args(argv)

    try:
        if args.cmd == "hash":
            print(token_hash(read_token(args.file)))
            return 0
        now = args.now if args.now is not None else int(time.time())
        root = load_public_key(args.root)
        att = load_public_key(args.attenuation) if args.attenuation else None
        tokens = [read_token(p) for p in args.tokens]
        if args.cmd == "chain":
            try:
                links = verify_chain(tokens, root, att, now, args.policy_dir, args.revoked)
            except LinkFail as e:
                print(f"FAIL link {e.k}: {e.reason}")
                return 1
            print(f"OK chain {chain_names(links)}")
            return 0
        cap_key = load_public_key(args.cap_key)
        cap = read_token(args.cap)
        try:
            jws = verify_capability(cap, cap_key, args.aud, now, tokens, root, att,
                                    args.policy_dir, args.revoked)
        except Fail as e:
            print(f"FAIL: {e}")
            return 1
        op = jws.claims["op"]
        print(f"OK capability {op['op']} {op['repo']}#{op['pr']} -> {op['target']} "
              f"for {jws.claims['sub']}")
        return 0
    except UsageError as e:
        print(f"verify_tokens.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
