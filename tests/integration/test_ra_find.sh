#!/usr/bin/env bash
# Issue 16 "finding things" with the real server: subject search (national id,
# name, e-mail, phone) with paging, GET subject, certificates by status with
# paging, certificate download (PEM and DER, checked by openssl), the
# auditor's audit API and `qtsp audit list` filters and --json, /certs/ocsp.crt,
# tsa.crt and chain.pem, and /metrics CRL freshness and certificate counts.
# Each new route: a wrong role (403) and bad input (400).
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
AUDITOR=$("$QTSP_BIN" operator add --home "$H" aud --role auditor)
check "serve starts" start_server "$H"

enrol() { # given surname nid email phone
  api POST /ra/v1/subjects "$OFFICER" "{\"given_name\":\"$1\",\"surname\":\"$2\",\"country\":\"BG\",\"national_id\":\"$3\",\"email\":\"$4\",\"phone\":\"$5\",\"package\":\"free\"}" | jq -r .subject_id
}
S1=$(enrol Maria Ivanova 8001010001 Maria.I@example.bg +359888000001)
S2=$(enrol Mario Petrov 8001010002 mario@example.bg +359888000002)
S3=$(enrol Ivan Marinov 8001010003 ivan@example.bg +359888000003)
S4=$(enrol Élodie Ångström 8001010004 elodie@example.bg +359888000004)
issue_for() { api POST "/ra/v1/subjects/$1/certificates" "$OFFICER" '{}' | jq -r .serial; }
C1=$(issue_for "$S1"); C1B=$(issue_for "$S1"); C2=$(issue_for "$S2"); C3=$(issue_for "$S3")
check "four certificates issued" test -n "$C1" -a -n "$C1B" -a -n "$C2" -a -n "$C3"

# --- search
api GET "/ra/v1/subjects?national_id=8001010002&country=BG" "$OFFICER" >"$T_DIR/r.json"
check_eq "search by national id + country: 200" 200 "$(status)"
check_eq "finds the subject" "$S2" "$(jq -r '.subjects[0].subject_id' "$T_DIR/r.json")"
check_eq "id_type defaults to PNO" PNO "$(jq -r '.subjects[0].id_type' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?national_id=8001010002" "$OFFICE" >"$T_DIR/r.json"
check_eq "search by national id alone (office): one hit" "$S2" "$(jq -r '[.subjects[].subject_id] | join(",")' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?email=MARIA.I@EXAMPLE.BG" "$OFFICER" >"$T_DIR/r.json"
check_eq "search by e-mail, case-insensitive" "$S1" "$(jq -r '.subjects[0].subject_id' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?phone=%2B359888000003" "$OFFICER" >"$T_DIR/r.json"
check_eq "search by phone" "$S3" "$(jq -r '.subjects[0].subject_id' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?name=mari" "$OFFICER" >"$T_DIR/r.json"
check_eq "name prefix matches given or surname first (3 subjects)" 3 "$(jq '[.subjects[].subject_id] | unique | length' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?name=%C3%A5ngstr%C3%B6m" "$OFFICER" >"$T_DIR/r.json"
check_eq "name search folds case beyond ASCII" "$S4" "$(jq -r '.subjects[0].subject_id' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?name=mari&limit=2" "$OFFICER" >"$T_DIR/p1.json"
check_eq "page 1 has 2" 2 "$(jq '.subjects | length' "$T_DIR/p1.json")"
NEXT=$(jq -r .next "$T_DIR/p1.json")
check "page 1 gives a cursor" test "$NEXT" != null
api GET "/ra/v1/subjects?name=mari&limit=2&cursor=$NEXT" "$OFFICER" >"$T_DIR/p2.json"
check_eq "page 2 has the rest, no cursor" "1 null" "$(jq -r '"\(.subjects | length) \(.next)"' "$T_DIR/p2.json")"
api GET "/ra/v1/subjects?email=nobody@example.bg" "$OFFICER" >"$T_DIR/r.json"
check_eq "no match: 200, empty" "200 0" "$(status) $(jq '.subjects | length' "$T_DIR/r.json")"
api GET "/ra/v1/subjects?name=mari" "$HOTLINE" >/dev/null; check_eq "search, wrong role: 403" 403 "$(status)"
api GET "/ra/v1/subjects?name=mari" "$AUDITOR" >/dev/null; check_eq "search, auditor: 403" 403 "$(status)"
api GET "/ra/v1/subjects?name=mari" "" >/dev/null; check_eq "search, no token: 401" 401 "$(status)"
for q in "" "name=a&email=b@c.de" "country=BG" "phone=12" "name=mari&limit=0" "name=mari&limit=101" \
  "name=mari&limit=x" "name=mari&shoe=42" "name=mari&cursor=zz" "name=mari&cursor=00" \
  "national_id=1&country=XX" "name=mari&name=ivan" "name=%E2%80%AEx"; do
  api GET "/ra/v1/subjects?$q" "$OFFICER" >"$T_DIR/e.json"
  check_eq "search '$q': 400" 400 "$(status)"
