#!/usr/bin/env bash
# Issues 3 and 7 over HTTP with the real server: enrolment and issuance
# (certificate checked by openssl and GnuTLS certtool), roles and bad input,
# hold / lapse / release / termination, the hotline hook, and the audit chain.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so

"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
# no key pool: every key below is generated at issuance (and kept wrapped)
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
sed -i 's/^max_hold: .*/max_hold: 4s/' "$H/policies/suspension.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
AUDITOR=$("$QTSP_BIN" operator add --home "$H" aud --role auditor)
token_keys() {
  SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login \
    --pin "$(cat "$H/secrets/token.pin")" --list-objects --type privkey 2>/dev/null | grep -c "^Private Key Object"
}
audit_count() { "$QTSP_BIN" audit list --home "$H" | wc -l; }

check "serve starts" start_server "$H"
PERSON='{"given_name":"Maria","surname":"Ivanova","country":"BG","national_id":"8001010000","email":"maria@example.bg","phone":"+359888123456","package":"free"}'

# --- bad input, roles, authentication: each changes nothing
before=$(audit_count)
api POST /ra/v1/subjects "" "$PERSON" >/dev/null;            check_eq "no token: 401" 401 "$(status)"
api POST /ra/v1/subjects "nope.nope" "$PERSON" >/dev/null;   check_eq "unknown token: 401" 401 "$(status)"
api POST /ra/v1/subjects "$HOTLINE" "$PERSON" >/dev/null;    check_eq "wrong role: 403" 403 "$(status)"
api POST /ra/v1/subjects "$OFFICER" '{"given_name":' >/dev/null; check_eq "broken JSON: 400" 400 "$(status)"
api POST /ra/v1/subjects "$OFFICER" "${PERSON%\}},\"shoe_size\":42}" >"$T_DIR/e.json"
check_eq "unknown field: 400" 400 "$(status)"
check_eq "error names the field" "invalid" "$(jq -r .error "$T_DIR/e.json")"
check_grep "message names shoe_size" "shoe_size" "$T_DIR/e.json"
api POST /ra/v1/subjects "$OFFICER" "${PERSON/\"BG\"/\"XX\"}" >"$T_DIR/e.json"
check_eq "bad country: 400" 400 "$(status)"
check_grep "message names country" "country" "$T_DIR/e.json"
api POST /ra/v1/subjects "$OFFICER" "${PERSON/+359888123456/0888}" >/dev/null; check_eq "bad phone: 400" 400 "$(status)"
api POST /ra/v1/subjects "$OFFICER" "${PERSON/\"free\"/\"gold\"}" >/dev/null; check_eq "bad package: 400" 400 "$(status)"
big=$(head -c 40000 /dev/zero | tr '\0' a)
api POST /ra/v1/subjects "$OFFICER" "{\"given_name\":\"$big\"}" >/dev/null; check_eq "oversized body: 413" 413 "$(status)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $OFFICER" -H 'Content-Type: text/plain' --data "$PERSON" "$BASE/ra/v1/subjects")
check_eq "wrong media type: 415 (docs/ra.md)" 415 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data "$PERSON" "$BASE/ra/v1/subjects")
check_eq "no token and no media type: 401 first" 401 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $HOTLINE" --data "$PERSON" "$BASE/ra/v1/subjects")
check_eq "wrong role and no media type: 403 first" 403 "$code"
check_eq "rejected requests wrote nothing to the audit log" "$before" "$(audit_count)"

