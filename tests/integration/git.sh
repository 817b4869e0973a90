# Credential-free git push and fetch through thresholdd: real git, with
# git-credential-threshold as its credential helper, against the GitHub
# emulator's smart-HTTP server (git http-backend behind a token check).
# The agent's git never sees a GitHub token; every refused push reaches the
# emulator not at all; the token of each push is dead afterwards; every
# request that only reads is audited too.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
TOOLS="$ROOT/tests/tools"

"$FIX/provision" "$T" 2>"$T/provision.log" || { cat "$T/provision.log"; fail "provision"; done_testing; exit 1; }
export SOFTHSM2_CONF="$T/hsm/softhsm2.conf"
"$FIX/signer-start" "$T" || { fail "signer starts"; done_testing; exit 1; }
echo '{}' >"$T/policy.json"
expect_ok "alice delegates github.push and github.fetch on acme/widgets (agent/*, main, release) to coder-1" \
	sh -c "BUILD=$BUILD ALICE_ALLOW='github.push github.fetch' ALICE_TARGETS='agent/* main release' \
	$FIX/alice $T $T/policy.json acme/widgets"
start_emulator "$(cat "$T/app-id")" "$T/github-app.pub.pem"
[ -n "$GHPORT" ] && ok "emulator up" || { fail "emulator up"; cat "$T/emulator.log"; done_testing; exit 1; }
admin POST installations '{"id":42,"account":"acme","repositories":["acme/widgets"],"permissions":{"contents":"write","workflows":"write","metadata":"read"}}' >/dev/null
admin POST git-repos '{"repo":"acme/widgets","default_branch":"main","files":{"README.md":"hello\n"},"branches":["release","agent/rel#1"],"protected":["release","agent/rel#1"]}' >"$T/repo.json" ||
	fail "emulator makes acme/widgets"

GITPORT=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
broker_conf "$T/broker.sock" "listen-git 127.0.0.1:$GITPORT" "github-git-url $GH" "agent 65533 coder-2"
start_broker && ok "thresholdd starts (git on 127.0.0.1:$GITPORT)" || { fail "thresholdd starts"; cat "$T/broker.log"; done_testing; exit 1; }

# The agent's environment: no token anywhere, only the broker's socket.
mkdir -p "$T/home"
export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 PATH="$BIN:$PATH"
git config --global user.name "coder-1"
git config --global user.email "coder-1@example.com"
git config --global init.defaultBranch main
git config --global credential.helper "threshold --broker $T/broker.sock"
git config --global credential.useHttpPath true
URL="http://127.0.0.1:$GITPORT/acme/widgets.git"
W="$T/work"

ref() { admin GET "git/acme/widgets/refs" | $PY -c "import json,sys;print(json.load(sys.stdin).get(sys.argv[1],''))" "$1"; }
pushes() { admin GET "requests?settle=1" | $PY -c "
import json,sys
r=json.load(sys.stdin); r=r['requests'] if isinstance(r,dict) else r
print(sum(1 for x in r if x.get('method')=='POST' and x.get('path','').endswith('git-receive-pack')))"; }
# gitq DESC REGEX git ARGS...: git fails, stderr matches REGEX.
refused_push() {
	_d=$1; _re=$2; shift 2
	_before=$(pushes)
	if git -C "$W" "$@" >"$T/out" 2>"$T/err"; then
		fail "$_d (git succeeded)"
	elif grep -Eq "$_re" "$T/err"; then
		ok "$_d"
	else
		fail "$_d"; sed 's/^/#   /' "$T/err"
	fi
	[ "$(pushes)" = "$_before" ] && ok "... and nothing of it reached GitHub" ||
		fail "... a refused push reached GitHub"
}

code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/info/refs?service=git-upload-pack")
[ "$code" = 401 ] && ok "no credentials: 401, so git asks its helper" || fail "no credentials (got $code)"
code=$(curl -s -o "$T/body" -w '%{http_code}' -u "x-capability:not-a-capability" "$URL/info/refs?service=git-upload-pack")
[ "$code" = 403 ] && grep -q "malformed capability" "$T/body" && ok "a password that is no capability: 403, one line why" ||
	fail "bogus capability (got $code: $(cat "$T/body"))"
# Refused before any credential is looked at: answered, and audited.
GITROOT="http://127.0.0.1:$GITPORT"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$GITROOT/not-a-repo")
[ "$code" = 404 ] && grep -q "not a repository URL" "$T/body" && ok "not a git URL: 404, one line why" ||
	fail "not a git URL (got $code: $(cat "$T/body"))"
code=$(curl -s -o "$T/body" -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary 0000 "$URL/git-receive-pack")
[ "$code" = 415 ] && ok "a compressed push body: 415" || fail "compressed push (got $code: $(cat "$T/body"))"
# A push's credential is judged before its body is read: one announcing
# 1 GiB, without a capability or with a bogus one, is answered at once
# (the old broker spooled the whole body first, for anyone).
announce() { # AUTH -> the status line the broker answers with, the body unsent
	$PY - "$GITPORT" "$1" <<'PY'
import base64, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
h = ("POST /acme/widgets.git/git-receive-pack HTTP/1.1\r\nHost: 127.0.0.1\r\n"
     "Content-Type: application/x-git-receive-pack-request\r\nContent-Length: 1073741824\r\n")
if sys.argv[2]:
    h += "Authorization: Basic %s\r\n" % base64.b64encode(("x-capability:" + sys.argv[2]).encode()).decode()
s.sendall((h + "\r\n").encode())
try:
    print(s.recv(4096).decode("latin-1").split("\r\n")[0])
except socket.timeout:
    print("no answer within 10 s")
PY
}
line=$(announce "")
case $line in "HTTP/1.1 401"*) ok "a push without a credential: 401 before its body";;
	*) fail "a push without a credential, body unsent: $line";; esac