done

# --- GET subject
api GET "/ra/v1/subjects/$S1" "$OFFICE" >"$T_DIR/s.json"
check_eq "GET subject: 200" 200 "$(status)"
check_eq "GET subject: identity data" "Maria Ivanova BG 8001010001" "$(jq -r '"\(.given_name) \(.surname) \(.country) \(.national_id)"' "$T_DIR/s.json")"
check_eq "GET subject: identity evidence recorded" "operator:olga" "$(jq -r .identity_evidence.accepted_by "$T_DIR/s.json")"
api GET "/ra/v1/subjects/$S1" "$HOTLINE" >/dev/null; check_eq "GET subject, wrong role: 403" 403 "$(status)"
api GET "/ra/v1/subjects/ffffffffffffffffffffffff" "$OFFICER" >/dev/null; check_eq "GET unknown subject: 404" 404 "$(status)"
api GET "/ra/v1/subjects/$S1/certificates" "$OFFICE" >"$T_DIR/s.json"
check_eq "a subject's certificates" "$(printf '%s\n' "$C1" "$C1B" | sort | tr '\n' ' ')" "$(jq -r '.certificates[].serial' "$T_DIR/s.json" | sort | tr '\n' ' ')"

# --- certificates by status
api POST "/ra/v1/certificates/$C2/hold" "$HOTLINE" '{"caller_verification":"test"}' >/dev/null
api POST "/ra/v1/certificates/$C3/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"id card"}' >/dev/null
list() { api GET "/ra/v1/certificates?status=$1${2:+&$2}" "${3:-$OFFICER}" | jq -r '[.certificates[].serial] | sort | join(" ")'; }
check_eq "on-hold" "$C2" "$(list on-hold)"
check_eq "revoked (auditor)" "$C3" "$(list revoked "" "$AUDITOR")"
check_eq "expired: none" "" "$(list expired "" "$OFFICE")"
valid=$(list valid)
check "valid lists C1 and C1B" bash -c "[[ ' $valid ' == *' $C1 '* && ' $valid ' == *' $C1B '* ]]"
check_not "valid does not list held or revoked" bash -c "[[ ' $valid ' == *' $C2 '* || ' $valid ' == *' $C3 '* ]]"
# paging: one at a time until no cursor, same set
seen=() cur=
for _ in $(seq 1 20); do
  api GET "/ra/v1/certificates?status=valid&limit=1${cur:+&cursor=$cur}" "$OFFICER" >"$T_DIR/pg.json"
  seen+=($(jq -r '.certificates[].serial' "$T_DIR/pg.json"))
  cur=$(jq -r '.next // empty' "$T_DIR/pg.json")
  [[ -z $cur ]] && break
done
check_eq "paging with limit=1 walks the same set" "$valid" "$(printf '%s\n' "${seen[@]}" | sort | tr '\n' ' ' | sed 's/ $//')"
api GET "/ra/v1/certificates?status=valid" "$HOTLINE" >/dev/null; check_eq "list, wrong role: 403" 403 "$(status)"
for q in "" "status=good" "status=valid&limit=500" "status=valid&cursor=xyz" "status=valid&format=pem"; do
  api GET "/ra/v1/certificates?$q" "$OFFICER" >/dev/null
  check_eq "list '$q': 400" 400 "$(status)"
