# thresholdd end to end: the real signer (swtpm + SoftHSM), a human's
# delegation signed on her own token, and the independent GitHub emulator,
# which verifies the App JWT, enforces token scope and revocation, and
# refuses a merge whose sha is stale.
. "$(dirname "$0")/../lib.sh"
PY=/usr/bin/python3
HEAD1=1111111111111111111111111111111111111111

"$FIX/provision" "$T" 2>"$T/provision.log" || { cat "$T/provision.log"; fail "provision"; done_testing; exit 1; }
export SOFTHSM2_CONF="$T/hsm/softhsm2.conf"
"$FIX/signer-start" "$T" || { fail "signer starts"; done_testing; exit 1; }
start_emulator "$(cat "$T/app-id")" "$T/github-app.pub.pem"
[ -n "$GHPORT" ] && ok "emulator up" || { fail "emulator up"; cat "$T/emulator.log"; done_testing; exit 1; }

cat >"$T/policy.json" <<'JSON'
{"required_checks":["ci/test"],"min_approvals":1,"protected_paths":[".github/workflows/**","secrets/"],"max_changed_files":50}
JSON
expect_ok "alice delegates github.merge on acme/backend@main to coder-1" \
	sh -c "BUILD=$BUILD $FIX/alice $T $T/policy.json"

TCPPORT=$($PY -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
broker_conf "$T/broker.sock" "socket-mode 0666" "listen-tcp 127.0.0.1:$TCPPORT" \
    "agent 65534 coder-2"
start_broker && ok "thresholdd starts" || { fail "thresholdd starts"; cat "$T/broker.log"; done_testing; exit 1; }
[ "$(stat -c %a "$T/broker.sock")" = 666 ] && ok "the socket has the configured mode (0666)" ||
	fail "socket mode $(stat -c %a "$T/broker.sock"), configured 0666"
TH="$BIN/threshold --broker $T/broker.sock"

# GitHub state: acme/backend with PRs for each case.
sha() { printf '%040d' "$1"; }
pr() { # number head_sha base user files_json reviews_json
	admin POST pulls "{\"repo\":\"acme/backend\",\"number\":$1,\"head\":{\"sha\":\"$2\",\"ref\":\"topic-$1\"},\"base\":{\"ref\":\"$3\"},\"user\":{\"login\":\"$4\"},\"mergeable\":true,\"files\":$5,\"reviews\":$6}" >/dev/null
}
green() { admin POST checks "{\"repo\":\"acme/backend\",\"sha\":\"$1\",\"check_runs\":[{\"name\":\"ci/test\",\"status\":\"completed\",\"conclusion\":\"${2:-success}\"}]}" >/dev/null; }
admin POST installations '{"id":42,"account":"acme","repositories":["acme/backend","acme/frontend"],"permissions":{"contents":"write","pull_requests":"write","checks":"read","statuses":"read","issues":"write"}}' >/dev/null
admin POST repos '{"full_name":"acme/backend","default_branch":"main","branches":{"main":"0000000000000000000000000000000000000000","release":"0000000000000000000000000000000000000000","feature-x":"abababababababababababababababababababab"},"workflows":["deploy.yml"]}' >/dev/null
admin POST installations '{"id":42,"account":"acme","repositories":["acme/backend","acme/frontend"],"permissions":{"contents":"write","pull_requests":"write","checks":"read","statuses":"read","issues":"write","deployments":"write","actions":"write"}}' >/dev/null
APPROVED='[{"user":"carol","state":"APPROVED"}]'
pr 1 "$(sha 1)" main bob '["src/a.c","README.md"]' "$APPROVED"; green "$(sha 1)"
pr 2 "$(sha 2)" main bob '["src/b.c"]' "$APPROVED"; green "$(sha 2)" failure
pr 3 "$(sha 3)" main bob '["src/c.c",".github/workflows/ci.yml"]' "$APPROVED"; green "$(sha 3)"
pr 4 "$(sha 4)" main bob '["src/d.c"]' '[]'; green "$(sha 4)"
pr 5 "$(sha 5)" main bob '["src/e.c"]' '[{"user":"bob","state":"APPROVED"}]'; green "$(sha 5)"
pr 6 "$(sha 6)" release bob '["src/f.c"]' "$APPROVED"; green "$(sha 6)"
pr 7 "$(sha 7)" main bob '[{"filename":"tools/ci.yml","status":"renamed","previous_filename":".github/workflows/ci.yml"}]' "$APPROVED"; green "$(sha 7)"
pr 8 "$(sha 8)" main bob '["src/h.c"]' "$APPROVED"; green "$(sha 8)"
pr 9 "$(sha 9)" main bob '["src/i.c"]' "$APPROVED"
pr 10 "$(sha 10)" main bob '{"generate":250,"pattern":"src/gen{i}.c"}' "$APPROVED"; green "$(sha 10)"
pr 11 "$(sha 11)" main bob '["src/k.c"]' "$APPROVED"; green "$(sha 11)"
pr 12 "$(sha 12)" main bob '["src/l.c"]' "$APPROVED"; green "$(sha 12)"
pr 13 "$(sha 13)" main bob '["src/m.c"]' "$APPROVED"; green "$(sha 13)"
pr 14 "$(sha 14)" main bob '["src/n.c"]' "$APPROVED"; green "$(sha 14)"
pr 15 "$(sha 15)" main bob '["src/o.c"]' "$APPROVED"; green "$(sha 15)"
pr 16 "$(sha 16)" main bob '[".github/workflows/evil.yml"]' "$APPROVED"; green "$(sha 16)"
# 3001 files, the workflow last: GitHub lists 3000 and no next page.
pr 91 "$(sha 91)" main bob '["src/q.c"]' "$APPROVED"; green "$(sha 91)"
# Approved only by users who may not write (anyone who reads a repository
# can submit an APPROVED review): a stranger, and a triage collaborator.
admin POST repos '{"full_name":"acme/backend","collaborators":{"tina":"triage"}}' >/dev/null
# 20 approvers: their access is looked up 16 at a time.
pr 93 "$(sha 93)" main bob '["src/s.c"]' "$($PY -c 'import json;print(json.dumps([{"user":"rev%d" % i,"state":"APPROVED"} for i in range(20)]))')"; green "$(sha 93)"
pr 92 "$(sha 92)" main bob '["src/r.c"]' '[{"user":"mallory","state":"APPROVED","author_association":"NONE"},{"user":"tina","state":"APPROVED","author_association":"COLLABORATOR"}]'; green "$(sha 92)"
pr 90 "$(sha 90)" main bob "$($PY -c 'import json;print(json.dumps(["src/big%d.c" % i for i in range(3000)] + [".github/workflows/evil.yml"]))')" "$APPROVED"; green "$(sha 90)"
# Over 300 files: read from the trees of the merge base and of the head.
# 17 has a protected workflow at A; 18 renames one file (two paths in the
# trees, one file to GitHub) and touches nothing protected.
pr 17 "$(sha 17)" main bob "$($PY -c 'import json;print(json.dumps(["src/w%d.c" % i for i in range(300)] + [".github/workflows/evil.yml"]))')" "$APPROVED"; green "$(sha 17)"
pr 18 "$(sha 18)" main bob "$($PY -c 'import json;print(json.dumps(["src/v%d.c" % i for i in range(300)] + [{"filename":"docs/new.md","status":"renamed","previous_filename":"docs/old.md"}]))')" "$APPROVED"; green "$(sha 18)"

merged() { admin GET state | $PY -c "import json,sys;s=json.load(sys.stdin);print(' '.join(str(m.get('number', m.get('pr'))) for m in s['merges']))"; }

expect_ok "health over the Unix socket (curl --unix-socket)" \
	curl -sSf --unix-socket "$T/broker.sock" http://localhost/v1/health
admin POST requests/clear >/dev/null
expect_ok "coder-1 merges acme/backend#1" $TH github merge --repo acme/backend --pr 1 --target main
grep -q "merged acme/backend#1 into main as .* (authorised by human:alice -> agent:coder-1)" "$T/out" &&
	ok "the answer names the merge and the chain" || fail "the answer names the merge and the chain"
merged | grep -qw 1 && ok "GitHub (emulator) merged #1" || fail "GitHub (emulator) merged #1"
req_check() {
	admin GET requests >"$T/req.json"
	$PY - "$T/req.json" <<'PY' >"$T/req.check" 2>&1
import json, sys
reqs = json.load(open(sys.argv[1]))
reqs = reqs["requests"] if isinstance(reqs, dict) else reqs
tok = [r for r in reqs if r["path"].endswith("/access_tokens")]
assert len(tok) == 1, "one token per operation"
body = tok[0]["body"]
assert body["repositories"] == ["backend"], body
assert body["permissions"] == {"contents": "write", "pull_requests": "write", "checks": "read", "statuses": "read"}, body
assert tok[0]["auth"] == "jwt" and tok[0]["jwt_claims"]["exp"] - tok[0]["jwt_claims"]["iat"] <= 600
merge = [r for r in reqs if r["method"] == "PUT"][0]
assert merge["body"]["sha"] == "0" * 39 + "1", merge["body"]
dele = [r for r in reqs if r["method"] == "DELETE" and r["path"] == "/installation/token"]
assert len(dele) == 1 and dele[0]["status"] == 204, dele
assert all(r["headers"].get("User-Agent") and r["headers"].get("X-GitHub-Api-Version") == "2022-11-28" for r in reqs)
print("ok")
PY
	grep -q '^ok$' "$T/req.check"
}
eventually req_check && ok "one token, scoped to acme/backend with the least permissions, merged at the checked sha, revoked (204)" ||
	{ fail "token scope / sha / revocation"; sed 's/^/#   /' "$T/req.check"; }
admin GET tokens >"$T/tokens.json"
tokval=$($PY -c "import json,sys;t=json.load(open(sys.argv[1]));t=t['tokens'] if isinstance(t,dict) else t;print(t[-1]['token'])" "$T/tokens.json")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tokval" -H 'User-Agent: t' "$GH/repos/acme/backend/pulls/1")
[ "$code" = 401 ] && ok "the token is dead after the operation (GitHub says 401)" || fail "token dead after use (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tokval" -H 'User-Agent: t' "$GH/repos/acme/frontend/pulls/1")
[ "$code" = 401 ] || [ "$code" = 404 ] && ok "and it never reached acme/frontend" || fail "token on another repo (got $code)"
if grep -q "$tokval" "$T/broker.log" "$T/signer.log" "$T/out" "$T/err"; then fail "token value in a log"; else ok "token value in no log or output"; fi

