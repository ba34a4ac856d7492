#!/usr/bin/env bash
# Starts a real local Kubernetes control plane on loopback, no Docker:
#   etcd → kube-apiserver → kube-controller-manager, kube-scheduler, kwok (one fake node).
# Binaries come from build.sh (built from Go modules, cached by version).
#
# State lives in $SALVE_CLUSTER_DIR (default: <repo>/.cluster): certificates, etcd data, one log
# per component, their process-group ids and kubeconfigs:
#   kubeconfig        admin (system:masters)
#   alice.kubeconfig  user "alice", group "salve-approvers"  (may approve/cancel incidents)
#   bob.kubeconfig    user "bob",   group "developers"       (may edit incidents, not approve)
#   env               ports and paths, sourceable
# A second `up.sh` while the cluster runs is a no-op. Stop with down.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
dir=${SALVE_CLUSTER_DIR:-$repo/.cluster}

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -f "$dir/env" ] && "$here/status.sh" >/dev/null 2>&1; then
  log "already running (state in $dir)"
  exit 0
fi
if [ -d "$dir/pids" ] && [ -n "$(ls -A "$dir/pids" 2>/dev/null)" ]; then
  log "leftovers of an earlier run found; stopping them first"
  "$here/down.sh" >/dev/null 2>&1 || true
fi

bin=$("$here/build.sh" | tail -n 1)
for c in "etcd-$ETCD_VERSION" "kube-apiserver-$K8S_VERSION" "kube-controller-manager-$K8S_VERSION" \
         "kube-scheduler-$K8S_VERSION" "kubectl-$K8S_VERSION" "kwok-$KWOK_VERSION"; do
  [ -x "$bin/$c" ] || die "missing binary $bin/$c (build.sh failed?)"
done
stages_src="$(dirname "$bin")/kwok-stages-$KWOK_VERSION"

rm -rf "$dir"
mkdir -p "$dir"/{pki,logs,pids,etcd}
start=$(date +%s)

# ---------------------------------------------------------------- ports (free, loopback)
read -r ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT SCHED_PORT KWOK_PORT < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(6):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

# ---------------------------------------------------------------- certificates
pki="$dir/pki"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 365 \
  -subj "/CN=salve-local-ca" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
# sign NAME SUBJECT EXT
sign() {
  local name=$1 subj=$2 ext=$3
  ossl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj"
  printf '%b' "$ext" > "$pki/$name.ext"
  ossl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$name.crt" -days 365 -extfile "$pki/$name.ext"
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}
client_ext='basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
sign apiserver "/CN=kube-apiserver" \
  'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1\n'
sign admin "/O=system:masters/CN=salve-admin" "$client_ext"
sign kcm "/CN=system:kube-controller-manager" "$client_ext"
sign scheduler "/CN=system:kube-scheduler" "$client_ext"
sign alice "/O=salve-approvers/CN=alice" "$client_ext"
sign bob "/O=developers/CN=bob" "$client_ext"
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # NAME USER → writes $dir/NAME
  cat > "$dir/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: salve-local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: $2@salve-local
  context: {cluster: salve-local, user: $2, namespace: default}
current-context: $2@salve-local
EOF
}
kubeconfig kubeconfig admin
kubeconfig kcm.kubeconfig kcm
kubeconfig scheduler.kubeconfig scheduler
kubeconfig alice.kubeconfig alice
kubeconfig bob.kubeconfig bob

cat > "$dir/env" <<EOF
# Written by tests/cluster/up.sh
SALVE_CLUSTER_DIR=$dir
KUBECONFIG=$dir/kubeconfig
SALVE_KUBECONFIG_ALICE=$dir/alice.kubeconfig
SALVE_KUBECONFIG_BOB=$dir/bob.kubeconfig
SALVE_KUBECTL=$bin/kubectl-$K8S_VERSION
SALVE_API_PORT=$API_PORT
SALVE_ETCD_PORT=$ETCD_PORT
K8S_VERSION=$K8S_VERSION
EOF

