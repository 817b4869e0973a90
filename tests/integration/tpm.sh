# TPM backend (tpm/tpm.c) against swtpm: the cmocka suite test_tpm, its
# quotes checked by tpm2_checkquote, its EK certificate by openssl against
# the fixture's CA, and recovery from a swtpm crash and restart.
. "$(dirname "$0")/../lib.sh"

H_REC2=0x81000105	# replaced behind the signer's back in the recovery run

tcti=$("$FIX/swtpm-start" "$T" 2>"$T/swtpm-start.err") ||
	{ fail "swtpm starts"; cat "$T/swtpm-start.err"; done_testing; exit 1; }
ok "swtpm starts ($tcti)"

if "$TBIN/test_tpm" "$tcti" "$T" >"$T/cmocka.out" 2>"$T/cmocka.err"; then
	ok "test_tpm: $(grep -c '^\[       OK \]' "$T/cmocka.out") cmocka tests"
else
	fail "test_tpm"
	sed 's/^/#   /' "$T/cmocka.out" "$T/cmocka.err"
fi

# Quotes: tpm2-tools verifies what tpm_quote wrote.
q=$(cat "$T/qual.hex" 2>/dev/null)
expect_ok "tpm2_checkquote accepts the sha256-bank quote" \
	tpm2_checkquote -u "$T/ak.pem" -m "$T/attest.bin" -s "$T/sig.bin" \
	-f "$T/pcrs.bin" -g sha256 -q "$q"
expect_ok "tpm2_checkquote accepts the sha1-bank quote" \
	tpm2_checkquote -u "$T/ak.pem" -m "$T/attest-sha1.bin" \
	-s "$T/sig-sha1.bin" -f "$T/pcrs-sha1.bin" -g sha256 -q "$q"
expect_fail "tpm2_checkquote rejects other qualifying data" "nonce" \
	tpm2_checkquote -u "$T/ak.pem" -m "$T/attest.bin" -s "$T/sig.bin" \
	-f "$T/pcrs.bin" -g sha256 -q "00$q"
# Flip a byte of the last PCR value (PCR 23, last TPML_DIGEST).
cp "$T/pcrs.bin" "$T/pcrs-bad.bin"
flip "$T/pcrs-bad.bin" $((132 + 4 + 2 * 532 + 4 + 66 + 2))
expect_fail "tpm2_checkquote rejects altered PCR values" "PCR" \
	tpm2_checkquote -u "$T/ak.pem" -m "$T/attest.bin" -s "$T/sig.bin" \
	-f "$T/pcrs-bad.bin" -g sha256 -q "$q"

# EK certificate: chains to the fixture's local CA.
if [ -f "$T/tpm/ek-ca.pem" ]; then
	expect_ok "EK certificate converts to PEM" \
		openssl x509 -inform der -in "$T/ek.der" -out "$T/ek.pem"
	expect_ok "EK certificate chains to the swtpm local CA" \
		openssl verify -CAfile "$T/tpm/ek-ca.pem" "$T/ek.pem"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$T/other-ca.key" -out "$T/other-ca.pem" -subj /CN=other \
		-days 1 2>/dev/null
	expect_fail "EK certificate does not chain to another CA" "error" \
		openssl verify -CAfile "$T/other-ca.pem" "$T/ek.pem"
else
	fail "fixture produced no EK CA (see $T/swtpm_setup.log)"
fi

# Recovery: test_tpm signs, swtpm is killed (SIGKILL, as in a crash) and
# restarted on the same state; the same process must then sign again
# without being restarted.  Marker files in $T hand the turn back and forth.
wait_file() { # file pid
	i=0
	while [ ! -f "$1" ]; do
		kill -0 "$2" 2>/dev/null || return 1
		i=$((i + 1)); [ "$i" -gt 200 ] && return 1
		sleep 0.1
	done
}
rm -f "$T"/rec.*
"$TBIN/test_tpm" "$tcti" "$T" recovery >"$T/rec.out" 2>"$T/rec.err" &
rpid=$!
if wait_file "$T/rec.ready" "$rpid"; then
	ok "recovery: signing before the crash"
	"$FIX/swtpm-stop" "$T" KILL && ok "swtpm killed" || fail "swtpm killed"
	touch "$T/rec.killed"
	wait_file "$T/rec.down" "$rpid" && ok "recovery: TPM reported unavailable" ||
		fail "recovery: TPM reported unavailable"
	"$FIX/swtpm-start" "$T" >/dev/null 2>"$T/swtpm-restart.err" &&
		ok "swtpm restarted on the same state" || fail "swtpm restarted"
	# While the signer is disconnected, put a different key at a handle
	# it has loaded: after reconnecting it must refuse that handle.
	TPM2TOOLS_TCTI=$tcti
	export TPM2TOOLS_TCTI
	expect_ok "replace the key at $H_REC2" sh -c "
		tpm2_evictcontrol -C o -c $H_REC2 &&
		tpm2_createprimary -C o -G ecc -c '$T/other.ctx' &&
		tpm2_evictcontrol -C o -c '$T/other.ctx' $H_REC2 &&
		tpm2_flushcontext -t"
	touch "$T/rec.restarted"
else
	fail "recovery: signing before the crash"
fi
if wait "$rpid"; then
	ok "recovery: signs again after the restart, refuses the replaced key"
else
	fail "recovery run"
	sed 's/^/#   /' "$T/rec.out" "$T/rec.err"
fi

"$FIX/swtpm-stop" "$T" && ok "swtpm stops" || fail "swtpm stops"
done_testing