line=$(announce "not-a-capability")
case $line in "HTTP/1.1 403"*) ok "a push with a bogus capability: 403 before its body";;
	*) fail "a push with a bogus capability, body unsent: $line";; esac

# A fetch's negotiation refused is answered as git reads a refusal there
# (an ERR pkt-line, printed as "remote error: ..."), not with a status git
# would not explain.
code=$(curl -s -o "$T/body" -w '%{http_code}' -u "x-capability:not-a-capability" \
	-H 'Content-Type: application/x-git-upload-pack-request' --data-binary 0000 "$URL/git-upload-pack")
[ "$code" = 200 ] && grep -q "ERR threshold: .*malformed capability" "$T/body" &&
	ok "a fetch with a bogus capability: an ERR pkt-line saying why" ||
	fail "fetch with a bogus capability (got $code: $(cat "$T/body"))"

# 64 idle connections (32 of each agent) hold every git thread: the next
# request, a push body too, is answered 503 busy at once (its body not
# read) and recorded; once they close, git is served again.
HOLD='
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]
print("held", flush=True)
time.sleep(25)
'
/usr/bin/python3 -c "$HOLD" "$GITPORT" 32 >"$T/held1" &
holder=$!
setpriv --reuid=65533 --regid=65533 --clear-groups /usr/bin/python3 -c "$HOLD" "$GITPORT" 32 >"$T/held2" &
holder2=$!
gitbusy() {
	code=$(curl -s -o "$T/body" -w '%{http_code}' "$URL/info/refs?service=git-upload-pack")
	[ "$code" = 503 ] && grep -q "busy: 65 connections open, thresholdd serves 64 at once" "$T/body"
}
eventually gitbusy && ok "git past 64 connections: 503 busy, one line why" ||
	fail "git busy (got $code: $(cat "$T/body"))"
head -c 1048576 /dev/zero >"$T/zeros"
code=$(curl -s -o "$T/body" -w '%{http_code}' --data-binary @"$T/zeros" "$URL/git-receive-pack")
[ "$code" = 503 ] && ok "a push (1 MiB body) while busy: 503" ||
	fail "push while busy (got $code: $(cat "$T/body"))"
kill $holder $holder2 2>/dev/null; wait $holder $holder2 2>/dev/null
gitserved() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/info/refs?service=git-upload-pack")" = 401 ]; }
eventually gitserved && ok "once they close, git is served again (401: asks for a capability)" ||
	fail "git after the idle connections closed"
expect_ok "git clone through the broker" git clone -q "$URL" "$W"
[ -f "$W/README.md" ] && ok "the clone has the repository's files" || fail "clone content"
if grep -rq "ghs_\|x-access-token" "$T/home" "$W/.git/config"; then fail "a GitHub token in the agent's files"; else ok "no GitHub token in the agent's files"; fi

git -C "$W" checkout -q -b agent/feat
echo one >"$W/a.txt"; git -C "$W" add a.txt; git -C "$W" commit -qm one
expect_ok "push a new branch agent/feat" git -C "$W" push -q origin agent/feat
[ "$(ref refs/heads/agent/feat)" = "$(git -C "$W" rev-parse HEAD)" ] &&
	ok "GitHub has agent/feat at the pushed commit" || fail "agent/feat on GitHub"
echo two >>"$W/a.txt"; git -C "$W" commit -qam two
expect_ok "update it (fast-forward)" git -C "$W" push -q origin agent/feat
[ "$(ref refs/heads/agent/feat)" = "$(git -C "$W" rev-parse HEAD)" ] &&
	ok "GitHub has the update" || fail "update on GitHub"
good=$(git -C "$W" rev-parse HEAD)

# The token of that push, from the emulator's records: dead now (or soon:
# it is revoked after git has its answer).
tokval=$(admin GET tokens | $PY -c "import json,sys;t=json.load(sys.stdin);t=t['tokens'] if isinstance(t,dict) else t;print(t[-1]['token'])")
dead() {
	code=$(curl -s -o /dev/null -w '%{http_code}' -u "x-access-token:$tokval" "$GH/acme/widgets.git/info/refs?service=git-upload-pack")
	[ "$code" = 401 ]
}
eventually dead && ok "the push's token is dead afterwards (GitHub says 401)" || fail "token dead after push (got $code)"
if grep -q "$tokval" "$T/broker.log" "$T/err" "$T/out"; then fail "token value in a log"; else ok "token value in no log or output"; fi

git -C "$W" commit -q --amend -m "two, rewritten"
refused_push "a force-push is refused" "not a fast-forward" push -f origin agent/feat
[ "$(ref refs/heads/agent/feat)" = "$good" ] && ok "agent/feat did not move" || fail "agent/feat moved"
git -C "$W" reset -q --hard "$good"

git -C "$W" checkout -q -b other/x
refused_push "a branch outside the delegation's targets is refused" "other/x: not a branch the delegation lets" push origin other/x
refused_push "a push to the default branch is refused" "main: the default branch" push origin other/x:main
refused_push "a push to a protected branch is refused" "release: a protected branch" push origin other/x:release
refused_push "a protected branch whose name holds '#' is asked of GitHub whole" "agent/rel#1: a protected branch" \
	push origin 'other/x:refs/heads/agent/rel#1'