# The answer's path: token, PR, the policy reads in parallel, merge.
rt=$($BIN/threshold --broker "$T/broker.sock" --json github merge --repo acme/backend --pr 15 --target main |
	$PY -c "import json,sys;print(json.load(sys.stdin)['timing']['github_round_trips'])")
[ "$rt" = 4 ] && ok "a merge takes 4 sequential GitHub round trips (revocation off the path)" ||
	fail "round trips per merge: $rt"

# One operation waiting on GitHub holds up no other: #30's pull request
# read is held 5 s at GitHub; while it waits, health answers and #31 is
# merged.  (A broker serving one request at a time answers both after
# #30, so #30 would no longer be waiting.)
pr 30 "$(sha 30)" main bob '["src/s.c"]' "$APPROVED"; green "$(sha 30)"
pr 31 "$(sha 31)" main bob '["src/t.c"]' "$APPROVED"; green "$(sha 31)"
admin POST faults '{"method":"GET","path_regex":"^/repos/acme/backend/pulls/30$","delay_ms":5000}' >/dev/null
$TH github merge --repo acme/backend --pr 30 --target main >"$T/out30" 2>&1 &
slow=$!
taken() { [ "$(admin GET faults)" = "[]" ]; }
eventually taken || fail "#30's read reached GitHub"
expect_ok "while #30 waits on GitHub: health answers" \
	curl -sSf --unix-socket "$T/broker.sock" http://localhost/v1/health
expect_ok "while #30 waits on GitHub: #31 is merged" \
	$TH github merge --repo acme/backend --pr 31 --target main
kill -0 $slow 2>/dev/null && ok "... and #30 was still waiting then" ||
	fail "#30 had finished: requests were served one at a time"
wait $slow && ok "#30 is merged once GitHub answers" ||
	{ fail "#30 after the delay"; sed 's/^/#   /' "$T/out30"; }

# Many at once: one capability redeemed by 8 connections together is
# honoured once; 6 agents' merges together all land; the log they wrote
# verifies.
pr 32 "$(sha 32)" main bob '["src/u.c"]' "$APPROVED"; green "$(sha 32)"
curl -sS --unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities \
	-d '{"op":"github.merge","repo":"acme/backend","pr":32,"target":"main"}' >"$T/cap32.json"
$PY -c 'import json,sys; print(json.dumps({"capability": json.load(open(sys.argv[1]))["capability"]}))' \
	"$T/cap32.json" >"$T/red32.json"
# (wait for these by pid: the broker and the emulator are children too)
pids=
for i in 1 2 3 4 5 6 7 8; do
	curl -s -o /dev/null -w '%{http_code}\n' --unix-socket "$T/broker.sock" -X POST \
		http://localhost/v1/redeem -d @"$T/red32.json" >"$T/race32.$i" &
	pids="$pids $!"
done
wait $pids
wins=$(cat "$T"/race32.* | grep -c '^200$')
[ "$wins" -eq 1 ] && ok "8 concurrent redemptions of one capability: exactly one honoured" ||
	fail "8 concurrent redemptions: $wins honoured ($(cat "$T"/race32.* | tr '\n' ' '))"
for n in 33 34 35 36 37 38; do
	pr $n "$(sha $n)" main bob "[\"src/m$n.c\"]" "$APPROVED"; green "$(sha $n)"
done
pids=
for n in 33 34 35 36 37 38; do
	$TH github merge --repo acme/backend --pr $n --target main >"$T/out.$n" 2>&1 &
	pids="$pids $!"
done
wait $pids
for n in 33 34 35 36 37 38; do merged | grep -qw $n || echo $n; done >"$T/unmerged"
[ ! -s "$T/unmerged" ] && ok "6 concurrent merges all land" ||
	{ fail "concurrent merges not landed: $(cat "$T/unmerged")"; cat "$T"/out.3[3-8] | sed 's/^/#   /'; }
$BIN/threshold --signer "$T/signer.sock" signer pubkey delegation-root >"$T/root.pem"
expect_ok "the audit log written concurrently verifies" \
	$BIN/threshold audit verify --db "$T/state/audit.db" --root "$T/root.pem"
$BIN/threshold audit export --db "$T/state/audit.db" "$T/concurrent.jsonl" || fail "audit export"
expect_ok "... and its hash chain recomputes independently (audit_check.py)" \
	$PY "$ROOT/tests/tools/audit_check.py" chain "$T/concurrent.jsonl"

# Revocations run side by side: GitHub holds each of the next two token
# revocations 3 s; both arrive while the first token still works.  (One at
# a time, the second would arrive only once the first was done.)
pr 39 "$(sha 39)" main bob '["src/v.c"]' "$APPROVED"; green "$(sha 39)"
pr 40 "$(sha 40)" main bob '["src/w.c"]' "$APPROVED"; green "$(sha 40)"
admin POST faults '{"method":"DELETE","path_regex":"^/installation/token$","delay_ms":3000,"times":2}' >/dev/null
expect_ok "merge #39 (its token's revocation held at GitHub)" $TH github merge --repo acme/backend --pr 39 --target main
tok39=$(admin GET tokens | $PY -c "import json,sys;t=json.load(sys.stdin);t=t['tokens'] if isinstance(t,dict) else t;print(t[-1]['token'])")
expect_ok "merge #40 (likewise)" $TH github merge --repo acme/backend --pr 40 --target main
eventually taken || fail "both revocations reached GitHub"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok39" -H 'User-Agent: t' "$GH/repos/acme/backend/pulls/39")
[ "$code" = 200 ] && ok "both revocations were in flight together" ||
	fail "#39's token was already dead ($code) when #40's revocation arrived: one at a time"
dead39() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok39" -H 'User-Agent: t' "$GH/repos/acme/backend/pulls/39")" = 401 ]; }
eventually dead39 && ok "... and #39's token is dead once GitHub answers" || fail "#39's token still alive"

# The CLI: a pull request number is all digits (strtoll read "12x" as 12,
# a green and approved pull request); GitHub's refusal exits 4 although
# the broker answers it with 403; an answer lost on stdout is a failure.
$TH github merge --repo acme/backend --pr 12x --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'bad --pr "12x"' "$T/err" && ! merged | grep -qw 12 &&
	ok "--pr 12x: usage error (exit 2), #12 not merged" ||
	{ fail "--pr 12x (exit $rc)"; sed 's/^/#   /' "$T/err"; }
