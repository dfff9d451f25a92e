#!/usr/bin/env bash
# Issue 15: regression tests of the defects found by hostile testing, each
# as the attacker tried it over loopback (openssl, curl, raw sockets from
# python3): 1 OCSP "good" for serials the root issued, 2 the hotline's
# 64-certificate limit, 5 request smuggling shapes, 6 a connection flood
# and a trickling client, 8 the smaller ones (invalidity date before
# notBefore, %00 in a path, a BER OCSP request, an explicit certReq FALSE,
# a readable token.pin). 4 (termination ordering) is in test_terminate.sh,
# the rate-limited disk-full line in test_diskfull.sh.
source "$(dirname "$0")/lib.sh"
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
# short phase time for the trickle check; a small per-address cap for the flood
sed -i 's/^  connection_timeout: .*/  connection_timeout: 3s\n  connections_per_address: 64/' "$H/qtsp.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hans --role hotline)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
P=$H/public
chmod 0644 "$H/secrets/token.pin" # defect 8: must not pass silently
check "serve starts" start_server "$H" --processes 1 # the caps are per process
PORT=${BASE##*:}

# ---- 8: a PIN file others can read is reported at start ----
check_grep "8: world-readable token.pin warned at start" "token PIN file .*readable by others" "$T_DIR/serve.err"
stop_server
chmod 0600 "$H/secrets/token.pin"
start_server "$H" --processes 1 >/dev/null
PORT=${BASE##*:}
check_not "8: no warning once the PIN file is 0600" grep -q "readable by others" "$T_DIR/serve.err"

# ---- 1: serials the root issued are not this CA's ----
ocsp_serial() { # certificate file -> openssl's status line for its serial asked of the issuing CA
  local sn
  sn=$(openssl x509 -in "$1" -noout -serial | cut -d= -f2)
  openssl ocsp -issuer "$P/issuing-ca.crt" -serial "0x$sn" -url "$BASE/ocsp" -CAfile "$P/root-ca.crt" \
    -verify_other "$P/issuing-ca.crt" -resp_text >"$T_DIR/o1.txt" 2>&1
  grep -q "Response verify OK" "$T_DIR/o1.txt" || { echo unverified; return; }
  sed -n "s/^0x$sn: //p" "$T_DIR/o1.txt" | head -1
}
for c in root-ca issuing-ca tsa; do
  check_eq "1: OCSP for $c.crt's serial (root-issued) is not good" "revoked" "$(ocsp_serial "$P/$c.crt")"
  check_grep "1: $c.crt: the never-issued answer (extended revoke)" "1\.3\.6\.1\.5\.5\.7\.48\.1\.9|^ +valid: *$" "$T_DIR/o1.txt"
done
check_eq "1: the OCSP responder's own certificate (the issuing CA's) stays good" "good" "$(ocsp_serial "$P/ocsp.crt")"

# ---- 2: the hotline holds everyone, however many certificates ----
SID=$(api POST /ra/v1/subjects "$OFFICER" '{"given_name":"Many","surname":"Certs","country":"DE","national_id":"22222222","email":"m@example.de","phone":"+4915122222222","package":"free"}' | jq -r .subject_id)
n_ok=0
for i in $(seq 1 70); do
  api POST "/ra/v1/subjects/$SID/certificates" "$OFFICER" '{}' >"$T_DIR/iss.json"
  [[ $(status) == 201 ]] && n_ok=$((n_ok + 1))
  ((i == 1)) && FIRST=$(jq -r .serial "$T_DIR/iss.json")
done
check_eq "2: 70 certificates issued to one subject" 70 "$n_ok"
api POST "/ra/v1/certificates/$FIRST/terminate" "$OFFICE" '{"reason":"cessationOfOperation","identity_check":"passport"}' >/dev/null
check_eq "2: one of them terminated" 200 "$(status)"
api POST /ra/v1/hotline/hold "$HOTLINE" '{"national_id":"22222222","phone":"+4915122222222","caller_verification":"call 1"}' >"$T_DIR/hold.json"
check_eq "2: hotline hold of a subject with 70 certificates: 200" 200 "$(status)"
check_eq "2: every valid one (69) held" 69 "$(jq '.held | length' "$T_DIR/hold.json" 2>/dev/null)"
api GET "/ra/v1/certificates/$(jq -r '.held[68]' "$T_DIR/hold.json")" "$OFFICE" >"$T_DIR/st.json"
check_eq "2: the last one is on hold" "on-hold" "$(jq -r .status "$T_DIR/st.json")"

# ---- 8: invalidity date before notBefore ----
S8=$(issue 33333333)
api POST "/ra/v1/certificates/$S8/terminate" "$OFFICE" '{"reason":"keyCompromise","identity_check":"passport","invalidity_date":"2001-01-01T00:00:00Z"}' >/dev/null
check_eq "8: invalidity_date before notBefore: 400" 400 "$(status)"
check_grep "8: ... naming the rule" "notBefore" "$T_DIR/body"
api GET "/ra/v1/certificates/$S8" "$OFFICE" >"$T_DIR/st.json"
check_eq "8: ... and the certificate is still valid" "valid" "$(jq -r .status "$T_DIR/st.json")"

# ---- 8: %00 in a path ----
code=$(curl -s -o "$T_DIR/nul.json" -w '%{http_code}' -H "Authorization: Bearer $OFFICE" "$BASE/ra/v1/certificates/$S8%00")
check_eq "8: .../certificates/SER%00 is not served as SER (400)" 400 "$code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OFFICE" "$BASE/ra/v1/certificates/$S8")
check_eq "8: .../certificates/SER still 200" 200 "$code"

# ---- 8: an OCSP request in BER (indefinite length) ----
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S8.pem" -no_nonce -reqout "$T_DIR/req.der" >/dev/null 2>&1
python3 - "$T_DIR/req.der" "$T_DIR/ber.der" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
# outer SEQUENCE re-framed with an indefinite length (BER), contents as they were
assert d[0] == 0x30
if d[1] < 0x80: hl, n = 2, d[1]
else:
    k = d[1] & 0x7f; hl = 2 + k; n = int.from_bytes(d[2:2 + k], 'big')
open(sys.argv[2], 'wb').write(b'\x30\x80' + d[hl:hl + n] + b'\x00\x00')
EOF
curl -s -o "$T_DIR/der.resp" -H 'Content-Type: application/ocsp-request' --data-binary @"$T_DIR/req.der" "$BASE/ocsp"
check_grep "8: the DER request is answered successful" "successful" <(openssl ocsp -respin "$T_DIR/der.resp" -resp_text -noverify 2>&1 | tr 'A-Z' 'a-z')
curl -s -o "$T_DIR/ber.resp" -H 'Content-Type: application/ocsp-request' --data-binary @"$T_DIR/ber.der" "$BASE/ocsp"
check_grep "8: the same request in BER: malformedRequest" "malformedrequest" <(openssl ocsp -respin "$T_DIR/ber.resp" -resp_text -noverify 2>&1 | tr 'A-Z' 'a-z')

# ---- 8: certReq FALSE written out (not DER) ----
head -c 64 /dev/urandom >"$T_DIR/data"
openssl ts -query -data "$T_DIR/data" -sha256 -no_nonce -out "$T_DIR/q.tsq" 2>/dev/null
python3 - "$T_DIR/q.tsq" "$T_DIR/qf.tsq" "$T_DIR/qt.tsq" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
assert d[0] == 0x30 and d[1] < 0x80  # short query: one length byte
body = d[2:]
open(sys.argv[2], 'wb').write(bytes([0x30, len(body) + 3]) + body + b'\x01\x01\x00')
open(sys.argv[3], 'wb').write(bytes([0x30, len(body) + 3]) + body + b'\x01\x01\xff')
EOF
tsa_status() {
  curl -s -o "$T_DIR/r.tsr" -H 'Content-Type: application/timestamp-query' --data-binary @"$1" "$BASE/tsa"
  openssl ts -reply -in "$T_DIR/r.tsr" -text 2>/dev/null | sed -n 's/^Status: //p' | head -1
}
check_eq "8: certReq TRUE: granted" "Granted." "$(tsa_status "$T_DIR/qt.tsq")"
check_eq "8: certReq FALSE written out (non-DER): rejected" "Rejected." "$(tsa_status "$T_DIR/qf.tsq")"

# ---- 5: request smuggling shapes (raw sockets) ----
python3 - "$PORT" >"$T_DIR/smuggle.txt" <<'EOF'
import socket, sys
port = int(sys.argv[1])
def raw(req):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(1.5)
    s.sendall(req); out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: out += b"<closed>"; break
            out += d
    except socket.timeout: out += b"<open>"
    s.close(); return out
h = b"POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
for name, req in [
    ("cl_te", h + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te_cl", h + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
    ("two_cl", h + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"),
    ("plain", h + b"Content-Length: 5\r\n\r\nabcde"),
]:
    r = raw(req)
    line = r.split(b"\r\n", 1)[0].decode(errors="replace")
    print(name, line, "closed" if r.endswith(b"<closed>") else "open",
          "conn-close" if b"\r\nConnection: close" in r else "-")
EOF
check_grep "5: Content-Length + Transfer-Encoding: 400 and closed" "^cl_te HTTP/1.1 400 .* closed conn-close" "$T_DIR/smuggle.txt"
check_grep "5: Transfer-Encoding + Content-Length: 400 and closed" "^te_cl HTTP/1.1 400 .* closed conn-close" "$T_DIR/smuggle.txt"
check_grep "5: two different Content-Length: 400 and closed" "^two_cl HTTP/1.1 400 .* closed conn-close" "$T_DIR/smuggle.txt"
check_grep "5: one Content-Length: answered, kept alive" "^plain HTTP/1.1 200 .* open" "$T_DIR/smuggle.txt"

# ---- 6: a trickling client is cut off; a flood from one address does not
# starve others (connections from 127.0.0.2 are another address) ----
python3 - "$PORT" >"$T_DIR/trickle.txt" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port)); t0 = time.time()
closed = False
for ch in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
    try:
        s.sendall(bytes([ch])); s.settimeout(1.0)
        if s.recv(1) == b"": closed = True; break
    except socket.timeout: pass
    except OSError: closed = True; break
    if time.time() - t0 > 20: break
print("closed" if closed else "open", round(time.time() - t0, 1))
EOF
read -r tstate tsecs <"$T_DIR/trickle.txt"
check_eq "6: a client trickling its headers is cut off" closed "$tstate"
check "6: ... within the 3 s phase time (+1 s watchdog), took ${tsecs}s" python3 -c "import sys; sys.exit(0 if float('$tsecs') <= 5.5 else 1)"

openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/$S8.pem" -reqout "$T_DIR/flood.ocsp" >/dev/null 2>&1
openssl ts -query -data "$T_DIR/data" -sha256 -cert -out "$T_DIR/flood.tsq" 2>/dev/null
python3 - "$PORT" "$T_DIR" >"$T_DIR/flood.txt" <<'EOF'
import socket, subprocess, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
socks, refused = [], 0
for i in range(4300):
    try:
        s = socket.socket(); s.setblocking(True); s.settimeout(2)
        s.connect(("127.0.0.1", port)); socks.append(s)
    except OSError:
        refused += 1
time.sleep(0.5)
# which of the flood's connections the server still holds open
held = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b"": continue
    except BlockingIOError:
        held += 1; continue
    except OSError:
        continue
print("flood", len(socks), "connected", held, "held", refused, "refused")
def other(args):
    t = time.time()
    r = subprocess.run(["curl", "-s", "-m", "5", "--interface", "127.0.0.2", "-o", "/dev/null",
                        "-w", "%{http_code}"] + args, capture_output=True, text=True)
    return r.stdout, round((time.time() - t) * 1000)
base = "http://127.0.0.1:%d" % port
for name, args in [
    ("health", [base + "/health"]),
    ("ocsp", ["-H", "Content-Type: application/ocsp-request", "--data-binary", "@" + d + "/flood.ocsp", base + "/ocsp"]),
    ("tsa", ["-H", "Content-Type: application/timestamp-query", "--data-binary", "@" + d + "/flood.tsq", base + "/tsa"]),
]:
    code, ms = other(args)
    print(name, code, ms)
for s in socks: s.close()
EOF
cat "$T_DIR/flood.txt"
read -r _ _ _ held _ _ _ <"$T_DIR/flood.txt"
check "6: the flood from one address holds at most 64 connections (held $held)" test "${held:-9999}" -le 64
check_grep "6: /health answers another address during the flood" "^health 200 " "$T_DIR/flood.txt"
check_grep "6: OCSP answers another address during the flood" "^ocsp 200 " "$T_DIR/flood.txt"
check_grep "6: TSA answers another address during the flood" "^tsa 200 " "$T_DIR/flood.txt"
check_eq "6: and the flooded address itself again once it lets go" 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$BASE/health")"
check "server still running" kill -0 "$SERVER_PID"
check "stops cleanly" stop_server
finish