refused_push "deleting a branch is refused" "deleting a branch is not allowed" push origin :agent/feat
[ "$(ref refs/heads/agent/feat)" = "$good" ] && ok "agent/feat still there" || fail "agent/feat deleted"

# Workflows: GitHub needs workflows: write; the delegation does not grant
# github.push.workflows, so the broker does not ask for it.
git -C "$W" checkout -q agent/feat
mkdir -p "$W/.github/workflows"; echo "on: push" >"$W/.github/workflows/ci.yml"
git -C "$W" add .github; git -C "$W" commit -qm "add a workflow"
if git -C "$W" push origin agent/feat >"$T/out" 2>"$T/err"; then fail "workflow push without github.push.workflows"
elif grep -q "github.push.workflows" "$T/err"; then ok "a push changing .github/workflows/ is refused without github.push.workflows"
else fail "workflow refusal reason"; sed 's/^/#   /' "$T/err"; fi
[ "$(ref refs/heads/agent/feat)" = "$good" ] && ok "agent/feat did not move" || fail "agent/feat moved by a workflow push"
git -C "$W" reset -q --hard "$good"

# Alice grants github.push.workflows on agent/* (a newer delegation, which
# the broker prefers): the same push now goes through, and only its retry
# asked GitHub for workflows: write.
expect_ok "alice delegates github.push, github.fetch and github.push.workflows on agent/*" \
	sh -c "SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state \
	delegate --as alice --key 'pkcs11:token=alice;object=alice-key;type=private' --pin-file $T/alice/hsm/user.pin \
	--to coder-1 --allow github.push --allow github.fetch --allow github.push.workflows \
	--repo acme/widgets --target 'agent/*' --policy $T/policy.json --ttl 1h"
git -C "$W" cherry-pick -q HEAD@{1} 2>/dev/null || {
	mkdir -p "$W/.github/workflows"; echo "on: push" >"$W/.github/workflows/ci.yml"
	git -C "$W" add .github; git -C "$W" commit -qm "add a workflow"; }
# GitHub refuses the retry's token (workflows: write): the push fails, and
# no revocation of a token never made is recorded.
admin POST faults '{"method":"POST","path_regex":"access_tokens$","status":422,"skip":2,"times":1}' >/dev/null
git -C "$W" push -q origin agent/feat >/dev/null 2>&1 && fail "a workflow push whose retry token was refused went through"
admin DELETE faults >/dev/null
sleep 2
$PY - "$T/state/audit.db" >"$T/norevoke.check" 2>&1 <<'PY' &&
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = [json.loads(b) for (b,) in c.execute("select body from entries where kind='revocation'")]
bad = [e for e in r if not e.get("fingerprint") or e.get("result") not in ("revoked",) and not str(e.get("result", "")).startswith("unknown")]
assert not bad, bad
PY
	ok "a refused retry token: no empty revocation recorded" ||
	{ fail "revocations after a refused retry token"; sed 's/^/#   /' "$T/norevoke.check"; }
admin POST requests/clear >/dev/null
expect_ok "with github.push.workflows, the workflow push goes through" git -C "$W" push -q origin agent/feat
[ "$(ref refs/heads/agent/feat)" = "$(git -C "$W" rev-parse HEAD)" ] && ok "GitHub has the workflow commit" ||
	fail "workflow commit on GitHub"
admin GET "requests?settle=1" | $PY -c "
import json,sys
r=json.load(sys.stdin); r=r['requests'] if isinstance(r,dict) else r
perms=[x['body']['permissions'] for x in r if x.get('path','').endswith('/access_tokens')]
print(json.dumps(perms))" >"$T/perms.json"
grep -q '"workflows": "write"' "$T/perms.json" &&
	$PY -c "import json,sys;p=json.load(open(sys.argv[1]));assert p[-1]=={'contents':'write','workflows':'write'} and all('workflows' not in x for x in p[:-1]),p" "$T/perms.json" &&
	ok "workflows: write was asked for only on the retry GitHub required" ||
	{ fail "token permissions for the workflow push"; sed 's/^/#   /' "$T/perms.json"; }
good=$(git -C "$W" rev-parse HEAD)

# Fetch: another clone's push is seen by fetch.
git clone -q "$URL" "$T/w2" && git -C "$T/w2" checkout -q agent/feat &&
	echo three >>"$T/w2/a.txt" && git -C "$T/w2" commit -qam three &&
	git -C "$T/w2" push -q origin agent/feat ||
	fail "second clone pushes"
expect_ok "git fetch through the broker" git -C "$W" fetch -q origin
[ "$(git -C "$W" rev-parse origin/agent/feat)" = "$(git -C "$T/w2" rev-parse HEAD)" ] &&
	ok "the fetch brought the other push" || fail "fetch content"

# A large push streams: the broker's memory does not grow with the pack.
git -C "$W" checkout -q -B agent/big origin/agent/feat
head -c 30000000 /dev/urandom >"$W/big.bin"
git -C "$W" add big.bin; git -C "$W" commit -qm big
rss0=$(awk '/VmHWM/{print $2}' "/proc/$(cat "$T/broker.pid")/status")
expect_ok "a 30 MB push goes through" git -C "$W" push -q origin agent/big
rss1=$(awk '/VmHWM/{print $2}' "/proc/$(cat "$T/broker.pid")/status")
[ "$(ref refs/heads/agent/big)" = "$(git -C "$W" rev-parse HEAD)" ] && ok "GitHub has agent/big" || fail "agent/big on GitHub"
[ $((rss1 - rss0)) -lt 16384 ] && ok "the broker's peak memory grew by $((rss1 - rss0)) KiB for a 30 MB pack (streamed)" ||
	fail "the broker's peak memory grew by $((rss1 - rss0)) KiB for a 30 MB pack"

