#!/usr/bin/env bash
# qtsp config check (each problem on its own line, exit 1; ok exit 0), SIGHUP
# reload of every worker (a new policy answers on every worker; the server
# never stops answering), a refused reload (a broken policy: the reason is
# logged, the workers keep the old policy), the policy digest that keeps the
# CLI from running with other policies than the server silently, and the
# single-process server refusing a reload.
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
cp -a "$H/policies" "$T_DIR/good-policies"
cp "$H/qtsp.yaml" "$T_DIR/good-qtsp.yaml"
restore() { rm -rf "$H/policies"; cp -a "$T_DIR/good-policies" "$H/policies"; cp "$T_DIR/good-qtsp.yaml" "$H/qtsp.yaml"; }

# 1. config check
check "config check: a fresh home passes (exit 0)" "$QTSP_BIN" config check --home "$H"
check_grep "config check: says ok with the digest" "^config ok: qtsp.yaml and [0-9]+ policies load \(sha256:[0-9a-f]{64}\)$" <("$QTSP_BIN" config check --home "$H")
check "config check: --home before the verb" "$QTSP_BIN" --home "$H" config check
echo "colour: blue" >>"$H/policies/crl.yaml"
sed -i 's/^max_hold: 48h$/max_hold: 48x/' "$H/policies/suspension.yaml"
printf 'name: [unclosed\n' >"$H/policies/root-ca.yaml"
rc=0; "$QTSP_BIN" config check --home "$H" >"$T_DIR/cc.out" 2>"$T_DIR/cc.err" || rc=$?
check_eq "config check: broken policies: exit 1" 1 "$rc"
check_grep "config check: names crl.yaml's unknown key with its line" "^qtsp: config check: policies/crl.yaml: .*crl.yaml:[0-9]+:[0-9]+: colour: unknown key" "$T_DIR/cc.err"
check_grep "config check: names root-ca.yaml's YAML error" "^qtsp: config check: policies/root-ca.yaml: .*root-ca.yaml:[0-9]+" "$T_DIR/cc.err"
check_grep "config check: counts the problems" "^qtsp: config check: [2-9] problems$" "$T_DIR/cc.err"
check_not "config check: prints no 'config ok'" grep -q "config ok" "$T_DIR/cc.out"
restore
sed -i 's/^max_hold: 48h$/max_hold: 48x/' "$H/policies/suspension.yaml"
rc=0; "$QTSP_BIN" config check --home "$H" >/dev/null 2>"$T_DIR/cc.err" || rc=$?
check_eq "config check: a policy only serve's loader reads (suspension.yaml): exit 1" 1 "$rc"
check_grep "config check: ... names the file, line and value" "suspension.yaml:[0-9]+:[0-9]+: max_hold: '48x' is not a duration" "$T_DIR/cc.err"
restore
echo "listen: [" >>"$H/qtsp.yaml"
rc=0; "$QTSP_BIN" config check --home "$H" >/dev/null 2>"$T_DIR/cc.err" || rc=$?
check_eq "config check: a broken qtsp.yaml: exit 1" 1 "$rc"
check_grep "config check: ... names qtsp.yaml" "^qtsp: config check: qtsp.yaml: " "$T_DIR/cc.err"
restore
rc=0; "$QTSP_BIN" config frobnicate --home "$H" >/dev/null 2>&1 || rc=$?
check_eq "config with an unknown sub-command: exit 2" 2 "$rc"

