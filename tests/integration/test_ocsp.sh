#!/usr/bin/env bash
# Issues 4 and 7 with outside clients: openssl ocsp (POST, nonce,
# -verify_other) and GnuTLS ocsptool --ask, both verifying, for good, on hold,
# released, lapsed, terminated and never-issued serials; GET answers with
# cache headers parsed by openssl ocsp -respin; malformed input.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
# no key pool: the key counts below are one token key per certificate
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
sed -i 's/^max_hold: .*/max_hold: 4s/' "$H/policies/suspension.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
P=$H/public
MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
token_keys() {
  SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login \
    --pin "$(cat "$H/secrets/token.pin")" --list-objects --type privkey 2>/dev/null | grep -c "^Private Key Object"
}
check "serve starts" start_server "$H"

# ossl SERIAL -> "status[ reason]" from openssl ocsp over POST with a nonce; checks the signature
ossl() {
  openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$1.pem" -url "$BASE/ocsp" \
    -CAfile "$P/root-ca.crt" -verify_other "$P/issuing-ca.crt" -resp_text >"$T_DIR/o.txt" 2>&1
  cp "$T_DIR/o.txt" "$T_DIR/o.$1.$((++OSSL_N))"
  grep -q "Response verify OK" "$T_DIR/o.txt" || { echo "unverified"; return; }
  local st r
  st=$(sed -n "s|^$T_DIR/$1.pem: ||p" "$T_DIR/o.txt" | head -1)
  r=$(sed -n 's/^\s*Reason: //p' "$T_DIR/o.txt" | head -1)
  echo "$st${r:+ $r}"
}
# gnut SERIAL -> "status" from GnuTLS ocsptool --ask, "unverified" unless the signature verifies
gnut() {
  ocsptool --ask="$BASE/ocsp" --load-issuer "$P/issuing-ca.crt" --load-cert "$T_DIR/$1.pem" \
    --load-trust "$P/issuing-ca.crt" >"$T_DIR/g.txt" 2>&1
  grep -q "Verifying OCSP Response: Success" "$T_DIR/g.txt" || { echo "unverified"; return; }
  sed -n 's/^\s*Certificate Status: //p' "$T_DIR/g.txt" | head -1
}

OSSL_N=0
S1=$(issue 11111111)
check_eq "good: openssl ocsp" "good" "$(ossl "$S1")"
check_eq "good: GnuTLS ocsptool" "good" "$(gnut "$S1")"
check_grep "nonce echoed" "WARNING: no nonce|OCSP Nonce" "$T_DIR/o.txt"
check_not "no nonce warning" grep -q "WARNING: no nonce in response" "$T_DIR/o.txt"
check_grep "archiveCutoff present" "Archive Cutoff" "$T_DIR/o.txt"

# hold -> revoked/certificateHold at once, then good again after the lapse, without any call
api POST "/ra/v1/certificates/$S1/hold" "$HOTLINE" '{"caller_verification":"lost phone"}' >/dev/null
check_eq "on hold: openssl shows revoked certificateHold" "revoked certificateHold" "$(ossl "$S1")"
check_eq "on hold: ocsptool shows revoked" "revoked" "$(gnut "$S1")"
sleep 5
check_eq "hold lapsed after max_hold: openssl good" "good" "$(ossl "$S1")"
check_eq "hold lapsed: ocsptool good" "good" "$(gnut "$S1")"

# hold + release
api POST "/ra/v1/certificates/$S1/hold" "$HOTLINE" '{"caller_verification":"lost phone"}' >/dev/null
check_eq "held again" "revoked certificateHold" "$(ossl "$S1")"
api POST "/ra/v1/certificates/$S1/release" "$OFFICE" '{}' >/dev/null
check_eq "released: openssl good" "good" "$(ossl "$S1")"
check_eq "released: ocsptool good" "good" "$(gnut "$S1")"

# termination
keys=$(token_keys)
api POST "/ra/v1/certificates/$S1/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport at the office"}' >/dev/null
check_eq "terminated: openssl revoked keyCompromise" "revoked keyCompromise" "$(ossl "$S1")"
check_eq "terminated: ocsptool revoked" "revoked" "$(gnut "$S1")"
check_eq "token's keys unchanged (the subscriber key was wrapped)" "$keys" "$(token_keys)"
check_not "the wrapped key is gone from the store (mdb_dump)" grep -q "\"credential_id\":\"$S1\".*aes-kwp-v1" <(mdb_dump -p -s credentials "$H/store")
api POST "/ra/v1/certificates/$S1/release" "$OFFICE" '{}' >/dev/null; check_eq "release after termination: 409" 409 "$(status)"
api POST "/ra/v1/certificates/$S1/hold" "$HOTLINE" '{"caller_verification":"x"}' >/dev/null; check_eq "hold after termination: 409" 409 "$(status)"

