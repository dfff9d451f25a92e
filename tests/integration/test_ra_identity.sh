#!/usr/bin/env bash
# Issue 16 identity: subject identifiers beyond PNO (IDC, PAS, TIN; EN 319
# 412-1 5.1.3) so a person without a national personal number can enrol, and
# identity evidence required by policy (policies/identity.yaml): accepted
# types recorded with the enrolment and audited. The contract's fields stay
# valid as they are (id_type defaults to PNO).
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
check "init copies policies/identity.yaml" test -f "$H/policies/identity.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
check "serve starts" start_server "$H"
P='"given_name":"John","surname":"Smith","email":"john@example.org","phone":"+447700900123","package":"free"'

# the contract's fields alone: PNO
api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"BG\",\"national_id\":\"8001010007\"}" >/dev/null
check_eq "contract fields alone: 201" 201 "$(status)"

# a passport holder from a country without a national personal number
SID=$(api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"123456789\"}" | jq -r .subject_id)
check_eq "enrol with id_type PAS: 201" 201 "$(status)"
api POST "/ra/v1/subjects/$SID/certificates" "$OFFICER" '{}' >"$T_DIR/iss.json"
check_eq "issue: 201" 201 "$(status)"
jq -r .certificate "$T_DIR/iss.json" >"$T_DIR/pas.pem"
check_eq "serialNumber PASGB-123456789 (openssl)" "PASGB-123456789" \
  "$(openssl x509 -in "$T_DIR/pas.pem" -noout -subject -nameopt multiline | sed -n 's/^ *serialNumber *= *//p')"
check "certtool reads the certificate" bash -c "certtool -i --infile $T_DIR/pas.pem | grep -q 'serialNumber=PASGB-123456789'"
for t in IDC TIN; do
  api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"FR\",\"id_type\":\"$t\",\"national_id\":\"X$t-42-AB\"}" >/dev/null
  check_eq "enrol with id_type $t: 201" 201 "$(status)"
done
api GET "/ra/v1/subjects?national_id=123456789&id_type=PAS" "$OFFICER" >"$T_DIR/r.json"
check_eq "search by passport number" "$SID" "$(jq -r '.subjects[0].subject_id' "$T_DIR/r.json")"
check_eq "its id_type" PAS "$(jq -r '.subjects[0].id_type' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?national_id=123456789" "$OFFICER" >"$T_DIR/r.json"
check_eq "a PNO search does not find a passport number" 0 "$(jq '.subjects | length' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?national_id=123456789&id_type=SSN" "$OFFICER" >/dev/null
check_eq "search with an unknown id_type: 400" 400 "$(status)"
api GET "/ra/v1/subjects?name=john&id_type=PAS" "$OFFICER" >/dev/null
check_eq "id_type without national_id: 400" 400 "$(status)"

# bad input: nothing changes
before=$("$QTSP_BIN" audit list --home "$H" | wc -l)
for body in "{$P,\"country\":\"GB\",\"id_type\":\"SSN\",\"national_id\":\"123456789\"}" \
  "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"12\"}" \
  "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"ab123456\"}" \
  "{$P,\"country\":\"GB\",\"id_type\":7,\"national_id\":\"123456789\"}"; do
  api POST /ra/v1/subjects "$OFFICER" "$body" >"$T_DIR/e.json"
  check_eq "bad identifier: 400 ($(jq -r .message "$T_DIR/e.json"))" 400 "$(status)"
done
api POST /ra/v1/subjects "$HOTLINE" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"987654321\"}" >/dev/null
check_eq "enrol with id_type, wrong role: 403" 403 "$(status)"
check_eq "refused enrolments wrote nothing" "$before" "$("$QTSP_BIN" audit list --home "$H" | wc -l)"
check "serve stops" stop_server

# policy: evidence required, passports only, in person only; no TIN
cat >"$H/policies/identity.yaml" <<'EOF'
version: 1
id_types: [PNO, IDC, PAS]
evidence_required: true
methods: [in-person]
document_types: [passport, id-card]
EOF
check "serve starts with the strict identity policy" start_server "$H"
EV='"identity_evidence":{"document_type":"passport","document_number":"123456789","method":"in-person"}'
api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"555666777\"}" >"$T_DIR/e.json"
check_eq "no evidence under evidence_required: 400" 400 "$(status)"
check_grep "names identity_evidence" "identity_evidence" "$T_DIR/e.json"
api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"555666777\",${EV/passport/library card}}" >"$T_DIR/e.json"
check_eq "document type not accepted: 400" 400 "$(status)"
api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"555666777\",${EV/in-person/remote-video}}" >/dev/null
check_eq "method not accepted: 400" 400 "$(status)"
api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"FR\",\"id_type\":\"TIN\",\"national_id\":\"555666777\",$EV}" >/dev/null
check_eq "id_type the policy does not accept: 400" 400 "$(status)"
SID2=$(api POST /ra/v1/subjects "$OFFICER" "{$P,\"country\":\"GB\",\"id_type\":\"PAS\",\"national_id\":\"555666777\",$EV}" | jq -r .subject_id)
check_eq "accepted evidence: 201" 201 "$(status)"
api GET "/ra/v1/subjects/$SID2" "$OFFICER" >"$T_DIR/s.json"
check_eq "evidence recorded with the enrolment" "passport 123456789 in-person operator:olga" \
  "$(jq -r '.identity_evidence | "\(.document_type) \(.document_number) \(.method) \(.accepted_by)"' "$T_DIR/s.json")"
"$QTSP_BIN" audit list --home "$H" --event subject.enrol --json >"$T_DIR/a.json"
check_eq "audited with id_type and evidence" "PAS passport operator:olga" \
  "$(jq -r ".records[] | select(.details.subject_id==\"$SID2\") | .details | \"\(.id_type) \(.identity_evidence.document_type) \(.identity_evidence.accepted_by)\"" "$T_DIR/a.json")"
check "serve stops" stop_server
printf 'version: 1\nid_types: [XYZ]\n' >"$H/policies/identity.yaml"
check_not "a broken identity policy stops serve" start_server "$H"
check_grep "the reason names the file" "identity.yaml" "$T_DIR/serve.err"
check "audit chain verifies" "$QTSP_BIN" audit verify --home "$H"
finish
