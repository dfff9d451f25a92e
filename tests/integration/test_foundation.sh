#!/usr/bin/env bash
# Issue 2: init -> serve -> curl /health, /certs/*, /metrics -> SIGTERM, plus
# the ceremony's promises checked with outside tools (openssl, pkcs11-tool).
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so

check "init creates a home" "$QTSP_BIN" init --home "$H" --operator "test ceremony"
check_not "init refuses an initialised home" "$QTSP_BIN" init --home "$H"
"$QTSP_BIN" init --home "$H" 2>"$T_DIR/reinit.err"
check_grep "refusal says why" "already initialised" "$T_DIR/reinit.err"

# a failed ceremony leaves nothing half-made behind, and keeps prepared policies
F=$T_DIR/failing
mkdir -p "$F/policies"
printf 'bogus_key: 1\n' >"$F/policies/tsa-unit.yaml"
check_not "init with a broken profile fails" "$QTSP_BIN" init --home "$F"
check_not "... and leaves no secrets" test -e "$F/secrets"
check_not "... no token" test -e "$F/hsm"
check_not "... no store" test -e "$F/store"
check "... and keeps the operator's prepared policy" grep -q bogus_key "$F/policies/tsa-unit.yaml"
rm "$F/policies/tsa-unit.yaml"
check "init succeeds once the cause is fixed" "$QTSP_BIN" init --home "$F"
rm "$F/qtsp.yaml"
check_not "init refuses a home with a token from an interrupted ceremony" "$QTSP_BIN" init --home "$F"
check "... and removed none of it" test -d "$F/hsm/tokens" -a -s "$F/secrets/token.pin"
G=$T_DIR/guarded
mkdir -p "$G/policies" && ln -s "$T_DIR/nowhere" "$G/secrets"
printf 'bogus_key: 1\n' >"$G/policies/root-ca.yaml"
check_not "init refuses a home with a dangling secrets link" "$QTSP_BIN" init --home "$G"
check "... and leaves the link alone" test -L "$G/secrets"
rm "$G/secrets"
check_not "init with a broken root profile fails" "$QTSP_BIN" init --home "$G"
check_eq "... and removes only the policies it copied" "root-ca.yaml" "$(ls "$G/policies")"
touch "$G/.qtsp-init.lock"
check_not "a second init while one holds the home is refused" "$QTSP_BIN" init --home "$G"
check "... and touches nothing" test -e "$G/.qtsp-init.lock" -a ! -e "$G/secrets"

for f in root-ca.crt issuing-ca.crt ocsp.crt tsa.crt validation.crt chain.pem; do
  check "public/$f exists" test -s "$H/public/$f"
done
check "issuing CA verifies under the root" openssl verify -CAfile "$H/public/root-ca.crt" "$H/public/issuing-ca.crt"
check "OCSP cert verifies under root+issuing" openssl verify -CAfile "$H/public/root-ca.crt" -untrusted "$H/public/issuing-ca.crt" "$H/public/ocsp.crt"
check "TSA cert verifies under the root" openssl verify -CAfile "$H/public/root-ca.crt" -untrusted "$H/public/issuing-ca.crt" "$H/public/tsa.crt"
check "validation service cert verifies under the root" openssl verify -CAfile "$H/public/root-ca.crt" "$H/public/validation.crt"
openssl x509 -in "$H/public/ocsp.crt" -noout -text >"$T_DIR/ocsp.txt"
check_grep "OCSP cert has OCSPSigning" "OCSP Signing" "$T_DIR/ocsp.txt"
check_grep "OCSP cert has ocsp-nocheck" "OCSP No Check" "$T_DIR/ocsp.txt"
openssl x509 -in "$H/public/tsa.crt" -noout -text >"$T_DIR/tsa.txt"
check_grep "TSA EKU critical" "Extended Key Usage: critical" "$T_DIR/tsa.txt"
check_grep "TSA EKU timeStamping" "Time Stamping" "$T_DIR/tsa.txt"

check_not "no PEM private key anywhere under the home" grep -rlE "PRIVATE KEY" "$H"
check_eq "secrets is 0700" 700 "$(stat -c %a "$H/secrets")"
check_eq "token.pin is 0600" 600 "$(stat -c %a "$H/secrets/token.pin")"
bad_modes=$(find "$H/secrets" -type f ! -perm 0600 | wc -l)
check_eq "every secret file is 0600" 0 "$bad_modes"

export SOFTHSM2_CONF=$H/hsm/softhsm2.conf
pkcs11-tool --module "$MODULE" --token-label qtsp --login --pin "$(cat "$H/secrets/token.pin")" \
  --list-objects --type privkey >"$T_DIR/objects.txt" 2>&1
nkeys=$(grep -c "^Private Key Object" "$T_DIR/objects.txt")
check "token holds at least 4 private keys ($nkeys)" test "$nkeys" -ge 4
nnever=$(grep -c "never extractable" "$T_DIR/objects.txt")
check_eq "every private key is never-extractable" "$nkeys" "$nnever"
check_not "no private key is extractable" grep -qE "^\s*Access:.*[^r] extractable" "$T_DIR/objects.txt"
unset SOFTHSM2_CONF

check_grep "ceremony report names the token serial" "serial" "$H/ceremony-report.txt"
check_grep "ceremony report has SHA-256 fingerprints" "SPKI SHA-256 [0-9a-f]{64}" "$H/ceremony-report.txt"
check "audit verify passes after init" "$QTSP_BIN" audit verify --home "$H"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
check_grep "ceremony is in the audit log" "ceremony.keys" "$T_DIR/audit.txt"

