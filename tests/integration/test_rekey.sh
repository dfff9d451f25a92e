#!/usr/bin/env bash
# qtsp rekey: the OCSP responder and the TSA unit get a new key and
# certificate without a new ceremony; outside clients verify the answers
# signed after a restart; the audit chain records it.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
P=$H/public
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
check "serve starts" start_server "$H"
SID=$(api POST /ra/v1/subjects "$OFFICER" '{"given_name":"Rita","surname":"Key","country":"DE","national_id":"4400001","email":"r@example.de","phone":"+4915144000","package":"free"}' | jq -r .subject_id)
api POST "/ra/v1/subjects/$SID/certificates" "$OFFICER" '{}' | jq -r .certificate >"$T_DIR/leaf.pem"
check "SIGTERM exits 0" stop_server
old_ocsp=$(openssl x509 -in "$P/ocsp.crt" -noout -serial)
old_tsa=$(openssl x509 -in "$P/tsa.crt" -noout -serial)

check "qtsp rekey ocsp" "$QTSP_BIN" rekey --home "$H" ocsp
check "qtsp rekey tsa" "$QTSP_BIN" rekey --home "$H" tsa
check_not "qtsp rekey root is refused" "$QTSP_BIN" rekey --home "$H" root
check_not "a new OCSP certificate" test "$old_ocsp" = "$(openssl x509 -in "$P/ocsp.crt" -noout -serial)"
check_not "a new TSA certificate" test "$old_tsa" = "$(openssl x509 -in "$P/tsa.crt" -noout -serial)"
check "the new OCSP certificate verifies under root + issuing" openssl verify -CAfile "$P/root-ca.crt" -untrusted "$P/issuing-ca.crt" "$P/ocsp.crt"
check "the new TSA certificate verifies under the root" openssl verify -CAfile "$P/root-ca.crt" "$P/tsa.crt"
check "the old certificates are archived" test "$(ls "$P/archive" | wc -l)" -eq 2
check_not "no PEM private key under the home" grep -rl "PRIVATE KEY" "$H"

check "serve starts with the new keys" start_server "$H"
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/leaf.pem" -url "$BASE/ocsp" -CAfile "$P/root-ca.crt" \
  -verify_other "$P/issuing-ca.crt" -resp_text >"$T_DIR/o.txt" 2>&1
check_grep "OCSP answer verifies" "Response verify OK" "$T_DIR/o.txt"
openssl x509 -in "$P/ocsp.crt" -noout -serial | sed 's/serial=//' >"$T_DIR/newserial"
check "the responder certificate in the answer is the new one" grep -qi "$(cat "$T_DIR/newserial" | sed 's/../&:/g; s/:$//')" "$T_DIR/o.txt"
head -c 500 /dev/urandom >"$T_DIR/d.bin"
openssl ts -query -data "$T_DIR/d.bin" -sha256 -cert -out "$T_DIR/q.tsq" 2>/dev/null
curl -s -o "$T_DIR/r.tsr" -H 'Content-Type: application/timestamp-query' --data-binary @"$T_DIR/q.tsq" "$BASE/tsa"
check "time-stamp from the new TSU key verifies" openssl ts -verify -in "$T_DIR/r.tsr" -queryfile "$T_DIR/q.tsq" -CAfile "$P/root-ca.crt"
check "SIGTERM exits 0" stop_server
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
check_eq "two key.rekey records" 2 "$("$QTSP_BIN" audit list --home "$H" | grep -c '"event":"key.rekey"')"
finish