# 2. serve with worker processes; a policy change seen over HTTP: the CRL's max-age
maxages() { # N fresh connections -> sorted unique Cache-Control max-age values of GET /crl/qualified.crl
  for _ in $(seq 1 "$1"); do
    curl -s -D - -o /dev/null --max-time 10 "$BASE/crl/qualified.crl" | tr -d '\r' |
      sed -n 's/^[Cc]ache-[Cc]ontrol:.*max-age=\([0-9]*\).*/\1/p'
  done | sort -u | tr '\n' ' ' | sed 's/ $//'
}
check "serve starts (two worker processes)" start_server "$H" --processes 2
SUP=$SERVER_PID
old_workers=$(ps -o pid= --ppid "$SUP" | tr -d ' ' | sort -n | tr '\n' ' ')
check_eq "max-age 60 from every worker before the reload" 60 "$(maxages 20)"
check_grep "config check: the running server uses these policies" "^the running server uses these policies$" <("$QTSP_BIN" config check --home "$H")
check_not "audit verify: no warning while the policies agree" grep -q "warning" <("$QTSP_BIN" audit verify --home "$H" 2>&1)
sed -i 's/^http_max_age: 60s$/http_max_age: 17s/' "$H/policies/crl.yaml"
check_grep "after an edit: a verb warns the server runs other policies" "warning: the server running on .* uses other policies" <("$QTSP_BIN" audit verify --home "$H" 2>&1)
check_grep "after an edit: config check says to reload" "^the running server uses other policies: reload it" <("$QTSP_BIN" config check --home "$H")
# the server never stops answering while it reloads
(
  fails=0
  for _ in $(seq 1 150); do
    [[ $(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$BASE/health") == 200 ]] || fails=$((fails + 1))
    sleep 0.02
  done
  echo "$fails" >"$T_DIR/fails"
) &
LOOP=$!
sleep 0.2
kill -HUP "$SUP"
for _ in $(seq 1 300); do grep -q "reload done" "$T_DIR/serve.err" && break; sleep 0.1; done
wait "$LOOP"
check_grep "SIGHUP: the reload is logged as done" "reload done: every worker runs the new policies" "$T_DIR/serve.err"
check_grep "SIGHUP: worker 0 reloaded" "worker 0 reloaded" "$T_DIR/serve.err"
check_grep "SIGHUP: worker 1 reloaded" "worker 1 reloaded" "$T_DIR/serve.err"
check_eq "no request failed during the reload" 0 "$(cat "$T_DIR/fails")"
check "the supervisor still runs" kill -0 "$SUP"
for _ in $(seq 1 100); do
  now=$(ps -o pid= --ppid "$SUP" | wc -l)
  ((now == 2)) && break
  sleep 0.1 # the replaced workers drain
done
new_workers=$(ps -o pid= --ppid "$SUP" | tr -d ' ' | sort -n | tr '\n' ' ')
check_eq "2 worker processes after the reload" 2 "$(ps -o pid= --ppid "$SUP" | wc -l)"
check "the workers are new processes" test "$old_workers" != "$new_workers"
check_eq "max-age 17 from every worker after the reload" 17 "$(maxages 20)"
check_not "after the reload: no warning from a verb" grep -q "warning" <("$QTSP_BIN" audit verify --home "$H" 2>&1)

# 3. a refused reload: a broken policy; the workers keep the old one
echo "colour: blue" >>"$H/policies/crl.yaml"
sed -i 's/^http_max_age: 17s$/http_max_age: 5s/' "$H/policies/crl.yaml"
before=$(ps -o pid= --ppid "$SUP" | tr -d ' ' | sort -n | tr '\n' ' ')
kill -HUP "$SUP"
for _ in $(seq 1 300); do grep -q "reload refused" "$T_DIR/serve.err" && break; sleep 0.1; done
check_grep "a broken policy: the reload is refused" "reload refused: the configuration does not load" "$T_DIR/serve.err"
check_grep "... with the reason (file, line, key)" "config check: policies/crl.yaml: .*crl.yaml:[0-9]+:[0-9]+: colour: unknown key" "$T_DIR/serve.err"
check "... the server still runs" kill -0 "$SUP"
check_eq "... the same workers serve" "$before" "$(ps -o pid= --ppid "$SUP" | tr -d ' ' | sort -n | tr '\n' ' ')"
check_eq "... with the old policy (max-age 17)" 17 "$(maxages 10)"
check_grep "... and a verb warns of the difference" "uses other policies" <("$QTSP_BIN" audit verify --home "$H" 2>&1)
rc=0; stop_server || rc=$?
check_eq "SIGTERM after reloads exits 0" 0 "$rc"
check_not "no worker left" pgrep -P "$SUP"
check_not "no sanitizer report" grep -Eq "Sanitizer|runtime error:" "$T_DIR/serve.err"

# 4. a single-process server refuses a reload with the reason, and keeps serving
restore
check "serve --processes 1 starts" start_server "$H" --processes 1
kill -HUP "$SERVER_PID"
for _ in $(seq 1 50); do grep -q "reload refused" "$T_DIR/serve.err" && break; sleep 0.1; done
check_grep "single process: SIGHUP refused with the reason" "reload refused: a single-process server" "$T_DIR/serve.err"
check_eq "single process: still serving" ok "$(curl -s --max-time 10 "$BASE/health")"
rc=0; stop_server || rc=$?
check_eq "single process: SIGTERM exits 0" 0 "$rc"
finish
