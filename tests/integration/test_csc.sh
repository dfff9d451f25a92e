#!/usr/bin/env bash
# Issue 13: remote signing over the CSC API v2, driven by curl as a CSC
# client against the real server: login -> credentials/list -> info ->
# authorize with a TOTP computed here (oathtool) -> signHash, each signature
# verified by openssl pkeyutl with the certificate's key; every refusal
# (held, terminated, SAD replayed / expired / for other hashes, another
# signer's credential, OTP replay, wrong-OTP lockout, login lockout, spent
# quota), relying-party paid signing, history, password change and reset,
# bad input, the audit chain.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
W=$T_DIR/w
mkdir -p "$W"

"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
# a short SAD lifetime so that expiry is observable here (shipped: 300s)
sed -i 's/^sad_lifetime: .*/sad_lifetime: 4s/' "$H/policies/signing.yaml"
# a one-record history page so that paging is observable here (shipped: 100)
sed -i 's/^history_page: .*/history_page: 1/' "$H/policies/signing.yaml"
# login refusals that change nothing: 5 audit records per 10 s window, then counted
sed -i 's/^  refusal_audit_window: .*/  refusal_audit_window: 10s/; s/^  refusal_audit_burst: .*/  refusal_audit_burst: 5/' \
  "$H/policies/signing.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
# two worker processes whatever the core count: lockouts and the OTP replay memory must
# hold across them (they live in the store)
start_server "$H" --processes 2 || { fail "server starts"; finish; exit 1; }

err() { jq -r '.error + ": " + .error_description' "$T_DIR/body"; }
# signer N NATIONAL_ID: issues a certificate; sets U_N (user id), P_N
# (password), S_N (TOTP secret, base32), C_N (credential = serial), and
# writes $W/N.pem and $W/N.pub
signer() {
  local n=$1 s
  s=$(issue "$2" "$n")
  cp "$T_DIR/$s.pem" "$W/$n.pem"
  openssl x509 -in "$W/$n.pem" -pubkey -noout >"$W/$n.pub"
  printf -v "U_$n" '%s' "$(jq -r .activation.user_id "$T_DIR/iss.json")"
  printf -v "P_$n" '%s' "$(jq -r .activation.password "$T_DIR/iss.json")"
  printf -v "S_$n" '%s' "$(jq -r .activation.otpauth_uri "$T_DIR/iss.json" | sed 's/.*secret=\([A-Z2-7]*\).*/\1/')"
  printf -v "C_$n" '%s' "$s"
}
# verify_all PUBKEY SEED SIGFILE(JSON answer): every signature of the
# answer verifies over $W/SEED-i.bin with the public key
verify_all() {
  local n i
  n=$(jq '.signatures | length' "$3")
  ((n > 0)) || return 1
  for ((i = 1; i <= n; i++)); do
    jq -r ".signatures[$((i - 1))]" "$3" | base64 -d >"$W/sig-$i.der"
    openssl pkeyutl -verify -pubin -inkey "$1" -in "$W/$2-$i.bin" -sigfile "$W/sig-$i.der" >/dev/null || return 1
  done
}
ES256=1.2.840.10045.4.3.2
SHA256=2.16.840.1.101.3.4.2.1

# ---- info (public) and a first signer ----------------------------------
csc info "" '{}' >"$W/info.json"
check_eq "info: 200 without a token" 200 "$(status)"
check_eq "info: CSC API 2" 2.0.0.2 "$(jq -r '.specs' "$W/info.json")"
check "info: signHash among the methods, ES256 among the algorithms" \
  jq -e '(.methods | index("signatures/signHash")) and (.signAlgorithms.algos | index("1.2.840.10045.4.3.2"))' "$W/info.json"

signer A 8001010001
signer B 8001010002
signer C 8001010003
signer D 8001010004
check "four signers issued" test -n "$U_A" -a -n "$U_B" -a -n "$U_C" -a -n "$U_D"

# ---- login -------------------------------------------------------------
TA=$(login "$U_A" "$P_A")
check "login A: an access token" test -n "$TA"
curl -s -u "$U_A:wrong-password" -X POST -o "$T_DIR/body" -w '%{http_code}' "$BASE/csc/v2/auth/login" >"$T_DIR/status"
check_eq "login with a wrong password: 401" 401 "$(status)"
check_eq "login refusal in the CSC error shape" "invalid_token: wrong user id or password" "$(err)"
csc auth/login "" '{}' >/dev/null
check_eq "login without Basic: 401" 401 "$(status)"

