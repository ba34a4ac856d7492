#!/usr/bin/env bash
# Builds helm from Go modules (the Go module proxy, nothing else) at the version pinned in
# tests/cluster/versions.env, into $SALVE_CACHE/bin/helm-<version>. An existing binary is
# reused, so only the first run is slow (~1-2 min). Prints the binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../cluster/versions.env
source "$here/../cluster/versions.env"
: "${HELM_VERSION:?HELM_VERSION missing from tests/cluster/versions.env}"
cache=${SALVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/salve}
bin="$cache/bin"
out="$bin/helm-$HELM_VERSION"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
start=$(date +%s)
log "building helm $HELM_VERSION from helm.sh/helm/v3 (slow the first time)"
dir=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
# What helm's own Makefile stamps in: the version, and the Kubernetes version that `helm lint`
# and `helm template` assume without a cluster (client-go's minor, major 0 -> 1).
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$dir/go.mod")
k8s_minor=$(echo "$client_go" | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for p in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$k8s_minor"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$tmp/helm" version --short >/dev/null
mv "$tmp/helm" "$out"
log "done in $(( $(date +%s) - start ))s: $("$out" version --short)"
echo "$out"
