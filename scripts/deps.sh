#!/usr/bin/env bash
# Installs the Debian 12 packages qtsp needs to build, run and test.
# As root (or with password-less sudo): apt-get install, its output kept in a
# log that is shown only on failure. Otherwise: prints the one command to run
# and fails if anything is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl openssl
  libssl-dev libmicrohttpd-dev liblmdb-dev lmdb-utils libyaml-dev libp11-dev libp11-kit-dev
  softhsm2 opensc libcunit1-dev libjansson-dev liboath-dev libargon2-dev libcurl4-openssl-dev
  libutf8proc-dev libqpdf-dev qpdf poppler-utils libnss3-tools
  libxml2-dev libzip-dev xmlsec1 xmlstarlet unzip # XAdES, ASiC and their outside verifiers
  liburing-dev # the HTTP fast lane writes a round's answers in one submission
  gnutls-bin wrk nginx-light procps iproute2 jq xxd clang-format
  oathtool # TOTP codes in tests/integration/test_csc.sh
  clang libclang-rt-dev # the fuzzers: clang and its libFuzzer runtime
  chromium # the portal's browser tests (tests/browser, playwright-core)
)
# node and npm run the OpenAPI 3.1 validator of tests/integration/test_openapi.sh
# (pinned by tests/openapi/package-lock.json); a node already installed from
# elsewhere is used as it is
command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || PKGS+=(nodejs npm)

missing_pkgs() {
  local p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

mapfile -t missing < <(missing_pkgs)
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "qtsp: missing Debian packages; run:" >&2
  echo "sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "qtsp: installing ${#missing[@]} Debian packages: ${missing[*]}"
log=$(mktemp "${TMPDIR:-/tmp}/qtsp-apt-XXXXXX")
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
  -o Acquire::Retries=3 -o Dpkg::Use-Pty=0)
if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } \
  >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "qtsp: apt-get failed; full output in $log" >&2
  exit 1
fi
mapfile -t still < <(missing_pkgs)
if ((${#still[@]})); then
  echo "qtsp: still missing after apt-get: ${still[*]}; apt output in $log" >&2
  exit 1
fi
rm -f "$log"
echo "qtsp: packages installed"
