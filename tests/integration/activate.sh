# Credential activation (TPM2_MakeCredential / TPM2_ActivateCredential):
# evidence that the attestation key lives in the same TPM as the EK.  The
# cmocka suite test_activate against swtpm, directly and through
# threshold-signer (AKPUBLIC, ACTIVATE), with tpm2-tools as the independent
# judge both ways: tpm2_activatecredential must recover what our
# makecred_make sealed, and our signer must recover what
# tpm2_makecredential sealed.
. "$(dirname "$0")/../lib.sh"

H_SIGNER_AK=0x81010010
H_TEST_AK=0x81010110	# tests/hw/test_activate.c H_AK
EK=0x81010001		# persisted by swtpm_setup

tcti=$("$FIX/swtpm-start" "$T" 2>"$T/swtpm-start.err") ||
	{ fail "swtpm starts"; cat "$T/swtpm-start.err"; done_testing; exit 1; }
ok "swtpm starts ($tcti)"
TPM2TOOLS_TCTI=$tcti
export TPM2TOOLS_TCTI

# swtpm_setup persisted the RSA EK where tpm.c looks first.
if tpm2_readpublic -c $EK >"$T/ekpub.txt" 2>&1 &&
    grep -q "^  value: rsa" "$T/ekpub.txt" &&
    grep -q "^authorization policy: 837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa" "$T/ekpub.txt"; then
	ok "RSA EK with the TCG policy persisted at $EK"
else
	fail "RSA EK at $EK"; sed 's/^/#   /' "$T/ekpub.txt"
fi

# The direct suite: tpm_ak_public, makecred_make, tpm_activate_credential.
if "$TBIN/test_activate" "$tcti" "$T" >"$T/cmocka.out" 2>"$T/cmocka.err"; then
	ok "test_activate: $(grep -c '^\[       OK \]' "$T/cmocka.out") cmocka tests"
else
	fail "test_activate"
	sed 's/^/#   /' "$T/cmocka.out" "$T/cmocka.err"
fi

# tpm2-tools judges our MakeCredential: tpm2_activatecredential on the file
# makecred_make wrote must give back our secret.
tools_activate() { # credfile outfile: with a PolicySecret(endorsement) session
	tpm2_startauthsession --policy-session -S "$T/session.ctx" &&
	tpm2_policysecret -S "$T/session.ctx" -c e >/dev/null &&
	tpm2_activatecredential -c $H_TEST_AK -C $EK -i "$1" -o "$2" \
	    -P "session:$T/session.ctx" >/dev/null
	rc=$?
	tpm2_flushcontext "$T/session.ctx" 2>/dev/null
	return $rc
}
expect_ok "tpm2_activatecredential opens makecred_make's credential" \
	tools_activate "$T/ours.cred" "$T/ours.out"
expect_ok "... and recovers the same secret" cmp "$T/ours.secret" "$T/ours.out"
# A credential for another name, made by us, refused by tpm2-tools' run too.
cp "$T/ours.cred" "$T/ours-bad.cred"
flip "$T/ours-bad.cred" 20
expect_fail "tpm2_activatecredential refuses a tampered credential" "ActivateCredential" \
	tools_activate "$T/ours-bad.cred" "$T/ours-bad.out"
tpm2_flushcontext -t >/dev/null 2>&1
tpm2_flushcontext -s >/dev/null 2>&1

# The signer: only an attestation key, created with keygen.
umask 077
cat >"$T/signer.conf" <<CONF
socket $T/signer.sock
allow-uid $(id -u)
tpm-tcti $tcti
key attestation tpm:$H_SIGNER_AK
CONF
expect_ok "threshold-signer keygen attestation" \
	"$BIN/threshold-signer" -f "$T/signer.conf" keygen attestation
BUILD=$BUILD "$FIX/signer-start" "$T" || { fail "signer starts"; done_testing; exit 1; }
ok "signer starts"

if "$TBIN/test_activate" - "$T" signer "$T/signer.sock" >"$T/sig.out" 2>"$T/sig.err"; then
	ok "test_activate through the signer (AKPUBLIC, ACTIVATE)"
else
	fail "test_activate through the signer"
	sed 's/^/#   /' "$T/sig.out" "$T/sig.err"
fi

