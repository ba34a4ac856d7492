#!/usr/bin/env bash
# The demo: salve's main job, end to end, on a real local control plane.
#
#   real Alertmanager ──webhook──▶ salve webhook ──▶ Incident ──▶ salve operator ──▶ Job
#        ▲                                                            │ (kube-controller-manager
#        └──────────── SalveEscalated / "is it still firing?" ◀───────┘  + kwok run the Job pod)
#
# Three alerts are posted to Alertmanager the way Prometheus would post them:
#   1. NodeFilesystemSpaceFillingUp on web-3  → low risk: decided by the rules, run at once,
#      verified against Alertmanager once the alert clears → Resolved.
#   2. PostgresqlDown for cluster orders-db    → high risk: waits for a human. bob (not an
#      approver) is refused by the API server; alice approves → runs → Resolved.
#   3. KubePodCrashLooping                     → no catalog entry: escalated at once, and posted
#      back to Alertmanager as SalveEscalated so the usual on-call route pages someone.
#
# The operator, the webhook and Alertmanager are stopped at the end; the control plane keeps
# running so you can look around (`make cluster-down` stops it). Logs: $SALVE_CLUSTER_DIR/demo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export SALVE_CLUSTER_DIR=${SALVE_CLUSTER_DIR:-$repo/.cluster}
bin=${SALVE_BIN:-$repo/target/release/salve}
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make build' (make demo does)" >&2; exit 1; }
am_bin=/usr/bin/prometheus-alertmanager
[ -x "$am_bin" ] || { echo "demo: $am_bin is missing; run 'make deps'" >&2; exit 1; }

if "$here/cluster/status.sh" >/dev/null 2>&1; then
  echo "[demo] reusing the running control plane in $SALVE_CLUSTER_DIR"
else
  "$here/cluster/up.sh"
fi
set -a; source "$SALVE_CLUSTER_DIR/env"; set +a
ns=salve-demo
k() { "$SALVE_KUBECTL" "$@"; }
kn() { "$SALVE_KUBECTL" -n "$ns" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

state="$SALVE_CLUSTER_DIR/demo"
rm -rf "$state"; mkdir -p "$state"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

# wait_for <seconds> <what> <command…>: polls until the command succeeds.
wait_for() {
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "demo: timed out after ${secs}s waiting for $what" >&2
  echo "--- operator log (tail)"; tail -20 "$state/operator.log" >&2 || true
  echo "--- webhook log (tail)"; tail -20 "$state/webhook.log" >&2 || true
  exit 1
}
phase_is() { [ "$(kn get inc "$1" -o jsonpath='{.status.phase}')" = "$2" ]; }
inc_of() { kn get inc -l "salve.dev/alertname=$1" -o jsonpath='{.items[0].metadata.name}'; }
has_inc() { [ -n "$(inc_of "$1" 2>/dev/null)" ]; }

say "salve's CRDs and the approval policy (only group salve-approvers may approve or cancel)"
k apply --server-side --field-manager salve-demo -f "$repo/crds/" >/dev/null
k wait --for condition=Established crd/incidents.salve.dev crd/playbookcatalogs.salve.dev --timeout=30s
if k get namespace "$ns" >/dev/null 2>&1; then
  echo "  (removing the previous run's namespace $ns)"
  k delete namespace "$ns" --wait=true --timeout=120s >/dev/null
fi
k create namespace "$ns" >/dev/null
k apply --server-side --field-manager salve-demo -f "$repo/charts/salve/files/approval-policy.yaml" >/dev/null
k apply --server-side --field-manager salve-demo -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: salve-approvals, namespace: $ns}
data: {approverGroup: salve-approvers}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: salve-approvals-demo}
spec:
  policyName: salve-approvals
  validationActions: [Deny]
  paramRef: {name: salve-approvals, parameterNotFoundAction: Deny}
  matchResources:
    namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: $ns}}
---
# alice (salve-approvers) and bob (developers) may both edit incidents as far as RBAC goes;
# the admission policy is what stops bob from approving.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: incident-editor, namespace: $ns}
rules:
- {apiGroups: [salve.dev], resources: [incidents], verbs: [get, list, watch, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: incident-editor, namespace: $ns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: incident-editor}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: salve-approvers}
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: developers}
---
# What the remediation Jobs mount: the Ansible inventory (an SSH key Secret would sit beside it).
apiVersion: v1
kind: Secret
metadata: {name: salve-inventory, namespace: $ns}
stringData:
  hosts: |
    [web]
    web-3 ansible_host=10.0.3.3
    [db]
    orders-db-1 ansible_host=10.0.4.1
