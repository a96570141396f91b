#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded time each: the
# functions named Fuzz* in *_test.go files, found in the source so that a
# new target is run without being listed anywhere. A failing input is
# written to the target's testdata/fuzz/ folder, as go test does; commit
# it with the fix.
#
#   scripts/fuzz.sh [FUZZTIME]     (default 15s; a duration or Nx)
set -euo pipefail
fuzztime=${1:-15s}
go=${GO:-go}
cd "$(dirname "$0")/.."
status=0
while IFS= read -r file; do
  dir=./$(dirname "$file")
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file"); do
    echo "== $target ($dir, $fuzztime)"
    if ! "$go" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir"; then
      echo "fuzz: $target failed; the input is in $dir/testdata/fuzz/$target/" >&2
      status=1
    fi
  done
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | sort)
exit $status