$TH github merge --repo acme/backend --pr 999 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 4 ] && grep -q "github_refused" "$T/err" &&
	ok "a pull request GitHub does not have: github_refused, exit 4" ||
	{ fail "missing pull request (exit $rc)"; sed 's/^/#   /' "$T/err"; }
$BIN/threshold --broker "$T/broker.sock" --json github merge --repo acme/backend --pr 999 \
    --target main >/dev/full 2>"$T/err"; rc=$?
[ $rc -eq 4 ] && ok "an answer written to a full disk: still the command's own exit (4)" ||
	fail "refusal to /dev/full (exit $rc)"
pr 95 "$(sha 95)" main bob '["src/u.c"]' "$APPROVED"; green "$(sha 95)"
$TH --json github merge --repo acme/backend --pr 95 --target main >/dev/full 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "writing standard output: No space left" "$T/err" && merged | grep -qw 95 &&
	ok "#95 merged but its answer lost on a full disk: exit 1, saying so" ||
	{ fail "answer lost (exit $rc)"; sed 's/^/#   /' "$T/err"; }

# GitHub's token format is changing: a token of 4084 characters (within
# the broker's 4096) is used and revoked (the Authorization header was cut
# at 4096 bytes: the merge failed and the token stayed live).
admin POST config '{"token_length":4080}' >/dev/null
pr 98 "$(sha 98)" main bob '["src/z.c"]' "$APPROVED"; green "$(sha 98)"
expect_ok "a 4084-character installation token: the merge goes through" \
	$TH github merge --repo acme/backend --pr 98 --target main
admin POST config '{"token_length":36}' >/dev/null
long_revoked() {
	admin GET tokens | $PY -c "
import json, sys
t = json.load(sys.stdin); t = t['tokens'] if isinstance(t, dict) else t
long = [x for x in t if len(x['token']) > 4000]
sys.exit(0 if long and all(x.get('revoked') for x in long) else 1)"
}
eventually long_revoked && ok "... and that token is revoked" || fail "the long token is not revoked"

# Policy rules, each refused with its reason (exit 3).
refused() { # desc pr regex
	d=$1; n=$2; re=$3
	$TH github merge --repo acme/backend --pr "$n" --target main >"$T/out" 2>"$T/err"; rc=$?
	if [ $rc -eq 3 ] && grep -Eq "$re" "$T/err"; then ok "$d"; else fail "$d (exit $rc)"; sed 's/^/#   /' "$T/err"; fi
}
refused "failing check refused" 2 "policy_denied.*required checks: ci/test is failure"
refused "protected path refused" 3 "protected path: .github/workflows/ci.yml"
refused "no approval refused" 4 "approvals: 0 of 1"
refused "author's own approval does not count" 5 "approvals: 0 of 1"
expect_ok "a pull request with 20 approvers merges" $TH github merge --repo acme/backend --pr 93 --target main
# A review whose author's account is gone comes with "user": null: it
# counts for nothing, and refuses nothing (it made every merge of its pull
# request fail as a malformed reply).
pr 96 "$(sha 96)" main bob '["src/x.c"]' '[{"user":null,"state":"CHANGES_REQUESTED"},{"user":"carol","state":"APPROVED"}]'; green "$(sha 96)"
pr 97 "$(sha 97)" main bob '["src/y.c"]' '[{"user":null,"state":"APPROVED"}]'; green "$(sha 97)"
expect_ok "a review by a deleted user (user null) beside carol's approval: merges" \
	$TH github merge --repo acme/backend --pr 96 --target main
refused "an approval by a deleted user (user null) does not count" 97 "approvals: 0 of 1"
refused "approvals from users without write access do not count" 92 \
	"approvals: 0 of 1 required \(without write access: mallory, tina\)"
refused "PR targeting another branch refused" 6 "targets release"
refused "rename out of a protected path refused" 7 "protected path: .github/workflows/ci.yml"
refused "no checks at all is not success" 9 "required checks"
refused "max changed files (250 files)" 10 "changed files: 250, at most 50"
refused "3001 changed files: the one GitHub does not list could be protected" 90 \
	"changed files could not all be read: the pull request has 3001 changed files, more than the 3000 Threshold reads"
refused "301 files, read from trees, one a rename: counted as GitHub does, nothing protected" 18 \
	"changed files: 301, at most 50"
admin POST faults '{"method":"GET","path_regex":"/git/trees/0+18$","status":404,"times":1}' >/dev/null
refused "a tree GitHub does not list: refused, saying so" 18 \
	"changed files could not all be read: the tree of the repository at the head commit could not be read: GitHub answered 404"
merged | grep -qwE "2|3|4|5|6|7|9|10" && fail "a refused PR was merged" || ok "nothing refused was merged"
expect_ok "a refusal carries its evidence (--json)" sh -c "$BIN/threshold --broker $T/broker.sock --json github merge --repo acme/backend --pr 3 --target main | grep -q matched_path"

# The head moves between the policy check and the merge: GitHub refuses
# (409) and Threshold reports it (exit 4).
admin POST push-on-next "{\"repo\":\"acme/backend\",\"pr\":8,\"sha\":\"$(sha 88)\",\"before\":\"merge\"}" >/dev/null
$TH github merge --repo acme/backend --pr 8 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 4 ] && grep -q "head_moved" "$T/err" && ok "push between check and merge: refused (409), exit 4" ||
	{ fail "push race (exit $rc)"; sed 's/^/#   /' "$T/err"; }

# The head is force-pushed from A to C while the changed files are read and
# back to A before the merge: the files judged are A's, not C's, so A's
# protected workflow is refused.  Up to 300 files they are read by comparing
# the base with A; past 300, from the trees of the merge base and of A.
# a_c_a DESC PR C_SHA C_FILES A_FILES
a_c_a() {
	admin POST push-on-next "{\"repo\":\"acme/backend\",\"pr\":$2,\"sha\":\"$3\",\"files\":$4,\"before\":\"files\"}" >/dev/null
	admin POST push-on-next "{\"repo\":\"acme/backend\",\"pr\":$2,\"sha\":\"$(sha "$2")\",\"files\":$5,\"before\":\"merge\"}" >/dev/null
	refused "$1: head moved A -> C -> A around the file listing, A's files are judged" "$2" \
		"protected path: .github/workflows/evil.yml"
	admin GET requests | $PY -c "
import json, sys
r = json.load(sys.stdin)
r = r['requests'] if isinstance(r, dict) else r
sys.exit(0 if any(x.get('route') in ('compare', 'git_tree') and (x.get('push_on_next') or {}).get('pr') == $2 for x in r) else 1)" &&
		ok "... the head did move to C while A's files were read" || fail "$1: the A -> C push did not fire during the file listing"
	merged | grep -qw "$2" && fail "$1: the A -> C -> A pull request was merged" || ok "... and not merged"
}
a_c_a "1 file" 16 "$(sha 1616)" '["src/ok.c"]' '[".github/workflows/evil.yml"]'
a_c_a "301 files" 17 "$(sha 1717)" "$($PY -c 'import json;print(json.dumps(["src/w%d.c" % i for i in range(301)]))')" \
	"$($PY -c 'import json;print(json.dumps(["src/w%d.c" % i for i in range(300)] + [".github/workflows/evil.yml"]))')"

