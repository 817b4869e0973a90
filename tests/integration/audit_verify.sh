# threshold audit verify against logs from an independent writer
# (tests/tools/make_audit_log.py, written from docs/audit-format.md and
# docs/tokens.md): a valid log verifies with the writer's own counts; each
# forgery is refused at the right position; truncation is caught with
# --expect-checkpoint; the live-database reader; tpm2_checkquote accepts the
# writer's quotes (so the two agree on TPMS_ATTEST from independent code).
. "$(dirname "$0")/../lib.sh"

PY=/usr/bin/python3
MK="$ROOT/tests/tools/make_audit_log.py"
TH="$BIN/threshold"
K="$T/keys"

# jget FILE KEY[.KEY]: a member of a JSON file.
jget() {
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d[k]
print(d)' "$1" "$2"
}

# mk NAME ARGS...: a log $T/NAME.jsonl with keys in $T/NAME.keys and the
# writer's description in $T/NAME.info.
mk() {
	_n=$1; shift
	$PY "$MK" --out "$T/$_n.jsonl" --keys-dir "$T/$_n.keys" "$@" >"$T/$_n.info" ||
	    { fail "make_audit_log $_n $*"; return 1; }
}

# refuses NAME REGEX [ARGS...]: verifying $T/NAME.jsonl fails, stderr matches.
refuses() {
	_n=$1; _re=$2; shift 2
	expect_fail "$_n refused: $_re" "$_re" \
	    "$TH" audit verify "$T/$_n.jsonl" --root "$T/$_n.keys/root.pem" "$@"
}

# ---- the valid log
$PY "$MK" --out "$T/ok.jsonl" --entries 60 --batch 8 --keys-dir "$K" --ek \
    >"$T/ok.info" || fail "make_audit_log writes a log"
expect_ok "a valid log verifies" "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem"
grep -q '^  entries          60 (56 committed, 4 uncommitted)$' "$T/out" &&
grep -q '^  checkpoints      7 (7 TPM quotes, 0 token signatures)$' "$T/out" &&
grep -q '^  humans           1$' "$T/out" &&
grep -q '^  agents           2$' "$T/out" &&
grep -q '^  record it: --expect-checkpoint 7:' "$T/out" &&
    ok "text summary: entries, committed, checkpoints, humans, agents" ||
    { fail "text summary"; sed 's/^/#   /' "$T/out"; }

"$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --json >"$T/ok.sum" 2>"$T/err" ||
    fail "--json verifies"
if $PY - "$T/ok.sum" "$T/ok.info" <<'EOF'
import json, sys
got = json.load(open(sys.argv[1]))
want = json.load(open(sys.argv[2]))
assert got["verified"] is True, got
pairs = [(k, k) for k in ("entries", "committed", "uncommitted", "checkpoints", "humans",
                          "agents", "mints", "outcomes", "recovered", "revocations",
                          "refusals", "links", "first_time", "last_time", "last_checkpoint",
                          "header_hash", "revocations_without_intent", "reads")] + [("actions", "intents"), ("tpm_quotes", "checkpoints")]
bad = [(g, got.get(g), want[w]) for g, w in pairs if got.get(g) != want[w]]
assert not bad, bad
assert got["token_signatures"] == 0 and got["checkpoint_key"] == "tpm-quote"
assert want["intents"] > 0 and want["refusals"] > 0 and want["recovered"] == 1
assert want["revocations_without_intent"] > 0 and want["reads"] > 0
EOF
then ok "--json summary equals the writer's counts (one JSON object)"
else fail "--json summary"; sed 's/^/#   /' "$T/ok.sum"; fi
"$TH" --json audit verify "$T/ok.jsonl" --root "$K/root.pem" >"$T/g.sum" 2>&1 &&
    cmp -s "$T/g.sum" "$T/ok.sum" && ok "global --json is honoured" ||
    fail "global --json"
"$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --json --threads 1 >"$T/t1.sum" 2>&1 &&
    cmp -s "$T/t1.sum" "$T/ok.sum" && ok "--threads 1 (no helper threads): the same summary" ||
    { fail "--threads 1"; cat "$T/t1.sum"; }
