# The audit log of a real broker (swtpm quotes, SoftHSM, GitHub emulator):
# what it records, its countersignatures checked by tpm2_checkquote, crash
# consistency (kill -9 at each step of an operation that GitHub can hold
# up), and fail-closed
# behaviour when the log cannot be written or countersigned.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
AC="$PY $ROOT/tests/tools/audit_check.py"
sha() { printf '%040d' "$1"; }
echo '{"required_checks":["ci/test"],"min_approvals":1,"protected_paths":[".github/workflows/**"]}' >"$T/policy.json"
# Alice names her policy by hash here (the other tests inline it): the log
# must carry the document for an auditor to check her chain.
export ALICE_POLICY_BY_HASH=1
world "$T/policy.json" && ok "the whole product is up" || { fail "world"; cat "$T"/*.log; done_testing; exit 1; }
TH="$BIN/threshold --broker $T/broker.sock --state $T/state --signer $T/signer.sock"
export_log() { $TH audit export "$T/audit.jsonl"; }

green_pr 1 "$(sha 1)" '["src/a.c"]'
green_pr 2 "$(sha 2)" '[".github/workflows/ci.yml"]'
$BIN/threshold --broker "$T/broker.sock" --json github merge --repo acme/backend --pr 1 >"$T/m1.json" 2>&1
$PY -c "import json,sys;a=json.load(open(sys.argv[1]))['audit'];assert a['intent_committed'] and a['outcome']>a['intent']" "$T/m1.json" &&
	ok "a merge's answer gives its intent (countersigned before the merge) and outcome" || { fail "audit in the answer"; cat "$T/m1.json"; }
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 2 >/dev/null 2>&1
# A refusal whose reason quotes the agent's input cut inside a character
# ("%.32s" of 31 ASCII bytes and an e-acute): still one line of UTF-8, and
# recorded (a reason the canonical encoder refused used to go unrecorded).
KEY="$(printf 'a%.0s' $(seq 31))\303\251"
printf '{"op":"github.merge","repo":"acme/backend","pr":1,"target":"main","params":{"%b":"x"}}' "$KEY" >"$T/cut.json"
curl -sS --unix-socket "$T/broker.sock" -X POST -H 'Content-Type: application/json' \
    --data-binary @"$T/cut.json" http://localhost/v1/capabilities >"$T/cut.out" 2>&1
grep -q 'takes no parameter' "$T/cut.out" && ok "a parameter the operation does not take is refused" ||
	{ fail "refused params"; cat "$T/cut.out"; }
eventually settled 1 || fail "the log settles: a revocation recorded, every entry checkpointed"
expect_ok "export" export_log
kinds=$($AC kinds "$T/audit.jsonl")
echo "$kinds" | grep -q "link link mint intent outcome" && ok "links, mint, intent, outcome in order" || fail "kinds: $kinds"
echo "$kinds" | grep -q "revocation" && ok "the token's revocation is recorded" || fail "revocation recorded: $kinds"
echo "$kinds" | grep -q "refusal" && ok "the policy refusal is recorded" || fail "refusal recorded: $kinds"
$AC find "$T/audit.jsonl" refusal code=policy_denied | grep -q "protected path" && ok "the refusal names the rule" || fail "refusal reason"
$AC find "$T/audit.jsonl" refusal code=bad_request | grep -q 'takes no parameter \\"a*?\\"' &&
	ok "the refusal that quoted a cut character is recorded, the cut byte as '?'" ||
	{ fail "cut refusal recorded"; $AC find "$T/audit.jsonl" refusal code=bad_request; }
expect_ok "the hash chain recomputes independently" $AC chain "$T/audit.jsonl"
$PY - "$T/audit.jsonl" "$T/policy.json" <<'EOF2' && ok "alice's link entry carries her policy document, of the hash her delegation names" || fail "policy document in the link entry"
import base64, hashlib, json, sys
d = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
h = lambda b: base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
links = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry" and o["entry"]["kind"] == "link"]
deleg = [e for e in links if d(e["token"].split(".")[0])["typ"] == "threshold-delegation+jwt"]
assert len(deleg) == 1, links
claims = d(deleg[0]["token"].split(".")[1])
assert "policy" not in claims and claims["policy_hash"] == h(deleg[0]["policy"].encode()), deleg
assert json.loads(deleg[0]["policy"]) == json.load(open(sys.argv[2]))
assert all("policy" not in e for e in links if e is not deleg[0])
EOF2
$BIN/threshold --signer "$T/signer.sock" signer pubkey delegation-root >"$T/root.pem"
expect_ok "threshold audit verify: the broker's log verifies offline (EK certificate to swtpm's CA)" \
	$BIN/threshold audit verify "$T/audit.jsonl" --root "$T/root.pem" --ek-ca "$T/tpm/ek-ca.pem"
grep -q "AK bound to EK   yes: activated (TPM2_ActivateCredential), certified by the root" "$T/out" &&
	ok "the AK was activated against swtpm's EK and the root certified it" ||
	{ fail "AK activation reported"; sed 's/^/#   /' "$T/out"; }
expect_ok "and as a live database" $BIN/threshold audit verify --db "$T/state/audit.db" --root "$T/root.pem"
# The activation is the root's statement, checked independently: typ, the AK in the header,
# the SHA-256 of the header's EK certificate.
if $PY - "$T/audit.jsonl" "$T/root.pem" "$ROOT/tests/tools" <<'EOF2'
import base64, hashlib, json, sys
sys.path.insert(0, sys.argv[3])
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
h = json.loads(open(sys.argv[1]).readline())["header"]
hd, cl, sig = h["activation"].split(".")
assert json.loads(d(hd))["typ"] == "threshold-ak-cert+jwt"
root = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
root.verify(encode_dss_signature(int.from_bytes(d(sig)[:32], "big"), int.from_bytes(d(sig)[32:], "big")),
            (hd + "." + cl).encode(), ec.ECDSA(hashes.SHA256()))
c = json.loads(d(cl))
assert c["ak"]["x"] == h["ak"]["x"] and c["ak"]["y"] == h["ak"]["y"], c
assert d(c["ek_cert"]) == hashlib.sha256(d(h["ek_cert"])).digest()
assert c["sub"] == h["instance"] and c["method"] == "TPM2_ActivateCredential"
EOF2
then ok "the header's activation: root-signed, names the header's AK and EK certificate"
else fail "the header's activation"; fi
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl ec -pubout -out "$T/other.pem" 2>/dev/null
expect_fail "a root the auditor does not trust is refused" "root" \
	$BIN/threshold audit verify "$T/audit.jsonl" --root "$T/other.pem"
# An entry's inclusion proof, checked independently (RFC 9162 2.1.3.2) up to
# the checkpoint's root and qualifying data.
expect_ok "threshold audit proof 3" sh -c "$BIN/threshold audit proof 3 --db $T/state/audit.db >$T/proof.json"
if $PY - "$T/proof.json" <<'EOF'
import base64, hashlib, json, sys
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
canon = lambda o: json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
p = json.load(open(sys.argv[1]))
cp = p["checkpoint"]
assert p["seq"] == 3 and p["entry"]["seq"] == 3 and cp["first"] <= 3 <= cp["last"]
assert p["tree_size"] == cp["last"] - cp["first"] + 1 and p["leaf_index"] == 3 - cp["first"]
h = hashlib.sha256(b"\x00" + canon(p["entry"])).digest()
fn, sn = p["leaf_index"], p["tree_size"] - 1
for x in map(d, p["path"]):
    assert sn != 0
    if fn & 1 or fn == sn:
        h = hashlib.sha256(b"\x01" + x + h).digest()
        if not fn & 1:
            while fn and not fn & 1:
                fn >>= 1; sn >>= 1
    else:
        h = hashlib.sha256(b"\x01" + h + x).digest()
    fn >>= 1; sn >>= 1
assert sn == 0 and h == d(cp["root"]), "path does not reach the checkpoint root"
stmt = {k: cp[k] for k in ("first", "last", "log", "n", "prev", "root")}
assert hashlib.sha256(canon(stmt)).digest() == d(cp["qual"])
EOF
then ok "the proof leads from entry 3 to its checkpoint's root and qualifying data (independent check)"
else fail "inclusion proof"; fi
expect_fail "a proof for an entry that does not exist" "not committed" \
	$BIN/threshold audit proof 999999 --db "$T/state/audit.db"
# A row altered in the database (entry 3's time, still canonical; then
# entry 3 with a space added): no proof is handed out, for it or for any
# entry of its batch.
alter() { # FROM TO: replaced in entry 3 of a copy, $T/altered.db
	rm -f "$T/altered.db"
	$PY - "$T/state/audit.db" "$T/altered.db" "$1" "$2" <<'EOF'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
# Whoever alters the file first drops the append-only triggers.
for (t,) in dst.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
    dst.execute('DROP TRIGGER "%s"' % t)
n = dst.execute("UPDATE entries SET body = replace(body, ?, ?) WHERE seq = 3",
                (sys.argv[3], sys.argv[4])).rowcount
dst.commit()
body = dst.execute("SELECT body FROM entries WHERE seq = 3").fetchone()[0]
sys.exit(0 if n == 1 and sys.argv[4] in body else 1)
EOF
}
alter '"time":1' '"time":2' || fail "could not alter entry 3's time"
expect_fail "a proof from a database whose entry was altered is refused" \
	"entries [0-9]+\.\.[0-9]+ do not hash to their checkpoint's root" \
	$BIN/threshold audit proof 3 --db "$T/altered.db"
last3=$($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['checkpoint']['last'])" "$T/proof.json")
expect_fail "... and so is one for another entry of its batch" "do not hash to their checkpoint's root" \
	$BIN/threshold audit proof "$last3" --db "$T/altered.db"
alter '"seq":3' '"seq": 3' || fail "could not alter entry 3's seq"
expect_fail "a proof from a database whose entry is not canonical is refused" \
	"entry 3 is not stored as its canonical form" \
	$BIN/threshold audit proof 3 --db "$T/altered.db"
if grep -q "ghs_" "$T/audit.jsonl"; then fail "a token value in the log"; else ok "no token value in the log (fingerprints only)"; fi
mkdir -p "$T/cp"
expect_ok "checkpoint 1 extracted, qual = H(statement)" $AC checkpoint "$T/audit.jsonl" 1 "$T/cp"
expect_ok "tpm2_checkquote accepts checkpoint 1's quote" \
	tpm2_checkquote -u "$T/cp/ak.pem" -m "$T/cp/attest.bin" -s "$T/cp/sig.bin" -f "$T/cp/pcrs.bin" \
	-g sha256 -q "$(cat "$T/cp/qual.hex")"
expect_fail "and rejects it for another statement" "." \
	tpm2_checkquote -u "$T/cp/ak.pem" -m "$T/cp/attest.bin" -s "$T/cp/sig.bin" -f "$T/cp/pcrs.bin" \
	-g sha256 -q "$(printf '%064d' 0)"
expect_fail "the log refuses updates (append-only)" "append-only" \
	$PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);c.execute('update entries set body=body where seq=1');c.commit()" "$T/state/audit.db"

# Crash consistency: kill -9 at each step of the write path GitHub can hold
# up: while the merge is at GitHub (#3: it completes there; #4: it never
# does), creating the token and reading the facts (#20, #21: both before
# any intent), and revoking the token (#22: after the outcome).
# until_intent N: wait (bounded) until the intent to merge PR N is in the
# log: the merge call follows at once and then sits in the fault's delay.
until_intent() {
	i=0
	while [ $i -lt 100 ]; do
		$PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);sys.exit(0 if any(json.loads(b)['op'].get('pr')==int(sys.argv[2]) for (b,) in c.execute(\"select body from entries where kind='intent'\")) else 1)" \
		    "$T/state/audit.db" "$1" 2>/dev/null && return 0
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
at_merge() { until_intent "$1" && sleep 0.7; }
held() { sleep 1; }
# crash_at N FAULT WAIT: merge PR N while GitHub applies FAULT; kill -9 the
# broker once WAIT N returns, and restart it.
crash_at() {
	green_pr "$1" "$(sha "$1")" "[\"src/k$1.c\"]"
	admin POST faults "$2" >/dev/null
	$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr "$1" >/dev/null 2>&1 &
	$3 "$1" || fail "the merge of #$1 reached the step to crash at"
	kill -9 "$(cat "$T/broker.pid")"
	start_broker || fail "broker restarts after kill -9 (#$1)"
}
crash_at 3 '{"method":"PUT","path_regex":"/pulls/3/merge","delay_ms":3000}' at_merge
crash_at 4 '{"method":"PUT","path_regex":"/pulls/4/merge","hang_ms":3000,"then":"close"}' at_merge
crash_at 20 '{"method":"POST","path_regex":"^/app/installations/[0-9]+/access_tokens$","delay_ms":3000}' held
crash_at 21 '{"method":"GET","path_regex":"^/repos/acme/backend/pulls/21$","delay_ms":3000}' held
crash_at 22 '{"method":"DELETE","path_regex":"^/installation/token$","delay_ms":3000}' held
# ... and while #26's merge is held at GitHub, whose pull request is gone
# (404) when the broker restarts: recorded as unknown, not left open.
green_pr 26 "$(sha 26)" '["src/k26.c"]'
admin POST faults '{"method":"PUT","path_regex":"/pulls/26/merge","hang_ms":3000,"then":"close"}' >/dev/null
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 26 >/dev/null 2>&1 &
at_merge 26 || fail "the merge of #26 reached GitHub"
kill -9 "$(cat "$T/broker.pid")"
admin POST faults '{"method":"GET","path_regex":"^/repos/acme/backend/pulls/26$","status":404,"times":1}' >/dev/null
start_broker || fail "broker restarts after kill -9 (#26)"
# ... and between the intent's append and its countersignature: the TPM is
# held (SIGSTOP) while the broker waits for the quote.
green_pr 24 "$(sha 24)" '["src/k24.c"]'
expect_ok "a merge after the restarts (the App JWT and installation id cached again)" \
	$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 24
# The signer serves one request at a time: swtpm must not stop while it
# quotes for the committer (the mint's SIGN would then wait too).
# The last of #24's entries is its token's revocation.
eventually settled 0 revocation && sleep 0.3 && settled 0 revocation ||
	fail "the log is committed before swtpm is held"
green_pr 23 "$(sha 23)" '["src/k23.c"]'
kill -STOP "$(cat "$T/tpm/swtpm.pid")"
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 23 >/dev/null 2>&1 &
until_intent 23 || fail "the intent to merge #23 was appended"
kill -9 "$(cat "$T/broker.pid")"
kill -CONT "$(cat "$T/tpm/swtpm.pid")"
# Someone else merges #23 while the broker is down: not the broker's merge.
admin POST pulls '{"repo":"acme/backend","number":23,"merged":true,"merged_by":"carol"}' >/dev/null
sleep 1
start_broker || fail "broker restarts after kill -9 (#23)"
sleep 0.5
merged=$(admin GET state | $PY -c "import json,sys;print(' '.join(str(m.get('number',m.get('pr'))) for m in json.load(sys.stdin)['merges']))")
echo "$merged" | grep -qw 3 && ok "the in-flight merge completed at GitHub" || fail "merge 3 at GitHub ($merged)"
echo "$merged" | grep -qw 4 && fail "merge 4 reached GitHub" || ok "the hung merge never reached GitHub"
export_log
i3=$($AC find "$T/audit.jsonl" intent | $PY -c "import json,sys;print([json.loads(l)['seq'] for l in sys.stdin if json.loads(l)['op']['pr']==3][0])")
i4=$($AC find "$T/audit.jsonl" intent | $PY -c "import json,sys;print([json.loads(l)['seq'] for l in sys.stdin if json.loads(l)['op']['pr']==4][0])")
$AC find "$T/audit.jsonl" recovered intent=$i3 | grep -q '"merged": true' && ok "restart recorded that #3 was merged" || fail "recovery of #3"
$AC find "$T/audit.jsonl" recovered intent=$i4 | grep -q '"merged": false' && ok "restart recorded that #4 was not" || fail "recovery of #4"
$PY - "$T/audit.jsonl" "$merged" <<'EOF2' && ok "killed while creating the token or reading facts: no intent, nothing merged; before the intent's countersignature: recovered, not merged (someone else merged it); while revoking: intent and outcome; a pull request gone at restart: unknown; every merge at GitHub has its intent" || fail "crashes at the other steps"
import json, sys
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
intents = {e["op"].get("pr"): e["seq"] for e in ents if e["kind"] == "intent"}
merged = {int(x) for x in sys.argv[2].split()}
assert 20 not in intents and 21 not in intents and not {20, 21} & merged, (intents, merged)
outs = {e["intent"]: e for e in ents if e["kind"] == "outcome"}
assert 22 in merged and 22 in intents and intents[22] in outs, (intents, merged)
assert merged <= set(intents), (merged, intents)
assert 23 in intents and 23 not in merged, (intents, merged)
rec = [e for e in ents if e["kind"] == "recovered" and e["intent"] == intents[23]]
assert len(rec) == 1 and rec[0]["result"]["merged"] is False, rec
assert rec[0]["result"]["merged_by"] == "carol" and rec[0]["result"]["state"] == "closed", rec
rec = [e for e in ents if e["kind"] == "recovered" and e["intent"] == intents[26]]
assert len(rec) == 1 and rec[0]["status"] == 0, rec
assert "no pull request acme/backend#26 (404)" in rec[0]["result"]["unknown"], rec
# Where the kills landed: after the mint, and before #22's revocation was logged.
mints = {e["op"].get("pr") for e in ents if e["kind"] == "mint"}
assert {20, 21, 22} <= mints, mints
assert not any(e["kind"] == "revocation" and e.get("intent") == intents[22] for e in ents)
EOF2
expect_ok "after the crashes the hash chain is intact" $AC chain "$T/audit.jsonl"
expect_ok "after the crashes the log verifies" $BIN/threshold audit verify "$T/audit.jsonl" --root "$T/root.pem"

# #27's merge never reaches GitHub (the broker killed while GitHub holds
# it). At the restart recovery cannot get a token (the App is not
# installed on the repository for the moment: a 404 that may pass), so the
# intent stays open, not closed as unknown; #27 is then merged by a second
# intent; at the next restart the first intent is not given that merge
# (a pull request merges once).  Recovery's read tokens are revoked and
# their revocations recorded.
green_pr 27 "$(sha 27)" '["src/k27.c"]'
admin POST faults '{"method":"PUT","path_regex":"/pulls/27/merge","hang_ms":3000,"then":"close"}' >/dev/null
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 27 >/dev/null 2>&1 &
at_merge 27 || fail "the merge of #27 reached GitHub"
kill -9 "$(cat "$T/broker.pid")"
admin DELETE faults >/dev/null
admin POST faults '{"method":"GET","path_regex":"^/repos/acme/backend/installation$","status":404,"times":1}' >/dev/null
start_broker || fail "broker restarts after kill -9 (#27)"
admin DELETE faults >/dev/null
export_log
i27=$($AC find "$T/audit.jsonl" intent | $PY -c "import json,sys;print([json.loads(l)['seq'] for l in sys.stdin if json.loads(l)['op']['pr']==27][0])")
[ -z "$($AC find "$T/audit.jsonl" recovered intent=$i27)" ] &&
	ok "recovery that cannot get a token (App not installed, for now) leaves the intent open" ||
	{ fail "recovery without a token"; $AC find "$T/audit.jsonl" recovered intent=$i27 | sed 's/^/#   /'; }
expect_ok "a second intent merges #27" $BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 27
admin GET tokens | $PY -c "import json,sys;print(' '.join(t['sha256'] for t in json.load(sys.stdin)))" >"$T/tokens.before"
stop_broker
start_broker || fail "broker restarts after #27 merged"
eventually settled 0 revocation || true
export_log
$PY - "$T/audit.jsonl" "$i27" >"$T/r27.check" 2>&1 <<'EOF2' &&
import json, sys
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
first = int(sys.argv[2])
second = [e["seq"] for e in ents if e["kind"] == "intent" and e["op"].get("pr") == 27 and e["seq"] != first][0]
out = [e for e in ents if e["kind"] == "outcome" and e["intent"] == second]
assert out and out[0]["result"]["merged"] is True, out
rec = [e for e in ents if e["kind"] == "recovered" and e["intent"] == first]
assert len(rec) == 1 and rec[0]["result"]["merged"] is False, rec
assert rec[0]["result"]["merge_of_intent"] == second, rec
EOF2
	ok "an intent never sent is not given the merge another intent made" ||
	{ fail "two intents, one merge"; sed 's/^/#   /' "$T/r27.check"; }
admin GET tokens >"$T/tokens.after"
$PY - "$T/audit.jsonl" "$T/tokens.before" "$T/tokens.after" >"$T/rtok.check" 2>&1 <<'EOF2' &&
import json, sys
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
before = set(open(sys.argv[2]).read().split())
new = [t for t in json.load(open(sys.argv[3])) if t["sha256"] not in before]
assert new, "recovery made no token"
logged = {e["fingerprint"]: e for e in ents if e["kind"] == "revocation"}
for t in new:
    assert t["revoked"], t["permissions"]
    assert t["sha256"] in logged and "intent" not in logged[t["sha256"]], t["permissions"]
EOF2
	ok "recovery's tokens are revoked, each revocation recorded" ||
	{ fail "recovery's tokens"; sed 's/^/#   /' "$T/rtok.check"; }
expect_ok "... and the log verifies" $BIN/threshold audit verify "$T/audit.jsonl" --root "$T/root.pem"

# Recovery of the other operations, all in flight when the broker is killed
# and restarted at once (the broker waits until GitHub must have finished
# what it was asked): a comment, a pull request and a deployment GitHub made
# are found by what their intents asked; a comment GitHub never got is
# recorded as not made; of two identical comments GitHub made once, one
# intent is given it and the other not; a dispatch (GitHub offers no
# lookup) is recorded as unknown.
ALICE="env SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state"
echo '{"allowed_targets":["main"]}' >"$T/ops-policy.json"
admin POST repos '{"full_name":"acme/backend","branches":{"feature-r":"abababababababababababababababababababab"},"workflows":["deploy.yml"]}' >/dev/null
admin POST installations '{"id":42,"account":"acme","repositories":["acme/backend"],"permissions":{"contents":"write","pull_requests":"write","checks":"read","statuses":"read","issues":"write","deployments":"write","actions":"write"}}' >/dev/null
expect_ok "alice delegates comments, pull requests, deployments and dispatches to coder-1" \
	$ALICE delegate --as alice --key "pkcs11:token=alice;object=alice-key;type=private" \
	--pin-file "$T/alice/hsm/user.pin" --to coder-1 --allow github.comment --allow github.pr.create \
	--allow github.deployment.create --allow github.workflow.dispatch --repo acme/backend \
	--target main --policy "$T/ops-policy.json" --ttl 1h
for f in '"path_regex":"^/repos/acme/backend/issues/1/comments$","delay_ms":3000' \
    '"path_regex":"^/repos/acme/backend/issues/2/comments$","hang_ms":3000,"then":"close"' \
    '"path_regex":"^/repos/acme/backend/issues/24/comments$","delay_ms":3000' \
    '"path_regex":"^/repos/acme/backend/issues/24/comments$","hang_ms":3000,"then":"close"' \
    '"path_regex":"^/repos/acme/backend/pulls$","delay_ms":3000' \
    '"path_regex":"^/repos/acme/backend/deployments$","delay_ms":3000' \
    '"path_regex":"/dispatches$","delay_ms":3000'; do
	admin POST faults "{\"method\":\"POST\",$f}" >/dev/null
done
$TH github comment --repo acme/backend --pr 1 --body "made while the broker died" >/dev/null 2>&1 &
$TH github comment --repo acme/backend --pr 2 --body "never made" >/dev/null 2>&1 &
$TH github comment --repo acme/backend --pr 24 --body "asked twice" >/dev/null 2>&1 &
$TH github comment --repo acme/backend --pr 24 --body "asked twice" >/dev/null 2>&1 &
$TH github pr create --repo acme/backend --head feature-r --base main --title "Recovered" >/dev/null 2>&1 &
$TH github deploy --repo acme/backend --ref main --environment staging >/dev/null 2>&1 &
$TH github dispatch --repo acme/backend --workflow deploy.yml --ref main >/dev/null 2>&1 &
all_intents() {
	$PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);ops=[json.loads(b)['op']['op'] for (b,) in c.execute(\"select body from entries where kind='intent'\")];sys.exit(0 if sum(o!='github.merge' for o in ops)==7 else 1)" \
	    "$T/state/audit.db" 2>/dev/null
}
eventually all_intents || fail "the seven operations' intents were appended"
sleep 0.7
kill -9 "$(cat "$T/broker.pid")"
logged=$(wc -l <"$T/broker.log")
start_broker || fail "broker restarts after kill -9 during seven operations"
tail -n +"$((logged + 1))" "$T/broker.log" | grep -q "is recent: waiting [0-9]* s for GitHub to finish" &&
	ok "restarted at once, the broker waits for what GitHub may still be doing" ||
	fail "no wait for GitHub before recovery"
export_log
admin GET state >"$T/state.json"
$PY - "$T/audit.jsonl" "$T/state.json" <<'EOF2' >"$T/rec.check" 2>&1
import json, sys, time
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
st = json.load(open(sys.argv[2]))
rec = {e["intent"]: e for e in ents if e["kind"] == "recovered"}
def intents(op, **match):
    return [e for e in ents if e["kind"] == "intent" and e["op"]["op"] == op and
            all(e["op"].get(k) == v for k, v in match.items())]
def recovered(op, **match):
    i = intents(op, **match)
    assert len(i) == 1 and i[0]["seq"] in rec, (op, i)
    r = rec[i[0]["seq"]]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i[0]["time"] - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i[0]["time"] + 20 + 60))
    assert (r["result"]["since"], r["result"]["until"]) == (since, until), (r, since, until)
    return r
def comments(body):
    return [c["id"] for c in st["comments"] if c["body"] == body]
made = comments("made while the broker died")
assert len(made) == 1 and not comments("never made"), st["comments"]
r = recovered("github.comment", pr=1)
assert r["status"] == 200 and r["result"]["created"] is True and r["result"]["id"] == made[0], r
r = recovered("github.comment", pr=2)
assert r["result"]["created"] is False and "id" not in r["result"], r
twice = comments("asked twice")
pair = [rec[i["seq"]]["result"] for i in intents("github.comment", pr=24)]
assert len(twice) == 1 and len(pair) == 2, (twice, pair)
assert sorted((p["created"], p.get("id")) for p in pair) == [(False, None), (True, twice[0])], pair
pulls = [p["pr"] for p in st["pull_requests_created"] if p["head"] == "feature-r"]
r = recovered("github.pr.create")
assert len(pulls) == 1 and r["result"]["created"] is True and r["result"]["id"] == pulls[0], (r, pulls)
deps = [d["id"] for d in st["deployments"] if d["environment"] == "staging" and d["ref"] == "main"]
r = recovered("github.deployment.create")
assert len(deps) == 1 and r["result"]["id"] == deps[0], (r, deps)
i = intents("github.workflow.dispatch")
r = rec[i[0]["seq"]]
assert r["status"] == 0 and "check the workflow's runs" in r["result"]["unknown"], r
print("ok")
EOF2
grep -q '^ok$' "$T/rec.check" &&
	ok "restart found the comment, pull request and deployment GitHub made, gave the twice-asked comment to one intent, recorded the comment it never got as not made, the dispatch as unknown" ||
	{ fail "recovery of the other operations"; sed 's/^/#   /' "$T/rec.check"; tail -5 "$T/broker.log" | sed 's/^/#   /'; }
# A write whose intent took longer than 5 s to be countersigned (swtpm held
# meanwhile) is not sent at all: what GitHub may have made for an intent is
# settled within a bound of its time, as recovery assumes.
eventually settled 0 && sleep 0.3 && settled 0 || fail "the log is committed before swtpm is held"
kill -STOP "$(cat "$T/tpm/swtpm.pid")"
$TH github comment --repo acme/backend --pr 1 --body "too late to send" >"$T/late.out" 2>&1 &
late=$!
late_intent() {
	$PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);sys.exit(0 if any(json.loads(b)['op'].get('params',{}).get('body')=='too late to send' for (b,) in c.execute(\"select body from entries where kind='intent'\")) else 1)" \
	    "$T/state/audit.db" 2>/dev/null
}
eventually late_intent || fail "the late comment's intent was appended"
sleep 6
kill -CONT "$(cat "$T/tpm/swtpm.pid")"
i=0; while kill -0 "$late" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "not sent: its intent was recorded more than 5 s ago" "$T/late.out" &&
	! admin GET state | grep -q "too late to send" &&
	ok "an intent countersigned too late: the comment is not sent, saying why" ||
	{ fail "a late intent's write"; sed 's/^/#   /' "$T/late.out"; }
expect_ok "after that crash the log verifies" $BIN/threshold audit verify "$T/audit.jsonl" --root "$T/root.pem"

# Fail closed: the TPM cannot quote (swtpm down; the installation id and
# App JWT are cached, so only the countersignature needs it): refused,
# nothing done at GitHub.
green_pr 5 "$(sha 5)" '["src/e.c"]'
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 3 >/dev/null 2>&1
"$FIX/swtpm-stop" "$T"
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 5 >"$T/out" 2>"$T/err"; rc=$?
[ $rc -ne 0 ] && grep -q "audit_unavailable" "$T/err" && ok "no countersignature: refused (audit_unavailable)" ||
	{ fail "quote failing (exit $rc)"; sed 's/^/#   /' "$T/err"; }
admin GET state | grep -q '"number": 5, "merged": true\|"pr": 5' && fail "merged without an audit record" || ok "nothing merged at GitHub"
"$FIX/swtpm-start" "$T" >/dev/null
export_log
$PY - "$T/audit.jsonl" <<'EOF2' && ok "the intent it could not countersign is closed: outcome 'not attempted'" || fail "uncountersigned intent closed"
import json, sys
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
i5 = [e["seq"] for e in ents if e["kind"] == "intent" and e["op"].get("pr") == 5]
outs = [e for e in ents if e["kind"] == "outcome" and e["intent"] in i5]
assert len(i5) == 1 and len(outs) == 1 and outs[0]["error"].startswith("not attempted: "), (i5, outs)
EOF2

# Evidence over the log's entry bound (a thousand check runs and as many
# statuses, with long names): a refusal, and a passing merge's intent, are
# recorded with that evidence cut and named, not dropped.
big_pr() { # N SHA CONCLUSION-OF-lint
	green_pr "$1" "$2" '["src/big.c"]'
	$PY - "$2" "$3" >"$T/checks.json" <<'EOF2'
import json, sys
runs = [{"name": "ci/test", "status": "completed", "conclusion": "success"}]
runs += [{"name": "\\" * 252 + "%03d" % i, "status": "completed", "conclusion": "success"} for i in range(998)]
runs.append({"name": "lint", "status": "completed", "conclusion": sys.argv[2]})
print(json.dumps({"repo": "acme/backend", "sha": sys.argv[1], "check_runs": runs}))
EOF2
	curl -sS -X POST -H 'Content-Type: application/json' "$GH/_admin/checks" --data-binary @"$T/checks.json" >/dev/null
	$PY -c "
import json, sys
print(json.dumps({'repo': 'acme/backend', 'sha': sys.argv[1], 'statuses': [{'context': '\\\\' * 252 + '%03d' % i, 'state': 'success'} for i in range(1000)]}))" "$2" >"$T/st.json"
	curl -sS -X POST -H 'Content-Type: application/json' "$GH/_admin/statuses" --data-binary @"$T/st.json" >/dev/null
}
big_pr 40 "$(sha 40)" success
$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 40 >"$T/out40" 2>&1 &&
	ok "a merge whose evidence is over the entry bound is done" ||
	{ fail "merge with huge evidence"; sed 's/^/#   /' "$T/out40" | head -3; }
export_log
$PY - "$T/audit.jsonl" <<'EOF2' && ok "... and its intent recorded, the evidence over the bound cut and named" || fail "intent with cut evidence"
import json, sys
ents = [o["entry"] for o in map(json.loads, open(sys.argv[1])) if o["type"] == "entry"]
i40 = [e for e in ents if e["kind"] == "intent" and e["op"].get("pr") == 40]
assert len(i40) == 1 and i40[0]["decision"].get("omitted"), i40[0].get("decision") if i40 else ents[-3:]
# Across the restarts above, each link was logged once.
links = [e["hash"] for e in ents if e["kind"] == "link"]
assert links and len(links) == len(set(links)), links
EOF2
expect_ok "the log with cut evidence verifies" $TH audit verify "$T/audit.jsonl" --root "$T/root.pem"

# A log whose header the broker's keys no longer match (made by an older
# thresholdd, without the root's keys statement) is not appended to.
stop_broker
cp "$T/state/audit.db" "$T/old-audit.db"
$PY - "$T/old-audit.db" <<'EOF2'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
h = json.loads(db.execute("SELECT body FROM header").fetchone()[0])
del h["keys"]
db.execute("UPDATE header SET body = ?", (json.dumps(h, separators=(",", ":"), sort_keys=True),))
db.commit()
EOF2
cp "$T/broker.conf" "$T/broker.conf.orig"
echo "audit $T/old-audit.db" >>"$T/broker.conf"
start_broker && fail "broker starts on a log without a keys statement" ||
	{ grep -q "audit log $T/old-audit.db has no keys statement" "$T/broker.log" &&
	  ok "a log without a keys statement: the broker refuses to start, saying why" ||
	  { fail "a log without a keys statement"; tail -3 "$T/broker.log" | sed 's/^/#   /'; }; }
# A log altered while the broker was down is not appended to (it was, and
# what followed was countersigned on top of what no auditor can verify):
# a committed entry edited, its chain of hashes redone after it; an entry
# stored otherwise than canonically.
tamper() { # MODE -> $T/tampered.db
	cp "$T/state/audit.db" "$T/tampered.db"
	$PY - "$T/tampered.db" "$1" <<'EOF2'
import base64, hashlib, json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("DROP TRIGGER entries_ro")
rows = db.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
canon = lambda o: json.dumps(o, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
h = lambda b: base64.urlsafe_b64encode(hashlib.sha256(b.encode()).digest()).rstrip(b"=").decode()
if sys.argv[2] == "edit":
    # The first outcome says something else; every later prev follows.
    k = next(i for i, (s, b) in enumerate(rows) if json.loads(b)["kind"] == "outcome")
    prev = None
    for i in range(k, len(rows)):
        e = json.loads(rows[i][1])
        if i == k:
            e["status"] = 500
        else:
            e["prev"] = prev
        b = canon(e)
        db.execute("UPDATE entries SET body = ? WHERE seq = ?", (b, rows[i][0]))
        prev = h(b)
else:
    s, b = rows[-1]
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (json.dumps(json.loads(b), indent=1), s))
db.commit()
EOF2
}
for mode in edit spaces; do
	[ $mode = edit ] && why="do not hash to their checkpoint's root" || why="not stored as its canonical form"
	tamper $mode
	cp "$T/broker.conf.orig" "$T/broker.conf"
	echo "audit $T/tampered.db" >>"$T/broker.conf"
	start_broker && { fail "broker starts on a log altered ($mode)"; stop_broker; } ||
		{ grep "the log was altered" "$T/broker.log" | grep -q "$why" &&
		  ok "a log altered while the broker was down ($mode): it refuses to start, saying why" ||
		  { fail "altered log ($mode)"; tail -3 "$T/broker.log" | sed 's/^/#   /'; }; }
done
mv "$T/broker.conf.orig" "$T/broker.conf"

# Fail closed: the log's database cannot be written.
chattr +i "$T/state/audit.db" "$T/state/audit.db-wal" "$T/state/audit.db-shm" 2>/dev/null
if lsattr "$T/state/audit.db" 2>/dev/null | grep -q -- '-i-'; then
	start_broker
	green_pr 6 "$(sha 6)" '["src/f.c"]'
	$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 6 >"$T/out" 2>"$T/err"; rc=$?
	[ $rc -ne 0 ] && grep -q "audit_unavailable\|audit log" "$T/err" && ok "read-only log: refused" ||
		{ fail "read-only log (exit $rc)"; sed 's/^/#   /' "$T/err" "$T/broker.log" | tail -5; }
	admin GET state | grep -q '"pr": 6' && fail "merged without an audit record" || ok "nothing done at GitHub"
	stop_broker
	chattr -i "$T/state/audit.db" "$T/state/audit.db-wal" "$T/state/audit.db-shm" 2>/dev/null
else
	ok "SKIP read-only log: chattr +i unsupported here"
fi

# Fail closed: the disk under the log is full (a small tmpfs, filled up once
# the broker is running on it).
mkdir -p "$T/full"
if mount -t tmpfs -o size=4m tmpfs "$T/full" 2>/dev/null; then
	cp "$T/state/audit.db" "$T/full/"
	cp "$T/broker.conf" "$T/broker.conf.orig"
	echo "audit $T/full/audit.db" >>"$T/broker.conf"
	start_broker || fail "broker starts with its log on the small disk"
	dd if=/dev/zero of="$T/full/filler" bs=64k 2>/dev/null
	[ "$(df -P "$T/full" | awk 'NR == 2 {print $4}')" = 0 ] && ok "the log's disk is full" || fail "disk not full"
	green_pr 7 "$(sha 7)" '["src/g.c"]'
	$BIN/threshold --broker "$T/broker.sock" github merge --repo acme/backend --pr 7 >"$T/out" 2>"$T/err"; rc=$?
	[ $rc -ne 0 ] && grep -q "audit_unavailable" "$T/err" && ok "disk full: refused (audit_unavailable)" ||
		{ fail "disk full (exit $rc)"; sed 's/^/#   /' "$T/err" "$T/broker.log" | tail -5; }
	admin GET state | grep -q '"pr": 7' && fail "merged without an audit record" || ok "nothing done at GitHub"
	stop_broker
	umount "$T/full"
	mv "$T/broker.conf.orig" "$T/broker.conf"
else
	ok "SKIP disk full: cannot mount a tmpfs here"
fi
done_testing
