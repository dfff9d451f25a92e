#!/usr/bin/env bash
# Issue 5 with outside tools: full, delta and root CRLs verified by openssl
# crl; holds and terminations appear within seconds with their reasons; a
# release leaves the full CRL and shows removeFromCRL in the delta; openssl
# verify -crl_check rejects a terminated certificate; the CRL number survives
# a restart.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
# no key pool: the key counts below are one token key per certificate
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
P=$H/public
check "serve starts" start_server "$H"

fetch() { # name -> $T_DIR/name.crl (DER) and name.txt (openssl crl -text)
  curl -s -D "$T_DIR/$1.hdr" -o "$T_DIR/$1.crl" "$BASE/crl/$1.crl"
  openssl crl -inform DER -in "$T_DIR/$1.crl" -noout -text >"$T_DIR/$1.txt" 2>&1
}
crl_num() { sed -n '/X509v3 CRL Number/{n;s/^ *//p}' "$T_DIR/$1.txt" | head -1; }
# wait_for NAME PATTERN: poll the CRL until the pattern shows (10 s)
wait_for() {
  for _ in $(seq 1 40); do
    fetch "$1"
    grep -Eq "$2" "$T_DIR/$1.txt" && return 0
    sleep 0.25
  done
  return 1
}
serial_pat() { echo "$1" | tr 'a-f' 'A-F' | sed 's/^/^ *Serial Number: 0*/'; }

fetch qualified; fetch qualified-delta; fetch root
check "full CRL verifies (openssl crl -CAfile)" openssl crl -inform DER -in "$T_DIR/qualified.crl" -CAfile "$P/chain.pem" -noout
check "delta CRL verifies" openssl crl -inform DER -in "$T_DIR/qualified-delta.crl" -CAfile "$P/chain.pem" -noout
check "root CRL verifies" openssl crl -inform DER -in "$T_DIR/root.crl" -CAfile "$P/root-ca.crt" -noout
check_grep "content type application/pkix-crl" "^Content-Type: application/pkix-crl" "$T_DIR/qualified.hdr"
check_grep "Last-Modified" "^Last-Modified: " "$T_DIR/qualified.hdr"
check_grep "ETag" "^ETag: " "$T_DIR/qualified.hdr"
check_grep "v2 CRL" "Version 2" "$T_DIR/qualified.txt"
check_grep "AKI" "Authority Key Identifier" "$T_DIR/qualified.txt"
check_grep "full CRL points to its delta (freshestCRL)" "Freshest CRL|2\.5\.29\.46" "$T_DIR/qualified.txt"
check_grep "full CRL has ExpiredCertsOnCRL" "2\.5\.29\.60|Expired" "$T_DIR/qualified.txt"
check_grep "delta CRL has a critical deltaCRLIndicator" "Delta CRL Indicator: critical" "$T_DIR/qualified-delta.txt"
check "files written to DIR/public/crl" test -s "$P/crl/qualified.crl" -a -s "$P/crl/qualified-delta.crl" -a -s "$P/crl/root.crl"
n0=$(crl_num qualified)

SH=$(issue 31000001)
ST=$(issue 31000002)
api POST "/ra/v1/certificates/$SH/hold" "$HOTLINE" '{"caller_verification":"lost phone"}' >/dev/null
check "a hold shows in the full CRL within seconds" wait_for qualified "$(serial_pat "$SH")"
check_grep "hold entry: certificateHold" "Certificate Hold" "$T_DIR/qualified.txt"
check_grep "hold entry: holdInstructionCode callissuer" "Hold Instruction Code|Hold Instruction Call Issuer" "$T_DIR/qualified.txt"
# the invalidity date: now (not before the certificate's notBefore: issue 15 defect 8)
api POST "/ra/v1/certificates/$ST/terminate" "$OFFICE" "{\"reason\":\"keyCompromise\",\"identity_check\":\"passport\",\"invalidity_date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" >/dev/null
check "a termination shows within seconds" wait_for qualified "$(serial_pat "$ST")"
check_grep "terminated entry: keyCompromise" "Key Compromise" "$T_DIR/qualified.txt"
check_grep "terminated entry: invalidityDate" "Invalidity Date" "$T_DIR/qualified.txt"
n1=$(crl_num qualified)
check "CRL number increased ($n0 -> $n1)" test "$((16#${n1:-0}))" -gt "$((16#${n0:-0}))"
cat "$P/chain.pem" >"$T_DIR/trust.pem"
check_not "openssl verify -crl_check rejects the terminated certificate" \
  openssl verify -crl_check -CAfile "$T_DIR/trust.pem" -CRLfile <(openssl crl -inform DER -in "$T_DIR/qualified.crl") "$T_DIR/$ST.pem"
