#!/usr/bin/env bash
# serve --processes N with real clients (curl, openssl ts, openssl ocsp):
# one "listening on", N worker children of the supervisor, work spread over
# both workers, /metrics merged with process="i" labels, a status change in
# one worker seen by the other at once, a killed worker restarted, SIGTERM
# exits 0 leaving no worker, a worker that cannot start stops everything,
# usage and config errors, http.processes in qtsp.yaml.
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN # the PIN comes from the home's pin file
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml" # no key pool: nothing runs in the background
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
P=$H/public
cat "$P/issuing-ca.crt" "$P/root-ca.crt" >"$T_DIR/chain.pem"
head -c 10000 /dev/urandom >"$T_DIR/data.bin"

children() { ps --ppid "$1" -o pid= | tr -d ' ' | sort -n | tr '\n' ' ' | sed 's/ $//'; }
nchildren() { ps --ppid "$1" -o pid= | wc -l; }
health_n() { # N: how many of N fresh connections get 200 from /health
  local ok=0
  for _ in $(seq 1 "$1"); do
    [[ $(curl -s -o /dev/null --max-time 15 -w '%{http_code}' "$BASE/health") == 200 ]] && ok=$((ok + 1))
  done
  echo "$ok"
}
# clean_log EXPECTED_DEATHS: no sanitizer report in the server's log, and
# exactly that many worker deaths logged by the supervisor
clean_log() {
  check_not "no sanitizer report in the server log" grep -Eq "Sanitizer|runtime error:" "$T_DIR/serve.err"
  check_eq "worker deaths logged: $1" "$1" "$(grep -Ec 'worker [0-9]+ \(pid [0-9]+\) (was killed|exited)' "$T_DIR/serve.err")"
}
worker_pid() { sed -n "s/.*qtsp worker $1 (pid \([0-9]*\)) serving.*/\1/p" "$T_DIR/serve.err" | tail -n1; }
metric() { # file process name{labels-after-process}: the sample's value (0 when absent)
  local v
  v=$(grep -F "$3{process=\"$2\"$4} " "$1" | awk '{print $2}' | head -n1)
  echo "${v:-0}"
}
# ocsp_status FILE SERIAL -> "status[ reason]" from an openssl ocsp run's output
ocsp_status() {
  grep -q "Response verify OK" "$1" || { echo "unverified"; return; }
  local st r
  st=$(sed -n "s|^$T_DIR/$2.pem: ||p" "$1" | head -1)
  r=$(sed -n 's/^\s*Reason: //p' "$1" | head -1)
  echo "$st${r:+ $r}"
}
ossl() { # SERIAL -> "status[ reason]" from openssl ocsp -url (POST, nonce, verified)
  openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$1.pem" -url "$BASE/ocsp" \
    -CAfile "$T_DIR/chain.pem" -resp_text >"$T_DIR/o.txt" 2>&1
  ocsp_status "$T_DIR/o.txt" "$1"
}
oget() { # SERIAL -> "status[ reason]" from GET /ocsp/<base64> (the cached path), verified
  curl -s --max-time 15 -o "$T_DIR/get.der" "$BASE/ocsp/$OGET_PATH"
  openssl ocsp -respin "$T_DIR/get.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$1.pem" \
    -CAfile "$T_DIR/chain.pem" -resp_text >"$T_DIR/g.txt" 2>&1
  ocsp_status "$T_DIR/g.txt" "$1"
}

# 1. two workers under one supervisor, one "listening on"
check "serve --processes 2 starts" start_server "$H" --processes 2
check_eq "'listening on' printed once" 1 "$(grep -c '^listening on ' "$T_DIR/serve.out")"
check_eq "2 worker processes are children of the supervisor" 2 "$(nchildren "$SERVER_PID")"
W0=$(worker_pid 0) W1=$(worker_pid 1)
check_eq "the children are workers 0 and 1 of the log" "$(printf '%s\n' "$W0" "$W1" | sort -n | tr '\n' ' ' | sed 's/ $//')" "$(children "$SERVER_PID")"
check_eq "/health: 200 on 40 fresh connections" 40 "$(health_n 40)"

# 3 (first half). issuance through the RA API, OCSP good
S=$(issue 11111111)
check "certificate issued through the RA API" test -s "$T_DIR/$S.pem"
check_eq "issued certificate: openssl ocsp -url says good" good "$(ossl "$S")"

