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
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_target() {
  "$go" test -run '^$' -fuzz "^${2}\$" -fuzztime "$fuzztime" "$1" 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

# stalled says whether the last run of a target failed only by its
# coordinator's deadline: the message is there and no new input is saved.
stalled() {
  grep -q 'context deadline exceeded' "$log" &&
    [ -z "$(git status --porcelain --untracked-files=all -- "$1/testdata/fuzz/$2")" ]
}

while IFS= read -r file; do
  dir=./$(dirname "$file")
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file"); do
    echo "== $target ($dir, $fuzztime)"
    if run_target "$dir" "$target"; then
      continue
    fi
    # go test's coordinator can give up waiting for a busy worker when the
    # time is over ("context deadline exceeded") without any input having
    # failed: then nothing new is in the target's corpus folder. That run
    # is repeated once; a second stall, or any saved input, fails.
    if stalled "$dir" "$target"; then
      echo "fuzz: $target stalled at its deadline with no failing input; running it again" >&2
      if run_target "$dir" "$target"; then
        continue
      fi
    fi
    echo "fuzz: $target failed; the input is in $dir/testdata/fuzz/$target/" >&2
    status=1
  done
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | sort)
exit $status
