# Helpers of the AdES integration tests (test_ades, test_signdoc, test_xades,
# test_validate): bytes of a signature picked apart with openssl asn1parse,
# and the outside verifiers. Sourced after lib.sh; ROOT names the trust
# anchor (PEM) when tsverify or cmsverify are called.
flip() { # FILE OFFSET: xor one byte in place
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
# asn1 FILE: openssl asn1parse lines prefixed with offset, depth, header and content length
asn1() {
  openssl asn1parse -inform DER -in "$1" | awk '{
    match($0, /^ *[0-9]+/); o = substr($0, RSTART, RLENGTH) + 0
    match($0, /d= *[0-9]+/); d = substr($0, RSTART + 2, RLENGTH - 2) + 0
    match($0, /hl= *[0-9]+/); h = substr($0, RSTART + 3, RLENGTH - 3) + 0
    match($0, / l= *[0-9]+/); l = substr($0, RSTART + 3, RLENGTH - 3) + 0
    print o, d, h, l, $0 }'
}
cut_tlv() { tail -c +$(($2 + 1)) "$1" | head -c $(($3 + $4)); }  # FILE OFF HL LEN
cut_content() { tail -c +$(($2 + $3 + 1)) "$1" | head -c "$4"; } # FILE OFF HL LEN
# cms_tst CMS SIG_OUT TOKEN_OUT: the signature value and its signature time-stamp token
cms_tst() {
  asn1 "$1" >"$T_DIR/asn1.txt"
  read -r so _ sh sl < <(awk '/cont \[ 1 \]/ && p ~ /OCTET STRING/ { print p; exit } { p = $0 }' "$T_DIR/asn1.txt" | cut -d' ' -f1-4)
  read -r to _ th tl < <(awk 'f == 2 { print; exit } f == 1 { f = 2 } /:id-smime-aa-timeStampToken/ { f = 1 }' "$T_DIR/asn1.txt" | cut -d' ' -f1-4)
  [[ -n $so && -n $to ]] || return 1
  cut_content "$1" "$so" "$sh" "$sl" >"$2"
  cut_tlv "$1" "$to" "$th" "$tl" >"$3"
}
# cms_ats CMS TOKEN_OUT: the archive-time-stamp-v3 token
cms_ats() {
  asn1 "$1" >"$T_DIR/asn1.txt"
  read -r to _ th tl < <(awk 'f == 2 { print; exit } f == 1 { f = 2 } /:0\.4\.0\.1733\.2\.4/ { f = 1 }' "$T_DIR/asn1.txt" | cut -d' ' -f1-4)
  [[ -n $to ]] && cut_tlv "$1" "$to" "$th" "$tl" >"$2"
}
tsverify() { openssl ts -verify -token_in -in "$1" -data "$2" -CAfile "$ROOT" >/dev/null 2>&1; }
cmsverify() { openssl cms -verify -inform DER -binary -purpose any -CAfile "$ROOT" "$@" -out /dev/null >/dev/null 2>&1; }
# nss_trust ROOT: an NSS database in $T_DIR/nss trusting ROOT, for pdfsig
nss_trust() {
  certutil -N -d "sql:$T_DIR/nss" --empty-password 2>/dev/null || { mkdir -p "$T_DIR/nss" && certutil -N -d "sql:$T_DIR/nss" --empty-password; }
  certutil -A -d "sql:$T_DIR/nss" -n qtsp-root -t "CT,C,C" -i "$1"
}
# pdfcheck PDF: pdfsig's report in $T_DIR/pdfsig.txt
pdfcheck() { pdfsig -nssdir "sql:$T_DIR/nss" "$1" >"$T_DIR/pdfsig.txt" 2>&1; }
# sig_ok N: in the last pdfcheck, signature N valid and its certificate trusted
sig_ok() {
  awk -v n="Signature #$1:" '$0 == n { f = 1; next } /^Signature #/ { f = 0 } f' "$T_DIR/pdfsig.txt" >"$T_DIR/one.txt"
  grep -q "Signature Validation: Signature is Valid" "$T_DIR/one.txt" &&
    grep -q "Certificate Validation: Certificate is Trusted" "$T_DIR/one.txt"
}