done

# --- download
curl -s -o "$T_DIR/c1.pem" -w '%{http_code} %{content_type}' -H "Authorization: Bearer $OFFICE" \
  "$BASE/ra/v1/certificates/$C1/certificate" >"$T_DIR/st"
check_eq "PEM download" "200 application/x-pem-file" "$(cat "$T_DIR/st")"
curl -s -o "$T_DIR/c1.der" -w '%{http_code} %{content_type}' -H "Authorization: Bearer $AUDITOR" \
  "$BASE/ra/v1/certificates/$C1/certificate?format=der" >"$T_DIR/st"
check_eq "DER download" "200 application/pkix-cert" "$(cat "$T_DIR/st")"
check_eq "PEM and DER are the same certificate" "$(openssl x509 -in "$T_DIR/c1.pem" -outform der | sha256sum)" "$(sha256sum <"$T_DIR/c1.der")"
check_eq "its serial" "$C1" "$(openssl x509 -in "$T_DIR/c1.pem" -noout -serial | sed 's/serial=//' | tr A-F a-f | sed 's/^0*//')"
check "it verifies against /certs/chain.pem" bash -c "curl -s $BASE/certs/chain.pem >$T_DIR/chain.pem && openssl verify -CAfile $T_DIR/chain.pem $T_DIR/c1.pem"
api GET "/ra/v1/certificates/$C1/certificate" "$HOTLINE" >/dev/null; check_eq "download, wrong role: 403" 403 "$(status)"
api GET "/ra/v1/certificates/$C1/certificate?format=txt" "$OFFICER" >/dev/null; check_eq "download, bad format: 400" 400 "$(status)"
api GET "/ra/v1/certificates/$C1/certificate?x=1" "$OFFICER" >/dev/null; check_eq "download, unknown argument: 400" 400 "$(status)"
api GET "/ra/v1/certificates/abcdef/certificate" "$OFFICER" >/dev/null; check_eq "download, unknown serial: 404" 404 "$(status)"

# --- the auditor's audit API
api GET "/ra/v1/audit?event=cert.issue" "$AUDITOR" >"$T_DIR/a.json"
check_eq "audit by event: 200" 200 "$(status)"
check_eq "four issuances" 4 "$(jq '.records | length' "$T_DIR/a.json")"
api GET "/ra/v1/audit?serial=$C3" "$AUDITOR" >"$T_DIR/a.json"
check_eq "audit by serial: issue and termination" "cert.issue cert.terminate" "$(jq -r '[.records[].event] | join(" ")' "$T_DIR/a.json")"
api GET "/ra/v1/audit?actor=operator:hans" "$AUDITOR" >"$T_DIR/a.json"
check_eq "audit by actor" "cert.hold" "$(jq -r '[.records[].event] | unique | join(" ")' "$T_DIR/a.json")"
api GET "/ra/v1/audit?event=subject.&limit=3" "$AUDITOR" >"$T_DIR/a1.json"
check_eq "event prefix, page of 3" 3 "$(jq '.records | length' "$T_DIR/a1.json")"
N=$(jq -r .next "$T_DIR/a1.json")
api GET "/ra/v1/audit?event=subject.&limit=3&cursor=$N" "$AUDITOR" >"$T_DIR/a2.json"
check_eq "next page: the fourth enrolment, no cursor" "1 null" "$(jq -r '"\(.records | length) \(.next)"' "$T_DIR/a2.json")"
today=$(date -u +%Y-%m-%dT00:00:00Z)
api GET "/ra/v1/audit?since=$today&until=2099-01-01T00:00:00Z&event=cert.hold" "$AUDITOR" >"$T_DIR/a.json"
check_eq "time range" 1 "$(jq '.records | length' "$T_DIR/a.json")"
api GET "/ra/v1/audit?until=2000-01-01T00:00:00Z" "$AUDITOR" >"$T_DIR/a.json"
check_eq "time range before everything: empty" 0 "$(jq '.records | length' "$T_DIR/a.json")"
api GET "/ra/v1/audit" "$OFFICER" >/dev/null; check_eq "audit, wrong role: 403" 403 "$(status)"
for q in "since=yesterday" "since=2026-02-30T00:00:00Z" "since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z" \
  "cursor=-1" "limit=0" "level=debug"; do
  api GET "/ra/v1/audit?$q" "$AUDITOR" >/dev/null
  check_eq "audit '$q': 400" 400 "$(status)"
