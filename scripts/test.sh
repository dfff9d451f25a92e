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
  cmake --build "$dir" -j"$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\]'
  local rc=${PIPESTATUS[0]} # a failed build fails, even over an older binary
  ((rc == 0)) && [[ -x "$dir/qtsp" ]]
}
mkdir -p build build-asan build-fuzz
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
build build-asan -DCMAKE_BUILD_TYPE=Debug -DQTSP_SANITIZE=ON || { echo "sanitizer build failed"; echo "0 passed, 1 failed"; exit 1; }
# the libFuzzer targets (clang, ASan+UBSan); a failed build counts as one failure below
fuzz_built=1
build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQTSP_FUZZ=ON \
  -DQTSP_TESTS=OFF || fuzz_built=0

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

# LeakSanitizer is on: a leak fails the test that made it (third-party
# libraries' own leaks are listed, each with its reason, in tests/lsan.supp)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logs=$(mktemp -d /tmp/qtsp-testlogs-XXXXXX)
export QTSP_TEST_LOGS=$logs # artefacts of the tests (the portal's screenshots)
for variant in build build-asan; do
  for t in "$variant"/tests/test_*; do
    [[ -x $t ]] || continue
    name="$variant/$(basename "$t")"
    out="$logs/$(basename "$variant")-$(basename "$t").log"
    (cd "$logs" && timeout 300 "$top/$t") >"$out" 2>&1
    rc=$?
    count "$name" "$out" $rc
    if ((rc != 0)); then # the failed assertions (CUnit names them), then the end
      grep -A 4 'FAILED$' "$out" | head -n 40
      tail -n 40 "$out"
    fi
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

# each fuzzer runs briefly from its committed seed corpus (tests/fuzz/corpus,
# plus the seeds a target writes itself with its fixed test keys); a crash,
# a leak or a sanitizer report fails it (artifacts stay in the log folder).
# Every target x 15 s: about two minutes in all (scripts/fuzz.sh runs longer).
fuzz_seconds=${QTSP_FUZZ_SECONDS:-15}
seed() { # fuzzer name, binary, corpus dir
  [[ -d tests/fuzz/corpus/$1 ]] && cp tests/fuzz/corpus/"$1"/* "$3"/ 2>/dev/null
  QTSP_FUZZ_SEEDS=$3 "$2" -runs=0 "$3" >/dev/null 2>&1
}
if ((fuzz_built)); then
  for f in build-fuzz/fuzz/fuzz_*; do
    [[ -x $f ]] || continue
    name=$(basename "$f")
    out="$logs/$name.log" corpus="$logs/corpus-$name"
    mkdir -p "$corpus"
    seed "$name" "$top/$f" "$corpus"
    (cd "$logs" && timeout $((fuzz_seconds + 120)) "$top/$f" -max_total_time="$fuzz_seconds" \
      -max_len=4200 -timeout=30 -artifact_prefix="$logs/$name-" "$corpus") >"$out" 2>&1
    rc=$?
    if ((rc == 0)) && grep -q '^Done [0-9]* runs' "$out"; then
      echo "1 passed, 0 failed" >>"$out"
    else
      echo "0 passed, 1 failed" >>"$out"
    fi
    count "fuzz/$name" "$out" $rc
    ((rc != 0)) && tail -n 40 "$out"
  done
else
  echo "0 passed, 1 failed" >"$logs/fuzz-build.log"
  count "build-fuzz (clang, libFuzzer)" "$logs/fuzz-build.log" 1
fi

echo "logs: $logs"
if ((${#failed_names[@]})); then
  echo "failing: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
((fail == 0))
