#!/usr/bin/env bash
# Installs what qtsp needs, builds it (normal and ASan+UBSan), runs every unit
# and integration test, and ends with one line "N passed, N failed".
# Exit 0 only if everything passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)

scripts/deps.sh || { echo "installing Debian packages failed"; echo "0 passed, 1 failed"; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)

build() { # dir, extra cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" "$@" >"$dir.cmake.log" 2>&1 || { cat "$dir.cmake.log"; return 1; }
  cmake --build "$dir" -j"$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\]' || true
  [[ -x "$dir/qtsp" ]]
}
mkdir -p build build-asan
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
build build-asan -DCMAKE_BUILD_TYPE=Debug -DQTSP_SANITIZE=ON || { echo "sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }

pass=0 fail=0
failed_names=()
count() { # name, output file, exit code
  local name=$1 out=$2 rc=$3 line p f
  line=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [[ -z $line ]]; then
    p=0 f=1
  else
    read -r p _ f _ <<<"${line//,/}"
    ((rc != 0 && f == 0)) && f=1
  fi
  pass=$((pass + p)); fail=$((fail + f))
  ((f > 0)) && failed_names+=("$name")
  printf '%-40s %s passed, %s failed\n' "$name" "$p" "$f"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logs=$(mktemp -d /tmp/qtsp-testlogs-XXXXXX)
for variant in build build-asan; do
  for t in "$variant"/tests/test_*; do
    [[ -x $t ]] || continue
    name="$variant/$(basename "$t")"
    out="$logs/$(basename "$variant")-$(basename "$t").log"
    (cd "$logs" && timeout 300 "$top/$t") >"$out" 2>&1
    rc=$?
    count "$name" "$out" $rc
    ((rc != 0)) && tail -n 40 "$out"
  done
done

# the real binary, then the sanitizer build of it (a memory error in the
# server aborts it and fails the checks that follow)
for variant in build build-asan; do
  export QTSP_BIN="$top/$variant/qtsp"
  for t in tests/integration/test_*.sh; do
    [[ -f $t ]] || continue
    out="$logs/$variant-$(basename "$t").log"
    timeout 600 bash "$t" >"$out" 2>&1
    rc=$?
    count "$variant/integration/$(basename "$t")" "$out" $rc
    ((rc != 0)) && tail -n 60 "$out"
  done
done

echo "logs: $logs"
if ((${#failed_names[@]})); then
  echo "failing: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
((fail == 0))
