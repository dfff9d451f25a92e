#!/usr/bin/env bash
# Issue 15, audit anchoring: at shutdown (and every 10 minutes) the server
# time-stamps the audit chain head with its own TSA, keeps the token in an
# "audit.anchor" record and writes the latest anchor outside the store
# (public/audit-anchor.json); `qtsp audit verify` checks the chain against
# it. The attack it is for: the last records removed and the sequence set
# back (done here with lmdb-utils' mdb_dump/mdb_load, as someone with the
# store file would) verifies on its own, and is reported with the anchor.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
P=$H/public
A=$P/audit-anchor.json
check "verify before any anchor" "$QTSP_BIN" audit verify --home "$H"
check_grep "... says there is none yet" "none yet" "$T_DIR/check.log"

check "serve starts" start_server "$H"
S1=$(issue 11111111)
S2=$(issue 22222222)
check "stops cleanly" stop_server
check "the shutdown wrote the anchor file" test -s "$A"
check_grep "the server logged it" "audit anchor: the chain is anchored at record" "$T_DIR/serve.err"
SEQ=$(jq -r .seq "$A")
"$QTSP_BIN" audit list --home "$H" >"$T_DIR/audit.txt"
check_eq "the anchored record is the head before the anchor record" "$((SEQ + 1))" "$(wc -l <"$T_DIR/audit.txt")"
check_grep "the token is kept with the audit (audit.anchor)" "\"event\":\"audit.anchor\".*\"seq\":$SEQ" "$T_DIR/audit.txt"
"$QTSP_BIN" audit verify --home "$H" >"$T_DIR/verify.txt" 2>&1
check_eq "audit verify passes" 0 $?
check_grep "... checked against the anchor" "anchored at record $SEQ .*time-stamp verified" "$T_DIR/verify.txt"

# the anchor is a time-stamp any RFC 3161 client verifies: openssl ts
b64url_decode() { local s=${1//-/+}; s=${s//_//}; while ((${#s} % 4)); do s+="="; done; echo "$s" | base64 -d; }
b64url_decode "$(jq -r .tsa_response "$A")" >"$T_DIR/anchor.tsr"
HASH=$(b64url_decode "$(jq -r .chain_hash "$A")" | od -An -tx1 | tr -d ' \n')
check_eq "the chain hash is the 32-byte hash of record $SEQ" 64 "${#HASH}"
check "openssl ts -verify: the token covers the chain hash, signed by our TSA" \
  openssl ts -verify -digest "$HASH" -in "$T_DIR/anchor.tsr" -CAfile "$P/root-ca.crt" -untrusted "$P/tsa.crt"
check_not "openssl ts -verify fails for another hash" \
  openssl ts -verify -digest "$(printf '%064d' 0)" -in "$T_DIR/anchor.tsr" -CAfile "$P/root-ca.crt" -untrusted "$P/tsa.crt"

# nothing new: a restart and stop adds no anchor; something new: one more
start_server "$H" >/dev/null && stop_server
check_eq "no new anchor when only the anchor record came after it" 1 "$("$QTSP_BIN" audit list --home "$H" | grep -c '"event":"audit.anchor"')"
start_server "$H" >/dev/null
S3=$(issue 33333333)
S4=$(issue 44444444)
stop_server
check_eq "a second anchor after more records" 2 "$("$QTSP_BIN" audit list --home "$H" | grep -c '"event":"audit.anchor"')"
SEQ2=$(jq -r .seq "$A")
check "the anchor file moved on" test "$SEQ2" -gt "$SEQ"
check "audit verify passes" "$QTSP_BIN" audit verify --home "$H"

# the attack: remove the last 6 records (the issuance of S4 and the anchor)
# and set the counter back, with the LMDB tools
N=$("$QTSP_BIN" audit list --home "$H" | wc -l)
KEEP=$((N - 6))
mdb_dump -a "$H/store" >"$T_DIR/dump.txt" 2>"$T_DIR/dump.err" || { echo "mdb_dump failed"; cat "$T_DIR/dump.err"; }
python3 - "$T_DIR/dump.txt" "$T_DIR/cut.txt" "$KEEP" <<'EOF'
import sys
src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
out, db, pair = [], None, []
for line in open(src):
    if line.startswith("database="):
        db = line.strip().split("=", 1)[1]
    if not line.startswith(" "):
        out.append(line); continue
    pair.append(line)
    if len(pair) < 2: continue
    k, v = pair[0].strip(), pair[1].strip(); pair = []
    if db == "audit" and int(k, 16) > keep:
        continue                      # the removed tail
    if db == "counters" and bytes.fromhex(k) == b"audit_seq":
        v = "%016x" % keep            # the sequence set back
    out.append(" %s\n %s\n" % (k, v))
open(dst, "w").write("".join(out))
EOF
mkdir "$T_DIR/cut"
mdb_load -f "$T_DIR/cut.txt" "$T_DIR/cut" 2>"$T_DIR/load.err" || { echo "mdb_load failed"; cat "$T_DIR/load.err"; }
cp "$T_DIR/cut/data.mdb" "$H/store/data.mdb"
rm -f "$H/store/lock.mdb"
check_eq "the store now holds $KEEP records" "$KEEP" "$("$QTSP_BIN" audit list --home "$H" | wc -l)"
mv "$A" "$T_DIR/anchor.json"
check "without the anchor the shortened chain verifies on its own (what anchoring is for)" \
  "$QTSP_BIN" audit verify --home "$H"
mv "$T_DIR/anchor.json" "$A"
"$QTSP_BIN" audit verify --home "$H" >"$T_DIR/verify2.txt" 2>&1
check_eq "with the anchor, audit verify fails (exit 1)" 1 $?
check_grep "... and reports the truncated tail" "truncated tail: the chain ends at record $KEEP but record $SEQ2 was anchored" "$T_DIR/verify2.txt"
cat "$T_DIR/verify2.txt"

# a rewritten record under the anchor is reported too
jq -c ".chain_hash = \"$(head -c 32 /dev/zero | base64 | tr '+/' '-_' | tr -d '=')\"" "$A" >"$T_DIR/forged.json"
cp "$T_DIR/forged.json" "$A"
check_not "a forged anchor hash does not verify (its time-stamp covers the real one)" "$QTSP_BIN" audit verify --home "$H"
finish