# --- enrolment and issuance
SID=$(api POST /ra/v1/subjects "$OFFICER" "$PERSON" | jq -r .subject_id)
check_eq "enrol: 201" 201 "$(status)"
keys0=$(token_keys)
api POST "/ra/v1/subjects/$SID/certificates" "$HOTLINE" '{}' >/dev/null; check_eq "issue with wrong role: 403" 403 "$(status)"
api POST "/ra/v1/subjects/ffffffffffffffffffffffff/certificates" "$OFFICER" '{}' >/dev/null; check_eq "issue for unknown subject: 404" 404 "$(status)"
api POST "/ra/v1/subjects/$SID/certificates" "$OFFICER" '{}' >"$T_DIR/issued.json"
check_eq "issue: 201" 201 "$(status)"
SERIAL=$(jq -r .serial "$T_DIR/issued.json")
jq -r .certificate "$T_DIR/issued.json" >"$T_DIR/qc.pem"
check_eq "token gained no private key (generated in it, kept wrapped in the store)" "$keys0" "$(token_keys)"
check "the credential holds the wrapped key (mdb_dump)" grep -q "\"credential_id\":\"$SERIAL\".*aes-kwp-v1" <(mdb_dump -p -s credentials "$H/store")
check "activation has user_id, password, otpauth_uri" jq -e '.activation.user_id and .activation.password and (.activation.otpauth_uri|startswith("otpauth://totp/"))' "$T_DIR/issued.json"
check_not "no private key file in the home" grep -rl "PRIVATE KEY" "$H"
check "openssl verify accepts the certificate against the chain" openssl verify -CAfile "$H/public/root-ca.crt" -untrusted "$H/public/issuing-ca.crt" "$T_DIR/qc.pem"
openssl x509 -in "$T_DIR/qc.pem" -noout -text >"$T_DIR/qc.txt"
check_grep "keyUsage critical" "X509v3 Key Usage: critical" "$T_DIR/qc.txt"
check_grep "nonRepudiation only" "^ +Non Repudiation$" "$T_DIR/qc.txt"
check_grep "QCP-n-qscd" "0\.4\.0\.194112\.1\.2" "$T_DIR/qc.txt"
check_grep "qcStatements" "1\.3\.6\.1\.5\.5\.7\.1\.3|qcStatements" "$T_DIR/qc.txt"
check_grep "OCSP URL" "OCSP - URI:http://127.0.0.1:8080/ocsp" "$T_DIR/qc.txt"
check_grep "caIssuers URL" "CA Issuers - URI:http://127.0.0.1:8080/certs/issuing-ca.crt" "$T_DIR/qc.txt"
check_grep "CRL DP" "URI:http://127.0.0.1:8080/crl/qualified.crl" "$T_DIR/qc.txt"
check_grep "subject serialNumber PNO" "serialNumber *= *PNOBG-8001010000" <(openssl x509 -in "$T_DIR/qc.pem" -noout -subject -nameopt multiline)
nb=$(date -d "$(openssl x509 -in "$T_DIR/qc.pem" -noout -startdate | cut -d= -f2)" +%s)
na=$(date -d "$(openssl x509 -in "$T_DIR/qc.pem" -noout -enddate | cut -d= -f2)" +%s)
years=$(( (na - nb) / 86400 ))
check "validity is 3 years ($years days)" test "$years" -ge 1095 -a "$years" -le 1097
check "GnuTLS certtool parses it" certtool -i --infile "$T_DIR/qc.pem"
api POST /ra/v1/subjects "$OFFICER" "$PERSON" >/dev/null; check_eq "same national id with a valid certificate: 409" 409 "$(status)"

# --- status
st=$(api GET "/ra/v1/certificates/$SERIAL" "$AUDITOR" | jq -r .status); check_eq "status valid (auditor may read)" valid "$st"
api GET "/ra/v1/certificates/abc123" "$AUDITOR" >/dev/null; check_eq "unknown serial: 404" 404 "$(status)"
api GET "/ra/v1/certificates/zz" "$AUDITOR" >/dev/null; check_eq "malformed serial: 404" 404 "$(status)"

