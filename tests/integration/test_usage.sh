#!/usr/bin/env bash
# Packages, relying parties and the usage history from the command line
# (issue 13, docs/csc.md "Packages, relying parties, history"):
#  - qtsp rp add prints a secret once (the only stdout line), keeps only an
#    argon2id hash, refuses a duplicate or a bad name and changes nothing;
#  - qtsp rp list / report (text and JSON, --month), bad month refused;
#  - qtsp signer package / quota / history on a signer issued from the CLI:
#    a bad package name is refused and nothing changes, a change restarts
#    the window; every change (and the history read) is in the audit;
#  - end to end over the CSC API (curl, oathtool): the free package signs 3
#    times, the 4th answers 429, the same SAD paid by a relying party
#    succeeds (wrong secret 401, malformed header 400) and is counted for it
#    in rp report, the package's count is unchanged, GET /api/v1/history and
#    qtsp signer history list both signings; GET /api/v1/quota answers what
#    qtsp signer quota prints, each signer their own, 401 without a token.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home

"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
q() { "$QTSP_BIN" "$@" --home "$H"; }

# ---- relying parties ----
q rp add shop.example >"$T_DIR/rp.out" 2>"$T_DIR/rp.err"
check_eq "rp add exits 0" 0 "$?"
check_eq "rp add prints one line" 1 "$(wc -l <"$T_DIR/rp.out")"
SECRET=$(cat "$T_DIR/rp.out")
check "the secret is 43 characters of base64url" grep -Eqx '[A-Za-z0-9_-]{43}' "$T_DIR/rp.out"
check_grep "rp add says the secret is shown once" "shown only now" "$T_DIR/rp.err"
q rp add bank >"$T_DIR/rp2.out" 2>/dev/null
check_not "a second relying party gets another secret" test "$(cat "$T_DIR/rp2.out")" == "$SECRET"

q rp add shop.example >"$T_DIR/dup.out" 2>"$T_DIR/dup.err"
check_eq "a duplicate name is refused" 1 "$?"
check_eq "the refusal prints nothing on stdout" 0 "$(wc -c <"$T_DIR/dup.out")"
check_grep "the refusal says why" '^qtsp: rp add: .*exists' "$T_DIR/dup.err"
q rp add "bad name" >/dev/null 2>"$T_DIR/bad.err"
check_eq "a bad name is refused" 1 "$?"
check_grep "the bad name's error line" '^qtsp: rp add: name:' "$T_DIR/bad.err"
q rp add >/dev/null 2>"$T_DIR/usage.err"
check_eq "rp add without a name is a usage error" 2 "$?"

q rp list >"$T_DIR/list.txt"
check_grep "rp list shows shop.example" 'shop\.example$' "$T_DIR/list.txt"
q rp list --json >"$T_DIR/list.json"
check_eq "rp list --json lists both, by name" "bank shop.example" \
  "$(jq -r '[.relying_parties[].name] | join(" ")' "$T_DIR/list.json")"
check_not "no secret or hash in the list" grep -Eq "secret|$SECRET|argon2" "$T_DIR/list.json"

# the stored record holds an argon2id hash, never the secret
mdb_dump -s relying_parties -p "$H/store" >"$T_DIR/rps.dump" 2>/dev/null
check_grep "the store keeps an argon2id hash" 'argon2id' "$T_DIR/rps.dump"
check_not "the store does not keep the secret" grep -q -- "$SECRET" "$T_DIR/rps.dump"

q rp report --json >"$T_DIR/report.json"
check_eq "rp report: nothing paid yet" 0 "$(jq '.usage | length' "$T_DIR/report.json")"
check_eq "rp report: the price per signature from packages.yaml" "0.25 EUR" \
  "$(jq -r '"\(.price_per_signature) \(.currency)"' "$T_DIR/report.json")"
q rp report --month 2026-12 >"$T_DIR/report.txt"
check_grep "rp report text has its header" '^MONTH +SIGNATURES +AMOUNT +RELYING_PARTY' "$T_DIR/report.txt"
q rp report --month 2026-13 >/dev/null 2>"$T_DIR/month.err"
check_eq "a bad month is refused" 1 "$?"
check_grep "the bad month's error line" '^qtsp: rp report: month: must be YYYY-MM' "$T_DIR/month.err"

