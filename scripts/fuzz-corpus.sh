#!/usr/bin/env bash
# Copies what the fuzzers found into the committed corpora: for each fuzz
# target, the inputs in Go's fuzz cache that its testdata/fuzz/<target>/
# does not hold yet, smallest first, until that folder holds MAX files.
# Run it after a longer fuzzing session (scripts/fuzz.sh 10m), review and
# commit the new files; each one runs in every go test from then on.
#
#   scripts/fuzz-corpus.sh [MAX]   (default 45)
set -euo pipefail
max=${1:-45}
go=${GO:-go}
cd "$(dirname "$0")/.."
module=$("$go" list -m)
cache=$("$go" env GOCACHE)/fuzz
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file"); do
    from=$cache/$module/$dir/$target
    to=$dir/testdata/fuzz/$target
    [ -d "$from" ] || continue
    mkdir -p "$to"
    have=$(find "$to" -type f | wc -l)
    added=0
    while IFS= read -r input; do
      [ "$have" -lt "$max" ] || break
      name=$(basename "$input")
      [ -e "$to/$name" ] && continue
      cp "$input" "$to/$name"
      have=$((have + 1)) added=$((added + 1))
    done < <(find "$from" -type f -printf '%s %p\n' | sort -n | cut -d' ' -f2-)
    echo "$target: $added added, $have in $to"
  done
done < <(git ls-files --cached --others --exclude-standard -- '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(f \*testing\.F)' | sort)
