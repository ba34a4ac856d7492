#!/usr/bin/env bash
# Stops every component started by up.sh (whole process groups) and leaves no process behind.
# Exits 1 if a component had crashed before it was asked to stop (after printing its log tail).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${SALVE_CLUSTER_DIR:-$repo/.cluster}
[ -d "$dir/pids" ] || exit 0
rc=0
# Report crashes before stopping anything.
"$here/status.sh" > "$dir/status-at-stop.txt" 2>&1 || { [ $? -eq 1 ] && { cat "$dir/status-at-stop.txt" >&2; rc=1; }; }
# Stop in reverse order of start so clients go before the API server and etcd.
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$dir/pids/$name"; [ -f "$f" ] || continue
  pgid=$(cat "$f")
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
  rm -f "$f"
done
rm -rf "$dir/etcd"
echo "[cluster] stopped (logs kept in $dir/logs)" >&2
exit $rc