# ---- a signer ----
printf '{"given_name":"Anna","surname":"Test","country":"DE","national_id":"1234567890","email":"a@example.de","phone":"+491511234567","package":"free"}' >"$T_DIR/subj.json"
SID=$(q subject add --json "$T_DIR/subj.json" 2>/dev/null | jq -r .subject_id)
q issue "$SID" >"$T_DIR/iss.json" 2>/dev/null
USER=$(jq -r .activation.user_id "$T_DIR/iss.json")
check "a signer issued from the command line" test -n "$USER" -a "$USER" != null

q signer quota "$USER" --json >"$T_DIR/quota.json"
check_eq "the free package: 3 signatures left" "free 3" \
  "$(jq -r '"\(.package) \(.signatures_left)"' "$T_DIR/quota.json")"
check_eq "the free package has no end" null "$(jq -r .valid_until "$T_DIR/quota.json")"
q signer quota "$USER" >"$T_DIR/quota.txt"
check_grep "quota text: what is left" '^signatures left: 3$' "$T_DIR/quota.txt"

before=$(q audit list | wc -l)
cp "$T_DIR/quota.json" "$T_DIR/quota0.json"
q signer package "$USER" gold >/dev/null 2>"$T_DIR/pkg.err"
check_eq "an unknown package is refused" 1 "$?"
check_grep "the unknown package's error line" "^qtsp: signer package: package: unknown package 'gold'" "$T_DIR/pkg.err"
check_eq "nothing audited for the refusal" "$before" "$(q audit list | wc -l)"
q signer quota "$USER" --json >"$T_DIR/quota1.json"
check "the package is unchanged" cmp -s "$T_DIR/quota0.json" "$T_DIR/quota1.json"
q signer package nobody free >/dev/null 2>"$T_DIR/nobody.err"
check_eq "an unknown signer is refused" 1 "$?"
check_grep "the unknown signer's error line" '^qtsp: signer package: no signer nobody' "$T_DIR/nobody.err"

sleep 1 # the new window starts at a later second than enrolment
q signer package "$USER" economical 2>"$T_DIR/pkg.err"
check_eq "signer package economical" 0 "$?"
q signer quota "$USER" --json >"$T_DIR/quota2.json"
check_eq "now economical with 7 left" "economical 7" \
  "$(jq -r '"\(.package) \(.signatures_left)"' "$T_DIR/quota2.json")"
check_eq "the window restarts at the change" "$(jq -r .package_since "$T_DIR/quota2.json")" \
  "$(jq -r .window_start "$T_DIR/quota2.json")"
check_not "the window is not the enrolment's" test "$(jq -r .window_start "$T_DIR/quota2.json")" == \
  "$(jq -r .window_start "$T_DIR/quota0.json")"
check_eq "economical lasts 30 days from the change" \
  "$(date -u -d "$(jq -r .package_since "$T_DIR/quota2.json") + 30 days" +%FT%TZ)" \
  "$(jq -r .valid_until "$T_DIR/quota2.json")"

q signer history "$USER" --json >"$T_DIR/hist.json"
check_eq "no signings yet" 0 "$(jq '.signings | length' "$T_DIR/hist.json")"
q signer history "$USER" >"$T_DIR/hist.txt"
check_grep "history text has its header" '^TIME +CREDENTIAL' "$T_DIR/hist.txt"
q signer history nobody >/dev/null 2>"$T_DIR/hn.err"
check_eq "history of an unknown signer refused" 1 "$?"
q signer history "$USER" --limit x >/dev/null 2>"$T_DIR/limit.err"
check_eq "a bad --limit is refused" 1 "$?"
check_grep "the bad --limit's error line" '^qtsp: signer history: --limit:' "$T_DIR/limit.err"

