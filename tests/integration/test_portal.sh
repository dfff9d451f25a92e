#!/usr/bin/env bash
# The web portal (docs/portal.md, issue 17):
# 1. HTTP: static files with their media type, ETag/304, the security headers
#    (a strict CSP, nosniff, frame-ancestors 'none'), no inline script or
#    style in any page; the session endpoint: cookie flags (HttpOnly,
#    SameSite=Strict, Secure only through a trusted TLS proxy), CSRF
#    refusal, idle timeout, forged cookies refused, log out.
# 2. Browser (tests/browser/portal.mjs: playwright-core driving Debian's
#    chromium headless, axe-core on each page): the staff pages (enrol +
#    issue with the activation QR code, hotline hold, office search, release
#    and terminate, audit view) and the signer's (certificates and package,
#    a wrong code refused, a PDF signed with the TOTP the test computes and
#    checked by pdfsig, a replayed code refused, my documents, held and
#    revoked explained); screenshots of each page into $QTSP_TEST_LOGS
#    (scripts/test.sh's log folder) or the test folder, each one checked.
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN
TOP=$(cd "$(dirname "$0")/../.." && pwd)
H=$T_DIR/home
# a free port, fixed before init: it goes into the certificates' AIA, so
# that pdfsig's OCSP check of the signer's certificate reaches this server
PORT=$(free_port)
"$QTSP_BIN" init --home "$H" --base-url "http://127.0.0.1:$PORT" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
# the practical package allows 6 signatures here, so that the browser sees it spent
sed -i '/^  practical:$/,/signatures:/ s/signatures: [0-9]*/signatures: 6/' "$H/policies/packages.yaml"
grep -A1 '^  practical:$' "$H/policies/packages.yaml" | grep -q 'signatures: 6$' || { echo "packages.yaml: practical not found"; exit 1; }
# one-time codes of 2 steps either side are accepted here (the most the policy
# allows): the browser signs five times in a row, each with a code of a new
# step, waiting less
sed -i '/^otp:$/,/window:/ s/window: [0-9]*/window: 2/' "$H/policies/signing.yaml"
grep -A1 '^otp:$' "$H/policies/signing.yaml" | grep -q 'window: 2 ' || { echo "signing.yaml: otp.window not found"; exit 1; }
# signDoc requests of at most 64 KiB (the least the policy allows): the
# browser sees a bigger file refused
sed -i 's/^documents_max_body: [0-9]*/documents_max_body: 65536/' "$H/policies/signing.yaml"
grep -q '^documents_max_body: 65536' "$H/policies/signing.yaml" || { echo "signing.yaml: documents_max_body not found"; exit 1; }
# pages of 3 (history and documents): the browser follows "next" with "More"
sed -i 's/^history_page: [0-9]*/history_page: 3/' "$H/policies/signing.yaml"
grep -q '^history_page: 3 ' "$H/policies/signing.yaml" || { echo "signing.yaml: history_page not found"; exit 1; }
# the time-stamps of PAdES B-T without a synchronised clock here
sed -i 's/require_sync: true/require_sync: false/' "$H/policies/tsa.yaml"
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
# a short idle timeout, so that the test sees a session end
printf 'version: 1\nidle_timeout: 4s\nmax_age: 1h\n' >"$H/policies/portal.yaml"
# this test's curl counts as the TLS front (X-Forwarded-Proto)
sed -i 's/^http:/http:\n  trusted_proxies: [127.0.0.2]/' "$H/qtsp.yaml"
grep -q "trusted_proxies" "$H/qtsp.yaml" || printf 'http:\n  trusted_proxies: [127.0.0.2]\n' >>"$H/qtsp.yaml"
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
OFFICE=$("$QTSP_BIN" operator add --home "$H" otto --role office)
HOTLINE=$("$QTSP_BIN" operator add --home "$H" hana --role hotline)
AUDITOR=$("$QTSP_BIN" operator add --home "$H" aude --role auditor)
check "the server starts" start_server "$H" --listen "127.0.0.1:$PORT"
BASE=http://127.0.0.1:$PORT