done

# --- qtsp audit list: the same filters, --json
"$QTSP_BIN" audit list --home "$H" --serial "$C3" --json >"$T_DIR/cli.json"
check_eq "CLI --serial --json" "cert.issue cert.terminate" "$(jq -r '[.records[].event] | join(" ")' "$T_DIR/cli.json")"
"$QTSP_BIN" audit list --home "$H" --event subject. --limit 3 --json >"$T_DIR/cli.json"
check_eq "CLI --limit gives next" 3 "$(jq '.records | length' "$T_DIR/cli.json")"
N=$(jq -r .next "$T_DIR/cli.json")
check_eq "CLI --from next" 1 "$("$QTSP_BIN" audit list --home "$H" --event subject. --from "$N" | wc -l)"
check_eq "CLI --actor, JSON lines" "cert.hold" "$("$QTSP_BIN" audit list --home "$H" --actor operator:hans | jq -r .event)"
check_eq "CLI --since/--until" 0 "$("$QTSP_BIN" audit list --home "$H" --until 2000-01-01T00:00:00Z | wc -l)"
"$QTSP_BIN" audit list --home "$H" --since nope >/dev/null 2>&1; check_eq "CLI bad --since: exit 1" 1 $?
"$QTSP_BIN" audit list --home "$H" --limit 0 >/dev/null 2>&1; check_eq "CLI bad --limit: exit 2" 2 $?
"$QTSP_BIN" audit verify --home "$H" --json >/dev/null 2>&1; check_eq "verify takes no filters: exit 2" 2 $?

# --- /certs
for f in ocsp tsa; do
  curl -s -o "$T_DIR/$f.der" -w '%{http_code} %{content_type}' "$BASE/certs/$f.crt" >"$T_DIR/st"
  check_eq "/certs/$f.crt" "200 application/pkix-cert" "$(cat "$T_DIR/st")"
  check_eq "/certs/$f.crt is public/$f.crt" "$(openssl x509 -in "$H/public/$f.crt" -outform der | sha256sum)" "$(sha256sum <"$T_DIR/$f.der")"
done
check_eq "/certs/chain.pem is public/chain.pem" "$(sha256sum <"$H/public/chain.pem")" "$(curl -s "$BASE/certs/chain.pem" | sha256sum)"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data x "$BASE/certs/chain.pem")
check_eq "/certs/chain.pem: POST is 405" 405 "$code"

# --- /metrics
curl -s "$BASE/metrics" >"$T_DIR/m.txt"
check_grep "CRL numbers" '^qtsp_crl_number\{(process="[0-9]+",)?crl="qualified"\} [0-9]+' "$T_DIR/m.txt"
check_grep "delta CRL number" '^qtsp_crl_number\{(process="[0-9]+",)?crl="qualified-delta"' "$T_DIR/m.txt"
check_grep "CRL ages" '^qtsp_crl_age_seconds\{(process="[0-9]+",)?crl="qualified"\} [0-9]+' "$T_DIR/m.txt"
# the counts are each worker's, at most 30 s old: the largest is the newest here
sample() { grep -E "^qtsp_certificates\{(process=\"[0-9]+\",)?status=\"$1\"" "$T_DIR/m.txt" | awk '$2 > m {m = $2} END {print m + 0}'; }
for _ in $(seq 1 70); do
  [[ $(sample on-hold) == 1 && $(sample revoked) == 1 ]] && break
  sleep 0.5
  curl -s "$BASE/metrics" >"$T_DIR/m.txt"
done
check_eq "held count" 1 "$(sample on-hold)"
check_eq "revoked count" 1 "$(sample revoked)"
check "valid count covers the 2 valid subscriber certificates" test "$(sample valid)" -ge 2
check "serve stops cleanly" stop_server
check "audit chain verifies" "$QTSP_BIN" audit verify --home "$H"
finish