# ---- end to end: a CSC client spends the free package, a relying party pays ----
W=$T_DIR/w
mkdir -p "$W"
printf '{"given_name":"Fritz","surname":"Test","country":"DE","national_id":"2345678901","email":"f@example.de","phone":"+491512345678","package":"free"}' >"$T_DIR/subj2.json"
SID2=$(q subject add --json "$T_DIR/subj2.json" 2>/dev/null | jq -r .subject_id)
q issue "$SID2" >"$W/iss2.json" 2>/dev/null
UF=$(jq -r .activation.user_id "$W/iss2.json")
PF=$(jq -r .activation.password "$W/iss2.json")
SF=$(jq -r .activation.otpauth_uri "$W/iss2.json" | sed 's/.*secret=\([A-Z2-7]*\).*/\1/')
CF=$(jq -r .serial "$W/iss2.json")
SHA256=2.16.840.1.101.3.4.2.1
ES256=1.2.840.10045.4.3.2
check "serve starts" start_server "$H"
TF=$(login "$UF" "$PF")
check "the free signer logs in" test -n "$TF"
authorize() { # N SEED OTP_OFFSET: prints the SAD
  csc credentials/authorize "$TF" "{\"credentialID\":\"$CF\",\"numSignatures\":$1,\"hashes\":$(hashes "$1" "$2"),\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(totp "$SF" "$3")\"}" | jq -r '.SAD // empty'
}
sign_hash() { # N SEED SAD [curl args]
  local n=$1 seed=$2 sad=$3
  shift 3
  csc signatures/signHash "$TF" "{\"credentialID\":\"$CF\",\"SAD\":\"$sad\",\"hashes\":$(hashes "$n" "$seed"),\"hashAlgorithmOID\":\"$SHA256\",\"signAlgo\":\"$ES256\"}" "$@"
}
SAD=$(authorize 3 f1 -30)
sign_hash 3 f1 "$SAD" >/dev/null
check_eq "free package: three signatures in one signHash: 200" 200 "$(status)"
SAD=$(authorize 1 f2 0)
sign_hash 1 f2 "$SAD" >/dev/null
check_eq "the fourth: 429" 429 "$(status)"
c=${SECRET:0:1}
[[ $c == A ]] && c=B || c=A
sign_hash 1 f2 "$SAD" -H "X-QTSP-Relying-Party: shop.example:$c${SECRET:1}" >/dev/null
check_eq "a wrong relying-party secret: 401" 401 "$(status)"
sign_hash 1 f2 "$SAD" -H "X-QTSP-Relying-Party: shop.example" >/dev/null
check_eq "a malformed relying-party header: 400" 400 "$(status)"
sign_hash 1 f2 "$SAD" -H "X-QTSP-Relying-Party: nobody:$SECRET" >/dev/null
check_eq "an unknown relying party: 401" 401 "$(status)"
sign_hash 1 f2 "$SAD" -H "X-QTSP-Relying-Party: shop.example:$SECRET" >"$W/rpsig.json"
check_eq "the same SAD paid by the relying party: 200" 200 "$(status)"
check_eq "... one signature" 1 "$(jq '.signatures | length' "$W/rpsig.json")"
q signer quota "$UF" --json >"$W/fq.json"
check_eq "the package still counts 3 used, 0 left" "3 0" "$(jq -r '"\(.used) \(.signatures_left)"' "$W/fq.json")"
MONTH=$(date -u +%Y-%m)
q rp report --json >"$W/rep.json"
check_eq "rp report: shop.example paid 1 signature this month, 0.25" "shop.example $MONTH 1 0.25" \
  "$(jq -r '.usage[] | "\(.relying_party) \(.month) \(.signatures) \(.amount)"' "$W/rep.json")"
