# The GitHub emulator checks itself against GitHub's documented semantics
# (JWT verification, token scope, revocation, pagination, 409 on a stale
# sha, faults), so that what it tells the broker's tests can be trusted.
. "$(dirname "$0")/../lib.sh"
expect_ok "emulator self-test" /usr/bin/python3 "$ROOT/tests/github-emulator/test_emulator.py"
tail -n 3 "$T/err" | sed 's/^/#   /'
done_testing
