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
# The sample application's Services ask for fixed addresses in 192.168.192.0/24.
SERVICE_CIDR=${SERVICE_CIDR:-192.168.192.0/24}
# Where kube-proxy serves the cluster DNS on this node and what pods' resolv.conf names
# (link-local, so it never collides with pod, Service or host networks).
CLUSTER_DNS=${CLUSTER_DNS:-169.254.20.10}

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
    --root-dir "$CLUSTER_DIR/kubelet" --cluster-cidr "$CLUSTER_CIDR" --http-address "127.0.0.1:$KUBELET_HTTP_PORT" \
    --cluster-dns "$CLUSTER_DNS"
  wait_for kubelet "http://127.0.0.1:$KUBELET_HTTP_PORT/healthz"

  echo "Starting kube-proxy..."
  start kube-proxy "$bin/kube-proxy" --kubeconfig "$CLUSTER_DIR/kubeconfig" --hostname-override "$NODE_NAME" \
    --cluster-cidr "$CLUSTER_CIDR" --http-address "127.0.0.1:$PROXY_HTTP_PORT" \
    --cluster-dns-address "$CLUSTER_DNS"
  wait_for kube-proxy "http://127.0.0.1:$PROXY_HTTP_PORT/readyz"
else
  echo "Not root: skipping the kubelet and kube-proxy (they need namespaces, cgroups and nftables)."
fi

ctl="$bin/ctl --kubeconfig $CLUSTER_DIR/kubeconfig"
app="$root/deploy/examples/zhidan"
echo
echo "Deploying the sample application (deploy/examples/zhidan, written for Kubernetes):"
$ctl apply -f "$app/zhidan.namespace.yaml" -f "$app/zhidan.deploy.server.yaml" \
  -f "$app/zhidan.deploy.web.yaml" -f "$app/zhidan.svc.server.yaml"
echo "Its web Service as written is refused, as it should be:"
if $ctl apply -f "$app/zhidan.svc.web.yaml"; then
  echo "(unexpectedly accepted)" >&2
fi
echo "so the corrected copy goes in (deploy/examples/zhidan-web-nodeport.yaml):"
$ctl apply -f "$root/deploy/examples/zhidan-web-nodeport.yaml"

node_ip=""
if [ "$(id -u)" -eq 0 ]; then
  # Its probes wait 60 s before the first check.
  echo "Waiting for its pods to be Ready (the manifests' probes start after 60 s)..."
  $ctl wait --for=condition=Available deployments --all -n zhidan --timeout=180s || true
  node_ip=$($ctl get node "$NODE_NAME" -o 'jsonpath={.status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null || true)
fi
$ctl get nodes -o wide
$ctl get deployments,services,endpoints -n zhidan
$ctl get pods -n zhidan -o wide
if [ -n "$node_ip" ]; then
  # kube-proxy programs a Service's rules a moment after its endpoints turn ready, and
  # the two Services' endpoints turn ready one after the other.
  for url in "http://$node_ip:30810/" "http://192.168.192.73:3000/"; do
    for _ in $(seq 1 50); do
      curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null && break
      sleep 0.2
    done
  done
  echo
  echo "The web front answers on the NodePort (http://$node_ip:30810/):"
  curl -fsS --max-time 5 "http://$node_ip:30810/" || echo "(no answer yet)"
  echo "and on its ClusterIP (http://192.168.192.72:8010/), balanced over its pods:"
  for _ in 1 2 3 4; do curl -fsS --max-time 5 "http://192.168.192.72:8010/" | grep -o '<h1>.*</h1>' || echo "(no answer)"; done
  web_pod=$($ctl get pods -n zhidan -l app=web -o 'jsonpath={.items[0].metadata.name}' 2>/dev/null || true)
  if [ -n "$web_pod" ]; then
    echo "From inside $web_pod, the server by its cluster DNS name (zhidan-server.zhidan.svc.cluster.local:3000):"
    # busybox-static's wget crashes resolving names (static glibc NSS), so the image's
    # nslookup resolves through the cluster DNS and nc speaks HTTP/1.0.
    $ctl exec -n zhidan "$web_pod" -- sh -c 'ip=$(nslookup zhidan-server.zhidan.svc.cluster.local | awk "/^Address: /{a=\$2} END{print a}"); echo "resolved to $ip"; printf "GET / HTTP/1.0\r\n\r\n" | nc -w 5 "$ip" 3000' |
      grep -o '<h1>.*</h1>\|resolved to .*' || echo "(no answer)"
  fi
fi

cat <<DONE

The cluster is up. State and logs: $CLUSTER_DIR
  export KUBECONFIG=$CLUSTER_DIR/kubeconfig
  $bin/ctl get namespaces
  $bin/ctl get all -n zhidan
  curl http://${node_ip:-<node IP>}:30810/        # the sample application's web front
  curl http://127.0.0.1:$API_HTTP_PORT/metrics
Stop it with deploy/local-down.sh.
DONE
