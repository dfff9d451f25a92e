#!/usr/bin/env bash
# Quick start: installs missing packages, builds, creates a demo home with an
# embedded SoftHSM2 token if none exists, prints the next steps and serves
# everything in the foreground. A second run reuses the home.
#
#   scripts/run.sh [--listen HOST:PORT] [--base-url URL] [--home DIR] [--dry-run]
#
# or the same through the environment: QTSP_LISTEN (default 127.0.0.1:8080),
# QTSP_BASE_URL (default: http://HOST:PORT of the listen address; written into
# the certificates' AIA and CRL distribution points when the home is made),
# QTSP_HOME (default ./qtsp-home). QTSP_BIN=PATH uses that binary instead of
# building one. --dry-run prints what would be used and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

listen=${QTSP_LISTEN:-127.0.0.1:8080}
base=${QTSP_BASE_URL:-}
home=${QTSP_HOME:-$(pwd)/qtsp-home}
dry=0
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --listen) listen=${2:?--listen needs HOST:PORT}; shift 2 ;;
    --listen=*) listen=${1#*=}; shift ;;
    --base-url) base=${2:?--base-url needs a URL}; shift 2 ;;
    --base-url=*) base=${1#*=}; shift ;;
    --home) home=${2:?--home needs a folder}; shift 2 ;;
    --home=*) home=${1#*=}; shift ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see scripts/run.sh --help)" >&2; exit 2 ;;
  esac
done
port=${listen##*:}
host=${listen%:*}
if [[ -z $port || $port == "$listen" || ! $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
  echo "run.sh: --listen must be HOST:PORT with a port 1..65535, not '$listen'" >&2
  exit 2
fi
if [[ -z $base ]]; then
  case $host in
    0.0.0.0 | "[::]" | "")
      # every interface: the certificates need a name relying parties can reach
      base="http://$(hostname -f 2>/dev/null || hostname):$port"
      echo "run.sh: warning: listening on every interface; the certificates will name $base (set --base-url to choose)" >&2 ;;
    *) base="http://$host:$port" ;;
  esac
fi
base=${base%/}
if [[ ! $base =~ ^https?://[^/]+$ ]]; then
  echo "run.sh: --base-url must be http(s)://HOST[:PORT] without a path, not '$base'" >&2
  exit 2
fi
if ((dry)); then
  echo "home: $home"
  echo "listen: $listen"
  echo "base_url: $base"
  exit 0
fi

if [[ -n ${QTSP_BIN:-} ]]; then
  qtsp=$QTSP_BIN
else
  scripts/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build --target qtsp -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
  qtsp=$(pwd)/build/qtsp
fi
if [[ ! -f "$home/qtsp.yaml" ]]; then
  "$qtsp" init --home "$home" --base-url "$base"
else
  echo "reusing $home"
  had=$(sed -n 's/^base_url: //p' "$home/qtsp.yaml")
  if [[ $had != "$base" ]]; then
    echo "run.sh: warning: $home was made for $had (its certificates name it); serving on $listen anyway. Use another --home for $base." >&2
    base=$had
  fi
fi

cat <<EOF

== next steps ==
Create an RA operator (prints its bearer token once):
  $qtsp operator add --home $home alice --role ra-officer
Enrol a subject and issue a certificate with it:
  T=<the token>
  curl -s -X POST $base/ra/v1/subjects -H "Authorization: Bearer \$T" -H 'Content-Type: application/json' \\
    -d '{"given_name":"Anna","surname":"Muster","country":"DE","national_id":"12345678","email":"anna@example.de","phone":"+4915112345678","package":"free"}'
  curl -s -X POST $base/ra/v1/subjects/<subject_id>/certificates -H "Authorization: Bearer \$T" -H 'Content-Type: application/json' -d '{}'
Public endpoints: $base/ocsp  $base/tsa  $base/crl/qualified.crl  $base/certs/root-ca.crt
All routes: docs/api.md. Operations: docs/operations.md.

WARNING: demo values. The CA names (O=qtsp demo QTSP, organizationIdentifier NTRBG-000000000),
the certificate policy OID (1.3.6.1.4.1.65535.1.1, a placeholder arc) and the PDS URL
(https://qtsp.example/pds/...) in $home/policies are placeholders: replace them (and make a
new home) before issuing anything for real.

EOF
exec "$qtsp" serve --home "$home" --listen "$listen"