# Pull requests of a real git repository, acme/monorepo.
# mono_pr N BRANCH FILES: a commit on BRANCH (from main) with FILES (a JSON
# object path -> content), pull request N from it, approved and green.
mono_pr() {
	admin POST git-commit "{\"repo\":\"acme/monorepo\",\"branch\":\"$2\",\"files\":$3}" >"$T/mono.json"
	_sha=$($PY -c "import json,sys;print(json.load(open(sys.argv[1]))['sha'])" "$T/mono.json")
	admin POST pulls "{\"repo\":\"acme/monorepo\",\"number\":$1,\"head\":{\"sha\":\"$_sha\",\"ref\":\"$2\"},\"base\":{\"ref\":\"main\"},\"user\":{\"login\":\"bob\"},\"mergeable\":true,\"files\":$($PY -c 'import json,sys;print(json.dumps(sorted(json.loads(sys.argv[1]))))' "$3"),\"reviews\":$APPROVED}" >/dev/null
	admin POST checks "{\"repo\":\"acme/monorepo\",\"sha\":\"$_sha\",\"check_runs\":[{\"name\":\"ci/test\",\"status\":\"completed\",\"conclusion\":\"success\"}]}" >/dev/null
}
# mono_delegate DESC POLICY: alice's newest delegation of github.merge on
# acme/monorepo@main to coder-1 (the broker prefers it), under POLICY.
mono_delegate() {
	echo "$2" >"$T/policy-mono.json"
	expect_ok "alice delegates github.merge on acme/monorepo@main to coder-1 $1" \
		sh -c "SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state \
		delegate --as alice --key 'pkcs11:token=alice;object=alice-key;type=private' --pin-file $T/alice/hsm/user.pin \
		--to coder-1 --allow github.merge --repo acme/monorepo --target main --policy $T/policy-mono.json --ttl 1h"
	admin POST requests/clear >/dev/null
}
# The GitHub routes asked for since the last clear, one per line.
routes() {
	admin GET requests | $PY -c "
import json, sys
r = json.load(sys.stdin)
r = r['requests'] if isinstance(r, dict) else r
print('\n'.join(str(x.get('route')) for x in r))"
}
admin POST installations '{"id":42,"account":"acme","repositories":["acme/backend","acme/frontend","acme/monorepo"],"permissions":{"contents":"write","pull_requests":"write","checks":"read","statuses":"read","issues":"write","deployments":"write","actions":"write"}}' >/dev/null
admin POST git-repos '{"repo":"acme/monorepo","default_branch":"main","files":{"README.md":"hi\n",".github/workflows/ci.yml":"on: push\n"}}' >/dev/null

# Past 300 files, the base branch moved on after the pull request branched
# off, changing a protected workflow there: the files are those between the
# merge base and the head, not the base's tip, so the pull request (which
# touches nothing protected) merges.
mono_pr 1 big "$($PY -c 'import json;print(json.dumps({"src/f%d.c" % i: "int f%d;\n" % i for i in range(301)}))')"
admin POST git-commit '{"repo":"acme/monorepo","branch":"main","files":{".github/workflows/ci.yml":"on: [push, pull_request]\n"}}' >/dev/null
mono_delegate "(workflows protected)" '{"required_checks":["ci/test"],"min_approvals":1,"protected_paths":[".github/workflows/**"]}'
expect_ok "301 files, base moved on (a workflow changed there): merged, judged from the merge base" \
	$TH github merge --repo acme/monorepo --pr 1 --target main
[ "$(routes | grep -c '^git_tree$')" -eq 3 ] &&
	ok "... from three listings: the root at the merge base and at the head, and src/ (new) at the head" ||
	fail "the 301-file merge did not list exactly the root twice and src/"

# A policy without a rule on files: they are not asked for at all.
mono_pr 2 small '{"src/small.c":"int s;\n"}'
mono_delegate "(no rule on files)" '{"required_checks":["ci/test"],"min_approvals":1}'
expect_ok "a merge under a policy without a rule on files" $TH github merge --repo acme/monorepo --pr 2 --target main
routes >"$T/routes"
grep -qx pull_merge "$T/routes" && ! grep -Eqx 'compare|git_tree|pull_files' "$T/routes" &&
	ok "... read no changed files" || fail "a policy without a rule on files had them read"

# 301 files over 20 new top-level directories, two levels each, and a key
# three levels down in the last.  The walk asks for up to 16 listings at a
# time (one for a directory on one side only), so each level of 20 spans
# two batches, and d19 is in the second.
mono_pr 3 wide "$($PY -c 'import json
f = {"d%02d/x/f%d.c" % (i, j): "int f;\n" for i in range(20) for j in range(15)}
f["d19/x/y/key.pem"] = "secret\n"
print(json.dumps(f))')"
mono_delegate "(*.pem protected)" '{"required_checks":["ci/test"],"min_approvals":1,"protected_paths":["*.pem"]}'
$TH github merge --repo acme/monorepo --pr 3 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 3 ] && grep -q "protected path: d19/x/y/key.pem matches [*].pem" "$T/err" &&
	ok "301 files over 20 directories: the key in the last batch is found" ||
	{ fail "301 files over 20 directories (exit $rc)"; sed 's/^/#   /' "$T/err"; }
[ "$(routes | grep -c '^git_tree$')" -eq 43 ] &&
	ok "... from 43 listings: both roots, 20 + 20 new directories and d19/x/y" ||
	fail "the 20-directory walk did not make exactly 43 listings"

# ci/test pinned to the GitHub App that runs CI (4242): a run of that name
# from another App, or a commit status, does not satisfy it.
mono_pr 4 pinned '{"src/p.c":"int p;\n"}'
PINNED_SHA=$_sha
mono_delegate "(ci/test pinned to App 4242)" '{"required_checks":[{"context":"ci/test","app_id":4242}],"min_approvals":1}'
run_by() { # APP CONCLUSION: one more ci/test run on #4's head
	admin POST checks "{\"repo\":\"acme/monorepo\",\"sha\":\"$PINNED_SHA\",\"replace\":false,\"check_runs\":[{\"name\":\"ci/test\",\"app_id\":$1,\"conclusion\":\"$2\"}]}" >/dev/null
}
pinned_refused() { # DESC REASON
	$TH github merge --repo acme/monorepo --pr 4 --target main >"$T/out" 2>"$T/err"; rc=$?
	[ $rc -eq 3 ] && grep -qF "$2" "$T/err" && ok "$1" || { fail "$1 (exit $rc)"; sed 's/^/#   /' "$T/err"; }
}
admin POST statuses "{\"repo\":\"acme/monorepo\",\"sha\":\"$PINNED_SHA\",\"statuses\":[{\"context\":\"ci/test\",\"state\":\"success\"}]}" >/dev/null
pinned_refused "a check pinned to an App: another App's run and a status of that name do not satisfy it" \
	"required checks: ci/test from App 4242 is missing (App 15368 reported it)"
run_by 4242 failure
run_by 666 success
pinned_refused "... its App's failure is not hidden by a newer success of the same name from a third App" \
	"required checks: ci/test is failure"
run_by 4242 success
expect_ok "... and once App 4242 re-runs it green, the pull request merges" \
	$TH github merge --repo acme/monorepo --pr 4 --target main

# GitHub faults.
admin POST faults '{"method":"GET","path_regex":"/pulls/11$","status":503,"times":2}' >/dev/null
expect_ok "two 503s on a read are retried through" $TH github merge --repo acme/backend --pr 11 --target main
admin POST faults '{"method":"GET","path_regex":"/compare/main[.][.][.]0+12$","rate_limit":{"kind":"secondary","retry_after":1}}' >/dev/null
expect_ok "a secondary rate limit (retry-after: 1) is waited out" $TH github merge --repo acme/backend --pr 12 --target main
# A merge GitHub rate-limits (retry-after: 4, twice) is not sent again past
# 5 s after its intent: recovery counts on that.  Sent once or twice (by
# when in the second the intent was recorded), never the third time that
# GitHub would have taken.
pr 94 "$(sha 94)" main bob '["src/t.c"]' "$APPROVED"; green "$(sha 94)"
admin POST requests/clear >/dev/null
admin POST faults '{"method":"PUT","path_regex":"/pulls/94/merge$","rate_limit":{"kind":"secondary","retry_after":4},"times":2}' >/dev/null
$TH github merge --repo acme/backend --pr 94 --target main >"$T/out" 2>"$T/err"; rc=$?
admin DELETE faults >/dev/null
# requests_to METHOD PATH-SUFFIX: how many such requests GitHub received.
requests_to() {
	admin GET requests | $PY -c "
import json, sys
r = json.load(sys.stdin); r = r['requests'] if isinstance(r, dict) else r
print(sum(1 for x in r if x.get('method') == sys.argv[1] and x.get('path', '').endswith(sys.argv[2])))" "$1" "$2"
}
puts=$(requests_to PUT /pulls/94/merge)
[ $rc -eq 5 ] && grep -q "not merged: .*not sent again: GitHub answered 403" "$T/err" && [ "$puts" -ge 1 ] && [ "$puts" -le 2 ] &&
	! merged | grep -qw 94 && ok "a rate-limited merge is not resent past its intent's 5 s ($puts sent, not merged)" ||
	{ fail "rate-limited merge resent late (exit $rc, $puts sent)"; sed 's/^/#   /' "$T/err"; }