q rp report --month 2000-01 --json >"$W/rep0.json"
check_eq "rp report --month of another month: nothing" 0 "$(jq '.usage | length' "$W/rep0.json")"
api GET /api/v1/history "$TF" >"$W/hist.json"
check_eq "GET /api/v1/history: 200" 200 "$(status)"
check_eq "the signer's history: the two signings, newest first (relying party, then package)" \
  "shop.example:1 -:3" "$(jq -r '[.signings[] | "\(.relying_party // "-"):\(.hashes | length)"] | join(" ")' "$W/hist.json")"
check_eq "... each with credential, hash algorithm, package window" "$CF $SHA256 free true" \
  "$(jq -r '.signings[1] | "\(.credential) \(.hash_algorithm) \(.package) \(.window_start != null and .window_end != null)"' "$W/hist.json")"
check_eq "... the hashes as sent" "$(base64 -w0 "$W/f1-2.bin")" "$(jq -r '.signings[1].hashes[1]' "$W/hist.json")"
q signer history "$UF" --json >"$W/chist.json"
check_eq "qtsp signer history shows the same signings" "$(jq -c '.signings' "$W/hist.json")" "$(jq -c '.signings' "$W/chist.json")"
q signer history "$UF" --limit 1 --json >"$W/chist1.json"
check_eq "--limit 1: the newest" shop.example "$(jq -r '.signings | select(length == 1) | .[0].relying_party' "$W/chist1.json")"
# GET /api/v1/quota: the signer's own package over HTTP (the portal shows it)
api GET /api/v1/quota "$TF" >"$W/hq.json"
check_eq "GET /api/v1/quota: 200" 200 "$(status)"
check_eq "... the package spent: free, 3 per window, 3 used, 0 left, not ended" "free 3 3 0 false" \
  "$(jq -r '"\(.package) \(.signatures) \(.used) \(.signatures_left) \(.ended)"' "$W/hq.json")"
q signer quota "$UF" --json >"$W/fq2.json"
check_eq "... the same object qtsp signer quota prints" "$(jq -cS . "$W/fq2.json")" "$(jq -cS . "$W/hq.json")"
TU=$(login "$USER" "$(jq -r .activation.password "$T_DIR/iss.json")")
api GET /api/v1/quota "$TU" >"$W/hq2.json"
check_eq "another signer sees their own package (economical, 7 left)" "economical 7" \
  "$(jq -r '"\(.package) \(.signatures_left)"' "$W/hq2.json")"
api GET /api/v1/quota "" >/dev/null
check_eq "GET /api/v1/quota without a token: 401" 401 "$(status)"
api GET /api/v1/quota "${TF%?}x" >/dev/null
check_eq "GET /api/v1/quota with a wrong token: 401" 401 "$(status)"
api GET "/api/v1/quota?user=$USER" "$TF" >/dev/null
check_eq "GET /api/v1/quota?user=...: 400 (no query; one's own only)" 400 "$(status)"
api POST /api/v1/quota "$TF" '{}' >/dev/null
check_eq "POST /api/v1/quota: 405" 405 "$(status)"
check "the server stops" stop_server

# ---- the audit ----
q audit list >"$T_DIR/audit.txt"
check_eq "rp.add audited twice (shop.example, bank)" 2 "$(grep -c '"event":"rp.add"' "$T_DIR/audit.txt")"
check_grep "rp.add names the relying party" '"event":"rp.add".*"name":"shop.example"' "$T_DIR/audit.txt"
check_not "the audit holds no secret" grep -q -- "$SECRET" "$T_DIR/audit.txt"
check_eq "signer.package audited once" 1 "$(grep -c '"event":"signer.package"' "$T_DIR/audit.txt")"
check_grep "signer.package: from free to economical" \
  "\"event\":\"signer.package\".*\"from\":\"free\".*\"to\":\"economical\".*\"user_id\":\"$USER\"" "$T_DIR/audit.txt"
check_grep "the history read is audited" "\"event\":\"signer.history.read\".*\"user_id\":\"$USER\"" "$T_DIR/audit.txt"
check_grep "the relying-party signing is audited (csc.sign)" '"event":"csc.sign".*"relying_party":"shop.example"' "$T_DIR/audit.txt"
check "the audit chain verifies" q audit verify

# help on every verb
for v in "rp add" "rp list" "rp report" "signer package" "signer quota" "signer history"; do
  # shellcheck disable=SC2086
  check "qtsp $v --help" "$QTSP_BIN" $v --help
done
finish