expect_fail "--threads 0 is a usage error" 'bad --threads "0"' \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --threads 0
expect_fail "--threads 4294967297 is refused, not cut to 1" 'bad --threads "4294967297"' \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --threads 4294967297
"$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --threads 2x >/dev/null 2>&1
[ $? -eq 2 ] && ok "a malformed --threads exits 2 (usage)" || fail "--threads 2x exit status"
"$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --json >/dev/full 2>"$T/err"
[ $? -eq 1 ] && grep -q "writing standard output" "$T/err" &&
	ok "a summary lost on a full disk: exit 1, saying so" || fail "verify --json >/dev/full"
expect_ok "a log on stdin verifies" sh -c \
    "'$TH' audit verify - --root '$K/root.pem' <'$T/ok.jsonl'"
expect_fail "a missing log: says why" "cannot open $T/none.jsonl: No such file or directory" \
    "$TH" audit verify "$T/none.jsonl" --root "$K/root.pem"
expect_fail "a directory for a log: says so" "$T is a directory, not an exported log" \
    "$TH" audit verify "$T" --root "$K/root.pem"
expect_fail "a missing root key: says why" "cannot open $T/none.pem: No such file or directory" \
    "$TH" audit verify "$T/ok.jsonl" --root "$T/none.pem"
expect_fail "export of a missing log: says why" "cannot open the audit log $T/none.db: unable to open database file" \
    "$TH" audit export --db "$T/none.db"
expect_fail "export to where no file can be made: says why" "cannot create $T/no/such.jsonl: No such file or directory" \
    "$TH" audit export --db "$T/none.db" "$T/no/such.jsonl"

