# The deployment docs/keys.md recommends: thresholdd runs as its own uid
# (65534 here), which the signer confines to the keys it needs
# (capability github-app attestation attenuation audit). The broker still
# merges, writes a countersigned log whose AK statement the signer made
# (AKCERT), and never touches the delegation root.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
BROKER_UID=65534

"$FIX/provision" "$T" 2>"$T/provision.log" || { cat "$T/provision.log"; fail "provision"; done_testing; exit 1; }
export SOFTHSM2_CONF="$T/hsm/softhsm2.conf"
echo "allow-uid $BROKER_UID capability github-app attestation attenuation audit" >>"$T/signer.conf"
"$FIX/signer-start" "$T" || { fail "signer starts"; done_testing; exit 1; }
chmod 0711 "$T"
chgrp nogroup "$T/signer.sock" && chmod 0660 "$T/signer.sock"
echo '{"min_approvals":1}' >"$T/policy.json"
expect_ok "the operator (unconfined) certifies alice; she delegates github.merge to coder-1" \
	sh -c "BUILD=$BUILD $FIX/alice $T $T/policy.json"
start_emulator "$(cat "$T/app-id")" "$T/github-app.pub.pem"
acme_backend
admin POST pulls '{"repo":"acme/backend","number":1,"head":{"sha":"1111111111111111111111111111111111111111","ref":"t"},"base":{"ref":"main"},"user":{"login":"bob"},"mergeable":true,"files":["src/a.c"],"reviews":[{"user":"carol","state":"APPROVED"}]}' >/dev/null

mkdir -p "$T/run"
chown -R "$BROKER_UID" "$T/state" "$T/run"
broker_conf "$T/run/broker.sock" "socket-mode 0666"
setpriv --reuid=$BROKER_UID --regid=65534 --clear-groups --inh-caps=-all \
	"$BIN/thresholdd" -f "$T/broker.conf" >>"$T/broker.log" 2>&1 &
echo $! >"$T/broker.pid"
i=0
while [ ! -S "$T/run/broker.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -S "$T/run/broker.sock" ] && ok "thresholdd starts as uid $BROKER_UID" ||
	{ fail "confined thresholdd starts"; cat "$T/broker.log"; done_testing; exit 1; }

expect_ok "the confined broker merges acme/backend#1" \
	$BIN/threshold --broker "$T/run/broker.sock" github merge --repo acme/backend --pr 1 --target main
grep -q "uid $BROKER_UID pid [0-9]*: SIGN capability: ok" "$T/signer.log" &&
grep -q "uid $BROKER_UID pid [0-9]*: SIGN github-app: ok" "$T/signer.log" &&
grep -q "uid $BROKER_UID pid [0-9]*: AKCERT : ok" "$T/signer.log" &&
grep -q "uid $BROKER_UID pid [0-9]*: KEYSCERT : ok" "$T/signer.log" &&
	ok "it signed capabilities and App JWTs, and had the signer make the AK and keys statements" ||
	{ fail "confined broker's signer requests"; grep "uid $BROKER_UID" "$T/signer.log" | head -20 | sed 's/^/#   /'; }
grep -q "uid $BROKER_UID pid [0-9]*: SIGN delegation-root" "$T/signer.log" &&
	fail "the confined broker used the root" || ok "it never used the delegation root"
$PY "$ROOT/tests/tools/jws.py" input '{"alg":"ES256","typ":"threshold-human-cert+jwt"}' '{"sub":"human:mallory"}' >"$T/input-root"
expect_fail "nor can its uid, asked directly" "uid $BROKER_UID may not use the delegation-root key" \
	setpriv --reuid=$BROKER_UID --regid=65534 --clear-groups \
	$BIN/threshold --signer "$T/signer.sock" signer sign delegation-root "$T/input-root"

stop_broker
$BIN/threshold --signer "$T/signer.sock" signer pubkey delegation-root >"$T/root.pem"
expect_ok "its audit log verifies offline, EK certificate and AK activation included" \
	$BIN/threshold audit verify --db "$T/state/audit.db" --root "$T/root.pem" --ek-ca "$T/tpm/ek-ca.pem"
grep -q "AK bound to EK   yes" "$T/out" && ok "the AK is bound to the EK by the signer's statement" ||
	fail "AK activation in the confined broker's log"
done_testing
