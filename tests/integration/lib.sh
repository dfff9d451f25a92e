# shellcheck shell=bash
# Shared helpers for the integration tests: counting checks, a throw-away
# home, starting and stopping the real server on a free loopback port.
# Each test ends with `finish`, which prints "N passed, N failed".
set -u
QTSP_BIN=${QTSP_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/qtsp}
T_PASS=0
T_FAIL=0
T_DIR=$(mktemp -d /tmp/qtsp-it-XXXXXX)
SERVER_PID=
BASE=

pass() { T_PASS=$((T_PASS + 1)); echo "ok   - $1"; }
fail() { T_FAIL=$((T_FAIL + 1)); echo "FAIL - $1"; }
# check "description" command... : passes when the command exits 0
check() { local d=$1; shift; if "$@" >>"$T_DIR/check.log" 2>&1; then pass "$d"; else fail "$d"; fi; }
# check_not "description" command... : passes when the command exits non-zero
check_not() { local d=$1; shift; if "$@" >>"$T_DIR/check.log" 2>&1; then fail "$d"; else pass "$d"; fi; }
# check_eq "description" expected actual
check_eq() { if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi; }
# check_grep "description" pattern file
check_grep() { if grep -Eq -- "$2" "$3"; then pass "$1"; else fail "$1 (no '$2' in $3)"; fi; }

# start_server HOME [extra args]: starts qtsp serve, waits for "listening on".
start_server() {
  local home=$1; shift
  # empty the files first: the background shell truncates them only when it
  # gets to run, and until then the wait below would read the previous
  # server's "listening on" line (old port, and a SIGTERM too early).
  : >"$T_DIR/serve.out"
  : >"$T_DIR/serve.err"
  "$QTSP_BIN" serve --home "$home" --listen "127.0.0.1:0" "$@" >"$T_DIR/serve.out" 2>"$T_DIR/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    if grep -q "^listening on " "$T_DIR/serve.out" 2>/dev/null; then
      BASE=$(sed -n 's/^listening on //p' "$T_DIR/serve.out" | head -n1)
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "server did not start:"; cat "$T_DIR/serve.err"
  return 1
}

# api METHOD PATH TOKEN [JSON]: curl to the server; prints the body, and the
# HTTP status to $T_DIR/status
api() {
  local m=$1 p=$2 tok=$3 body=${4-}
  local args=(-s -o "$T_DIR/body" -w '%{http_code}' -X "$m")
  [[ -n $tok ]] && args+=(-H "Authorization: Bearer $tok")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  curl "${args[@]}" "$BASE$p" >"$T_DIR/status"
  cat "$T_DIR/body"
}
status() { cat "$T_DIR/status"; }