# ---- list, info --------------------------------------------------------
csc credentials/list "$TA" '{}' >"$W/list.json"
check_eq "list: 200" 200 "$(status)"
check_eq "list: exactly A's own credential" "[\"$C_A\"]" "$(jq -c .credentialIDs "$W/list.json")"
csc credentials/list "$TA" "{\"userID\":\"$U_B\"}" >/dev/null
check_eq "list with another signer's userID: 400" 400 "$(status)"
csc credentials/list "" '{}' >/dev/null
check_eq "list without a token: 401" 401 "$(status)"
check_eq "list without a token: invalid_token" invalid_token "$(jq -r .error "$T_DIR/body")"
csc credentials/info "$TA" "{\"credentialID\":\"$C_A\",\"certificates\":\"chain\",\"certInfo\":true,\"authInfo\":true}" >"$W/cinfo.json"
check_eq "info of A's credential: 200" 200 "$(status)"
check "info: SCAL 2, authMode explicit, OTP online/N, key EC 256, cert valid" \
  jq -e '.SCAL == "2" and .authMode == "explicit" and .OTP.type == "online" and .OTP.format == "N" and .key.len == 256 and .key.curve == "1.2.840.10045.3.1.7" and .cert.status == "valid" and (.cert.certificates | length) == 3' "$W/cinfo.json"
jq -r '.cert.certificates[0]' "$W/cinfo.json" | base64 -d | openssl x509 -inform DER -out "$W/A-info.pem"
check_eq "info: the first certificate is A's" "$(openssl x509 -in "$W/A.pem" -fingerprint -noout)" "$(openssl x509 -in "$W/A-info.pem" -fingerprint -noout)"
check "info: the chain verifies" openssl verify -CAfile "$H/public/chain.pem" "$W/A-info.pem"
csc credentials/info "$TA" "{\"credentialID\":\"$C_B\"}" >/dev/null
check_eq "info of another signer's credential: 400" 400 "$(status)"
check_eq "... reads as no such credential" "invalid_request: credentialID: no such credential" "$(err)"
csc credentials/sendOTP "$TA" "{\"credentialID\":\"$C_A\"}" >/dev/null
check_grep "sendOTP: the OTP is a TOTP app" "TOTP" "$T_DIR/body"

# ---- authorize, signHash -----------------------------------------------
HA=$(hashes 2 a1)
OTP_A=$(totp "$S_A" 0)
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_B\",\"numSignatures\":2,\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$OTP_A\"}" >/dev/null
check_eq "authorize another signer's credential: 400" 400 "$(status)"
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_A\",\"numSignatures\":3,\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$OTP_A\"}" >/dev/null
check_eq "authorize: numSignatures must be the number of hashes" 400 "$(status)"
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_A\",\"numSignatures\":2,\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$OTP_A\"}" >"$W/auth1.json"
check_eq "authorize with the TOTP: 200" 200 "$(status)"
SAD1=$(jq -r .SAD "$W/auth1.json")
check "authorize: a SAD expiring within 300 s" jq -e '(.SAD | length) > 20 and .expiresIn > 0 and .expiresIn <= 300' "$W/auth1.json"
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_A\",\"numSignatures\":2,\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$OTP_A\"}" >/dev/null
check_eq "the same OTP again: 403" 403 "$(status)"
check_eq "... as already used" "access_denied: OTP: code already used" "$(err)"

HX=$(hashes 2 x1)
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":$HX,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "signHash with a SAD for other hashes: 400" 400 "$(status)"
check_eq "... says so" "invalid_request: SAD: authorised for other hashes" "$(err)"
TB=$(login "$U_B" "$P_B")
csc signatures/signHash "$TB" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "signHash of A's credential with B's token: 400" 400 "$(status)"
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":$HA,\"signAlgo\":\"1.2.840.113549.1.1.11\"}" >/dev/null
check_eq "signHash with an RSA algorithm on an EC key: 400" 400 "$(status)"
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >"$W/sig1.json"
check_eq "signHash after those refusals (nothing consumed): 200" 200 "$(status)"
check_eq "signHash: two signatures" 2 "$(jq '.signatures | length' "$W/sig1.json")"
check "each signature verifies with the certificate's key (openssl pkeyutl)" verify_all "$W/A.pub" a1 "$W/sig1.json"
check "the signatures are DER ECDSA-Sig-Value" sh -c "openssl asn1parse -inform DER -in '$W/sig-1.der' | grep -q INTEGER"
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":$HA,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "the SAD replayed: 400" 400 "$(status)"
check_eq "... as already used" "invalid_request: SAD: already used" "$(err)"