LAST=$(jget "$T/ok.info" last_checkpoint.n):$(jget "$T/ok.info" last_checkpoint.qual)
expect_ok "every option at once: --ek-ca, --pcrs, --expect-checkpoint" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --ek-ca "$K/ek-ca.pem" \
    --pcrs "$(cat "$K/pcrs.txt")" --expect-checkpoint "$LAST" \
    --expect-checkpoint "1:$(sed -n 's/.*"first":1,"kind":"tpm-quote".*"qual":"\([^"]*\)".*/\1/p' "$T/ok.jsonl" | head -1)"
grep -q 'EK certificate   chains to --ek-ca' "$T/out" && ok "EK certificate reported as checked" ||
    fail "EK certificate reported as checked"
grep -q 'AK bound to EK   yes' "$T/out" && ok "the writer's activation is accepted" ||
    fail "the writer's activation is accepted"
expect_ok "--ek-ca with only the intermediate (partial chain)" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --ek-ca "$K/ek-intermediate.pem"
expect_fail "--ek-ca of another CA" "header: ek_cert does not chain to --ek-ca" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --ek-ca "$K/other-ca.pem"
expect_fail "another root key" "header: root is not the auditor's root key" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/ak.pem"
expect_fail "other PCR values" "checkpoint 1: PCR sha256:7 is [0-9a-f]{64}, expected 0{64}" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --pcrs "sha256:7=$(printf '%064d' 0)"
expect_fail "a PCR that is not quoted" "checkpoint 1: PCR sha256:9 \(--pcrs\) is not quoted" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --pcrs "sha256:9=$(printf '%064d' 0)"
expect_fail "an expected checkpoint with other qualifying data" \
    "checkpoint 2: qualifying data .*, but the auditor expected A{43}" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" \
    --expect-checkpoint "2:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

# The writer's quotes are what tpm2-tools checks (independent TPMS_ATTEST,
# TPMT_SIGNATURE and serialized-PCR code on both sides).
if command -v tpm2_checkquote >/dev/null 2>&1; then
	$PY - "$T/ok.jsonl" "$T" <<'EOF'
import base64, json, sys
d = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o["type"] == "checkpoint" and o["checkpoint"]["n"] == 3:
        c = o["checkpoint"]
        for k in ("attest", "sig", "pcrs"):
            open(sys.argv[2] + "/q3." + k, "wb").write(d(c[k]))
        open(sys.argv[2] + "/q3.qual", "w").write(d(c["qual"]).hex())
EOF
	expect_ok "tpm2_checkquote accepts checkpoint 3 of the writer" \
	    tpm2_checkquote -u "$K/ak.pem" -m "$T/q3.attest" -s "$T/q3.sig" \
	    -f "$T/q3.pcrs" -g sha256 -q "$(cat "$T/q3.qual")"
else
	ok "# skip tpm2_checkquote (not installed)"
fi

# ---- layouts and kinds that must verify
mk interleaved --entries 50 --batch 7 --order interleaved &&
    expect_ok "checkpoints interleaved after their entries" \
    "$TH" audit verify "$T/interleaved.jsonl" --root "$T/interleaved.keys/root.pem"
mk cfirst --entries 50 --batch 7 --order checkpoints-first &&
    expect_ok "checkpoints before the entries they cover" \
    "$TH" audit verify "$T/cfirst.jsonl" --root "$T/cfirst.keys/root.pem"
mk token --entries 40 --batch 5 --checkpoint-kind token-signature &&
    expect_ok "token-signature checkpoints" "$TH" audit verify --json \
    "$T/token.jsonl" --root "$T/token.keys/root.pem" &&
    grep -q '"tpm_quotes":0,"token_signatures":8' "$T/out" &&
    ok "token-signed checkpoints counted as such" || fail "token-signed counts"
expect_fail "--ek-ca with a header that has no ek_cert" \
    "header: --ek-ca given, but the header has no ek_cert" \
    "$TH" audit verify "$T/token.jsonl" --root "$T/token.keys/root.pem" --ek-ca "$K/ek-ca.pem"
expect_fail "--pcrs with a log that has no quote" \
    "--pcrs given, but the log has no TPM quote whose PCR values could be checked" \
    "$TH" audit verify "$T/token.jsonl" --root "$T/token.keys/root.pem" --pcrs "$(cat "$K/pcrs.txt")"
mk reboot --entries 60 --batch 8 --reboot-at 4 &&
    expect_ok "a TPM reset between checkpoints (resetCount up, restartCount and clock back to low values)" \
    "$TH" audit verify "$T/reboot.jsonl" --root "$T/reboot.keys/root.pem"
mk byhash --entries 60 --batch 8 --policy-by-hash &&
    expect_ok "a delegation naming its policy by hash, the document in its link entry" \
    "$TH" audit verify "$T/byhash.jsonl" --root "$T/byhash.keys/root.pem"
mk empty --entries 5 --batch 8 &&
    expect_ok "a log with no checkpoint yet (all uncommitted)" \
    "$TH" audit verify "$T/empty.jsonl" --root "$T/empty.keys/root.pem" &&
    grep -q 'entries          5 (0 committed, 5 uncommitted)' "$T/out" &&
    ok "uncommitted entries counted" || fail "uncommitted count"

# ---- forgeries signed where a forger could sign: refused at their position
at() { jget "$T/$1.info" at; }
mk replay --tamper replay-quote:3 --entries 60 --batch 8 &&
    refuses replay "checkpoint 3: the quote's extraData is not the checkpoint's qualifying data"
mk swapak --tamper swap-ak --entries 60 --batch 8 &&
    refuses swapak "header: ak is not the key the root names"
# A forger's own capability key, signing every capability of the log: the
# header's keys must be the ones the root names.
mk forgedcap --tamper forged-capability --entries 60 --batch 8 &&
    refuses forgedcap "header: capability is not the key the root names"
mk nokeys --tamper no-keys --entries 20 --batch 8 &&
    refuses nokeys "header: no keys statement"
mk keysnotroot --tamper keys-not-root --entries 20 --batch 8 &&
    refuses keysnotroot "header: keys is not signed by the root"
# A capability acts once: a second intent under its jti is a copy.
mk replayint --tamper replay-intent --entries 60 --batch 8 &&
    refuses replayint "entry $(at replayint): intent: capability [A-Za-z0-9_-]{22} already acted in an earlier intent"
# A capability minted by another broker (its aud), signed by the same key.
mk capaud --tamper cap-other-aud --entries 20 --batch 8 &&
    refuses capaud "entry [0-9]+: (intent|read)'s capability is for another broker"
# Capabilities signed with the right key whose claims docs/tokens.md refuses:
# another issuer, a lifetime over 60 s; and one issued (iat) a minute after
# the entry that acted with it.
mk capiss --tamper cap-other-iss --entries 20 --batch 8 &&
    refuses capiss "entry [0-9]+: (intent|read)'s capability is malformed: bad iss, sub or jti"
mk caplong --tamper cap-long --entries 20 --batch 8 &&
    refuses caplong "entry [0-9]+: (intent|read)'s capability is malformed: lifetime not within 1..60 s"
mk caplate --tamper cap-late --entries 20 --batch 8 &&
    refuses caplate "entry [0-9]+: (intent|read)'s capability was issued 6[01] s after the entry's time"
# A certificate the root did not sign names no human, even unused.
mk certnr --tamper cert-not-root --entries 20 --batch 8 &&
    refuses certnr "entry $(at certnr): link: a human certificate not signed by the root"
mk keysinst --tamper keys-other-instance --entries 20 --batch 8 &&
    refuses keysinst "header: keys: iss, sub \(this instance\) or iat is wrong"
mk clockback --tamper clock-back:4 --entries 60 --batch 8 &&
    refuses clockback "checkpoint 4: TPM clock went backwards \(clock [0-9]+ -> [0-9]+ ms\)"
mk resetback --tamper reset-back:2 --entries 60 --batch 8 &&
    refuses resetback "checkpoint 2: TPM clock went backwards \(reset 3 -> 1\)"
mk badroot --tamper bad-root:2 --entries 60 --batch 8 &&
    refuses badroot "checkpoint 2: root does not match the Merkle root of entries 9\.\.16"
mk badchain --tamper bad-chain --entries 60 --batch 8 &&
    refuses badchain "entry $(at badchain): mint's chain does not verify: link 3 widens scope"
mk badcap --tamper bad-capability --entries 60 --batch 8 &&
    refuses badcap "entry $(at badcap): intent's capability does not verify with the header's capability key"
mk badcap2 --tamper bad-capability-then-mismatch --entries 300 --batch 8 &&
    refuses badcap2 "entry $(at badcap2): intent's capability does not verify with the header's capability key"
# One thread (no pool): the capability signatures are checked in line,
# and the first failure is still the one reported.
expect_fail "badcap2 refused at the same entry with --threads 1" \
    "entry $(at badcap2): intent's capability does not verify with the header's capability key" \
    "$TH" audit verify "$T/badcap2.jsonl" --root "$T/badcap2.keys/root.pem" --threads 1
mk readbad --tamper read-bad-capability --entries 60 --batch 8 &&
    refuses readbad "entry $(at readbad): read's capability does not verify with the header's capability key"
mk readmis --tamper read-mismatch --entries 60 --batch 8 &&
    refuses readmis "entry $(at readmis): read's op is not its capability's"
mk capmis --tamper cap-mismatch --entries 60 --batch 8 &&
    refuses capmis "entry $(at capmis): intent's op is not its capability's"
mk nolink --tamper missing-link --entries 60 --batch 8 &&
    refuses nolink "entry $(at nolink): mint's chain link 3 is not in the log"
mk paltered --tamper policy-altered --policy-by-hash --entries 60 --batch 8 &&
    refuses paltered "entry $(at paltered): link's policy is not the one its delegation names \(policy_hash\)"
mk pabsent --tamper policy-absent --policy-by-hash --entries 60 --batch 8 &&
    refuses pabsent "entry $(at pabsent): link's delegation names its policy by hash, and the entry does not carry it"
mk pcert --tamper policy-on-cert --entries 60 --batch 8 &&
    refuses pcert "entry $(at pcert): link carries a policy, and its token is a certificate"
mk expired --tamper expired-chain --entries 60 --batch 8 &&
    refuses expired "entry $(at expired): (mint|intent)'s chain is not valid at the entry's time [0-9]+: link 2 \(agent:coder-1\) expired"
mk orphan --tamper orphan-outcome --entries 60 --batch 8 &&
    refuses orphan "entry $(at orphan): outcome refers to entry [0-9]+, which is not an earlier intent"
mk actak --tamper activation-other-ak --ek --entries 20 --batch 8 &&
    refuses actak "header: activation is for another attestation key"
mk actek --tamper activation-other-ek --ek --entries 20 --batch 8 &&
    refuses actek "header: activation is for another EK certificate"
mk actroot --tamper activation-not-root --ek --entries 20 --batch 8 &&
    refuses actroot "header: activation is not signed by the root"
# An EK certificate names the machine only with the activation binding the
# AK to it; a token-signature log has no TPM to name.
mk noact --tamper no-activation --ek --entries 20 --batch 8 &&
    refuses noact "header: ek_cert without an activation"
mk tokek --ek --checkpoint-kind token-signature --entries 20 --batch 8 &&
    refuses tokek "header: a token-signature log has no TPM, but ek_cert, activation or pcr_selection is set"

# ---- the finished log altered, signatures as they were
mk edit --tamper edit-field:17 --entries 60 --batch 8 &&
    refuses edit "entry 18: prev does not match the hash of entry 17"
mk delete --tamper delete:17 --entries 60 --batch 8 &&
    refuses delete "entry 17: out of sequence: found seq 18"
mk insert --tamper insert:17 --entries 60 --batch 8 &&
    refuses insert "entry 18: out of sequence: found seq 17"
mk reorder --tamper reorder:17 --entries 60 --batch 8 &&
    refuses reorder "entry 17: out of sequence: found seq 18"
mk splice --tamper splice --entries 60 --batch 8 &&
    refuses splice "entry $(at splice): prev does not match the hash of entry $(($(at splice) - 1))"
mk header --tamper edit-header --entries 60 --batch 8 &&
    refuses header "entry 1: prev is not the header hash"
# ... and re-hashed as a forger without keys can: the checkpoints catch it.
for m in edit-field delete insert reorder; do
	mk "re-$m" --tamper "$m:17" --rechain --entries 60 --batch 8 &&
	    refuses "re-$m" "checkpoint 3: root does not match the Merkle root of entries 17\.\.24"
done
mk re-splice --tamper splice --rechain --entries 60 --batch 8 &&
    refuses re-splice "checkpoint 4: root does not match the Merkle root of entries 25\.\.32"
# An uncommitted entry is not protected (docs/audit-format.md): a
# re-hashed edit of one verifies, and the summary says how many there are.
mk uncommitted --entries 60 --batch 8 &&
    useq=$($PY -c 'import json, sys
for l in open(sys.argv[1]):
    o = json.loads(l)
    if o["type"] == "entry" and o["entry"]["seq"] > 56 and o["entry"]["kind"] != "intent" and "op" not in o["entry"]:
        print(o["entry"]["seq"]); break' "$T/uncommitted.jsonl") &&
    mk uncommitted --entries 60 --batch 8 --tamper "edit-field:$useq" --rechain &&
    [ "$(at uncommitted)" = "$useq" ] &&
    expect_ok "a re-hashed edit of uncommitted entry $useq verifies (uncommitted)" \
    "$TH" audit verify "$T/uncommitted.jsonl" --root "$T/uncommitted.keys/root.pem" &&
    grep -q '4 uncommitted' "$T/out" && ok "and is reported among 4 uncommitted" ||
    fail "uncommitted edit"

# ---- truncation
mk full --entries 60 --batch 8 &&
    FULL=$(jget "$T/full.info" last_checkpoint.n):$(jget "$T/full.info" last_checkpoint.qual)
cp "$T/full.jsonl" "$T/trunc.jsonl"
$PY - "$T/full.jsonl" "$T/trunc.jsonl" 41 <<'EOF'
import json, sys
cut = int(sys.argv[3])
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        o = json.loads(line)
        if o["type"] == "entry" and o["entry"]["seq"] >= cut:
            continue
        if o["type"] == "checkpoint" and o["checkpoint"]["last"] >= cut:
            continue
        out.write(line)
EOF
mkdir -p "$T/trunc.keys" && cp "$T/full.keys/root.pem" "$T/trunc.keys/"
expect_ok "a truncated log verifies by itself" \
    "$TH" audit verify "$T/trunc.jsonl" --root "$T/trunc.keys/root.pem"
refuses trunc "checkpoint 7: expected \(--expect-checkpoint\), but the log has 5 checkpoints: it was truncated" \
    --expect-checkpoint "$FULL"
mk wtrunc --tamper truncate:41 --entries 60 --batch 8 &&
    expect_ok "the writer's truncate:41 verifies by itself" \
    "$TH" audit verify "$T/wtrunc.jsonl" --root "$T/wtrunc.keys/root.pem"

# ---- the live database: the same objects in SQLite
todb() { # JSONL DB
	$PY - "$1" "$2" "$ROOT/tests/tools" <<'EOF'
import json, sqlite3, sys
sys.path.insert(0, sys.argv[3])
from make_audit_log import canon
db = sqlite3.connect(sys.argv[2])
db.executescript("CREATE TABLE header(body TEXT);"
                 "CREATE TABLE entries(seq INTEGER PRIMARY KEY, body TEXT);"
                 "CREATE TABLE checkpoints(n INTEGER PRIMARY KEY, body TEXT);")
for line in open(sys.argv[1]):
    o = json.loads(line)
    body = canon(o[o["type"]])
    if o["type"] == "header":
        db.execute("INSERT INTO header(body) VALUES(?)", (body,))
    elif o["type"] == "entry":
        db.execute("INSERT INTO entries(seq, body) VALUES(?, ?)", (o["entry"]["seq"], body))
    else:
        db.execute("INSERT INTO checkpoints(n, body) VALUES(?, ?)", (o["checkpoint"]["n"], body))
db.commit()
EOF
}
todb "$T/ok.jsonl" "$T/ok.db" || fail "convert the export to SQLite"
expect_ok "the live-database reader verifies the same log" \
    "$TH" audit verify --db "$T/ok.db" --root "$K/root.pem" --json \
    --expect-checkpoint "$LAST" --ek-ca "$K/ek-ca.pem" --pcrs "$(cat "$K/pcrs.txt")"
$PY -c 'import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
a["ek_cert_checked"] = b["ek_cert_checked"] = None
sys.exit(a != b)' "$T/out" "$T/ok.sum" &&
    ok "the database and the export give the same summary" || fail "db summary"
cp "$T/ok.db" "$T/bad.db"
$PY - "$T/bad.db" <<'EOF'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
body = json.loads(db.execute("SELECT body FROM entries WHERE seq = 20").fetchone()[0])
body["time"] += 1
db.execute("UPDATE entries SET body = ? WHERE seq = 20",
           (json.dumps(body, separators=(",", ":"), sort_keys=True),))
db.commit()
EOF
expect_fail "a database with an edited row" "entry 21: prev does not match the hash of entry 20" \
    "$TH" audit verify --db "$T/bad.db" --root "$K/root.pem"
cp "$T/ok.db" "$T/gap.db"
$PY -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute("DELETE FROM entries WHERE seq = 30"); db.commit()' "$T/gap.db"
expect_fail "a database with a deleted row" "entry 30: out of sequence: found seq 31" \
    "$TH" audit verify --db "$T/gap.db" --root "$K/root.pem"
cp "$T/ok.db" "$T/cgap.db"
$PY -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1]); db.execute("DELETE FROM checkpoints WHERE n = 2"); db.commit()' "$T/cgap.db"
expect_fail "a database with a deleted checkpoint" "checkpoint 2 is missing \(checkpoint 3 follows checkpoint 1\)" \
    "$TH" audit verify --db "$T/cgap.db" --root "$K/root.pem"
cp "$T/ok.db" "$T/rowseq.db"
$PY -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
b = db.execute("SELECT body FROM entries WHERE seq = 5").fetchone()[0]
db.execute("UPDATE entries SET body = ? WHERE seq = 6", (b,)); db.commit()' "$T/rowseq.db"
expect_fail "a database row holding another entry" "entries row 6: the body's number is not the row's" \
    "$TH" audit verify --db "$T/rowseq.db" --root "$K/root.pem"
expect_fail "no such database" "cannot open" \
    "$TH" audit verify --db "$T/nonexistent.db" --root "$K/root.pem"

# ---- malformed input fails closed, with its position
head -3 "$T/ok.jsonl" >"$T/long.jsonl"
$PY -c 'print("{\"type\":\"entry\",\"entry\":{\"x\":\"" + "a" * ((1 << 20) + 64) + "\"}}")' >>"$T/long.jsonl"
mkdir -p "$T/long.keys" && cp "$K/root.pem" "$T/long.keys/"
refuses long "line 4: longer than 1048640 bytes"
{ head -5 "$T/ok.jsonl"; echo '{"type":"entry","entry":{"v":1,'; } >"$T/garbage.jsonl"
mkdir -p "$T/garbage.keys" && cp "$K/root.pem" "$T/garbage.keys/"
refuses garbage "line 6: invalid JSON"
{ head -5 "$T/ok.jsonl"; echo '{"type":"entry","entry":{},"type2":1}'; } >"$T/extra.jsonl"
mkdir -p "$T/extra.keys" && cp "$K/root.pem" "$T/extra.keys/"
refuses extra "line 6: not \{\"type\":T,T:\{...\}\}"
{ head -5 "$T/ok.jsonl"; echo; sed -n 6p "$T/ok.jsonl"; } >"$T/blank.jsonl"
mkdir -p "$T/blank.keys" && cp "$K/root.pem" "$T/blank.keys/"
refuses blank "line 6: empty line"
sed 1d "$T/ok.jsonl" >"$T/nohdr.jsonl"
mkdir -p "$T/nohdr.keys" && cp "$K/root.pem" "$T/nohdr.keys/"
refuses nohdr "line 1: the first line is not the header"
: >"$T/nothing.jsonl"
mkdir -p "$T/nothing.keys" && cp "$K/root.pem" "$T/nothing.keys/"
refuses nothing "the log has no header"
sed '3s/"kind":"link"/"kind":"linq"/' "$T/ok.jsonl" >"$T/kind.jsonl"
mkdir -p "$T/kind.keys" && cp "$K/root.pem" "$T/kind.keys/"
refuses kind "entry 2: unknown kind \"linq\""
# Lines that would cost far more memory parsed than read: a line of empty
# objects (json-c spends ~850 bytes on each), and a checkpoint held ahead
# of its entries that is no checkpoint's size (1024 such are held).
for c in dense bigcp manycp; do mkdir -p "$T/$c.keys" && cp "$K/root.pem" "$T/$c.keys/"; done
$PY - "$T/ok.jsonl" "$T/dense.jsonl" "$T/bigcp.jsonl" "$T/manycp.jsonl" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines(True)
def put(path, extra):
    open(path, "w").write(lines[0] + extra + "\n" + "".join(lines[1:]))
put(sys.argv[2], '{"type":"checkpoint","checkpoint":{"last":99999999,"x":[' + ",".join(["{}"] * 20000) + ']}}')
put(sys.argv[3], '{"type":"checkpoint","checkpoint":{"last":99999999,"x":"' + "A" * 40000 + '"}}')
put(sys.argv[4], '{"type":"checkpoint","checkpoint":{"last":99999999,"x":[' + ",".join(['{"a":"bcdefghijkl"}'] * 100) + ']}}')
PY
refuses dense "line 2: .*JSON has 20003 objects and arrays in [0-9]+ bytes \(at most [0-9]+\)"
refuses bigcp "checkpoint 1 \(read ahead of the entries it covers\) has more than 64 objects and arrays or 32768 bytes: not a checkpoint"
refuses manycp "checkpoint 1 \(read ahead of the entries it covers\) has more than 64 objects and arrays or 32768 bytes: not a checkpoint"

# ---- usage
"$TH" audit verify "$T/ok.jsonl" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "no --root: usage, exit 2" || fail "no --root exits $rc"
"$TH" audit verify "$T/ok.jsonl" --db "$T/ok.db" --root "$K/root.pem" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "FILE and --db: usage, exit 2" || fail "FILE and --db exits $rc"
"$TH" audit frobnicate >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] && ok "unknown audit subcommand: exit 2" || fail "audit frobnicate exits $rc"
expect_fail "a bad --expect-checkpoint" "bad expected checkpoint" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --expect-checkpoint 3
expect_fail "a bad --pcrs" "bad PCR values" \
    "$TH" audit verify "$T/ok.jsonl" --root "$K/root.pem" --pcrs sha256:7=zz

done_testing
