#!/usr/bin/env bash
# docs/openapi.yaml against the real server:
# 1. it is valid OpenAPI 3.1 (the JSON-schema validator of
#    @seriousme/openapi-schema-validator, pinned by tests/openapi/package-lock.json,
#    installed with `npm ci`; a broken copy is refused, so the check can fail);
# 2. each route the server answers is documented and each documented operation
#    is a route of the server: `qtsp serve --routes` prints the route table the
#    server is built with (API templates expanded, prefix routes as PATH*);
# 3. each documented operation answers on the running server (curl; anything
#    but 405 or the router's own 404 "no such resource"), with an operator
#    token where the operation takes one;
# 4. docs/api.md has a "### METHOD PATH" section with a curl example for each.
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN
TOP=$(cd "$(dirname "$0")/../.." && pwd)
DOC=$TOP/docs/openapi.yaml
APIMD=$TOP/docs/api.md

# the validator: node_modules cached per lock file (npm ci needs the registry once)
lock_sum=$(cat "$TOP/tests/openapi/package.json" "$TOP/tests/openapi/package-lock.json" | sha256sum | cut -c1-16)
NPMDIR=${XDG_CACHE_HOME:-$HOME/.cache}/qtsp-openapi/$lock_sum
if [[ ! -f $NPMDIR/node_modules/.qtsp-ok ]]; then
  rm -rf "$NPMDIR"; mkdir -p "$NPMDIR"
  cp "$TOP/tests/openapi/package.json" "$TOP/tests/openapi/package-lock.json" "$NPMDIR/"
  (cd "$NPMDIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$T_DIR/npm.log" 2>&1 &&
    touch "$NPMDIR/node_modules/.qtsp-ok"
fi
check "npm ci installed the pinned validator" test -f "$NPMDIR/node_modules/.qtsp-ok" || cat "$T_DIR/npm.log"
cp "$TOP/tests/openapi/check.mjs" "$NPMDIR/check.mjs"
oas() { node "$NPMDIR/check.mjs" "$1"; } # FILE -> operations (check.mjs), exit 1 when invalid

# 1. valid OpenAPI 3.1; broken copies are refused
check "docs/openapi.yaml is valid OpenAPI 3.1" oas "$DOC"
oas "$DOC" >"$T_DIR/ops.tsv" 2>"$T_DIR/oas.err"
sed 's/^openapi: 3.1.0$/openapi: 3.1.0\nwebhooks: 5/' "$DOC" >"$T_DIR/bad1.yaml"
check_not "a copy with 'webhooks: 5' is refused" oas "$T_DIR/bad1.yaml"
sed 's/^  title: qtsp$/  titel: qtsp/' "$DOC" >"$T_DIR/bad2.yaml"
check_not "a copy without info.title is refused" oas "$T_DIR/bad2.yaml"
sed 's/^openapi: 3.1.0$/openapi: 3.0.3/' "$DOC" >"$T_DIR/bad3.yaml"
check_not "a copy saying openapi: 3.0.3 is refused (3.1 expected)" oas "$T_DIR/bad3.yaml"
nops=$(wc -l <"$T_DIR/ops.tsv")
check "the document has operations ($nops)" test "$nops" -ge 10

# 2. the server's route table against the document
H=$T_DIR/home
"$QTSP_BIN" init --home "$H" >/dev/null 2>&1 || { echo "init failed"; exit 1; }
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
check "serve --routes lists the routes" "$QTSP_BIN" serve --home "$H" --routes
"$QTSP_BIN" serve --home "$H" --routes >"$T_DIR/routes.txt" 2>"$T_DIR/routes.err"
check_grep "serve --routes lists an RA template" "^POST /ra/v1/certificates/\{serial\}/hold$" "$T_DIR/routes.txt"
check_grep "serve --routes lists a prefix route as PATH*" "^GET /ocsp/\*$" "$T_DIR/routes.txt"
check_grep "serve --routes lists the built-in /metrics" "^GET /metrics$" "$T_DIR/routes.txt"
check_not "serve --routes started no server" grep -q "^listening on" "$T_DIR/routes.txt"

# compare ROUTES OPS: prints "undocumented: ..." / "not served: ..." lines;
# parameter names do not matter ({id} = {serial}); a prefix route PATH*
# covers documented paths under PATH
compare() {
  awk -F'\t' '
    function norm(p) { gsub(/\{[^}]*\}/, "{}", p); return p }
    FNR == NR { split($0, a, " "); m = a[1]; p = a[2]
      if (p ~ /\*$/) { pre[++np] = m " " substr(p, 1, length(p) - 1) } else { ex[m " " norm(p)] = 1 }
      next }
    { op = $1 " " norm($2); docs[op] = 1
      ok = (op in ex)
      for (i = 1; i <= np && !ok; i++) { split(pre[i], b, " ")
        if (b[1] == $1 && index($2, b[2]) == 1 && length($2) > length(b[2])) ok = 1 }
      if (!ok) print "not served: " $1 " " $2 }
    END {
      for (r in ex) if (!(r in docs)) print "undocumented: " r
      for (i = 1; i <= np; i++) { split(pre[i], b, " "); hit = 0
        for (d in docs) { split(d, c, " "); if (c[1] == b[1] && index(c[2], b[2]) == 1) hit = 1 }
        if (!hit) print "undocumented: " pre[i] "*" }
    }' "$1" "$2"
}
compare "$T_DIR/routes.txt" "$T_DIR/ops.tsv" >"$T_DIR/diff.txt"
check_eq "each served route is documented, each documented operation is served" "" "$(cat "$T_DIR/diff.txt")"
# the comparison can fail: a route removed from the document, one added to it
grep -v "/hotline/hold" "$T_DIR/ops.tsv" >"$T_DIR/ops-less.tsv"
check_eq "a served route missing from the document is reported" "undocumented: POST /ra/v1/hotline/hold" "$(compare "$T_DIR/routes.txt" "$T_DIR/ops-less.tsv")"
printf 'DELETE\t/ra/v1/subjects/{id}\tx\t-\t-\n' >>"$T_DIR/ops-less.tsv"
check_grep "a documented operation the server lacks is reported" "^not served: DELETE /ra/v1/subjects/\{id\}$" <(compare "$T_DIR/routes.txt" "$T_DIR/ops-less.tsv")
grep -v "^GET /crl/\*$" "$T_DIR/routes.txt" >"$T_DIR/routes-less.txt"
check_grep "a documented path under no prefix route is reported" "^not served: GET /crl/root.crl$" <(compare "$T_DIR/routes-less.txt" "$T_DIR/ops.tsv")