# --- hold, lapse, release
api POST "/ra/v1/certificates/$SERIAL/hold" "$OFFICE" '{"caller_verification":"x"}' >/dev/null; check_eq "hold by office: 403" 403 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/hold" "$HOTLINE" '{}' >/dev/null; check_eq "hold without caller_verification: 400" 400 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/hold" "$HOTLINE" '{"caller_verification":"date of birth + code word"}' >"$T_DIR/hold.json"
check_eq "hold: 200" 200 "$(status)"
check_eq "hold answer says on-hold" on-hold "$(jq -r .status "$T_DIR/hold.json")"
check "hold_until is RFC 3339" jq -e '.hold_until|test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")' "$T_DIR/hold.json"
check_eq "status on-hold" on-hold "$(api GET "/ra/v1/certificates/$SERIAL" "$AUDITOR" | jq -r .status)"
api POST "/ra/v1/certificates/$SERIAL/hold" "$HOTLINE" '{"caller_verification":"again"}' >/dev/null; check_eq "second hold: 409" 409 "$(status)"
sleep 5
check_eq "hold lapsed by itself after max_hold (4s)" valid "$(api GET "/ra/v1/certificates/$SERIAL" "$AUDITOR" | jq -r .status)"
sleep 1.5
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
check_grep "the sweeper recorded the lapse" "cert.hold.lapse" "$T_DIR/audit.txt"
api POST "/ra/v1/certificates/$SERIAL/release" "$OFFICE" '{}' >/dev/null; check_eq "release when not held: 409" 409 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/hold" "$HOTLINE" '{"caller_verification":"lost phone"}' >/dev/null
api POST "/ra/v1/certificates/$SERIAL/release" "$HOTLINE" '{}' >/dev/null; check_eq "release by hotline: 403" 403 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/release" "$OFFICE" '{}' >"$T_DIR/rel.json"; check_eq "release by office: 200" 200 "$(status)"
check_eq "release answer valid" valid "$(jq -r .status "$T_DIR/rel.json")"

# --- termination
keys1=$(token_keys)
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICER" '{"reason":"keyCompromise","identity_check":"passport"}' >/dev/null; check_eq "terminate by ra-officer: 403" 403 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICE" '{"reason":"certificateHold","identity_check":"passport"}' >/dev/null; check_eq "terminate with a non-final reason: 400" 400 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICE" '{"reason":"unspecified","identity_check":"passport"}' >/dev/null; check_eq "terminate with reason unspecified: 400" 400 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport","invalidity_date":"2026-02-30T10:00:00Z"}' >/dev/null; check_eq "terminate with an impossible invalidity_date: 400" 400 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport AB1234567 seen at the office"}' >"$T_DIR/term.json"
check_eq "terminate: 200" 200 "$(status)"
check_eq "terminate answer revoked" revoked "$(jq -r .status "$T_DIR/term.json")"
check_eq "the token's keys are as they were (the key was wrapped)" "$keys1" "$(token_keys)"
check_not "the wrapped key is gone from the store (mdb_dump)" grep -q "\"credential_id\":\"$SERIAL\".*aes-kwp-v1" <(mdb_dump -p -s credentials "$H/store")
api GET "/ra/v1/certificates/$SERIAL" "$AUDITOR" >"$T_DIR/st.json"
check_eq "status revoked" revoked "$(jq -r .status "$T_DIR/st.json")"
check_eq "revocation_reason keyCompromise" keyCompromise "$(jq -r .revocation_reason "$T_DIR/st.json")"
api POST "/ra/v1/certificates/$SERIAL/release" "$OFFICE" '{}' >/dev/null; check_eq "release after termination: 409" 409 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/hold" "$HOTLINE" '{"caller_verification":"x"}' >/dev/null; check_eq "hold after termination: 409" 409 "$(status)"
api POST "/ra/v1/certificates/$SERIAL/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"x"}' >/dev/null; check_eq "second termination: 409" 409 "$(status)"

# --- hotline hook and the CLI (same rules)
P2='{"given_name":"Ivan","surname":"Petrov","country":"BG","national_id":"7502020000","email":"ivan@example.bg","phone":"+359877000111","package":"practical"}'
SID2=$(api POST /ra/v1/subjects "$OFFICER" "$P2" | jq -r .subject_id)
S2=$(api POST "/ra/v1/subjects/$SID2/certificates" "$OFFICER" '{}' | jq -r .serial)
api POST /ra/v1/hotline/hold "$HOTLINE" '{"national_id":"7502020000","phone":"+359877000999","caller_verification":"x"}' >/dev/null
check_eq "hotline hook with the wrong phone: 404" 404 "$(status)"
api POST /ra/v1/hotline/hold "$HOTLINE" '{"national_id":"7502020000","phone":"+359877000111","caller_verification":"code word"}' >"$T_DIR/hl.json"
check_eq "hotline hook: 200" 200 "$(status)"
check_eq "hotline hook held the subject's certificate" "$S2" "$(jq -r '.held[0]' "$T_DIR/hl.json")"
check_eq "CLI status shows on-hold" on-hold "$("$QTSP_BIN" status --home "$H" "$S2" | jq -r .status)"
check "CLI release" "$QTSP_BIN" release --home "$H" "$S2"
check_eq "HTTP sees the CLI's release" valid "$(api GET "/ra/v1/certificates/$S2" "$AUDITOR" | jq -r .status)"
check_not "CLI release again is refused" "$QTSP_BIN" release --home "$H" "$S2"
check "CLI terminate" "$QTSP_BIN" terminate --home "$H" "$S2" --reason cessationOfOperation --identity-check "id card at office"
check_not "CLI terminate refuses reason unspecified" "$QTSP_BIN" terminate --home "$H" "$S2" --reason unspecified --identity-check x
check_not "CLI hold after termination is refused" "$QTSP_BIN" hold --home "$H" "$S2" --verification x
check_eq "list of a subject's certificates" "$S2" "$(api GET "/ra/v1/subjects/$SID2/certificates" "$AUDITOR" | jq -r '.certificates[0].serial')"

