#!/usr/bin/env bash
# deploy/nginx/qtsp.conf in front of the real server: nginx-light run in its
# own prefix on high loopback ports with a test certificate made by openssl,
# driven with curl and openssl over TLS: OCSP (POST and GET), TSA, RA calls
# from an allowed address, the RA and /metrics refused from other addresses
# (loopback aliases 127.0.0.2-4 stand for the networks), the client address
# in qtsp's access log (X-Real-IP taken only from the trusted proxy), and the
# plain-HTTP server for relying parties. The shipped file is used as it is,
# with only its EDIT lines replaced (each replacement must hit).
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN
TOP=$(cd "$(dirname "$0")/../.." && pwd)
command -v nginx >/dev/null || { fail "nginx is not installed (scripts/deps.sh installs nginx-light)"; finish; exit 1; }
NG=$T_DIR/nginx
mkdir -p "$NG/conf/qtsp" "$NG/logs" "$NG/tmp"
NGINX_PID=
cleanup_nginx() { [[ -n $NGINX_PID ]] && kill -QUIT "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null; NGINX_PID=; }
trap 'cleanup_nginx; [[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null' EXIT

TLSP=$(free_port)
HTTPP=$(free_port)
while [[ $HTTPP == "$TLSP" ]]; do HTTPP=$(free_port); done

# the server, trusting the proxy's address for X-Real-IP
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
sed -i 's/^  connection_timeout: \(.*\)$/  connection_timeout: \1\n  trusted_proxies: [127.0.0.1]/' "$H/qtsp.yaml"
check_grep "qtsp.yaml trusts the proxy" "^  trusted_proxies: \[127.0.0.1\]$" "$H/qtsp.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
check "qtsp serves" start_server "$H"
QPORT=${BASE##*:}

# the test certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$NG/conf/tls.key" -out "$NG/conf/tls.crt" 2>/dev/null
check "a test TLS certificate" test -s "$NG/conf/tls.crt"

# the shipped configuration with its EDIT lines replaced
cp "$TOP/deploy/nginx/qtsp.conf" "$NG/conf/qtsp.conf"
edit() { # description sed-expression: must change the file
  local before
  before=$(sha256sum <"$NG/conf/qtsp.conf")
  sed -i "$2" "$NG/conf/qtsp.conf"
  check "edit of the shipped file: $1" test "$before" != "$(sha256sum <"$NG/conf/qtsp.conf")"
}
edit "upstream" "s|^\(\s*server\) 127.0.0.1:8080;.*|\1 127.0.0.1:$QPORT;|"
edit "TLS listen" "s|^\(\s*listen\) 443 ssl;.*|\1 127.0.0.1:$TLSP ssl;|"
edit "HTTP listen" "s|^\(\s*listen\) 80;.*|\1 127.0.0.1:$HTTPP;|"
edit "certificate" "s|/etc/qtsp/tls/fullchain.pem|$NG/conf/tls.crt|"
edit "key" "s|/etc/qtsp/tls/privkey.pem|$NG/conf/tls.key|"
edit "access log" "s|/var/log/nginx/qtsp-access.log|$NG/logs/access.log|g"
check_not "no /etc or /var path left" grep -Eq "^\s*[a-z_]+ /(etc|var)/" "$NG/conf/qtsp.conf"
# the networks: the RA from 127.0.0.2 only, /metrics from 127.0.0.4 only
check_grep "the shipped RA networks file ends with deny all" "^deny all;$" "$TOP/deploy/nginx/qtsp/ra-networks.conf"
check_grep "the shipped metrics networks file ends with deny all" "^deny all;$" "$TOP/deploy/nginx/qtsp/metrics-networks.conf"
printf 'allow 127.0.0.2;\ndeny all;\n' >"$NG/conf/qtsp/ra-networks.conf"
printf 'allow 127.0.0.4;\ndeny all;\n' >"$NG/conf/qtsp/metrics-networks.conf"
cat >"$NG/conf/nginx.conf" <<EOF
user $(id -un) $(id -gn);
worker_processes 1;
daemon off;
pid $NG/logs/nginx.pid;
error_log $NG/logs/error.log;
events { worker_connections 256; }
http {
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    include qtsp.conf;
}
EOF
check "nginx -t accepts the configuration" nginx -t -p "$NG" -c conf/nginx.conf
nginx -p "$NG" -c conf/nginx.conf 2>>"$NG/logs/error.log" &
NGINX_PID=$!
for _ in $(seq 1 100); do curl -s -o /dev/null --cacert "$NG/conf/tls.crt" "https://127.0.0.1:$TLSP/health" && break; sleep 0.05; done
F=https://127.0.0.1:$TLSP
C=(--cacert "$NG/conf/tls.crt" -s --max-time 15)
check_eq "nginx: /health over TLS (certificate verified)" ok "$(curl "${C[@]}" "$F/health")"
check_not "plain HTTP on the TLS port is refused" bash -c "curl -s --max-time 5 http://127.0.0.1:$TLSP/health | grep -qx ok"

P=$H/public
cat "$P/issuing-ca.crt" "$P/root-ca.crt" >"$T_DIR/chain.pem"
# an RA call from the allowed address (127.0.0.2): enrol and issue over TLS
ra() { # SOURCE METHOD PATH [JSON] -> body; status in $T_DIR/status
  local args=("${C[@]}" --interface "$1" -o "$T_DIR/body" -w '%{http_code}' -X "$2" -H "Authorization: Bearer $OFFICER")
  [[ -n ${4-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  curl "${args[@]}" "$F$3" >"$T_DIR/status"
  cat "$T_DIR/body"
}
SID=$(ra 127.0.0.2 POST /ra/v1/subjects '{"given_name":"Anna","surname":"Proxy","country":"DE","national_id":"77777777","email":"a@example.de","phone":"+4915177777777","package":"free"}' | jq -r .subject_id)
check_eq "RA enrolment over TLS from an allowed network: 201" 201 "$(status)"
ra 127.0.0.2 POST "/ra/v1/subjects/$SID/certificates" '{}' >"$T_DIR/iss.json"
check_eq "RA issuance over TLS from an allowed network: 201" 201 "$(status)"
S=$(jq -r .serial "$T_DIR/iss.json")
jq -r .certificate "$T_DIR/iss.json" >"$T_DIR/ee.pem"
ra 127.0.0.2 GET "/ra/v1/certificates/$S" >/dev/null
check_eq "RA status over TLS: 200" 200 "$(status)"
ra 127.0.0.3 GET "/ra/v1/certificates/$S" >/dev/null
check_eq "RA from a network not listed: 403 from nginx" 403 "$(status)"
check_not "... answered by nginx, not by qtsp (no JSON error)" grep -q '"error"' "$T_DIR/body"
ra 127.0.0.3 GET "/ra/v1/certificates/$S-from-3" >/dev/null

# OCSP over TLS: POST and GET, verified
openssl ocsp -issuer "$P/issuing-ca.crt" -cert "$T_DIR/ee.pem" -reqout "$T_DIR/req.der" -no_nonce >/dev/null 2>&1
curl "${C[@]}" --data-binary @"$T_DIR/req.der" -H 'Content-Type: application/ocsp-request' "$F/ocsp" -o "$T_DIR/resp.der"
openssl ocsp -respin "$T_DIR/resp.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/ee.pem" -CAfile "$T_DIR/chain.pem" >"$T_DIR/o.txt" 2>&1
check_grep "OCSP POST over TLS: verified, good" "ee.pem: good" "$T_DIR/o.txt"
curl "${C[@]}" "$F/ocsp/$(base64 -w0 "$T_DIR/req.der" | sed 's|+|%2B|g; s|/|%2F|g; s|=|%3D|g')" -o "$T_DIR/get.der"
openssl ocsp -respin "$T_DIR/get.der" -issuer "$P/issuing-ca.crt" -cert "$T_DIR/ee.pem" -CAfile "$T_DIR/chain.pem" >"$T_DIR/g.txt" 2>&1
check_grep "OCSP GET over TLS: verified, good" "ee.pem: good" "$T_DIR/g.txt"
# TSA over TLS
head -c 5000 /dev/urandom >"$T_DIR/data.bin"
openssl ts -query -data "$T_DIR/data.bin" -sha256 -cert -out "$T_DIR/q.tsq" 2>/dev/null
curl "${C[@]}" --data-binary @"$T_DIR/q.tsq" -H 'Content-Type: application/timestamp-query' "$F/tsa" -o "$T_DIR/r.tsr"
check "TSA over TLS: the token verifies" openssl ts -verify -in "$T_DIR/r.tsr" -queryfile "$T_DIR/q.tsq" -CAfile "$P/root-ca.crt"
# /metrics only from the monitoring network
check_eq "/metrics from a network not listed: 403" 403 "$(curl "${C[@]}" --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$F/metrics")"
check_grep "/metrics from the monitoring network: qtsp's metrics" "^qtsp_http_requests_total" <(curl "${C[@]}" --interface 127.0.0.4 "$F/metrics")
# the client's own X-Real-IP / X-Forwarded-For are replaced by nginx
curl "${C[@]}" --interface 127.0.0.2 -H 'X-Real-IP: 6.6.6.6' -H 'X-Forwarded-For: 6.6.6.7' -o /dev/null "$F/spoof-through-nginx"
# directly to qtsp from an untrusted peer: X-Real-IP is not believed
curl -s --max-time 10 --interface 127.0.0.3 -H 'X-Real-IP: 6.6.6.6' -o /dev/null "$BASE/spoof-direct"
# the plain-HTTP server: relying parties' paths served, the rest redirected to HTTPS
check_eq "HTTP: the CRL is served" 200 "$(curl -s -o "$T_DIR/crl.der" -w '%{http_code}' "http://127.0.0.1:$HTTPP/crl/qualified.crl")"
check "HTTP: ... and is a CRL" openssl crl -inform DER -in "$T_DIR/crl.der" -noout
check_eq "HTTP: the CA certificate is served" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTPP/certs/issuing-ca.crt")"
check_eq "HTTP: OCSP POST is served" 200 "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$T_DIR/req.der" -H 'Content-Type: application/ocsp-request' "http://127.0.0.1:$HTTPP/ocsp")"
check_eq "HTTP: the RA is redirected to HTTPS" 301 "$(curl -s --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTPP/ra/v1/certificates/$S")"
check_eq "HTTP: /metrics is redirected to HTTPS" 301 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTPP/metrics")"

cleanup_nginx
rc=0; stop_server || rc=$?
check_eq "qtsp: SIGTERM exits 0" 0 "$rc"
# the access logs (qtsp's is written out at the latest when it stops)
L=$T_DIR/serve.err
check_grep "qtsp's access log: the RA issuance with the client address behind nginx" "method=POST path=\"/ra/v1/subjects/$SID/certificates\" status=201 .* client=127.0.0.2$" "$L"
check_grep "qtsp's access log: the client's X-Real-IP through nginx is replaced by its address" "method=GET path=\"/spoof-through-nginx\" .* client=127.0.0.2$" "$L"
check_not "qtsp's access log: never the address a client claimed" grep -q "client=6.6.6." "$L"
check_grep "qtsp's access log: a direct peer's X-Real-IP is ignored (not a trusted proxy)" "method=GET path=\"/spoof-direct\" .* client=127.0.0.3$" "$L"
check_not "qtsp never saw the RA request nginx refused" grep -q "/ra/v1/certificates/$S-from-3" "$L"
check_grep "nginx's access log: the client address" "^127.0.0.2 .*POST /ra/v1/subjects/$SID/certificates" "$NG/logs/access.log"
check_grep "nginx's access log: the refused RA request with its address" "^127.0.0.3 .*/ra/v1/certificates/$S-from-3 HTTP/1.1\" 403" "$NG/logs/access.log"
finish