# 2. TSA and OCSP over fresh connections land on both workers; merged /metrics
openssl ts -query -data "$T_DIR/data.bin" -sha256 -cert -out "$T_DIR/q.tsq" 2>/dev/null
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S.pem" -no_nonce -reqout "$T_DIR/oreq.der" >/dev/null 2>&1
stamps=0 answers=0
for i in $(seq 1 20); do
  code=$(curl -s --max-time 15 -o "$T_DIR/r.tsr" -w '%{http_code}' -H 'Content-Type: application/timestamp-query' \
    --data-binary @"$T_DIR/q.tsq" "$BASE/tsa")
  [[ $code == 200 ]] && openssl ts -verify -in "$T_DIR/r.tsr" -queryfile "$T_DIR/q.tsq" \
    -CAfile "$P/root-ca.crt" >/dev/null 2>&1 && stamps=$((stamps + 1))
  code=$(curl -s --max-time 15 -o "$T_DIR/ores.der" -w '%{http_code}' -H 'Content-Type: application/ocsp-request' \
    --data-binary @"$T_DIR/oreq.der" "$BASE/ocsp")
  [[ $code == 200 ]] && openssl ocsp -respin "$T_DIR/ores.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S.pem" \
    -CAfile "$T_DIR/chain.pem" 2>&1 | grep -q ": good" && answers=$((answers + 1))
  ((i == 1)) && cp "$T_DIR/r.tsr" "$T_DIR/first.tsr"
done
check_eq "20 POST /tsa stamps pass openssl ts -verify" 20 "$stamps"
check_eq "20 POST /ocsp answers good, verified by openssl ocsp -respin" 20 "$answers"
sleep 1.2 # every worker has published its figures since
curl -s "$BASE/metrics" >"$T_DIR/m.txt"
check_grep "/metrics: qtsp_http_requests_total from process 0" '^qtsp_http_requests_total\{process="0",' "$T_DIR/m.txt"
check_grep "/metrics: qtsp_http_requests_total from process 1" '^qtsp_http_requests_total\{process="1",' "$T_DIR/m.txt"
t0=$(metric "$T_DIR/m.txt" 0 qtsp_http_requests_total ',route="tsa",status="200"')
t1=$(metric "$T_DIR/m.txt" 1 qtsp_http_requests_total ',route="tsa",status="200"')
check "TSA stamps served by both workers ($t0 + $t1)" test "$t0" -gt 0 -a "$t1" -gt 0
check_eq "TSA stamps counted over the workers add up to 20" 20 $((t0 + t1))
o0=$(metric "$T_DIR/m.txt" 0 qtsp_http_requests_total ',route="ocsp_post",status="200"')
o1=$(metric "$T_DIR/m.txt" 1 qtsp_http_requests_total ',route="ocsp_post",status="200"')
check "OCSP POSTs served by both workers ($o0 + $o1)" test "$o0" -gt 0 -a "$o1" -gt 0
check_eq "no HELP/TYPE line twice" "" "$(grep '^# ' "$T_DIR/m.txt" | sort | uniq -d)"
check_eq "# TYPE qtsp_http_requests_total exactly once" 1 "$(grep -c '^# TYPE qtsp_http_requests_total ' "$T_DIR/m.txt")"
check_eq "every sample carries a process label" 0 "$(grep -v '^#' "$T_DIR/m.txt" | grep -cv '{process="[01]"')"
both=0
for _ in $(seq 1 8); do # a scrape answered by either worker shows both
  curl -s --max-time 15 "$BASE/metrics" >"$T_DIR/m2.txt"
  grep -q '^qtsp_http_requests_total{process="0",' "$T_DIR/m2.txt" &&
    grep -q '^qtsp_http_requests_total{process="1",' "$T_DIR/m2.txt" && both=$((both + 1))
done
check_eq "8 more scrapes on fresh connections all merge both workers" 8 "$both"

# 3. a hold made through one worker is seen by every worker at once
b64=$(base64 -w0 "$T_DIR/oreq.der")
OGET_PATH=$(printf '%s' "$b64" | sed 's|/|%2F|g; s|+|%2B|g; s|=|%3D|g')
good=0
for _ in $(seq 1 6); do [[ $(oget "$S") == good ]] && good=$((good + 1)); done
check_eq "GET /ocsp before the hold: 6 of 6 good (fills both workers' caches)" 6 "$good"
sleep 1.2 # OCSP counts of both workers before the hold
curl -s "$BASE/metrics" >"$T_DIR/m3.txt"
s0=$(metric "$T_DIR/m3.txt" 0 qtsp_ocsp_requests_total ',result="successful"')
s1=$(metric "$T_DIR/m3.txt" 1 qtsp_ocsp_requests_total ',result="successful"')
api POST "/ra/v1/certificates/$S/hold" "$HOTLINE" '{"caller_verification":"lost phone"}' >/dev/null
check_eq "hold through the RA API: 200" 200 "$(status)"
held=0 cached=0
for _ in $(seq 1 10); do
  [[ $(ossl "$S") == "revoked certificateHold" ]] && held=$((held + 1))
  [[ $(oget "$S") == "revoked certificateHold" ]] && cached=$((cached + 1))
