# The independent token verifier checks itself: valid chains and
# capabilities built with PyJWT pass, each documented violation fails.  (The
# same verifier judges Threshold's own tokens in tokens.sh.)
. "$(dirname "$0")/../lib.sh"
expect_ok "verify_tokens.py self-test" /usr/bin/python3 "$ROOT/tests/tools/test_verify_tokens.py"
tail -n 3 "$T/err" | sed 's/^/#   /'
done_testing
