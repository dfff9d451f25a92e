#!/usr/bin/env bash
# Issue 15, crash test: the server is killed with SIGKILL three times while
# clients issue certificates (RA), ask for time-stamps (TSA) and OCSP, and
# restarted each time. Afterwards: every certificate and every time-stamp
# token a client received is in the store (certificates: the RA knows them
# and OCSP says good; tokens: the TSA journal holds their serials), no serial
# was used twice, the audit chain verifies, the CRL number never went back.
# (Remote signing is not on main yet: no signing load here.)
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 8\nlow_water: 4\nbatch: 2\n' >"$H/policies/keypool.yaml"
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
P=$H/public
mkdir -p "$T_DIR/certs" "$T_DIR/tokens"
crl_number() {
  curl -s -m 5 -o "$T_DIR/q.crl" "$BASE/crl/qualified.crl" || return
  local n
  n=$(openssl crl -inform DER -in "$T_DIR/q.crl" -noout -crlnumber 2>/dev/null | sed 's/^crlNumber=//')
  [[ -n $n ]] && echo "$((16#${n#0x}))"
}
issue_load() { # round: enrol + issue until the server is gone; keeps what was answered 201
  local i=0 sid code
  while :; do
    i=$((i + 1))
    sid=$(curl -s -m 10 -H "Authorization: Bearer $OFFICER" -H 'Content-Type: application/json' \
      --data-binary "{\"given_name\":\"Crash\",\"surname\":\"Test\",\"country\":\"DE\",\"national_id\":\"9$1$(printf '%06d' $i)\",\"email\":\"c@example.de\",\"phone\":\"+49151$1$(printf '%06d' $i)\",\"package\":\"free\"}" \
      "$BASE/ra/v1/subjects" | jq -r .subject_id 2>/dev/null) || break
    [[ -n $sid && $sid != null ]] || break
    code=$(curl -s -m 10 -o "$T_DIR/iss.$1.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $OFFICER" \
      -H 'Content-Type: application/json' --data-binary '{}' "$BASE/ra/v1/subjects/$sid/certificates") || break
    [[ $code == 201 ]] || continue
    jq -r .certificate "$T_DIR/iss.$1.json" >"$T_DIR/certs/$(jq -r .serial "$T_DIR/iss.$1.json").pem"
  done
}
tsa_load() { # round
  local i=0
  while :; do
    i=$((i + 1))
    head -c 64 /dev/urandom >"$T_DIR/d.$1"
    openssl ts -query -data "$T_DIR/d.$1" -sha256 -cert -out "$T_DIR/q.$1.tsq" 2>/dev/null
    curl -s -m 10 -f -o "$T_DIR/r.$1.tsr" -H 'Content-Type: application/timestamp-query' \
      --data-binary @"$T_DIR/q.$1.tsq" "$BASE/tsa" || break
    openssl ts -verify -in "$T_DIR/r.$1.tsr" -queryfile "$T_DIR/q.$1.tsq" -CAfile "$P/root-ca.crt" \
      -untrusted "$P/tsa.crt" >/dev/null 2>&1 && cp "$T_DIR/r.$1.tsr" "$T_DIR/tokens/$1-$i.tsr"
  done
}
ocsp_load() {
  while curl -s -m 10 -f -o /dev/null -H 'Content-Type: application/ocsp-request' \
    --data-binary @"$T_DIR/oreq.der" "$BASE/ocsp"; do :; done
}

check "serve starts" start_server "$H"
S0=$(issue 11111111)
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S0.pem" -no_nonce -reqout "$T_DIR/oreq.der" >/dev/null 2>&1
CRL_PREV=$(crl_number)
for round in 1 2 3; do
  issue_load "$round" &
  a=$!
  tsa_load "$round" &
  b=$!
  ocsp_load &
  c=$!
  sleep "$(python3 -c 'import random; print(round(random.uniform(1.5, 3.0), 2))')"
  # the whole server at once: the supervisor and its worker processes
  kill -KILL $(pgrep -P "$SERVER_PID") "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  for _ in $(seq 1 50); do pgrep -f -- "serve --home $H " >/dev/null || break; sleep 0.1; done
  SERVER_PID=
  wait "$a" "$b" "$c" 2>/dev/null
  check "round $round: restarts after SIGKILL" start_server "$H"
  CRL_NOW=$(crl_number)
  check "round $round: the CRL number never goes back ($CRL_NOW >= $CRL_PREV)" test "${CRL_NOW:-0}" -ge "${CRL_PREV:-0}"
  CRL_PREV=$CRL_NOW
done
ncert=$(ls "$T_DIR/certs" | wc -l)
ntok=$(ls "$T_DIR/tokens" | wc -l)
echo "clients received $ncert certificates and $ntok time-stamp tokens over 3 SIGKILLs"
check "the load got certificates ($ncert) and tokens ($ntok)" test "$ncert" -gt 0 -a "$ntok" -gt 0

# every certificate a client received is known and good
missing=0 notgood=0
for f in "$T_DIR"/certs/*.pem; do
  s=$(basename "$f" .pem)
  api GET "/ra/v1/certificates/$s" "$OFFICER" >/dev/null
  [[ $(status) == 200 ]] || missing=$((missing + 1))
  st=$(openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$f" -url "$BASE/ocsp" -CAfile "$P/root-ca.crt" \
    -verify_other "$P/issuing-ca.crt" 2>/dev/null | sed -n "s|^$f: ||p")
  [[ $st == good ]] || notgood=$((notgood + 1))
done
check_eq "every received certificate is in the store" 0 "$missing"
check_eq "... and good in OCSP" 0 "$notgood"
stop_server

# every token a client received is in the TSA journal; no serial twice
for f in "$T_DIR"/tokens/*.tsr; do tsr_serial "$f"; done | sort >"$T_DIR/tok-serials.txt"
tsa_journal_serials "$H/store" >"$T_DIR/journal.txt"
check "the journal lists tokens ($(wc -l <"$T_DIR/journal.txt"))" test -s "$T_DIR/journal.txt"
check_eq "every received token's serial is in the journal" "" "$(comm -23 "$T_DIR/tok-serials.txt" "$T_DIR/journal.txt" | head -5 | tr '\n' ' ')"
check_eq "no token serial twice among those received" "" "$(uniq -d "$T_DIR/tok-serials.txt" | head -3)"
"$QTSP_BIN" audit list --home "$H" | jq -r 'select(.event == "cert.issue") | .details.serial' | sort >"$T_DIR/issued.txt"
check_eq "no certificate serial issued twice" "" "$(uniq -d "$T_DIR/issued.txt" | head -3)"
check_eq "every received certificate has its cert.issue record" "" "$(ls "$T_DIR/certs" | sed 's/\.pem$//' | sort | comm -23 - "$T_DIR/issued.txt" | head -3)"
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
finish
