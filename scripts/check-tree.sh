#!/usr/bin/env bash
# Fails when a tracked file is larger than the limit: built binaries, test
# binaries and profiles belong in .gitignore, not in the history.
set -euo pipefail
limit_kib=${1:-2048}
cd "$(dirname "$0")/.."
status=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(du -k "$f" | cut -f1)
  if [ "$size" -gt "$limit_kib" ]; then
    echo "tracked file $f is ${size} KiB (limit ${limit_kib} KiB): remove it with git rm --cached and ignore it" >&2
    status=1
  fi
done < <(git ls-files -z)
exit $status