# a SAD that expires (sad_lifetime 4s here)
HE=$(hashes 1 e1)
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_A\",\"numSignatures\":1,\"hashes\":$HE,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_A" 30)\"}" >"$W/auth2.json"
check_eq "authorize with the next step's code: 200" 200 "$(status)"
sleep 5
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$(jq -r .SAD "$W/auth2.json")\",\"hashes\":$HE,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "an expired SAD: 400" 400 "$(status)"
check_eq "... says expired" "invalid_request: SAD: expired" "$(err)"

# ---- wrong OTPs lock the credential (B) --------------------------------
HB=$(hashes 1 b1)
for i in 1 2 3 4 5; do
  csc credentials/authorize "$TB" "{\"credentialID\":\"$C_B\",\"numSignatures\":1,\"hashes\":$HB,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_B" $((3600 * i)))\"}" >/dev/null
  echo "$(status) $(err)" >>"$W/wrong.txt"
done
check_eq "five wrong OTPs: 403 each" 5 "$(grep -c '^403 ' "$W/wrong.txt")"
check_grep "the fifth locks the credential" "credential locked until" "$W/wrong.txt"
csc credentials/authorize "$TB" "{\"credentialID\":\"$C_B\",\"numSignatures\":1,\"hashes\":$HB,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_B" 0)\"}" >/dev/null
check_eq "then the right OTP: 403 (locked)" 403 "$(status)"
check_grep "... locked" "locked after wrong OTPs" "$T_DIR/body"

# ---- wrong passwords lock the signer out (B) -------------------------
for i in 1 2 3 4 5; do login "$U_B" "not-the-password-$i" >/dev/null; done
curl -s -u "$U_B:$P_B" -X POST -o "$T_DIR/body" -w '%{http_code}' "$BASE/csc/v2/auth/login" >"$T_DIR/status"
check_eq "after five wrong passwords the right one: 401" 401 "$(status)"
check_grep "... locked out" "locked out until" "$T_DIR/body"

