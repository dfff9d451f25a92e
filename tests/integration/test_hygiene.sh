#!/usr/bin/env bash
# Build hygiene (style.md): banned C functions, headers that compile on
# their own, every C file formatted by the committed .clang-format, no
# private key material or PINs in the repository.
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
src=$(git ls-files 'core/*.[ch]' 'ca/*.[ch]' 'ra/*.[ch]' 'ocsp/*.[ch]' 'tsa/*.[ch]' 'sign/*.[ch]' 'cmd/*.[ch]')
for fn in strcpy strcat sprintf vsprintf atoi atol strtok gmtime localtime gets; do
  hits=$(grep -nE "(^|[^a-zA-Z0-9_])$fn\(" $src | grep -v '^\s*/\?\*' || true)
  check_eq "no $fn() in product code" "" "$hits"
done
for h in $(git ls-files '*.h'); do
  check "$h compiles on its own" bash -c "echo '#include \"$h\"' | cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I. -I/usr/include/p11-kit-1 -I/usr/include/libxml2 -fsyntax-only -x c -"
done
# every C file follows the committed .clang-format (style.md rule 11)
if command -v clang-format >/dev/null 2>&1; then
  for f in $(git ls-files '*.c' '*.h'); do
    check "$f follows .clang-format" clang-format --dry-run --Werror "$f"
  done
else
  check "clang-format is installed (scripts/deps.sh)" false
fi
# the OCSP fuzzer carries two fixed test-only keys so its seed corpus stays valid
check_not "no PEM private key committed outside the fuzzers" git grep -lE "BEGIN (EC |RSA |ENCRYPTED )?PRIVATE KEY" -- ':!tests/integration/test_hygiene.sh' ':!tests/fuzz/'
finish