EOF

say "The reviewed catalog (examples/article-catalog.yaml; the demo shortens its waits)"
sed -e "s/namespace: default/namespace: $ns/" -e 's/stabilizationSeconds: [0-9]*/stabilizationSeconds: 10/' \
  -e 's/^\( *\)approvalTimeoutSeconds: 1800/&\n\1verify: {stabilizationSeconds: 10}/' \
  "$repo/examples/article-catalog.yaml" | k apply --server-side --field-manager salve-demo -f - >/dev/null
run kn get pbc

say "Starting Alertmanager, the salve webhook and the salve operator (logs in $state)"
am_port=$(port); hook_port=$(port); metrics_port=$(port)
head -c 32 /dev/urandom | base64 | tr -d '\n/+=' > "$state/webhook-token"
chmod 600 "$state/webhook-token"
cat > "$state/alertmanager.yml" <<EOF
route:
  receiver: salve
  group_by: [alertname, instance, cluster]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
  - {matchers: ['alertname="SalveEscalated"'], receiver: on-call}
receivers:
- name: on-call        # your pager would be here
- name: salve
  webhook_configs:
  - url: http://127.0.0.1:$hook_port/alert
    send_resolved: true
    http_config:
      authorization: {type: Bearer, credentials_file: $state/webhook-token}
EOF
"$am_bin" --config.file="$state/alertmanager.yml" --storage.path="$state/am-data" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= >"$state/alertmanager.log" 2>&1 &
pids+=($!)
am="http://127.0.0.1:$am_port"
wait_for 20 "Alertmanager" curl -fsS "$am/-/ready"

"$bin" webhook --namespace "$ns" --listen "127.0.0.1:$hook_port" \
  --token-file "$state/webhook-token" --alertmanager-url "$am" >"$state/webhook.log" 2>&1 &
pids+=($!)
wait_for 20 "the webhook" curl -fsS "http://127.0.0.1:$hook_port/readyz"

"$bin" operator --namespace "$ns" --metrics-addr "127.0.0.1:$metrics_port" \
  --runner-image ghcr.io/salve-dev/salve-runner:0.1.0 --alertmanager-url "$am" \
  --escalate-to-alertmanager >"$state/operator.log" 2>&1 &
pids+=($!)
wait_for 20 "the operator" curl -fsS "http://127.0.0.1:$metrics_port/readyz"
wait_for 30 "the operator to check the catalog" bash -c "$SALVE_KUBECTL -n $ns get pbc article -o jsonpath='{.status.conditions[0].reason}' | grep -q ."
kn get pbc article -o jsonpath='  catalog: {.status.conditions[0].reason} — {.status.conditions[0].message}{"\n"}'
echo "  alertmanager $am   webhook http://127.0.0.1:$hook_port/alert   operator metrics http://127.0.0.1:$metrics_port/metrics"