# ---- quota (free: 3 signatures), relying party, history (C) -------------
TC=$(login "$U_C" "$P_C")
HC=$(hashes 3 c1)
csc credentials/authorize "$TC" "{\"credentialID\":\"$C_C\",\"numSignatures\":3,\"hashes\":$HC,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_C" 0)\"}" >"$W/authc1.json"
csc signatures/signHash "$TC" "{\"credentialID\":\"$C_C\",\"SAD\":\"$(jq -r .SAD "$W/authc1.json")\",\"hashes\":$HC,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >"$W/sigc1.json"
check_eq "free package: three signatures: 200" 200 "$(status)"
check "... all three verify" verify_all "$W/C.pub" c1 "$W/sigc1.json"
# the relying party first: the SAD below lives 4 s (a CLI run under load
# between authorize and signHash let it expire)
RP_SECRET=$("$QTSP_BIN" rp add --home "$H" acme 2>/dev/null | tail -n1)
check "rp add prints a secret" test -n "$RP_SECRET"
HC4=$(hashes 1 c4)
csc credentials/authorize "$TC" "{\"credentialID\":\"$C_C\",\"numSignatures\":1,\"hashes\":$HC4,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_C" 30)\"}" >"$W/authc2.json"
SADC=$(jq -r .SAD "$W/authc2.json")
csc signatures/signHash "$TC" "{\"credentialID\":\"$C_C\",\"SAD\":\"$SADC\",\"hashes\":$HC4,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "the fourth signature: 429" 429 "$(status)"
check_eq "... quota_exceeded" quota_exceeded "$(jq -r .error "$T_DIR/body")"
csc signatures/signHash "$TC" "{\"credentialID\":\"$C_C\",\"SAD\":\"$SADC\",\"hashes\":$HC4,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" -H "X-QTSP-Relying-Party: acme:wrong" >/dev/null
check_eq "a wrong relying-party secret: 401" 401 "$(status)"
csc signatures/signHash "$TC" "{\"credentialID\":\"$C_C\",\"SAD\":\"$SADC\",\"hashes\":$HC4,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" -H "X-QTSP-Relying-Party: acme:$RP_SECRET" >"$W/sigc2.json"
check_eq "the same SAD paid by the relying party (the 429 consumed nothing): 200" 200 "$(status)"
check "... it verifies" verify_all "$W/C.pub" c4 "$W/sigc2.json"
"$QTSP_BIN" rp report --home "$H" >"$W/rp.txt" 2>&1
check_grep "rp report counts the relying party's signing" "^[0-9]{4}-[0-9]{2} +1 .* acme$" "$W/rp.txt"
api GET /api/v1/history "$TC" >"$W/hist-p1.json"
check_eq "history: 200" 200 "$(status)"
check_eq "history without ?limit: one page of history_page (1) record" 1 "$(jq '.signings | length' "$W/hist-p1.json")"
check "... with the cursor of the next page" jq -e '.next | test("^[0-9a-f]{32}$")' "$W/hist-p1.json"
api GET "/api/v1/history?after=$(jq -r .next "$W/hist-p1.json")" "$TC" >"$W/hist-p2.json"
check_eq "history?after=NEXT: the next page" 200 "$(status)"
check "... the last one: no next" jq -e '(.signings | length) == 1 and (has("next") | not)' "$W/hist-p2.json"
jq -s '{signings: (.[0].signings + .[1].signings)}' "$W/hist-p1.json" "$W/hist-p2.json" >"$W/hist.json"
check_eq "history: the two pages hold all four signatures" 4 "$(jq '[.signings[].hashes | length] | add' "$W/hist.json")"
api GET "/api/v1/history?limit=1000" "$TC" >"$W/hist-all.json"
check_eq "history?limit=1000 (the maximum page): 200" 200 "$(status)"
check "... both records, no next" jq -e '(.signings | length) == 2 and (has("next") | not)' "$W/hist-all.json"
api GET "/api/v1/history?limit=1001" "$TC" >/dev/null
check_eq "history?limit=1001 (over the maximum page): 400" 400 "$(status)"
api GET "/api/v1/history?after=xyz" "$TC" >/dev/null
check_eq "history?after= not a cursor: 400" 400 "$(status)"
check_eq "history: one paid by acme" 1 "$(jq '[.signings[] | select(.relying_party == "acme")] | length' "$W/hist.json")"
check_eq "history: only C's credential" "[\"$C_C\"]" "$(jq -c '[.signings[].credential] | unique' "$W/hist.json")"
api GET "/api/v1/history?limit=1" "$TC" >"$W/hist1.json"
check_eq "history?limit=1: the newest only" 1 "$(jq '.signings | length' "$W/hist1.json")"
api GET "/api/v1/history?limit=0" "$TC" >/dev/null
check_eq "history?limit=0: 400" 400 "$(status)"
api GET /api/v1/history "" >/dev/null
check_eq "history without a token: 401" 401 "$(status)"

# ---- held and terminated certificates (D) -------------------------------
TD=$(login "$U_D" "$P_D")
HD=$(hashes 1 d1)
csc credentials/authorize "$TD" "{\"credentialID\":\"$C_D\",\"numSignatures\":1,\"hashes\":$HD,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_D" 0)\"}" >"$W/authd.json"
check_eq "D authorised: 200" 200 "$(status)"
api POST "/ra/v1/certificates/$C_D/hold" "$HOTLINE" '{"caller_verification":"code word"}' >/dev/null
check_eq "hotline holds D's certificate" 200 "$(status)"
csc signatures/signHash "$TD" "{\"credentialID\":\"$C_D\",\"SAD\":\"$(jq -r .SAD "$W/authd.json")\",\"hashes\":$HD,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "signHash with a held certificate: 409" 409 "$(status)"
check_grep "... suspended" "suspended" "$T_DIR/body"
csc credentials/authorize "$TD" "{\"credentialID\":\"$C_D\",\"numSignatures\":1,\"hashes\":$HD,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_D" 30)\"}" >/dev/null
check_eq "authorize with a held certificate: 409" 409 "$(status)"
csc credentials/info "$TD" "{\"credentialID\":\"$C_D\"}" >"$W/dinfo.json"
check_eq "info shows the certificate suspended" suspended "$(jq -r .cert.status "$W/dinfo.json")"
api POST "/ra/v1/certificates/$C_D/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport"}' >/dev/null
check_eq "office terminates D's certificate" 200 "$(status)"
csc credentials/authorize "$TD" "{\"credentialID\":\"$C_D\",\"numSignatures\":1,\"hashes\":$HD,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$S_D" 30)\"}" >/dev/null
check_eq "authorize with a terminated certificate: 409" 409 "$(status)"
check_grep "... revoked" "revoked" "$T_DIR/body"