# ---- 1. static files ------------------------------------------------------
hdr() { curl -s -D "$T_DIR/h" -o "$T_DIR/b" "$@"; tr -d '\r' <"$T_DIR/h" >"$T_DIR/hdr"; }
hdr "$BASE/"
check_grep "GET / is the page (200)" "^HTTP/1.1 200" "$T_DIR/hdr"
check_grep "GET / is text/html" "^Content-Type: text/html; charset=utf-8$" "$T_DIR/hdr"
check_grep "CSP: default-src 'none', scripts and styles only from the portal" "^Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self';" "$T_DIR/hdr"
check_grep "CSP: frame-ancestors 'none'" "^Content-Security-Policy: .*frame-ancestors 'none'" "$T_DIR/hdr"
check_not "CSP allows no unsafe-inline or unsafe-eval" grep -Eq "unsafe-(inline|eval)" "$T_DIR/hdr"
check_grep "X-Content-Type-Options: nosniff" "^X-Content-Type-Options: nosniff$" "$T_DIR/hdr"
check_grep "an ETag" '^ETag: "[0-9a-f]{32}"$' "$T_DIR/hdr"
check_grep "the page loads its script as a module from /web/" '<script type="module" src="/web/js/main.js"></script>' "$T_DIR/b"
etag=$(sed -n 's/^ETag: //p' "$T_DIR/hdr")
check_eq "If-None-Match with the ETag: 304" 304 "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$BASE/")"
check_eq "If-None-Match with another ETag: 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "x"' "$BASE/")"
for f in js/main.js app.css i18n/bg.json vendor/qrcode-generator.mjs; do
  want=$(case $f in *.js | *.mjs) echo "text/javascript; charset=utf-8" ;; *.css) echo "text/css; charset=utf-8" ;; *.json) echo application/json ;; esac)
  check_eq "/web/$f is $want" "200 $want" "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$BASE/web/$f")"
done
check_eq "/web/ of a file that is not there: 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/web/nothing.js")"
check_eq "/web/../ does not leave web/" 404 "$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$BASE/web/../qtsp.yaml")"
# no inline script or style anywhere: every <script> has src, no style=,
# no on*= handlers, no <style> (the CSP would block them anyway)
inline=0
for f in $(cd "$TOP/web" && find . -name '*.html'); do
  curl -s "$BASE/web/${f#./}" >"$T_DIR/page"
  grep -Eq '<script( type="module")?>|<script[^>]*>[^<]+</script>|<style|style="| on[a-z]+="' "$T_DIR/page" && inline=1
