#!/usr/bin/env bash
# Issue 15: a store that cannot grow. The store lives on its own small
# tmpfs (a real file system that fills up; mounting needs root or
# CAP_SYS_ADMIN, else the test is skipped with a message), a filler file
# takes the rest. While full: writing requests answer 503, OCSP and the
# TSA go on answering, the log says it once (not once per request), nothing
# half-written remains. Defect 4: a termination while full never leaves
# "key gone, certificate good". When space returns, service resumes.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
mv "$H/store" "$H/store.disk"
mkdir -m 0700 "$H/store"
if ! mount -t tmpfs -o size=32m,mode=0700 qtsp-full "$H/store" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs (not root / no CAP_SYS_ADMIN): no full file system to test with"
  rm -rf "$T_DIR"
  echo "0 passed, 0 failed"
  exit 0
fi
trap '[[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null; sleep 0.2; umount "$H/store" 2>/dev/null' EXIT
cp -a "$H/store.disk/." "$H/store/"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
P=$H/public
MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
has_key() { # label -> exit 0 when the token has that private key
  SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login \
    --pin "$(cat "$H/secrets/token.pin")" --list-objects --type privkey 2>/dev/null | grep -q "label: *$1\$"
}
ocsp_of() {
  openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$1.pem" -url "$BASE/ocsp" -CAfile "$P/root-ca.crt" \
    -verify_other "$P/issuing-ca.crt" 2>/dev/null | sed -n "s|^$T_DIR/$1.pem: ||p" | head -1
}
tsa_granted() {
  head -c 32 /dev/urandom >"$T_DIR/d"
  openssl ts -query -data "$T_DIR/d" -sha256 -cert -out "$T_DIR/q.tsq" 2>/dev/null
  curl -s -o "$T_DIR/r.tsr" -H 'Content-Type: application/timestamp-query' --data-binary @"$T_DIR/q.tsq" "$BASE/tsa"
  openssl ts -reply -in "$T_DIR/r.tsr" -text 2>/dev/null | sed -n 's/^Status: //p' | head -1
}
check "serve starts (store on a 32 MiB tmpfs)" start_server "$H" --processes 1 # one log line per process
S1=$(issue 11111111)
S2=$(issue 22222222)
check_eq "issued before the disk fills" good "$(ocsp_of "$S1")"
SID=$(api POST /ra/v1/subjects "$OFFICER" '{"given_name":"Full","surname":"Disk","country":"DE","national_id":"44444444","email":"f@example.de","phone":"+4915144444444","package":"free"}' | jq -r .subject_id)
LABEL2=$("$QTSP_BIN" audit list --home "$H" 2>/dev/null | jq -r "select(.event == \"cert.issue\" and .details.serial == \"$S2\") | .details.key_label" | head -1)
# a token object to watch (a key kept wrapped in the store is checked through OCSP only)
has_key "$LABEL2" || LABEL2=
echo "key of $S2: ${LABEL2:-not a token object}"

# fill the file system, then use up what LMDB still finds free inside its file
dd if=/dev/zero of="$H/store/filler" bs=64k 2>/dev/null
lines0=$(wc -l <"$T_DIR/serve.err")
n503=0 n201=0 other=0
for i in $(seq 1 60); do
  api POST "/ra/v1/subjects/$SID/certificates" "$OFFICER" '{}' >/dev/null
  case $(status) in 503) n503=$((n503 + 1)) ;; 201) n201=$((n201 + 1)) ;; *) other=$((other + 1)); echo "status $(status): $(cat "$T_DIR/body")" ;; esac
done
echo "while full: $n201 issued, $n503 refused 503, $other other"
check "disk full: issuance refused with 503 ($n503 of 60)" test "$n503" -ge 50
check_eq "disk full: no other answer than 201 or 503" 0 "$other"
check_grep "disk full: the 503 says why" "try again|space|unavailable" "$T_DIR/body"
n_lines=$(tail -n +$((lines0 + 1)) "$T_DIR/serve.err" | grep -c "refused a write")
n_err=$(tail -n +$((lines0 + 1)) "$T_DIR/serve.err" | grep -Ec " (error|warn) ")
echo "log while full: $n_lines 'no space left' lines, $n_err error/warn lines in all"
check_eq "disk full: one clear log line" 1 "$n_lines"
check "disk full: errors not repeated per request ($n_err lines for $n503 refusals)" test "$n_err" -le 5
check_eq "disk full: OCSP still answers" good "$(ocsp_of "$S1")"
tsa=$(tsa_granted)
check "disk full: the TSA answers (no token it could not journal: '$tsa')" test -n "$tsa"

