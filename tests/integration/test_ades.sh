#!/usr/bin/env bash
# Issue 14: CAdES and PAdES at B-B, B-T, B-LT and B-LTA, checked by other
# people's tools: openssl cms -verify (-purpose any, our root as the only
# trust anchor), openssl ts -verify for the embedded time-stamps, poppler's
# pdfsig with an NSS db (certutil) holding our root; a PDF with an xref
# stream, a twice-signed PDF, a certification signature; a tampered byte
# makes each check fail. The server runs at the home's base URL so that
# pdfsig's OCSP check of the signer's certificate reaches our responder.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ades.sh"
for tool in pdfsig certutil qpdf; do
  command -v $tool >/dev/null || { echo "missing $tool (scripts/deps.sh installs it)"; exit 1; }
done
H=$T_DIR/home
# a free port, fixed before init: it goes into the certificates' AIA
PORT=$(free_port)
"$QTSP_BIN" init --home "$H" --base-url "http://127.0.0.1:$PORT" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
ROOT=$H/public/root-ca.crt

# two subscribers, issued from the command line
credential() { cli_credential "$H" "$@"; } # NATIONAL_ID GIVEN: prints the serial
ANNA=$(credential 1234567890 Anna)
BERT=$(credential 2345678901 Bert)
check "two credentials issued" test -n "$ANNA" -a -n "$BERT" -a "$ANNA" != "null"
check "serve starts at the base URL" start_server "$H" --listen "127.0.0.1:$PORT"

sign() { "$QTSP_BIN" sign --home "$H" "$@" 2>>"$T_DIR/sign.err"; }
# asn1 FILE: openssl asn1parse as "offset depth hl len text" lines
# cms_ats CMS TOKEN_OUT: the archive-time-stamp-v3 token
# has_root_crl FILE: the DER of the root's current CRL is inside FILE
has_root_crl() {
  [[ -s $H/public/crl/root.crl ]] || return 1
  [[ $(xxd -p "$1" | tr -d '\n') == *"$(xxd -p "$H/public/crl/root.crl" | tr -d '\n')"* ]]
}

# ---- CAdES -----------------------------------------------------------------
head -c 10240 /dev/urandom >"$T_DIR/doc.bin"
for level in B-B B-T B-LT B-LTA; do
  for env in detached enveloping; do
    n="CAdES-$level $env"
    out=$T_DIR/c-$level-$env.p7s
    extra=()
    [[ $env == enveloping ]] && extra=(--attached)
    check "$n: signed" sign --credential "$ANNA" --format C --level "Ades-$level" "${extra[@]}" --in "$T_DIR/doc.bin" --out "$out"
    if [[ $env == detached ]]; then
      check "$n: openssl cms -verify" cmsverify -in "$out" -content "$T_DIR/doc.bin"
      cp "$T_DIR/doc.bin" "$T_DIR/doc.bad"
      flip "$T_DIR/doc.bad" 5000
      check_not "$n: a flipped content byte fails" cmsverify -in "$out" -content "$T_DIR/doc.bad"
    else
      check "$n: openssl cms -verify" cmsverify -in "$out"
      openssl cms -verify -inform DER -binary -purpose any -CAfile "$ROOT" -in "$out" -out "$T_DIR/got.bin" >/dev/null 2>&1
      check "$n: the enveloped content comes out whole" cmp -s "$T_DIR/got.bin" "$T_DIR/doc.bin"
      cp "$out" "$T_DIR/bad.p7s"
      off=$(grep -obUaP "$(head -c 8 "$T_DIR/doc.bin" | od -An -tx1 | tr -d ' \n' | sed 's/../\\x&/g')" "$T_DIR/bad.p7s" | head -1 | cut -d: -f1)
      flip "$T_DIR/bad.p7s" $((off + 100))
      check_not "$n: a flipped content byte fails" cmsverify -in "$T_DIR/bad.p7s"
    fi
    openssl cms -cmsout -print -inform DER -in "$out" >"$T_DIR/print.txt" 2>&1
    check_grep "$n: signing-time" "object: signingTime" "$T_DIR/print.txt"
    check_grep "$n: signing-certificate-v2" "id-smime-aa-signingCertificateV2" "$T_DIR/print.txt"
    if [[ $level != B-B ]]; then
      check "$n: signature time-stamp found" cms_tst "$out" "$T_DIR/sig.bin" "$T_DIR/tst.der"
      check "$n: openssl ts -verify of the signature time-stamp" tsverify "$T_DIR/tst.der" "$T_DIR/sig.bin"
      flip "$T_DIR/sig.bin" 3
      check_not "$n: time-stamp over another signature value fails" tsverify "$T_DIR/tst.der" "$T_DIR/sig.bin"
    fi
    if [[ $level == B-LT || $level == B-LTA ]]; then
      check_grep "$n: certificate-values" "id-smime-aa-ets-certValues" "$T_DIR/print.txt"
      check_grep "$n: revocation-values" "id-smime-aa-ets-revocationValues" "$T_DIR/print.txt"
      check "$n: revocation-values hold the root CRL the publisher wrote (public/crl/root.crl)" has_root_crl "$out"
    fi
    if [[ $level == B-LTA ]]; then
      check "$n: archive-time-stamp-v3 found" cms_ats "$out" "$T_DIR/ats.der"
      check "$n: the archive time-stamp token verifies (openssl cms)" \
        openssl cms -verify -inform DER -in "$T_DIR/ats.der" -purpose any -CAfile "$ROOT" -out /dev/null
      check_grep "$n: ats-hash-index-v3 in the archive time-stamp" "0\.4\.0\.19122\.1\.5" "$T_DIR/print.txt"
    fi
  done
