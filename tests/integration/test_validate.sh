#!/usr/bin/env bash
# Issue 18: the signature validation service, POST /api/v1/validate, over
# curl -F against a real `qtsp serve`. Valid CAdES (detached, enveloping,
# PEM), PAdES and XAdES at B-B..B-LTA and ASiC-S/-E containers pass; a tampered byte, a bad signature
# value, a signer on hold at signing time, a terminated signer, an
# untrusted chain and an expired certificate without a time-stamp get their
# EN 319 102-1 indication; signatures made elsewhere (openssl cms -sign under
# a test root added to policies/trust.yaml) pass; the time-stamped report
# verifies with openssl ts; bad input gets a clear JSON error; `qtsp
# validate` prints the same report; XML bombs, external entities, zip
# bombs and nested containers are refused.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
ROOT=$H/public/root-ca.crt

# ---- a partner PKI made with openssl (signatures made elsewhere) -----------
P=$T_DIR/pki
mkdir -p "$P"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
mkroot() { # NAME CN
  ec "$P/$1.key"
  openssl req -x509 -new -key "$P/$1.key" -out "$P/$1.pem" -subj "/CN=$2" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,nonRepudiation,digitalSignature\n' >"$P/leaf.ext"
mkleaf() { # NAME CN ROOT
  ec "$P/$1.key"
  openssl req -new -key "$P/$1.key" -subj "/CN=$2" -out "$P/$1.csr" 2>/dev/null
  openssl x509 -req -in "$P/$1.csr" -CA "$P/$3.pem" -CAkey "$P/$3.key" -CAcreateserial -days 365 \
    -extfile "$P/leaf.ext" -out "$P/$1.pem" 2>/dev/null
}
mkroot partner "Partner Root"
mkroot stranger "Stranger Root"
mkleaf signer "Partner Signer" partner
mkleaf alien "Alien Signer" stranger
# an expired certificate: openssl ca takes explicit dates
touch "$P/index.txt"
echo 1000 >"$P/serial"
cat >"$P/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $P/index.txt
new_certs_dir = $P
serial = $P/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
keyUsage = critical,nonRepudiation,digitalSignature
EOF
ec "$P/old.key"
openssl req -new -key "$P/old.key" -subj "/CN=Expired Signer" -out "$P/old.csr" 2>/dev/null
openssl ca -batch -config "$P/ca.cnf" -cert "$P/partner.pem" -keyfile "$P/partner.key" -in "$P/old.csr" \
  -out "$P/old.pem" -startdate 20200101000000Z -enddate 20210101000000Z -extensions ext -notext >/dev/null 2>&1
check "test PKI made (an expired certificate among it)" openssl x509 -in "$P/old.pem" -noout -subject
check_not "the expired certificate is expired" openssl x509 -in "$P/old.pem" -noout -checkend 0
cat >>"$H/policies/trust.yaml" <<EOF
  - file: $P/partner.pem
    revocation: none
EOF

credential() { cli_credential "$H" "$@"; } # NATIONAL_ID GIVEN: prints the serial
ANNA=$(credential 1234567890 Anna)
BERT=$(credential 2345678901 Bert)
CARL=$(credential 3456789012 Carl)
check "three credentials issued" test -n "$ANNA" -a -n "$BERT" -a -n "$CARL" -a "$CARL" != "null"
check "serve starts" start_server "$H"

sign() { "$QTSP_BIN" sign --home "$H" "$@" >/dev/null 2>>"$T_DIR/sign.err"; }
flip() { # FILE OFFSET: xor one byte in place
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# val FILE [CONTENT] [QUERY]: POST the form; body in $T_DIR/r.json, status in $T_DIR/status
val() {
  local args=(-s -o "$T_DIR/r.json" -w '%{http_code}' -F "file=@$1")
  [[ -n ${2-} ]] && args+=(-F "content=@$2")
  curl "${args[@]}" "$BASE/api/v1/validate${3-}" >"$T_DIR/status"
}
# ind [N]: "INDICATION/SUB_INDICATION" of signature N (default 0)
ind() { jq -r ".signatures[${1:-0}] | .indication + \"/\" + (.sub_indication // \"\")" "$T_DIR/r.json"; }
field() { jq -r "$1" "$T_DIR/r.json"; }

# ---- valid signatures of each format -----------------------------------------
head -c 20000 /dev/urandom >"$T_DIR/doc.bin"
for level in B-B B-T B-LT B-LTA; do
  sign --credential "$ANNA" --format C --level "Ades-$level" --in "$T_DIR/doc.bin" --out "$T_DIR/c-$level.p7s"
  sign --credential "$ANNA" --format C --level "Ades-$level" --attached --in "$T_DIR/doc.bin" --out "$T_DIR/e-$level.p7s"
  val "$T_DIR/c-$level.p7s" "$T_DIR/doc.bin"
  check_eq "CAdES-$level detached: 200" 200 "$(status)"
  check_eq "CAdES-$level detached: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
  check_eq "CAdES-$level detached: level seen" "$level" "$(field '.signatures[0].level')"
  check_eq "CAdES-$level detached: signer, qualified" "Anna Test true" "$(field '.signatures[0] | .signer + " " + (.qualified|tostring)')"
  val "$T_DIR/e-$level.p7s"
  check_eq "CAdES-$level enveloping: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
done
val "$T_DIR/c-B-LT.p7s" "$T_DIR/doc.bin"
check_eq "CAdES-B-LT: revocation from the file's OCSP answer" "embedded-ocsp good" "$(field '.signatures[0].revocation | .source + " " + .status')"
check_eq "CAdES-B-T: a valid signature time-stamp" "signature true" "$(field '.signatures[0].timestamps[0] | .type + " " + (.valid|tostring)')"
val "$T_DIR/c-B-LTA.p7s" "$T_DIR/doc.bin"
check_eq "CAdES-B-LTA: the archive time-stamp verifies" "true" "$(field '[.signatures[0].timestamps[] | select(.type == "archive") | .valid][0]')"
check_eq "CAdES-B-B: signing_time given" "true" "$(field '.signatures[0].signing_time | test("^20[0-9][0-9]-")' 2>/dev/null || echo false)"
openssl cms -cmsout -inform DER -in "$T_DIR/c-B-T.p7s" -outform PEM -out "$T_DIR/c.pem" 2>/dev/null
val "$T_DIR/c.pem" "$T_DIR/doc.bin"
check_eq "CAdES in PEM: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"

printf '%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>\nendobj\n4 0 obj\n<< /Length 44 >>\nstream\nBT /F1 24 Tf 72 700 Td (Hello qtsp) Tj ET\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n' >"$T_DIR/raw.pdf"
qpdf "$T_DIR/raw.pdf" "$T_DIR/table.pdf" >/dev/null 2>&1
for level in B-B B-T B-LT B-LTA; do
  sign --credential "$ANNA" --format P --level "Ades-$level" --in "$T_DIR/table.pdf" --out "$T_DIR/p-$level.pdf"
  val "$T_DIR/p-$level.pdf"
  check_eq "PAdES-$level: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
  check_eq "PAdES-$level: one signature, level seen" "1 $level" "$(field '(.signatures|length|tostring) + " " + .signatures[0].level')"
done
val "$T_DIR/p-B-LT.pdf"
check_eq "PAdES-B-LT: revocation from the DSS" "embedded-ocsp" "$(field '.signatures[0].revocation.source')"
val "$T_DIR/p-B-LTA.pdf"
check_eq "PAdES-B-LTA: the document time-stamp verifies" "true" "$(field '[.signatures[0].timestamps[] | select(.type == "document") | .valid][0]')"
sign --credential "$BERT" --format P --level Ades-B-T --in "$T_DIR/p-B-LT.pdf" --out "$T_DIR/two.pdf"
val "$T_DIR/two.pdf"
check_eq "twice-signed PDF: both pass, in file order" "TOTAL-PASSED/ TOTAL-PASSED/ Anna Test Bert Test" "$(ind 0) $(ind 1) $(field '.signatures[0].signer + " " + .signatures[1].signer')"
check_eq "twice-signed PDF: the first signature does not cover the whole file" "false true" "$(field '(.signatures[0].covers_whole_file|tostring) + " " + (.signatures[1].covers_whole_file|tostring)')"

# XAdES (enveloped, enveloping, detached) and ASiC (S and E, CAdES and XAdES inside)
printf '<?xml version="1.0" encoding="UTF-8"?>\n<order id="1"><item>tea</item></order>\n' >"$T_DIR/doc.xml"
for level in B-B B-T B-LT B-LTA; do
  for pk in enveloped enveloping detached; do
    sign --credential "$ANNA" --format X --packaging "$pk" --level "Ades-$level" --in "$T_DIR/doc.xml" --out "$T_DIR/x-$level-$pk.xml"
    if [[ $pk == detached ]]; then val "$T_DIR/x-$level-$pk.xml" "$T_DIR/doc.xml"; else val "$T_DIR/x-$level-$pk.xml"; fi
    check_eq "XAdES-$level $pk: TOTAL-PASSED, level seen" "TOTAL-PASSED/ $level XAdES" "$(ind) $(field '.signatures[0].level + " " + .format')"
  done
done
val "$T_DIR/x-B-LTA-enveloped.xml"
check_eq "XAdES-B-LTA: signature and archive time-stamps verify" "signature:true archive:true" "$(field '[.signatures[0].timestamps[] | .type + ":" + (.valid|tostring)] | join(" ")')"
sign --credential "$ANNA" --format X --inclusive-c14n --level Ades-B-LTA --in "$T_DIR/doc.xml" --out "$T_DIR/x-incl.xml"
val "$T_DIR/x-incl.xml"
check_eq "XAdES with inclusive C14N: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
printf 'second file\n' >"$T_DIR/two.txt"
for f in C X; do
  for c in asic-s asic-e; do
    ins=(--in "$T_DIR/doc.bin")
    [[ $c == asic-e ]] && ins+=(--in "$T_DIR/two.txt")
    sign --credential "$ANNA" --format "$f" --container "$c" --level Ades-B-LT "${ins[@]}" --out "$T_DIR/$f-$c.zip"
    val "$T_DIR/$f-$c.zip"
    check_eq "$c with $f inside: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
    check_eq "$c with $f inside: the container's form named" "${c^^}" "$(field .format | tr 'a-z' 'A-Z')"
  done
done

# signatures made elsewhere
openssl cms -sign -binary -md sha256 -in "$T_DIR/doc.bin" -signer "$P/signer.pem" -inkey "$P/signer.key" \
  -outform DER -out "$T_DIR/partner.p7s" 2>/dev/null
val "$T_DIR/partner.p7s" "$T_DIR/doc.bin"
check_eq "openssl cms -sign under a trust.yaml anchor: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
check_eq "... not qualified, revocation not checked (anchor says none)" "false not-checked" "$(field '(.signatures[0].qualified|tostring) + " " + .signatures[0].revocation.status')"

# ---- the failures of the issue -----------------------------------------------------
cp "$T_DIR/doc.bin" "$T_DIR/doc.bad"
flip "$T_DIR/doc.bad" 7000
val "$T_DIR/c-B-T.p7s" "$T_DIR/doc.bad"
check_eq "tampered content byte (CAdES): TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
cp "$T_DIR/e-B-B.p7s" "$T_DIR/bad.p7s"
off=$(grep -obUaP "$(head -c 8 "$T_DIR/doc.bin" | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')" "$T_DIR/bad.p7s" | head -1 | cut -d: -f1)
flip "$T_DIR/bad.p7s" $((off + 100))
val "$T_DIR/bad.p7s"
check_eq "tampered enveloped byte: TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
cp "$T_DIR/p-B-LT.pdf" "$T_DIR/bad.pdf"
flip "$T_DIR/bad.pdf" 200
val "$T_DIR/bad.pdf"
check_eq "tampered PDF byte: TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
cp "$T_DIR/c-B-B.p7s" "$T_DIR/badsig.p7s"
flip "$T_DIR/badsig.p7s" $(($(stat -c %s "$T_DIR/badsig.p7s") - 2)) # inside the signature value
val "$T_DIR/badsig.p7s" "$T_DIR/doc.bin"
check_eq "tampered signature value: TOTAL-FAILED/SIG_CRYPTO_FAILURE" "TOTAL-FAILED/SIG_CRYPTO_FAILURE" "$(ind)"

sed 's/<item>tea</<item>tee</' "$T_DIR/x-B-T-enveloped.xml" >"$T_DIR/x-bad.xml"
val "$T_DIR/x-bad.xml"
check_eq "tampered XAdES-enveloped text: TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
printf '<?xml version="1.0" encoding="UTF-8"?>\n<order id="1"><item>tee</item></order>\n' >"$T_DIR/doc-bad.xml"
val "$T_DIR/x-B-T-detached.xml" "$T_DIR/doc-bad.xml"
check_eq "XAdES detached, other content: TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
# a container whose file was changed (the same entries, rewritten by Python's zipfile)
zip_edit() { # IN OUT NAME NEWTEXT: NAME's content replaced, order and mimetype kept
  python3 - "$@" <<'PY'
import sys, zipfile
src, dst, name, text = sys.argv[1:5]
with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w") as zo:
    for info in zi.infolist():
        data = text.encode() if info.filename == name else zi.read(info.filename)
        zo.writestr(info, data, compress_type=info.compress_type)
PY
}
for f in C X; do
  zip_edit "$T_DIR/$f-asic-e.zip" "$T_DIR/bad-$f.zip" two.txt "changed"
  val "$T_DIR/bad-$f.zip"
  check_eq "ASiC-E ($f) with a changed file: TOTAL-FAILED/HASH_FAILURE" "TOTAL-FAILED/HASH_FAILURE" "$(ind)"
done

# on hold at signing time: a failure, also after the release
sign --credential "$BERT" --format C --level Ades-B-T --in "$T_DIR/doc.bin" --out "$T_DIR/before-hold.p7s"
sleep 1.1
check "hold Bert" "$QTSP_BIN" hold --home "$H" "$BERT" --verification "caller named the code word"
sleep 1.1
check "Bert's key still signs while on hold (the signer side does not ask)" sign --credential "$BERT" --format C --level Ades-B-T --in "$T_DIR/doc.bin" --out "$T_DIR/on-hold.p7s"
val "$T_DIR/on-hold.p7s" "$T_DIR/doc.bin"
check_eq "signed while on hold: TOTAL-FAILED/REVOKED" "TOTAL-FAILED/REVOKED" "$(ind)"
check_eq "... the status used: our own, on hold" "own-status on-hold certificateHold" "$(field '.signatures[0].revocation | .source + " " + .status + " " + .reason')"
val "$T_DIR/before-hold.p7s" "$T_DIR/doc.bin"
check_eq "time-stamped before the hold: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"
sleep 1.1
check "release Bert" "$QTSP_BIN" release --home "$H" "$BERT"
val "$T_DIR/on-hold.p7s" "$T_DIR/doc.bin"
check_eq "signed while on hold, after the release: still TOTAL-FAILED/REVOKED" "TOTAL-FAILED/REVOKED" "$(ind)"
check_eq "... the hold period is named" "true" "$(field '.signatures[0].revocation.last_hold.from != null')"

# terminated signer
sign --credential "$CARL" --format C --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/carl-bb.p7s"
sign --credential "$CARL" --format C --level Ades-B-T --in "$T_DIR/doc.bin" --out "$T_DIR/carl-bt.p7s"
sign --credential "$CARL" --format P --level Ades-B-B --in "$T_DIR/table.pdf" --out "$T_DIR/carl.pdf"
sleep 1.1
check "terminate Carl" "$QTSP_BIN" terminate --home "$H" "$CARL" --reason keyCompromise --identity-check "passport"
val "$T_DIR/carl-bb.p7s" "$T_DIR/doc.bin"
check_eq "terminated signer, no proof of an earlier signature: INDETERMINATE/REVOKED_NO_POE" "INDETERMINATE/REVOKED_NO_POE" "$(ind)"
check_eq "... revocation status revoked (keyCompromise)" "revoked keyCompromise" "$(field '.signatures[0].revocation | .status + " " + .reason')"
val "$T_DIR/carl.pdf"
check_eq "terminated signer, PAdES-B-B: INDETERMINATE/REVOKED_NO_POE" "INDETERMINATE/REVOKED_NO_POE" "$(ind)"
val "$T_DIR/carl-bt.p7s" "$T_DIR/doc.bin"
check_eq "terminated signer, time-stamped before the termination: TOTAL-PASSED" "TOTAL-PASSED/" "$(ind)"

# untrusted chain, expired certificate without a time-stamp
openssl cms -sign -binary -md sha256 -in "$T_DIR/doc.bin" -signer "$P/alien.pem" -inkey "$P/alien.key" \
  -outform DER -out "$T_DIR/alien.p7s" 2>/dev/null
val "$T_DIR/alien.p7s" "$T_DIR/doc.bin"
check_eq "untrusted chain: INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND" "INDETERMINATE/NO_CERTIFICATE_CHAIN_FOUND" "$(ind)"
openssl cms -sign -binary -md sha256 -in "$T_DIR/doc.bin" -signer "$P/old.pem" -inkey "$P/old.key" \
  -outform DER -out "$T_DIR/old.p7s" 2>/dev/null
val "$T_DIR/old.p7s" "$T_DIR/doc.bin"
check_eq "expired certificate, no time-stamp: INDETERMINATE/OUT_OF_BOUNDS_NO_POE" "INDETERMINATE/OUT_OF_BOUNDS_NO_POE" "$(ind)"
val "$T_DIR/c-B-T.p7s"
check_eq "detached signature without its content: INDETERMINATE/SIGNED_DATA_NOT_FOUND" "INDETERMINATE/SIGNED_DATA_NOT_FOUND" "$(ind)"

# ---- the signed report ---------------------------------------------------------------
val "$T_DIR/p-B-T.pdf" "" "?report=timestamped"
check_eq "report=timestamped: 200" 200 "$(status)"
field .report | base64 -d >"$T_DIR/report.json"
field .timestamp_token | base64 -d >"$T_DIR/report.tst"
check "the report is the JSON report" jq -e '.signatures[0].indication == "TOTAL-PASSED"' "$T_DIR/report.json"
check "openssl ts -verify: the report's time-stamp by our TSA" openssl ts -verify -token_in -in "$T_DIR/report.tst" -data "$T_DIR/report.json" -CAfile "$ROOT"
sed -i 's/TOTAL-PASSED/TOTAL-FAILED/' "$T_DIR/report.json"
check_not "a changed report no longer verifies" openssl ts -verify -token_in -in "$T_DIR/report.tst" -data "$T_DIR/report.json" -CAfile "$ROOT"

val "$T_DIR/bad.pdf" "" "?report=xml"
check_eq "report=xml: 200" 200 "$(status)"
check "report=xml: well-formed XML (xmlstarlet)" xmlstarlet val -q -w "$T_DIR/r.json"
check_grep "report=xml: the EN 319 102-1 main indication URI" 'MainIndication>urn:etsi:019102:mainindication:total-failed<' "$T_DIR/r.json"
check_grep "report=xml: the sub-indication URI" 'SubIndication>urn:etsi:019102:subindication:HASH_FAILURE<' "$T_DIR/r.json"
val "$T_DIR/p-B-T.pdf" "" "?report=xml-timestamped"
field .report | base64 -d >"$T_DIR/report.xml"
field .timestamp_token | base64 -d >"$T_DIR/report-xml.tst"
check "report=xml-timestamped: openssl ts -verify over the XML report" openssl ts -verify -token_in -in "$T_DIR/report-xml.tst" -data "$T_DIR/report.xml" -CAfile "$ROOT"
check_grep "... which says total-passed" 'mainindication:total-passed' "$T_DIR/report.xml"
"$QTSP_BIN" validate --home "$H" --report xml "$T_DIR/p-B-T.pdf" >"$T_DIR/cli.xml" 2>/dev/null
check "qtsp validate --report xml: well-formed" xmlstarlet val -q -w "$T_DIR/cli.xml"

# ---- the command line gives the same report -----------------------------------------
val "$T_DIR/c-B-LT.p7s" "$T_DIR/doc.bin"
"$QTSP_BIN" validate --home "$H" "$T_DIR/c-B-LT.p7s" --content "$T_DIR/doc.bin" >"$T_DIR/cli.json" 2>/dev/null
check_eq "qtsp validate prints the service's report" "$(jq -c 'del(.validation_time)' "$T_DIR/r.json")" "$(jq -c 'del(.validation_time)' "$T_DIR/cli.json")"

# ---- bad input -------------------------------------------------------------------------
head -c 3000 "$T_DIR/p-B-T.pdf" >"$T_DIR/cut.pdf"
val "$T_DIR/cut.pdf"
check_eq "truncated PDF: 400" 400 "$(status)"
check_grep "truncated PDF: says the PDF does not parse" '"error":"invalid".*does not parse' "$T_DIR/r.json"
head -c 4096 /dev/urandom >"$T_DIR/garbage"
printf 'x' | dd of="$T_DIR/garbage" bs=1 count=1 conv=notrunc status=none
val "$T_DIR/garbage"
check_grep "garbage: 400, names what is accepted" 'not a PDF, CMS signature' "$T_DIR/r.json"
head -c 600 "$T_DIR/c-B-T.p7s" >"$T_DIR/cut.p7s"
val "$T_DIR/cut.p7s" "$T_DIR/doc.bin"
check_grep "truncated CMS: 400" '"error":"invalid".*not a CMS' "$T_DIR/r.json"
val "$T_DIR/p-B-B.pdf" "$T_DIR/doc.bin"
check_grep "content sent with a PDF: 400" 'send no detached content' "$T_DIR/r.json"
val "$T_DIR/e-B-B.p7s" "$T_DIR/doc.bin"
check_grep "content sent with an enveloping signature: 400" 'envelops its content' "$T_DIR/r.json"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -F "data=@$T_DIR/doc.bin" "$BASE/api/v1/validate")
check_eq "no file field: 400" 400 "$code"
check_grep "... names the field" 'form field data not allowed' "$T_DIR/r.json"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -F "file=@$T_DIR/c-B-B.p7s" -F "file=@$T_DIR/c-B-B.p7s" "$BASE/api/v1/validate")
check_grep "file given twice: 400" 'given twice' "$T_DIR/r.json"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary '{}' "$BASE/api/v1/validate")
check_eq "JSON instead of a form: 415" 415 "$code"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -H 'Content-Type: multipart/form-data; boundary=xyz' --data-binary $'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc' "$BASE/api/v1/validate")
check_eq "multipart body cut short: 400" 400 "$code"
check_grep "... says so" 'truncated' "$T_DIR/r.json"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -F "file=@$T_DIR/p-B-B.pdf" "$BASE/api/v1/validate?report=pdf")
check_eq "unknown report form: 400" 400 "$code"
# XML bombs and external entities: refused before any entity is read
printf '<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>\n<l>&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;</l>\n' >"$T_DIR/bomb.xml"
val "$T_DIR/bomb.xml"
check_eq "XML bomb: 400" 400 "$(status)"
check_grep "... DOCTYPE refused" 'DOCTYPE is refused' "$T_DIR/r.json"
printf '<?xml version="1.0"?>\n<!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<f>&x;</f>\n' >"$T_DIR/xxe.xml"
val "$T_DIR/xxe.xml"
check_eq "external entity: 400" 400 "$(status)"
check_not "... nothing of /etc/passwd in the answer" grep -q 'root:' "$T_DIR/r.json"
printf '<?xml version="1.0"?>\n<f><g>' >"$T_DIR/cut.xml"
val "$T_DIR/cut.xml"
check_eq "truncated XML: 400" 400 "$(status)"
# zip bombs, nested containers, a ZIP that is no ASiC container
python3 - "$T_DIR" <<'PY'
import sys, zipfile
d = sys.argv[1]
def asic(path, files, mime="application/vnd.etsi.asic-e+zip", first=True):
    with zipfile.ZipFile(path, "w") as z:
        if first:
            z.writestr(zipfile.ZipInfo("mimetype"), mime, compress_type=zipfile.ZIP_STORED)
        for n, data in files:
            z.writestr(n, data, compress_type=zipfile.ZIP_DEFLATED)
        if not first:
            z.writestr(zipfile.ZipInfo("mimetype"), mime, compress_type=zipfile.ZIP_STORED)
