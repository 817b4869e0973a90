# A deployment without a TPM: every key in SoftHSM, and the audit log
# countersigned by the signer's audit key (token-signature checkpoints),
# checked here by an independent ES256 verification.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
export NO_TPM=1
echo '{"required_checks":["ci/test"],"min_approvals":1}' >"$T/policy.json"
world "$T/policy.json" && ok "the whole product is up, without a TPM" || { fail "world"; cat "$T"/*.log; done_testing; exit 1; }
green_pr 1 "$(printf '%040d' 1)" '["src/a.c"]'
expect_ok "a merge" $BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 1
# Its token's revocation, recorded after the answer, is the last entry.
eventually settled 1 revocation || fail "the revocation is recorded and checkpointed"
expect_ok "export" $BIN/threshold --state "$T/state" audit export "$T/audit.jsonl"
$PY - "$T/audit.jsonl" <<'PY' >"$T/check" 2>&1
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

rows = [json.loads(l) for l in open(sys.argv[1])]
h = rows[0]["header"]
assert h["checkpoint_key"] == "token-signature" and h["ek_cert"] is None, h
ak = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(h["ak"]["x"]), "big"),
                                   int.from_bytes(b64d(h["ak"]["y"]), "big"),
                                   ec.SECP256R1()).public_key()
cps = [r["checkpoint"] for r in rows if r["type"] == "checkpoint"]
assert cps, "no checkpoint"
n = 0
for cp in cps:
    assert cp["kind"] == "token-signature" and "attest" not in cp, cp
    stmt = {k: cp[k] for k in ("first", "last", "log", "n", "prev", "root")}
    canon = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    assert base64.urlsafe_b64encode(hashlib.sha256(canon).digest()).rstrip(b"=").decode() == cp["qual"]
    sig = b64d(cp["sig"])
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    assert s <= order // 2, "high S"
    ak.verify(encode_dss_signature(r, s), ("threshold-audit-checkpoint:" + cp["qual"]).encode(),
              ec.ECDSA(hashes.SHA256()))
    n += 1
print("ok", n)
PY
grep -q '^ok' "$T/check" && ok "every checkpoint is an ES256 signature by the audit key ($(cat "$T/check"))" ||
	{ fail "token-signature checkpoints"; sed 's/^/#   /' "$T/check"; }
$BIN/threshold --signer "$T/signer.sock" signer pubkey delegation-root >"$T/root.pem"
# The root's keys statement, judged by PyJWT: signed by the root, naming
# this instance and the header's own keys.
$PY -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["header"]["keys"])' \
    "$T/audit.jsonl" >"$T/keys.jws"
if $PY "$ROOT/tests/tools/jws.py" verify "$(cat "$T/keys.jws")" "$T/root.pem" ES256 >"$T/keys.claims" 2>&1 &&
   $PY - "$T/audit.jsonl" "$T/keys.claims" <<'PY'
import json, sys
h = json.loads(open(sys.argv[1]).readline())["header"]
c = json.load(open(sys.argv[2]))
assert c["iss"] == "threshold:root" and c["sub"] == h["instance"], c
assert c["checkpoint_key"] == h["checkpoint_key"] == "token-signature", c
for k in ("ak", "capability", "attenuation"):
    assert c[k] == h[k], k
PY
then ok "the header's keys statement verifies with the root (PyJWT) and names the header's keys"
else fail "the header's keys statement"; sed 's/^/#   /' "$T/keys.claims" | head -3; fi
expect_ok "threshold audit verify accepts it" sh -c "$BIN/threshold audit verify $T/audit.jsonl --root $T/root.pem > $T/summary"
grep -qi "token" "$T/summary" && ok "and reports the checkpoints as token-signed" || { fail "token-signed in the summary"; sed 's/^/#   /' "$T/summary"; }
expect_fail "the audit key signs nothing but checkpoint hashes" "audit key signs only" \
	sh -c "printf 'threshold-audit-checkpoint:nope' | $BIN/threshold --signer $T/signer.sock signer sign audit -"

# The audit key replaced under a running broker: its countersignatures no
# longer verify with the header's key, so nothing is done on them; and the
# broker will not start again on that log.
"$FIX/signer-stop" "$T"
$BIN/threshold-signer -f "$T/signer.conf" destroy audit >/dev/null 2>&1
$BIN/threshold-signer -f "$T/signer.conf" keygen audit >/dev/null 2>&1
"$FIX/signer-start" "$T" || fail "signer restarts with a new audit key"
green_pr 2 "$(printf '%040d' 2)" '["src/b.c"]'
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 2 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "audit_unavailable" "$T/err" &&
	ok "a new audit key under a running broker: the merge is refused (audit_unavailable)" ||
	{ fail "merge on an unverifiable countersignature (exit $rc)"; sed 's/^/#   /' "$T/err"; }
admin GET state | grep -q '"number": 2, "merged": true\|"pr": 2' && fail "merged on an unverifiable countersignature" ||
	ok "nothing merged at GitHub"
expect_ok "the log still verifies" $BIN/threshold audit verify --db "$T/state/audit.db" --root "$T/root.pem"
stop_broker
start_broker && fail "broker starts on a log naming another audit key" ||
	{ grep -q "names another audit key than the signer's" "$T/broker.log" &&
	  ok "the broker will not start on a log naming another audit key, saying why" ||
	  { fail "restart on a log naming another audit key"; tail -3 "$T/broker.log" | sed 's/^/#   /'; }; }
done_testing
