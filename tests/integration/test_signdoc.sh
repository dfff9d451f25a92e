#!/usr/bin/env bash
# Issues 14 and 18: CSC API v2 signatures/signDoc over real HTTP, driven by
# curl as a CSC client (login, credentials/authorize with the SHA-256 of
# each document and a TOTP from oathtool, signDoc), every result checked by
# other people's tools: CAdES detached and enveloping at each level by
# openssl cms -verify (-purpose any, our root as the only trust anchor) and
# the signature time-stamp by openssl ts -verify; PAdES at each level by
# poppler's pdfsig (NSS db from certutil), also a PDF with an xref stream
# and a PDF signed twice through signDoc; XAdES enveloped, enveloping and
# detached by xmlsec1; ASiC-S (CAdES) and ASiC-E (XAdES) containers by unzip,
# openssl cms and xmlsec1; a tampered byte fails each check. Refusals: a SAD
# for other hashes (nothing charged), malformed JSON, unknown fields, bad
# base64, an oversized body. The archive: GET /api/v1/documents and
# /api/v1/documents/{id} return byte-identical documents, and a second
# signer never sees the first's.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ades.sh"
for tool in pdfsig certutil qpdf xmlsec1 xmlstarlet unzip oathtool; do
  command -v $tool >/dev/null || { echo "missing $tool (scripts/deps.sh installs it)"; exit 1; }
done
H=$T_DIR/home
W=$T_DIR/w
mkdir -p "$W"
# a free port, fixed before init: it goes into the certificates' AIA (pdfsig asks our OCSP)
PORT=$(free_port)
"$QTSP_BIN" init --home "$H" --base-url "http://127.0.0.1:$PORT" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
# TOTP steps either side of now: five authorisations per 30 s and credential
sed -i 's/^  window: .*/  window: 2/' "$H/policies/signing.yaml"
# a small body limit, so that "oversized" is cheap to send
sed -i 's/^documents_max_body: .*/documents_max_body: 2097152/' "$H/policies/signing.yaml"
ROOT=$H/public/root-ca.crt
ISSUING=$H/public/issuing-ca.crt
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
check "serve starts at the base URL" start_server "$H" --listen "127.0.0.1:$PORT"