# The state directory keeps 64 MiB free whatever is spooled there (the
# token store and the audit log live there too): with it on an 80 MiB
# disk, a 48 MB push is refused, saying why, and so is a clone whose reply
# (the 30 MB blob) would not fit; a small push still goes through.
mkdir -p "$T/small"
if mount -t tmpfs -o size=80m tmpfs "$T/small" 2>/dev/null; then
	stop_broker
	cp -a "$T/state/." "$T/small/"
	cp "$T/broker.conf" "$T/broker.conf.orig"
	sed -i "s|^state .*|state $T/small|" "$T/broker.conf"
	start_broker || fail "broker starts with its state on a small disk"
	git -C "$W" checkout -q -B agent/huge origin/agent/feat
	head -c 48000000 /dev/urandom >"$W/huge.bin"
	git -C "$W" add huge.bin; git -C "$W" commit -qm huge
	if git -C "$W" push -q origin agent/huge >"$T/out" 2>"$T/err"; then
		fail "a push that would eat into the state disk's reserve went through"
	else
		grep -q "keeps 64 MiB of it for its store and audit log" "$T/err" &&
			ok "a push that would eat into the state disk's reserve: refused, saying why" ||
			{ fail "push on a small state disk"; sed 's/^/#   /' "$T/err"; }
	fi
	[ -z "$(ref refs/heads/agent/huge)" ] && ok "... and nothing reached GitHub" || fail "agent/huge on GitHub"
	if git clone -q "$URL" "$T/w3" >"$T/out" 2>"$T/err"; then
		fail "a clone whose reply would eat into the state disk's reserve went through"
	else
		grep -q "remote error: threshold: cannot spool GitHub's reply: the state directory has .* MiB free" "$T/err" &&
		grep -q "git fetch from acme/widgets failed: cannot spool GitHub's reply" "$T/broker.log" &&
			ok "a clone whose reply would eat into the reserve: refused, git and the log saying why" ||
			{ fail "clone on a small state disk"; sed 's/^/#   /' "$T/err"; }
	fi
	git -C "$W" checkout -q -B agent/small origin/agent/feat
	echo small >"$W/small.txt"; git -C "$W" add small.txt; git -C "$W" commit -qm small
	expect_ok "a small push on the same disk goes through" git -C "$W" push -q origin agent/small
	stop_broker
	cp -a "$T/small/." "$T/state/"
	umount "$T/small"
	mv "$T/broker.conf.orig" "$T/broker.conf"
	start_broker || fail "broker starts again on its own state"
else
	ok "SKIP small state disk: cannot mount a tmpfs here"
fi

# A spent capability cannot push again.
cap=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
[ -n "$cap" ] && ok "git-credential-threshold answers with a capability" || fail "credential helper"
out=$(printf 'protocol=https\nhost=github.com\npath=acme/widgets.git\n\n' |
	git-credential-threshold --broker "$T/broker.sock" get 2>&1); rc=$?
out2=$(printf 'protocol=http\nhost=127.0.0.1.evil.example:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get 2>&1)
[ $rc -eq 0 ] && [ -z "$out" ] && [ -z "$out2" ] &&
	ok "... and nothing for another remote (github.com, a look-alike host): git asks elsewhere" ||
	fail "the credential helper answered for another remote ($out$out2)"
# Another loopback port (a listener of another local user, named by a
# submodule, say) is given no capability, and the refusal is recorded.
other=$((GITPORT == 65535 ? GITPORT - 1 : GITPORT + 1))
out=$(printf 'protocol=http\nhost=localhost:%s\npath=acme/widgets.git\n\n' "$other" |
	git-credential-threshold --broker "$T/broker.sock" get 2>&1); rc=$?
[ $rc -ne 0 ] && ! printf '%s' "$out" | grep -q password= &&
	printf '%s' "$out" | grep -q "the git remote's port $other is not thresholdd's git endpoint" &&
	$PY -c "import sqlite3,sys;sys.exit(0 if sqlite3.connect(sys.argv[1]).execute(\"select count(*) from entries where kind='refusal' and body like '%wrong_remote%'\").fetchone()[0] >= 1 else 1)" "$T/state/audit.db" &&
	ok "another loopback port: no capability, refused wrong_remote and recorded" ||
	fail "the credential helper for another loopback port (rc $rc: $out)"
git -C "$W" push -q "http://x-capability:$cap@127.0.0.1:$GITPORT/acme/widgets.git" agent/big:agent/big2 >/dev/null 2>&1
git -C "$W" -c credential.helper= push "http://x-capability:$cap@127.0.0.1:$GITPORT/acme/widgets.git" agent/big:agent/big3 >"$T/out" 2>"$T/err" &&
	fail "a spent capability pushed again" || {
	grep -q "replayed\|already" "$T/err" && ok "a spent capability is refused (replayed)" ||
		{ fail "replay refusal reason"; sed 's/^/#   /' "$T/err"; }; }

# The git endpoint names its caller by the uid owning the connection's
# other end (the kernel's socket table), as the agents' socket does.
as_uid() { _u=$1; shift; setpriv --reuid="$_u" --regid="$_u" --clear-groups "$@"; }
UPLOAD="http://127.0.0.1:$GITPORT/acme/widgets.git/info/refs?service=git-upload-pack"
code=$(cd / && as_uid 65534 curl -s -o - -w '%{http_code}' "$UPLOAD" 2>/dev/null) || true
case $code in *"uid 65534 is not an agent"*403) ok "a local user who is no agent: 403, one line why";;
	*) fail "git from a uid that is no agent (got: $code)";; esac
