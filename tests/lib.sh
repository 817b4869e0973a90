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
	# A test may have mounted a small disk under $T (audit.sh, disk full).
	awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/mounts 2>/dev/null |
	    while read -r m; do umount "$m" 2>/dev/null; done
	if [ "$_fails" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$T"; else echo "# kept $T"; fi
}
trap _cleanup EXIT

ok()   { _oks=$((_oks + 1)); echo "ok - $*"; }
fail() { _fails=$((_fails + 1)); echo "not ok - $*"; }

# flip FILE OFFSET: inverts every bit of one byte, so the file always
# differs (writing a fixed value is no change when the byte already has it).
flip() {
	/usr/bin/python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)[0]
f.seek(int(sys.argv[2])); f.write(bytes([b ^ 0xff]))' "$1" "$2"
}

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
	# A sanitizer report in any daemon's log is a failure even if every
	# assertion held.
	if grep -l -E "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer" \
	    "$T"/*.log "$T"/*/*.log 2>/dev/null | head -1 | grep -q .; then
		fail "sanitizer report in $(grep -l -E 'runtime error:|ERROR: (Address|Leak)Sanitizer' "$T"/*.log "$T"/*/*.log 2>/dev/null | head -1)"
	fi
	echo "# $_oks passed, $_fails failed"
	[ "$_fails" -eq 0 ]
}

# start_emulator APP_ID APP_PUBKEY: the GitHub emulator on a free loopback
# port; sets GH (its base URL) and GHPORT.
start_emulator() {
	/usr/bin/python3 "$ROOT/tests/github-emulator/emulator.py" --port 0 \
	    --port-file "$T/gh.port" --app-id "$1" --app-key "$2" \
	    >"$T/emulator.log" 2>&1 &
	echo $! >"$T/emulator.pid"
	i=0
	while [ ! -s "$T/gh.port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	GHPORT=$(cat "$T/gh.port")
	GH="http://127.0.0.1:$GHPORT"
}

# admin METHOD PATH [JSON]: the emulator's admin API.
admin() {
	if [ $# -ge 3 ]; then
		curl -sS -X "$1" -H 'Content-Type: application/json' "$GH/_admin/$2" -d "$3"
	else
		curl -sS -X "$1" "$GH/_admin/$2"
	fi
}

# start_broker: thresholdd on $T/broker.conf; waits for its socket.
start_broker() {
	rm -f "$T/broker.sock"
	"$BIN/thresholdd" -f "$T/broker.conf" >>"$T/broker.log" 2>&1 &
	echo $! >"$T/broker.pid"
	i=0
	# Up to 30 s: after a crash the broker waits for what GitHub may
	# still be doing before it recovers and serves.
	while [ ! -S "$T/broker.sock" ] && [ $i -lt 300 ]; do
		kill -0 "$(cat "$T/broker.pid")" 2>/dev/null || break
		sleep 0.1; i=$((i + 1))
	done
	[ -S "$T/broker.sock" ]
}

# eventually CMD...: runs CMD until it succeeds, for at most 10 s.  For
# what the broker finishes after it has answered (a token's revocation and
# its record): a fixed sleep is either slow or, on a busy machine, flaky.
eventually() {
	_i=0
	until "$@"; do
		[ $_i -lt 100 ] || return 1
		sleep 0.1; _i=$((_i + 1))
	done
}

# settled N [KIND]: the broker's audit log ($T/state/audit.db) holds at
# least N token revocations (the revoker records them after the answer),
# its last entry is of KIND if given, and a checkpoint covers that entry.
settled() {
	/usr/bin/python3 - "$T/state/audit.db" "$1" "${2:-}" <<'PY' 2>/dev/null
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
last, kind = c.execute("select seq, kind from entries order by seq desc limit 1").fetchone()
covered = c.execute("select max(json_extract(body,'$.last')) from checkpoints").fetchone()[0]
revoked = c.execute("select count(*) from entries where kind='revocation'").fetchone()[0]
sys.exit(0 if last == covered and revoked >= int(sys.argv[2]) and
         sys.argv[3] in ("", kind) else 1)
PY
}

stop_broker() {
	[ -f "$T/broker.pid" ] || return 0
	_pid=$(cat "$T/broker.pid")
	rm -f "$T/broker.pid"
	kill "$_pid" 2>/dev/null || return 0
	i=0
	while kill -0 "$_pid" 2>/dev/null; do
		if [ $i -ge 50 ]; then
			fail "thresholdd (pid $_pid) still runs 5 s after SIGTERM; killed"
			kill -KILL "$_pid" 2>/dev/null
			return 1
		fi
		sleep 0.1; i=$((i + 1))
	done
}

# world POLICY: the whole product on this machine -- swtpm + SoftHSM +
# signer, alice's delegation of github.merge on acme/backend@main to
# coder-1 (the caller's uid) under POLICY, the GitHub emulator with an
# installation on acme/backend, and thresholdd ($T/broker.sock).
world() {
	"$FIX/provision" "$T" 2>"$T/provision.log" || { cat "$T/provision.log"; return 1; }
	export SOFTHSM2_CONF="$T/hsm/softhsm2.conf"
	"$FIX/signer-start" "$T" || return 1
	BUILD=$BUILD "$FIX/alice" "$T" "$1" >/dev/null 2>&1 || return 1
	start_emulator "$(cat "$T/app-id")" "$T/github-app.pub.pem"
	acme_backend
	broker_conf "$T/broker.sock"
	start_broker
}

# The emulator's acme/backend, with the App installed on it (id 42).
acme_backend() {
	admin POST repos '{"full_name":"acme/backend","default_branch":"main"}' >/dev/null
	admin POST installations '{"id":42,"account":"acme","repositories":["acme/backend"],"permissions":{"contents":"write","pull_requests":"write","checks":"read","statuses":"read"}}' >/dev/null
}

# broker_conf LISTEN [LINE...]: $T/broker.conf for a broker listening on
# LISTEN, using $T's signer and state, the emulator at $GH, the caller's uid
# as coder-1; each LINE is one more directive.
broker_conf() {
	cat >"$T/broker.conf" <<CONF
listen $1
signer $T/signer.sock
state $T/state
github-url $GH
github-app-id $(cat "$T/app-id")
agent $(id -u) coder-1
CONF
	shift
	for line in "$@"; do echo "$line" >>"$T/broker.conf"; done
}

# green_pr N SHA FILES_JSON: an open PR on acme/backend@main, approved by
# carol, with ci/test green on SHA.
green_pr() {
	admin POST pulls "{\"repo\":\"acme/backend\",\"number\":$1,\"head\":{\"sha\":\"$2\",\"ref\":\"topic-$1\"},\"base\":{\"ref\":\"main\"},\"user\":{\"login\":\"bob\"},\"mergeable\":true,\"files\":$3,\"reviews\":[{\"user\":\"carol\",\"state\":\"APPROVED\"}]}" >/dev/null
	admin POST checks "{\"repo\":\"acme/backend\",\"sha\":\"$2\",\"check_runs\":[{\"name\":\"ci/test\",\"status\":\"completed\",\"conclusion\":\"success\"}]}" >/dev/null
}