admin POST faults '{"method":"GET","path_regex":"/pulls/13$","rate_limit":{"kind":"primary","reset_in":3600},"times":5}' >/dev/null
$TH github merge --repo acme/backend --pr 13 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 5 ] && grep -q "rate limit" "$T/err" && ok "an hour-long rate limit fails fast with a clear error (exit 5)" ||
	{ fail "primary rate limit (exit $rc)"; sed 's/^/#   /' "$T/err"; }
admin DELETE faults >/dev/null
# The same without x-ratelimit-reset: at least a minute, so not resent at
# once (it was, three times within a second).
pr 99 "$(sha 99)" main bob '["src/aa.c"]' "$APPROVED"; green "$(sha 99)"
admin POST requests/clear >/dev/null
admin POST faults '{"method":"GET","path_regex":"/pulls/99$","rate_limit":{"kind":"primary","omit_reset":true},"times":5}' >/dev/null
$TH github merge --repo acme/backend --pr 99 --target main >"$T/out" 2>"$T/err"; rc=$?
admin DELETE faults >/dev/null
gets=$(requests_to GET /pulls/99)
[ $rc -eq 5 ] && grep -q "rate limit" "$T/err" && [ "$gets" -eq 1 ] &&
	ok "a rate limit without its reset: not resent at once, fails fast (exit 5)" ||
	{ fail "rate limit without reset (exit $rc, $gets GETs)"; sed 's/^/#   /' "$T/err"; }
admin POST faults '{"method":"PUT","path_regex":"/pulls/14/merge","status":502,"times":1}' >/dev/null
$TH github merge --repo acme/backend --pr 14 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 5 ] && grep -q "outcome is unknown" "$T/err" && ok "a 502 on the merge is not retried; outcome reported unknown" ||
	{ fail "merge 502 (exit $rc)"; sed 's/^/#   /' "$T/err"; }
admin DELETE faults >/dev/null
merged | grep -qw 14 && fail "the failed merge was retried" || ok "the failed merge was not retried"

# A token reply without expires_at: refused as malformed, and the token it
# carried revoked all the same.
admin POST requests/clear >/dev/null
admin POST faults '{"method":"POST","path_regex":"access_tokens$","status":201,"body":{"token":"ghs_fake"},"times":1}' >/dev/null
$TH github merge --repo acme/backend --pr 15 --target main >"$T/out" 2>"$T/err"; rc=$?
admin DELETE faults >/dev/null
[ $rc -ne 0 ] && grep -q "github_unavailable.*no expires_at" "$T/err" &&
	ok "a token reply without expires_at: refused (github_unavailable)" ||
	{ fail "token reply without expires_at (exit $rc)"; sed 's/^/#   /' "$T/err"; }
fake_revoked() {
	admin GET requests | $PY -c "
import json, sys
reqs = json.load(sys.stdin)
reqs = reqs['requests'] if isinstance(reqs, dict) else reqs
sys.exit(0 if any(r['method'] == 'DELETE' and r['path'] == '/installation/token' for r in reqs) else 1)"
}
eventually fake_revoked && ok "... and the token it carried is revoked" || fail "the malformed reply's token was not revoked"

# Unknown members are refused, not ignored: a misspelt "params" must not
# become GitHub's default.
unknown_member() { # DESC ENDPOINT BODY NAME
	code=$(curl -s -o "$T/member.json" -w '%{http_code}' --unix-socket "$T/broker.sock" -X POST \
		"http://localhost$2" -d "$3")
	[ "$code" = 400 ] && grep -q "member \\\\\"$4\\\\\" not allowed" "$T/member.json" &&
		ok "$1 with an unknown member: 400, naming it" ||
		{ fail "unknown member in $1 ($code)"; sed 's/^/#   /' "$T/member.json"; }
}
unknown_member "a capability request" /v1/capabilities \
	'{"op":"github.comment","repo":"acme/backend","pr":1,"parms":{"body":"x"}}' parms
unknown_member "a redemption" /v1/redeem '{"capability":"a.b.c","merge_methd":"squash"}' merge_methd

# The other operations, each with its own least permissions.
ALICE="env SOFTHSM2_CONF=$T/alice/hsm/softhsm2.conf $BIN/threshold --signer $T/signer.sock --state $T/state"
AKEY="pkcs11:token=alice;object=alice-key;type=private"
echo '{"allowed_targets":["main"],"time_window":{"tz":"UTC","days":["mon","tue","wed","thu","fri","sat","sun"],"start":"00:00","end":"24:00"}}' >"$T/ops-policy.json"
expect_ok "alice delegates the other operations on acme/backend to coder-1" \
	$ALICE delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" --to coder-1 \
	--allow github.pr.create --allow github.comment --allow github.deployment.create \
	--allow github.workflow.dispatch --repo acme/backend --target main --target release \
	--policy "$T/ops-policy.json" --ttl 1h
admin POST requests/clear >/dev/null
expect_ok "pr create" $TH github pr create --repo acme/backend --head feature-x --base main --title "Add x"
expect_ok "comment" $TH github comment --repo acme/backend --pr 1 --body "Merged by an agent, authorised by alice"
expect_ok "deployment" $TH github deploy --repo acme/backend --ref main --environment staging
expect_ok "workflow dispatch" $TH github dispatch --repo acme/backend --workflow deploy.yml --ref main
expect_fail "policy: a PR against a branch not in allowed_targets" "policy_denied.*allowed_targets" \
	$TH github pr create --repo acme/backend --head feature-x --base release --title "Add y"
expect_fail "a workflow name that would escape its URL path is refused" "bad_request|not_covered|workflow" \
	$TH github dispatch --repo acme/backend --workflow ../../x --ref main
ops_check() {
	admin GET state >"$T/state.json"
	admin GET requests >"$T/req2.json"
	$PY - "$T/state.json" "$T/req2.json" <<'PY' >"$T/ops.check" 2>&1
import json, sys
st = json.load(open(sys.argv[1]))
reqs = json.load(open(sys.argv[2]))
reqs = reqs["requests"] if isinstance(reqs, dict) else reqs
assert len(st["pull_requests_created"]) == 1, st["pull_requests_created"]
assert any("alice" in c.get("body", "") for c in st["comments"]), st["comments"]
assert len(st["deployments"]) == 1 and st["deployments"][0].get("environment") == "staging", st["deployments"]
assert len(st["dispatches"]) == 1, st["dispatches"]
perms = [r["body"]["permissions"] for r in reqs if r["path"].endswith("/access_tokens")]
want = [{"pull_requests": "write", "contents": "read"}, {"issues": "write"},
        {"deployments": "write"}, {"actions": "write"}]
assert perms == want, perms
deleted = [r for r in reqs if r["method"] == "DELETE"]
assert len(deleted) == 4 and all(r["status"] == 204 for r in deleted), deleted
print("ok")
PY
	grep -q '^ok$' "$T/ops.check"
}
eventually ops_check && ok "each operation done at GitHub with only its least permissions, every token revoked" ||
	{ fail "operations at GitHub"; sed 's/^/#   /' "$T/ops.check"; }

# A time window that excludes now (chosen from the clock, never flaky).
h=$(date -u +%H)
if [ "$h" -lt 12 ]; then win='"start":"13:00","end":"14:00"'; else win='"start":"01:00","end":"02:00"'; fi
echo "{\"time_window\":{\"tz\":\"Europe/Paris\",\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"],$win}}" >"$T/night.json"
expect_ok "alice delegates comments to coder-2, within a time window" \
	$ALICE delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" --to coder-2 \
	--allow github.comment --repo acme/backend --policy "$T/night.json" --ttl 1h
chmod 0711 "$T"
expect_fail "outside the time window: refused, naming the local time" "policy_denied.*outside the time window \(.* Europe/Paris\)" \
	setpriv --reuid=65534 --regid=65534 --clear-groups $TH github comment --repo acme/backend --pr 1 --body late

# A delegation that expires while the policy's live checks run (GitHub slow
# to answer): the intent, which the verifier judges at its own time, is not
# written, and nothing is done; the log stays verifiable.
pr 195 "$(sha 195)" main bob '["src/e.c"]' "$APPROVED"; green "$(sha 195)"
expect_ok "alice delegates github.merge to coder-2 for 6 s" \
	$ALICE delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" --to coder-2 \
	--allow github.merge --repo acme/backend --target main --policy "$T/policy.json" --ttl 6s
