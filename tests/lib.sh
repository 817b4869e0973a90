# Sourced by integration tests.  Gives each test a fresh directory $T, stops
# what the test started (fixtures stop their own processes by PID) and counts
# assertions.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${BUILD:=build}"
BIN="$ROOT/$BUILD/bin"
TBIN="$ROOT/$BUILD/tests"
FIX="$ROOT/swtpm-fixtures"
T=$(mktemp -d /tmp/threshold-test.XXXXXX)
_fails=0
_oks=0

_cleanup() {
	for f in "$T"/*.pid "$T"/*/*.pid; do
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null
	done
	if [ "$_fails" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "# kept $T"; fi
}
trap _cleanup EXIT

ok()   { _oks=$((_oks + 1)); echo "ok - $*"; }
fail() { _fails=$((_fails + 1)); echo "not ok - $*"; }

# expect_ok "desc" cmd...: the command must succeed.
expect_ok() {
	d=$1; shift
	if "$@" >"$T/out" 2>"$T/err"; then ok "$d"; else fail "$d"; sed 's/^/#   /' "$T/err" "$T/out"; fi
}

# expect_fail "desc" "regex" cmd...: the command must fail and its stderr
# match regex (grep -E).
expect_fail() {
	d=$1; re=$2; shift 2
	if "$@" >"$T/out" 2>"$T/err"; then
		fail "$d (succeeded)"
	elif grep -Eq -- "$re" "$T/err"; then
		ok "$d"
	else
		fail "$d (stderr did not match /$re/)"; sed 's/^/#   /' "$T/err"
	fi
}

done_testing() {
	echo "# $_oks passed, $_fails failed"
	[ "$_fails" -eq 0 ]
}