asic(d + "/bomb.zip", [("a.bin", b"\0" * (200 << 20))])
asic(d + "/nested.zip", [("inner.asice", open(d + "/C-asic-e.zip", "rb").read()),
                         ("META-INF/signature.p7s", b"x")])
asic(d + "/nomime.zip", [("a.txt", b"x")], first=False)
PY
val "$T_DIR/bomb.zip"
check_eq "zip bomb (200 MiB of zeros in $(($(stat -c %s "$T_DIR/bomb.zip") / 1024)) KiB): 413" 413 "$(status)"
check_grep "... says what" 'unpack to more than' "$T_DIR/r.json"
val "$T_DIR/nested.zip"
check_eq "nested container: 400" 400 "$(status)"
check_grep "... says so" 'nested containers are not validated' "$T_DIR/r.json"
val "$T_DIR/nomime.zip"
check_grep "ZIP without mimetype first: 400" 'mimetype must be the first entry' "$T_DIR/r.json"
head -c 3000 "$T_DIR/C-asic-e.zip" >"$T_DIR/cut.zip"
val "$T_DIR/cut.zip"
check_eq "truncated container: 400" 400 "$(status)"
head -c 100000000 /dev/zero >"$T_DIR/big.bin"
code=$(curl -s -o "$T_DIR/r.json" -w '%{http_code}' -F "file=@$T_DIR/big.bin" "$BASE/api/v1/validate")
check_eq "a 100 MB upload: 413" 413 "$code"
check_grep "... a JSON error" '"error":"too_big"' "$T_DIR/r.json"
rm -f "$T_DIR/big.bin"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/validate")
check_eq "GET: 405" 405 "$code"
cp "$H/policies/trust.yaml" "$T_DIR/trust.bak"
printf 'anchors:\n  - file: public/nope.crt\n' >"$H/policies/trust.yaml"
"$QTSP_BIN" config check --home "$H" >/dev/null 2>"$T_DIR/cc.err"
check_grep "config check names a trust anchor file that is missing" 'trust.yaml:2:5: file: cannot open' "$T_DIR/cc.err"
cp "$T_DIR/trust.bak" "$H/policies/trust.yaml"
check "config check passes with the anchors back" "$QTSP_BIN" config check --home "$H"
check "the server is still up" kill -0 "$SERVER_PID"
check_eq "health after all of it" ok "$(curl -s "$BASE/health")"
check "server stops cleanly" stop_server
finish