done
check_eq "no inline script, style or event handler in the pages" 0 "$inline"
check_not "the scripts never use innerHTML" grep -rEq "innerHTML|outerHTML|insertAdjacentHTML|document\.write" "$TOP/web/js"
check_grep "English and Bulgarian message files have the same keys" "^same$" <(node -e '
  const a = require(process.argv[1]), b = require(process.argv[2]);
  const ka = Object.keys(a).sort().join(), kb = Object.keys(b).sort().join();
  console.log(ka === kb && ka.length > 0 ? "same" : "differ");' "$TOP/web/i18n/en.json" "$TOP/web/i18n/bg.json")

# ---- 1. the session endpoint --------------------------------------------
login() { # TOKEN JAR [extra curl args] -> body; headers in $T_DIR/hdr
  curl -s -D "$T_DIR/h" -c "$2" -H 'Content-Type: application/json' \
    -d "{\"kind\":\"operator\",\"token\":\"$1\"}" "${@:3}" "$BASE/portal/v1/session"
  tr -d '\r' <"$T_DIR/h" >"$T_DIR/hdr"
}
login "$OFFICE" "$T_DIR/jar" >"$T_DIR/s.json"
check_eq "an operator logs in with their token" "otto office" "$(jq -r '.name + " " + .roles' "$T_DIR/s.json")"
check_grep "the cookie is HttpOnly and SameSite=Strict" "^Set-Cookie: qtsp_session=[A-Za-z0-9_-]+; Path=/; HttpOnly; SameSite=Strict$" "$T_DIR/hdr"
check_not "the cookie does not hold the token in the clear" grep -qF "$OFFICE" "$T_DIR/jar"
CSRF=$(jq -r .csrf "$T_DIR/s.json")
check "the answer carries a CSRF token" test ${#CSRF} -ge 40
ra() { curl -s -o "$T_DIR/rb" -w '%{http_code}' -b "$T_DIR/jar" "$@"; }
check_eq "the cookie with X-QTSP-CSRF reads an RA route" 200 "$(ra -H "X-QTSP-CSRF: $CSRF" "$BASE/ra/v1/certificates?status=on-hold")"
check_eq "the cookie without X-QTSP-CSRF is refused (403)" 403 "$(ra "$BASE/ra/v1/certificates?status=on-hold")"
check_grep "... saying why" "X-QTSP-CSRF" "$T_DIR/rb"
check_eq "the cookie with a wrong X-QTSP-CSRF is refused (403)" 403 "$(ra -H "X-QTSP-CSRF: ${CSRF%?}x" "$BASE/ra/v1/certificates?status=on-hold")"
nid=7501011234
body="{\"given_name\":\"Ivan\",\"surname\":\"Petrov\",\"country\":\"BG\",\"national_id\":\"$nid\",\"email\":\"ivan@example.bg\",\"phone\":\"+359888123456\",\"package\":\"free\"}"
check_eq "a state change without X-QTSP-CSRF changes nothing (403)" 403 "$(ra -X POST -H 'Content-Type: application/json' -d "$body" "$BASE/ra/v1/subjects")"
check_eq "... the office role still decides (enrolment: 403 by role)" 403 "$(ra -X POST -H "X-QTSP-CSRF: $CSRF" -H 'Content-Type: application/json' -d "$body" "$BASE/ra/v1/subjects")"
check_eq "nobody was enrolled" 0 "$(curl -s -H "Authorization: Bearer $OFFICE" "$BASE/ra/v1/subjects?national_id=$nid" | jq '.subjects | length')"
check_eq "GET /portal/v1/session gives the session back (reloaded page)" "$CSRF" "$(curl -s -b "$T_DIR/jar" "$BASE/portal/v1/session" | jq -r .csrf)"
check_eq "a wrong operator token does not log in (401)" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"kind":"operator","token":"qtsp_nothing"}' "$BASE/portal/v1/session")"
check_eq "an unknown field is refused (400)" 400 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"kind\":\"operator\",\"token\":\"$OFFICE\",\"x\":1}" "$BASE/portal/v1/session")"
check_eq "an unknown kind is refused (400)" 400 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "{\"kind\":\"root\",\"token\":\"$OFFICE\"}" "$BASE/portal/v1/session")"
# a forged or altered cookie
jar_val=$(awk '$6 == "qtsp_session" {print $7}' "$T_DIR/jar")
flip=$(printf '%s' "$jar_val" | sed 's/^\(.\{40\}\)\(.\)/\1\2/' | awk '{c=substr($0,41,1); r=(c=="A")?"B":"A"; print substr($0,1,40) r substr($0,42)}')
check_eq "an altered cookie does not open (401)" 401 "$(curl -s -o "$T_DIR/rb" -w '%{http_code}' -H "Cookie: qtsp_session=$flip" -H "X-QTSP-CSRF: $CSRF" "$BASE/ra/v1/certificates?status=on-hold")"
check_eq "a made-up cookie does not open (401)" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: qtsp_session=AAAA" "$BASE/portal/v1/session")"
# Secure: only when a trusted proxy says the client came over TLS
login "$OFFICE" "$T_DIR/jar2" -H 'X-Forwarded-Proto: https' >/dev/null
check_not "X-Forwarded-Proto from an untrusted peer does not make it Secure" grep -q "Secure" "$T_DIR/hdr"
login "$OFFICE" "$T_DIR/jar3" --interface 127.0.0.2 -H 'X-Forwarded-Proto: https' -H 'X-Real-IP: 192.0.2.7' >/dev/null
check_grep "through the trusted proxy with X-Forwarded-Proto https: Secure" "^Set-Cookie: qtsp_session=.*; HttpOnly; SameSite=Strict; Secure$" "$T_DIR/hdr"
# every call renews the activity; idle past the timeout ends the session
for _ in 1 2 3; do sleep 2; ra -c "$T_DIR/jar" -H "X-QTSP-CSRF: $CSRF" "$BASE/ra/v1/certificates?status=on-hold" >"$T_DIR/st"; done
check_eq "calls 2 s apart keep the session (idle timeout 4 s)" 200 "$(cat "$T_DIR/st")"
sleep 5
check_eq "after 5 s idle the session has ended (401)" 401 "$(ra -H "X-QTSP-CSRF: $CSRF" "$BASE/ra/v1/certificates?status=on-hold")"
check_grep "... saying so" "inactivity" "$T_DIR/rb"
login "$OFFICE" "$T_DIR/jar" >"$T_DIR/s.json"
CSRF=$(jq -r .csrf "$T_DIR/s.json")
check_eq "log out without X-QTSP-CSRF is refused (403)" 403 "$(curl -s -o /dev/null -w '%{http_code}' -b "$T_DIR/jar" -X DELETE "$BASE/portal/v1/session")"
curl -s -D "$T_DIR/h" -o /dev/null -b "$T_DIR/jar" -X DELETE -H "X-QTSP-CSRF: $CSRF" "$BASE/portal/v1/session"
check_grep "log out removes the cookie" "^Set-Cookie: qtsp_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0" <(tr -d '\r' <"$T_DIR/h")
check_grep "the session key is the home's secret (0600)" "^-rw-------" <(ls -l "$H/secrets/portal.key")

