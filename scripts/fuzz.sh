#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz/ for SECONDS each (default 60),
# from its committed seed corpus (tests/fuzz/corpus/<name>/, copied: what the
# fuzzer finds stays in the work folder), and prints one line per target
# with its executions. Builds build-fuzz/ first (clang, libFuzzer,
# ASan+UBSan). Exit 0 only when every target ran clean; a crash, leak or
# sanitizer report leaves its artifact and log in the work folder.
#   usage: scripts/fuzz.sh [SECONDS] [NAME...]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
secs=${1:-60}
shift $(($# > 0 ? 1 : 0))
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [NAME...]" >&2; exit 2; }
jobs=$(nproc 2>/dev/null || echo 2)
((jobs > 2)) && jobs=2
mkdir -p build-fuzz
if ! { cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DQTSP_FUZZ=ON -DQTSP_TESTS=OFF >build-fuzz.cmake.log 2>&1 &&
  cmake --build build-fuzz -j"$jobs" >>build-fuzz.cmake.log 2>&1; }; then
  tail -n 30 build-fuzz.cmake.log
  echo "fuzz build failed"
  exit 1
fi
work=$(mktemp -d /tmp/qtsp-fuzz-XXXXXX)
names=("$@")
((${#names[@]})) || for f in build-fuzz/fuzz/fuzz_*; do [[ -x $f ]] && names+=("$(basename "$f")"); done
bad=0
for name in "${names[@]}"; do
  bin=$top/build-fuzz/fuzz/$name
  [[ -x $bin ]] || { echo "$name: no such fuzzer"; bad=1; continue; }
  corpus=$work/corpus-$name
  mkdir -p "$corpus"
  [[ -d tests/fuzz/corpus/$name ]] && cp tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
  # targets that can write their own valid seeds (fixed test keys) add them
  QTSP_FUZZ_SEEDS=$corpus "$bin" -runs=0 "$corpus" >/dev/null 2>&1
  log=$work/$name.log
  (cd "$work" && timeout $((secs + 120)) "$bin" -max_total_time="$secs" -max_len=4200 -timeout=30 \
    -print_final_stats=1 -artifact_prefix="$work/$name-" "$corpus") >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1)
  if ((rc == 0)) && grep -q '^Done [0-9]* runs' "$log"; then
    printf '%-22s ok    %10s executions in %ss (%s, %s inputs in corpus)\n' "$name" "${runs:-?}" "$secs" \
      "${cov:-cov: ?}" "$(ls "$corpus" | wc -l)"
  else
    printf '%-22s FAIL  (exit %s) log: %s\n' "$name" "$rc" "$log"
    tail -n 30 "$log"
    bad=1
  fi
done
echo "work folder: $work"
exit $bad
