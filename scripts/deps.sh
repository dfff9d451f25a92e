#!/usr/bin/env bash
# Installs the Debian 12 packages qtsp needs to build, run and test.
# As root: apt-get install. Otherwise: prints the one command to run and fails
# if anything is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl openssl
  libssl-dev libmicrohttpd-dev liblmdb-dev lmdb-utils libyaml-dev libp11-dev libp11-kit-dev
  softhsm2 opensc libcunit1-dev libjansson-dev liboath-dev libargon2-dev libcurl4-openssl-dev
  gnutls-bin wrk nginx-light procps jq xxd
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "qtsp: missing Debian packages; run:" >&2
  echo "sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