admin POST faults '{"method":"GET","path_regex":"^/repos/acme/backend/pulls/195$","delay_ms":7000,"times":1}' >/dev/null
expect_fail "the delegation expired during the policy's checks: refused before the intent" \
	"capability_refused.*link 2 \(agent:coder-2\) of the delegation chain expired before the intent could be recorded" \
	setpriv --reuid=65534 --regid=65534 --clear-groups $TH github merge --repo acme/backend --pr 195 --target main
admin DELETE faults >/dev/null
merged | grep -qw 195 && fail "#195 merged on an expired delegation" || ok "... and #195 is not merged"

# The same for a mint: the delegation expires while the signer signs (the
# signer stopped for that while); the mint entry, which the verifier also
# judges at its own time, is not written and the capability not handed out.
t0=$(date +%s)
expect_ok "alice delegates github.merge to coder-2 for 5 s" \
	$ALICE delegate --as alice --key "$AKEY" --pin-file "$T/alice/hsm/user.pin" --to coder-2 \
	--allow github.merge --repo acme/backend --target main --policy "$T/policy.json" --ttl 5s
t1=$(date +%s)
if [ $((t1 - t0)) -le 3 ]; then
	kill -STOP "$(cat "$T/signer.pid")"
	setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -w '\n%{http_code}\n' \
		--unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities \
		-d '{"op":"github.merge","repo":"acme/backend","pr":195,"target":"main"}' >"$T/mint-exp.out" &
	cpid=$!
	while [ "$(date +%s)" -le $((t1 + 6)) ]; do sleep 0.2; done
	kill -CONT "$(cat "$T/signer.pid")"
	wait "$cpid"
	[ "$(tail -1 "$T/mint-exp.out")" = 403 ] &&
		grep -q 'not_covered.*link 2 (agent:coder-2) of the delegation chain expired before the capability could be recorded' "$T/mint-exp.out" &&
		! grep -q '"capability"' "$T/mint-exp.out" &&
		ok "the delegation expired while the capability was signed: refused, no capability, no mint entry" ||
		{ fail "a mint outlasting its delegation"; sed 's/^/#   /' "$T/mint-exp.out"; }
else
	fail "delegating took $((t1 - t0)) s: the 5 s delegation is too close to expiry to test the mint"
fi

# A capability presented by another agent is refused and not spent: it
# still serves the agent it was minted for.
curl -sS --unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities \
	-d '{"op":"github.merge","repo":"acme/backend","pr":91,"target":"main"}' >"$T/cap91.json"
$PY -c 'import json,sys; print(json.dumps({"capability": json.load(open(sys.argv[1]))["capability"]}))' \
	"$T/cap91.json" >"$T/red91.json"
setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -w '\n%{http_code}\n' \
	--unix-socket "$T/broker.sock" -X POST http://localhost/v1/redeem -d "$(cat "$T/red91.json")" >"$T/red91.other"
[ "$(tail -1 "$T/red91.other")" = 403 ] && grep -q 'minted for agent:coder-1' "$T/red91.other" &&
	ok "coder-1's capability presented by coder-2: refused" ||
	{ fail "another agent's capability"; sed 's/^/#   /' "$T/red91.other"; }
code=$(curl -s -o "$T/red91.own" -w '%{http_code}' --unix-socket "$T/broker.sock" -X POST \
	http://localhost/v1/redeem -d @"$T/red91.json")
[ "$code" = 200 ] && merged | grep -qw 91 && ok "... and not spent: coder-1 redeems it and #91 is merged" ||
	{ fail "the capability after another agent presented it ($code)"; sed 's/^/#   /' "$T/red91.own"; }

# Identity from the kernel: a uid that is not an agent is refused.
expect_fail "a uid that is not an agent is refused" "unknown_agent.*uid 65533" \
	setpriv --reuid=65533 --regid=65533 --clear-groups $TH github merge --repo acme/backend --pr 11 --target main
expect_fail "an operation not delegated is refused" "not_covered" \
	$TH github merge --repo acme/frontend --pr 1 --target main

# Loopback TCP: health and metrics, but no agent identity.
expect_ok "health over loopback TCP" curl -sSf "http://127.0.0.1:$TCPPORT/v1/health"
code=$(curl -s -o "$T/tcp.json" -w '%{http_code}' -X POST "http://127.0.0.1:$TCPPORT/v1/capabilities" \
	-d '{"op":"github.merge","repo":"acme/backend","pr":1,"target":"main"}')
[ "$code" = 403 ] && grep -q unknown_agent "$T/tcp.json" && ok "TCP carries no identity: agent endpoints refuse it" ||
	fail "agent endpoint over TCP ($code)"
# Any local user can connect over TCP: 300 idle connections of a user that
# is no agent hold at most 16 of the broker's descriptors, agents are
# still served, and TCP answers again once they are gone.
fds() { ls "/proc/$(cat "$T/broker.pid")/fd" | wc -l; }
fd0=$(fds)
setpriv --reuid=65533 --regid=65533 --clear-groups $PY -c '
import socket, sys, time
held = []
for _ in range(300):
    try:
        held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2))
    except OSError:
        pass
time.sleep(4)
' "$TCPPORT" &
tcpholder=$!
sleep 2
fd1=$(fds)
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/broker.sock" http://localhost/v1/health)
[ $((fd1 - fd0)) -le 20 ] && [ "$code" = 200 ] &&
	ok "300 idle TCP connections take at most 16 descriptors ($((fd1 - fd0)) more), agents still served" ||
	fail "300 idle TCP connections: $fd0 -> $fd1 descriptors, agents' health $code"
wait $tcpholder
eventually curl -sSf -o /dev/null "http://127.0.0.1:$TCPPORT/v1/health" &&
	ok "... and TCP serves again once they are gone" || fail "TCP after the idle connections"
