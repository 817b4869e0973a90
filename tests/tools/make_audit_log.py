#!/usr/bin/python3
"""Independent writer of Threshold audit logs, for tests: from docs/audit-format.md and
docs/tokens.md alone (python3-cryptography and the standard library; no Threshold code).

    make_audit_log.py --out FILE [--entries N] [--batch K] [--keys-dir DIR]
                      [--checkpoint-kind tpm-quote|token-signature] [--ek]
                      [--reboot-at N] [--order sequential|interleaved|checkpoints-first]
                      [--tamper MODE] [--rechain] [--time UNIX] [--policy-by-hash]

It makes its own keys (delegation root, capability, attenuation, a human's key and an
"AK"), a human certificate and delegations, link/mint/intent/outcome/revocation/refusal/
recovered/read entries chained by hash over canonical JSON (its own RFC 8785 encoder), batches of
K entries with RFC 6962 roots, and checkpoints: TPMS_ATTEST quote structures built by hand and
signed by the AK as a TPMT_SIGNATURE (a software stand-in for TPM2_Quote, structurally
identical: tpm2_checkquote accepts them), or token signatures.  Entries after the last full
batch stay uncommitted.

--policy-by-hash: the human's delegation names its policy by policy_hash, and its link entry
carries the document.

--keys-dir DIR receives root.pem, capability.pem, attenuation.pem, ak.pem (public keys),
pcrs.txt (the PCR values as `threshold audit verify --pcrs` takes them), and with --ek the
EK CA chain ek-ca.pem (root + intermediate), ek-intermediate.pem and an unrelated
other-ca.pem.  stdout: one JSON object describing the log as built (counts, last checkpoint,
and "at": the entry or checkpoint a tamper mode concerns).

Tamper modes.  Built in (the forgery is signed where a forger could sign it):
  replay-quote:N    checkpoint N carries checkpoint N-1's quote
  swap-ak           the header names another AK than the one that signs the quotes
  clock-back:N      quote N has a TPM clock lower than quote N-1's (same resetCount)
  reset-back:N      quote N has a lower resetCount than quote N-1
  bad-root:N        checkpoint N's statement (signed) has a wrong Merkle root
  bad-chain         the sub-agent's delegation widens its parent's repositories
  bad-capability    an intent's capability had its op altered after signing
  cap-mismatch      an intent's op differs from its (validly signed) capability's
  bad-capability-then-mismatch  both: bad-capability first, cap-mismatch on the next intent
  cap-other-iss, cap-long, cap-late   every capability (signed by the capability key) has
                    another iss, a lifetime of 61 s, or an iat 60 s after its entry's time
  missing-link      the sub-agent's delegation is never logged as a link
  expired-chain     the delegation expires while the log goes on
  orphan-outcome    an outcome refers to a mint, not to an intent
  policy-altered, policy-absent (with --policy-by-hash)
                    the delegation's link entry carries an edited policy document, or none
  policy-on-cert    the certificate's link entry carries a policy
  read-mismatch     a read's op names another repository than its (signed) capability
  read-bad-capability  a fetch's capability had its op altered after signing (its two
                    reads carry it, agreeing with the altered claims)
  activation-other-ak, activation-other-ek, activation-not-root (with --ek)
                    the header's activation names another AK, another EK certificate,
                    or is signed by the capability key instead of the root
Applied to the finished log (signatures stay as they were; --rechain then renumbers and
re-hashes the entries as a forger without keys can, leaving checkpoints as they were):
  edit-field:SEQ, delete:SEQ, insert:SEQ, reorder:SEQ (swaps SEQ and SEQ+1),
  truncate:SEQ (drops entries SEQ.. and the checkpoints covering them),
  splice (entries from the middle on come from a second log with the same keys),
  edit-header (the header's creation time is changed).
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID, ObjectIdentifier

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

TYP_CERT = "threshold-human-cert+jwt"
TYP_DELEGATION = "threshold-delegation+jwt"
TYP_CAPABILITY = "threshold-capability+jwt"
TYP_AK_CERT = "threshold-ak-cert+jwt"
TYP_KEYS_CERT = "threshold-keys+jwt"

TPM_GENERATED = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
TPM_ALG_SHA256 = 0x000B
TPM_ALG_ECDSA = 0x0018
PCRS = list(range(8))


# ---------------------------------------------------------------- encodings

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sha256(data):
    return hashlib.sha256(data).digest()


def hb64(data):
    return b64(sha256(data))


def canon(v):
    """RFC 8785 for what the log holds: integers only, members sorted by UTF-16 code units,
    strings with minimal escaping.  json.dumps(ensure_ascii=False) escapes exactly '"', '\\',
    \\b \\f \\n \\r \\t and other control characters as lowercase \\u00xx, as JCS does."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(canon(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(canon(k) + ":" + canon(v[k]) for k in keys) + "}"
    raise TypeError("not canonicalisable: %r" % type(v))


