#!/bin/sh
# threshold-pkcs11-helper against a throwaway SoftHSM token: keygen, pubkey
# and sign for ES256 and RS256, the compact JWS checked by PyJWT
# (tests/tools/jws.py, no Threshold code); the refusals (not a signing
# input, alg mismatch, oversized input, wrong PIN, pin-value in the URI);
# then tests/hw/test_p11client.c, which goes through lib/p11client.c.
. "$(dirname "$0")/../lib.sh"

MOD=/usr/lib/softhsm/libsofthsm2.so
H="$BIN/threshold-pkcs11-helper"
PY=/usr/bin/python3	# Debian's, with python3-jwt (scripts/deps)
JWS="$PY $ROOT/tests/tools/jws.py"

conf=$("$FIX/softhsm-start" "$T" 2>"$T/err")
if [ "$conf" = "$T/hsm/softhsm2.conf" ] && [ -s "$T/hsm/user.pin" ]; then
	ok "softhsm-start made a token"
else
	fail "softhsm-start"; sed 's/^/#   /' "$T/err"; done_testing; exit
fi
for b in "$H" "$TBIN/test_p11client"; do
	[ -x "$b" ] || { fail "$b not built"; done_testing; exit; }
done
SOFTHSM2_CONF=$conf
export SOFTHSM2_CONF
PIN="$T/hsm/user.pin"

h() { "$H" --module "$MOD" --pin-file "$PIN" "$@"; }
# sign_in FILE ARGS...: the helper's sign with FILE on stdin.
sign_in() { f=$1; shift; "$H" --module "$MOD" "$@" <"$f"; }
b64url() { basenc --base64url -w0 | tr -d '='; }
# refused "desc" "regex" cmd...: fails with exit 1 and nothing on stdout;
# its stderr ends with its one line "threshold-pkcs11-helper: ...", which
# matches regex.  (A library may print lines of its own before it: libp11
# prints dlopen's error.)
refused() {
	d=$1; re=$2; shift 2
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
	if [ "$rc" -ne 1 ]; then
		fail "$d (exit $rc)"; sed 's/^/#   /' "$T/err"
	elif [ -s "$T/out" ]; then
		fail "$d (wrote to stdout)"
	elif [ "$(grep -c '^threshold-pkcs11-helper: ' "$T/err")" -ne 1 ] ||
	    ! tail -n 1 "$T/err" |
	    grep -Eq -- "^threshold-pkcs11-helper: .*$re"; then
		fail "$d (stderr not one matching line)"; sed 's/^/#   /' "$T/err"
	else
		ok "$d"
	fi
}