code=$(curl -s -o "$T/bad.json" -w '%{http_code}' --unix-socket "$T/broker.sock" -X POST \
	http://localhost/v1/capabilities -d '{"op":"github.merge","op":1}')
[ "$code" = 400 ] && grep -q 'duplicate member' "$T/bad.json" && ok "a body that is not strict JSON: 400, naming why" ||
	{ fail "strict JSON body ($code)"; cat "$T/bad.json"; }
head -c 70000 /dev/zero | tr '\0' ' ' >"$T/big.json"
code=$(curl -s -o "$T/big.out" -w '%{http_code}' --unix-socket "$T/broker.sock" -X POST \
	http://localhost/v1/capabilities --data-binary @"$T/big.json")
[ "$code" = 413 ] && ok "a body over 64 KiB: 413" || { fail "big body ($code)"; cat "$T/big.out"; }
code=$(curl -s -o "$T/nf.json" -w '%{http_code}' --unix-socket "$T/broker.sock" http://localhost/v1/nothing)
[ "$code" = 404 ] && grep -q '"code":"not_found".*no such endpoint: GET /v1/nothing' "$T/nf.json" &&
	ok "no such endpoint: 404, naming it" || { fail "unknown endpoint ($code)"; cat "$T/nf.json"; }
# Refused before any action, and still in the audit log, each with its reason.
if $PY - "$T/state/audit.db" <<'PY' >"$T/refusals.check" 2>&1
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = [json.loads(b) for (b,) in c.execute("select body from entries where kind='refusal'")]
def has(agent, code, text):
    assert any(e["agent"] == agent and e["code"] == code and text in e["reason"] for e in r), \
        (agent, code, text, [(e["agent"], e["code"], e["reason"]) for e in r])
has("unknown", "unknown_agent", "uid 65533 is not an agent")
has("unknown", "unknown_agent", "use it, not TCP")
has("agent:coder-1", "bad_request", "duplicate member")
has("agent:coder-1", "bad_request", "over 64 KiB")
has("agent:coder-1", "not_found", "no such endpoint: GET /v1/nothing")
print("ok")
PY
then ok "those refusals are recorded: unknown uid, TCP, malformed body, oversized body, no such endpoint"
else fail "early refusals recorded"; sed 's/^/#   /' "$T/refusals.check"; fi

# counts AGENT TEXT -> "ONE_BY_ONE HELD": AGENT's refusals in the log whose
# reason has TEXT, and how many its rate_limited entries whose last reason
# has TEXT stand for.
counts() {
	$PY - "$T/state/audit.db" "$1" "$2" <<'PY'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
agent, text = sys.argv[2], sys.argv[3]
es = [json.loads(b) for (b,) in c.execute("select body from entries where kind='refusal'")]
es = [e for e in es if e["agent"] == agent]
held = [e for e in es if e["code"] == "rate_limited" and text in e["reason"]]
for e in held:
    assert " were not recorded one by one" in e["reason"], e
print(len([e for e in es if e["code"] != "rate_limited" and text in e["reason"]]),
      sum(int(e["reason"].split()[0]) for e in held))
PY
}
# flood N CODE CURL-ARGS...: N requests in a row; prints how many were
# answered CODE.
flood() {
	_n=$1 _want=$2 _i=0 _got=0
	shift 2
	while [ $_i -lt "$_n" ]; do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "$@")" = "$_want" ] && _got=$((_got + 1))
		_i=$((_i + 1))
	done
	echo $_got
}

# A caller without identity cannot flood the log: 100 refusals over TCP in
# a row are each answered, but recorded one by one only up to the burst
# (32, then 4 a second); the others are counted into entries of code
# rate_limited, each written with the next refusal recorded.  Every one of
# them is accounted for.
unknowns() { counts unknown "use it, not TCP"; }
set -- $(unknowns); one0=$1 held0=$2
answered=$(flood 100 403 -X POST "http://127.0.0.1:$TCPPORT/v1/capabilities" -d '{}')
set -- $(unknowns); one1=$1
[ $answered -eq 100 ] && [ $((one1 - one0)) -ge 20 ] && [ $((one1 - one0)) -le 90 ] &&
	ok "100 refusals of a caller without identity: all answered, $((one1 - one0)) recorded one by one" ||
	fail "refusal flood: $answered answered, $((one1 - one0)) recorded one by one"
curl -s "http://127.0.0.1:$TCPPORT/metrics" | grep -q '^threshold_refusals_aggregated_total [1-9]' &&
	ok "metrics count the refusals held back" || fail "threshold_refusals_aggregated_total"
sleep 1
curl -s -o /dev/null -X POST "http://127.0.0.1:$TCPPORT/v1/capabilities" -d '{}'
set -- $(unknowns); one2=$1 held2=$2
[ $((one2 - one0 + held2 - held0)) -eq 101 ] && [ $((held2 - held0)) -gt 0 ] &&
	ok "... the rest recorded by number, with the last reason: all 101 accounted for" ||
	fail "refusals accounted for: $((one2 - one0)) one by one + $((held2 - held0)) held, of 101"

# An agent's refusals have a limit of their own, looser (64 at once, 8 a
# second) and apart from the callers' without identity: 150 malformed
# requests from coder-1 are all answered, and all accounted for, one by one
# or by number in rate_limited entries that name the agent.
mine() { counts agent:coder-1 "invalid JSON"; }
set -- $(mine); one0=$1 held0=$2
answered=$(flood 150 400 --unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities \
	--data-binary 'not-json')
set -- $(mine); one1=$1
[ $answered -eq 150 ] && [ $((one1 - one0)) -ge 30 ] && [ $((one1 - one0)) -lt 150 ] &&
	ok "150 refusals of an agent: all answered, $((one1 - one0)) recorded one by one" ||
	fail "agent's refusal flood: $answered answered, $((one1 - one0)) recorded one by one"
sleep 1
curl -s -o /dev/null --unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities --data-binary 'not-json'
set -- $(mine); one2=$1 held2=$2
[ $((one2 - one0 + held2 - held0)) -eq 151 ] && [ $((held2 - held0)) -gt 0 ] &&
	ok "... the rest recorded by number against the agent: all 151 accounted for" ||
	fail "agent's refusals accounted for: $((one2 - one0)) one by one + $((held2 - held0)) held, of 151"
# The same with a reason of 200 two-byte characters (a capability whose
# header has such a member): the reason kept for the held ones, cut, was
# no longer UTF-8, so the entry for them could not be written, and every
# refusal of the agent admitted after them went unrecorded.
$PY - >"$T/utf8cap.json" <<'PY'
import base64, json
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
hdr = json.dumps({"x" + "\u00e9" * 200: 1}, ensure_ascii=False).encode()
print(json.dumps({"capability": b(hdr) + "." + b(b"{}") + "." + b(b"sig")}))
PY
wide() { counts agent:coder-1 "malformed capability: header member"; }
set -- $(wide); one0=$1 held0=$2
answered=$(flood 150 403 --unix-socket "$T/broker.sock" -X POST http://localhost/v1/redeem \
	-H 'Content-Type: application/json' --data-binary @"$T/utf8cap.json")
sleep 1
curl -s -o /dev/null --unix-socket "$T/broker.sock" -X POST http://localhost/v1/redeem \
	-H 'Content-Type: application/json' --data-binary @"$T/utf8cap.json"
set -- $(wide); one2=$1 held2=$2
[ $answered -eq 150 ] && [ $((one2 - one0 + held2 - held0)) -eq 151 ] && [ $((held2 - held0)) -gt 0 ] &&
	ok "151 refusals with a 450-byte UTF-8 reason: all accounted for" ||
	fail "UTF-8 reasons accounted for: $answered answered, $((one2 - one0)) one by one + $((held2 - held0)) held, of 151"

# Connections to GitHub are reused across calls.
$PY - "$T/req.json" <<'PY' >"$T/conn.check" 2>&1
import json, sys
reqs = json.load(open(sys.argv[1]))
reqs = reqs["requests"] if isinstance(reqs, dict) else reqs
conns = {r["connection_id"] for r in reqs}
assert len(conns) < len(reqs), (len(conns), len(reqs))
print("ok", len(reqs), "requests on", len(conns), "connections")
PY
grep -q '^ok' "$T/conn.check" && ok "connection reuse: $(cat "$T/conn.check")" || { fail "connection reuse"; sed 's/^/#   /' "$T/conn.check"; }

# A revocation GitHub does not confirm is recorded as unknown, never as done.
admin POST faults '{"method":"DELETE","path_regex":"^/installation/token$","status":500,"times":3}' >/dev/null
pr 17 "$(sha 17)" main bob '["src/q.c"]' "$APPROVED"; green "$(sha 17)"
pr 16 "$(sha 16)" main bob '["src/p.c"]' "$APPROVED"; green "$(sha 16)"
expect_ok "merge while revocation fails" $TH github merge --repo acme/backend --pr 16 --target main
eventually grep -q "revocation unknown" "$T/broker.log" && ok "failed revocation recorded as 'revocation unknown'" ||
	fail "failed revocation recorded"
admin DELETE faults >/dev/null

expect_ok "metrics" sh -c "curl -sSf --unix-socket $T/broker.sock http://localhost/metrics | grep -q 'threshold_token_revocations_total{result=\"revoked\"} [1-9]' && curl -sSf --unix-socket $T/broker.sock http://localhost/metrics | grep -q 'threshold_token_revocations_total{result=\"unknown\"} 1'"

# A capability minted before a restart is not honoured after it: the store
# does not sync each spend, so a power loss may forget the last ones.
curl -sS --unix-socket "$T/broker.sock" -X POST http://localhost/v1/capabilities \
	-d '{"op":"github.merge","repo":"acme/backend","pr":17,"target":"main"}' >"$T/old-cap.json"
$PY -c 'import json,sys; print(json.dumps({"capability": json.load(open(sys.argv[1]))["capability"]}))' \
	"$T/old-cap.json" >"$T/old-red.json"
stop_broker
sleep 1
start_broker || fail "thresholdd restarts"
code=$(curl -s -o "$T/old-red.out" -w '%{http_code}' --unix-socket "$T/broker.sock" -X POST \
	http://localhost/v1/redeem -d @"$T/old-red.json")
[ "$code" = 403 ] && grep -q "minted before this broker started" "$T/old-red.out" &&
	ok "a capability minted before a restart is refused after it" ||
	{ fail "capability from before a restart ($code)"; sed 's/^/#   /' "$T/old-red.out"; }
pr 17 "$(sha 17)" main bob '["src/q.c"]' "$APPROVED"; green "$(sha 17)"
expect_ok "a capability minted after the restart is honoured" $TH github merge --repo acme/backend --pr 17 --target main

# The TPM away: the signer answers, but the broker's TPM keys do not, so
# health says 503 and names one; back, health is 200 again.
health() { curl -s -o "$T/health.out" -w '%{http_code}' --unix-socket "$T/broker.sock" http://localhost/v1/health; }
"$FIX/swtpm-stop" "$T"
code=$(health)
[ "$code" = 503 ] && grep -q 'the \(github-app\|attestation\) key (tpm) does not answer' "$T/health.out" &&
	ok "health says 503 while the TPM is away, naming a key" ||
	{ fail "health with the TPM away ($code)"; sed 's/^/#   /' "$T/health.out"; }
"$FIX/swtpm-start" "$T" >/dev/null
healthy() { [ "$(health)" = 200 ]; }
eventually healthy && ok "health is 200 once the TPM is back" ||
	{ fail "health after the TPM came back"; sed 's/^/#   /' "$T/health.out"; }

# One agent's 32 idle connections are all it is served at once: its next
# request is answered 503 busy, saying why, while another agent is served.
HOLD='
import socket, sys, time
held = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    held.append(s)
time.sleep(float(sys.argv[3]))
'
/usr/bin/python3 -c "$HOLD" "$T/broker.sock" 32 25 &
holder=$!
abusy() { [ "$(health)" = 503 ] && grep -q 'busy: agent:coder-1 has 33 connections open' "$T/health.out"; }
if eventually abusy; then
	grep -q 'busy: agent:coder-1 has 33 connections open, thresholdd serves 32 of one agent at once' "$T/health.out" &&
		ok "an agent past 32 connections: 503 busy, saying why" ||
		{ fail "agent busy message"; sed 's/^/#   /' "$T/health.out"; }
	code=$(setpriv --reuid=65534 --regid=65534 --clear-groups curl -s -o /dev/null -w '%{http_code}' \
	    --unix-socket "$T/broker.sock" http://localhost/v1/health)
	[ "$code" = 200 ] && ok "... while another agent is served" || fail "another agent while one held 32 (got $code)"
else
	fail "32 idle connections of one agent: no busy answer ($(cat "$T/health.out"))"
fi
kill $holder 2>/dev/null; wait $holder 2>/dev/null
# Past 40 of an agent's connections, a new one is closed as soon as it is
# accepted: idle ones cannot take every other agent's connections.
/usr/bin/python3 "$ROOT/tests/tools/conn_limit.py" "unix:$T/broker.sock" 40 /v1/health "POST /v1/x-41st" >"$T/greedy" 2>&1
grep -q "^closed HTTP/1.1 503 .*agent:coder-1 has 40 connections open" "$T/greedy" && grep -q "connection from agent:coder-1 closed: it has 40 open, at most 40" "$T/broker.log" &&
	ok "an agent's 41st connection is closed at once, and logged" || fail "an agent's 41st connection ($(cat "$T/greedy"))"
grep -q "x-41st" "$T/broker.log" "$T/state/audit.db" && fail "the 41st connection's request was handled" ||
	ok "... and the request it had sent is not handled"
/usr/bin/python3 -c "$HOLD" "$T/broker.sock" 32 20 &
holder=$!
# 64 idle connections, 32 of each agent, hold every thread the broker
# gives its socket: the next request is answered 503 busy, saying why, and
# recorded (not closed unanswered); once they close, it is served again.
setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c "$HOLD" "$T/broker.sock" 32 20 &
holder2=$!
# (Exactly 65 once the last test's connections are closed and all these held.)
busy() { [ "$(health)" = 503 ] && grep -q 'busy: 65 connections open' "$T/health.out"; }
if eventually busy; then
	grep -q 'busy: 65 connections open, thresholdd serves 64 at once' "$T/health.out" &&
		ok "past 64 connections: 503 busy, saying why" ||
		{ fail "busy message"; sed 's/^/#   /' "$T/health.out"; }
	$TH github merge --repo acme/backend --pr 12 --target main >"$T/out" 2>"$T/err" &&
		fail "a merge while busy went through" ||
		{ grep -q "busy" "$T/err" && ok "a request while busy is refused, saying busy" ||
		  { fail "request while busy"; sed 's/^/#   /' "$T/err"; }; }
else
	fail "64 idle connections: no busy answer ($(cat "$T/health.out"))"
fi
kill $holder $holder2 2>/dev/null; wait $holder $holder2 2>/dev/null
eventually healthy && ok "once they close, served again" || fail "health after the idle connections closed"
$PY - "$T/state/audit.db" <<'PY' && ok "busy refusals are recorded" || fail "busy refusal in the log"
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = [json.loads(b) for (b,) in c.execute("select body from entries where kind='refusal'")]
sys.exit(0 if any(e["code"] == "busy" and e["agent"] == "agent:coder-1" and
                  "65 connections open" in e["reason"] for e in r) and
            any(e["code"] == "busy" and e["agent"] == "agent:coder-1" and
                "agent:coder-1 has 33 connections open" in e["reason"] for e in r) else 1)
PY

# An export read slowly (its pipe full, the export held among the entries)
# while the broker appends refusals and their checkpoints: one snapshot,
# which verifies (three SELECTs apart gave checkpoints over entries the
# export did not hold).
count() { $PY -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute('select count(*) from $2').fetchone()[0])" "$1"; }
cp0=$(count "$T/state/audit.db" checkpoints)
($BIN/threshold audit export --db "$T/state/audit.db"; echo "rc=$?" >"$T/live.rc") |
    (sleep 3; cat >"$T/live.jsonl") &
epid=$!
sleep 0.5
i=0
while [ $i -lt 12 ]; do
	$TH github merge --repo acme/backend --pr 2 --target main >/dev/null 2>&1
	i=$((i + 1))
done
wait $epid
cp1=$(count "$T/state/audit.db" checkpoints)
inlive=$(grep -c '"type":"checkpoint"' "$T/live.jsonl")
[ "$(wc -c <"$T/live.jsonl")" -gt 200000 ] && [ "$cp1" -gt "$cp0" ] && [ "$inlive" -le "$cp0" ] &&
	grep -q 'rc=0' "$T/live.rc" && ok "export held mid-log while $((cp1 - cp0)) checkpoints were added: holds the log as it was" ||
	fail "live export: $(wc -c <"$T/live.jsonl") bytes, checkpoints $cp0 -> $cp1, $inlive exported, $(cat "$T/live.rc")"
expect_ok "... and that export verifies" $BIN/threshold audit verify "$T/live.jsonl" --root "$T/root.pem"

# The configuration: docs/api.md's example is read as it is (its comments
# after values were refused as second values), stopping only where a
# device is missing; a directive given twice is refused, naming the lines.
mkdir -p "$T/doc-state"
awk '/^## Configuration/ {c = 1} c && /^```/ {f = !f; if (!f) exit; next} f' "$ROOT/docs/api.md" |
    sed "s|/run/threshold/signer.sock|$T/no-signer.sock|; s|/run/threshold|$T|; s|/var/lib/threshold|$T/doc-state|" >"$T/doc.conf"
"$BIN/thresholdd" -f "$T/doc.conf" >"$T/doc.log" 2>&1
grep -q "no-signer.sock" "$T/doc.log" && ! grep -q "doc.conf:" "$T/doc.log" &&
	ok "docs/api.md's example configuration is read whole (it stops at the missing signer)" ||
	{ fail "docs/api.md's example configuration"; sed 's/^/#   /' "$T/doc.log"; }
printf 'socket-mode 0600\nlisten %s\nsocket-mode 0666\n' "$T/x.sock" >"$T/twice.conf"
expect_fail "a directive given twice is refused, naming both lines" \
	'twice.conf:3: "socket-mode" given twice \(lines 1 and 3\)' "$BIN/thresholdd" -f "$T/twice.conf"

# Signer down: nothing is authorised and nothing reaches GitHub.
"$FIX/signer-stop" "$T" || fail "the signer stops on SIGTERM"
admin POST requests/clear >/dev/null
$TH github merge --repo acme/backend --pr 12 --target main >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 5 ] && grep -q "signer" "$T/err" && ok "signer down: refused (exit 5)" || { fail "signer down (exit $rc)"; sed 's/^/#   /' "$T/err"; }
n=$(admin GET requests | $PY -c "import json,sys;r=json.load(sys.stdin);r=r['requests'] if isinstance(r,dict) else r;print(len(r))")
[ "$n" = 0 ] && ok "signer down: no request reached GitHub" || fail "signer down: $n requests reached GitHub"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$T/broker.sock" http://localhost/v1/health)
[ "$code" = 503 ] && ok "health says 503 while the signer is down" || fail "health with signer down ($code)"

stop_broker
done_testing