# a serial this CA never issued: never good (extended revoked)
SUBJ=$(openssl x509 -in "$P/issuing-ca.crt" -noout -subject -nameopt compat | sed 's/^subject=//')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T_DIR/fk.pem" -subj "$SUBJ" -out "$T_DIR/fakeca.pem" 2>/dev/null
openssl req -new -key "$T_DIR/fk.pem" -subj /CN=nobody -out "$T_DIR/fake.csr" 2>/dev/null
openssl x509 -req -in "$T_DIR/fake.csr" -CA "$T_DIR/fakeca.pem" -CAkey "$T_DIR/fk.pem" -set_serial 0x7a11ce0ffee -out "$T_DIR/never.pem" 2>/dev/null
check_eq "never issued: openssl not good (revoked certificateHold)" "revoked certificateHold" "$(ossl never)"
check_grep "never issued: extended revoke extension" "1\.3\.6\.1\.5\.5\.7\.48\.1\.9|^ +valid: *$" "$T_DIR/o.txt"
check_eq "never issued: ocsptool revoked" "revoked" "$(gnut never)"

# GET with cache headers, parsed by openssl ocsp -respin
S2=$(issue 22222222)
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S2.pem" -no_nonce -reqout "$T_DIR/req.der" >/dev/null 2>&1
b64=$(base64 -w0 "$T_DIR/req.der")
enc=$(printf '%s' "$b64" | sed 's|/|%2F|g; s|+|%2B|g; s|=|%3D|g')
curl -s -D "$T_DIR/h.txt" -o "$T_DIR/get.der" "$BASE/ocsp/$enc"
check_grep "GET: 200" "^HTTP/1.1 200" "$T_DIR/h.txt"
check_grep "GET: content type" "^Content-Type: application/ocsp-response" "$T_DIR/h.txt"
check_grep "GET: Cache-Control" "^Cache-Control: max-age=[0-9]+, public, no-transform, must-revalidate" "$T_DIR/h.txt"
ma=$(sed -n 's/^Cache-Control: max-age=\([0-9]*\).*/\1/p' "$T_DIR/h.txt")
check "GET: max-age capped by the policy's http_max_age (60 s): $ma" test "${ma:-99999}" -le 60
check_grep "GET: Last-Modified" "^Last-Modified: " "$T_DIR/h.txt"
check_grep "GET: Expires" "^Expires: " "$T_DIR/h.txt"
check_grep "GET: ETag" "^ETag: \"" "$T_DIR/h.txt"
openssl ocsp -respin "$T_DIR/get.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S2.pem" -CAfile "$P/root-ca.crt" -verify_other "$P/issuing-ca.crt" >"$T_DIR/respin.txt" 2>&1
check_grep "GET answer verifies with openssl -respin" "Response verify OK" "$T_DIR/respin.txt"
check_grep "GET answer says good" ": good" "$T_DIR/respin.txt"
curl -s -o "$T_DIR/get2.der" "$BASE/ocsp/$b64"
check "GET unencoded base64 (may contain /) gives the same bytes" cmp "$T_DIR/get.der" "$T_DIR/get2.der"
etag=$(sed -n 's/^ETag: //Ip' "$T_DIR/h.txt" | tr -d '\r')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/ocsp/$enc")
check_eq "If-None-Match: 304" 304 "$code"
# the status change shows at once on the cached GET path
api POST "/ra/v1/certificates/$S2/hold" "$HOTLINE" '{"caller_verification":"x"}' >/dev/null
curl -s -o "$T_DIR/get3.der" "$BASE/ocsp/$enc"
openssl ocsp -respin "$T_DIR/get3.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S2.pem" -CAfile "$P/root-ca.crt" -verify_other "$P/issuing-ca.crt" >"$T_DIR/respin3.txt" 2>&1
check_grep "cached GET shows the hold at once" ": revoked" "$T_DIR/respin3.txt"

# malformed input: an OCSP error status, never a crash
head -c 200 /dev/urandom >"$T_DIR/garbage"
curl -s -o "$T_DIR/bad.der" -H 'Content-Type: application/ocsp-request' --data-binary @"$T_DIR/garbage" "$BASE/ocsp"
check_grep "garbage POST: malformedRequest" "malformedrequest" <(openssl ocsp -respin "$T_DIR/bad.der" -resp_text -noverify 2>&1 | tr 'A-Z' 'a-z')
cat "$T_DIR/req.der" <(printf 'x') >"$T_DIR/trail.der"
curl -s -o "$T_DIR/trail.resp" -H 'Content-Type: application/ocsp-request' --data-binary @"$T_DIR/trail.der" "$BASE/ocsp"
check_grep "trailing bytes: malformedRequest" "malformedrequest" <(openssl ocsp -respin "$T_DIR/trail.resp" -resp_text -noverify 2>&1 | tr 'A-Z' 'a-z')
curl -s -o "$T_DIR/badget.der" "$BASE/ocsp/%%%not-base64"
check_grep "bad GET: malformedRequest" "malformedrequest" <(openssl ocsp -respin "$T_DIR/badget.der" -resp_text -noverify 2>&1 | tr 'A-Z' 'a-z')
# issue 19: the POSTs above (malformed ones too) were the fast lane's, the
# GETs MHD's (the route names in cmd/services.c's fast list are the ones used)
check "the fast lane answered OCSP POSTs" metrics_show '^qtsp_http_lane_requests_total(\{process="[0-9]+"\})? [1-9]'
check_eq "server still healthy" ok "$(curl -s "$BASE/health")"
check "SIGTERM exits 0" stop_server
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
finish
