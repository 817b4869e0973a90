#!/bin/sh
# PKCS#11 backend against a throwaway SoftHSM token: the cmocka suite
# (tests/hw/test_p11.c), then independent checks of what it left on the token
# with opensc's pkcs11-tool and the openssl CLI.
#
# pkcs11-tool gets the PIN as "env:TH_USER_PIN", never on argv.  It picks the
# key for --sign and --read-object by --id only (it ignores --label there), so
# keys are named by id, derived here the way p11.c documents it: the first 16
# bytes of SHA-256 over the DER SubjectPublicKeyInfo.
. "$(dirname "$0")/../lib.sh"

MOD=/usr/lib/softhsm/libsofthsm2.so
GENERATED="t-es256 t-rs256"
IMPORTED="t-imp-rsa t-imp-ec"

conf=$("$FIX/softhsm-start" "$T" 2>"$T/err")
if [ "$conf" = "$T/hsm/softhsm2.conf" ] && [ -s "$T/hsm/user.pin" ]; then
	ok "softhsm-start made a token"
else
	fail "softhsm-start"; sed 's/^/#   /' "$T/err"; done_testing; exit
fi
pin_before=$(cat "$T/hsm/user.pin")
expect_ok "softhsm-start again (idempotent)" "$FIX/softhsm-start" "$T"
if [ "$(cat "$T/hsm/user.pin")" = "$pin_before" ]; then ok "PIN kept"
else fail "PIN changed"; fi
mode=$(stat -c %a "$T/hsm/user.pin")
if [ "$mode" = 600 ]; then ok "PIN file mode 0600"
else fail "PIN file mode $mode"; fi

TH_HSM_DIR=$T	# read by softhsm-env
. "$FIX/softhsm-env"
TH_USER_PIN=$pin_before
export TH_USER_PIN

expect_ok "test_p11 (cmocka suite on SoftHSM)" "$TBIN/test_p11" "$MOD" "$T"

p11()  { pkcs11-tool --module "$MOD" --token-label threshold "$@"; }
p11l() { p11 --login --pin env:TH_USER_PIN "$@"; }
keyid() {
	openssl pkey -pubin -in "$T/$1.pub.pem" -outform DER |
	    openssl dgst -sha256 -binary | od -An -tx1 -N16 | tr -d ' \n'
}
# One line per private key on the token: label, ID (hex), Access.  (The
# listing ignores --id and --label, so it is filtered here.)
p11l --list-objects --type privkey 2>/dev/null | awk '
	/^Private Key Object/ { if (n) print lab "\t" id "\t" acc
		n = 1; lab = ""; id = ""; acc = "" }
	/^ *label:/  { sub(/^ *label: */, "");  lab = $0 }
	/^ *ID:/     { sub(/^ *ID: */, "");     id = $0 }
	/^ *Access:/ { sub(/^ *Access: */, ""); acc = $0 }
	END { if (n) print lab "\t" id "\t" acc }' >"$T/privkeys.tsv"
# field LABEL N: field N of the one row for LABEL; empty unless exactly one.
field() {
	awk -F '\t' -v l="$1" -v f="$2" '$1 == l { n++; v = $f }
	    END { if (n == 1) print v }' "$T/privkeys.tsv"
}
# "sensitive" present and no bare "extractable" ("never extractable" is
# fine).
unexportable() {
	case ", $1," in *", sensitive,"*) ;; *) return 1 ;; esac
	case ", $1," in *", extractable,"*) return 1 ;; esac
	return 0
}

for l in $GENERATED $IMPORTED; do
	if [ ! -s "$T/$l.pub.pem" ]; then
		fail "$l: test_p11 left no public key"; continue
	fi
	id=$(keyid "$l")

	expect_ok "$l: openssl verifies the signature p11_sign made" \
	    openssl dgst -sha256 -verify "$T/$l.pub.pem" \
	    -signature "$T/$l.sig" "$T/$l.msg"
	printf 'x' >>"$T/$l.msg"
	if openssl dgst -sha256 -verify "$T/$l.pub.pem" -signature "$T/$l.sig" \
	    "$T/$l.msg" >/dev/null 2>&1; then
		fail "$l: a changed message verifies"
	else
		ok "$l: a changed message does not verify"
	fi

	tid=$(field "$l" 2)
	if [ "$tid" = "$id" ]; then
		ok "$l: one private key, under the derived id $id"
	else
		fail "$l: private key id \"$tid\", derived $id"
	fi

	acc=$(field "$l" 3)
	if [ -n "$acc" ] && unexportable "$acc"; then
		ok "$l: pkcs11-tool lists it sensitive, not extractable ($acc)"
	else
		fail "$l: access is \"$acc\""
	fi
	case " $GENERATED " in *" $l "*)
		case "$acc" in
		*"always sensitive"*"never extractable"*local*)
			ok "$l: generated on the token (always sensitive, never extractable, local)" ;;
		*)	fail "$l: generated key lacks always sensitive/never extractable/local: $acc" ;;
		esac ;;
	*)
		case "$acc" in
		*local*) fail "$l: an imported key claims to be local" ;;
		*)	ok "$l: imported key is not marked local" ;;
		esac ;;
	esac

	# pkcs11-tool answers this with "reading private keys not (yet)
	# supported" and exit 0 whatever the key's attributes: a tool limit,
	# not the token's refusal.  So only the absence of output is checked;
	# the token's own refusal (CKR_ATTRIBUTE_SENSITIVE,
	# CKR_KEY_UNEXTRACTABLE) is asserted in test_p11.
	rm -f "$T/stolen.der"
	p11l --read-object --type privkey --id "$id" -o "$T/stolen.der" \
	    >/dev/null 2>&1
	if [ -s "$T/stolen.der" ]; then fail "$l: private key read out"
	else ok "$l: --read-object --type privkey wrote nothing (tool limit)"
	fi

	if p11 --read-object --type pubkey --id "$id" -o "$T/$l.pub.der" \
	    >/dev/null 2>&1 &&
	    openssl pkey -pubin -inform DER -in "$T/$l.pub.der" |
	    cmp -s - "$T/$l.pub.pem"; then
		ok "$l: token's public key object equals p11_key_pubkey's"
	else
		fail "$l: public key object differs from p11_key_pubkey's"
	fi

	printf 'signed by pkcs11-tool for %s\n' "$l" >"$T/$l.tool.msg"
	case "$l" in
	t-rs256|t-imp-rsa)
		p11l --sign -m SHA256-RSA-PKCS --id "$id" -i "$T/$l.tool.msg" \
		    -o "$T/$l.tool.sig" >"$T/out" 2>&1 ;;
	*)
		openssl dgst -sha256 -binary "$T/$l.tool.msg" >"$T/$l.tool.dgst"
		p11l --sign -m ECDSA --signature-format openssl --id "$id" \
		    -i "$T/$l.tool.dgst" -o "$T/$l.tool.sig" >"$T/out" 2>&1 ;;
	esac
	expect_ok "$l: pkcs11-tool's signature verifies with p11_key_pubkey's key" \
	    openssl dgst -sha256 -verify "$T/$l.pub.pem" \
	    -signature "$T/$l.tool.sig" "$T/$l.tool.msg"
done

# Controls: test_p11 also stored two deliberately exportable keys; the
# attribute check above must catch both, or it proves nothing.
for l in t-control-plain t-control-wrappable; do
	acc=$(field "$l" 3)
	if [ -n "$acc" ] && ! unexportable "$acc"; then
		ok "control $l is seen as exportable ($acc)"
	else
		fail "control $l passed as unexportable (\"$acc\")"
	fi
done

done_testing
