#!/usr/bin/env bash
# Runs a command against the local control plane and stops it afterwards:
#   tests/with-cluster.sh cargo test --workspace
# If a control plane is already running in $SALVE_CLUSTER_DIR (e.g. `make cluster-up`), it is
# reused and left running. Fails if the command fails or if any component crashed meanwhile.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${SALVE_CLUSTER_DIR:-$here/../.cluster}
owned=1
if "$here/cluster/status.sh" >/dev/null 2>&1; then
  owned=0
  echo "[with-cluster] reusing the running control plane in $dir" >&2
else
  "$here/cluster/up.sh" || exit 1
  trap '"$here/cluster/down.sh" || true' EXIT INT TERM
fi
set -a; source "$dir/env"; set +a
"$@"; rc=$?
if ! "$here/cluster/status.sh" >/dev/null; then
  echo "a control-plane component crashed during the run:" >&2
  "$here/cluster/status.sh" >&2
  rc=1
fi
if [ $owned -eq 1 ]; then
  trap - EXIT INT TERM
  "$here/cluster/down.sh" || rc=1
fi
exit $rc