CLAIMS='{"sub":"alice","scope":"repo:example/threshold:pull","exp":2000000000}'
for alg in ES256 RS256; do
	l=human-$(echo "$alg" | tr 'A-Z' 'a-z')
	uri="pkcs11:token=threshold;object=$l"

	expect_ok "$alg: keygen" h keygen "$uri" "$alg"
	cp "$T/out" "$T/$l.pem"
	case $alg in
	ES256)	want='ASN1 OID: prime256v1' ;;
	RS256)	want='Public-Key: \(2048 bit\)' ;;
	esac
	if openssl pkey -pubin -in "$T/$l.pem" -noout -text_pub 2>/dev/null |
	    grep -Eq "$want"; then
		ok "$alg: keygen printed a PEM public key ($want)"
	else
		fail "$alg: keygen output is not the expected public key"
		sed 's/^/#   /' "$T/$l.pem"
	fi
	refused "$alg: keygen refuses an existing label" "exists|already" \
	    h keygen "$uri" "$alg"

	expect_ok "$alg: pubkey" h pubkey "$uri"
	if cmp -s "$T/out" "$T/$l.pem"; then ok "$alg: pubkey equals keygen's"
	else fail "$alg: pubkey differs from keygen's"; fi

	input=$($JWS input "{\"alg\":\"$alg\",\"typ\":\"JWT\"}" "$CLAIMS")
	printf '%s' "$input" >"$T/$l.input"
	if sign_in "$T/$l.input" --pin-file "$PIN" sign "$uri" \
	    >"$T/$l.sig" 2>"$T/err"; then
		ok "$alg: sign"
	else
		fail "$alg: sign"; sed 's/^/#   /' "$T/err"
	fi
	size=$(wc -c <"$T/$l.sig")
	case $alg in ES256) want=64 ;; RS256) want=256 ;; esac
	if [ "$size" -eq "$want" ]; then ok "$alg: raw signature, $size bytes"
	else fail "$alg: signature is $size bytes, not $want"; fi

	jws="$input.$(b64url <"$T/$l.sig")"
	if $JWS verify "$jws" "$T/$l.pem" "$alg" >"$T/out" 2>"$T/err" &&
	    [ "$(cat "$T/out")" = "$CLAIMS" ]; then
		ok "$alg: PyJWT verifies the compact JWS and reads the claims"
	else
		fail "$alg: PyJWT does not verify"; sed 's/^/#   /' "$T/err"
	fi
	# The same signature over other claims must not verify.
	other=$($JWS input "{\"alg\":\"$alg\",\"typ\":\"JWT\"}" '{"sub":"mallory"}')
	if $JWS verify "$other.$(b64url <"$T/$l.sig")" "$T/$l.pem" "$alg" \
	    >/dev/null 2>&1; then
		fail "$alg: a signature verifies over other claims"
	else
		ok "$alg: the signature does not verify over other claims"
	fi

	# pin-source in the URI instead of --pin-file.
	if sign_in "$T/$l.input" sign "$uri;pin-source=file:$PIN" \
	    >"$T/$l.sig2" 2>"$T/err" &&
	    $JWS verify "$input.$(b64url <"$T/$l.sig2")" "$T/$l.pem" "$alg" \
	    >/dev/null 2>&1; then
		ok "$alg: sign with the URI's pin-source"
	else
		fail "$alg: sign with pin-source"; sed 's/^/#   /' "$T/err"
	fi
done

URI_EC="pkcs11:token=threshold;object=human-es256"
ES_HDR='{"alg":"ES256","typ":"JWT"}'

# Not a signing input: free text, a whole token, a trailing newline, alg
# none, an empty input.
printf 'please sign this' >"$T/bad1"
printf '%s.c2ln' "$(cat "$T/human-es256.input")" >"$T/bad2"
printf '%s\n' "$(cat "$T/human-es256.input")" >"$T/bad3"
printf '%s' "$($JWS input '{"alg":"none"}' "$CLAIMS")" >"$T/bad4"
: >"$T/bad5"
refused "refuses free text" "not a JWS signing input" \
    sign_in "$T/bad1" --pin-file "$PIN" sign "$URI_EC"
refused "refuses a whole compact JWS" "not a JWS signing input" \
    sign_in "$T/bad2" --pin-file "$PIN" sign "$URI_EC"
refused "refuses a signing input with a trailing newline" "claims" \
    sign_in "$T/bad3" --pin-file "$PIN" sign "$URI_EC"
refused "refuses alg none" "not accepted" \
    sign_in "$T/bad4" --pin-file "$PIN" sign "$URI_EC"
refused "refuses an empty input" "not a JWS signing input" \
    sign_in "$T/bad5" --pin-file "$PIN" sign "$URI_EC"

printf '%s' "$($JWS input '{"alg":"RS256","typ":"JWT"}' "$CLAIMS")" \
    >"$T/rs-header"
refused "refuses an RS256 header for the ES256 key" \
    "signing input is RS256, the key is ES256" \
    sign_in "$T/rs-header" --pin-file "$PIN" sign "$URI_EC"
printf '%s' "$($JWS input "$ES_HDR" "$CLAIMS")" >"$T/es-header"
refused "refuses an ES256 header for the RS256 key" \
    "signing input is ES256, the key is RS256" \
    sign_in "$T/es-header" --pin-file "$PIN" sign \
    "pkcs11:token=threshold;object=human-rs256"