openssl verify -crl_check -CAfile "$T_DIR/trust.pem" -CRLfile <(openssl crl -inform DER -in "$T_DIR/qualified.crl") "$T_DIR/$ST.pem" >"$T_DIR/v.txt" 2>&1
check_grep "... because it is revoked" "certificate revoked" "$T_DIR/v.txt"
SG=$(issue 31000003)
check "openssl verify -crl_check accepts a good certificate" \
  openssl verify -crl_check -CAfile "$T_DIR/trust.pem" -CRLfile <(openssl crl -inform DER -in "$T_DIR/qualified.crl") "$T_DIR/$SG.pem"

api POST "/ra/v1/certificates/$SH/release" "$OFFICE" '{}' >/dev/null
check "after release the entry leaves the full CRL" bash -c "for i in \$(seq 1 40); do curl -s '$BASE/crl/qualified.crl' | openssl crl -inform DER -noout -text | grep -Eq '$(serial_pat "$SH")' || exit 0; sleep 0.25; done; exit 1"
check "and the delta says removeFromCRL" wait_for qualified-delta "Remove From CRL"
check_grep "delta lists the released serial" "$(serial_pat "$SH")" "$T_DIR/qualified-delta.txt"
fetch qualified
check_grep "the terminated entry stays" "$(serial_pat "$ST")" "$T_DIR/qualified.txt"
check_not "removeFromCRL never in the full CRL" grep -q "Remove From CRL" "$T_DIR/qualified.txt"

check "SIGTERM exits 0" stop_server
n2=$(crl_num qualified)
check "qtsp crl publish" "$QTSP_BIN" crl publish --home "$H"
openssl crl -inform DER -in "$P/crl/qualified.crl" -noout -text >"$T_DIR/after.txt"
n3=$(sed -n '/X509v3 CRL Number/{n;s/^ *//p}' "$T_DIR/after.txt" | head -1)
check "CRL number survives a restart ($n2 -> $n3)" test "$((16#${n3:-0}))" -gt "$((16#${n2:-0}))"
check "serve again" start_server "$H"
fetch qualified
n4=$(crl_num qualified)
check "the restarted server keeps counting up ($n3 -> $n4)" test "$((16#${n4:-0}))" -ge "$((16#${n3:-0}))"
check "qtsp crl publish beside the running server" "$QTSP_BIN" crl publish --home "$H"
openssl crl -inform DER -in "$P/crl/qualified.crl" -noout -text >"$T_DIR/beside.txt"
n5=$(sed -n '/X509v3 CRL Number/{n;s/^ *//p}' "$T_DIR/beside.txt" | head -1)
check "the CLI published a higher number ($n4 -> $n5)" test "$((16#${n5:-0}))" -gt "$((16#${n4:-0}))"
check "the server serves the CLI's CRL within seconds (#$n5)" bash -c "for i in \$(seq 1 12); do curl -s '$BASE/crl/qualified.crl' | cmp -s - '$P/crl/qualified.crl' && exit 0; sleep 0.25; done; exit 1"
check "SIGTERM exits 0" stop_server
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
finish
