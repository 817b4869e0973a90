#!/usr/bin/python3
"""Self-test for tests/tools/verify_tokens.py.

Builds tokens in the format of docs/tokens.md with PyJWT (and by hand where a token must be
malformed on purpose), then checks that the verifier accepts the valid ones and rejects each
violation.  Run: /usr/bin/python3 tests/tools/test_verify_tokens.py
"""

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

import jwt
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import verify_tokens as vt  # noqa: E402

NOW = 1_700_000_000
DELETE = object()
AUD = "thresholdd:" + "A" * 21 + "Q"   # 22 base64url characters, canonical (128 bits)
TYP_CERT = "threshold-human-cert+jwt"
TYP_DEL = "threshold-delegation+jwt"
TYP_CAP = "threshold-capability+jwt"
KEYS = {}


def setUpModule():
    KEYS["root"] = ec.generate_private_key(ec.SECP256R1())
    KEYS["human_ec"] = ec.generate_private_key(ec.SECP256R1())
    KEYS["human_rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KEYS["att"] = ec.generate_private_key(ec.SECP256R1())
    KEYS["cap"] = ec.generate_private_key(ec.SECP256R1())
    KEYS["other"] = ec.generate_private_key(ec.SECP256R1())


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def h(token):
    return b64(hashlib.sha256(token.encode()).digest())


def jti(i=0):
    return b64(bytes([i]) * 16)


def uint(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def jwk(priv):
    nums = priv.public_key().public_numbers()
    if isinstance(priv, rsa.RSAPrivateKey):
        return {"kty": "RSA", "n": b64(uint(nums.n)), "e": b64(uint(nums.e))}
    return {"kty": "EC", "crv": "P-256", "x": b64(nums.x.to_bytes(32, "big")),
            "y": b64(nums.y.to_bytes(32, "big"))}


def thumb(priv):
    j = jwk(priv)
    return b64(hashlib.sha256(json.dumps(j, sort_keys=True, separators=(",", ":"))
                              .encode()).digest())


def alg_of(priv):
    return "RS256" if isinstance(priv, rsa.RSAPrivateKey) else "ES256"


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(token, high=False):
    """docs/tokens.md wants ES256 signatures with s <= n/2 (high=True makes
    the other twin, for the negative test); PyJWT emits either."""
    h, c, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    if len(raw) != 64:
        return token
    r, s_ = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if (s_ > P256_N // 2) != high:
        s_ = P256_N - s_
    return h + "." + c + "." + b64(r.to_bytes(32, "big") + s_.to_bytes(32, "big"))


def pyjwt_sign(claims, priv, typ):
    """The normal way: PyJWT, header {alg, typ, kid}."""
    return low_s(jwt.encode(claims, priv, algorithm=alg_of(priv),
                            headers={"typ": typ, "kid": thumb(priv)}))


def raw_sign(header_b64, claims_b64, priv, alg=None):
    """Sign arbitrary (possibly malformed) segments; alg chooses the signing primitive."""
    alg = alg or alg_of(priv)
    si = (header_b64 + "." + claims_b64).encode()
    if alg == "ES256":
        r, s = decode_dss_signature(priv.sign(si, ec.ECDSA(hashes.SHA256())))
        s = min(s, P256_N - s)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "RS256":
        sig = priv.sign(si, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "HS256":
        m = hmac.HMAC(b"secret", hashes.SHA256())
        m.update(si)
        sig = m.finalize()
    else:
        sig = b""
    return header_b64 + "." + claims_b64 + "." + b64(sig)


def enc_json(obj):
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def pem(priv):
    return priv.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def apply(d, over):
    d = dict(d)
    for k, v in (over or {}).items():
        if v is DELETE:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def flip_sig(token):
    a, b, c = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
    sig[len(sig) // 2 + 3] ^= 0x01
    return a + "." + b + "." + b64(bytes(sig))


def bad_trailing_bits(seg):
    """Same bytes, but a non-zero unused low bit in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(seg) % 4 in (2, 3)
    v = alphabet.index(seg[-1])
    return seg[:-1] + alphabet[v | 1]


POLICY_1 = {"required_checks": ["ci"], "min_approvals": 1, "max_changed_files": 100,
            "fresh_approvals": True, "allowed_targets": ["main", "release/1.2"],
            "protected_paths": [".github/"],
            "time_window": {"tz": "Europe/Paris", "days": ["mon", "tue", "wed", "thu", "fri"],
                            "start": "08:00", "end": "18:00"}}
POLICY_2 = {"required_checks": ["ci", "lint"], "min_approvals": 2, "max_changed_files": 50,
            "fresh_approvals": True, "allowed_targets": ["release/1.2"],
            "protected_paths": [".github/", "src/"],
            "time_window": {"tz": "Europe/Paris", "days": ["mon", "tue"],
                            "start": "09:00", "end": "17:00"}}
OPS_1 = [{"op": "github.merge", "repos": ["acme/*", "tools/cli"], "targets": ["main", "release/*"]},
         {"op": "github.comment", "repos": ["acme/web"]}]
OPS_2 = [{"op": "github.merge", "repos": ["acme/web"], "targets": ["release/*"]}]


class Base(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.addCleanup(self.tmp.cleanup)
        for name in ("root", "att", "cap", "other", "human_ec"):
            with open(os.path.join(self.dir, name + ".pem"), "wb") as f:
                f.write(pem(KEYS[name]))
        self.n = 0

    # ---- builders ---------------------------------------------------------------------------

    def cert(self, human="human_ec", over=None, signer=None):
        claims = {"iss": "threshold:root", "sub": "human:alice", "name": "Alice Example",
                  "email": "alice@example.org", "jwk": jwk(KEYS[human]), "jti": jti(1),
                  "iat": NOW - 1000, "nbf": NOW - 1000, "exp": NOW + 100000}
        claims = apply(claims, over)
        if signer:
            return signer(claims)
        return pyjwt_sign(claims, KEYS["root"], TYP_CERT)

    def chain(self, n=2, human="human_ec", cert_over=None, over=None, signers=None,
              cert_signer=None):
        """[cert, d1..dn]; over/signers map link K (2 = delegation_1) to claim overrides /
        a function(claims) -> token."""
        over = over or {}
        signers = signers or {}
        toks = [self.cert(human, cert_over, cert_signer)]
        names = ["human:alice"] + [f"agent:a{i}" for i in range(1, n + 1)]
        for k in range(2, n + 2):
            i = k - 1
            claims = {"iss": names[i - 1], "sub": names[i], "parent": h(toks[-1]),
                      "jti": jti(k), "iat": NOW - 600 + k, "nbf": NOW - 600 + k,
                      "exp": NOW + 50000 - k,
                      "ops": OPS_1 if k == 2 else OPS_2,
                      "policy": POLICY_1 if k == 2 else POLICY_2}
            claims = apply(claims, over.get(k))
            if k in signers:
                toks.append(signers[k](claims))
            else:
                toks.append(pyjwt_sign(claims, KEYS[human] if k == 2 else KEYS["att"], TYP_DEL))
        return toks

    def cap(self, toks, over=None, signer=None):
        claims = {"iss": "threshold:broker", "aud": AUD, "sub": f"agent:a{len(toks) - 1}",
                  "jti": jti(9), "iat": NOW, "exp": NOW + 15,
                  "op": {"op": "github.merge", "repo": "acme/web", "pr": 42,
                         "target": "release/1.2"},
                  "chain": [h(t) for t in toks]}
        claims = apply(claims, over)
        if signer:
            return signer(claims)
        return pyjwt_sign(claims, KEYS["cap"], TYP_CAP)

    # ---- running the verifier ---------------------------------------------------------------

    def write(self, text, nl=True):
        self.n += 1
        p = os.path.join(self.dir, f"t{self.n}.jws")
        with open(p, "w") as f:
            f.write(text + ("\n" if nl else ""))
        return p

    def run_vt(self, argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = vt.main(argv)
        return rc, out.getvalue().strip()

    def keyargs(self, att=True):
        a = ["--root", os.path.join(self.dir, "root.pem"), "--now", str(NOW)]
        if att:
            a += ["--attenuation", os.path.join(self.dir, "att.pem")]
        return a

    def run_chain(self, toks, extra=()):
        return self.run_vt(["chain", *self.keyargs(), *extra] + [self.write(t) for t in toks])

    def run_cap(self, cap, toks, extra=(), aud=AUD, now=NOW):
        a = ["capability", "--cap-key", os.path.join(self.dir, "cap.pem"), "--aud", aud,
             "--root", os.path.join(self.dir, "root.pem"),
             "--attenuation", os.path.join(self.dir, "att.pem"), "--now", str(now), *extra,
             self.write(cap)] + [self.write(t) for t in toks]
        return self.run_vt(a)

    def assertChainFails(self, toks, k, *words, extra=()):
        rc, out = self.run_chain(toks, extra)
        self.assertEqual(rc, 1, out)
        self.assertTrue(out.startswith(f"FAIL link {k}: "), out)
        for w in words:
            self.assertIn(w, out)
        return out

    def assertCapFails(self, cap, toks, *words, **kw):
        rc, out = self.run_cap(cap, toks, **kw)
        self.assertEqual(rc, 1, out)
        self.assertTrue(out.startswith("FAIL: "), out)
        for w in words:
            self.assertIn(w, out)
        return out


class Valid(Base):
    def test_chain_ec_human(self):
        rc, out = self.run_chain(self.chain())
        self.assertEqual((rc, out), (0, "OK chain human:alice -> agent:a1 -> agent:a2"))

    def test_chain_rsa_human(self):
        rc, out = self.run_chain(self.chain(human="human_rsa"))
        self.assertEqual((rc, out), (0, "OK chain human:alice -> agent:a1 -> agent:a2"))

    def test_single_delegation_without_attenuation_key(self):
        toks = self.chain(n=1)
        rc, out = self.run_vt(["chain", *self.keyargs(att=False)] + [self.write(t) for t in toks])
        self.assertEqual((rc, out), (0, "OK chain human:alice -> agent:a1"))

    def test_seven_delegations_and_not_eight(self):
        over = {k: {"ops": OPS_2, "policy": POLICY_2} for k in range(3, 10)}
        rc, out = self.run_chain(self.chain(n=7, over=over))
        self.assertEqual(rc, 0, out)
        self.assertChainFails(self.chain(n=8, over=over), 9, "at most 7")

    def test_cert_alone_is_not_a_chain(self):
        self.assertChainFails(self.chain()[:1], 2, "no delegation")

    def test_token_without_trailing_newline(self):
        toks = self.chain()
        rc, out = self.run_vt(["chain", *self.keyargs()] + [self.write(t, nl=False) for t in toks])
        self.assertEqual(rc, 0, out)

    def test_policy_hash(self):
        doc = json.dumps(POLICY_2, indent=1).encode() + b"\n"
        ph = b64(hashlib.sha256(doc).digest())
        pdir = os.path.join(self.dir, "policies")
        os.mkdir(pdir)
        with open(os.path.join(pdir, ph + ".json"), "wb") as f:
            f.write(doc)
        toks = self.chain(over={3: {"policy": DELETE, "policy_hash": ph}})
        rc, out = self.run_chain(toks, ["--policy-dir", pdir])
        self.assertEqual(rc, 0, out)
        self.assertChainFails(toks, 3, "--policy-dir")
        with open(os.path.join(pdir, ph + ".json"), "ab") as f:
            f.write(b" ")
        self.assertChainFails(toks, 3, "does not hash", extra=["--policy-dir", pdir])

    def test_capability(self):
        toks = self.chain()
        rc, out = self.run_cap(self.cap(toks), toks)
        self.assertEqual((rc, out),
                         (0, "OK capability github.merge acme/web#42 -> release/1.2 for agent:a2"))

    def test_capability_time_edges(self):
        toks = self.chain()
        rc, out = self.run_cap(self.cap(toks, {"iat": NOW + 2, "exp": NOW + 62}), toks)
        self.assertEqual(rc, 0, out)
        rc, out = self.run_cap(self.cap(toks, {"exp": NOW + 1}), toks)
        self.assertEqual(rc, 0, out)

    def test_hash_command(self):
        tok = self.chain()[0]
        rc, out = self.run_vt(["hash", self.write(tok)])
        self.assertEqual((rc, out), (0, h(tok)))
        self.assertEqual(len(out), 43)

    def test_cli_executable(self):
        toks = self.chain(n=1)
        p = subprocess.run([os.path.join(HERE, "verify_tokens.py"), "chain", *self.keyargs()]
                           + [self.write(t) for t in toks], capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "OK chain human:alice -> agent:a1"))
        p = subprocess.run([os.path.join(HERE, "verify_tokens.py"), "chain", *self.keyargs()]
                           + [self.write(flip_sig(toks[0]))] + [self.write(toks[1])],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stdout.startswith("FAIL link 1: "), p.stdout)


class Format(Base):
    def hand(self, k, header=None, claims_b64=None, alg=None, key=None, human="human_ec"):
        """A chain whose link k is signed by hand with the given header / claims segment."""
        def signer(claims):
            priv = KEYS[key] if key else (KEYS[human] if k == 2 else KEYS["att"])
            hd = header if header is not None else {"alg": alg_of(priv), "typ": TYP_DEL}
            hb = hd if isinstance(hd, str) else enc_json(hd)
            cb = claims_b64(claims) if claims_b64 else enc_json(claims)
            return raw_sign(hb, cb, priv, alg or hd.get("alg") if isinstance(hd, dict) else alg)
        return self.chain(human=human, signers={k: signer})

    def test_hand_signed_control_is_valid(self):
        rc, out = self.run_chain(self.hand(3))
        self.assertEqual(rc, 0, out)
        rc, out = self.run_chain(self.hand(2, human="human_rsa"))
        self.assertEqual(rc, 0, out)

    def test_alg_none(self):
        self.assertChainFails(self.hand(2, header={"alg": "none", "typ": TYP_DEL}), 2, "alg")

    def test_hs256(self):
        self.assertChainFails(self.hand(3, header={"alg": "HS256", "typ": TYP_DEL}), 3, "alg")

    def test_es_rs_mismatch(self):
        # RSA human key, token claims ES256 (signed with an EC key: mismatch either way)
        toks = self.hand(2, human="human_rsa", header={"alg": "ES256", "typ": TYP_DEL},
                         key="human_ec")
        self.assertChainFails(toks, 2, "does not match")
        # EC human key, token claims RS256 (signed with the RSA key)
        toks = self.hand(2, header={"alg": "RS256", "typ": TYP_DEL}, key="human_rsa")
        self.assertChainFails(toks, 2, "does not match")
        # attenuation link as RS256
        toks = self.hand(3, header={"alg": "RS256", "typ": TYP_DEL}, key="human_rsa")
        self.assertChainFails(toks, 3, "does not match")

    def test_base64_padding(self):
        def seg(claims):
            for extra in range(4):   # vary the length until the segment needs padding
                s = enc_json(dict(claims, iat=10 ** extra))
                if len(s) % 4:
                    return s + "=" * (-len(s) % 4)
            raise AssertionError
        self.assertChainFails(self.hand(3, claims_b64=seg), 3, "base64url")

    def test_base64_padding_in_header(self):
        hdr = enc_json({"alg": "ES256", "typ": TYP_DEL})
        if len(hdr) % 4 == 0:
            hdr = enc_json({"alg": "ES256", "typ": TYP_DEL, "kid": thumb(KEYS["att"])})
        self.assertNotEqual(len(hdr) % 4, 0)
        toks = self.hand(3, header=hdr + "=" * (-len(hdr) % 4))
        self.assertChainFails(toks, 3, "base64url")

    def test_base64_trailing_bits_in_claims(self):
        def seg(claims):
            for extra in range(4):   # vary length until the segment has unused bits
                s = enc_json(dict(claims, iat=10 ** extra))
                if len(s) % 4 in (2, 3):
                    return bad_trailing_bits(s)
            raise AssertionError
        self.assertChainFails(self.hand(3, claims_b64=seg), 3, "trailing bits")

    def test_base64_trailing_bits_in_signature(self):
        toks = self.chain()
        a, b, c = toks[1].split(".")
        toks[1] = a + "." + b + "." + bad_trailing_bits(c)
        self.assertChainFails(toks, 2, "trailing bits")

    def test_base64_bad_character(self):
        toks = self.chain()
        a, b, c = toks[2].split(".")
        toks[2] = a + "." + b[:10] + "+" + b[11:] + "." + c
        self.assertChainFails(toks, 3, "base64url")

    def test_duplicate_member_top_level(self):
        def seg(claims):
            body = json.dumps(claims, separators=(",", ":"))
            return b64(('{"sub":"agent:evil",' + body[1:]).encode())
        self.assertChainFails(self.hand(3, claims_b64=seg), 3, "duplicate", "sub")

    def test_duplicate_member_nested(self):
        def seg(claims):
            body = json.dumps(claims, separators=(",", ":"))
            body = body.replace('"op":"github.merge"', '"op":"github.merge","op":"github.merge"', 1)
            return b64(body.encode())
        self.assertChainFails(self.hand(3, claims_b64=seg), 3, "duplicate")

    def test_duplicate_member_in_header(self):
        hdr = b64(('{"alg":"ES256","typ":"%s","typ":"%s"}' % (TYP_DEL, TYP_DEL)).encode())
        self.assertChainFails(self.hand(3, header=hdr), 3, "duplicate")

    def test_duplicate_member_escaped(self):
        hdr = b64(('{"alg":"ES256","typ":"%s","\\u0074yp":"%s"}' % (TYP_DEL, TYP_DEL)).encode())
        self.assertChainFails(self.hand(3, header=hdr), 3, "duplicate")

    def test_extra_header_member(self):
        toks = self.hand(3, header={"alg": "ES256", "typ": TYP_DEL, "jku": "https://x"})
        self.assertChainFails(toks, 3, "header")
        toks = self.hand(3, header={"alg": "ES256"})
        self.assertChainFails(toks, 3, "typ")

    def test_oversized_token(self):
        ops = [{"op": "github.merge", "repos": [f"acme/repository-with-a-long-name-{i:04d}"
                                                 for i in range(32)]} for _ in range(16)]
        toks = self.chain(over={2: {"ops": ops}})
        self.assertGreater(len(toks[1]), 16384)
        self.assertChainFails(toks, 2, "16384")

    def test_unknown_claim(self):
        self.assertChainFails(self.chain(over={3: {"scope": "admin"}}), 3, "unknown claim")
        self.assertChainFails(self.chain(cert_over={"admin": True}), 1, "unknown claim")

    def test_unknown_scope_member(self):
        ops = [dict(OPS_2[0], admin=True)]
        self.assertChainFails(self.chain(over={3: {"ops": ops}}), 3, "admin")

    def test_wrong_typ(self):
        toks = self.chain(signers={3: lambda c: pyjwt_sign(c, KEYS["att"], TYP_CERT)})
        self.assertChainFails(toks, 3, "typ")
        toks = self.chain(cert_signer=lambda c: pyjwt_sign(c, KEYS["root"], TYP_DEL))
        self.assertChainFails(toks, 1, "typ")
        toks = self.chain(signers={2: lambda c: pyjwt_sign(c, KEYS["human_ec"], "JWT")})
        self.assertChainFails(toks, 2, "typ")

    def test_claim_types(self):
        self.assertChainFails(self.chain(over={3: {"exp": float(NOW + 100)}}), 3, "integer")
        self.assertChainFails(self.chain(over={3: {"nbf": True}}), 3, "integer")
        self.assertChainFails(self.chain(over={3: {"nbf": str(NOW)}}), 3, "integer")
        self.assertChainFails(self.chain(over={3: {"nbf": NOW + 10, "exp": NOW + 5}}), 3,
                              "nbf > exp")
        self.assertChainFails(self.chain(over={3: {"ops": []}}), 3, "ops")
        self.assertChainFails(self.chain(over={3: {"ops": OPS_2 * 17}}), 3, "ops")
        self.assertChainFails(self.chain(over={3: {"policy": DELETE}}), 3, "policy")
        self.assertChainFails(self.chain(over={3: {"policy_hash": h("x")}}), 3, "exactly one")
        self.assertChainFails(self.chain(over={3: {"parent": "abc"}}), 3, "parent")
        self.assertChainFails(self.chain(over={3: {"jti": "short"}}), 3, "jti")

    def test_name_formats(self):
        self.assertChainFails(self.chain(over={3: {"sub": "agent:Evil"}}), 3, "agent:NAME")
        self.assertChainFails(self.chain(over={3: {"sub": "human:bob"}}), 3, "agent:NAME")
        self.assertChainFails(self.chain(over={3: {"sub": "agent:" + "a" * 64}}), 3, "agent:NAME")
        rc, out = self.run_chain(self.chain(over={3: {"sub": "agent:" + "a" * 63}}))
        self.assertEqual(rc, 0, out)
        self.assertChainFails(self.chain(cert_over={"sub": "human:-x"}), 1, "human:NAME")
        self.assertChainFails(self.chain(cert_over={"sub": "human:al\nice"}), 1, "human:NAME")
        self.assertChainFails(self.chain(cert_over={"email": "nobody"}), 1, "email")
        self.assertChainFails(self.chain(cert_over={"name": ""}), 1, "name")
        self.assertChainFails(self.chain(cert_over={"iss": "threshold:broker"}), 1, "iss")

    def test_repo_and_target_formats(self):
        for r in ("acme", "*/x", "acme/web/x", "acme/we*b", "acme/ web"):
            ops = [{"op": "github.merge", "repos": [r]}]
            self.assertChainFails(self.chain(n=1, over={2: {"ops": ops}}), 2, "repos")
        for t in ("*", "rel*", "release/*/x", ""):
            ops = [{"op": "github.merge", "repos": ["acme/web"], "targets": [t]}]
            self.assertChainFails(self.chain(n=1, over={2: {"ops": ops}}), 2, "targets")

    def test_jwk_strictness(self):
        j = dict(jwk(KEYS["human_ec"]), use="sig")
        self.assertChainFails(self.chain(cert_over={"jwk": j}), 1, "jwk")
        j = dict(jwk(KEYS["human_ec"]), crv="P-384")
        self.assertChainFails(self.chain(cert_over={"jwk": j}), 1, "P-256")
        j = dict(jwk(KEYS["human_ec"]))
        j["y"] = j["x"]
        self.assertChainFails(self.chain(cert_over={"jwk": j}), 1, "not on P-256")
        j = dict(jwk(KEYS["human_rsa"]), d="AQAB")
        self.assertChainFails(self.chain(human="human_rsa", cert_over={"jwk": j}), 1, "jwk")
        j = dict(jwk(KEYS["human_rsa"]))
        j["n"] = b64(b"\x00" + base64.urlsafe_b64decode(j["n"] + "=="))
        self.assertChainFails(self.chain(human="human_rsa", cert_over={"jwk": j}), 1, "minimal")
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertChainFails(self.chain(cert_over={"jwk": jwk(small)}), 1, "1024 bits")

    def test_kid_mismatch(self):
        toks = self.chain(signers={3: lambda c: low_s(jwt.encode(
            c, KEYS["att"], algorithm="ES256", headers={"typ": TYP_DEL, "kid": thumb(KEYS["cap"])}))})
        self.assertChainFails(toks, 3, "kid")
        # kid is optional
        toks = self.chain(signers={3: lambda c: raw_sign(
            enc_json({"alg": "ES256", "typ": TYP_DEL}), enc_json(c), KEYS["att"])})
        rc, out = self.run_chain(toks)
        self.assertEqual(rc, 0, out)

    def test_json_oddities(self):
        for body in ('{"iss":NaN}', '{"a":1,}', "[]", '{"a":"\\ud800"}', "\ufeff{}"):
            toks = self.hand(3, claims_b64=lambda c, body=body: b64(body.encode()))
            self.assertChainFails(toks, 3, "claims")


class Chains(Base):
    def test_high_s_twin_refused(self):
        # (r, n - s) is a valid ECDSA signature too; the spec allows only
        # the low-S one, so each token has a single hash.
        for k in (1, 2, 3):
            toks = self.chain()
            toks[k - 1] = low_s(toks[k - 1], high=True)
            self.assertChainFails(toks, k, "signature")

    def test_bad_signature_at_each_link(self):
        for k in (1, 2, 3):
            toks = self.chain()
            toks[k - 1] = flip_sig(toks[k - 1])
            self.assertChainFails(toks, k, "signature")
        toks = self.chain(human="human_rsa")
        toks[1] = flip_sig(toks[1])
        self.assertChainFails(toks, 2, "signature")

    def test_wrong_signing_keys(self):
        toks = self.chain(cert_signer=lambda c: pyjwt_sign(c, KEYS["other"], TYP_CERT))
        self.assertChainFails(toks, 1, "kid")
        toks = self.chain(cert_signer=lambda c: raw_sign(
            enc_json({"alg": "ES256", "typ": TYP_CERT}), enc_json(c), KEYS["other"]))
        self.assertChainFails(toks, 1, "bad signature")
        toks = self.chain(signers={2: lambda c: pyjwt_sign(c, KEYS["att"], TYP_DEL)})
        self.assertChainFails(toks, 2)
        toks = self.chain(signers={3: lambda c: pyjwt_sign(c, KEYS["human_ec"], TYP_DEL)})
        self.assertChainFails(toks, 3)

    def test_missing_attenuation_key(self):
        toks = self.chain()
        rc, out = self.run_vt(["chain", *self.keyargs(att=False)] + [self.write(t) for t in toks])
        self.assertEqual(rc, 1)
        self.assertTrue(out.startswith("FAIL link 3: "), out)

    def test_iss_sub_linkage(self):
        self.assertChainFails(self.chain(over={3: {"iss": "agent:other"}}), 3, "iss")
        self.assertChainFails(self.chain(over={2: {"iss": "human:bob"}}), 2, "iss")

    def test_broken_parent_hash(self):
        self.assertChainFails(self.chain(over={3: {"parent": h("something else")}}), 3, "parent")
        self.assertChainFails(self.chain(over={2: {"parent": h("x")}}), 2, "parent")

    def test_swapped_order(self):
        toks = self.chain()
        self.assertChainFails([toks[0], toks[2], toks[1]], 2)

    def test_expired_link(self):
        toks = self.chain(over={3: {"exp": NOW}})
        self.assertChainFails(toks, 3, "expired")
        toks = self.chain(cert_over={"exp": NOW - 1}, over={2: {"exp": NOW - 2}, 3: {"exp": NOW - 3}})
        self.assertChainFails(toks, 1, "expired")

    def test_nbf_in_future(self):
        self.assertChainFails(self.chain(over={2: {"nbf": NOW + 1}, 3: {"nbf": NOW + 1}}), 2,
                              "not yet valid")
        self.assertChainFails(self.chain(cert_over={"nbf": NOW + 1}), 1, "not yet valid")

    def test_revoked(self):
        toks = self.chain()
        self.assertChainFails(toks, 2, "revoked", extra=["--revoked=" + h(toks[1])])

    def test_widen_lifetime(self):
        self.assertChainFails(self.chain(over={3: {"exp": NOW + 60000}}), 3, "widens scope", "exp")
        self.assertChainFails(self.chain(over={3: {"nbf": NOW - 1000}}), 3, "widens scope", "nbf")
        self.assertChainFails(self.chain(over={2: {"exp": NOW + 200000}}), 2, "widens scope")
        self.assertChainFails(self.chain(over={2: {"nbf": NOW - 2000}}), 2, "widens scope")

    def widen(self, ops):
        return self.assertChainFails(self.chain(over={3: {"ops": ops}}), 3, "widens scope")

    def test_widen_repos(self):
        self.widen([{"op": "github.merge", "repos": ["other/web"], "targets": ["main"]}])
        self.widen([{"op": "github.merge", "repos": ["tools/*"], "targets": ["main"]}])
        # a child scope must lie within ONE parent scope
        self.widen([{"op": "github.merge", "repos": ["acme/web", "evil/x"], "targets": ["main"]}])

    def test_widen_targets(self):
        self.widen([{"op": "github.merge", "repos": ["acme/web"]}])            # drops targets
        self.widen([{"op": "github.merge", "repos": ["acme/web"], "targets": ["dev"]}])
        self.widen([{"op": "github.merge", "repos": ["acme/web"], "targets": ["release"]}])
        self.widen([{"op": "github.merge", "repos": ["acme/web"], "targets": ["releases/*"]}])

    def test_narrowing_targets_and_repos_ok(self):
        for ops in ([{"op": "github.merge", "repos": ["acme/web", "acme/api"],
                      "targets": ["release/1/*", "release/2", "main"]}],
                    [{"op": "github.merge", "repos": ["tools/cli"], "targets": ["main"]},
                     {"op": "github.comment", "repos": ["acme/web"], "targets": ["main"]}]):
            rc, out = self.run_chain(self.chain(over={3: {"ops": ops}}))
            self.assertEqual(rc, 0, out)

    def test_widen_ops(self):
        self.widen([{"op": "github.push", "repos": ["acme/web"], "targets": ["main"]}])
        self.widen(OPS_2 + [{"op": "github.close", "repos": ["acme/web"]}])

    def test_widen_policy(self):
        def bad(**changes):
            p = apply(POLICY_2, changes)
            out = self.assertChainFails(self.chain(over={3: {"policy": p}}), 3, "widens scope",
                                        "policy")
            return out
        bad(min_approvals=DELETE)                                   # dropped condition
        bad(time_window=DELETE)
        bad(fresh_approvals=DELETE)
        bad(min_approvals=0)                                        # weakened
        bad(max_changed_files=101)
        bad(required_checks=["lint"])
        bad(protected_paths=["src/"])
        bad(allowed_targets=["release/1.2", "dev"])
        bad(fresh_approvals=False)
        tw = dict(POLICY_2["time_window"])
        bad(time_window=dict(tw, tz="UTC"))
        bad(time_window=dict(tw, days=["mon", "sat"]))
        bad(time_window=dict(tw, start="07:59"))
        bad(time_window=dict(tw, end="18:01"))

    def test_pinned_checks(self):
        pinned = {"context": "ci", "app_id": 15368}
        # Pinning a check its parent requires from any source narrows.
        rc, out = self.run_chain(self.chain(over={3: {"policy": apply(
            POLICY_2, {"required_checks": [pinned, "lint"]})}}))
        self.assertEqual(rc, 0, out)
        # Unpinning it, or moving it to another App, widens.
        for checks in (["ci", "lint"], [dict(pinned, app_id=1), "lint"]):
            out = self.assertChainFails(self.chain(over={
                2: {"policy": apply(POLICY_1, {"required_checks": [pinned]})},
                3: {"policy": apply(POLICY_2, {"required_checks": checks})}}),
                3, "widens scope", "required_checks drops ci from App 15368")
        for bad in ({"context": "ci"}, {"context": "ci", "app_id": 0},
                    {"context": "ci", "app_id": "1"}, {"context": "", "app_id": 1},
                    {"context": "ci", "app_id": 1, "slug": "x"}):
            self.assertChainFails(self.chain(n=1, over={2: {"policy": {
                "required_checks": [bad]}}}), 2, "policy")

    def test_push_policy(self):
        push = {"allow_force_push": True, "max_push_bytes": 1000}
        # A permission may be dropped; a size limit may not.
        rc, out = self.run_chain(self.chain(over={
            2: {"policy": apply(POLICY_1, push)},
            3: {"policy": apply(POLICY_2, {"max_push_bytes": 999})}}))
        self.assertEqual(rc, 0, out)
        self.assertChainFails(self.chain(over={2: {"policy": apply(POLICY_1, push)},
                                               3: {"policy": POLICY_2}}),
                              3, "widens scope", "drops max_push_bytes")
        self.assertChainFails(self.chain(over={3: {"policy": apply(POLICY_2, push)}}),
                              3, "widens scope", "allow_force_push")
        self.assertChainFails(self.chain(over={
            2: {"policy": apply(POLICY_1, push)},
            3: {"policy": apply(POLICY_2, {"max_push_bytes": 1001})}}),
            3, "widens scope", "max_push_bytes")
        self.assertChainFails(self.chain(n=1, over={2: {"policy": {
            "allow_branch_delete": True}}}), 2, "policy")

    def test_policy_equal_is_ok(self):
        rc, out = self.run_chain(self.chain(over={3: {"policy": POLICY_1}}))
        self.assertEqual(rc, 0, out)

    def test_invalid_policy(self):
        for p in ({"admin": True}, {"min_approvals": 3001}, {"min_approvals": -1},
                  {"fresh_approvals": 1}, {"required_checks": "ci"},
                  {"time_window": {"tz": "Mars/Olympus", "days": [], "start": "01:00",
                                   "end": "02:00"}},
                  {"time_window": {"tz": "UTC", "days": ["mon"], "start": "10:00",
                                   "end": "09:00"}},
                  {"time_window": {"tz": "UTC", "days": ["monday"], "start": "09:00",
                                   "end": "10:00"}}):
            self.assertChainFails(self.chain(n=1, over={2: {"policy": p}}), 2, "policy")


class Capabilities(Base):
    def test_wrong_aud(self):
        toks = self.chain()
        self.assertCapFails(self.cap(toks), toks, "wrong audience", aud="thresholdd:" + "B" * 22)

    def test_expired(self):
        toks = self.chain()
        self.assertCapFails(self.cap(toks), toks, "expired", now=NOW + 15)

    def test_issued_in_future(self):
        toks = self.chain()
        self.assertCapFails(self.cap(toks, {"iat": NOW + 3, "exp": NOW + 18}), toks,
                            "issued in the future")

    def test_ttl_above_60(self):
        toks = self.chain()
        self.assertCapFails(self.cap(toks, {"exp": NOW + 61}), toks, "60")
        self.assertCapFails(self.cap(toks, {"iat": NOW - 50, "exp": NOW + 11}), toks, "60")

    def test_op_not_covered(self):
        toks = self.chain()
        op = {"op": "github.merge", "repo": "acme/web", "pr": 42, "target": "main"}
        self.assertCapFails(self.cap(toks, {"op": op}), toks, "not covered")
        op = dict(op, target="release/1.2", repo="acme/api")
        self.assertCapFails(self.cap(toks, {"op": op}), toks, "not covered")
        op = {"op": "github.comment", "repo": "acme/web", "pr": 42, "params": {"body": "x"}}
        self.assertCapFails(self.cap(toks, {"op": op}), toks, "not covered")

    def test_op_parameters_as_the_operation_takes_them(self):
        toks = self.chain()
        for op, why in (
                ({"op": "github.comment", "repo": "acme/web", "pr": 42, "target": "main",
                  "params": {"body": "x"}}, "target is not allowed"),
                ({"op": "github.comment", "repo": "acme/web", "pr": 42}, "missing parameter"),
                ({"op": "github.merge", "repo": "acme/web", "pr": 42, "target": "main",
                  "params": {"sha": "x"}}, "unknown parameter"),
                ({"op": "github.nuke", "repo": "acme/web"}, "not an operation")):
            self.assertCapFails(self.cap(toks, {"op": op}), toks, why)

    def test_requester_not_delegate(self):
        toks = self.chain()
        self.assertCapFails(self.cap(toks, {"sub": "agent:a1"}), toks, "requester")

    def test_chain_mismatch(self):
        toks = self.chain()
        cap = self.cap(toks, {"chain": [h(t) for t in toks[:2]]})
        self.assertCapFails(cap, toks, "chain mismatch")
        cap = self.cap(toks, {"chain": [h(t) for t in reversed(toks)]})
        self.assertCapFails(cap, toks, "chain mismatch")

    def test_chain_error_names_link(self):
        toks = self.chain()
        toks[2] = flip_sig(toks[2])
        self.assertCapFails(self.cap(toks), toks, "link 3")
        toks = self.chain(over={3: {"ops": [{"op": "github.merge", "repos": ["x/y"]}]}})
        self.assertCapFails(self.cap(toks), toks, "link 3: widens scope")

    def test_bad_signature(self):
        toks = self.chain()
        self.assertCapFails(flip_sig(self.cap(toks)), toks, "bad signature")
        cap = self.cap(toks, signer=lambda c: pyjwt_sign(c, KEYS["att"], TYP_CAP))
        self.assertCapFails(cap, toks, "bad signature")

    def test_malformed(self):
        toks = self.chain()
        cap = self.cap(toks, signer=lambda c: pyjwt_sign(c, KEYS["cap"], TYP_DEL))
        self.assertCapFails(cap, toks, "malformed capability", "typ")
        self.assertCapFails(toks[2], toks, "malformed capability")
        self.assertCapFails(self.cap(toks, {"extra": 1}), toks, "malformed capability", "unknown")
        self.assertCapFails(self.cap(toks, {"aud": "thresholdd:x"}), toks, "malformed capability")
        for op in ({"op": "github.merge", "repo": "acme/web", "pr": 0, "target": "main"},
                   {"op": "github.merge", "repo": "acme/web", "pr": 2**31, "target": "main"},
                   {"op": "github.merge", "repo": "acme/*", "pr": 1, "target": "main"},
                   {"op": "github.merge", "repo": "acme/web", "pr": 1},
                   {"op": "github.merge", "repo": "acme/web", "pr": 1, "target": "main",
                    "admin": True}):
            self.assertCapFails(self.cap(toks, {"op": op}), toks, "malformed capability")
        self.assertCapFails(self.cap(toks, signer=lambda c: raw_sign(
            enc_json({"alg": "none", "typ": TYP_CAP}), enc_json(c), None, "none")),
            toks, "malformed capability", "alg")


if __name__ == "__main__":
    unittest.main()