err() { jq -r '.error + ": " + .error_description' "$T_DIR/body"; }
# signer N NATIONAL_ID PACKAGE: U_N, P_N, S_N (TOTP secret), C_N (credential), T_N (token)
signer() {
  local n=$1 sid s
  sid=$(api POST /ra/v1/subjects "$OFFICER" "{\"given_name\":\"Sig$n\",\"surname\":\"Test\",\"country\":\"DE\",\"national_id\":\"$2\",\"email\":\"a@example.de\",\"phone\":\"+49151${2:0:7}\",\"package\":\"$3\"}" | jq -r .subject_id)
  api POST "/ra/v1/subjects/$sid/certificates" "$OFFICER" '{}' >"$T_DIR/iss.json"
  s=$(jq -r .serial "$T_DIR/iss.json")
  printf -v "U_$n" '%s' "$(jq -r .activation.user_id "$T_DIR/iss.json")"
  printf -v "P_$n" '%s' "$(jq -r .activation.password "$T_DIR/iss.json")"
  printf -v "S_$n" '%s' "$(jq -r .activation.otpauth_uri "$T_DIR/iss.json" | sed 's/.*secret=\([A-Z2-7]*\).*/\1/')"
  printf -v "C_$n" '%s' "$s"
  local u p
  u=U_$n p=P_$n
  printf -v "T_$n" '%s' "$(login "${!u}" "${!p}")"
}
# otp N: a TOTP code of signer N for a step not used before (the server
# refuses a replayed step), waiting for the clock when the window is used
# up; the last step in a file (callers run it in a subshell)
otp() {
  local n=$1 now step cand last s
  s=S_$n
  last=$(cat "$W/last-$n" 2>/dev/null || echo 0)
  while :; do
    now=$(date +%s)
    step=$((now / 30))
    cand=$((step - 2))
    ((cand <= last)) && cand=$((last + 1))
    ((cand <= step + 2)) && break
    sleep 2
  done
  echo "$cand" >"$W/last-$n"
  oathtool --totp -b -N "@$((cand * 30 + 1))" "${!s}"
}
ES256=1.2.840.10045.4.3.2
SHA256=2.16.840.1.101.3.4.2.1
# entry FILE FORMAT LEVEL ENVELOPE [NAME]: one documents[] object
entry() {
  printf '{"document":"%s","signature_format":"%s","conformance_level":"Ades-%s","signAlgo":"%s","signed_envelope_property":"%s","name":"%s"}' \
    "$(base64 -w0 "$1")" "$2" "$3" "$ES256" "$4" "${5:-$(basename "$1")}"
}
# authorize N FILE...: a SAD of signer N for the SHA-256 of each file
authorize() {
  local n=$1 t c hs=() f
  shift
  t=T_$n c=C_$n
  for f in "$@"; do hs+=("\"$(openssl dgst -sha256 -binary "$f" | base64 -w0)\""); done
  csc credentials/authorize "${!t}" "{\"credentialID\":\"${!c}\",\"numSignatures\":$#,\"hashes\":[$(IFS=,; echo "${hs[*]}")],\"hashAlgorithmOID\":\"$SHA256\",\"OTP\":\"$(otp "$n")\"}" | jq -r '.SAD // empty'
}
# signdoc N SAD ENTRIES_FILE [curl args]: POST signDoc; the answer in $W/resp.json
signdoc() {
  local t=T_$1 c=C_$1
  { printf '{"credentialID":"%s","SAD":"%s","documents":[' "${!c}" "$2"; cat "$3"; printf ']}'; } >"$W/req.json"
  curl -s -o "$W/resp.json" -w '%{http_code}' -X POST -H "Authorization: Bearer ${!t}" \
    -H 'Content-Type: application/json' --data-binary "@$W/req.json" "${@:4}" \
    "$BASE/csc/v2/signatures/signDoc" >"$T_DIR/status"
  cp "$W/resp.json" "$T_DIR/body"
  [[ $(status) == 200 ]] || echo "signDoc: $(status) $(head -c 300 "$T_DIR/body")" >>"$T_DIR/check.log"
}
# out KEY I FILE: the I-th base64 of the answer's KEY array, decoded
out() { jq -r ".$1[$2]" "$W/resp.json" | base64 -d >"$3"; }
used() { # N: signatures the signer's package has used (GET /api/v1/history)
  local t=T_$1
  curl -s -H "Authorization: Bearer ${!t}" "$BASE/api/v1/history" | jq '[.signings[].hashes | length] | add // 0'
}

signer A 7001010001 unlimited
signer B 7001010002 practical
check "two signers logged in" test -n "$T_A" -a -n "$T_B"
csc info "" '{}' >"$W/info.json"
check "info lists signatures/signDoc" jq -e '.methods | index("signatures/signDoc")' "$W/info.json"

# ---- CAdES: detached and enveloping at each level, one signDoc ---------------
head -c 10240 /dev/urandom >"$W/doc.bin"
: >"$W/entries"
files=()
for level in B-B B-T B-LT B-LTA; do
  for env in Detached Attached; do
    # each its own bytes: the archive would otherwise share one file
    { cat "$W/doc.bin"; printf '%s %s' "$level" "$env"; } >"$W/c-$level-$env.bin"
    files+=("$W/c-$level-$env.bin")
    [[ -s $W/entries ]] && printf ',' >>"$W/entries"
    entry "$W/c-$level-$env.bin" C "$level" "$env" >>"$W/entries"
  done
done
SAD=$(authorize A "${files[@]}")
check "authorize for the SHA-256 of eight documents" test -n "$SAD"
before=$(used A)
signdoc A "$SAD" "$W/entries"
check_eq "CAdES signDoc of eight documents: 200" 200 "$(status)"
check "answer: 4 SignatureObject (detached), 4 DocumentWithSignature (attached), 8 document ids" \
  jq -e '(.SignatureObject | length) == 4 and (.DocumentWithSignature | length) == 4 and (.documentIDs | length) == 8' "$W/resp.json"