# ---- a CSC API v2 client (remote signing: test_csc.sh, test_usage.sh) ----
# csc PATH TOKEN JSON [curl args...]: POST to /csc/v2/PATH, body to stdout,
# HTTP status to $T_DIR/status
csc() {
  local p=$1 tok=$2 body=$3
  shift 3
  local args=(-s -o "$T_DIR/body" -w '%{http_code}' -X POST "$@")
  [[ -n $tok ]] && args+=(-H "Authorization: Bearer $tok")
  [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  curl "${args[@]}" "$BASE/csc/v2/$p" >"$T_DIR/status"
  cat "$T_DIR/body"
}
# totp SECRET OFFSET_SECONDS: the code of now + offset
totp() { oathtool --totp -b -N "@$(($(date +%s) + $2))" "$1"; }
login() { curl -s -u "$1:$2" -X POST "$BASE/csc/v2/auth/login" | jq -r '.access_token // empty'; }
# hashes N SEED: N SHA-256 digests of "SEED-i" into ${W:-$T_DIR}/SEED-i.bin, prints
# the JSON array of their base64
hashes() {
  local i out=()
  for ((i = 1; i <= $1; i++)); do
    printf '%s-%d' "$2" "$i" | openssl dgst -sha256 -binary >"${W:-$T_DIR}/$2-$i.bin"
    out+=("\"$(base64 -w0 "${W:-$T_DIR}/$2-$i.bin")\"")
  done
  (IFS=,; echo "[${out[*]}]")
}

# issue NATIONAL_ID [GIVEN]: enrols a subject and issues its certificate
# through the RA API with $OFFICER's token; prints the serial and writes
# $T_DIR/<serial>.pem
issue() {
  local sid s
  sid=$(api POST /ra/v1/subjects "$OFFICER" "{\"given_name\":\"${2:-Anna}\",\"surname\":\"Test\",\"country\":\"DE\",\"national_id\":\"$1\",\"email\":\"a@example.de\",\"phone\":\"+49151${1:0:7}\",\"package\":\"free\"}" | jq -r .subject_id)
  api POST "/ra/v1/subjects/$sid/certificates" "$OFFICER" '{}' >"$T_DIR/iss.json"
  s=$(jq -r .serial "$T_DIR/iss.json")
  jq -r .certificate "$T_DIR/iss.json" >"$T_DIR/$s.pem"
  echo "$s"
}

# cli_credential HOME NATIONAL_ID GIVEN: enrols a subject and issues its
# certificate from the command line (no server needed); prints the serial
cli_credential() {
  printf '{"given_name":"%s","surname":"Test","country":"DE","national_id":"%s","email":"a@example.de","phone":"+49151%s","package":"free"}' \
    "$3" "$2" "${2:0:7}" >"$T_DIR/subj.json"
  local sid
  sid=$("$QTSP_BIN" subject add --home "$1" --json "$T_DIR/subj.json" 2>/dev/null | jq -r .subject_id)
  "$QTSP_BIN" issue --home "$1" "$sid" 2>/dev/null | jq -r .serial
}

# stop_server: SIGTERM, wait, echo the exit status
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=
  return $rc
}

finish() {
  [[ -n $SERVER_PID ]] && kill -KILL "$SERVER_PID" 2>/dev/null
  echo "$T_PASS passed, $T_FAIL failed"
  if ((T_FAIL == 0)); then rm -rf "$T_DIR"; else echo "kept $T_DIR"; fi
  ((T_FAIL == 0))
}
trap '[[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null' EXIT

# tsr_serial FILE: the token serial of a TimeStampResp file, lower-case hex
# without leading zeros ("" when it holds no token)
tsr_serial() {
  openssl ts -reply -in "$1" -text 2>/dev/null | sed -n 's/^Serial number: 0x//p' | tr 'A-F' 'a-f' | sed 's/^0*//'
}
# metrics_show ERE: until the server's /metrics has a line matching ERE (up
# to 5 s; 1 when it never does). With several workers another worker's
# figures there are up to a second old (core/procmetrics.h), more on a
# loaded machine: read again rather than once.
metrics_show() {
  for _ in $(seq 1 50); do
    curl -s "$BASE/metrics" | grep -qE "$1" && return 0
    sleep 0.1
  done
  return 1
}

# store_keys STORE_DIR TABLE: the keys of one table of the store, in hex, one
# a line (mdb_dump: keys and values alternate after the header; every key
# line is kept). Read from the file, so a running server's figures in
# /metrics (another worker's may be a second old) cannot mislead a test.
store_keys() {
  mdb_dump -s "$2" "$1" 2>/dev/null | sed -n '/^HEADER=END/,/^DATA=END/p' | sed '1d;$d' |
    awk 'NR % 2 == 1' | sed 's/^ //'
}
# tsa_journal_serials STORE_DIR: the serials in the store's TSA journal in the
# same form as tsr_serial, sorted, once each
tsa_journal_serials() {
  store_keys "$1" tsa_journal | sed 's/^0*//' | sort -u
}

# free_port: prints a port no socket uses now, for a server whose base URL
# (in the certificates' AIA) must be fixed before init, or for a proxy. Below
# the kernel's ephemeral range (32768-60999 on Debian), so no client
# connection takes it as its local port before the server binds it (nginx
# once failed with "Address already in use" on such a port).
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12768))
    [[ -z $(ss -tanH "( sport = :$p )" 2>/dev/null) ]] && break
  done
  echo "$p"
}