done

# ---- PAdES -----------------------------------------------------------------
nss_trust "$ROOT"
# a one-page PDF, written by qpdf (classic xref table), and its twin with an xref stream
printf '%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>\nendobj\n4 0 obj\n<< /Length 44 >>\nstream\nBT /F1 24 Tf 72 700 Td (Hello qtsp) Tj ET\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n' >"$T_DIR/raw.pdf"
qpdf "$T_DIR/raw.pdf" "$T_DIR/table.pdf" >/dev/null 2>&1
qpdf --object-streams=generate "$T_DIR/table.pdf" "$T_DIR/xstream.pdf" >/dev/null 2>&1
check "sample PDF has an xref table" grep -aq '^xref' "$T_DIR/table.pdf"
check "sample PDF has an xref stream" grep -aq '/Type /XRef' "$T_DIR/xstream.pdf"

# dts_ok PDF: the last signature is a document time-stamp (ETSI.RFC3161) whose
# token covers the last ByteRange (pdfsig 22.12 does not check those itself)
dts_ok() {
  local br
  br=$(grep -aoE '/ByteRange \[0 [0-9]+ [0-9]+ [0-9]+\]' "$1" | tail -1 | tr -d '[]' | cut -d' ' -f3-)
  read -r a b c <<<"$br"
  a=$((10#$a)) b=$((10#$b)) c=$((10#$c)) # fixed-width numbers with leading zeros
  { head -c "$a" "$1"; tail -c +$((b + 1)) "$1" | head -c "$c"; } >"$T_DIR/dts.data"
  grep -aq '/SubFilter /ETSI.RFC3161' "$1" || return 1
  local hex
  hex=$(head -c "$b" "$1" | tail -c +$((a + 1)) | tr -d '<>')
  echo "$hex" | xxd -r -p >"$T_DIR/dts.padded"
  read -r _ _ h l < <(asn1 "$T_DIR/dts.padded" | head -1 | cut -d' ' -f1-4)
  head -c $((h + l)) "$T_DIR/dts.padded" >"$T_DIR/dts.der"
  tsverify "$T_DIR/dts.der" "$T_DIR/dts.data"
}
for level in B-B B-T B-LT B-LTA; do
  n="PAdES-$level"
  out=$T_DIR/p-$level.pdf
  check "$n: signed" sign --credential "$ANNA" --format P --level "Ades-$level" --in "$T_DIR/table.pdf" --out "$out"
  check "$n: the original bytes are kept as the first revision" cmp -s -n "$(stat -c %s "$T_DIR/table.pdf")" "$out" "$T_DIR/table.pdf"
  pdfcheck "$out"
  check "$n: pdfsig: valid, certificate trusted" sig_ok 1
  check_grep "$n: /SubFilter ETSI.CAdES.detached" "Signature Type: ETSI.CAdES.detached" "$T_DIR/pdfsig.txt"
  check "$n: qpdf --check" qpdf --check "$out"
  mkdir -p "$T_DIR/dump" && rm -f "$T_DIR/dump/"*
  (cd "$T_DIR/dump" && pdfsig -nocert -dump "$out" >/dev/null 2>&1)
  sig0=$(ls "$T_DIR/dump/"*.sig0)
  read -r _ _ h l < <(asn1 "$sig0" | head -1 | cut -d' ' -f1-4)
  head -c $((h + l)) "$sig0" >"$T_DIR/p.p7s"
  openssl cms -cmsout -print -inform DER -in "$T_DIR/p.p7s" >"$T_DIR/print.txt" 2>&1
  check_not "$n: no signing-time attribute" grep -q "object: signingTime" "$T_DIR/print.txt"
  if [[ $level != B-B ]]; then
    check "$n: signature time-stamp found" cms_tst "$T_DIR/p.p7s" "$T_DIR/sig.bin" "$T_DIR/tst.der"
    check "$n: openssl ts -verify of the signature time-stamp" tsverify "$T_DIR/tst.der" "$T_DIR/sig.bin"
  fi
  if [[ $level == B-LT || $level == B-LTA ]]; then
    check "$n: a DSS with certificates and OCSP answers" grep -aqE '/DSS << (/CRLs \[ [0-9 R]+ \] )?/Certs \[ [0-9]+ 0 R' "$out"
    check "$n: ... and the root CRL the publisher wrote (public/crl/root.crl)" has_root_crl "$out"
    check "$n: DSS lists /OCSPs" grep -aqE '/OCSPs \[ [0-9]+ 0 R' "$out"
  fi
  if [[ $level == B-LTA ]]; then
    check "$n: document time-stamp verifies (openssl ts)" dts_ok "$out"
    check_grep "$n: pdfsig lists the document time-stamp" "Signature #2:" "$T_DIR/pdfsig.txt"
  fi
  cp "$out" "$T_DIR/bad.pdf"
  flip "$T_DIR/bad.pdf" 200
  pdfcheck "$T_DIR/bad.pdf"
  check_not "$n: a flipped byte: pdfsig no longer says valid" sig_ok 1
done
cp "$T_DIR/p-B-LTA.pdf" "$T_DIR/bad.pdf"
flip "$T_DIR/bad.pdf" $(($(stat -c %s "$T_DIR/bad.pdf") - 200))
check_not "PAdES-B-LTA: a flipped byte after the DSS breaks the document time-stamp" dts_ok "$T_DIR/bad.pdf"

n="PAdES xref stream"
check "$n: B-LT signed" sign --credential "$ANNA" --format P --level Ades-B-LT --in "$T_DIR/xstream.pdf" --out "$T_DIR/xs.pdf"
pdfcheck "$T_DIR/xs.pdf"
check "$n: pdfsig: valid, certificate trusted" sig_ok 1
check "$n: qpdf --check" qpdf --check "$T_DIR/xs.pdf"
check "$n: the update continues with an xref stream" test "$(grep -ac '/Type /XRef' "$T_DIR/xs.pdf")" -ge 3
cp "$T_DIR/xs.pdf" "$T_DIR/bad.pdf"
flip "$T_DIR/bad.pdf" 150
pdfcheck "$T_DIR/bad.pdf"
check_not "$n: a flipped byte fails" sig_ok 1

n="twice-signed PDF"
check "$n: Bert signs Anna's B-T PDF at B-LTA" sign --credential "$BERT" --format P --level Ades-B-LTA --in "$T_DIR/p-B-T.pdf" --out "$T_DIR/two.pdf"
pdfcheck "$T_DIR/two.pdf"
check "$n: first signature still valid and trusted" sig_ok 1
check "$n: second signature valid and trusted" sig_ok 2
check "$n: its document time-stamp verifies" dts_ok "$T_DIR/two.pdf"
check "$n: qpdf --check" qpdf --check "$T_DIR/two.pdf"
check "$n: a second xref-stream signature (Bert on the xref-stream PDF)" sign --credential "$BERT" --format P --level Ades-B-T --in "$T_DIR/xs.pdf" --out "$T_DIR/xs2.pdf"
pdfcheck "$T_DIR/xs2.pdf"
check "$n: both valid on the xref-stream PDF" sig_ok 1
check "$n: both valid on the xref-stream PDF (2)" sig_ok 2

n="certification"
check "$n: DocMDP certification signature" sign --credential "$ANNA" --format P --level Ades-B-T --certification --in "$T_DIR/table.pdf" --out "$T_DIR/cert.pdf"
pdfcheck "$T_DIR/cert.pdf"
check "$n: valid and trusted" sig_ok 1
check "$n: catalog /Perms /DocMDP" grep -aq '/Perms << /DocMDP' "$T_DIR/cert.pdf"
check_not "$n: refused on a signed PDF" sign --credential "$BERT" --format P --level Ades-B-B --certification --in "$T_DIR/p-B-B.pdf" --out "$T_DIR/x.pdf"
check "$n: an approval signature after it is accepted" sign --credential "$BERT" --format P --level Ades-B-B --in "$T_DIR/cert.pdf" --out "$T_DIR/cert2.pdf"

n="archive"
sign --credential "$ANNA" --format C --level Ades-B-T --name "report.bin" --in "$T_DIR/doc.bin" --out "$T_DIR/arch.p7s" >"$T_DIR/arch.json"
id=$(jq -r .document_id "$T_DIR/arch.json")
check "$n: the signing printed a document id" test "${#id}" -eq 24
sum=$(sha256sum "$T_DIR/arch.p7s" | cut -c1-64)
check "$n: content-addressed file, byte-identical" cmp -s "$H/archive/${sum:0:2}/$sum" "$T_DIR/arch.p7s"
check "$n: not world-readable" test "$(stat -c %a "$H/archive/${sum:0:2}/$sum")" = 640
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt" 2>/dev/null
check_grep "$n: audited document.archive" "\"event\":\"document.archive\".*\"id\":\"$id\"" "$T_DIR/audit.txt"
check "$n: audit chain verifies" "$QTSP_BIN" audit verify --home "$H"

n="bad input"
check_not "$n: a non-PDF is refused as PAdES" sign --credential "$ANNA" --format P --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/x.pdf"
head -c $(($(stat -c %s "$T_DIR/table.pdf") / 2)) "$T_DIR/table.pdf" >"$T_DIR/cut.pdf"
check_not "$n: a truncated PDF is refused" sign --credential "$ANNA" --format P --level Ades-B-B --in "$T_DIR/cut.pdf" --out "$T_DIR/x.pdf"
qpdf --encrypt "" owner 256 -- "$T_DIR/table.pdf" "$T_DIR/enc.pdf" >/dev/null 2>&1
check_not "$n: an encrypted PDF is refused" sign --credential "$ANNA" --format P --level Ades-B-B --in "$T_DIR/enc.pdf" --out "$T_DIR/x.pdf"
check_grep "$n: the reason is named" "encrypted PDFs are not signed" "$T_DIR/sign.err"
check_not "$n: an unknown level" sign --credential "$ANNA" --format C --level Ades-B-X --in "$T_DIR/doc.bin" --out "$T_DIR/x.p7s"
check_not "$n: an unknown credential" sign --credential abcdef --format C --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/x.p7s"
check_not "$n: no output written on failure" test -e "$T_DIR/x.p7s"

check "the server is still up" kill -0 "$SERVER_PID"
check "server stops cleanly" stop_server
finish