cap2=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
code=$(printf 'user = "x-capability:%s"\n' "$cap2" |
	(cd / && as_uid 65533 curl -s -K - -o - -w '%{http_code}' "$UPLOAD" 2>/dev/null)) || true
case $code in *"issued to agent:coder-1, and this connection is agent:coder-2's"*403)
	ok "coder-1's capability presented by coder-2's uid: 403, one line why";;
	*) fail "another agent's capability (got: $code)";; esac
code=$(printf 'user = "x-capability:%s"\n' "$cap2" | curl -s -K - -o /dev/null -w '%{http_code}' "$UPLOAD")
[ "$code" = 200 ] && ok "... and it still serves coder-1" || fail "capability after another uid tried it (got $code)"
# Callers that are no agent hold at most 8 connections; agents are served.
# (The probe is read by this shell: the other uids may not reach the tree.)
LIMIT="/usr/bin/python3 - "
as_uid 65534 $LIMIT "tcp:$GITPORT" 8 /acme/widgets.git/info/refs?service=git-upload-pack \
    <"$ROOT/tests/tools/conn_limit.py" >"$T/strangers" 2>&1
grep -q "^closed HTTP/1.1 403" "$T/strangers" && ok "a 9th connection from a uid that is no agent is closed at once; the 8 held are answered 403" ||
	fail "strangers' connections ($(cat "$T/strangers"))"
code=$(curl -s -o /dev/null -w '%{http_code}' "$UPLOAD")
[ "$code" = 401 ] && ok "... while an agent is served (401: asks for a capability)" || fail "agent while strangers held connections (got $code)"
grep -q "not an agent, and 8 connections" "$T/broker.log" && ok "the closed connection is logged with its uid" ||
	fail "stranger's closed connection not logged"
# One agent cannot take every other agent's turn: past 32 of its
# connections its requests are answered busy, past 40 its connections are
# closed when accepted; another agent is served meanwhile.
as_uid 65533 $LIMIT "tcp:$GITPORT" 40 /acme/widgets.git/info/refs?service=git-upload-pack "" 4 \
    <"$ROOT/tests/tools/conn_limit.py" >"$T/greedy" 2>&1 &
greedy=$!
eventually grep -q . "$T/greedy"
grep -q "^closed HTTP/1.1 503 .*busy: agent:coder-2 has 40 connections open, thresholdd serves 32 of one agent at once" "$T/greedy" &&
	ok "an agent past 32 git connections: 503 busy, one line why; its 41st connection is closed at once" ||
	fail "one agent's connections ($(cat "$T/greedy"))"
code=$(curl -s -o /dev/null -w '%{http_code}' "$UPLOAD")
[ "$code" = 401 ] && ok "... while another agent is served" || fail "another agent while one held 40 (got $code)"
wait $greedy
grep -q "connection from agent:coder-2 closed: it has 40 open, at most 40" "$T/broker.log" &&
	ok "the closed connection is logged with its agent" || fail "agent's closed connection not logged"

# The delegation's push rules: force-push and deletion when allowed, a
# size limit.
echo '{"allow_branch_delete":true}' >"$T/policy-del.json"
expect_fail "deletion without force-push is refused (delete, then push anew, rewrites history)" \
	"allow_branch_delete needs allow_force_push" \
	sh -c "SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state \
	delegate --as alice --key 'pkcs11:token=alice;object=alice-key;type=private' --pin-file $T/alice/hsm/user.pin \
	--to coder-1 --allow github.push --repo acme/widgets --target 'agent/*' --policy $T/policy-del.json --ttl 1h"
echo '{"allow_force_push":true,"allow_branch_delete":true,"max_push_bytes":1000000}' >"$T/policy-push.json"
expect_ok "alice delegates with allow_force_push, allow_branch_delete, max_push_bytes 1000000" \
	sh -c "SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state \
	delegate --as alice --key 'pkcs11:token=alice;object=alice-key;type=private' --pin-file $T/alice/hsm/user.pin \
	--to coder-1 --allow github.push --allow github.fetch \
	--repo acme/widgets --target 'agent/*' --policy $T/policy-push.json --ttl 1h"
git -C "$W" fetch -q origin
git -C "$W" checkout -q -B agent/feat origin/agent/feat
git -C "$W" commit -q --amend -m "rewritten again"
expect_ok "now a force-push goes through" git -C "$W" push -q -f origin agent/feat
[ "$(ref refs/heads/agent/feat)" = "$(git -C "$W" rev-parse HEAD)" ] && ok "GitHub has the rewritten branch" ||
	fail "force-pushed branch on GitHub"
expect_ok "and a deletion" git -C "$W" push -q origin :agent/big
[ -z "$(ref refs/heads/agent/big)" ] && ok "agent/big is gone from GitHub" || fail "agent/big deleted"
head -c 2000000 /dev/urandom >"$W/mid.bin"; git -C "$W" add mid.bin; git -C "$W" commit -qm mid
refused_push "a push over max_push_bytes is refused" "over the delegation's max_push_bytes 1000000" push origin agent/feat

