# Shared by the bench scripts: build, a throw-away home, the server, and
# percentile helpers. Figures go to stdout as "name: value" lines.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QTSP=${QTSP_BIN:-$ROOT/build/qtsp}
if [[ ! -x $QTSP ]]; then
  cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$ROOT/build" --target qtsp -j"$(nproc)" >/dev/null
fi
B_DIR=$(mktemp -d "${BENCH_TMP:-/tmp}/qtsp-bench-XXXXXX")
B_PID=
B_BASE=
cleanup() { [[ -n $B_PID ]] && kill -KILL "$B_PID" 2>/dev/null; rm -rf "$B_DIR"; }
trap cleanup EXIT
[[ -n ${BENCH_KEEP:-} ]] && trap - EXIT

b_init() { # home
  "$QTSP" init --home "$1" >/dev/null 2>&1
  sed -i 's/require_sync: true/require_sync: false/' "$1/policies/tsa.yaml"
}
b_serve() { # home
  "$QTSP" serve --home "$1" --listen 127.0.0.1:0 >"$B_DIR/serve.out" 2>"$B_DIR/serve.err" &
  B_PID=$!
  for _ in $(seq 1 400); do
    grep -q '^listening on ' "$B_DIR/serve.out" 2>/dev/null && break
    sleep 0.05
  done
  B_BASE=$(sed -n 's/^listening on //p' "$B_DIR/serve.out")
  [[ -n $B_BASE ]] || { cat "$B_DIR/serve.err"; exit 1; }
}
b_stop() {
  [[ -n $B_PID ]] || return 0
  kill -TERM "$B_PID"; wait "$B_PID" || true; B_PID=
}
b_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
# percentile P (0..100) of the numbers in file (one per line)
b_pct() { sort -n "$2" | awk -v p="$1" '{a[NR]=$1} END {i=int((p/100)*NR+0.999); if(i<1)i=1; if(i>NR)i=NR; print a[i]}'; }
