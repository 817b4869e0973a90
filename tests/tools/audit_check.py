#!/usr/bin/python3
"""Small, independent readers of an audit export for the integration tests
(python3-cryptography only, nothing of Threshold's C code).

  audit_check.py kinds FILE            the entry kinds, in order, one line
  audit_check.py chain FILE            recomputes every prev hash; "ok" or why
  audit_check.py checkpoint FILE N DIR writes DIR/{ak.pem,attest.bin,sig.bin,
                                       pcrs.bin,qual.hex} for tpm2_checkquote
  audit_check.py find FILE KIND KEY=VALUE...  prints matching entries as JSON
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def lines(path):
    """(type, raw canonical bytes of the object, parsed object)."""
    for line in open(path, "rb"):
        line = line.rstrip(b"\n")
        obj = json.loads(line)
        t = obj["type"].encode()
        # Two members, in either order (the broker writes "type" first).
        first, last = b'{"type":"%s","%s":' % (t, t), b'}'
        if not line.startswith(first):
            first, last = b'{"%s":' % t, b',"type":"%s"}' % t
        assert line.startswith(first) and line.endswith(last), line[:60]
        yield t.decode(), line[len(first):-len(last)], obj[t.decode()]


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    items = list(lines(path))
    if cmd == "kinds":
        print(" ".join(o["kind"] for t, _, o in items if t == "entry"))
    elif cmd == "chain":
        prev = b64e(hashlib.sha256(items[0][1]).digest())
        seq = 0
        for t, raw, o in items[1:]:
            if t != "entry":
                continue
            seq += 1
            if o["seq"] != seq or o["prev"] != prev:
                print("entry %d: broken chain" % o["seq"])
                return 1
            prev = b64e(hashlib.sha256(raw).digest())
        print("ok", seq)
    elif cmd == "checkpoint":
        n, out = int(sys.argv[3]), sys.argv[4]
        header = items[0][2]
        cp = [o for t, _, o in items if t == "checkpoint" and o["n"] == n][0]
        ak = header["ak"]
        pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(ak["x"]), "big"),
                                            int.from_bytes(b64d(ak["y"]), "big"),
                                            ec.SECP256R1()).public_key()
        open(out + "/ak.pem", "wb").write(pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        for k in ("attest", "sig", "pcrs"):
            open("%s/%s.bin" % (out, k), "wb").write(b64d(cp[k]))
        open(out + "/qual.hex", "w").write(b64d(cp["qual"]).hex())
        stmt = {k: cp[k] for k in ("first", "last", "log", "n", "prev", "root")}
        canon = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
        assert b64e(hashlib.sha256(canon).digest()) == cp["qual"], "qual is not H(statement)"
        print("ok")
    elif cmd == "find":
        kind = sys.argv[3]
        want = dict(a.split("=", 1) for a in sys.argv[4:])
        for t, _, o in items:
            if t == "entry" and o["kind"] == kind and \
                    all(str(o.get(k)) == v for k, v in want.items()):
                print(json.dumps(o))
    return 0


if __name__ == "__main__":
    sys.exit(main())
