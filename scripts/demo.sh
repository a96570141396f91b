#!/usr/bin/env bash
# make demo: start (or reuse) a local control plane, turn examples/course
# into a Git repository and sync it with gitk8s, waiting until every object
# is healthy.
set -euo pipefail
dir=${1:?demo directory}
clusters=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
localcluster() { go run "$root/cmd/localcluster" "$@"; }

if localcluster status -dir "$dir" >/dev/null 2>&1; then
  echo "== reusing the local control plane in $dir"
else
  echo "== starting a local control plane ($clusters cluster(s), 3 fake nodes each)"
  localcluster up -dir "$dir" -bin "$bin" -stages "$root/.cache/kwok-stages.yaml" -clusters "$clusters"
fi
kubeconfig="$dir/kubeconfig"

# The course examples as a Git repository: one commit of what is in the tree now.
repo="$dir/course.git"
rm -rf "$repo"
mkdir -p "$repo"
cp -R "$root/examples/course/." "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" add .
git -C "$repo" -c user.name=gitk8s-demo -c user.email=demo@gitk8s.invalid commit -q -m "course manifests"

echo "== gitk8s apply $repo --wait 3m"
status=0
"$root/bin/gitk8s" apply "$repo" --kubeconfig "$kubeconfig" --wait 3m || status=$?

cat <<MSG

Look around:   KUBECONFIG=$kubeconfig $bin/kubectl get all,pvc,ingress,backups -n course
Run it again:  make demo        (the second run reports every object unchanged)
Stop it:       make demo-down
MSG
exit $status