# ---- bad input -----------------------------------------------------------
csc credentials/info "$TA" '{"credentialID":' >/dev/null
check_eq "broken JSON: 400" 400 "$(status)"
check_eq "... in the CSC shape" invalid_request "$(jq -r .error "$T_DIR/body")"
csc credentials/info "$TA" "{\"credentialID\":\"$C_A\",\"colour\":\"blue\"}" >/dev/null
check_eq "an unknown field: 400" 400 "$(status)"
check_grep "... named" "colour" "$T_DIR/body"
head -c 300000 /dev/zero | tr '\0' 'a' >"$W/big.json"
# Expect: 100-continue: the 413 comes before the body is sent (no reset while uploading)
csc signatures/signHash "$TA" "@$W/big.json" -H "Expect: 100-continue" >/dev/null
check_eq "an oversized body: 413" 413 "$(status)"
csc signatures/signHash "$TA" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD1\",\"hashes\":[\"not base64!\"],\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >/dev/null
check_eq "a hash that is not base64: 400" 400 "$(status)"
csc credentials/authorize "$TA" "{\"credentialID\":\"$C_A\",\"numSignatures\":1,\"hashes\":[\"$(head -c 20 /dev/zero | base64)\"],\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"123456\"}" >/dev/null
check_eq "a hash of the wrong length: 400" 400 "$(status)"
csc credentials/list "$TA" '[]' >/dev/null
check_eq "a body that is not an object: 400" 400 "$(status)"
curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TA" -H 'Content-Type: text/plain' --data '{}' "$BASE/csc/v2/credentials/info" >"$T_DIR/status"
check_eq "wrong Content-Type: refused" 415 "$(status)"

# ---- password change, revoke --------------------------------------------
api POST /api/v1/password "$TA" "{\"old_password\":\"wrong\",\"new_password\":\"correct horse battery\"}" >/dev/null
check_eq "password change with a wrong old password: 403" 403 "$(status)"
api POST /api/v1/password "$TA" "{\"old_password\":\"$P_A\",\"new_password\":\"short\"}" >/dev/null
check_eq "a too short new password: 400" 400 "$(status)"
api POST /api/v1/password "$TA" "{\"old_password\":\"$P_A\",\"new_password\":\"correct horse battery\"}" >/dev/null
check_eq "password change: 204" 204 "$(status)"
csc credentials/list "$TA" '{}' >/dev/null
check_eq "the old access token ends with the change: 401" 401 "$(status)"
check "the old password no longer logs in" test -z "$(login "$U_A" "$P_A")"
TA=$(login "$U_A" "correct horse battery")
check "the new password logs in" test -n "$TA"
csc auth/revoke "$TA" '{}' >/dev/null
check_eq "auth/revoke: 204" 204 "$(status)"
csc credentials/list "$TA" '{}' >/dev/null
check_eq "a revoked token: 401" 401 "$(status)"

# ---- office reset (signer reset) ----------------------------------------
rrc=0; "$QTSP_BIN" signer reset --home "$H" "$U_B" >"$W/reset.json" 2>"$W/reset.err" || rrc=$?
check_eq "signer reset exits 0" 0 "$rrc"
"$QTSP_BIN" signer reset --home "$H" ffffffff >/dev/null 2>"$W/reset2.err"
check_grep "signer reset of an unknown signer says so" "no signer ffffffff" "$W/reset2.err"
check "signer reset prints new activation data" jq -e '.password and (.otpauth_uri | startswith("otpauth://totp/"))' "$W/reset.json"
TB2=$(login "$U_B" "$(jq -r .password "$W/reset.json")")
check "the reset password logs in (the lockout lifted)" test -n "$TB2"
check "the old password no longer does" test -z "$(login "$U_B" "$P_B")"
SB2=$(jq -r .otpauth_uri "$W/reset.json" | sed 's/.*secret=\([A-Z2-7]*\).*/\1/')
csc credentials/authorize "$TB2" "{\"credentialID\":\"$C_B\",\"numSignatures\":1,\"hashes\":$HB,\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$SB2" 30)\"}" >"$W/authb.json"
check_eq "the new TOTP secret authorises (credential unlocked)" 200 "$(status)"
csc signatures/signHash "$TB2" "{\"credentialID\":\"$C_B\",\"SAD\":\"$(jq -r .SAD "$W/authb.json")\",\"hashes\":$HB,\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" >"$W/sigb.json"
check "... and B signs" verify_all "$W/B.pub" b1 "$W/sigb.json"

