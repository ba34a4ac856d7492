#!/usr/bin/env bash
# Builds the local control plane from Go modules (no Docker, no downloads but the Go module
# proxy): etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok.
# Binaries land in $SALVE_CACHE/bin/<component>-<version>; an existing binary is reused, so
# only the first run is slow. Prints the bin directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${SALVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/salve}
bin="$cache/bin"
work="$cache/gowork"
mkdir -p "$bin" "$work"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

build_k8s() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=() c
  for c in "${want[@]}"; do [ -x "$bin/$c-$K8S_VERSION" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local mod="$work/k8s-$K8S_VERSION" minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  mkdir -p "$mod"
  if [ ! -f "$mod/.ready" ]; then
    log "resolving k8s.io/kubernetes@$K8S_VERSION"
    local gomod staging_ver
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
    # ./staging/...; a wrapper module points every one at its published v0.X.Y instead.
    staging_ver="v0.${K8S_VERSION#v1.}"
    {
      echo "module salve.dev/cluster/k8s"
      grep -E '^(go|godebug) ' "$gomod"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      grep -E '=> \./staging/' "$gomod" | awk -v v="$staging_ver" '{print "replace " $1 " => " $1 " " v}'
    } > "$mod/go.mod"
    (cd "$mod" && for c in "${want[@]}"; do go get -tool "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"; done)
    touch "$mod/.ready"
  fi
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  for c in "${missing[@]}"; do
    log "building $c $K8S_VERSION (slow the first time)"
    (cd "$mod" && go build -trimpath -tags selinux,notest -ldflags "$ldflags" -o "$bin/$c-$K8S_VERSION.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$bin/$c-$K8S_VERSION.tmp" "$bin/$c-$K8S_VERSION"
  done
}

build_etcd() {
  [ -x "$bin/etcd-$ETCD_VERSION" ] && return 0
  local mod="$work/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && { [ -f go.mod ] || go mod init salve.dev/cluster/etcd >/dev/null 2>&1; } \
    && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    && go build -trimpath -ldflags "-s -w" -o "$bin/etcd-$ETCD_VERSION.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd-$ETCD_VERSION.tmp" "$bin/etcd-$ETCD_VERSION"
}

build_kwok() {
  if [ ! -x "$bin/kwok-$KWOK_VERSION" ]; then
    log "building kwok $KWOK_VERSION"
    local tmp; tmp=$(mktemp -d)
    GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    mv "$tmp/kwok" "$bin/kwok-$KWOK_VERSION"; rmdir "$tmp"
  fi
  # The stage definitions (what kwok does to fake pods) ship in the module, not the binary.
  local stages="$cache/kwok-stages-$KWOK_VERSION"
  if [ ! -d "$stages" ]; then
    local dir; dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$stages.tmp"
    cp -r "$dir/kustomize/stage/." "$stages.tmp/"
    chmod -R u+w "$stages.tmp"
    mv "$stages.tmp" "$stages"
  fi
}

start=$(date +%s)
build_etcd
build_kwok
build_k8s
log "done in $(( $(date +%s) - start ))s; $(du -sh "$bin" | cut -f1) of binaries"
echo "$bin"