# The audit log tells the story and verifies offline.
$BIN/threshold --signer "$T/signer.sock" signer pubkey delegation-root >"$T/root.pem"
expect_ok "the audit log verifies" $BIN/threshold audit verify --db "$T/state/audit.db" --root "$T/root.pem"
$BIN/threshold audit export --db "$T/state/audit.db" >"$T/audit.jsonl" || fail "audit export"
if $PY - "$T/audit.jsonl" <<'EOF'
import json, sys
ents = [json.loads(l)["entry"] for l in open(sys.argv[1]) if json.loads(l)["type"] == "entry"]
intents = [e for e in ents if e["kind"] == "intent" and e["op"]["op"] == "github.push"]
assert len(intents) >= 4, len(intents)
refs = intents[0]["decision"]["refs"]
assert refs[0]["ref"] == "refs/heads/agent/feat" and len(refs[0]["new"]) == 40, refs
outs = {e["intent"]: e for e in ents if e["kind"] == "outcome"}
assert all(i["seq"] in outs for i in intents), "every push intent has an outcome"
# The workflow push's second token is on record, with its permissions,
# before the push it made (its outcome), and it is that token that was
# revoked; the intent names the first.
grants = [e for e in ents if e["kind"] == "grant"]
assert len(grants) == 1, grants
g = grants[0]
assert g["permissions"] == {"contents": "write", "workflows": "write"}, g
i = next(e for e in intents if e["seq"] == g["intent"])
assert outs[i["seq"]]["seq"] > g["seq"] > i["seq"], (i["seq"], g["seq"])
assert outs[i["seq"]]["result"]["workflows"] == "granted after GitHub asked", outs[i["seq"]]
assert g["token"]["fingerprint"] != i["token"]["fingerprint"], g
revs = {e["fingerprint"] for e in ents if e["kind"] == "revocation" and e.get("intent") == i["seq"]}
assert {g["token"]["fingerprint"], i["token"]["fingerprint"]} <= revs, revs
refusals = [e for e in ents if e["kind"] == "refusal"]
reasons = " | ".join([e.get("reason", "") for e in refusals] + [e.get("error", "") for e in outs.values()])
for want in ("max_push_bytes", "not a fast-forward", "default branch", "protected branch", "deleting a branch", "github.push.workflows", "replayed"):
    assert want in reasons, (want, reasons)
# Refusals name the agent whose uid connected (the kernel's word), never a
# name taken from the password: a password that is no capability, and
# requests refused before any credential was looked at.
bogus = [e for e in refusals if "malformed capability" in e["reason"]]
assert bogus and all(e["agent"] == "agent:coder-1" for e in bogus), bogus
early = [e for e in refusals if e["code"] == "bad_request"]
assert any("not a repository URL" in e["reason"] for e in early), early
assert any("compressed push" in e["reason"] for e in early), early
assert all(e["agent"] == "agent:coder-1" for e in early), early
busy = [e for e in refusals if e["code"] == "busy"]
assert busy and all("connections open" in e["reason"] for e in busy), busy
assert any(e["agent"] == "agent:coder-1" and "65 connections open" in e["reason"] for e in busy), busy
assert any(e["agent"] == "agent:coder-2" and "agent:coder-2 has 40 connections open" in e["reason"] for e in busy), busy
strangers = [e for e in refusals if e["code"] == "unknown_agent"]
assert strangers and all(e["agent"] == "unknown" and "uid 65534 is not an agent" in e["reason"] for e in strangers), strangers
other = [e for e in refusals if "issued to agent:coder-1" in e.get("reason", "")]
assert other and all(e["agent"] == "agent:coder-2" for e in other), other
print("ok")
EOF
then ok "pushes are audited: intents with refs, outcomes, each refusal with its reason (busy ones too)"
else fail "push audit entries"; fi
if $PY - "$T/audit.jsonl" <<'EOF'
import json, sys
ents = [json.loads(l)["entry"] for l in open(sys.argv[1]) if json.loads(l)["type"] == "entry"]
reads = [e for e in ents if e["kind"] == "read"]
asked = {e["request"] for e in reads}
assert {"info/refs?service=git-upload-pack", "git-upload-pack",
        "info/refs?service=git-receive-pack"} <= asked, asked
assert all(e["agent"] == "agent:coder-1" and e["op"]["repo"] == "acme/widgets" and
           e["capability"].count(".") == 2 and len(e["token"]["fingerprint"]) == 64
           for e in reads), reads[0]
revoked = {e["intent"] for e in ents if e["kind"] == "revocation" and "intent" in e}
assert sum(1 for e in reads if e["seq"] in revoked) >= len(reads) - 2, (len(reads), revoked)
print("ok")
EOF
then ok "reads are audited: each git request that only reads, its capability and token, revoked after"
else fail "read audit entries"; fi

# Fail closed: a read the audit log cannot countersign (swtpm down) is refused.
"$FIX/swtpm-stop" "$T"
if git -C "$W" fetch -q origin >"$T/out" 2>"$T/err"; then
	fail "fetch without a countersignature succeeded"
else
	grep -q "refused: audit log" "$T/broker.log" && ok "no countersignature: a fetch is refused" ||
		{ fail "fetch refused for the audit log"; tail -3 "$T/broker.log" | sed 's/^/#   /'; }
fi
"$FIX/swtpm-start" "$T" >/dev/null

