#!/usr/bin/env bash
# Brings the whole cluster up on this host, every component its own process: etcd,
# the apiserver, and whichever other components this build has. State and logs live
# under $CLUSTER_DIR (default ./_cluster); $CLUSTER_DIR/kubeconfig is for `ctl`.
# deploy/local-down.sh stops everything and removes what this script created.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CLUSTER_DIR=${CLUSTER_DIR:-$root/_cluster}
PROFILE=${PROFILE:-release}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-23790}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
API_PORT=${API_PORT:-6443}
API_HTTP_PORT=${API_HTTP_PORT:-6444}
CM_HTTP_PORT=${CM_HTTP_PORT:-10257}
SCHED_HTTP_PORT=${SCHED_HTTP_PORT:-10259}
KUBELET_HTTP_PORT=${KUBELET_HTTP_PORT:-10248}
PROXY_HTTP_PORT=${PROXY_HTTP_PORT:-10256}
CLUSTER_CIDR=${CLUSTER_CIDR:-10.244.0.0/16}
NODE_NAME=${NODE_NAME:-$(hostname | tr 'A-Z_' 'a-z-')}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/12}

mkdir -p "$CLUSTER_DIR"
CLUSTER_DIR=$(cd "$CLUSTER_DIR" && pwd)
logs="$CLUSTER_DIR/logs"
pids="$CLUSTER_DIR/pids"
mkdir -p "$logs" "$pids"

if [ -n "$(ls -A "$pids" 2>/dev/null)" ]; then
  echo "A cluster seems to be running from $CLUSTER_DIR already; run deploy/local-down.sh first." >&2
  exit 1
fi

[ "${SKIP_INSTALL:-}" = 1 ] || deploy/install-deps.sh

echo "Building ($PROFILE)..."
if [ "$PROFILE" = release ]; then
  cargo build --workspace --release --locked
  bin="$root/target/release"
else
  cargo build --workspace --locked
  bin="$root/target/debug"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$API_PORT" "$API_HTTP_PORT" "$CM_HTTP_PORT" "$SCHED_HTTP_PORT" "$KUBELET_HTTP_PORT" "$PROXY_HTTP_PORT"; do
  port_free "$port" || { echo "Port $port on 127.0.0.1 is in use; set the *_PORT variables to free ones." >&2; exit 1; }
done

# start NAME COMMAND...: runs a component in the background with its log and pid file.
start() {
  local name=$1
  shift
  nohup "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name.pid"
}

# wait_for NAME URL: waits until URL answers 200, or shows the log and fails.
wait_for() {
  local name=$1 url=$2
  for _ in $(seq 1 100); do
    if curl -fsS "$url" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$(cat "$pids/$name.pid")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "$name did not become ready; the end of $logs/$name.log:" >&2
  tail -n 30 "$logs/$name.log" >&2
  exit 1
}

echo "Starting etcd on 127.0.0.1:$ETCD_CLIENT_PORT..."
start etcd etcd --name local --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" \
  --experimental-watch-progress-notify-interval 5s
wait_for etcd "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

echo "Starting the apiserver on 127.0.0.1:$API_PORT..."
start apiserver "$bin/apiserver" --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-address "127.0.0.1:$API_PORT" --http-address "127.0.0.1:$API_HTTP_PORT" \
  --service-cluster-ip-range "$SERVICE_CIDR"
wait_for apiserver "http://127.0.0.1:$API_HTTP_PORT/readyz"

cat >"$CLUSTER_DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: http://127.0.0.1:$API_PORT
contexts:
- name: local
  context:
    cluster: local
    user: admin
current-context: local
users:
- name: admin
  user: {}
KUBECONFIG

echo "Starting the controller-manager..."
start controller-manager "$bin/controller-manager" --kubeconfig "$CLUSTER_DIR/kubeconfig" \
  --http-address "127.0.0.1:$CM_HTTP_PORT" --cluster-cidr "$CLUSTER_CIDR"
wait_for controller-manager "http://127.0.0.1:$CM_HTTP_PORT/readyz"

echo "Starting the scheduler..."
start scheduler "$bin/scheduler" --kubeconfig "$CLUSTER_DIR/kubeconfig" \
  --http-address "127.0.0.1:$SCHED_HTTP_PORT"
wait_for scheduler "http://127.0.0.1:$SCHED_HTTP_PORT/readyz"

# The node side runs as root: namespaces, cgroups, the pod bridge and nftables.
if [ "$(id -u)" -eq 0 ]; then
  echo "Building the test images and importing them into the kubelet's store..."
  deploy/images/build-test-images.sh "$CLUSTER_DIR/images" >"$logs/images.log" 2>&1
  "$bin/kubelet" import-image --root-dir "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR"/images/*.oci.tar >>"$logs/images.log" 2>&1

  echo "Starting the kubelet (node $NODE_NAME)..."
  start kubelet "$bin/kubelet" --kubeconfig "$CLUSTER_DIR/kubeconfig" --hostname-override "$NODE_NAME" \
    --root-dir "$CLUSTER_DIR/kubelet" --cluster-cidr "$CLUSTER_CIDR" --http-address "127.0.0.1:$KUBELET_HTTP_PORT"
  wait_for kubelet "http://127.0.0.1:$KUBELET_HTTP_PORT/healthz"

  echo "Starting kube-proxy..."
  start kube-proxy "$bin/kube-proxy" --kubeconfig "$CLUSTER_DIR/kubeconfig" --hostname-override "$NODE_NAME" \
    --cluster-cidr "$CLUSTER_CIDR" --http-address "127.0.0.1:$PROXY_HTTP_PORT"
  wait_for kube-proxy "http://127.0.0.1:$PROXY_HTTP_PORT/readyz"
else
  echo "Not root: skipping the kubelet and kube-proxy (they need namespaces, cgroups and nftables)."
fi

ctl="$bin/ctl --kubeconfig $CLUSTER_DIR/kubeconfig"
echo
echo "The cluster at work:"
$ctl version
$ctl apply -f "$root/deploy/examples/demo.yaml"
if [ "$(id -u)" -eq 0 ]; then
  echo "Waiting for the demo's pods to run..."
  $ctl wait --for=condition=Ready pods -l app=web -n demo --timeout=120s || true
fi
$ctl get nodes
$ctl get configmaps,services,endpoints -n demo
$ctl get replicasets,pods -n demo -o wide
pod_ip=$($ctl get pods -n demo -l app=web -o 'jsonpath={.items[0].status.podIP}' 2>/dev/null || true)
if [ -n "$pod_ip" ]; then
  echo
  echo "A demo pod answers at its IP ($pod_ip, on this host's pod bridge):"
  curl -fsS --max-time 5 "http://$pod_ip:8080/" || echo "(no answer yet)"
fi

cat <<DONE

The cluster is up. State and logs: $CLUSTER_DIR
  export KUBECONFIG=$CLUSTER_DIR/kubeconfig
  $bin/ctl get namespaces
  curl http://127.0.0.1:$API_HTTP_PORT/metrics
Stop it with deploy/local-down.sh.
DONE