# post_alert <json labels> [endsAt]: what Prometheus does (Alertmanager API v2).
post_alert() {
  local ends=${2:-}
  local body
  body=$(python3 - "$1" "$ends" <<'PY'
import json, sys, datetime
labels = json.loads(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
alert = {"labels": labels,
         "annotations": {"summary": f"{labels['alertname']} (salve demo)"},
         "startsAt": (now - datetime.timedelta(minutes=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
         "generatorURL": "http://prometheus.local/graph?g0.expr=up&g0.tab=1"}
if sys.argv[2]:
    alert["endsAt"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
print(json.dumps([alert]))
PY
)
  curl -fsS -X POST -H 'Content-Type: application/json' --data "$body" "$am/api/v2/alerts"
}
disk='{"alertname":"NodeFilesystemSpaceFillingUp","instance":"web-3:9100","mountpoint":"/","severity":"warning","job":"node"}'
db='{"alertname":"PostgresqlDown","cluster":"orders-db","instance":"orders-db-1:9187","severity":"critical"}'
crash='{"alertname":"KubePodCrashLooping","namespace":"shop","pod":"cart-7d9f-x2x","severity":"warning"}'

say "Prometheus fires three alerts into Alertmanager"
post_alert "$disk"; post_alert "$db"; post_alert "$crash"
echo "  posted: NodeFilesystemSpaceFillingUp, PostgresqlDown, KubePodCrashLooping"
wait_for 30 "the webhook to create the incidents" bash -c "[ \$($SALVE_KUBECTL -n $ns get inc -o name | wc -l) -ge 3 ]"
disk_inc=$(inc_of NodeFilesystemSpaceFillingUp); db_inc=$(inc_of PostgresqlDown); crash_inc=$(inc_of KubePodCrashLooping)

say "Low risk: decided by the rules, run at once (kube-controller-manager + kwok run the Job)"
wait_for 60 "the disk incident to run" bash -c "p=\$($SALVE_KUBECTL -n $ns get inc $disk_inc -o jsonpath='{.status.phase}'); [ \"\$p\" = Verifying ] || [ \"\$p\" = Resolved ]"
run kn get jobs -l "salve.dev/incident=$disk_inc"
kn get inc "$disk_inc" -o jsonpath='  {.status.message}{"\n"}'
echo "  After the stabilization time salve asks Alertmanager whether the alert really cleared."
echo "  Meanwhile Prometheus sees the free space and resolves the alert:"
post_alert "$disk" resolved
wait_for 90 "the disk incident to resolve" phase_is "$disk_inc" Resolved
run kn get inc "$disk_inc"

say "No catalog entry: escalated at once, and handed back to Alertmanager's on-call route"
wait_for 30 "the crash-loop incident to escalate" phase_is "$crash_inc" Escalated
kn get inc "$crash_inc" -o jsonpath='  reason: {.status.reason}{"\n"}  message: {.status.message}{"\n"}'
wait_for 30 "SalveEscalated in Alertmanager" bash -c "curl -fsS '$am/api/v2/alerts?filter=alertname%3D%22SalveEscalated%22' | grep -q SalveEscalated"
curl -fsS "$am/api/v2/alerts?filter=alertname%3D%22SalveEscalated%22" | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    print("  Alertmanager now has:", a["labels"]["alertname"], {k: v for k, v in a["labels"].items() if k != "alertname"})'

say "High risk: the database failover waits for a human"
wait_for 30 "the db incident to wait for approval" phase_is "$db_inc" AwaitingApproval
kn get inc "$db_inc" -o jsonpath='  {.status.message}{"\n"}'
echo "  bob (group developers) tries to approve:"
run "$SALVE_KUBECTL" --kubeconfig "$SALVE_KUBECONFIG_BOB" -n "$ns" annotate inc "$db_inc" \
  salve.dev/approve=true salve.dev/approved-by=bob 2>&1 | sed 's/^/  /' || true
echo "  alice (group salve-approvers) approves, naming herself as the API server sees her:"
run "$SALVE_KUBECTL" --kubeconfig "$SALVE_KUBECONFIG_ALICE" -n "$ns" annotate inc "$db_inc" \
  salve.dev/approve=true salve.dev/approved-by=alice "salve.dev/reason=replica lag checked, go"
wait_for 60 "the failover to run" bash -c "p=\$($SALVE_KUBECTL -n $ns get inc $db_inc -o jsonpath='{.status.phase}'); [ \"\$p\" = Verifying ] || [ \"\$p\" = Resolved ]"
kn get inc "$db_inc" -o jsonpath='  {.status.message}{"\n"}'
post_alert "$db" resolved
wait_for 90 "the db incident to resolve" phase_is "$db_inc" Resolved

say "The trail an SRE reads in the morning"
run kn get inc
echo
echo "  history of $db_inc:"
kn get inc "$db_inc" -o jsonpath='{range .status.history[*]}    {.at}  {.from} → {.to}  [{.reason}] {.message}{"\n"}{end}'
kn get inc "$db_inc" -o jsonpath='    approved by {.status.approval.approvedBy}: {.status.approval.reason}{"\n"}'
echo
run kn get events --field-selector involvedObject.kind=Incident --sort-by=.lastTimestamp -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message
echo
echo "  operator metrics (excerpt):"
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^salve_operator_(transitions|jobs_created|api_writes|stale_status_writes)' | sed 's/^/    /'

say "Done. salve's processes are stopped; the control plane keeps running:"
echo "  export KUBECONFIG=$KUBECONFIG"
echo "  $SALVE_KUBECTL -n $ns get inc,pbc,jobs"
echo "  make cluster-down    # stop it"
