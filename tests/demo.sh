#!/usr/bin/env bash
# The demo: a real local control plane, salve's CRDs and catalog, and real Alertmanager
# payloads turned into Incidents. Leaves the cluster running so you can look around;
# `make cluster-down` stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
"$here/cluster/up.sh"
set -a; source "${SALVE_CLUSTER_DIR:-$repo/.cluster}/env"; set +a
k() { "$SALVE_KUBECTL" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing salve's CRDs (generated from the Rust types)"
k apply --server-side --field-manager salve-demo -f "$repo/crds/"
k wait --for condition=Established crd/incidents.salve.dev crd/playbookcatalogs.salve.dev --timeout=30s

say "Applying the reviewed catalog (examples/article-catalog.yaml)"
k apply --server-side --field-manager salve-demo -f "$repo/examples/article-catalog.yaml"
k get pbc

say "An Incident as the webhook writes it from a real Alertmanager payload"
k apply --server-side --field-manager salve-demo -f "$repo/examples/incident.yaml"
k get inc -o wide

say "The spec is the evidence: the API server refuses to edit it"
k patch inc "$(k get inc -o name | head -1 | cut -d/ -f2)" --type merge \
  -p '{"spec":{"alert":{"labels":{"instance":"prod-db-1:9100"}}}}' 2>&1 | sed 's/^/  /' || true

say "Who may approve: alice (salve-approvers) and bob (developers) have their own kubeconfigs"
echo "  $SALVE_KUBECONFIG_ALICE"
echo "  $SALVE_KUBECONFIG_BOB"

say "Done. The control plane keeps running:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  $SALVE_KUBECTL get inc,pbc"
echo "  make cluster-down    # stop it"
