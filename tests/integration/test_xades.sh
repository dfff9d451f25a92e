#!/usr/bin/env bash
# Issue 18 (signing): XAdES at B-B, B-T, B-LT and B-LTA, enveloped,
# enveloping and detached, and ASiC-S / ASiC-E containers with CAdES or
# XAdES, checked by other people's tools:
#   xmlsec1 --verify (our root as the only trusted certificate, the issuing
#     CA as untrusted): SignedInfo's signature (ECDSA r||s) and every
#     reference, the SignedProperties one included (xmlsec1 resolves its
#     same-document URI and checks its digest like any other; it knows
#     nothing of XAdES, so the properties themselves are checked here with
#     xmlstarlet against openssl's view of the certificate);
#   openssl ts -verify for SignatureTimeStamp and ArchiveTimeStamp over the
#     bytes their imprint covers, canonicalised by xmlstarlet c14n from an
#     XPath node set (EN 319 132-1 5.3 and 5.5.2.2);
#   openssl ocsp -respin for the embedded OCSP answer;
#   unzip -Z (mimetype first, stored, no extra field), openssl cms -verify
#     and xmlsec1 for the signatures inside containers.
# A tampered byte makes each check fail; unsafe XML is refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ades.sh"
for tool in xmlsec1 xmlstarlet unzip; do
  command -v $tool >/dev/null || { echo "missing $tool (scripts/deps.sh installs it)"; exit 1; }
done
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
ROOT=$H/public/root-ca.crt
ISSUING=$H/public/issuing-ca.crt
printf '{"given_name":"Anna","surname":"Test","country":"DE","national_id":"1234567890","email":"a@example.de","phone":"+491511234567","package":"free"}' >"$T_DIR/subj.json"
SID=$("$QTSP_BIN" subject add --home "$H" --json "$T_DIR/subj.json" 2>/dev/null | jq -r .subject_id)
"$QTSP_BIN" issue --home "$H" "$SID" 2>/dev/null >"$T_DIR/iss.json"
ANNA=$(jq -r .serial "$T_DIR/iss.json")
jq -r .certificate "$T_DIR/iss.json" >"$T_DIR/signer.pem"
check "a credential issued" test -n "$ANNA" -a "$ANNA" != "null"