tok=$("$QTSP_BIN" operator add --home "$H" alice --role ra-officer)
check_eq "operator add prints exactly one line" 1 "$(printf '%s\n' "$tok" | wc -l)"
check "the token is long and random" test "${#tok}" -ge 40
check_not "the token is not stored in clear" grep -rqF "${tok#*.}" "$H/store"
check_not "operator add refuses an unknown role" "$QTSP_BIN" operator add --home "$H" bob --role root

# a YAML error names file:line
cp -a "$H" "$T_DIR/broken"
printf 'version: 1\nbase_url: http://x\nnonsense_key: 3\n' >"$T_DIR/broken/qtsp.yaml"
"$QTSP_BIN" serve --home "$T_DIR/broken" --listen 127.0.0.1:0 2>"$T_DIR/yaml.err"
check_grep "unknown YAML key names file:line:col and key" "qtsp.yaml:3:1: .*nonsense_key" "$T_DIR/yaml.err"
"$QTSP_BIN" serve --home "$T_DIR/missing" 2>"$T_DIR/missing.err"
check_grep "serve on a missing home says to run qtsp init" "qtsp init" "$T_DIR/missing.err"
check_grep "errors are one qtsp: line" "^qtsp: serve: " "$T_DIR/missing.err"

# every verb: --help exits 0; a usage error is exactly one "qtsp: ..." line, exit 2
for v in init serve operator audit subject issue status hold release terminate crl token rekey; do
  check "qtsp $v --help" "$QTSP_BIN" $v --help
  "$QTSP_BIN" $v --bogus-flag >"$T_DIR/u.out" 2>"$T_DIR/u.err"; rc=$?
  check_eq "qtsp $v with a bad flag exits 2" 2 "$rc"
  check_eq "qtsp $v: one error line" 1 "$(wc -l <"$T_DIR/u.err")"
  check_grep "qtsp $v: the line is qtsp: <what>: <why>" "^qtsp: [a-z ]+: .+" "$T_DIR/u.err"
done

check "serve starts" start_server "$H"
check_eq "GET /health" "ok" "$(curl -s "$BASE/health")"
curl -s -o "$T_DIR/root.der" -w '%{content_type}' "$BASE/certs/root-ca.crt" >"$T_DIR/ct.txt"
check_eq "root cert content type" "application/pkix-cert" "$(cat "$T_DIR/ct.txt")"
openssl x509 -in "$H/public/root-ca.crt" -outform DER -out "$T_DIR/root.expect.der"
check "GET /certs/root-ca.crt is the root in DER" cmp "$T_DIR/root.der" "$T_DIR/root.expect.der"
curl -s -o "$T_DIR/issuing.der" "$BASE/certs/issuing-ca.crt"
check "GET /certs/issuing-ca.crt parses as DER" openssl x509 -inform DER -in "$T_DIR/issuing.der" -noout
# other workers' counters reach /metrics within a second: wait for a sample
for _ in $(seq 1 30); do
  curl -s "$BASE/metrics" >"$T_DIR/metrics.txt"
  grep -q '^qtsp_http_requests_total{' "$T_DIR/metrics.txt" && break
  sleep 0.1
done
check_grep "metrics: request counter" "^qtsp_http_requests_total\{" "$T_DIR/metrics.txt"
check_grep "metrics: latency histogram" "^qtsp_http_request_duration_seconds_bucket" "$T_DIR/metrics.txt"
# serve runs a worker process per core: each sample may carry process="i"
PL='(process="[0-9]+")?'
# the build info names the version `qtsp --version` prints (issue 16)
ver=$("$QTSP_BIN" --version | awk '{print $2}')
check_grep "metrics: build info with the version of --version" "^qtsp_build_info\\{(process=\"[0-9]+\",)?version=\"${ver//./\\.}\",commit=\"[^\"]*\"\\} 1$" "$T_DIR/metrics.txt"
check_grep "metrics: store size" "^qtsp_store_used_bytes(\{$PL\})? [0-9]+" "$T_DIR/metrics.txt"
check_grep "metrics: token sessions" "^qtsp_hsm_sessions(\{$PL\})? [0-9]+" "$T_DIR/metrics.txt"
check_grep "metrics: OCSP certificate lifetime left" '^qtsp_certificate_expiry_seconds\{(process="[0-9]+",)?cert="ocsp"\} [1-9][0-9]+' "$T_DIR/metrics.txt"
check_eq "unknown path is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/nope")"
check "SIGTERM exits 0" stop_server
check "audit verify still passes" "$QTSP_BIN" audit verify --home "$H"

# JSON-lines logging
check "serve --log-format json starts" start_server "$H" --log-format json
curl -s "$BASE/health" >/dev/null
check "SIGTERM exits 0 (json)" stop_server
check "every log line is a JSON object" jq -e -s 'length > 0 and all(.[]; type == "object" and has("time") and has("level") and has("msg"))' "$T_DIR/serve.err"
check "the access line carries request id, path, status, latency" jq -e -s 'any(.[]; .msg == "access" and .path == "/health" and .status == 200 and (.request_id|length) == 16 and (.ms|type) == "number")' "$T_DIR/serve.err"
check_not "no secret in the logs (token PIN)" grep -qF "$(cat "$H/secrets/token.pin")" "$T_DIR/serve.err"
finish