# Sizes: a well-formed signing input of exactly 16384 bytes is signed, one
# of 16385 is refused.
$PY - "$T" <<'PY'
import base64, json, sys
d = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
def make(total):
    for pad in range(0, 4):
        h = b64(json.dumps({"alg": "ES256", "typ": "J" * (1 + pad)},
                           separators=(",", ":")).encode())
        for n in range(12000, 12400):
            c = b64(json.dumps({"sub": "alice", "x": "a" * n},
                               separators=(",", ":")).encode())
            if len(h) + 1 + len(c) == total:
                return h + b"." + c
    raise SystemExit("no input of %d bytes" % total)
open(d + "/max", "wb").write(make(16384))
open(d + "/over", "wb").write(make(16385))
PY
if sign_in "$T/max" --pin-file "$PIN" sign "$URI_EC" >"$T/max.sig" \
    2>"$T/err" && [ "$(wc -c <"$T/max.sig")" -eq 64 ] &&
    $JWS verify "$(cat "$T/max").$(b64url <"$T/max.sig")" \
    "$T/human-es256.pem" ES256 >/dev/null 2>&1; then
	ok "signs a 16384-byte signing input (the limit)"
else
	fail "16384-byte signing input"; sed 's/^/#   /' "$T/err"
fi
refused "refuses a 16385-byte signing input" "longer than 16384" \
    sign_in "$T/over" --pin-file "$PIN" sign "$URI_EC"
head -c 1000000 /dev/zero >"$T/huge"
refused "refuses a 1 MB input" "longer than 16384" \
    sign_in "$T/huge" --pin-file "$PIN" sign "$URI_EC"

# PINs.
printf '00000000' >"$T/wrong.pin"
chmod 600 "$T/wrong.pin"
refused "wrong PIN file: pubkey refused" "PKCS11_login|PIN" \
    "$H" --module "$MOD" --pin-file "$T/wrong.pin" pubkey "$URI_EC"
refused "wrong PIN file: sign refused" "PKCS11_login|PIN" \
    sign_in "$T/es-header" --pin-file "$T/wrong.pin" sign "$URI_EC"
refused "missing PIN file refused" "PIN file" \
    "$H" --module "$MOD" --pin-file "$T/nonexistent.pin" pubkey "$URI_EC"
refused "no PIN at all refused" "no PIN file" \
    "$H" --module "$MOD" pubkey "$URI_EC"
refused "pin-value in the URI refused" "pin-value" \
    h pubkey "$URI_EC;pin-value=$(cat "$PIN")"
refused "pin-value in the URI refused for sign" "pin-value" \
    sign_in "$T/es-header" sign "$URI_EC;pin-value=$(cat "$PIN")"

# Other refusals.
refused "unknown key" "no private key matches" \
    h pubkey "pkcs11:token=threshold;object=nobody"
refused "keygen of an unknown algorithm" "unknown algorithm" \
    h keygen "pkcs11:token=threshold;object=human-hs256" HS256
refused "bad module" "cannot load or initialise PKCS#11 module" \
    "$H" --module /nonexistent.so --pin-file "$PIN" pubkey "$URI_EC"
for args in "" "--module $MOD" "--module $MOD pubkey" \
    "--module $MOD frobnicate $URI_EC" "--module $MOD pubkey $URI_EC extra" \
    "--pin $PIN --module $MOD pubkey $URI_EC" \
    "--module=$MOD --pin-file $PIN pubkey $URI_EC" \
    "--mod $MOD --pin-file $PIN pubkey $URI_EC"; do
	# shellcheck disable=SC2086
	"$H" $args >"$T/out" 2>"$T/err" </dev/null
	rc=$?
	if [ "$rc" -eq 2 ] && grep -q '^usage:' "$T/err"; then
		ok "usage error exits 2: [$args]"
	else
		fail "usage error [$args]: exit $rc"
	fi
done

# The same through lib/p11client.c.
expect_ok "test_p11client (p11c_pubkey, p11c_sign, EVP verification)" \
    "$TBIN/test_p11client" "$H" "$MOD" "$T"

done_testing
