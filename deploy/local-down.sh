#!/usr/bin/env bash
# Stops everything deploy/local-up.sh started and removes what it created.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER_DIR=${CLUSTER_DIR:-$(pwd)/_cluster}

if [ ! -d "$CLUSTER_DIR" ]; then
  echo "Nothing to stop: $CLUSTER_DIR does not exist."
  exit 0
fi

bin=""
for profile in release debug; do
  [ -x "target/$profile/kubelet" ] && { bin="target/$profile"; break; }
done

# Stop in reverse order of dependency: clients, then the apiserver, then etcd.
for name in kube-proxy kubelet scheduler controller-manager apiserver etcd; do
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

# The kubelet leaves pods running when it stops (a restarted kubelet re-adopts them):
# remove them and what the node side made (cgroups, mounts, bridge, rules).
if [ "$(id -u)" -eq 0 ] && [ -n "$bin" ]; then
  if [ -d "$CLUSTER_DIR/kubelet" ]; then
    "$bin/kubelet" cleanup --root-dir "$CLUSTER_DIR/kubelet" && echo "Removed the kubelet's pods, bridge and rules."
  fi
  "$bin/kube-proxy" --cleanup && echo "Removed kube-proxy's rules."
fi

rm -rf "$CLUSTER_DIR"
echo "Removed $CLUSTER_DIR."
