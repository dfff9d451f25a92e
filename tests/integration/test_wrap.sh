#!/usr/bin/env bash
# Issue 12 with the real server, pkcs11-tool and mdb_dump: the key-storage
# key made at init, subscriber keys kept wrapped (the token's object count
# does not grow with 100 issuances), termination removes the wrapped key
# from the store (a signing attempt then fails), and a copied home sharing
# the token cannot bind a pool key that the original bound after the copy.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
H2=$T_DIR/copy
MODULE=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so
N=${QTSP_WRAP_ISSUES:-100}

"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 4\nlow_water: 2\nbatch: 4\n' >"$H/policies/keypool.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
PIN=$(cat "$H/secrets/token.pin")
p11() { SOFTHSM2_CONF=$H/hsm/softhsm2.conf pkcs11-tool --module "$MODULE" --token-label qtsp --login --pin "$PIN" "$@" 2>/dev/null; }
objects() { p11 --list-objects | grep -cE '^(Public Key|Private Key|Secret Key) Object|^Data object'; }
credential() { # HOME SERIAL -> the stored credential record (JSON after the version byte)
  mdb_dump -p -s credentials "$1/store" | grep -A1 "^ $2\$" | tail -1 | sed 's/^ \\01//; s/\\\\/\\/g'
}
wait_pool() { # N (an ERE): until /metrics shows N pool keys
  for _ in $(seq 1 300); do # a worker's figure, labelled by process when there are several
    curl -s "$BASE/metrics" | grep -qE "^qtsp_keypool_available(\{process=\"[0-9]+\"\})? $1\$" && return 0
    sleep 0.1
  done
  return 1
}

# --- the key-storage key: made by init, in the token, wrap/unwrap only
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
check_grep "init recorded the key-storage setup" '"event":"key.storage.setup".*"key_storage_key":true' "$T_DIR/audit.txt"
p11 --list-objects --type secrkey --label qtsp-key-storage >"$T_DIR/ksk.txt"
check_grep "pkcs11-tool: AES-256 key-storage key" "^Secret Key Object; AES length 32" "$T_DIR/ksk.txt"
check_grep "pkcs11-tool: sensitive, never extractable" "Access: +sensitive, always sensitive, never extractable" "$T_DIR/ksk.txt"
check_grep "pkcs11-tool: wrap and unwrap only" "Usage: +wrap, unwrap$" "$T_DIR/ksk.txt"

# --- 100 issuances: the token's object count stays as it is
check "serve starts" start_server "$H"
check "the filler filled the pool" wait_pool 4
obj0=$(objects)
fails=0
: >"$T_DIR/serials"
for i in $(seq 1 "$N"); do
  s=$(issue "$((7000000000 + i))")
  [[ $(status) == 201 && -n $s && $s != null ]] || fails=$((fails + 1))
  echo "$s" >>"$T_DIR/serials"
done
check_eq "$N issuances answered 201" 0 "$fails"
check_eq "token objects before and after $N issuances (pkcs11-tool --list-objects)" "$obj0" "$(objects)"
check_eq "no subscriber key in the token" 0 "$(p11 --list-objects --type privkey | grep -cE 'label: +(kp-|kw-|qc-)')"
S=$(head -1 "$T_DIR/serials")
credential "$H" "$S" >"$T_DIR/cred.json"
check "the credential holds the wrapped key (mdb_dump)" jq -e '.key.format == "aes-kwp-v1" and (.key.blob|length) > 40 and (.key.binding|length) == 43' "$T_DIR/cred.json"
# the wrapped key is the certificate's: its public key
jq -r .key.public_key "$T_DIR/cred.json" | tr '_-' '/+' | sed 's/$/==/' | base64 -d 2>/dev/null >"$T_DIR/cred.spki"
openssl x509 -in "$T_DIR/$S.pem" -noout -pubkey | openssl pkey -pubin -outform DER -out "$T_DIR/cert.spki"
check "the credential's public key is the certificate's" cmp "$T_DIR/cred.spki" "$T_DIR/cert.spki"
BLOB=$(jq -r .key.blob "$T_DIR/cred.json")
# the credential signs (qtsp sign opens its key through qtsp_subkey_open)
head -c 2000 /dev/urandom >"$T_DIR/doc.bin"
check "the credential signs a document (qtsp sign, CAdES B-B)" "$QTSP_BIN" sign --home "$H" --credential "$S" --format C --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/doc.p7s"
check "openssl cms verifies the signature with the certificate's key" openssl cms -verify -binary -inform DER -in "$T_DIR/doc.p7s" -content "$T_DIR/doc.bin" -CAfile "$H/public/chain.pem" -purpose any -out /dev/null