NS=(-N ds=http://www.w3.org/2000/09/xmldsig# -N xades=http://uri.etsi.org/01903/v1.3.2#
  -N xades141=http://uri.etsi.org/01903/v1.4.1#)
sign() { "$QTSP_BIN" sign --home "$H" "$@" 2>>"$T_DIR/sign.err"; }
sel() { xmlstarlet sel "${NS[@]}" -t -v "$2" "$1" 2>/dev/null; } # FILE XPATH
# xverify FILE [xmlsec1 args]: the signature and all its references
xverify() {
  local f=$1; shift
  xmlsec1 --verify --trusted-pem "$ROOT" --untrusted-pem "$ISSUING" \
    --id-attr:Id http://uri.etsi.org/01903/v1.3.2#:SignedProperties "$@" "$f" >/dev/null 2>&1
}
# c14n FILE MODE PREDICATE: the node set (//. | //@* | //namespace::*)[PREDICATE]
# canonicalised by xmlstarlet (MODE --exc-without-comments or --without-comments)
c14n() {
  printf '<XPath xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xades="http://uri.etsi.org/01903/v1.3.2#">(//. | //@* | //namespace::*)[%s]</XPath>' "$3" >"$T_DIR/xpath.xml"
  xmlstarlet c14n "$2" "$1" "$T_DIR/xpath.xml"
}
b64() { base64 -d >"$1" 2>/dev/null; }

# the signature time-stamp: token over the canonical ds:SignatureValue
sig_ts_ok() { # FILE MODE
  sel "$1" '//xades:SignatureTimeStamp/xades:EncapsulatedTimeStamp' | b64 "$T_DIR/tst.der"
  c14n "$1" "$2" 'ancestor-or-self::ds:SignatureValue' >"$T_DIR/sv.c14n"
  tsverify "$T_DIR/tst.der" "$T_DIR/sv.c14n"
}
# the archive time-stamp (EN 319 132-1 5.5.2.2): the references' outputs
# (REFDATA: the data reference's, then the canonical SignedProperties),
# SignedInfo, SignatureValue, KeyInfo, the unsigned properties before it,
# the data ds:Objects (enveloping)
ats_ok() { # FILE MODE REFDATA [enveloping]
  local f=$1 m=$2
  sel "$f" '//xades141:ArchiveTimeStamp/xades:EncapsulatedTimeStamp' | b64 "$T_DIR/ats.der"
  {
    cat "$3"
    for e in xades:SignedProperties ds:SignedInfo ds:SignatureValue ds:KeyInfo \
      xades:SignatureTimeStamp xades:CertificateValues xades:RevocationValues; do
      c14n "$f" "$m" "ancestor-or-self::$e"
    done
    [[ ${4-} == enveloping ]] && c14n "$f" "$m" 'ancestor-or-self::ds:Object[@Encoding]'
  } >"$T_DIR/ats.data"
  tsverify "$T_DIR/ats.der" "$T_DIR/ats.data"
}

# ---- the properties of one signature (B-B) ----------------------------------
openssl x509 -in "$T_DIR/signer.pem" -outform DER | openssl dgst -sha256 -binary | base64 >"$T_DIR/cert.sha256"
props_ok() { # FILE MIME
  local f=$1
  [[ $(sel "$f" '//xades:SigningCertificateV2/xades:Cert/xades:CertDigest/ds:DigestValue') == "$(cat "$T_DIR/cert.sha256")" ]] || return 1
  sel "$f" '//xades:SigningCertificateV2/xades:Cert/xades:IssuerSerialV2' | b64 "$T_DIR/is.der"
  # IssuerSerial: the issuer's name and the signer's serial (RFC 5035)
  # (the serial's hex: the JSON leaves out a leading zero that DER keeps)
  local s
  s=$(openssl asn1parse -inform DER -in "$T_DIR/is.der" | sed -n 's/.*INTEGER *://p' | tail -n 1)
  [[ $(sed 's/^0*//' <<<"${s^^}") == $(sed 's/^0*//' <<<"${ANNA^^}") ]] || return 1
  [[ $(sel "$f" 'count(//xades:SignedSignatureProperties/xades:SigningTime)') == 1 ]] || return 1
  [[ $(sel "$f" '//xades:SigningTime') =~ ^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] || return 1
  # one DataObjectFormat naming the data reference, with its media type
  local ref
  ref=$(sel "$f" '//xades:DataObjectFormat/@ObjectReference')
  [[ $ref == "#$(sel "$f" '//ds:SignedInfo/ds:Reference[1]/@Id')" ]] || return 1
  [[ $(sel "$f" '//xades:DataObjectFormat/xades:MimeType') == "$2" ]] || return 1
  [[ $(sel "$f" 'count(//ds:KeyInfo/ds:X509Data/ds:X509Certificate)') -ge 1 ]] || return 1
  [[ $(sel "$f" '//ds:SignedInfo/ds:Reference[2]/@Type') == http://uri.etsi.org/01903#SignedProperties ]]
}
# the OCSP answer in RevocationValues says good for the signer
ocsp_ok() {
  sel "$1" '//xades:RevocationValues/xades:OCSPValues/xades:EncapsulatedOCSPValue' | b64 "$T_DIR/ocsp.der"
  cat "$ISSUING" "$ROOT" >"$T_DIR/ca.pem"
  openssl ocsp -respin "$T_DIR/ocsp.der" -issuer "$ISSUING" -cert "$T_DIR/signer.pem" \
    -CAfile "$T_DIR/ca.pem" 2>/dev/null | grep -q ": good"
}
# CertificateValues holds the TSA unit's and the responder's certificates
certvals_ok() {
  local want have
  for c in tsa ocsp; do
    want=$(openssl x509 -in "$H/public/$c.crt" -outform DER | base64 -w0)
    have=$(sel "$1" '//xades:CertificateValues/xades:EncapsulatedX509Certificate' | tr -d '\n ')
    [[ $have == *"$want"* ]] || return 1
  done
}

printf '<?xml version="1.0" encoding="UTF-8"?>\n<invoice xmlns="urn:example:invoice" xmlns:p="urn:example:party">\n  <!-- a comment -->\n  <p:seller id="s1">ACME &amp; Co</p:seller>\n  <total currency="EUR">100.00</total>\n</invoice>\n' >"$T_DIR/doc.xml"
head -c 10240 /dev/urandom >"$T_DIR/doc.bin"

for level in B-B B-T B-LT B-LTA; do
  for pk in enveloped enveloping detached; do
    n="XAdES-$level $pk"
    out=$T_DIR/x-$level-$pk.xml
    in=$T_DIR/doc.bin
    mime=application/octet-stream
    if [[ $pk == enveloped ]]; then in=$T_DIR/doc.xml; mime=text/xml; fi
    check "$n: signed" sign --credential "$ANNA" --format X --level "Ades-$level" --packaging "$pk" --in "$in" --out "$out"
    args=()
    [[ $pk == detached ]] && args=(--url-map:doc.bin "$in")
    check "$n: xmlsec1 --verify with the chain" xverify "$out" "${args[@]}"
    check "$n: XAdES properties (SigningTime, SigningCertificateV2, DataObjectFormat)" props_ok "$out" "$mime"
    check_not "$n: xmlsec1 refuses it without our root" xmlsec1 --verify --trusted-pem "$H/public/tsa.crt" "$out"
    # a tampered byte: in the signed data, in the signed properties
    case $pk in
      enveloped) sed 's/100\.00/100.01/' "$out" >"$T_DIR/bad.xml"; check_not "$n: a changed amount fails" xverify "$T_DIR/bad.xml" ;;
      enveloping)
        cp "$out" "$T_DIR/bad.xml"
        off=$(grep -bo 'Encoding="http://www.w3.org/2000/09/xmldsig#base64">' "$T_DIR/bad.xml" | head -1 | cut -d: -f1)
        # a base64 letter changed inside the object: A <-> B keeps it base64
        flip "$T_DIR/bad.xml" $((off + 80))
        check_not "$n: a flipped byte in the object fails" xverify "$T_DIR/bad.xml" ;;
      detached)
        cp "$in" "$T_DIR/doc.bad"; flip "$T_DIR/doc.bad" 5000
        check_not "$n: a flipped content byte fails" xverify "$out" --url-map:doc.bin "$T_DIR/doc.bad" ;;
    esac
    sed -E 's|<xades:SigningTime>2|<xades:SigningTime>1|' "$out" >"$T_DIR/bad.xml"
    check_not "$n: a changed SigningTime fails (SignedProperties reference)" xverify "$T_DIR/bad.xml" "${args[@]}"
    if [[ $level != B-B ]]; then
      check "$n: openssl ts -verify of SignatureTimeStamp over the canonical SignatureValue" sig_ts_ok "$out" --exc-without-comments
      sed -E 's|(<ds:SignatureValue[^>]*>)(.)|\1A\2|' "$out" >"$T_DIR/bad.xml"
      check_not "$n: the time-stamp does not cover another SignatureValue" sig_ts_ok "$T_DIR/bad.xml" --exc-without-comments
    else
      check_eq "$n: no unsigned properties" 0 "$(sel "$out" 'count(//xades:UnsignedProperties)')"
    fi
    if [[ $level == B-LT || $level == B-LTA ]]; then
      check "$n: RevocationValues: OCSP says good (openssl ocsp -respin)" ocsp_ok "$out"
      check "$n: CertificateValues: TSA unit and responder" certvals_ok "$out"
    fi
    if [[ $level == B-LTA ]]; then
      case $pk in
        enveloped) c14n "$out" --exc-without-comments 'not(ancestor-or-self::ds:Signature)' >"$T_DIR/ref.data" ;;
        enveloping) sel "$out" '//ds:Object[@Encoding]' | b64 "$T_DIR/ref.data" ;;
        detached) cp "$in" "$T_DIR/ref.data" ;;
      esac
      check "$n: openssl ts -verify of ArchiveTimeStamp over its EN 319 132-1 input" ats_ok "$out" --exc-without-comments "$T_DIR/ref.data" "$pk"
      flip "$T_DIR/ref.data" 3
      check_not "$n: the archive time-stamp over other data fails" ats_ok "$out" --exc-without-comments "$T_DIR/ref.data" "$pk"
    fi
  done