done
check_eq "on hold: 10 of 10 openssl ocsp -url answers revoked certificateHold" 10 "$held"
check_eq "on hold: 10 of 10 GET answers (cached path) revoked certificateHold" 10 "$cached"
sleep 1.2
curl -s "$BASE/metrics" >"$T_DIR/m4.txt"
n0=$(metric "$T_DIR/m4.txt" 0 qtsp_ocsp_requests_total ',result="successful"')
n1=$(metric "$T_DIR/m4.txt" 1 qtsp_ocsp_requests_total ',result="successful"')
check "both workers answered after the hold (+$((n0 - s0)) / +$((n1 - s1)))" test $((n0 - s0)) -gt 0 -a $((n1 - s1)) -gt 0
check_eq "the 20 answers after the hold are counted over the workers" 20 $((n0 - s0 + n1 - s1))

# 4. kill -9 a worker: the supervisor restarts it, the service keeps answering
kill -KILL "$W0"
ok=$(health_n 20)
check_eq "/health: 200 on 20 fresh connections during and after the restart" 20 "$ok"
NEW=
for _ in $(seq 1 100); do
  NEW=$(worker_pid 0)
  [[ -n $NEW && $NEW != "$W0" && $(nchildren "$SERVER_PID") == 2 ]] && break
  sleep 0.1
done
check_grep "supervisor logs that worker 0 was killed" "worker 0 \\(pid $W0\\) was killed by signal 9" "$T_DIR/serve.err"
check_grep "supervisor logs the restart" "worker 0 restarted \\(pid [0-9]+\\)" "$T_DIR/serve.err"
check "a new worker 0 ($NEW) replaced $W0" test -n "$NEW" -a "$NEW" != "$W0"
check_eq "children are the new worker 0 and worker 1" "$(printf '%s\n' "$NEW" "$W1" | sort -n | tr '\n' ' ' | sed 's/ $//')" "$(children "$SERVER_PID")"
check "the killed pid is gone" test ! -e "/proc/$W0"
check_eq "/health: 200 on 20 more fresh connections" 20 "$(health_n 20)"
held=0
for _ in $(seq 1 4); do [[ $(ossl "$S") == "revoked certificateHold" ]] && held=$((held + 1)); done
check_eq "after the restart: 4 of 4 OCSP answers still revoked certificateHold" 4 "$held"
sleep 1.2
curl -s "$BASE/metrics" >"$T_DIR/m5.txt"
check_grep "/metrics after the restart: process 0 again" '^qtsp_http_requests_total\{process="0",' "$T_DIR/m5.txt"
check_grep "/metrics after the restart: process 1" '^qtsp_http_requests_total\{process="1",' "$T_DIR/m5.txt"
check_eq "'listening on' still printed once" 1 "$(grep -c '^listening on ' "$T_DIR/serve.out")"

# 5. SIGTERM to the supervisor: exit 0, no worker left
PIDS=$(children "$SERVER_PID")
rc=0
stop_server || rc=$?
clean_log 1
check_eq "SIGTERM: supervisor exits 0" 0 "$rc"
left=
for p in $PIDS; do [[ -e /proc/$p ]] && left+=" $p"; done
check_eq "no worker process left ($PIDS)" "" "$left"