# --- termination removes the wrapped key
api POST "/ra/v1/certificates/$S/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport"}' >/dev/null
check_eq "terminate: 200" 200 "$(status)"
credential "$H" "$S" >"$T_DIR/cred2.json"
check "the credential is disabled, its key gone" jq -e '.enabled == false and (has("key")|not) and .key_destroyed_at' "$T_DIR/cred2.json"
check_not "the blob is in no live record of the store" grep -q -- "$BLOB" <(mdb_dump -a -p "$H/store")
check_not "a signing attempt with the terminated credential fails" "$QTSP_BIN" sign --home "$H" --credential "$S" --format C --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/doc2.p7s"
# past the status check (--any-status), the key itself is gone
check_not "... also past the status check: no key to open" "$QTSP_BIN" sign --any-status --home "$H" --credential "$S" --format C --level Ades-B-B --in "$T_DIR/doc.bin" --out "$T_DIR/doc2.p7s"
check_not "and writes nothing" test -e "$T_DIR/doc2.p7s"
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
check_grep "the termination record says the wrapped key was destroyed" "\"event\":\"cert.terminate\".*\"key\":\"destroyed\".*\"key_storage\":\"wrapped\"" "$T_DIR/audit.txt"
check_grep "one keypool.refill record per batch, naming its keys" '"event":"keypool.refill".*"count":4.*"keys":\[' "$T_DIR/audit.txt"
check_eq "no per-key generation records" 0 "$(grep -c '"event":"key.generate"' "$T_DIR/audit.txt")"
# the copy below must hold pool keys: with an empty pool (the issuances
# drained it faster than the filler refills, seen under ASan) both stores
# would issue with inline keys and nothing would be stale
# counted in the store itself: /metrics may show the other worker's figure
# from before the issuances above drained the pool (CI: the pool was empty,
# both homes issued inline keys, and the copy had nothing stale to refuse)
pool_in_store() {
  for _ in $(seq 1 300); do
    [[ $(store_keys "$H/store" keypool | grep -c .) -gt 0 ]] && return 0
    sleep 0.1
  done
  return 1
}
check "the pool holds keys before the copy (read from the store)" pool_in_store
check "SIGTERM exits 0" stop_server

# --- a copied home sharing the token (an external HSM, or a copy pointed at
# the original's token): both stores hold the same wrapped pool keys
cp -a "$H" "$H2"
sed -i 's/^  embedded: true/  embedded: false/' "$H2/qtsp.yaml"
check "serve starts on the original" start_server "$H"
s1=$(issue 7100000001)
check_eq "the original issues from its pool: 201" 201 "$(status)"
check "SIGTERM exits 0 (original)" stop_server
"$QTSP_BIN" audit list --home "$H" | grep '"event":"cert.issue"' | tail -n1 >"$T_DIR/orig-issue.txt"
check_grep "... with a pool key, not one made inline" '"key_label":"kw-[0-9a-f]{16}"' "$T_DIR/orig-issue.txt"
export SOFTHSM2_CONF=$H/hsm/softhsm2.conf
check "serve starts on the copy, sharing the token" start_server "$H2"
sid=$(api POST /ra/v1/subjects "$OFFICER" '{"given_name":"Bob","surname":"Copy","country":"DE","national_id":"7100000002","email":"b@example.de","phone":"+4915171000002","package":"free"}' | jq -r .subject_id)
api POST "/ra/v1/subjects/$sid/certificates" "$OFFICER" '{}' >"$T_DIR/copy.json"
check_eq "the copy refuses: 409" 409 "$(status)"
check "with a clear error" jq -e '.message|test("older than the token")' "$T_DIR/copy.json"
api POST "/ra/v1/subjects/$sid/certificates" "$OFFICER" '{}' >"$T_DIR/copy2.json"
check_eq "the copy's next issuance takes a key the token has not handed out: 201" 201 "$(status)"
check "SIGTERM exits 0 (copy)" stop_server
unset SOFTHSM2_CONF
check "serve starts on the original again" start_server "$H"
sid=$(api POST /ra/v1/subjects "$OFFICER" '{"given_name":"Eve","surname":"Orig","country":"DE","national_id":"7100000003","email":"e@example.de","phone":"+4915171000003","package":"free"}' | jq -r .subject_id)
api POST "/ra/v1/subjects/$sid/certificates" "$OFFICER" '{}' >"$T_DIR/orig.json"
check_eq "now the original refuses the key the copy bound: 409" 409 "$(status)"
check "SIGTERM exits 0 (original, again)" stop_server
# across both stores, no pool key is named by two certificates
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/a1.txt"
SOFTHSM2_CONF=$H/hsm/softhsm2.conf "$QTSP_BIN" audit list --home "$H2" >"$T_DIR/a2.txt"
# (records from before the copy are in both logs, byte for byte: counted once)
sort -u "$T_DIR/a1.txt" "$T_DIR/a2.txt" | grep '"event":"cert.issue"' | sed -E 's/.*"key_label":"([^"]+)".*/\1/' | grep -v inline | sort >"$T_DIR/labels"
check_eq "every pool key bound at most once across the two stores" "" "$(uniq -d "$T_DIR/labels")"
check_grep "the refusal is audited in the copy" '"event":"keypool.stale"' "$T_DIR/a2.txt"
check "audit verify passes (original)" "$QTSP_BIN" audit verify --home "$H"
finish
