#!/usr/bin/env bash
# Stops everything deploy/local-up.sh started and removes what it created.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER_DIR=${CLUSTER_DIR:-$(pwd)/_cluster}

if [ ! -d "$CLUSTER_DIR" ]; then
  echo "Nothing to stop: $CLUSTER_DIR does not exist."
  exit 0
fi

# Stop in reverse order of dependency: clients, then the apiserver, then etcd.
for name in controller-manager apiserver etcd; do
  pidfile="$CLUSTER_DIR/pids/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  echo "Stopped $name."
done

rm -rf "$CLUSTER_DIR"
echo "Removed $CLUSTER_DIR."