# ---------------------------------------------------------------- processes
# Each component runs in its own process group (setsid), so down.sh can stop it and every
# child; its pgid is recorded in pids/NAME. status.sh reports any that died.
launch() { # NAME CMD...
  local name=$1; shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$dir/pids/$name"
}
crashed() { # NAME → prints the tail of its log and fails
  log "$1 exited during start-up; last lines of $dir/logs/$1.log:"
  tail -n 25 "$dir/logs/$1.log" >&2
  "$here/down.sh" >/dev/null 2>&1 || true
  exit 1
}
wait_for() { # NAME SECONDS CHECK...
  local name=$1 secs=$2; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$dir/pids/$name")" 2>/dev/null || crashed "$name"
    [ "$(date +%s)" -lt "$deadline" ] || { log "$name not ready after ${secs}s"; crashed "$name"; }
    sleep 0.3
  done
}
kubectl() { "$bin/kubectl-$K8S_VERSION" --kubeconfig "$dir/kubeconfig" "$@"; }

launch etcd "$bin/etcd-$ETCD_VERSION" --name salve-etcd --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "salve-etcd=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

launch kube-apiserver "$bin/kube-apiserver-$K8S_VERSION" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --secure-port "$API_PORT" --cert-dir "$dir/pki" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
  --endpoint-reconciler-type none --profiling=false --v=1
wait_for kube-apiserver 120 curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
  "https://127.0.0.1:$API_PORT/readyz"

# --kube-api-qps/burst: the default client rate limit (20 QPS) lets the job controller finish
# about one Job a second (each takes ~8 requests), so a burst of remediation Jobs queued for
# minutes in kube-controller-manager alone; a real control plane is sized for its load too.
launch kube-controller-manager "$bin/kube-controller-manager-$K8S_VERSION" \
  --kube-api-qps 200 --kube-api-burst 400 \
  --kubeconfig "$dir/kcm.kubeconfig" --authentication-kubeconfig "$dir/kcm.kubeconfig" \
  --authorization-kubeconfig "$dir/kcm.kubeconfig" --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --authorization-always-allow-paths /healthz,/readyz,/livez,/metrics \
  --leader-elect=false --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
  --use-service-account-credentials=true --cluster-name salve-local --v=1
launch kube-scheduler "$bin/kube-scheduler-$K8S_VERSION" \
  --kubeconfig "$dir/scheduler.kubeconfig" --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/scheduler.kubeconfig" --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" \
  --authorization-always-allow-paths /healthz,/readyz,/livez,/metrics --leader-elect=false --v=1

# kwok: fake node lifecycle plus pod stages (ready → complete for Job pods; a labelled pod fails).
stages="$dir/kwok-stages.yaml"
: > "$stages"
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
         pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml pod/chaos/pod-container-running-failed.yaml; do
  { echo "---"; cat "$stages_src/$f"; } >> "$stages"
done
{ echo "---"; cat "$here/kwok-runner-exit.yaml"; } >> "$stages"
launch kwok "$bin/kwok-$KWOK_VERSION" --kubeconfig "$dir/kubeconfig" --manage-all-nodes=true \
  --config "$stages" --server-address "127.0.0.1:$KWOK_PORT" --node-ip 10.0.1.1

wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
wait_for kube-scheduler 60 curl -fsSk "https://127.0.0.1:$SCHED_PORT/healthz"

kubectl apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: kwok-node-0
    kubernetes.io/os: linux
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "32", memory: 256Gi, pods: "1000"}
EOF
wait_for kwok 60 kubectl wait --for=condition=Ready node/kwok-node-0 --timeout=2s
# Pods need the namespace's default ServiceAccount, created by kube-controller-manager.
wait_for kube-controller-manager 60 kubectl get serviceaccount default -n default

log "up in $(( $(date +%s) - start ))s: https://127.0.0.1:$API_PORT  (KUBECONFIG=$dir/kubeconfig)"
