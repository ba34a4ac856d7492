#!/usr/bin/env bash
# Runs a command against a fresh local control plane and always stops it afterwards:
#   tests/with-cluster.sh cargo test --workspace
# Fails if the command fails or if any control-plane component crashed meanwhile.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/cluster/up.sh" || exit 1
trap '"$here/cluster/down.sh" || true' EXIT INT TERM
set -a; source "${SALVE_CLUSTER_DIR:-$here/../.cluster}/env"; set +a
"$@"; rc=$?
if ! "$here/cluster/status.sh" >/dev/null; then
  echo "a control-plane component crashed during the run:" >&2
  "$here/cluster/status.sh" >&2
  rc=1
fi
trap - EXIT INT TERM
"$here/cluster/down.sh" || rc=1
exit $rc
