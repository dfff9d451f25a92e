#!/usr/bin/env bash
# cmake --install into a DESTDIR + prefix in a temp folder, then the installed
# binary alone: --version, init finds the installed policies (not the build's
# source tree), QTSP_POLICIES_DIR wins, serve answers; the systemd unit and the
# nginx front are installed; --home before or after the verb.
source "$(dirname "$0")/lib.sh"
unset QTSP_TOKEN_PIN QTSP_POLICIES_DIR QTSP_HOME
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(dirname "$QTSP_BIN")
D=$T_DIR/dest PREFIX=/opt/qtsp-test
R=$D$PREFIX

check "cmake --install into DESTDIR=$D, prefix $PREFIX" env DESTDIR="$D" cmake --install "$BUILD" --prefix "$PREFIX"
Q=$R/bin/qtsp
check "the binary is installed" test -x "$Q"
check_eq "every shipped policy is installed" "$(cd "$TOP/policies" && ls ./*.yaml | sort)" "$(cd "$R/share/qtsp/policies" && ls ./*.yaml | sort)"
U=$R/lib/systemd/system/qtsp.service
check "the systemd unit is installed" test -f "$U"
check_grep "the unit starts the installed binary under the prefix" "^ExecStart=$PREFIX/bin/qtsp serve --home /var/lib/qtsp" "$U"
check_grep "the unit checks the configuration first" "^ExecStartPre=$PREFIX/bin/qtsp config check --home /var/lib/qtsp" "$U"
check_grep "the unit reloads with SIGHUP" '^ExecReload=/bin/kill -HUP \$MAINPID' "$U"
if command -v systemd-analyze >/dev/null 2>&1; then
  sed "s|$PREFIX/bin/qtsp|$Q|g" "$U" >"$T_DIR/qtsp.service"
  check "systemd-analyze verify accepts the unit" systemd-analyze verify "$T_DIR/qtsp.service"
else
  pass "systemd-analyze not installed: unit syntax not verified"
fi
check "the nginx front is installed" test -f "$R/share/qtsp/nginx/qtsp.conf" -a -f "$R/share/qtsp/nginx/qtsp/ra-networks.conf"

# --version
check "qtsp --version exits 0" "$Q" --version
check_grep "qtsp --version prints the version" "^qtsp [0-9]+\.[0-9]+\.[0-9]+" <("$Q" --version)
check_grep "qtsp --help lists --version" "qtsp --version" <("$Q" --help)

# init from the installed tree: a marker in the installed crl.yaml reaches the home
echo "# installed-copy-$$" >>"$R/share/qtsp/policies/crl.yaml"
H=$T_DIR/home
check "init with the installed binary" "$Q" init --home "$H"
check_grep "init copied the installed policies (not the source tree's)" "^# installed-copy-$$$" "$H/policies/crl.yaml"
check_not "the source tree has no such marker" grep -q "installed-copy-$$" "$TOP/policies/crl.yaml"
# QTSP_POLICIES_DIR wins
mkdir "$T_DIR/pol" && cp "$TOP"/policies/*.yaml "$T_DIR/pol/" && echo "# env-copy-$$" >>"$T_DIR/pol/crl.yaml"
check "init with QTSP_POLICIES_DIR" env QTSP_POLICIES_DIR="$T_DIR/pol" "$Q" init --home "$T_DIR/home2"
check_grep "QTSP_POLICIES_DIR is used first" "^# env-copy-$$$" "$T_DIR/home2/policies/crl.yaml"
rc=0; QTSP_POLICIES_DIR=$T_DIR/none "$Q" init --home "$T_DIR/home3" >/dev/null 2>"$T_DIR/e3" || rc=$?
check "a missing QTSP_POLICIES_DIR fails init" test "$rc" -ne 0
check_grep "... naming the folder" "$T_DIR/none" "$T_DIR/e3"

# serve with the installed binary
printf 'version: 1\nsize: 0\n' >"$H/policies/keypool.yaml"
QTSP_BIN=$Q
check "the installed binary serves" start_server "$H"
check_eq "/health answers" ok "$(curl -s "$BASE/health")"
check "/certs/root-ca.crt is a DER certificate" bash -c "curl -sf '$BASE/certs/root-ca.crt' | openssl x509 -inform DER -noout"
rc=0; stop_server || rc=$?
check_eq "SIGTERM exits 0" 0 "$rc"

# --home before or after the verb (and --home=DIR)
check "--home before the verb: operator add" "$Q" --home "$H" operator add olga --role auditor
check "--home=DIR before the verb: audit verify" "$Q" --home="$H" audit verify
check "--home after the verb: audit verify" "$Q" audit verify --home "$H"
check_grep "--home before a verb with a sub-verb reaches it" "audit chain ok" <("$Q" --home "$H" audit verify 2>&1)
rc=0; "$Q" --home "$H" >/dev/null 2>"$T_DIR/e4" || rc=$?
check_eq "--home without a verb: usage error (exit 2)" 2 "$rc"
check_grep "... saying so" "needs a value and a verb" "$T_DIR/e4"
rc=0; "$Q" --home >/dev/null 2>&1 || rc=$?
check_eq "--home without a value: usage error (exit 2)" 2 "$rc"
rc=0; (cd "$T_DIR" && "$Q" --home "$T_DIR/absent" audit verify) >/dev/null 2>"$T_DIR/e5" || rc=$?
check "--home before the verb is the home used (absent: fails)" test "$rc" -ne 0
check_grep "... naming it" "$T_DIR/absent" "$T_DIR/e5"
finish