done

n="XAdES inclusive C14N"
out=$T_DIR/x-incl.xml
check "$n: B-LTA enveloped signed" sign --credential "$ANNA" --format X --level Ades-B-LTA --inclusive-c14n --in "$T_DIR/doc.xml" --out "$out"
check "$n: xmlsec1 --verify" xverify "$out"
check_eq "$n: SignedInfo says C14N 1.0" "http://www.w3.org/TR/2001/REC-xml-c14n-20010315" "$(sel "$out" '//ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm')"
check "$n: SignatureTimeStamp (inclusive)" sig_ts_ok "$out" --without-comments
c14n "$out" --without-comments 'not(ancestor-or-self::ds:Signature)' >"$T_DIR/ref.data"
check "$n: ArchiveTimeStamp (inclusive)" ats_ok "$out" --without-comments "$T_DIR/ref.data"

n="XAdES parallel enveloped signatures"
check "$n: a second signature over a signed document" sign --credential "$ANNA" --format X --level Ades-B-T --in "$T_DIR/x-B-B-enveloped.xml" --out "$T_DIR/two.xml"
check_eq "$n: two ds:Signature" 2 "$(sel "$T_DIR/two.xml" 'count(//ds:Signature)')"
# the enveloped reference leaves every ds:Signature out (XPath transform)
check "$n: the first still verifies" xverify "$T_DIR/two.xml"
id2=$(sel "$T_DIR/two.xml" '(//ds:Signature)[2]/@Id')
check "$n: the second verifies" xverify "$T_DIR/two.xml" --id-attr:Id http://www.w3.org/2000/09/xmldsig#:Signature --node-id "$id2"
sed 's/100\.00/100.01/' "$T_DIR/two.xml" >"$T_DIR/bad.xml"
check_not "$n: a changed amount breaks the second" xverify "$T_DIR/bad.xml" --id-attr:Id http://www.w3.org/2000/09/xmldsig#:Signature --node-id "$id2"
check_not "$n: and the first" xverify "$T_DIR/bad.xml"