check_eq "eight signatures counted" $((before + 8)) "$(used A)"
cp "$W/resp.json" "$W/cades.json"
i=0
for level in B-B B-T B-LT B-LTA; do
  for env in Detached Attached; do
    n="CAdES-$level $env"
    in=$W/c-$level-$env.bin
    sig=$W/c-$level-$env.p7
    if [[ $env == Detached ]]; then
      out SignatureObject $((i / 2)) "$sig"
      check "$n: openssl cms -verify with the content" cmsverify -in "$sig" -content "$in"
      cp "$in" "$W/bad.bin"
      flip "$W/bad.bin" 5000
      check_not "$n: a flipped content byte fails" cmsverify -in "$sig" -content "$W/bad.bin"
    else
      out DocumentWithSignature $((i / 2)) "$sig"
      openssl cms -verify -inform DER -binary -purpose any -CAfile "$ROOT" -in "$sig" -out "$W/got.bin" >/dev/null 2>&1
      check "$n: openssl cms -verify, the content comes out whole" cmp -s "$W/got.bin" "$in"
      cp "$sig" "$W/bad.p7"
      off=$(grep -obUaP "$(head -c 8 "$in" | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')" "$W/bad.p7" | head -1 | cut -d: -f1)
      flip "$W/bad.p7" $((off + 100))
      check_not "$n: a flipped content byte fails" cmsverify -in "$W/bad.p7"
    fi
    openssl cms -cmsout -print -inform DER -in "$sig" >"$W/print.txt" 2>&1
    check_grep "$n: signing-certificate-v2" "id-smime-aa-signingCertificateV2" "$W/print.txt"
    if [[ $level != B-B ]]; then
      check "$n: signature time-stamp found" cms_tst "$sig" "$W/sig.bin" "$W/tst.der"
      check "$n: openssl ts -verify of the signature time-stamp" tsverify "$W/tst.der" "$W/sig.bin"
      flip "$W/sig.bin" 3
      check_not "$n: the time-stamp over another signature value fails" tsverify "$W/tst.der" "$W/sig.bin"
    fi
    [[ $level == B-LT || $level == B-LTA ]] &&
      check_grep "$n: certificate-values and revocation-values" "id-smime-aa-ets-revocationValues" "$W/print.txt"
    [[ $level == B-LTA ]] && check_grep "$n: archive-time-stamp-v3" "0\.4\.0\.1733\.2\.4" "$W/print.txt"
    i=$((i + 1))
  done
done

