#!/usr/bin/env bash
# Runs every Ansible test: lints, catalog schemas, and the playbooks executed for real through
# the runner image's entrypoint (salve-run), exactly as the remediation Jobs run them.
#
#   tests/ansible/run.sh              everything
#   tests/ansible/run.sh -k contract  extra args go to pytest (paths relative to tests/ansible)
#
# The Kubernetes playbooks also run against a real local control plane (tests/with-cluster.sh,
# in a private SALVE_CLUSTER_DIR so it never touches a cluster someone else started) when its
# binaries are already built (tests/cluster/build.sh); otherwise those tests skip and say so.
# SALVE_ANSIBLE_CLUSTER=0 never starts it; =1 starts it even if that means building it first.
# Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$("$here/setup.sh" | tail -n 1)
export PATH="$root/images/runner:$venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1 PYTHONDONTWRITEBYTECODE=1

cluster_built() {
  # shellcheck source=tests/cluster/versions.env
  source "$root/tests/cluster/versions.env"
  local bin=${SALVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/salve}/bin c  # as tests/cluster/build.sh
  for c in "etcd-$ETCD_VERSION" "kube-apiserver-$K8S_VERSION" "kube-controller-manager-$K8S_VERSION" \
           "kube-scheduler-$K8S_VERSION" "kubectl-$K8S_VERSION" "kwok-$KWOK_VERSION"; do
    [ -x "$bin/$c" ] || return 1
  done
}

# Paths in the extra args are relative to tests/ansible (pytest runs there).
pytest_cmd=(python -m pytest -p no:cacheprovider -o "testpaths=$here" --rootdir "$here" "$@")
cd "$here"
use_cluster=${SALVE_ANSIBLE_CLUSTER:-auto}
if [ "$use_cluster" = auto ]; then
  if [ -x "$root/tests/with-cluster.sh" ] && cluster_built; then use_cluster=1; else use_cluster=0; fi
fi
if [ "$use_cluster" = 1 ]; then
  cluster_dir=$(mktemp -d "${TMPDIR:-/tmp}/salve-ansible-cluster.XXXXXX")
  export SALVE_PYTEST_LOG="$cluster_dir/pytest.out"
  trap 'rm -rf "$cluster_dir"' EXIT
  echo "[test-ansible] with a private local control plane in $cluster_dir" >&2
  rc=0
  # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
  SALVE_CLUSTER_DIR=$cluster_dir "$root/tests/with-cluster.sh" \
    bash -c '"$@" | tee "$SALVE_PYTEST_LOG"; exit "${PIPESTATUS[0]}"' pytest "${pytest_cmd[@]}" || rc=$?
  # Stopping the control plane logs after pytest; end with pytest's summary line again.
  grep -E '(passed|failed|errors?|skipped|deselected|no tests ran).* in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$SALVE_PYTEST_LOG" | tail -n 1 || true
  exit "$rc"
else
  echo "[test-ansible] without a control plane: the real Kubernetes runs will skip" >&2
  "${pytest_cmd[@]}"
fi