# Our signer judged by tpm2-tools' MakeCredential, offline (-T none), from
# the EK certificate's key and the AK name computed from AKPUBLIC.
head -c 32 /dev/urandom >"$T/tools.secret"
expect_ok "tpm2_makecredential -T none for the signer's AK" \
	tpm2_makecredential -T none -u "$T/ek.pem" -G rsa -s "$T/tools.secret" \
	-n "$(cat "$T/ak.name.hex")" -o "$T/tools.cred"
expect_ok "the signer activates tpm2-tools' credential to the same secret" \
	"$TBIN/test_activate" - "$T" tools "$T/signer.sock" "$T/tools.cred" "$T/tools.secret"
other=000b$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
tpm2_makecredential -T none -u "$T/ek.pem" -G rsa -s "$T/tools.secret" \
	-n "$other" -o "$T/tools-other.cred" >/dev/null 2>&1
expect_ok "the signer refuses tpm2-tools' credential for another name" \
	"$TBIN/test_activate" - "$T" tools "$T/signer.sock" "$T/tools-other.cred" "$T/tools.secret" refused
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
	openssl pkey -pubout -out "$T/other-ek.pem"
tpm2_makecredential -T none -u "$T/other-ek.pem" -G rsa -s "$T/tools.secret" \
	-n "$(cat "$T/ak.name.hex")" -o "$T/tools-otherek.cred" >/dev/null 2>&1
expect_ok "the signer refuses tpm2-tools' credential for another EK" \
	"$TBIN/test_activate" - "$T" tools "$T/signer.sock" "$T/tools-otherek.cred" "$T/tools.secret" refused

# The AK the signer describes is the one it quotes with.
expect_ok "AKPUBLIC's key is the attestation key PUBKEY gives" sh -c \
	"'$BIN/threshold' --signer '$T/signer.sock' signer pubkey attestation >'$T/pubkey-ak.pem' &&
	 cmp '$T/pubkey-ak.pem' '$T/ak.pem'"

grep -q "ACTIVATE .*: ok" "$T/signer.log" && ok "ACTIVATE is logged" || fail "ACTIVATE is logged"
grep -q "ACTIVATE .*refused: the TPM refused the credential" "$T/signer.log" &&
	ok "refused ACTIVATE is logged with its reason" || fail "refused ACTIVATE logged"
grep -q "AKPUBLIC .*: ok" "$T/signer.log" && ok "AKPUBLIC is logged" || fail "AKPUBLIC is logged"
if grep -qi "$(od -An -tx1 "$T/tools.secret" | tr -d ' \n')" "$T/signer.log"; then
	fail "a credential in the signer log"
else
	ok "no credential in the signer log"
fi

"$FIX/signer-stop" "$T"
# AKPUBLIC's fields are what tpm2-tools reads from the TPM.
expect_ok "AKPUBLIC tpmt_public = tpm2_readpublic -f tpmt" sh -c \
	"tpm2_readpublic -c $H_SIGNER_AK -f tpmt -o '$T/ak-tools.tpmt' -n '$T/ak-tools.name' >/dev/null &&
	 cmp '$T/ak.tpmt' '$T/ak-tools.tpmt'"
expect_ok "AKPUBLIC name = tpm2_readpublic -n" cmp "$T/ak.name" "$T/ak-tools.name"
# The signer left no transient object or session behind.
none_left() { # capability: tpm2_getcap must answer, and list nothing
	out=$(tpm2_getcap "$1") && [ -z "$out" ]
}
expect_ok "no transient objects left" none_left handles-transient
expect_ok "no loaded sessions left" none_left handles-loaded-session
expect_ok "no saved sessions left" none_left handles-saved-session
expect_ok "tpm2_getcap does list what is there" sh -c \
	'tpm2_getcap handles-persistent | grep -q 0x81010010'

# A signer without an attestation key refuses both requests.
mkdir -p "$T/noak"
cat >"$T/noak/signer.conf" <<CONF
socket $T/noak/signer.sock
allow-uid $(id -u)
tpm-tcti $tcti
CONF
if BUILD=$BUILD "$FIX/signer-start" "$T/noak"; then
	expect_ok "no attestation key: AKPUBLIC and ACTIVATE refused (code 11)" \
		"$TBIN/test_activate" - "$T" noak "$T/noak/signer.sock"
	"$FIX/signer-stop" "$T/noak"
else
	fail "signer without attestation key starts"
fi

"$FIX/swtpm-stop" "$T" && ok "swtpm stops" || fail "swtpm stops"
done_testing