# 6. a worker that cannot start (wrong PIN): exit non-zero, nothing left behind
H2=$T_DIR/badpin
cp -a "$H" "$H2"
sed -i "s|$H/|$H2/|" "$H2/hsm/softhsm2.conf" # its own copy of the token
printf 'not-the-pin\n' >"$H2/secrets/token.pin"
t0=$(date +%s%N)
timeout 60 "$QTSP_BIN" serve --home "$H2" --listen 127.0.0.1:0 --processes 2 >"$T_DIR/bad.out" 2>"$T_DIR/bad.err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "wrong PIN: exits non-zero (status $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check "wrong PIN: gives up within 8 s (${ms} ms)" test "$ms" -lt 8000
check_not "wrong PIN: never prints 'listening on'" grep -q "^listening on" "$T_DIR/bad.out"
check_grep "wrong PIN: the error says so" "wrong PIN" "$T_DIR/bad.err"
check_grep "wrong PIN: the supervisor says a worker failed to start" "worker [0-9]+ failed to start" "$T_DIR/bad.err"
check_not "wrong PIN: no sanitizer report" grep -Eq "Sanitizer|runtime error:" "$T_DIR/bad.err"
check_eq "wrong PIN: no process of it left" "" "$(pgrep -af -- "serve --home $H2 ")"

# 7. usage errors, http.processes in qtsp.yaml
for bad in abc 65 -1 2x ""; do
  rc=0
  "$QTSP_BIN" serve --home "$H" --listen 127.0.0.1:0 --processes "$bad" >/dev/null 2>"$T_DIR/u.err" || rc=$?
  check_eq "--processes '$bad': usage error (exit 2)" 2 "$rc"
done
check_grep "the usage error names the range" "--processes must be 0\.\.64" "$T_DIR/u.err"
check_grep "init writes http.processes: 0 (one per core)" "^  processes: 0$" "$H/qtsp.yaml"
sed -i 's/^  processes: 0$/  processes: 2/' "$H/qtsp.yaml"
check_grep "qtsp.yaml now says http.processes: 2" "^  processes: 2$" "$H/qtsp.yaml"
check "http.processes: 2 starts" start_server "$H"
check_eq "http.processes: 2 gives 2 worker children" 2 "$(nchildren "$SERVER_PID")"
check_grep "the log says 2 worker processes" "with 2 worker processes" "$T_DIR/serve.err"
check_eq "http.processes: 2: /health 200 on 10 fresh connections" 10 "$(health_n 10)"
rc=0; stop_server || rc=$?
check_eq "http.processes: 2: SIGTERM exits 0" 0 "$rc"
clean_log 0
check "--processes 1 overrides http.processes: 2" start_server "$H" --processes 1
check_eq "--processes 1: a single process, no children" 0 "$(nchildren "$SERVER_PID")"
rc=0; stop_server || rc=$?
check_eq "--processes 1: SIGTERM exits 0" 0 "$rc"
cores=$(getconf _NPROCESSORS_ONLN)
sed -i 's/^  processes: 2$/  processes: 0/' "$H/qtsp.yaml"
if ((cores >= 2 && cores <= 8)); then
  # the default: serve with no --processes (http.processes: 0, as init writes it)
  check "the default serve (no --processes) starts" start_server "$H"
  check_eq "the default serve: one worker per core ($cores)" "$cores" "$(nchildren "$SERVER_PID")"
  check_grep "the default serve: the log says $cores worker processes" "with $cores worker processes" "$T_DIR/serve.err"
  rc=0; stop_server || rc=$?
  check_eq "the default serve: SIGTERM exits 0" 0 "$rc"
  sed -i '/^  processes: 0$/d' "$H/qtsp.yaml"
  check "no http.processes at all starts" start_server "$H"
  check_eq "no http.processes: one worker per core ($cores)" "$cores" "$(nchildren "$SERVER_PID")"
  rc=0; stop_server || rc=$?
  check_eq "no http.processes: SIGTERM exits 0" 0 "$rc"
  check "--processes 0 starts" start_server "$H" --processes 0
  check_eq "--processes 0: one worker per core ($cores)" "$cores" "$(nchildren "$SERVER_PID")"
  rc=0; stop_server || rc=$?
  check_eq "--processes 0: SIGTERM exits 0" 0 "$rc"
else
  for n in 1 2 3 4 5 6 7 8 9; do pass "one per core: skipped on $cores cores ($n)"; done
fi
# http: {processes: 100} is refused, naming the key
sed -i '/^http:$/,/^  connection_timeout:/d' "$H/qtsp.yaml"
echo 'http: {processes: 100}' >>"$H/qtsp.yaml"
rc=0
timeout 30 "$QTSP_BIN" serve --home "$H" --listen 127.0.0.1:0 >"$T_DIR/c.out" 2>"$T_DIR/c.err" || rc=$?
check "http.processes: 100: refused (status $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check_grep "http.processes: 100: the error names the key and the range" "qtsp\.yaml:[0-9:]+ processes: 100 is out of range \[0, 64\]" "$T_DIR/c.err"
check_not "http.processes: 100: never prints 'listening on'" grep -q "^listening on" "$T_DIR/c.out"
finish