# defect 4: a termination that cannot commit changes nothing. Small writes
# may still fit in pages LMDB freed earlier: hold and release until those
# are used up too.
for i in $(seq 1 200); do
  api POST "/ra/v1/certificates/$S1/hold" "$HOTLINE" '{"caller_verification":"x"}' >/dev/null
  [[ $(status) == 503 ]] && break
  api POST "/ra/v1/certificates/$S1/release" "$OFFICE" '{}' >/dev/null
  [[ $(status) == 503 ]] && break
done
check_eq "disk full: even a hold is refused once LMDB's free pages are used up" 503 "$(status)"
api POST "/ra/v1/certificates/$S2/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport"}' >/dev/null
t_status=$(status)
check_eq "disk full: termination refused with 503" 503 "$t_status"
st=$(ocsp_of "$S2")
if [[ -n $LABEL2 ]]; then
  if has_key "$LABEL2"; then key=present; else key=gone; fi
else
  key=unknown
fi
check "defect 4: never 'key gone, status good' (key $key, OCSP $st)" test "$key/$st" != "gone/good"
check_eq "defect 4: the certificate is still good" good "$st"
[[ -n $LABEL2 ]] && check_eq "defect 4: and its key still there" present "$key"

# a token granted while the disk is full: its entry is in the worker's
# write-ahead file at once, in the store when a fill finds room (perhaps
# only once space returns: the filler tries again every 50 ms)
tsa=$(tsa_granted)
check_eq "disk full: the TSA still grants" "Granted." "$tsa"
FULL_SERIAL=$(tsr_serial "$T_DIR/r.tsr")

# space returns
rm -f "$H/store/filler"
sleep 0.2
S3=$(issue 55555555)
check_eq "space back: issuance works again" 201 "$(status)"
api POST "/ra/v1/certificates/$S2/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport"}' >/dev/null
check_eq "space back: the termination goes through" 200 "$(status)"
check_eq "space back: OCSP says revoked" revoked "$(ocsp_of "$S2")"
check_eq "space back: TSA grants" "Granted." "$(tsa_granted)"
api GET "/ra/v1/subjects/$SID/certificates" "$OFFICE" >"$T_DIR/list.json"
check_eq "nothing half-written: the subject has exactly the $n201 certificates answered 201" "$n201" "$(jq '.certificates | length' "$T_DIR/list.json" 2>/dev/null)"
for _ in $(seq 1 40); do curl -s "$BASE/metrics" | grep -q '^qtsp_tsa_journal_fill_failing 0' && break; sleep 0.1; done
check_grep "space back: the journal reaches the store again" '^qtsp_tsa_journal_fill_failing 0' <(curl -s "$BASE/metrics")
check "stops cleanly" stop_server
if [[ -n $FULL_SERIAL ]]; then
  tsa_journal_serials "$H/store" >"$T_DIR/journal.txt"
  check "space back: the token granted while the disk was full is in the journal" grep -qx "$FULL_SERIAL" "$T_DIR/journal.txt"
fi
trap '[[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null' EXIT
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
if [[ -n $LABEL2 ]]; then # a token key: revocation first (destruction pending), then its destruction
  check_grep "audit: the termination (destruction pending)" '"event":"cert.terminate".*"key":"destruction pending"' "$T_DIR/audit.txt"
  check_grep "audit: then the key destruction" '"event":"key.destroy".*"key":"destroyed"' "$T_DIR/audit.txt"
else # a wrapped key goes with the revocation, in its transaction
  check_grep "audit: the termination removed the wrapped key with the revocation" '"event":"cert.terminate".*"key":"destroyed".*"key_storage":"wrapped"' "$T_DIR/audit.txt"
fi
n_iss=$(grep -c '"event":"cert.issue"' "$T_DIR/audit.txt")
check_eq "audit: one cert.issue per certificate answered 201 (3 + $n201)" $((3 + n201)) "$n_iss"
[[ -n $LABEL2 ]] && check_not "the terminated certificate's key is gone" has_key "$LABEL2"
umount "$H/store"
finish