# ---- PAdES: each level, an xref stream, twice signed -------------------------
nss_trust "$ROOT"
mkpdf() { # TEXT OUT
  printf '%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>\nendobj\n4 0 obj\n<< /Length %d >>\nstream\nBT /F1 24 Tf 72 700 Td (%s) Tj ET\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n' $((34 + ${#1})) "$1" >"$W/raw.pdf"
  qpdf "$W/raw.pdf" "$2" >/dev/null 2>&1
}
: >"$W/entries"
files=()
for level in B-B B-T B-LT B-LTA; do
  mkpdf "Hello $level" "$W/p-$level-in.pdf"
  files+=("$W/p-$level-in.pdf")
  [[ -s $W/entries ]] && printf ',' >>"$W/entries"
  env=Revision
  [[ $level == B-T ]] && env=Certification
  entry "$W/p-$level-in.pdf" P "$level" "$env" "contract $level.pdf" >>"$W/entries"
done
mkpdf "Hello xref stream" "$W/t.pdf"
qpdf --object-streams=generate "$W/t.pdf" "$W/xs-in.pdf" >/dev/null 2>&1
check "sample PDF has an xref stream" grep -aq '/Type /XRef' "$W/xs-in.pdf"
files+=("$W/xs-in.pdf")
printf ',' >>"$W/entries"
entry "$W/xs-in.pdf" P B-LT Revision >>"$W/entries"
SAD=$(authorize A "${files[@]}")
signdoc A "$SAD" "$W/entries"
check_eq "PAdES signDoc of five PDFs: 200" 200 "$(status)"
check "answer: five DocumentWithSignature, no SignatureObject" \
  jq -e '(.DocumentWithSignature | length) == 5 and (.SignatureObject | length) == 0' "$W/resp.json"
cp "$W/resp.json" "$W/pades.json"
i=0
for level in B-B B-T B-LT B-LTA; do
  n="PAdES-$level"
  out DocumentWithSignature $i "$W/p-$level.pdf"
  check "$n: the original bytes are the first revision" cmp -s -n "$(stat -c %s "$W/p-$level-in.pdf")" "$W/p-$level.pdf" "$W/p-$level-in.pdf"
  pdfcheck "$W/p-$level.pdf"
  check "$n: pdfsig: valid, certificate trusted" sig_ok 1
  check_grep "$n: /SubFilter ETSI.CAdES.detached" "Signature Type: ETSI.CAdES.detached" "$T_DIR/pdfsig.txt"
  [[ $level == B-LT || $level == B-LTA ]] && check "$n: a DSS" grep -aq '/DSS' "$W/p-$level.pdf"
  [[ $level == B-LTA ]] && check_grep "$n: a document time-stamp" "Signature #2:" "$T_DIR/pdfsig.txt"
  [[ $level == B-T ]] && check "$n: Certification: a DocMDP" grep -aq '/DocMDP' "$W/p-$level.pdf"
  cp "$W/p-$level.pdf" "$W/bad.pdf"
  flip "$W/bad.pdf" 200
  pdfcheck "$W/bad.pdf"
  check_not "$n: a flipped byte: pdfsig no longer says valid" sig_ok 1
  i=$((i + 1))
done
n="PAdES xref stream"
out DocumentWithSignature 4 "$W/xs.pdf"
pdfcheck "$W/xs.pdf"
check "$n: pdfsig: valid, certificate trusted" sig_ok 1
check "$n: the update continues with an xref stream" test "$(grep -ac '/Type /XRef' "$W/xs.pdf")" -ge 2
cp "$W/xs.pdf" "$W/bad.pdf"
flip "$W/bad.pdf" 150
pdfcheck "$W/bad.pdf"
check_not "$n: a flipped byte fails" sig_ok 1

n="twice-signed PDF"
entry "$W/p-B-LT.pdf" P B-T Revision twice.pdf >"$W/entries"
SAD=$(authorize B "$W/p-B-LT.pdf")
signdoc B "$SAD" "$W/entries"
check_eq "$n: B signs A's signed PDF: 200" 200 "$(status)"
out DocumentWithSignature 0 "$W/two.pdf"
pdfcheck "$W/two.pdf"
check "$n: the first signature still valid and trusted" sig_ok 1
check "$n: the second signature valid and trusted" sig_ok 2
entry "$W/p-B-LT.pdf" P B-B Certification x.pdf >"$W/entries"
SAD=$(authorize B "$W/p-B-LT.pdf")
before=$(used B)
signdoc B "$SAD" "$W/entries"
check_eq "$n: a certification of an already signed PDF: 409" 409 "$(status)"
check_eq "... nothing charged" "$before" "$(used B)"

# ---- XAdES: enveloped, enveloping, detached at each level, one signDoc --------
NS=(-N ds=http://www.w3.org/2000/09/xmldsig# -N xades=http://uri.etsi.org/01903/v1.3.2#)
sel() { xmlstarlet sel "${NS[@]}" -t -v "$2" "$1" 2>/dev/null; } # FILE XPATH
xverify() { # FILE [xmlsec1 args]: the signature and all its references, our root trusted
  local f=$1; shift
  xmlsec1 --verify --trusted-pem "$ROOT" --untrusted-pem "$ISSUING" \
    --id-attr:Id http://uri.etsi.org/01903/v1.3.2#:SignedProperties "$@" "$f" >/dev/null 2>&1
}
: >"$W/entries"
files=()
for level in B-B B-T B-LT B-LTA; do
  for pk in Enveloped Enveloping Detached; do
    if [[ $pk == Enveloped ]]; then
      printf '<?xml version="1.0" encoding="UTF-8"?>\n<invoice xmlns="urn:example:invoice">\n  <level>%s</level>\n  <total currency="EUR">100.00</total>\n</invoice>\n' "$level" >"$W/x-$level-$pk.in"
    else
      { head -c 4000 "$W/doc.bin"; printf '%s %s' "$level" "$pk"; } >"$W/x-$level-$pk.in"
    fi
    files+=("$W/x-$level-$pk.in")
    [[ -s $W/entries ]] && printf ',' >>"$W/entries"
    entry "$W/x-$level-$pk.in" X "$level" "$pk" "x-$level-$pk.in" >>"$W/entries"
  done
done
SAD=$(authorize A "${files[@]}")
signdoc A "$SAD" "$W/entries"
check_eq "XAdES signDoc of twelve documents: 200" 200 "$(status)"
check "answer: 8 with the signature inside, 4 detached" \
  jq -e '(.DocumentWithSignature | length) == 8 and (.SignatureObject | length) == 4' "$W/resp.json"
iw=0 id=0
for level in B-B B-T B-LT B-LTA; do
  for pk in Enveloped Enveloping Detached; do
    n="XAdES-$level $pk"
    in=$W/x-$level-$pk.in
    sig=$W/x-$level-$pk.xml
    args=()
    if [[ $pk == Detached ]]; then
      out SignatureObject $id "$sig"
      id=$((id + 1))
      args=(--url-map:"x-$level-$pk.in" "$in")
    else
      out DocumentWithSignature $iw "$sig"
      iw=$((iw + 1))
    fi
    check "$n: xmlsec1 --verify with the chain" xverify "$sig" "${args[@]}"
    case $pk in
      Enveloped) sed 's/100\.00/100.01/' "$sig" >"$W/bad.xml"; check_not "$n: a changed amount fails" xverify "$W/bad.xml" ;;
      Enveloping)
        cp "$sig" "$W/bad.xml"
        off=$(grep -bo 'Encoding="http://www.w3.org/2000/09/xmldsig#base64">' "$W/bad.xml" | head -1 | cut -d: -f1)
        flip "$W/bad.xml" $((off + 80)) # a base64 letter A <-> B
        check_not "$n: a flipped byte in the object fails" xverify "$W/bad.xml" ;;
      Detached)
        cp "$in" "$W/doc.bad"; flip "$W/doc.bad" 1000
        check_not "$n: a flipped content byte fails" xverify "$sig" --url-map:"x-$level-$pk.in" "$W/doc.bad" ;;
    esac
    [[ $level != B-B ]] && check_eq "$n: a SignatureTimeStamp" 1 "$(sel "$sig" 'count(//xades:SignatureTimeStamp)')"
  done
done

# ---- ASiC (our extension "container"): ASiC-S with CAdES, ASiC-E with XAdES ----
echo "hello, container" >"$W/a.txt"
printf '%s,%s' "$(entry "$W/a.txt" C B-LT Detached a.txt | sed 's/}$/,"container":"ASiC-S"}/')" \
  "$(entry "$W/a.txt" X B-T Detached a.txt | sed 's/}$/,"container":"ASiC-E"}/')" >"$W/entries"
SAD=$(authorize A "$W/a.txt" "$W/a.txt")
signdoc A "$SAD" "$W/entries"
check_eq "ASiC-S and ASiC-E via signDoc: 200" 200 "$(status)"
out DocumentWithSignature 0 "$W/s.asics"
out DocumentWithSignature 1 "$W/e.asice"
check_eq "ASiC-S: mimetype first" mimetype "$(unzip -Z1 "$W/s.asics" | head -1)"
check_eq "ASiC-S: its media type" application/vnd.etsi.asic-s+zip "$(unzip -p "$W/s.asics" mimetype)"
rm -rf "$W/unz" && mkdir -p "$W/unz" && (cd "$W/unz" && unzip -q "$W/s.asics")
check "ASiC-S: the file comes out whole" cmp -s "$W/unz/a.txt" "$W/a.txt"
check "ASiC-S: META-INF/signature.p7s verifies over it (openssl cms)" cmsverify -in "$W/unz/META-INF/signature.p7s" -content "$W/unz/a.txt"
flip "$W/unz/a.txt" 2
check_not "ASiC-S: a flipped byte in the file fails" cmsverify -in "$W/unz/META-INF/signature.p7s" -content "$W/unz/a.txt"
rm -rf "$W/unz" && mkdir -p "$W/unz" && (cd "$W/unz" && unzip -q "$W/e.asice")
check_eq "ASiC-E: its media type" application/vnd.etsi.asic-e+zip "$(unzip -p "$W/e.asice" mimetype)"
check "ASiC-E: META-INF/signatures.xml verifies (xmlsec1)" xverify "$W/unz/META-INF/signatures.xml" --url-map:a.txt "$W/unz/a.txt"
flip "$W/unz/a.txt" 2
check_not "ASiC-E: a flipped byte in the file fails" xverify "$W/unz/META-INF/signatures.xml" --url-map:a.txt "$W/unz/a.txt"

# ---- names outside [A-Za-z0-9._-]: mapped inside containers and references ----
# (each other character as '_', the extension kept; the archive keeps the original)
echo "a contract with a Russian name" >"$W/n.txt"
printf '%s,%s,%s' \
  "$(entry "$W/n.txt" X B-B Detached 'Договор.txt' | sed 's/}$/,"container":"ASiC-E"}/')" \
  "$(entry "$W/n.txt" C B-B Detached 'my file.txt' | sed 's/}$/,"container":"ASiC-S"}/')" \
  "$(entry "$W/n.txt" X B-B Detached 'my file.txt')" >"$W/entries"
SAD=$(authorize A "$W/n.txt" "$W/n.txt" "$W/n.txt")
signdoc A "$SAD" "$W/entries"
check_eq "non-ASCII and spaced names via signDoc (ASiC-E, ASiC-S, XAdES detached): 200" 200 "$(status)"
out DocumentWithSignature 0 "$W/n.asice"
out DocumentWithSignature 1 "$W/n.asics"
out SignatureObject 0 "$W/n.xml"
check "ASiC-E: 'Договор.txt' is _______.txt inside (unzip -Z1)" grep -qx '_______.txt' <(unzip -Z1 "$W/n.asice")
rm -rf "$W/unz" && mkdir -p "$W/unz" && (cd "$W/unz" && unzip -q "$W/n.asice")
check "ASiC-E: META-INF/signatures.xml verifies over _______.txt (xmlsec1)" xverify "$W/unz/META-INF/signatures.xml" --url-map:_______.txt "$W/unz/_______.txt"
check "ASiC-S: 'my file.txt' is my_file.txt inside (unzip -Z1)" grep -qx 'my_file.txt' <(unzip -Z1 "$W/n.asics")
check_eq "XAdES detached: the reference URI is my_file.txt" my_file.txt "$(sel "$W/n.xml" '//ds:Reference[not(@Type)]/@URI')"
check "XAdES detached: verifies with the file mapped to my_file.txt (xmlsec1)" xverify "$W/n.xml" --url-map:my_file.txt "$W/n.txt"
check "the archive keeps the original names" jq -e '[.documents[].name] | index("Договор.txt") != null and index("my file.txt") != null' <(curl -s -H "Authorization: Bearer $T_A" "$BASE/api/v1/documents")

# ---- GET /api/v1/documents in pages: ?limit, "next", ?after; 400 for bad values ----
docs_get() { curl -s -o "$W/docs.json" -w '%{http_code}' -H "Authorization: Bearer $T_A" "$BASE/api/v1/documents$1"; }
check_eq "documents ?limit=1000: 200" 200 "$(docs_get '?limit=1000')"
all=$(jq '.documents | length' "$W/docs.json")
check "documents: more than 2 archived for A, no next in one page of 1000" jq -e "($all > 2) and (has(\"next\") | not)" "$W/docs.json"
jq -r '.documents[].id' "$W/docs.json" | sort >"$W/ids.all"
: >"$W/ids.paged"
after="" pages=0
while :; do
  docs_get "?limit=2${after:+&after=$after}" >"$T_DIR/status"
  [[ $(status) == 200 ]] || break
  jq -r '.documents[].id' "$W/docs.json" >>"$W/ids.paged"
  pages=$((pages + 1))
  after=$(jq -r '.next // empty' "$W/docs.json")
  [[ -n $after && $pages -lt 1000 ]] || break
done
check_eq "documents ?limit=2: pages following next" $(((all + 1) / 2)) "$pages"
check "documents ?limit=2: every document once, across the pages" cmp -s "$W/ids.all" <(sort "$W/ids.paged")
check_eq "documents ?limit=0: 400" 400 "$(docs_get '?limit=0')"
check_eq "documents ?limit=1001: 400" 400 "$(docs_get '?limit=1001')"
check_eq "documents ?after=not-a-cursor: 400" 400 "$(docs_get '?after=../../etc')"
check_eq "documents ?page=2 (unknown parameter): 400" 400 "$(docs_get '?page=2')"

# ---- refusals: nothing charged, nothing archived -----------------------------
docs_of() { local t=T_$1; curl -s -H "Authorization: Bearer ${!t}" "$BASE/api/v1/documents" | jq '.documents | length'; }
archived=$(docs_of A)
before=$(used A)
head -c 3000 /dev/urandom >"$W/r.bin"
head -c 3000 /dev/urandom >"$W/other.bin"
entry "$W/r.bin" C B-B Detached >"$W/entries"
SAD=$(authorize A "$W/other.bin")
signdoc A "$SAD" "$W/entries"
check_eq "a SAD for another document's hash: 400" 400 "$(status)"
check_eq "... says why" "invalid_request: SAD: authorised for other hashes than the SHA-256 of these documents" "$(err)"
SAD=$(authorize A "$W/r.bin" "$W/r.bin")
signdoc A "$SAD" "$W/entries"
check_eq "a SAD for the document twice, one sent: 400" 400 "$(status)"
SAD=$(authorize A "$W/r.bin")
C_SAVE=$C_B C_B=$C_A
signdoc B "$SAD" "$W/entries"
C_B=$C_SAVE
check_eq "A's SAD and credential with B's token: 400" 400 "$(status)"
check_eq "... no such credential" "invalid_request: credentialID: no such credential" "$(err)"
printf '{"document":"%s","signature_format":"C","conformance_level":"Ades-B-B","signAlgo":"%s","colour":"red"}' "$(base64 -w0 "$W/r.bin")" "$ES256" >"$W/e2"
signdoc A "$SAD" "$W/e2"
check_eq "an unknown field in a document: 400" 400 "$(status)"
check_eq "... names it" "invalid_request: documents[0].colour: unknown field" "$(err)"
printf '{"document":"%s!","signature_format":"C","conformance_level":"Ades-B-B","signAlgo":"%s"}' "$(base64 -w0 "$W/r.bin")" "$ES256" >"$W/e2"
signdoc A "$SAD" "$W/e2"
check_eq "bad base64: 400" 400 "$(status)"
check_eq "... says so" "invalid_request: documents[0].document: not base64 (RFC 4648 4)" "$(err)"
printf '{"document":"%s","signature_format":"Q","conformance_level":"Ades-B-B","signAlgo":"%s"}' "$(base64 -w0 "$W/r.bin")" "$ES256" >"$W/e2"
signdoc A "$SAD" "$W/e2"
check_eq "signature_format Q: 400" 400 "$(status)"
entry "$W/r.bin" C B-B Enveloped >"$W/e2"
signdoc A "$SAD" "$W/e2"
check_eq "CAdES with signed_envelope_property Enveloped: 400" 400 "$(status)"
entry "$W/r.bin" P B-B Revision >"$W/e2"
signdoc A "$SAD" "$W/e2"
check_eq "PAdES of a file that is not a PDF: 400" 400 "$(status)"
csc signatures/signDoc "$T_A" '{"credentialID":"x","SAD":' >/dev/null
check_eq "malformed JSON: 400" 400 "$(status)"
check_grep "... says where" "invalid JSON" "$T_DIR/body"
csc signatures/signDoc "$T_A" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD\",\"documents\":[],\"extra\":1}" >/dev/null
check_eq "an unknown top-level field: 400" 400 "$(status)"
csc signatures/signDoc "$T_A" "{\"credentialID\":\"$C_A\",\"SAD\":\"$SAD\",\"documents\":[]}" >/dev/null
check_eq "no documents: 400" 400 "$(status)"
head -c 1700000 /dev/urandom >"$W/big.bin"
entry "$W/big.bin" C B-B Detached >"$W/e2"
signdoc A "$SAD" "$W/e2" -H 'Expect: 100-continue'
check_eq "a body over documents_max_body: 413" 413 "$(status)"
check_grep "... before the body is read" "request body too large" "$T_DIR/body"
curl -s -o "$T_DIR/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $T_A" -H 'Content-Type: application/json' \
  -H 'Expect: 100-continue' --data-binary "@$W/req.json" "$BASE/csc/v2/credentials/list" >"$T_DIR/status"
check_eq "the same body to credentials/list (its own small limit): 413" 413 "$(status)"
signdoc A "$SAD" "$W/entries"
check_eq "after all that, the SAD still signs r.bin: 200" 200 "$(status)"
check_eq "one signature charged for all of the above" $((before + 1)) "$(used A)"
check_eq "one document archived for all of the above" $((archived + 1)) "$(docs_of A)"
signdoc A "$SAD" "$W/entries"
check_eq "the SAD again: 400" 400 "$(status)"
check_eq "... already used" "invalid_request: SAD: already used" "$(err)"

# ---- the package and the certificate, checked as signHash checks them -------
signer C 7001010003 free # three signatures a year
for k in 1 2 3 4; do head -c 500 /dev/urandom >"$W/q$k.bin"; done
printf '%s,%s,%s,%s' "$(entry "$W/q1.bin" C B-B Detached)" "$(entry "$W/q2.bin" C B-B Detached)" \
  "$(entry "$W/q3.bin" C B-B Detached)" "$(entry "$W/q4.bin" C B-B Detached)" >"$W/entries"
SAD=$(authorize C "$W/q1.bin" "$W/q2.bin" "$W/q3.bin" "$W/q4.bin")
signdoc C "$SAD" "$W/entries"
check_eq "four documents on a package with three signatures: 429" 429 "$(status)"
check_eq "... quota_exceeded" quota_exceeded "$(jq -r .error "$T_DIR/body")"
check_eq "... nothing charged" 0 "$(used C)"
check_eq "... nothing archived" 0 "$(docs_of C)"
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
api POST "/ra/v1/certificates/$C_B/hold" "$HOTLINE" '{"caller_verification":"test"}' >/dev/null
check_eq "B's certificate held" 200 "$(status)"
head -c 500 /dev/urandom >"$W/h.bin"
entry "$W/h.bin" C B-B Detached >"$W/entries"
SAD=$(authorize B "$W/h.bin")
check_eq "authorize with a held certificate: refused" "" "$SAD"
before=$(used B)
signdoc B "x$(head -c 42 /dev/zero | tr '\0' A)" "$W/entries"
check_eq "signDoc with a held certificate: 409" 409 "$(status)"
check_grep "... says suspended" "suspended" "$T_DIR/body"
check_eq "... nothing charged" "$before" "$(used B)"

# ---- the archive -------------------------------------------------------------
curl -s -H "Authorization: Bearer $T_A" "$BASE/api/v1/documents" >"$W/list.json"
check "A's list has the interface's fields" \
  jq -e '.documents | length >= 28 and all(.[]; has("id") and has("name") and has("format") and has("level") and has("signed_at") and has("sha256") and has("size"))' "$W/list.json"
ID=$(jq -r '.documentIDs[0]' "$W/pades.json")
check "the list names the PAdES-B-B document" jq -e --arg id "$ID" '.documents[] | select(.id == $id) | .name == "contract B-B.pdf" and .format == "PAdES" and .level == "B-B"' "$W/list.json"
curl -s -D "$W/h.txt" -o "$W/dl.pdf" -H "Authorization: Bearer $T_A" "$BASE/api/v1/documents/$ID"
check "download: byte-identical to what signDoc answered" cmp -s "$W/dl.pdf" "$W/p-B-B.pdf"
check_grep "download: Content-Type application/pdf" "^[Cc]ontent-[Tt]ype: application/pdf" "$W/h.txt"
check_grep "download: Content-Disposition attachment with the name" 'filename="contract B-B.pdf"' "$W/h.txt"
check "download: the sha256 of the list" test "$(jq -r --arg id "$ID" '.documents[] | select(.id == $id) | .sha256' "$W/list.json")" = "$(sha256sum "$W/dl.pdf" | cut -d' ' -f1)"
ID2=$(jq -r '.documentIDs[0]' "$W/cades.json")
curl -s -D "$W/h.txt" -o "$W/dl.p7" -H "Authorization: Bearer $T_A" "$BASE/api/v1/documents/$ID2"
check "download of the detached CAdES: byte-identical" cmp -s "$W/dl.p7" "$W/c-B-B-Detached.p7"
check_grep "... as application/pkcs7-signature" "^[Cc]ontent-[Tt]ype: application/pkcs7-signature" "$W/h.txt"
curl -s -o "$T_DIR/body" -w '%{http_code}' -H "Authorization: Bearer $T_B" "$BASE/api/v1/documents/$ID" >"$T_DIR/status"
check_eq "B asks for A's document: 404" 404 "$(status)"
curl -s -o "$W/unk.json" -w '%{http_code}' -H "Authorization: Bearer $T_B" "$BASE/api/v1/documents/0123456789abcdef01234567" >"$T_DIR/status"
check_eq "... as for an unknown id" "$(jq -c . "$T_DIR/body")" "$(jq -c . "$W/unk.json")"
curl -s -H "Authorization: Bearer $T_B" "$BASE/api/v1/documents" >"$W/listb.json"
check "B's list: only B's own document (the twice-signed PDF)" jq -e '(.documents | length) == 1 and .documents[0].name == "twice.pdf"' "$W/listb.json"
check_not "B's list never names A's ids" grep -qF "$ID" "$W/listb.json"
curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/documents" >"$T_DIR/status"
check_eq "documents without a token: 401" 401 "$(status)"

"$QTSP_BIN" audit verify --home "$H" >"$W/audit.txt" 2>&1
check "the audit chain verifies" test $? -eq 0
check "the server exits cleanly" stop_server
finish
