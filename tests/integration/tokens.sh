# Delegation chains and capabilities end to end: a human certified by the
# root key in swtpm, her delegation signed on her own SoftHSM token through
# threshold-pkcs11-helper, capabilities signed by the signer, every token
# checked again by an independent verifier (tests/tools/verify_tokens.py,
# PyJWT + python3-cryptography, written from docs/tokens.md).
. "$(dirname "$0")/../lib.sh"
TOOLS="$ROOT/tests/tools"
PY=/usr/bin/python3
M=/usr/lib/softhsm/libsofthsm2.so

"$FIX/provision" "$T" 2>"$T/provision.log" || { cat "$T/provision.log"; fail "provision"; done_testing; exit 1; }
export SOFTHSM2_CONF="$T/hsm/softhsm2.conf"
"$FIX/signer-start" "$T" || { fail "signer starts"; done_testing; exit 1; }
mkdir -p "$T/state" "$T/state2" "$T/alice"
TH="$BIN/threshold --signer $T/signer.sock --state $T/state"

# Alice's own token: a second SoftHSM, as her YubiKey would be.
TOKEN_LABEL=alice "$FIX/softhsm-start" "$T/alice" >/dev/null
ALICE_CONF="$T/alice/hsm/softhsm2.conf"
AKEY="pkcs11:token=alice;object=alice-key;type=private"
as_alice() { SOFTHSM2_CONF="$ALICE_CONF" "$@"; }
expect_ok "alice's key is generated on her token" \
	as_alice "$BIN/threshold-pkcs11-helper" --module $M --pin-file "$T/alice/hsm/user.pin" \
	keygen "$AKEY" ES256
cp "$T/out" "$T/alice.pem"

$TH signer pubkey delegation-root >"$T/root.pem"
$TH signer pubkey capability >"$T/cap.pem"
$TH signer pubkey attenuation >"$T/att.pem"
cat >"$T/policy.json" <<'JSON'
{"required_checks":["ci/test"],"min_approvals":1,"protected_paths":[".github/workflows/**"]}
JSON

expect_ok "root certifies alice (public key read from her token)" \
	as_alice $TH human add alice --name "Alice Example" --email alice@example.com \
	--pubkey "$AKEY" --pin-file "$T/alice/hsm/user.pin"
CERT=$(cat "$T/out")
expect_fail "a bad human name is refused" "not a valid human name" \
	$TH human add 'Alice!' --name A --email a@x --pubkey "$T/alice.pem"

expect_ok "alice delegates github.merge on acme/backend to coder-1 (signed on her token)" \
	as_alice $TH delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" \
	--to coder-1 --allow github.merge --repo acme/backend --target main \
	--policy "$T/policy.json" --ttl 8h
D1=$(cat "$T/out")
grep -q "installed: human:alice -> agent:coder-1" "$T/err" && ok "the answer names the chain" ||
	fail "the answer names the chain"
expect_fail "a delegation signed with the wrong key is refused" "bad signature at link 2" \
	sh -c "SOFTHSM2_CONF=$ALICE_CONF $BIN/threshold-pkcs11-helper --module $M \
	--pin-file $T/alice/hsm/user.pin keygen 'pkcs11:token=alice;object=other' ES256 >/dev/null &&
	SOFTHSM2_CONF=$ALICE_CONF $TH delegate --as alice --key 'pkcs11:token=alice;object=other;type=private' \
	--pin-file $T/alice/hsm/user.pin --to coder-2 --allow github.merge --repo acme/backend \
	--policy $T/policy.json"

# Independent verification of the chain.
$TH delegation export "$CERT" >"$T/cert.jws"
$TH delegation export "$D1" >"$T/d1.jws"
expect_ok "independent verifier accepts the chain" \
	$PY "$TOOLS/verify_tokens.py" chain --root "$T/root.pem" "$T/cert.jws" "$T/d1.jws"

# Re-delegation by the agent, narrowing: only the release target... the
# parent allows main only, so narrow by policy instead.
# (ci/test pinned to the App that runs it: stricter than any source.)
cat >"$T/stricter.json" <<'JSON'
{"required_checks":[{"context":"ci/test","app_id":15368},"ci/lint"],"min_approvals":2,"protected_paths":[".github/workflows/**","secrets/**"]}
JSON
expect_ok "coder-1 re-delegates to coder-1-sub, narrower" \
	$TH delegate --as agent:coder-1 --to coder-1-sub --allow github.merge \
	--repo acme/backend --target main --policy "$T/stricter.json" --ttl 1h
D2=$(cat "$T/out")
$TH delegation export "$D2" >"$T/d2.jws"
expect_ok "independent verifier accepts the 3-link chain" \
	$PY "$TOOLS/verify_tokens.py" chain --root "$T/root.pem" --attenuation "$T/att.pem" \
	"$T/cert.jws" "$T/d1.jws" "$T/d2.jws"

# Widening re-delegations are refused, naming the link.
expect_fail "re-delegation widening repos refused" "link 3 widens scope: .*repo acme/\\*" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo 'acme/*' \
	--target main --policy "$T/stricter.json" --ttl 1h
