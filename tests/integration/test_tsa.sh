#!/usr/bin/env bash
# Issue 6 over HTTP: openssl ts -query / curl POST /tsa / openssl ts -verify
# (with -data and with -queryfile) for every accepted algorithm, with and
# without nonce and certReq; rejections are DER replies, never HTTP errors.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
check "serve starts" start_server "$H"
head -c 100000 /dev/urandom >"$T_DIR/data.bin"
cat "$H/public/tsa.crt" >"$T_DIR/untrusted.pem"

stamp() { # query-file reply-file: POST and print the HTTP status and content type
  curl -s -o "$2" -w '%{http_code} %{content_type}' -H 'Content-Type: application/timestamp-query' \
    --data-binary @"$1" "$BASE/tsa"
}
for alg in sha256 sha384 sha512 sha3-256 sha3-384 sha3-512; do
  for opts in "-cert" "-no_nonce" "-cert -no_nonce" ""; do
    name="$alg ${opts:-(nonce, no certReq)}"
    q=$T_DIR/q.tsq r=$T_DIR/r.tsr
    # shellcheck disable=SC2086
    openssl ts -query -data "$T_DIR/data.bin" -$alg $opts -out "$q" 2>/dev/null
    check_eq "$name: 200 timestamp-reply" "200 application/timestamp-reply" "$(stamp "$q" "$r")"
    if [[ $opts == *-cert* ]]; then
      check "$name: verify -data" openssl ts -verify -in "$r" -data "$T_DIR/data.bin" -CAfile "$H/public/root-ca.crt"
      check "$name: verify -queryfile" openssl ts -verify -in "$r" -queryfile "$q" -CAfile "$H/public/root-ca.crt"
    else
      check "$name: verify -data" openssl ts -verify -in "$r" -data "$T_DIR/data.bin" -CAfile "$H/public/root-ca.crt" -untrusted "$T_DIR/untrusted.pem"
      check "$name: verify -queryfile" openssl ts -verify -in "$r" -queryfile "$q" -CAfile "$H/public/root-ca.crt" -untrusted "$T_DIR/untrusted.pem"
    fi
  done
done
openssl ts -query -data "$T_DIR/data.bin" -sha256 -out "$T_DIR/q.tsq" 2>/dev/null
stamp "$T_DIR/q.tsq" "$T_DIR/r.tsr" >/dev/null
openssl ts -reply -in "$T_DIR/r.tsr" -text >"$T_DIR/r.txt" 2>&1
check_grep "status granted" "Status: Granted" "$T_DIR/r.txt"
check_grep "policy OID" "Policy OID: 0\.4\.0\.2023\.1\.1" "$T_DIR/r.txt"
check_grep "accuracy 1 s" "Accuracy: 0x01 seconds" "$T_DIR/r.txt"
check_grep "ordering absent/false" "Ordering: no" "$T_DIR/r.txt"
check_grep "nonce echoed" "Nonce: 0x" "$T_DIR/r.txt"
check_grep "qcStatements extension" "1\.3\.6\.1\.5\.5\.7\.1\.3|qcStatements" "$T_DIR/r.txt"
# certificates only with certReq
openssl ts -query -data "$T_DIR/data.bin" -sha256 -out "$T_DIR/q2.tsq" 2>/dev/null
stamp "$T_DIR/q2.tsq" "$T_DIR/r2.tsr" >/dev/null
check_not "no certReq: verify fails without the TSA cert supplied" openssl ts -verify -in "$T_DIR/r2.tsr" -queryfile "$T_DIR/q2.tsq" -CAfile "$H/public/root-ca.crt"

