#!/usr/bin/env bash
# Issue 15: qtsp backup while serving under load, qtsp restore into new homes
# (with and without the token), then OCSP, CRL number, audit verify and a
# fresh issuance on the restored home; damaged backups, non-empty targets,
# copied homes sharing a token and a second server on one home are refused.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
P=$H/public
printf 'correct horse battery staple\n' >"$T_DIR/pass"
chmod 600 "$T_DIR/pass"

ossl() { # HOME SERIAL -> "good" etc. from openssl ocsp against $BASE, signature checked
  local p=$1/public
  openssl ocsp -issuer "$p/issuing-ca.crt" -cert "$T_DIR/$2.pem" -url "$BASE/ocsp" \
    -CAfile "$p/root-ca.crt" -verify_other "$p/issuing-ca.crt" >"$T_DIR/o.txt" 2>&1
  grep -q "Response verify OK" "$T_DIR/o.txt" || { echo "unverified"; return; }
  sed -n "s|^$T_DIR/$2.pem: ||p" "$T_DIR/o.txt" | head -1
}
crl_number() { # -> the served qualified CRL's number, in decimal
  curl -s -o "$T_DIR/q.crl" "$BASE/crl/qualified.crl"
  local n
  n=$(openssl crl -inform DER -in "$T_DIR/q.crl" -noout -crlnumber 2>/dev/null | sed 's/^crlNumber=//')
  [[ -n $n ]] && echo "$((16#${n#0x}))" # openssl prints it in hex
}
flip() { # FILE OFFSET: inverts one byte
  local b
  b=$(xxd -s "$2" -l 1 -p "$1")
  printf "\\x$(printf '%02x' $((0x$b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
spki() { openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum | cut -c1-64; }

check "serve starts" start_server "$H"
S1=$(issue 8001010012)
S2=$(issue 8001010023 Zoe)
check "two certificates issued ($S1, $S2)" test -n "$S1" -a -n "$S2" -a "$S1" != "$S2"
check_eq "issued certificate is good" good "$(ossl "$H" "$S1")"
CRL0=$(crl_number)
check "the served CRL has a number ($CRL0)" test -n "$CRL0"

# one server per home
rc=0
timeout 30 "$QTSP_BIN" serve --home "$H" --listen 127.0.0.1:0 >"$T_DIR/second.out" 2>"$T_DIR/second.err" || rc=$?
check "a second serve on the same home is refused (status $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
check_grep "... with a clear message" "another qtsp serve .* is running on .*one server per home" "$T_DIR/second.err"
check_not "... and it never listened" grep -q "^listening on" "$T_DIR/second.out"
check_eq "... and the first still answers" good "$(ossl "$H" "$S1")"

# load while the backups are taken: OCSP requests and enrolment + issuance
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S1.pem" -no_nonce -reqout "$T_DIR/req.der" >/dev/null 2>&1
touch "$T_DIR/go"
(while [[ -e $T_DIR/go ]]; do
  curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/ocsp-request' \
    --data-binary @"$T_DIR/req.der" "$BASE/ocsp"
done) >"$T_DIR/load.ocsp" &
L1=$!
(i=0; while [[ -e $T_DIR/go ]]; do
  i=$((i + 1)); nid=$((8101010000 + i))
  sid=$(curl -s -H "Authorization: Bearer $OFFICER" -H 'Content-Type: application/json' \
    --data-binary "{\"given_name\":\"Load\",\"surname\":\"Test\",\"country\":\"DE\",\"national_id\":\"$nid\",\"email\":\"l@example.de\",\"phone\":\"+49151$((1000000 + i))\",\"package\":\"free\"}" \
    "$BASE/ra/v1/subjects" | jq -r .subject_id)
  curl -s -o /dev/null -w '%{http_code}\n' -X POST -H "Authorization: Bearer $OFFICER" \
    -H 'Content-Type: application/json' --data-binary '{}' "$BASE/ra/v1/subjects/$sid/certificates"
done) >"$T_DIR/load.issue" &
L2=$!
# time-stamps: a token is answered once its journal entry is in the worker's
# write-ahead file and reaches the store up to 50 ms later; a backup carries
# both (docs/tsa.md)
(i=0; while [[ -e $T_DIR/go ]]; do
  i=$((i + 1))
  head -c 32 /dev/urandom >"$T_DIR/tsa.dat"
  openssl ts -query -data "$T_DIR/tsa.dat" -sha256 -out "$T_DIR/tsa.tsq" 2>/dev/null
  curl -s -f -o "$T_DIR/tsa.tsr" -H 'Content-Type: application/timestamp-query' \
    --data-binary @"$T_DIR/tsa.tsq" "$BASE/tsa" &&
    tsr_serial "$T_DIR/tsa.tsr"
done) >"$T_DIR/load.tsa" &
L3=$!
sleep 1
check "backup while serving under load" "$QTSP_BIN" backup --home "$H" --out "$T_DIR/plain.qbk"
NTSA=$(wc -l <"$T_DIR/load.tsa")
check "backup with the token while serving under load" "$QTSP_BIN" backup --home "$H" \
  --out "$T_DIR/token.qbk" --with-token --passphrase-file "$T_DIR/pass"
sleep 0.5
rm -f "$T_DIR/go"
wait "$L1" "$L2" "$L3"
nocsp=$(wc -l <"$T_DIR/load.ocsp")
check "OCSP load ran ($nocsp requests)" test "$nocsp" -gt 5
check_eq "every OCSP request under backup load answered 200" "" "$(grep -v '^200$' "$T_DIR/load.ocsp" | sort -u | tr '\n' ' ')"
niss=$(wc -l <"$T_DIR/load.issue")
check "issuance load ran ($niss certificates)" test "$niss" -gt 0
check_eq "every issuance under backup load answered 201" "" "$(grep -v '^201$' "$T_DIR/load.issue" | sort -u | tr '\n' ' ')"
check_not "backup refuses to overwrite a file" "$QTSP_BIN" backup --home "$H" --out "$T_DIR/plain.qbk"
check_eq "the backup file is 0600" 600 "$(stat -c %a "$T_DIR/plain.qbk")"
check_not "no clear-text PIN in the token backup" grep -aqF "$(cat "$H/secrets/token.pin")" "$T_DIR/token.qbk"
check_not "no token in the plain backup" grep -aq "hsm/tokens" "$T_DIR/plain.qbk"
check_grep "the manifest lists the store with its SHA-256" "^f 0600 [0-9]+ [0-9a-f]{64} store/data.mdb$" <(head -c 4096 "$T_DIR/plain.qbk" | tr -d '\000')
check_grep "... and the TSA journal's write-ahead files" "^f 0600 [0-9]+ [0-9a-f]{64} store/tsa-wal-0$" <(head -c 4096 "$T_DIR/plain.qbk" | tr -d '\000')
stop_server
ALL_SERIALS=$("$QTSP_BIN" audit list --home "$H" | jq -r 'select(.event == "cert.issue") | .details.serial')
check "the original issued every load certificate ($(echo $ALL_SERIALS | wc -w))" test "$(echo $ALL_SERIALS | wc -w)" -ge $((niss + 2))

# damaged backups, wrong passphrase, non-empty targets: refused, nothing left behind
cp "$T_DIR/token.qbk" "$T_DIR/bad.qbk"
size=$(stat -c %s "$T_DIR/bad.qbk")
flip "$T_DIR/bad.qbk" $((size - 300))
"$QTSP_BIN" restore --from "$T_DIR/bad.qbk" --home "$T_DIR/r-bad" --passphrase-file "$T_DIR/pass" 2>"$T_DIR/bad.err"
check_grep "a corrupted backup is refused" "damaged|does not decrypt" "$T_DIR/bad.err"
check_not "... and leaves no home" test -e "$T_DIR/r-bad"
check_eq "... nor a half-restored folder" "" "$(ls -d "$T_DIR"/r-bad.restore-* 2>/dev/null)"
cp "$T_DIR/plain.qbk" "$T_DIR/bad2.qbk"
flip "$T_DIR/bad2.qbk" 5000
"$QTSP_BIN" restore --from "$T_DIR/bad2.qbk" --home "$T_DIR/r-bad2" 2>"$T_DIR/bad2.err"
check_grep "a flipped byte in the store copy is refused by its SHA-256" "SHA-256 .*damaged" "$T_DIR/bad2.err"
head -c $((size / 2)) "$T_DIR/token.qbk" >"$T_DIR/short.qbk"
check_not "a truncated backup is refused" "$QTSP_BIN" restore --from "$T_DIR/short.qbk" --home "$T_DIR/r-short" --passphrase-file "$T_DIR/pass"
printf 'not the passphrase\n' >"$T_DIR/wrong"
"$QTSP_BIN" restore --from "$T_DIR/token.qbk" --home "$T_DIR/r-wrong" --passphrase-file "$T_DIR/wrong" 2>"$T_DIR/wrong.err"
check_grep "a wrong passphrase is refused" "wrong passphrase" "$T_DIR/wrong.err"
check_not "... and leaves no home" test -e "$T_DIR/r-wrong"
mkdir -p "$T_DIR/full" && touch "$T_DIR/full/something"
"$QTSP_BIN" restore --from "$T_DIR/plain.qbk" --home "$T_DIR/full" 2>"$T_DIR/full.err"
check_grep "restore into a non-empty folder is refused" "not empty" "$T_DIR/full.err"
check_eq "... and the folder is untouched" something "$(ls "$T_DIR/full")"

# restore with the token into a new (empty) folder and serve it
R=$T_DIR/restored
mkdir "$R"
check "restore with the token" "$QTSP_BIN" restore --from "$T_DIR/token.qbk" --home "$R" --passphrase-file "$T_DIR/pass"
check_eq "secrets is 0700" 700 "$(stat -c %a "$R/secrets")"
check_eq "every secret file is 0600" 0 "$(find "$R/secrets" "$R/hsm" -type f ! -perm 0600 | wc -l)"
check_eq "hsm is 0700" 700 "$(stat -c %a "$R/hsm")"
check_eq "store is 0700" 700 "$(stat -c %a "$R/store")"
check_grep "the restored conf points at the restored token" "^directories.tokendir = $R/hsm/tokens$" "$R/hsm/softhsm2.conf"
check "audit verify passes on the restored home" "$QTSP_BIN" audit verify --home "$R"
"$QTSP_BIN" audit list --home "$R" >"$T_DIR/r-audit.txt"
check_grep "the restore is in the audit log" '"event":"home.restore"' "$T_DIR/r-audit.txt"
check "time-stamp load ran ($NTSA tokens before the token backup)" test "$NTSA" -gt 0
head -n "$NTSA" "$T_DIR/load.tsa" | sort >"$T_DIR/tsa-before.txt"
tsa_journal_serials "$R/store" >"$T_DIR/tsa-restored.txt"
check_eq "every token answered before the backup is in the restored journal" "" \
  "$(comm -23 "$T_DIR/tsa-before.txt" "$T_DIR/tsa-restored.txt" | head -3 | tr '\n' ' ')"
check_eq "... put into the store by restore (no write-ahead file left)" "" "$(ls "$R/store" | grep tsa-wal)"
check "the restored home serves (another port)" start_server "$R"
check_eq "OCSP answers good for a certificate issued before the backup" good "$(ossl "$R" "$S1")"
check_eq "... and for the second" good "$(ossl "$R" "$S2")"
CRL1=$(crl_number)
check "the CRL number is not lower ($CRL1 >= $CRL0)" test "$CRL1" -ge "$CRL0"
check "crl publish beside the restored server" "$QTSP_BIN" crl publish --home "$R"
# worker processes: a fetch may reach a worker that has not loaded the newest CRL yet
for _ in $(seq 1 40); do CRL2=$(crl_number); [[ -n $CRL2 ]] && ((CRL2 > CRL1)) && break; sleep 0.25; done
check "a new CRL after restore has a higher number ($CRL2 > $CRL1)" test "$CRL2" -gt "$CRL1"
S3=$(issue 8201010034)
check "a fresh issuance on the restored home works" test -n "$S3" -a "$S3" != null
check "... with a serial never used by the original ($S3)" test "$S3" != "$S1" -a "$S3" != "$S2"
check_not "... nor by any certificate the original issued before, during or after the backup" grep -qix "$S3" <(printf '%s\n' $ALL_SERIALS)
check "... and a new key" test "$(spki "$T_DIR/$S3.pem")" != "$(spki "$T_DIR/$S1.pem")" -a "$(spki "$T_DIR/$S3.pem")" != "$(spki "$T_DIR/$S2.pem")"
# no key the original held (pool keys, and keys bound after the backup was taken) is offered again
"$QTSP_BIN" audit list --home "$H" | jq -r '(select(.event == "key.generate") | .details.spki_sha256),
  (select(.event == "keypool.refill") | .details.keys[].spki_sha256)' >"$T_DIR/orig-spki.txt"
check "the original's audit lists its generated keys ($(wc -l <"$T_DIR/orig-spki.txt"))" test -s "$T_DIR/orig-spki.txt"
check_not "... and the fresh issuance's key is none of them (none re-offered after the restore)" grep -qix "$(spki "$T_DIR/$S3.pem")" "$T_DIR/orig-spki.txt"
check "... that chains to the restored CA" openssl verify -CAfile "$R/public/root-ca.crt" -untrusted "$R/public/issuing-ca.crt" "$T_DIR/$S3.pem"
check_eq "... and is good in OCSP" good "$(ossl "$R" "$S3")"
stop_server
check "audit verify passes after serving the restored home" "$QTSP_BIN" audit verify --home "$R"

# restore without the token: the operator brings the token; the conf is the new home's
R2=$T_DIR/restored-plain
check "restore without the token" "$QTSP_BIN" restore --from "$T_DIR/plain.qbk" --home "$R2"
"$QTSP_BIN" restore --from "$T_DIR/plain.qbk" --home "$T_DIR/r-plain2" >"$T_DIR/plain.out" 2>&1
check_grep "... says the token must be brought" "holds no token" "$T_DIR/plain.out"
check_eq "... no token restored" "" "$(ls "$R2/hsm/tokens")"
check_not "... no PIN restored" test -e "$R2/secrets/token.pin"
check "audit verify passes without the token" "$QTSP_BIN" audit verify --home "$R2"
cp -a "$H/hsm/tokens/." "$R2/hsm/tokens/"
cp -a "$H/secrets/." "$R2/secrets/"
check "with the token brought in, the restored home serves" start_server "$R2"
check_eq "OCSP answers good there" good "$(ossl "$R2" "$S1")"
stop_server

# a copied home whose conf still names the original's token is refused
C=$T_DIR/copied
cp -a "$H" "$C"
"$QTSP_BIN" serve --home "$C" --listen 127.0.0.1:0 >/dev/null 2>"$T_DIR/copy.err"
check_grep "serve on a copied home sharing the token is refused" "not this home's.*must not share the original's token" "$T_DIR/copy.err"
check_not "... and so is every verb that opens the token" "$QTSP_BIN" crl publish --home "$C"

# a stale lock after kill -9 does not block the next start
check "serve starts again" start_server "$H"
# serve runs one worker process per core: the workers of a killed supervisor
# get SIGTERM (PR_SET_PDEATHSIG) and drain; the home is free once they are gone
workers=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
for _ in $(seq 1 200); do
  alive=0
  for w in $workers; do kill -0 "$w" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 0.05
done
check "after kill -9 the home serves again" start_server "$H"
check_eq "... and answers" good "$(ossl "$H" "$S1")"
stop_server

finish