# ---- ASiC ------------------------------------------------------------------
echo "hello, container" >"$T_DIR/a.txt"
cp "$T_DIR/doc.xml" "$T_DIR/b.xml"
cp "$T_DIR/doc.bin" "$T_DIR/c.bin"
zip_ok() { # ZIP MIME: mimetype first, stored, no extra field, the right media type
  [[ $(unzip -Z1 "$1" | head -1) == mimetype ]] || return 1
  unzip -Z -v "$1" mimetype >"$T_DIR/zipinfo.txt" 2>&1
  grep -q "compression method: *none (stored)" "$T_DIR/zipinfo.txt" || return 1
  grep -q "length of extra field: *0 bytes" "$T_DIR/zipinfo.txt" || return 1
  [[ $(unzip -p "$1" mimetype) == "$2" ]] || return 1
  # the media type at offset 38 of the file (EN 319 162-1 A.1, as ODF's)
  [[ $(tail -c +31 "$1" | head -c $((8 + ${#2}))) == "mimetype$2" ]] || return 1
  unzip -tq "$1" >/dev/null
}
manifest_ok() { # DIR: every DataObjectReference's digest matches its file
  local d=$1 uri want
  for uri in $(sel "$d/META-INF/ASiCManifest.xml" '//*[local-name()="DataObjectReference"]/@URI'); do
    want=$(xmlstarlet sel -N asic=http://uri.etsi.org/02918/v1.2.1# "${NS[@]}" -t -v "//asic:DataObjectReference[@URI='$uri']/ds:DigestValue" "$d/META-INF/ASiCManifest.xml")
    [[ $(openssl dgst -sha256 -binary "$d/$uri" | base64) == "$want" ]] || return 1
  done
  [[ $(sel "$d/META-INF/ASiCManifest.xml" 'count(//*[local-name()="DataObjectReference"])') == "$2" ]]
}
for form in asic-s asic-e; do
  for f in C X; do
    n="ASiC-${form#asic-} ${f/C/CAdES}"
    n=${n/X/XAdES}
    ins=(--in "$T_DIR/a.txt")
    files=(a.txt)
    if [[ $form == asic-e ]]; then ins+=(--in "$T_DIR/b.xml" --in "$T_DIR/c.bin"); files+=(b.xml c.bin); fi
    z=$T_DIR/$form-$f.zip
    check "$n: B-LTA container made" sign --credential "$ANNA" --format "$f" --level Ades-B-LTA --container "$form" "${ins[@]}" --out "$z"
    mt=application/vnd.etsi.asic-${form#asic-}+zip
    check "$n: unzip -Z: mimetype first, stored, $mt" zip_ok "$z" "$mt"
    d=$T_DIR/unz-$form-$f
    rm -rf "$d" && mkdir -p "$d" && (cd "$d" && unzip -q "$z")
    check "$n: the files come out whole" cmp -s "$d/a.txt" "$T_DIR/a.txt"
    if [[ $f == C ]]; then
      if [[ $form == asic-s ]]; then
        check "$n: META-INF/signature.p7s verifies over the file (openssl cms)" cmsverify -in "$d/META-INF/signature.p7s" -content "$d/a.txt"
        flip "$d/a.txt" 2
        check_not "$n: a flipped byte in the file fails" cmsverify -in "$d/META-INF/signature.p7s" -content "$d/a.txt"
      else
        check "$n: META-INF/signature.p7s verifies over ASiCManifest.xml (openssl cms)" cmsverify -in "$d/META-INF/signature.p7s" -content "$d/META-INF/ASiCManifest.xml"
        check "$n: the manifest's digests match the 3 files" manifest_ok "$d" 3
        check_eq "$n: the manifest names the signature" META-INF/signature.p7s "$(sel "$d/META-INF/ASiCManifest.xml" '//*[local-name()="SigReference"]/@URI')"
        flip "$d/c.bin" 100
        check_not "$n: a flipped byte in a file breaks its manifest digest" manifest_ok "$d" 3
        flip "$d/META-INF/ASiCManifest.xml" 300
        check_not "$n: a flipped byte in the manifest fails" cmsverify -in "$d/META-INF/signature.p7s" -content "$d/META-INF/ASiCManifest.xml"
      fi
    else
      maps=()
      for x in "${files[@]}"; do maps+=(--url-map:"$x" "$d/$x"); done
      sx=$d/META-INF/signatures.xml
      check "$n: META-INF/signatures.xml: xmlsec1 --verify over the files" xverify "$sx" "${maps[@]}"
      check_eq "$n: asic:XAdESSignatures root" "XAdESSignatures http://uri.etsi.org/02918/v1.2.1#" "$(sel "$sx" 'concat(local-name(/*), " ", namespace-uri(/*))')"
      check_eq "$n: a reference per file" "${#files[@]}" "$(sel "$sx" 'count(//ds:SignedInfo/ds:Reference[not(@Type)])')"
      check "$n: SignatureTimeStamp (openssl ts)" sig_ts_ok "$sx" --exc-without-comments
      flip "$d/a.txt" 2
      check_not "$n: a flipped byte in a file fails" xverify "$sx" "${maps[@]}"
    fi
  done
done
n="ASiC bad input"
check_not "$n: two files in ASiC-S" sign --credential "$ANNA" --format C --level Ades-B-B --container asic-s --in "$T_DIR/a.txt" --in "$T_DIR/b.xml" --out "$T_DIR/x.zip"
mkdir -p "$T_DIR/other" && cp "$T_DIR/a.txt" "$T_DIR/other/a.txt"
check_not "$n: the same name twice" sign --credential "$ANNA" --format X --level Ades-B-B --container asic-e --in "$T_DIR/a.txt" --in "$T_DIR/other/a.txt" --out "$T_DIR/x.zip"
check_grep "$n: the reason is named" "a.txt: named twice" "$T_DIR/sign.err"
cp "$T_DIR/a.txt" "$T_DIR/mimetype"
check_not "$n: a file named mimetype" sign --credential "$ANNA" --format C --level Ades-B-B --container asic-e --in "$T_DIR/mimetype" --out "$T_DIR/x.zip"
cp "$T_DIR/a.txt" "$T_DIR/a b.txt"
check_not "$n: a name a URI would need to escape" sign --credential "$ANNA" --format X --level Ades-B-B --container asic-e --in "$T_DIR/a b.txt" --out "$T_DIR/x.zip"
check_not "$n: PAdES in a container" sign --credential "$ANNA" --format P --level Ades-B-B --container asic-s --in "$T_DIR/a.txt" --out "$T_DIR/x.zip"
check_not "$n: nothing written" test -e "$T_DIR/x.zip"

# ---- unsafe XML ------------------------------------------------------------
n="XML input"
printf '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>\n<lolz>&lol3;</lolz>\n' >"$T_DIR/bomb.xml"
check_not "$n: an entity expansion bomb is refused" sign --credential "$ANNA" --format X --level Ades-B-B --in "$T_DIR/bomb.xml" --out "$T_DIR/x.xml"
check_grep "$n: the reason: DOCTYPE" "XML with a DOCTYPE is refused" "$T_DIR/sign.err"
printf '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<x>&e;</x>\n' >"$T_DIR/xxe.xml"
check_not "$n: an external entity is refused" sign --credential "$ANNA" --format X --level Ades-B-B --in "$T_DIR/xxe.xml" --out "$T_DIR/x.xml"
printf '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">\n<x/>\n' >"$T_DIR/dtd.xml"
check_not "$n: an external DTD is refused" sign --credential "$ANNA" --format X --level Ades-B-B --in "$T_DIR/dtd.xml" --out "$T_DIR/x.xml"
printf '<a><b></a>' >"$T_DIR/broken.xml"
check_not "$n: malformed XML is refused" sign --credential "$ANNA" --format X --level Ades-B-B --in "$T_DIR/broken.xml" --out "$T_DIR/x.xml"
check_grep "$n: the reason: not well-formed" "not well-formed XML" "$T_DIR/sign.err"
{ printf '<a>'; for _ in $(seq 1 300); do printf '<b>'; done; } >"$T_DIR/deep.xml"
check_not "$n: nesting beyond libxml2's limit is refused" sign --credential "$ANNA" --format X --level Ades-B-B --in "$T_DIR/deep.xml" --out "$T_DIR/x.xml"
check_not "$n: --packaging for CAdES is refused" sign --credential "$ANNA" --format C --packaging detached --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/x.xml"
check_not "$n: nothing written" test -e "$T_DIR/x.xml"

n="archive"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt" 2>/dev/null
check_grep "$n: XAdES archived" '"format":"XAdES"' "$T_DIR/audit.txt"
check_grep "$n: ASiC-E archived" '"format":"ASiC-E XAdES"' "$T_DIR/audit.txt"
finish
