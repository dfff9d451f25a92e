#!/usr/bin/env bash
# scripts/run.sh: the listen address and base URL (flags and variables), the
# base URL following the listen address, the next steps and the demo-values
# warning; a run on a non-default port in a temp home whose CA and issued
# certificate name that port in their AIA and CRL distribution points (and
# whose OCSP URL answers); the second run reuses the home; nothing is
# apt-get'ed when everything is installed (a failing apt-get first in PATH).
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN QTSP_LISTEN QTSP_BASE_URL QTSP_HOME
TOP=$(cd "$(dirname "$0")/../.." && pwd)
RUN=$TOP/scripts/run.sh
mkdir -p "$T_DIR/fakebin"
for tool in apt-get apt; do
  printf '#!/bin/sh\necho "$0 $*" >>%s/apt-called\nexit 1\n' "$T_DIR" >"$T_DIR/fakebin/$tool"
  chmod +x "$T_DIR/fakebin/$tool"
done
export PATH=$T_DIR/fakebin:$PATH

# 1. the contract's defaults and the flags (--dry-run prints the plan)
(cd "$T_DIR" && "$RUN" --dry-run) >"$T_DIR/d0" 2>&1
check_grep "no flags: listen 127.0.0.1:8080" "^listen: 127.0.0.1:8080$" "$T_DIR/d0"
check_grep "no flags: base URL http://127.0.0.1:8080" "^base_url: http://127.0.0.1:8080$" "$T_DIR/d0"
check_grep "no flags: home ./qtsp-home of the tree" "^home: $TOP/qtsp-home$" "$T_DIR/d0"
check_grep "--listen: the base URL follows it" "^base_url: http://127.0.0.1:9123$" <("$RUN" --dry-run --listen 127.0.0.1:9123)
check_grep "QTSP_LISTEN: the base URL follows it" "^base_url: http://127.0.0.1:9124$" <(QTSP_LISTEN=127.0.0.1:9124 "$RUN" --dry-run)
check_grep "--base-url wins over the listen address" "^base_url: https://tsp.example.eu$" <("$RUN" --dry-run --listen 127.0.0.1:9123 --base-url https://tsp.example.eu/)
check_grep "QTSP_BASE_URL wins too" "^base_url: https://tsp.example.eu$" <(QTSP_BASE_URL=https://tsp.example.eu "$RUN" --dry-run)
check_grep "--home=DIR" "^home: /srv/x$" <("$RUN" --dry-run --home=/srv/x)
for bad in "--listen 127.0.0.1" "--listen 127.0.0.1:99999" "--base-url ftp://x" "--base-url http://x/path" "--colour"; do
  rc=0
  # shellcheck disable=SC2086
  "$RUN" --dry-run $bad >/dev/null 2>"$T_DIR/bad.err" || rc=$?
  check_eq "run.sh $bad: usage error (exit 2)" 2 "$rc"
done
check "run.sh --help" "$RUN" --help

# 2. a run on a free non-default port, in a temp home
port=$(free_port)
H=$T_DIR/home
start_run() { # extra args: runs scripts/run.sh in the background, waits for "listening on"
  : >"$T_DIR/run.out"
  "$RUN" --home "$H" "$@" >"$T_DIR/run.out" 2>"$T_DIR/run.err" &
  SERVER_PID=$!
  for _ in $(seq 1 3000); do # a first run may build
    grep -q "^listening on " "$T_DIR/run.out" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$T_DIR/run.err"
  return 1
}
check "run.sh --listen 127.0.0.1:$port starts" start_run --listen "127.0.0.1:$port"
BASE=http://127.0.0.1:$port
check_grep "it listens on the port asked for" "^listening on http://127.0.0.1:$port$" "$T_DIR/run.out"
check_eq "/health answers there" ok "$(curl -s --max-time 10 "$BASE/health")"
check_grep "the home's base_url follows the listen address" "^base_url: $BASE$" "$H/qtsp.yaml"
check_grep "next steps: create an operator" "operator add --home $H alice --role ra-officer" "$T_DIR/run.out"
check_grep "next steps: a curl example on the base URL" "curl -s -X POST $BASE/ra/v1/subjects" "$T_DIR/run.out"
check_grep "warns: demo values" "WARNING: demo values" "$T_DIR/run.out"
check_grep "... names, CP OID and PDS URL" "CA names.*" "$T_DIR/run.out"
check_grep "... the CP OID" "certificate policy OID" "$T_DIR/run.out"
check_grep "... the PDS URL" "PDS URL" "$T_DIR/run.out"
check_not "nothing was apt-get'ed" test -e "$T_DIR/apt-called"

# the URLs in the CA and in an issued certificate
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
S=$(issue 55555555)
check "a certificate was issued through the RA on $port" test -s "$T_DIR/$S.pem"
ext() { openssl x509 -in "$1" -noout -ext crlDistributionPoints,authorityInfoAccess 2>/dev/null; }
ext "$H/public/issuing-ca.crt" >"$T_DIR/ca.ext"
ext "$T_DIR/$S.pem" >"$T_DIR/ee.ext"
check_grep "issuing CA: CRL distribution point on $port" "URI:$BASE/crl/root.crl" "$T_DIR/ca.ext"
check_grep "issuing CA: caIssuers on $port" "CA Issuers - URI:$BASE/certs/root-ca.crt" "$T_DIR/ca.ext"
check_grep "issued certificate: OCSP on $port" "OCSP - URI:$BASE/ocsp" "$T_DIR/ee.ext"
check_grep "issued certificate: caIssuers on $port" "CA Issuers - URI:$BASE/certs/issuing-ca.crt" "$T_DIR/ee.ext"
check_grep "issued certificate: CRL distribution point on $port" "URI:$BASE/crl/qualified.crl" "$T_DIR/ee.ext"
check_not "no URL names the default port 8080" grep -q ":8080" "$T_DIR/ca.ext" "$T_DIR/ee.ext"
cat "$H/public/issuing-ca.crt" "$H/public/root-ca.crt" >"$T_DIR/chain.pem"
openssl ocsp -issuer "$H/public/issuing-ca.crt" -cert "$T_DIR/$S.pem" -CAfile "$T_DIR/chain.pem" \
  -url "$(openssl x509 -in "$T_DIR/$S.pem" -noout -ocsp_uri)" >"$T_DIR/ocsp.txt" 2>&1
check_grep "the certificate's own OCSP URL answers: good" "$S.pem: good" "$T_DIR/ocsp.txt"
curl -s -o "$T_DIR/crl.der" "$(sed -n 's/.*URI:\(.*qualified.crl\).*/\1/p' "$T_DIR/ee.ext" | head -n1)"
check "the certificate's own CRL URL serves a CRL" openssl crl -inform DER -in "$T_DIR/crl.der" -noout
rc=0; stop_server || rc=$?
check_eq "SIGTERM stops it (exit 0)" 0 "$rc"

# 3. the second run reuses the home
check "a second run starts" start_run --listen "127.0.0.1:$port"
check_grep "the second run reuses the home" "^reusing $H$" "$T_DIR/run.out"
check_eq "the certificate is still known (OCSP)" 1 "$(openssl ocsp -issuer "$H/public/issuing-ca.crt" -cert "$T_DIR/$S.pem" -CAfile "$T_DIR/chain.pem" -url "$BASE/ocsp" 2>&1 | grep -c ": good")"
stop_server
port2=$((port == 65535 ? port - 1 : port + 1))
if ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port2/"; then
  check "a run on another port with the same home starts" start_run --listen "127.0.0.1:$port2"
  check_grep "... and warns the certificates name the first address" "was made for $BASE" "$T_DIR/run.err"
  stop_server
else
  pass "port $port2 busy: the other-port warning not checked"; pass "(skipped)"
fi
check_not "still nothing apt-get'ed" test -e "$T_DIR/apt-called"
finish