expect_fail "re-delegation widening targets refused" "link 3 widens scope: .*target" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo acme/backend \
	--target main --target release --policy "$T/stricter.json" --ttl 1h
expect_fail "re-delegation dropping the target restriction refused" "link 3 widens scope: .*drops the target" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo acme/backend \
	--policy "$T/stricter.json" --ttl 1h
expect_fail "re-delegation adding an operation refused" "link 3 widens scope: operation github.deploy" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --allow github.deploy \
	--repo acme/backend --target main --policy "$T/stricter.json" --ttl 1h
expect_fail "re-delegation outliving its parent refused" "link 3 widens scope: lifetime" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo acme/backend \
	--target main --policy "$T/stricter.json" --ttl 9h
echo '{"required_checks":["ci/test"],"protected_paths":[".github/workflows/**"]}' >"$T/weaker.json"
expect_fail "re-delegation dropping a policy condition refused" "link 3 widens scope: policy drops min_approvals" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo acme/backend \
	--target main --policy "$T/weaker.json" --ttl 1h
echo '{"required_checks":[],"min_approvals":1,"protected_paths":[".github/workflows/**"]}' >"$T/weaker.json"
expect_fail "re-delegation weakening required checks refused" "policy required_checks drops ci/test" \
	$TH delegate --as agent:coder-1 --to sub2 --allow github.merge --repo acme/backend \
	--target main --policy "$T/weaker.json" --ttl 1h
echo '{"required_checks":[{"context":"ci/test","app_id":1},"ci/lint"],"min_approvals":2,"protected_paths":[".github/workflows/**","secrets/**"]}' >"$T/weaker.json"
expect_fail "a re-delegation moving a pinned check to another App refused" \
	"link 4 widens scope: policy required_checks drops ci/test from App 15368" \
	$TH delegate --as agent:coder-1-sub --to sub3 --allow github.merge --repo acme/backend \
	--target main --policy "$T/weaker.json" --ttl 30m
# Signed directly by the attenuation key (bypassing the CLI's own checks):
# installing it is refused all the same.
now=$($PY "$TOOLS/jws.py" now)
$PY "$TOOLS/jws.py" input '{"alg":"ES256","typ":"threshold-delegation+jwt"}' \
	"{\"iss\":\"agent:coder-1\",\"sub\":\"agent:evil\",\"parent\":\"$D1\",\"jti\":\"AAAAAAAAAAAAAAAAAAAAAA\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600)),\"ops\":[{\"op\":\"github.merge\",\"repos\":[\"acme/*\"]}],\"policy\":{\"required_checks\":[\"ci/test\"],\"min_approvals\":1,\"protected_paths\":[\".github/workflows/**\"]}}" >"$T/evil.in"
$TH signer sign attenuation "$T/evil.in" >"$T/evil.jws"
expect_fail "a widening link signed by the right key is still refused" "link 3 widens scope" \
	$TH delegation install "$T/evil.jws"
expect_ok "independent verifier refuses it too" \
	sh -c "! $PY $TOOLS/verify_tokens.py chain --root $T/root.pem --attenuation $T/att.pem $T/cert.jws $T/d1.jws $T/evil.jws"
# A jti is 22 base64url characters (16 bytes), in its one encoding:
# "x", or a 22nd character with low bits set, are refused by both.
for jti in x AAAAAAAAAAAAAAAAAAAAAB; do
	$PY "$TOOLS/jws.py" input '{"alg":"ES256","typ":"threshold-delegation+jwt"}' \
		"{\"iss\":\"agent:coder-1\",\"sub\":\"agent:sub-j\",\"parent\":\"$D1\",\"jti\":\"$jti\",\"iat\":$now,\"nbf\":$now,\"exp\":$((now + 600)),\"ops\":[{\"op\":\"github.merge\",\"repos\":[\"acme/backend\"],\"targets\":[\"main\"]}],\"policy\":{\"required_checks\":[\"ci/test\"],\"min_approvals\":1,\"protected_paths\":[\".github/workflows/**\"]}}" >"$T/jti.in"
	$TH signer sign attenuation "$T/jti.in" >"$T/jti.jws"
	expect_fail "a delegation whose jti is $jti is refused" "bad iss, sub, parent, jti or lifetime" \
		$TH delegation install "$T/jti.jws"
	expect_ok "... by the independent verifier too" \
		sh -c "! $PY $TOOLS/verify_tokens.py chain --root $T/root.pem --attenuation $T/att.pem $T/cert.jws $T/d1.jws $T/jti.jws"
done

# Capabilities.
expect_ok "mint: a covered merge" \
	$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 123 --target main