check "SIGTERM exits 0" stop_server

# --- with a key pool: issuance takes a pre-generated key, kept wrapped
# under the token's key-storage key, and the certificate binds exactly it
printf 'version: 1\nsize: 3\n' >"$H/policies/keypool.yaml"
check "serve starts with a key pool" start_server "$H"
pool=0
for _ in $(seq 1 200); do
  # serve runs a worker process per core: samples may carry process="i"
  pool=$(curl -s "$BASE/metrics" | sed -n 's/^qtsp_keypool_available\({process="[0-9]*"}\)\? //p' | sort -n | head -n1)
  [[ $pool == 3 ]] && break
  sleep 0.1
done
check_eq "the filler filled the pool (metrics)" 3 "$pool"
P3='{"given_name":"Petar","surname":"Georgiev","country":"BG","national_id":"6503030000","email":"petar@example.bg","phone":"+359877000333","package":"free"}'
SID3=$(api POST /ra/v1/subjects "$OFFICER" "$P3" | jq -r .subject_id)
api POST "/ra/v1/subjects/$SID3/certificates" "$OFFICER" '{}' >"$T_DIR/pool.json"
check_eq "issue from the pool: 201" 201 "$(status)"
S3=$(jq -r .serial "$T_DIR/pool.json")
jq -r .certificate "$T_DIR/pool.json" >"$T_DIR/pool.pem"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
KL=$(grep "\"event\":\"cert.issue\"" "$T_DIR/audit.txt" | grep "$S3" | sed -E 's/.*"key_label":"([^"]+)".*/\1/')
check "the certificate's key is a pool key ($KL)" test "${KL#kw-}" != "$KL"
check_grep "its generation is in the audit log" "\"event\":\"keypool.refill\".*$KL" "$T_DIR/audit.txt"
SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login \
  --pin "$(cat "$H/secrets/token.pin")" --list-objects --type privkey --label "$KL" >"$T_DIR/kp.txt" 2>/dev/null
check_grep "pkcs11-tool lists the token's private keys" "^Private Key Object" "$T_DIR/kp.txt"
check_not "pkcs11-tool: the pool key is no token object (kept wrapped)" grep -q "label: *$KL" "$T_DIR/kp.txt"
SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login \
  --pin "$(cat "$H/secrets/token.pin")" --list-objects --type secrkey --label qtsp-key-storage >"$T_DIR/ksk.txt" 2>/dev/null
check_grep "pkcs11-tool: the key-storage key is sensitive and never extractable" "Access: +sensitive, always sensitive, never extractable" "$T_DIR/ksk.txt"
openssl x509 -in "$T_DIR/pool.pem" -noout -pubkey | openssl pkey -pubin -outform DER -out "$T_DIR/cert.spki"
SPKI_SHA=$(sha256sum "$T_DIR/cert.spki" | cut -d' ' -f1)
check_grep "the certificate binds the pool key recorded at generation" "\"label\":\"$KL\",\"spki_sha256\":\"$SPKI_SHA\"" "$T_DIR/audit.txt"
check "SIGTERM exits 0 (pool)" stop_server
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
for ev in subject.enrol cert.issue cert.hold cert.release cert.terminate; do
  check_grep "audit has $ev" "\"event\":\"$ev\"" "$T_DIR/audit.txt"
done
check_grep "the termination record says the key was destroyed" '"key":"destroyed"' "$T_DIR/audit.txt"
finish