def cbytes(v):
    return canon(v).encode("utf-8")


def jwk(pub):
    n = pub.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")),
            "y": b64(n.y.to_bytes(32, "big"))}


def thumbprint(pub):
    return hb64(cbytes(jwk(pub)))   # RFC 7638: the required members, sorted, no spaces


def es256(key, data):
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    if s > P256_N // 2:
        s = P256_N - s              # low S (docs/tokens.md)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def jws(key, typ, claims):
    header = {"alg": "ES256", "typ": typ, "kid": thumbprint(key.public_key())}
    signing_input = b64(compact(header)) + "." + b64(compact(claims))
    return signing_input + "." + b64(es256(key, signing_input.encode("ascii")))


def token_hash(token):
    return hb64(token.encode("ascii"))


def new_jti():
    return b64(secrets.token_bytes(16))


def pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def newkey():
    return ec.generate_private_key(ec.SECP256R1())


# ---------------------------------------------------------------- RFC 6962

def merkle(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + merkle(leaves[:k]) + merkle(leaves[k:]))


def leaf(entry):
    return sha256(b"\x00" + cbytes(entry))


# ---------------------------------------------------------------- TPM structures

def tpm2b(data):
    return struct.pack(">H", len(data)) + data


def pcr_select_bitmap(pcrs):
    bm = bytearray(3)
    for p in pcrs:
        bm[p // 8] |= 1 << (p % 8)
    return bytes(bm)


def make_attest(signer_name, qual, clock, reset, restart, pcr_digest):
    """TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12), type quote, marshalled big-endian."""
    out = struct.pack(">IH", TPM_GENERATED, TPM_ST_ATTEST_QUOTE)
    out += tpm2b(signer_name)
    out += tpm2b(qual)
    out += struct.pack(">QIIB", clock, reset, restart, 1)      # TPMS_CLOCK_INFO
    out += struct.pack(">Q", 0x2019102300163636)              # firmwareVersion
    out += struct.pack(">I", 1)                                # TPML_PCR_SELECTION.count
    out += struct.pack(">HB", TPM_ALG_SHA256, 3) + pcr_select_bitmap(PCRS)
    out += tpm2b(pcr_digest)                                   # TPMS_QUOTE_INFO.pcrDigest
    return out


def make_tpmt_signature(ak, attest):
    r, s = decode_dss_signature(ak.sign(attest, ec.ECDSA(hashes.SHA256())))
    return (struct.pack(">HH", TPM_ALG_ECDSA, TPM_ALG_SHA256) +
            tpm2b(r.to_bytes(32, "big")) + tpm2b(s.to_bytes(32, "big")))


def tpm2_tools_pcrs(values):
    """tpm2-tools' serialized PCR file: raw little-endian C structures, TPML_PCR_SELECTION
    (u32 count, 16 x {u16 hash, u8 sizeofSelect, u8 pcrSelect[4], pad}), u32 number of
    TPML_DIGEST, then TPML_DIGEST (u32 count, 8 x {u16 size, u8 buffer[64]})."""
    sel = struct.pack("<I", 1) + struct.pack("<HB", TPM_ALG_SHA256, 3) + \
        pcr_select_bitmap(PCRS) + b"\0" + b"\0"
    sel += b"\0" * (8 * 15)
    dig = struct.pack("<I", len(values))
    for v in values:
        dig += struct.pack("<H", len(v)) + v + b"\0" * (64 - len(v))
    dig += b"\0" * (66 * (8 - len(values)))
    return sel + struct.pack("<I", 1) + dig


# ---------------------------------------------------------------- EK certificate

def make_ek(keys_dir):
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=3650)

    def cert(subject, issuer, pub, signer, ca, extra=()):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(later)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for ext, crit in extra:
            b = b.add_extension(ext, critical=crit)
        return b.sign(signer, hashes.SHA256())

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, int_key, ek_key, other_key = newkey(), newkey(), newkey(), newkey()
    ca_usage = (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
    root = cert(name("Test TPM Manufacturer Root"), name("Test TPM Manufacturer Root"),
                ca_key.public_key(), ca_key, True, [ca_usage])
    inter = cert(name("Test TPM EK Intermediate"), root.subject, int_key.public_key(),
                 ca_key, True, [ca_usage])
    # As TCG EK certificates are: empty subject, a critical SAN with the TPM's
    # manufacturer, model and version as a directoryName, the EK EKU.
    tpm_dn = x509.Name([
        x509.NameAttribute(ObjectIdentifier("2.23.133.2.1"), "id:54455354"),
        x509.NameAttribute(ObjectIdentifier("2.23.133.2.2"), "make_audit_log"),
        x509.NameAttribute(ObjectIdentifier("2.23.133.2.3"), "id:00010000")])
    ek = cert(x509.Name([]), inter.subject, ek_key.public_key(), int_key, False, [
        (x509.SubjectAlternativeName([x509.DirectoryName(tpm_dn)]), True),
        (x509.ExtendedKeyUsage([ObjectIdentifier("2.23.133.8.1")]), False),
        (x509.KeyUsage(False, False, False, False, True, False, False, False, False), True)])
    other = cert(name("Unrelated CA"), name("Unrelated CA"), other_key.public_key(),
                 other_key, True, [ca_usage])
    if keys_dir:
        enc = serialization.Encoding.PEM
        with open(os.path.join(keys_dir, "ek-ca.pem"), "wb") as f:
            f.write(root.public_bytes(enc) + inter.public_bytes(enc))
        with open(os.path.join(keys_dir, "ek-intermediate.pem"), "wb") as f:
            f.write(inter.public_bytes(enc))
        with open(os.path.join(keys_dir, "other-ca.pem"), "wb") as f:
            f.write(other.public_bytes(enc))
    return ek.public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------- the log

class Keys:
    def __init__(self):
        self.root, self.capability, self.attenuation = newkey(), newkey(), newkey()
        self.human, self.ak, self.other_ak = newkey(), newkey(), newkey()


class Builder:
    def __init__(self, keys, args, tamper, instance_salt=b""):
        self.k = keys
        self.args = args
        self.tamper = tamper
        self.t0 = args.time
        self.entries = []
        self.at = None
        self.instance = "thresholdd:" + b64(sha256(b"instance" + instance_salt))[:22]
        self.linked = set()
        self.agents = set()
        self.pcr_values = [sha256(b"pcr %d" % i) for i in PCRS]
        # The root's statement names the signer's genuine keys; a forger
        # with keys of their own cannot make one for them.
        keys_stmt = self.keys_statement()
        if tamper == "forged-capability":
            self.k.capability = newkey()
        self.header = {
            "v": 1, "log": "threshold-audit", "instance": self.instance,
            "created": self.t0 - 100,
            "checkpoint_key": args.checkpoint_kind,
            "ak": jwk((keys.other_ak if tamper == "swap-ak" else keys.ak).public_key()),
            "pcr_selection": ("sha256:" + ",".join(str(p) for p in PCRS)
                              if args.checkpoint_kind == "tpm-quote" else None),
            "ek_cert": b64(args.ek_der) if args.ek_der else None,
            "root": jwk(keys.root.public_key()),
            "capability": jwk(keys.capability.public_key()),
            "attenuation": jwk(keys.attenuation.public_key()),
        }
        if tamper != "no-keys":
            self.header["keys"] = keys_stmt
        if args.ek_der and tamper != "no-activation":
            self.header["activation"] = self.activation(args.ek_der)
        self.hh = hb64(cbytes(self.header))
        self.make_tokens()

    # The root's statement of the signer's checkpoint, capability and attenuation keys
    # (docs/audit-format.md, "Header").
    def keys_statement(self):
        signer = self.k.capability if self.tamper == "keys-not-root" else self.k.root
        sub = self.instance + "x" if self.tamper == "keys-other-instance" else self.instance
        return jws(signer, TYP_KEYS_CERT, {
            "iss": "threshold:root", "sub": sub, "iat": self.t0 - 100,
            "checkpoint_key": self.args.checkpoint_kind,
            "ak": jwk(self.k.ak.public_key()),
            "capability": jwk(self.k.capability.public_key()),
            "attenuation": jwk(self.k.attenuation.public_key())})

    # The root's statement that the header's AK was activated against its EK certificate
    # (docs/audit-format.md, "Header").
    def activation(self, ek_der):
        ak = self.k.other_ak if self.tamper in ("swap-ak", "activation-other-ak") else self.k.ak
        signer = self.k.capability if self.tamper == "activation-not-root" else self.k.root
        ek = ek_der + b"x" if self.tamper == "activation-other-ek" else ek_der
        if self.tamper == "activation-other-ak":
            ak = self.k.human
        return jws(signer, TYP_AK_CERT, {
            "iss": "threshold:root", "sub": self.instance, "ak": jwk(ak.public_key()),
            "ek_cert": hb64(ek), "method": "TPM2_ActivateCredential", "iat": self.t0 - 100})

    # -- tokens (docs/tokens.md)
    def make_tokens(self):
        t0, k = self.t0, self.k
        self.cert = jws(k.capability if self.tamper == "cert-not-root" else k.root, TYP_CERT, {
            "iss": "threshold:root", "sub": "human:alice", "name": "Alice Example",
            "email": "alice@example.com", "jwk": jwk(k.human.public_key()), "jti": new_jti(),
            "iat": t0 - 86400, "nbf": t0 - 86400, "exp": t0 + 365 * 86400})
        policy = {"min_approvals": 1, "required_checks": ["ci"]}
        d1_exp = t0 + 200 if self.tamper == "expired-chain" else t0 + 30 * 86400
        d1 = {
            "iss": "human:alice", "sub": "agent:coder-1", "parent": token_hash(self.cert),
            "jti": new_jti(), "iat": t0 - 3600, "nbf": t0 - 3600, "exp": d1_exp,
            "ops": [{"op": "github.merge", "repos": ["acme/*"], "targets": ["main", "release/*"]},
                    {"op": "github.comment", "repos": ["acme/widgets"]},
                    {"op": "github.fetch", "repos": ["acme/*"]}]}
        # By hash: the document (any bytes; these are not canonical on purpose)
        # travels in d1's link entry (docs/audit-format.md).
        self.policy_doc = None
        if self.args.policy_by_hash:
            self.policy_doc = json.dumps(policy, indent=1)
            d1["policy_hash"] = token_hash(self.policy_doc)
        else:
            d1["policy"] = policy
        self.d1 = jws(k.human, TYP_DELEGATION, d1)
        repos = ["acme/*"] if self.tamper == "bad-chain" else ["acme/widgets"]
        self.d2 = jws(k.attenuation, TYP_DELEGATION, {
            "iss": "agent:coder-1", "sub": "agent:reviewer-2", "parent": token_hash(self.d1),
            "jti": new_jti(), "iat": t0 - 1800, "nbf": t0 - 1800, "exp": min(d1_exp, t0 + 20 * 86400),
            "ops": [{"op": "github.comment", "repos": repos}], "policy": dict(policy)})

    def append(self, kind, members):
        e = dict(members)
        seq = len(self.entries) + 1
        e.update({"v": 1, "seq": seq, "time": self.t0 + 7 * seq,
                  "prev": self.hh if seq == 1 else hb64(cbytes(self.entries[-1])), "kind": kind})
        self.entries.append(e)
        return seq

    def link(self, token):
        if token in self.linked:
            return
        self.linked.add(token)
        if self.tamper == "missing-link" and token == self.d2:
            return
        members = {"token": token, "hash": token_hash(token)}
        if token == self.d1 and self.policy_doc is not None:
            if self.tamper == "policy-altered":
                members["policy"] = self.policy_doc.replace("1", "0", 1)
            elif self.tamper != "policy-absent":
                members["policy"] = self.policy_doc
        if token == self.cert and self.tamper == "policy-on-cert":
            members["policy"] = "{}"
        seq = self.append("link", members)
        if token == self.cert and self.tamper == "cert-not-root" and self.at is None:
            self.at = seq
        if self.tamper.startswith("policy-") and self.at is None and \
                (token == self.d1 or self.tamper == "policy-on-cert"):
            self.at = seq

    def capability(self, agent, op, chain, jti, time):
        # Tampers signed with the capability key: another issuer, a lifetime
        # over 60 s, or issued after the entry that acts with it.
        iat = time + 60 if self.tamper == "cap-late" else time - 1
        return jws(self.k.capability, TYP_CAPABILITY, {
            "iss": "threshold:other" if self.tamper == "cap-other-iss" else "threshold:broker",
            "sub": agent, "jti": jti,
            "aud": self.instance + ("x" if self.tamper == "cap-other-aud" else ""),
            "iat": iat, "exp": iat + (61 if self.tamper == "cap-long" else 15),
            "op": op, "chain": chain})

    # The links of a chain not yet logged, and a mint over it: (chain, jti, mint seq).
    def mint(self, agent, op, tokens):
        for t in tokens:
            self.link(t)
        chain = [token_hash(t) for t in tokens]
        jti = new_jti()
        self.agents.add(agent)
        return chain, jti, self.append("mint", {"agent": agent, "op": op, "jti": jti,
                                                "chain": chain})

    def act(self, agent, op, tokens, outcome=True, recovered=False, mark=None):
        chain, jti, mint = self.mint(agent, op, tokens)
        if mark == "mint" and self.at is None:
            self.at = mint
        time = self.t0 + 7 * (len(self.entries) + 1)
        cap = self.capability(agent, op, chain, jti, time)
        entry_op = op
        if mark == "intent" and self.at is None:
            if self.tamper in ("bad-capability", "bad-capability-then-mismatch"):
                # The claims are altered after signing; header and signature stay.
                h, c, s = cap.split(".")
                claims = json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
                claims["op"] = dict(op, pr=op["pr"] + 1000)
                cap = h + "." + b64(compact(claims)) + "." + s
            elif self.tamper == "cap-mismatch":
                entry_op = dict(op, pr=op["pr"] + 1000)
        elif mark == "intent" and self.tamper == "bad-capability-then-mismatch" and \
                not getattr(self, "second", False):
            # A later intent fails too, on a cheaper check: the first one is reported.
            entry_op = dict(op, pr=op["pr"] + 1000)
            self.second = True
        intent = self.append("intent", {
            "agent": agent, "capability": cap, "op": entry_op, "jti": jti, "chain": chain,
            "decision": {"allowed": True, "rules": ["pull request", "required_checks",
                                                    "min_approvals"], "waived": {}},
            "token": {"fingerprint": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                      "expires_at": "2025-11-24T17:00:00Z"}})
        if mark == "intent" and self.at is None:
            self.at = intent
            if self.tamper == "replay-intent":
                # The same capability acting twice: a copied entry.
                self.at = self.append("intent", dict(self.entries[-1]))
        if recovered:
            self.append("recovered", {"intent": intent, "status": 200,
                                      "result": {"merged": True, "state": "closed"}})
        elif outcome:
            ref = intent
            if mark == "outcome" and self.at is None:
                ref = mint
            o = self.append("outcome", {"intent": ref, "status": 200,
                                        "result": {"sha": secrets.token_hex(20)}})
            if mark == "outcome" and self.at is None:
                self.at = o
            self.append("revocation", {"intent": intent,
                                       "fingerprint": secrets.token_hex(32),
                                       "result": "revoked"})

    # A git fetch through the broker: its capability, a read entry per request
    # (each with its own token), and the tokens' revocations, which refer to them.
    def fetch(self, agent, repo, mark=None):
        op = {"op": "github.fetch", "repo": repo}
        chain, jti, _ = self.mint(agent, op, [self.cert, self.d1])
        cap = self.capability(agent, op, chain, jti, self.t0 + 7 * (len(self.entries) + 1))
        if mark == "read" and self.at is None and self.tamper == "read-bad-capability":
            # Claims altered after signing, and the entries agreeing with them: only the
            # signature is wrong, and both reads of the exchange carry it.
            op = {"op": "github.fetch", "repo": "acme/secrets"}
            h, c, sg = cap.split(".")
            claims = json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
            claims["op"] = op
            cap = h + "." + b64(compact(claims)) + "." + sg
        for request in ("info/refs?service=git-upload-pack", "git-upload-pack"):
            entry_op = op
            if mark == "read" and self.at is None and self.tamper == "read-mismatch":
                entry_op = {"op": "github.fetch", "repo": "acme/secrets"}
            read = self.append("read", {
                "agent": agent, "capability": cap, "op": entry_op, "jti": jti,
                "chain": chain, "request": request,
                "token": {"fingerprint": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                          "expires_at": "2025-11-24T17:00:00Z"}})
            if mark == "read" and self.at is None:
                self.at = read
            self.append("revocation", {"intent": read, "fingerprint": secrets.token_hex(32),
                                       "result": "revoked"})

    def build(self, n):
        r = 0
        marks = {"bad-chain": "mint", "missing-link": "mint", "bad-capability": "intent",
                 "bad-capability-then-mismatch": "intent", "cap-mismatch": "intent", "orphan-outcome": "outcome", "replay-intent": "intent",
                 "read-mismatch": "read", "read-bad-capability": "read"}
        mark = marks.get(self.tamper)
        while len(self.entries) < n:
            merge = {"op": "github.merge", "repo": "acme/widgets", "pr": r + 1, "target": "main"}
            if r % 3 == 1:
                self.append("refusal", {"agent": "agent:coder-1", "code": "denied",
                                        "reason": "pull request is draft", "op": merge})
                # The installation token that read the facts, revoked: it served no
                # intent, and the broker logs it without one.
                self.append("revocation", {"fingerprint": secrets.token_hex(32),
                                           "result": "revoked"})
            if r % 5 == 3:
                self.append("refusal", {"agent": "unknown", "code": "unauthenticated",
                                        "reason": "no agent for uid 1234"})
            if r % 6 == 4:
                self.fetch("agent:coder-1", "acme/widgets", mark=mark)
            if r % 4 == 2:
                comment = {"op": "github.comment", "repo": "acme/widgets", "pr": r + 1,
                           "params": {"body": "LGTM \u2713 \"quoted\"\n\ttab \u0001 \U0001F600"}}
                self.act("agent:reviewer-2", comment, [self.cert, self.d1, self.d2],
                         mark=mark if self.tamper in ("bad-chain", "missing-link") else None)
            else:
                self.act("agent:coder-1", merge, [self.cert, self.d1], recovered=(r == 5),
                         mark=mark if self.tamper not in ("bad-chain", "missing-link") and r >= 1
                         else None)
            r += 1
        del self.entries[n:]
        if self.tamper == "expired-chain":
            self.at = next((e["seq"] for e in self.entries if e["kind"] in ("mint", "intent")
                            and e["time"] >= self.t0 + 200), None)
        if self.at is not None and self.at > n:
            sys.exit("make_audit_log: the tamper mode needs more entries")

    # -- checkpoints
    def checkpoints(self, batch, tamper_n, tamper_kind):
        cps = []
        prev = self.hh
        ak_name = struct.pack(">H", TPM_ALG_SHA256) + sha256(
            self.k.ak.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
        clock, reset, restart = 1000000, 3, 1
        for i in range(len(self.entries) // batch):
            n = i + 1
            first, last = i * batch + 1, (i + 1) * batch
            leaves = [leaf(e) for e in self.entries[first - 1:last]]
            root = merkle(leaves)
            if tamper_kind == "bad-root" and n == tamper_n:
                root = merkle(leaves[::-1] + [sha256(b"forged")])
            stmt = {"first": first, "last": last, "log": self.hh, "n": n, "prev": prev,
                    "root": b64(root)}
            q = sha256(cbytes(stmt))
            cp = dict(stmt, qual=b64(q), kind=self.args.checkpoint_kind)
            clock += 5000 + 7 * batch
            if self.args.reboot_at == n:
                reset, restart, clock = reset + 1, 0, 30000
            if tamper_kind == "clock-back" and n == tamper_n:
                clock -= 20000
            if tamper_kind == "reset-back" and n == tamper_n:
                reset -= 2
            if self.args.checkpoint_kind == "tpm-quote":
                digest = sha256(b"".join(self.pcr_values))
                attest = make_attest(ak_name, q, clock, reset, restart, digest)
                cp["attest"] = b64(attest)
                cp["sig"] = b64(make_tpmt_signature(self.k.ak, attest))
                cp["pcrs"] = b64(tpm2_tools_pcrs(self.pcr_values))
                cp["pcr_values"] = [{"bank": "sha256", "pcr": p, "value": v.hex()}
                                    for p, v in zip(PCRS, self.pcr_values)]
                if tamper_kind == "replay-quote" and n == tamper_n:
                    for key in ("attest", "sig", "pcrs", "pcr_values"):
                        cp[key] = cps[-1][key]
            else:
                cp["sig"] = b64(es256(self.k.ak, b"threshold-audit-checkpoint:" +
                                      cp["qual"].encode("ascii")))
            cps.append(cp)
            prev = b64(q)
        return cps


def rechain(hh, entries):
    """What a forger without keys can do: renumber and re-hash the entries (and fix the
    references of outcomes to their intents).  Checkpoints stay as they were."""
    renum = {}
    for i, e in enumerate(entries):
        renum.setdefault(e["seq"], i + 1)
    for i, e in enumerate(entries):
        e["seq"] = i + 1
        if "intent" in e and isinstance(e["intent"], int):
            e["intent"] = renum.get(e["intent"], e["intent"])
        e["prev"] = hh if i == 0 else hb64(cbytes(entries[i - 1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--entries", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--keys-dir")
    ap.add_argument("--checkpoint-kind", choices=["tpm-quote", "token-signature"],
                    default="tpm-quote")
    ap.add_argument("--ek", action="store_true")
    ap.add_argument("--reboot-at", type=int, default=0)
    ap.add_argument("--order", choices=["sequential", "interleaved", "checkpoints-first"],
                    default="sequential")
    ap.add_argument("--tamper", default="")
    ap.add_argument("--rechain", action="store_true")
    ap.add_argument("--policy-by-hash", action="store_true")
    ap.add_argument("--time", type=int, default=1764000000)
    args = ap.parse_args()
    if args.entries < 1 or args.batch < 1:
        ap.error("--entries and --batch must be positive")
    if args.keys_dir:
        os.makedirs(args.keys_dir, exist_ok=True)
    args.ek_der = make_ek(args.keys_dir) if args.ek else None

    mode, _, arg = args.tamper.partition(":")
    num = int(arg) if arg else 0
    keys = Keys()
    b = Builder(keys, args, mode)
    b.build(args.entries)
    cps = b.checkpoints(args.batch, num, mode)
    header, entries, hh = b.header, b.entries, b.hh
    at = b.at if b.at is not None else num

    if mode in ("edit-field", "delete", "insert", "reorder", "truncate") and \
            not 1 <= num <= len(entries):
        sys.exit("make_audit_log: %s:%d is outside the log" % (mode, num))
    if mode == "edit-field":
        e = entries[num - 1]
        if isinstance(e.get("op"), dict) and "pr" in e["op"]:
            e["op"]["pr"] += 1
        else:
            e["time"] += 1
    elif mode == "delete":
        del entries[num - 1]
    elif mode == "insert":
        prev = hh if num == 1 else hb64(cbytes(entries[num - 2]))
        entries.insert(num - 1, {"v": 1, "seq": num, "time": entries[num - 1]["time"],
                                 "prev": prev, "kind": "refusal", "agent": "agent:mallory",
                                 "code": "forged", "reason": "inserted afterwards"})
    elif mode == "reorder":
        entries[num - 1], entries[num] = entries[num], entries[num - 1]
    elif mode == "truncate":
        del entries[num - 1:]
        cps = [c for c in cps if c["last"] < num]
    elif mode == "splice":
        other = Builder(keys, args, "", instance_salt=b"other")
        other.cert, other.d1, other.d2 = b.cert, b.d1, b.d2
        other.build(args.entries)
        at = len(entries) // 2
        entries[at - 1:] = other.entries[at - 1:]
    elif mode == "edit-header":
        header["created"] += 1
    elif mode not in ("", "replay-quote", "swap-ak", "clock-back", "reset-back", "bad-root",
                      "bad-chain", "bad-capability", "cap-mismatch", "missing-link",
                      "bad-capability-then-mismatch",
                      "expired-chain", "orphan-outcome", "activation-other-ak",
                      "activation-other-ek", "activation-not-root", "no-activation", "no-keys",
                      "keys-not-root", "keys-other-instance", "forged-capability", "replay-intent", "cap-other-aud",
                      "cap-other-iss", "cap-long", "cap-late",
                      "cert-not-root", "policy-altered",
                      "policy-absent", "policy-on-cert", "read-mismatch",
                      "read-bad-capability"):
        sys.exit("make_audit_log: unknown tamper mode %r" % args.tamper)
    if args.rechain:
        rechain(hh, entries)

    lines = [{"type": "header", "header": header}]
    ent = [{"type": "entry", "entry": e} for e in entries]
    chk = [{"type": "checkpoint", "checkpoint": c} for c in cps]
    if args.order == "sequential":
        lines += ent + chk
    elif args.order == "checkpoints-first":
        lines += chk + ent
    else:
        j = 0
        for i, e in enumerate(ent):
            lines.append(e)
            while j < len(chk) and chk[j]["checkpoint"]["last"] == i + 1:
                lines.append(chk[j])
                j += 1
        lines += chk[j:]
    with open(args.out, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(canon(line) + "\n")

    if args.keys_dir:
        for name, key in (("root", keys.root), ("capability", keys.capability),
                          ("attenuation", keys.attenuation), ("ak", keys.ak)):
            with open(os.path.join(args.keys_dir, name + ".pem"), "wb") as f:
                f.write(pem(key.public_key()))
        with open(os.path.join(args.keys_dir, "pcrs.txt"), "w") as f:
            f.write("sha256:" + ",".join("%d=%s" % (p, v.hex())
                                         for p, v in zip(PCRS, b.pcr_values)) + "\n")

    kinds = [e["kind"] for e in entries]
    agents = {e["agent"] for e in entries if e["kind"] in ("mint", "intent", "refusal")
              and e.get("agent", "").startswith("agent:")}
    committed = cps[-1]["last"] if cps else 0
    print(json.dumps({
        "entries": len(entries), "committed": committed,
        "uncommitted": len(entries) - committed, "checkpoints": len(cps),
        "humans": 1 if "link" in kinds else 0, "agents": len(agents),
        "intents": kinds.count("intent"), "mints": kinds.count("mint"),
        "reads": kinds.count("read"),
        "outcomes": kinds.count("outcome"), "recovered": kinds.count("recovered"),
        "revocations": kinds.count("revocation"), "refusals": kinds.count("refusal"),
        "revocations_without_intent": sum(1 for e in entries if e["kind"] == "revocation"
                                          and "intent" not in e),
        "links": kinds.count("link"),
        "first_time": entries[0]["time"] if entries else None,
        "last_time": entries[-1]["time"] if entries else None,
        "last_checkpoint": {"n": cps[-1]["n"], "qual": cps[-1]["qual"]} if cps else None,
        "header_hash": hh, "at": at}))


if __name__ == "__main__":
    main()