# ---- 2. the browser ------------------------------------------------------
if [[ ${QTSP_PORTAL_BROWSER:-1} == 1 ]]; then
  # the pages at the shipped idle timeout (a person reads between clicks)
  rc=0; stop_server || rc=$?
  check_eq "SIGTERM exits 0" 0 "$rc"
  cp "$TOP/policies/portal.yaml" "$H/policies/portal.yaml"
  check "the server starts again (idle timeout 15m)" start_server "$H" --listen "127.0.0.1:$PORT"
  BASE=http://127.0.0.1:$PORT
  lock_sum=$(cat "$TOP/tests/browser/package.json" "$TOP/tests/browser/package-lock.json" | sha256sum | cut -c1-16)
  NPMDIR=${XDG_CACHE_HOME:-$HOME/.cache}/qtsp-browser/$lock_sum
  if [[ ! -f $NPMDIR/node_modules/.qtsp-ok ]]; then
    rm -rf "$NPMDIR"; mkdir -p "$NPMDIR"
    cp "$TOP/tests/browser/package.json" "$TOP/tests/browser/package-lock.json" "$NPMDIR/"
    (cd "$NPMDIR" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error) >"$T_DIR/npm.log" 2>&1 &&
      touch "$NPMDIR/node_modules/.qtsp-ok"
  fi
  check "npm ci installed playwright-core and axe-core from the lock file" test -f "$NPMDIR/node_modules/.qtsp-ok" || cat "$T_DIR/npm.log"
  check_eq "web/vendor/qrcode-generator.mjs is the locked npm package's" \
    "$(sha256sum <"$NPMDIR/node_modules/qrcode-generator/dist/qrcode.mjs")" "$(sha256sum <"$TOP/web/vendor/qrcode-generator.mjs")"
  SHOTS=${QTSP_TEST_LOGS:-$T_DIR}/portal-screenshots-$(basename "$(dirname "$QTSP_BIN")")
  mkdir -p "$SHOTS"
  rm -f "$SHOTS"/*.png # this run's only
  cp "$TOP/tests/browser/portal.mjs" "$NPMDIR/portal.mjs"
  printf '%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>\nendobj\n4 0 obj\n<< /Length 44 >>\nstream\nBT /F1 24 Tf 72 700 Td (Hello qtsp) Tj ET\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n' >"$T_DIR/raw.pdf"
  qpdf "$T_DIR/raw.pdf" "$T_DIR/doc.pdf" >/dev/null 2>&1
  PDF_SHA256=$(sha256sum <"$T_DIR/doc.pdf" | cut -c1-64)
  # pdfsig trusts our root through an NSS db
  NSSDB=$T_DIR/nss
  mkdir -p "$NSSDB"
  certutil -N -d "sql:$NSSDB" --empty-password >/dev/null 2>&1
  certutil -A -d "sql:$NSSDB" -n qtsp-root -t "CT,C,C" -i "$H/public/root-ca.crt"
  SIGNDOC=0
  "$QTSP_BIN" serve --home "$H" --routes >"$T_DIR/routes.txt" 2>/dev/null
  grep -q "^POST /csc/v2/signatures/signDoc$" "$T_DIR/routes.txt" && SIGNDOC=1
  DOCUMENTS=0
  grep -q "^GET /api/v1/documents$" "$T_DIR/routes.txt" && DOCUMENTS=1
  CHROMIUM=${CHROMIUM:-/usr/lib/chromium/chromium}
  [[ -x $CHROMIUM ]] || CHROMIUM=$(command -v chromium)
  BASE=$BASE SHOTS=$SHOTS CHROMIUM=$CHROMIUM OFFICER=$OFFICER OFFICE=$OFFICE HOTLINE=$HOTLINE \
    AUDITOR=$AUDITOR T_DIR=$T_DIR PDF_SHA256=$PDF_SHA256 SIGNDOC=$SIGNDOC DOCUMENTS=$DOCUMENTS NSSDB=$NSSDB ROOT=$H/public/root-ca.crt ISSUING=$H/public/issuing-ca.crt OTP_WINDOW=2 timeout 400 node "$NPMDIR/portal.mjs" >"$T_DIR/browser.log" 2>&1
  echo "browser: exit $?"
  while IFS= read -r line; do
    case $line in
    "ok   - "*) pass "browser: ${line#ok   - }" ;;
    "FAIL - "*) fail "browser: ${line#FAIL - }" ;;
    "skip - "*) echo "$line" ;;
    esac
  done <"$T_DIR/browser.log"
  grep -q "^browser done$" "$T_DIR/browser.log" && pass "the browser test ran to its end" || { fail "the browser test ran to its end"; tail -20 "$T_DIR/browser.log"; }
  # the signer's session with curl: /api/v1/quota through the cookie
  if [[ -f $T_DIR/activation.json ]]; then
    ctok=$(curl -s -u "$(jq -r .user "$T_DIR/activation.json"):$(jq -r .password "$T_DIR/activation.json")" -X POST "$BASE/csc/v2/auth/login" | jq -r '.access_token // empty')
    curl -s -c "$T_DIR/sjar" -H 'Content-Type: application/json' \
      -d "{\"kind\":\"signer\",\"user\":\"$(jq -r .user "$T_DIR/activation.json")\",\"token\":\"$ctok\"}" "$BASE/portal/v1/session" >"$T_DIR/ss.json"
    SCSRF=$(jq -r .csrf "$T_DIR/ss.json")
    check_eq "the signer's portal session reads GET /api/v1/quota (cookie + X-QTSP-CSRF)" "200 practical" \
      "$(curl -s -o "$T_DIR/q.json" -w '%{http_code}' -b "$T_DIR/sjar" -H "X-QTSP-CSRF: $SCSRF" "$BASE/api/v1/quota") $(jq -r .package "$T_DIR/q.json")"
    check_eq "... not without X-QTSP-CSRF (403)" 403 "$(curl -s -o /dev/null -w '%{http_code}' -b "$T_DIR/sjar" "$BASE/api/v1/quota")"
  fi
  # the PDF signed in the browser (pdfsig accepted it there, before the
  # termination): after it, the signature still verifies and pdfsig, asking
  # our OCSP responder, finds the certificate revoked
  check_eq "serve --routes lists signDoc and the archive" "1 1" "$SIGNDOC $DOCUMENTS"
  if [[ $SIGNDOC == 1 ]]; then
    check "the browser downloaded the signed PDF and the archived copy" test -s "$T_DIR/downloads/signed.pdf" -a -s "$T_DIR/downloads/archived.pdf"
    pdfsig -nssdir "sql:$NSSDB" "$T_DIR/downloads/signed.pdf" >"$T_DIR/pdfsig.txt" 2>&1
    check_grep "pdfsig after the termination: the signature still verifies" "Signature Validation: Signature is Valid" "$T_DIR/pdfsig.txt"
    check_grep "pdfsig after the termination: the certificate is revoked (our OCSP)" "Certificate Validation: Certificate has been Revoked" "$T_DIR/pdfsig.txt"
  fi
  echo "screenshots: $SHOTS"
  # a screenshot of each page (and state) the browser visited
  shots="login login-bg enrol activation signer-overview documents-empty sign sign-done sign-spent documents password hotline sign-held office office-terminate signer-revoked audit office-phone"
  for shot in $shots; do
    check "screenshot of the $shot page saved" test -s "$SHOTS/$shot.png"
  done
fi

rc=0; stop_server || rc=$?
check_eq "SIGTERM exits 0" 0 "$rc"
finish