# ---- a flood of logins with unknown user ids ------------------------------
# each used to add an audit record; now 5 per window (this test's policy), the
# rest one csc.refused.summary when the window is over, naming the ids; a
# locked-out signer has a burst of its own (5) that the flood cannot use up
unknown_n() { "$QTSP_BIN" audit list --home "$H" 2>/dev/null | grep -c '"reason":"unknown user"' || true; }
locked_d() { "$QTSP_BIN" audit list --home "$H" 2>/dev/null | grep '"event":"csc.login.locked"' | grep -c "\"user_id\":\"$U_D\"" || true; }
for i in $(seq 1 5); do login "$U_D" "wrong password" >/dev/null; done # D locked out
sleep 10.5 # the windows of the refusals above are over
u0=$(unknown_n)
l0=$(locked_d)
for i in $(seq 1 5); do login "$(printf 'dead%04x' "$i")" "some password" >/dev/null; done
for i in $(seq 1 6); do login dead00aa "some password" >/dev/null; done
login dead0006 "some password" >/dev/null
check_eq "12 logins with unknown ids: 5 audit records (the burst)" $((u0 + 5)) "$(unknown_n)"
for i in $(seq 1 8); do login "$U_D" "$P_D" >/dev/null; done
check_eq "then, in the same window, 8 logins of a locked-out signer: 5 records of its own" $((l0 + 5)) "$(locked_d)"
sleep 10.5
login dead0000 "some password" >/dev/null
login "$U_D" "$P_D" >/dev/null
"$QTSP_BIN" audit list --home "$H" 2>/dev/null | grep '"event":"csc.refused.summary"' >"$W/summaries.txt"
grep '"unknown_user":7,' "$W/summaries.txt" | tail -n 1 >"$W/summary.txt"
check_grep "then one summary counts the other 7 unknown ids" '"refused_not_recorded":7,' "$W/summary.txt"
check_grep "... naming the ids with counts, the most refused first" '"other_user_ids":0,.*"user_ids":\[{"refused":6,"user_id":"dead00aa"},{"refused":1,"user_id":"dead0006"}\]' "$W/summary.txt"
grep "\"user_id\":\"$U_D\"" "$W/summaries.txt" | tail -n 1 >"$W/summary-d.txt"
check_grep "... and one for the locked-out signer, its other 3" '"login_locked_out":3,.*"refused_not_recorded":3,' "$W/summary-d.txt"
check_eq "... and the new window's first refusal has its own record" $((u0 + 6)) "$(unknown_n)"
check_eq "... the signer's too" $((l0 + 6)) "$(locked_d)"

# ---- audit ---------------------------------------------------------------
"$QTSP_BIN" audit list --home "$H" >"$W/audit.txt" 2>/dev/null
for e in csc.login csc.login.failed csc.login.locked csc.authorize csc.otp.failed csc.otp.locked csc.otp.refused csc.sign csc.logout csc.password.change signer.reset; do
  check_grep "audit has $e" "\"event\":\"$e\"" "$W/audit.txt"
done
check_not "no password or TOTP secret in the audit" grep -q -e "$P_C" -e "$S_C" "$W/audit.txt"
check "audit chain verifies" "$QTSP_BIN" audit verify --home "$H"
rc=0; stop_server || rc=$?
check_eq "SIGTERM exits 0 (no leak, no sanitizer report)" 0 "$rc"
# a home made before remote signing has no policies/signing.yaml: the shipped one serves
rm "$H/policies/signing.yaml"
check "a home without signing.yaml passes config check (the shipped policy)" "$QTSP_BIN" config check --home "$H"
finish