# 3. each documented operation answers on the running server
OFFICER=$("$QTSP_BIN" operator add --home "$H" olga --role ra-officer)
check "the server starts" start_server "$H"
probe() { # METHOD PROBEPATH SCHEME MEDIA -> "STATUS BODY-START"
  local args=(-s -o "$T_DIR/pbody" -w '%{http_code}' -X "$1" --max-time 30)
  [[ $3 == operatorToken ]] && args+=(-H "Authorization: Bearer $OFFICER")
  if [[ $4 == application/json ]]; then args+=(-H "Content-Type: $4" --data-binary '{}')
  elif [[ $4 != - ]]; then args+=(-H "Content-Type: $4" --data-binary 'x'); fi
  local st
  st=$(curl "${args[@]}" "$BASE$2")
  echo "$st $(head -c 200 "$T_DIR/pbody" | tr -d '\n\0')"
}
routed() { # "STATUS BODY": the router found the route
  [[ $1 != 405* && $1 != 404*'"no such resource'* && $1 != 000* ]]
}
while IFS=$'\t' read -r m tmpl path scheme media; do
  r=$(probe "$m" "$path" "$scheme" "$media")
  if routed "$r"; then pass "$m $tmpl answers (${r%% *})"; else fail "$m $tmpl answers (got: $r)"; fi
done <"$T_DIR/ops.tsv"
# the probe can fail: a path the server lacks
r=$(probe GET /ra/v1/nothing-here operatorToken -)
check_not "an unknown RA path is not taken for a route ($r)" routed "$r"
r=$(probe GET /nothing-here - -)
check_not "an unknown public path is not taken for a route ($r)" routed "$r"
r=$(probe DELETE /tsa - -)
check_not "a known path with another method is not taken for a route ($r)" routed "$r"

# 4. docs/api.md: a section with a curl example per operation
while IFS=$'\t' read -r m tmpl _; do
  sect=$(awk -v h="### $m $tmpl" '$0 == h {on = 1; next} /^##/ {on = 0} on' "$APIMD")
  if grep -q "curl " <<<"$sect"; then pass "docs/api.md: $m $tmpl has a curl example"
  else fail "docs/api.md: no '### $m $tmpl' section with a curl example"; fi
done <"$T_DIR/ops.tsv"
rc=0; stop_server || rc=$?
check_eq "SIGTERM exits 0" 0 "$rc"
finish