cp "$T/out" "$T/cap1"
grep -q "chain: human:alice -> agent:coder-1" "$T/err" && ok "mint names the chain" || fail "mint names the chain"
AUD=$($PY -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute(\"select v from meta where k='instance'\").fetchone()[0])" "$T/state/threshold.db")
expect_ok "independent verifier accepts the capability" \
	$PY "$TOOLS/verify_tokens.py" capability --cap-key "$T/cap.pem" --aud "$AUD" \
	--root "$T/root.pem" "$T/cap1" "$T/cert.jws" "$T/d1.jws"
expect_fail "mint: another repository is not covered" "operation not covered" \
	$TH capability request --agent coder-1 github.merge --repo acme/frontend --pr 1 --target main
expect_fail "mint: another target is not covered" "operation not covered" \
	$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 1 --target release
expect_fail "mint: an agent without delegation is refused" "operation not covered" \
	$TH capability request --agent stranger github.merge --repo acme/backend --pr 1 --target main
expect_fail "mint: --pr 12x is refused, not read as 12" 'bad --pr "12x"' \
	$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 12x --target main
expect_fail "mint: an unknown operation is refused" "unknown operation" \
	$TH capability request --agent coder-1 github.nuke --repo acme/backend --pr 1 --target main
expect_ok "mint through the 3-link chain" \
	$TH capability request --agent coder-1-sub github.merge --repo acme/backend --pr 7 --target main
cp "$T/out" "$T/cap2"

# --json is JSON whatever a branch name holds ('"' is a valid one).
expect_ok "alice delegates merges into a branch named with a quote" \
	as_alice $TH delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" \
	--to coder-q --allow github.merge --repo acme/backend --target 'rel"ease' \
	--policy "$T/policy.json" --ttl 1h
expect_ok "mint for that branch" \
	$TH capability request --agent coder-q github.merge --repo acme/backend --pr 5 --target 'rel"ease'
cp "$T/out" "$T/capq"
expect_ok "redeem --json" $TH --json capability redeem "$T/capq"
$PY -c 'import json,sys; o = json.load(open(sys.argv[1])); assert o["target"] == "rel\"ease" and o["agent"] == "agent:coder-q" and o["pr"] == 5, o' "$T/out" &&
	ok "redeem --json is JSON, the quote in the branch escaped" || { fail "redeem --json"; sed 's/^/#   /' "$T/out"; }
expect_fail "redeem: a capability in argv (readable by any local user) is refused" \
	"not taken on the command line" $TH capability redeem "$(cat "$T/cap1")"
expect_ok "redeem" $TH capability redeem "$T/cap1"
grep -q "ok: github.merge acme/backend#123 -> main for agent:coder-1" "$T/out" &&
	ok "redeem reports the operation" || fail "redeem reports the operation"
expect_fail "redeem twice: replayed" "replayed" $TH capability redeem "$T/cap1"
expect_fail "another broker instance: wrong audience" "wrong audience" \
	$BIN/threshold --signer "$T/signer.sock" --state "$T/state2" capability redeem "$T/cap2"

# Parameters altered after signing: repo A's capability presented for B.
$PY - "$T/cap2" "$T/cap2.b" <<'PY'
import base64, json, sys
h, c, s = open(sys.argv[1]).read().strip().split(".")
claims = json.loads(base64.urlsafe_b64decode(c + "=" * (-len(c) % 4)))
claims["op"]["repo"] = "acme/frontend"
c2 = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
open(sys.argv[2], "w").write(".".join([h, c2, s]))
PY
expect_fail "capability for repo A altered to repo B: bad signature" "bad signature" \
	$TH capability redeem "$T/cap2.b"

# Concurrency across processes: 12 redeem the same capability at once.
$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 9 --target main >"$T/cap3" 2>/dev/null
i=0
while [ $i -lt 12 ]; do
	($TH capability redeem "$T/cap3" >/dev/null 2>&1; echo $? >"$T/race.$i") &
	i=$((i + 1))
done
wait
wins=$(cat "$T"/race.* | grep -c '^0$')
[ "$wins" -eq 1 ] && ok "12 concurrent redemptions: exactly one succeeds" ||
	fail "12 concurrent redemptions: $wins succeeded"

# Revocation takes effect at the next mint and redeem.
$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 10 --target main >"$T/cap4" 2>/dev/null
expect_ok "revoke coder-1's delegation" $TH delegation revoke "$D1"
expect_fail "redeem after revocation refused" "revoked: link 2" $TH capability redeem "$T/cap4"
expect_fail "mint after revocation refused" "operation not covered.*revoked" \
	$TH capability request --agent coder-1 github.merge --repo acme/backend --pr 11 --target main
expect_fail "the sub-agent's chain dies with it" "revoked: link 2|operation not covered" \
	$TH capability request --agent coder-1-sub github.merge --repo acme/backend --pr 12 --target main
expect_ok "revoking alice's certificate" $TH human revoke alice
expect_fail "alice can no longer delegate" "no valid certificate" \
	as_alice $TH delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" \
	--to coder-3 --allow github.merge --repo acme/backend --policy "$T/policy.json"

# Timing edges, concurrency in threads and tampering, against the same
# signer and store (explicit clocks, no sleeping).
mkdir -p "$T/state3"
expect_ok "capability edge cases (test_cap)" "$TBIN/test_cap" "$T/signer.sock" "$T/state3"
sed 's/^/#   /' "$T/out" | grep -E "FAILED|PASSED" || true

"$FIX/signer-stop" "$T"
done_testing
