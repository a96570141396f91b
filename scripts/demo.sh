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

# An example as a Git repository: one commit of what is in the tree now.
example=course
[ "$clusters" -gt 1 ] && example=federation
repo="$dir/$example.git"
rm -rf "$repo"
mkdir -p "$repo"
cp -R "$root/examples/$example/." "$repo/"
git -C "$repo" init -q -b main
git -C "$repo" add .
git -C "$repo" -c user.name=gitk8s-demo -c user.email=demo@gitk8s.invalid commit -q -m "$example manifests"

status=0
if [ "$example" = course ]; then
  echo "== gitk8s apply $repo --wait 3m"
  "$root/bin/gitk8s" apply "$repo" --kubeconfig "$kubeconfig" --wait 3m || status=$?
  look="$bin/kubectl get all,pvc,ingress,backups -n course"
else
  echo "== gitk8s apply $repo --clusters clusters.yaml --wait 3m (KubeFed format, $clusters clusters)"
  "$root/bin/gitk8s" apply "$repo" --kubeconfig "$kubeconfig" --clusters "$root/examples/federation/clusters.yaml" --wait 3m || status=$?
  look="$bin/kubectl --context local-3 get deploy,cm -n shop"
fi

cat <<MSG

Look around:   KUBECONFIG=$kubeconfig $look
Run it again:  make demo CLUSTERS=$clusters   (the second run reports every object unchanged)
Stop it:       make demo-down
MSG
exit $status
