#!/usr/bin/env bash
# Reports each control-plane component as running or crashed. Exits 1 if any crashed, 2 if
# the cluster is not started. A crash is never hidden: the tail of its log is printed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${SALVE_CLUSTER_DIR:-$repo/.cluster}
[ -d "$dir/pids" ] && [ -n "$(ls -A "$dir/pids" 2>/dev/null)" ] || { echo "cluster not started ($dir)"; exit 2; }
rc=0
for f in "$dir"/pids/*; do
  name=$(basename "$f")
  if kill -0 "$(cat "$f")" 2>/dev/null; then
    echo "running  $name (pgid $(cat "$f"))"
  else
    echo "CRASHED  $name — last lines of $dir/logs/$name.log:"
    tail -n 20 "$dir/logs/$name.log" | sed 's/^/    /'
    rc=1
  fi
done
exit $rc