# rejections: SHA-1 and MD5 imprints, garbage, oversized
openssl ts -query -data "$T_DIR/data.bin" -sha1 -out "$T_DIR/sha1.tsq" 2>/dev/null
check_eq "SHA-1 query answered with a DER reply" "200 application/timestamp-reply" "$(stamp "$T_DIR/sha1.tsq" "$T_DIR/sha1.tsr")"
openssl ts -reply -in "$T_DIR/sha1.tsr" -text >"$T_DIR/sha1.txt" 2>&1
check_grep "SHA-1 rejected" "Status: Rejected" "$T_DIR/sha1.txt"
check_grep "SHA-1 failInfo badAlg" "unrecognized or unsupported algorithm" "$T_DIR/sha1.txt"
openssl ts -query -data "$T_DIR/data.bin" -md5 -out "$T_DIR/md5.tsq" 2>/dev/null
stamp "$T_DIR/md5.tsq" "$T_DIR/md5.tsr" >/dev/null
check_grep "MD5 rejected badAlg" "unrecognized or unsupported algorithm" <(openssl ts -reply -in "$T_DIR/md5.tsr" -text 2>&1)
head -c 300 /dev/urandom >"$T_DIR/garbage"
check_eq "garbage answered with a DER reply" "200 application/timestamp-reply" "$(stamp "$T_DIR/garbage" "$T_DIR/g.tsr")"
check_grep "garbage rejected" "Status: Rejected" <(openssl ts -reply -in "$T_DIR/g.tsr" -text 2>&1)
head -c 9000 /dev/zero >"$T_DIR/big"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/timestamp-query' --data-binary @"$T_DIR/big" "$BASE/tsa")
check_eq "oversized query: 413" 413 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary @"$T_DIR/q.tsq" "$BASE/tsa")
check_eq "wrong media type: 415" 415 "$code"
check_eq "server still healthy" ok "$(curl -s "$BASE/health")"
curl -s "$BASE/metrics" >"$T_DIR/m.txt"
check_grep "TSA metrics exposed" "^qtsp_tsa_" "$T_DIR/m.txt"
# issue 19: the fast lane answered the simple POSTs, MHD the rest (a chunked
# upload, the 413 and 415 above) after the lane handed their connections over
check "the fast lane answered stamps" metrics_show '^qtsp_http_lane_requests_total(\{process="[0-9]+"\})? [1-9]'
check "... and handed other requests to MHD" metrics_show '^qtsp_http_lane_handoffs_total(\{process="[0-9]+"\})? [1-9]'
code=$(curl -s -o "$T_DIR/chunked.tsr" -w '%{http_code}' -H 'Content-Type: application/timestamp-query' \
  -H 'Transfer-Encoding: chunked' --data-binary @"$T_DIR/q.tsq" "$BASE/tsa")
check_eq "a chunked query (MHD's): 200" 200 "$code"
check "... verified" openssl ts -verify -in "$T_DIR/chunked.tsr" -queryfile "$T_DIR/q.tsq" -CAfile "$H/public/root-ca.crt" -untrusted "$T_DIR/untrusted.pem"
# answers completed off the lane thread (the journal's) go out in io_uring
# submissions where the kernel allows io_uring
if grep -q 'io_uring is not available' "$T_DIR/serve.err"; then
  echo "# io_uring is not allowed here: the lane writes each answer with sendmsg"
else
  check "... writing posted answers through io_uring" metrics_show '^qtsp_http_lane_batched_answers_total(\{process="[0-9]+"\})? [1-9]'
fi
# the journal file is written with O_DIRECT where its file system allows it
if grep -q 'cannot be opened for direct writes\|takes no direct writes\|was replaced while it was opened' "$T_DIR/serve.err"; then
  echo "# the journal's file system takes no direct writes here: pwrite and fdatasync"
else
  check "the journal writes its batches directly (O_DIRECT, RWF_DSYNC)" metrics_show '^qtsp_tsa_journal_direct_writes(\{process="[0-9]+"\})? 1'
fi
check "SIGTERM exits 0" stop_server
# http.io_uring: false writes each answer with its own sendmsg
sed -i 's/^http:$/http:\n  io_uring: false/' "$H/qtsp.yaml"
check "serve starts with io_uring: false" start_server "$H"
check_eq "a stamp: 200" "200 application/timestamp-reply" "$(stamp "$T_DIR/q.tsq" "$T_DIR/nouring.tsr")"
check "... verified" openssl ts -verify -in "$T_DIR/nouring.tsr" -queryfile "$T_DIR/q.tsq" -CAfile "$H/public/root-ca.crt" -untrusted "$T_DIR/untrusted.pem"
check "... by the fast lane" metrics_show '^qtsp_http_lane_requests_total(\{process="[0-9]+"\})? [1-9]'
check_not "... with no io_uring submission" grep -qE '^qtsp_http_lane_batched_answers_total(\{process="[0-9]+"\})? [1-9]' <(curl -s "$BASE/metrics")
check "SIGTERM exits 0 (io_uring: false)" stop_server
# http.fast_lane: false serves everything through MHD
sed -i 's/^http:$/http:\n  fast_lane: false/' "$H/qtsp.yaml"
check "serve starts with fast_lane: false" start_server "$H"
check_eq "a stamp: 200" "200 application/timestamp-reply" "$(stamp "$T_DIR/q.tsq" "$T_DIR/nolane.tsr")"
check "... verified" openssl ts -verify -in "$T_DIR/nolane.tsr" -queryfile "$T_DIR/q.tsq" -CAfile "$H/public/root-ca.crt" -untrusted "$T_DIR/untrusted.pem"
check_not "no fast lane in /metrics" grep -q '^qtsp_http_lane_' <(curl -s "$BASE/metrics")
check "SIGTERM exits 0 (no lane)" stop_server
finish