# Killed while GitHub takes a push: at restart the broker asks GitHub where
# the branch is and records that the push happened.
intents() { $PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);print(sum(1 for (b,) in c.execute(\"select body from entries where kind='intent'\") if json.loads(b)['op']['op']=='github.push'))" "$T/state/audit.db"; }
more_intents() { [ "$(intents)" -gt "$1" ]; }
git -C "$W" checkout -q -b agent/crash "$good"
git -C "$W" commit -q --allow-empty -m crash
crash=$(git -C "$W" rev-parse HEAD)
n0=$(intents)
admin POST faults '{"method":"POST","path_regex":"git-receive-pack$","delay_ms":3000,"times":1}' >/dev/null
git -C "$W" push -q origin agent/crash >/dev/null 2>&1 &
crashpush=$!
eventually more_intents "$n0" || fail "the push's intent"
sleep 0.5
kill -9 "$(cat "$T/broker.pid")"
at_new() { [ "$(ref refs/heads/agent/crash)" = "$crash" ]; }
eventually at_new || fail "GitHub took the push"
admin DELETE faults >/dev/null
start_broker || fail "broker restarts after kill -9 during a push"
recovered() {
	$PY - "$T/state/audit.db" "$crash" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
ents = {seq: (kind, json.loads(b)) for seq, kind, b in c.execute("select seq, kind, body from entries")}
push = [s for s, (k, e) in ents.items() if k == "intent" and e["op"]["op"] == "github.push"][-1]
rec = [e for k, e in ents.values() if k == "recovered" and e["intent"] == push]
assert rec and rec[0]["result"].get("pushed") is True and rec[0]["result"]["refs"][0]["now"] == sys.argv[2], rec
PY
}
eventually recovered && ok "killed during a push: recovery asks GitHub and records it pushed" ||
	{ fail "push recovery"; recovered 2>&1 | tail -2 | sed 's/^/#   /'; }
wait "$crashpush" 2>/dev/null || true

# A push's ref updates must come while its capability lives: headers sent
# with a fresh one, the body only after it expired, is refused.
stop_broker
cp "$T/broker.conf" "$T/broker.conf.orig"
echo "capability-ttl 2" >>"$T/broker.conf"
start_broker || fail "broker starts with 2 s capabilities"
git -C "$W" checkout -q -b agent/late "$good"
git -C "$W" commit -q --allow-empty -m late
late=$(git -C "$W" rev-parse HEAD)
printf '%s\n^%s\n' "$late" "$good" | git -C "$W" pack-objects -q --revs --stdout >"$T/late.pack"
cap=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
$PY "$TOOLS/git_late.py" "$GITPORT" "$cap" receive-pack 3.5 0 \
	"$(printf '%040d' 0) $late refs/heads/agent/late\\0report-status\\n" flush --pack "$T/late.pack" \
	>"$T/late.out" 2>&1
grep -q "expired" "$T/late.out" && [ -z "$(ref refs/heads/agent/late)" ] &&
	ok "a push whose ref updates came after its capability expired is refused" ||
	{ fail "a late push"; sed 's/^/#   /' "$T/late.out" | head -5; }
# The same for a fetch: its request trickled in (a byte, then the rest after
# the capability expired) reads nothing.
cap=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
$PY "$TOOLS/git_late.py" "$GITPORT" "$cap" upload-pack 3.5 1 "want $good\\n" flush "done\\n" \
	>"$T/latefetch.out" 2>&1
grep -q "expired" "$T/latefetch.out" && ! grep -q "PACK" "$T/latefetch.out" &&
	ok "a fetch whose request came in after its capability expired reads nothing" ||
	{ fail "a late fetch"; sed 's/^/#   /' "$T/latefetch.out" | head -5; }
# One capability on two connections: B's ref updates and a byte of its pack
# go at once, the rest 6 s later; A pushes in between (spending it), and a
# push 4 s later (another capability) prunes the ids that expired.  B, judged
# as of when its ref updates came, while the capability lived, is still a
# replay: the id stays spent past the capability's expiry.
newpack() { # BRANCH -> its new commit; its pack in $T/BRANCH.pack
	git -C "$W" checkout -q -B "agent/$1" "$good"
	git -C "$W" commit -q --allow-empty -m "$1"
	git -C "$W" rev-parse HEAD
	printf '%s\n^%s\n' "$(git -C "$W" rev-parse HEAD)" "$good" |
		git -C "$W" pack-objects -q --revs --stdout >"$T/$1.pack"
}
tb=$(newpack twice-b); ta=$(newpack twice-a)
cap=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
$PY "$TOOLS/git_late.py" "$GITPORT" "$cap" receive-pack 6 pkt+1 \
	"$(printf '%040d' 0) $tb refs/heads/agent/twice-b\\0report-status\\n" flush --pack "$T/twice-b.pack" \
	>"$T/twice-b.out" 2>&1 &
bpid=$!
sleep 0.5
$PY "$TOOLS/git_late.py" "$GITPORT" "$cap" receive-pack 0 0 \
	"$(printf '%040d' 0) $ta refs/heads/agent/twice-a\\0report-status\\n" flush --pack "$T/twice-a.pack" \
	>"$T/twice-a.out" 2>&1
sleep 4
newpack prune >/dev/null
git -C "$W" push -q origin agent/prune >/dev/null 2>&1 || fail "a push that prunes spent ids"
wait "$bpid"
[ "$(ref refs/heads/agent/twice-a)" = "$ta" ] && [ -z "$(ref refs/heads/agent/twice-b)" ] &&
	grep -q "replayed" "$T/twice-b.out" &&
	ok "one capability, two pushes: the second, however late it ends, is a replay" ||
	{ fail "one capability, two pushes"; sed 's/^/#   /' "$T/twice-b.out" | head -5; }
mv "$T/broker.conf.orig" "$T/broker.conf"

# A body still arriving git-push-seconds after its headers is refused at
# once and its connection closed (the rest is not waited for: a byte every
# half second would otherwise hold the connection until its 100,000 bytes
# are in); a POST to no git endpoint is refused before its body is read.
stop_broker
cp "$T/broker.conf" "$T/broker.conf.orig"
echo "git-push-seconds 2" >>"$T/broker.conf"
start_broker || fail "broker starts with git-push-seconds 2"
cap=$(printf 'protocol=http\nhost=127.0.0.1:%s\npath=acme/widgets.git\n\n' "$GITPORT" |
	git-credential-threshold --broker "$T/broker.sock" get | sed -n 's/^password=//p')
trickle() { # PATH -> seconds until the broker answered, and its status line
	$PY - "$GITPORT" "$cap" "$1" <<'PY'
import base64, socket, sys, time
port, cap, path = sys.argv[1:4]
auth = base64.b64encode(("x-capability:" + cap).encode()).decode()
s = socket.create_connection(("127.0.0.1", int(port)))
s.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-git-receive-pack-request\r\n"
           "Content-Length: 100000\r\nAuthorization: Basic %s\r\n\r\n" % (path, auth)).encode())
t0, out = time.time(), b""
s.settimeout(0.5)
while time.time() - t0 < 12:
    try:
        s.sendall(b"0")
    except OSError:
        pass
    try:
        d = s.recv(65536)
        if not d:
            break
        out += d
    except socket.timeout:
        pass
    except OSError:
        break
print("%.1f %s" % (time.time() - t0, out.split(b"\r\n")[0].decode("latin-1")))
print(out.decode("latin-1"))
PY
}
trickle /acme/widgets.git/git-receive-pack >"$T/trickle.out" 2>&1
read -r secs _ <"$T/trickle.out"
slow_recorded() {
	$PY -c "import json,sqlite3,sys;c=sqlite3.connect(sys.argv[1]);sys.exit(0 if any('the push took more than 2 s to arrive' in json.loads(b).get('reason','') for (b,) in c.execute(\"select body from entries where kind='refusal'\")) else 1)" \
	    "$T/state/audit.db"
}
[ "${secs%.*}" -lt 8 ] && slow_recorded &&
	ok "a push body trickled past git-push-seconds: closed after ${secs} s, the rest unread, the refusal recorded" ||
	{ fail "a trickled push body"; sed 's/^/#   /' "$T/trickle.out" | head -5; }
