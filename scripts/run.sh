#!/usr/bin/env bash
# Installs missing packages, builds, creates a demo home with an embedded
# SoftHSM2 token if none exists, and serves everything on 127.0.0.1:8080 in
# the foreground. A second run reuses the home.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target qtsp -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
home=${QTSP_HOME:-$(pwd)/qtsp-home}
if [[ ! -f "$home/qtsp.yaml" ]]; then
  build/qtsp init --home "$home"
else
  echo "reusing $home"
fi
exec build/qtsp serve --home "$home" --listen "${QTSP_LISTEN:-127.0.0.1:8080}"