trickle /acme/widgets.git/no-such-service >"$T/badurl.out" 2>&1
read -r secs status code _ <"$T/badurl.out"
[ "$code" = 404 ] && [ "${secs%.*}" -lt 2 ] &&
	ok "a POST to no git endpoint: 404 before its body is read" ||
	{ fail "a POST to no git endpoint"; sed 's/^/#   /' "$T/badurl.out" | head -5; }
mv "$T/broker.conf.orig" "$T/broker.conf"

# Fast-forwards GitHub must tell: 33 branches at base moved to top, whose
# parent next GitHub already has: each ref's walk leaves the pack at next,
# one compare each.  Past 32 compares for the whole push it is refused; 32
# branches go through.  (Under a new delegation without allow_force_push,
# which waives the fast-forward check: the broker prefers the newest.)
expect_ok "alice delegates github.push on agent/* without force-push" \
	sh -c "SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state \
	delegate --as alice --key 'pkcs11:token=alice;object=alice-key;type=private' --pin-file $T/alice/hsm/user.pin \
	--to coder-1 --allow github.push --allow github.fetch --repo acme/widgets --target 'agent/*' \
	--policy $T/policy.json --ttl 1h"
git -C "$W" checkout -q -B agent/cbase "$good" && git -C "$W" commit -q --allow-empty -m cbase
base=$(git -C "$W" rev-parse HEAD)
git -C "$W" commit -q --allow-empty -m cnext
git -C "$W" push -q origin "HEAD:refs/heads/agent/cnext" >/dev/null 2>&1 || fail "pushing agent/cnext"
git -C "$W" commit -q --allow-empty -m ctop
next=$(git -C "$W" rev-parse HEAD)
specs() { # FROM TO COMMIT: refspecs COMMIT:refs/heads/agent/cN for N in FROM..TO
	_i=$1; while [ "$_i" -le "$2" ]; do printf ' %s:refs/heads/agent/c%d' "$3" "$_i"; _i=$((_i + 1)); done
}
# shellcheck disable=SC2046
git -C "$W" push -q origin $(specs 1 33 "$base") >/dev/null 2>&1 || fail "creating 33 branches"
# shellcheck disable=SC2046
refused_push "a push needing more than 32 compares at GitHub is refused, saying why" \
	"within 32 lookups at GitHub" push origin $(specs 1 33 "$next")
# shellcheck disable=SC2046
expect_ok "32 branches moved at once (32 compares) go through" git -C "$W" push -q origin $(specs 1 32 "$next")
[ "$(ref refs/heads/agent/c32)" = "$next" ] && [ "$(ref refs/heads/agent/c33)" = "$base" ] &&
	ok "... GitHub has them" || fail "the 32 branches at GitHub"

stop_broker
done_testing
