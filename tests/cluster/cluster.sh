#!/usr/bin/env bash
# weir's test cluster: upstream etcd + kube-apiserver + kube-controller-manager (v1.36, built from
# the Go module proxy by ./go), and the pod runner, which plays kubelet and scheduler for one Node
# and starts Pods as local processes. See README.md beside this file.
#
#   cluster.sh build           build (or reuse) the control-plane binaries; prints their folder
#   cluster.sh start           start a cluster; prints the admin kubeconfig's path (last line)
#   cluster.sh stop            stop it: every process by its recorded PID, then its network
#   cluster.sh env             print the cluster's variables (export lines) for a shell
#   cluster.sh pause           stop the control plane (etcd, API server, controller-manager),
#                              keeping its data and the pods
#   cluster.sh resume          start the control plane again on the same address, with its data
#   cluster.sh clean           remove the build cache
#
# Environment:
#   WEIR_CLUSTER_CACHE  cache of built binaries (default ~/.cache/weir-cluster)
#   WEIR_CLUSTER_RUN    this cluster's run folder (default $WEIR_CLUSTER_CACHE/run); one per
#                       cluster running side by side
#   WEIR_POD_RUNNER     the pod runner binary (default: target/debug/weir-pod-runner of this
#                       checkout, or of $CARGO_TARGET_DIR); WEIR_POD_RUNNER=none starts no runner
#   WEIR_BINARY         the weir binary that pods of the chart's image run (default: beside the
#                       pod runner)
#   WEIR_IMAGES         comma list of image repositories that run weir (default: weir)
#   APISERVER_ARGS      extra kube-apiserver flags (space separated)
#   START_TIMEOUT       seconds to wait for each component (default 90)
#
# Network: each cluster gets an index K (1-199) and the network 10.244.K.0/24 of its own: the
# control plane listens on 10.244.K.1, the host end of a veth pair into the network namespace
# weir-K, whose end is 10.244.K.2 (the Node's address) and where 10.244.K.128-254 are the Pods'
# addresses (local there, routed from the host through the veth). Nothing listens on another
# address; nothing leaves the machine. (Pods cannot be on 127.0.0.0/8: the API server refuses
# loopback addresses in EndpointSlices.)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
K8S_VERSION=v1.36.3
CACHE=${WEIR_CLUSTER_CACHE:-$HOME/.cache/weir-cluster}
RUN=${WEIR_CLUSTER_RUN:-$CACHE/run}
TIMEOUT=${START_TIMEOUT:-90}
NODE=weir-node
log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# --- build -----------------------------------------------------------------------------------

build_key() {
  cat "$HERE/go/go.mod" "$HERE/go/go.sum" "$HERE/go/etcd/main.go" | sha256sum | cut -c1-12
}

bin_dir() { echo "$CACHE/bin/$K8S_VERSION-$(build_key)"; }

build() {
  local dir; dir=$(bin_dir)
  if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kube-controller-manager" ] && [ -x "$dir/etcd" ]; then
    log "up to date: $dir"; echo "$dir"; return
  fi
  command -v go >/dev/null || die "go is needed (Go 1.26 with the module proxy)"
  local t0=$SECONDS pkg=k8s.io/component-base/version
  # What `kubectl version` and helm's kubeVersion check read; upstream sets these at release.
  local ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=36
    -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z
    -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  log "building kube-apiserver, kube-controller-manager and etcd ($K8S_VERSION) into $dir"
  mkdir -p "$dir.tmp"
  (cd "$HERE/go" && go build -trimpath -ldflags "$ldflags" -o "$dir.tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./etcd)
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  log "built in $((SECONDS - t0)) s"
  echo "$dir"
}

# --- processes, by PID -----------------------------------------------------------------------

# A recorded PID is ours only while it still runs the program we started (PIDs are reused).
alive() {
  local name=$1 pid
  pid=$(cat "$RUN/$name.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(cat "$RUN/$name.cmd")"
}

launch() { # name program args...
  local name=$1; shift
  echo "$1" >"$RUN/$name.cmd"
  "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

halt() { # name [seconds before KILL]
  local name=$1 wait=${2:-15} pid i
  alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  pid=$(cat "$RUN/$name.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < wait * 10; i++)); do
    alive "$name" || break
    sleep 0.1
  done
  if alive "$name"; then log "$name did not stop in ${wait}s: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  rm -f "$RUN/$name.pid"
}

wait_for() { # what command...
  local what=$1 i; shift
  for ((i = 0; i < TIMEOUT * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what not ready in ${TIMEOUT}s (logs in $RUN)"
}

# --- network ---------------------------------------------------------------------------------

# Index K of this cluster's network, taken under a lock so clusters started side by side differ.
# A claim records the run folder and the PID of the `start` that made it; a K whose `start` has
# ended and whose components are all gone (a test that died) is taken back.
claim_index() {
  mkdir -p "$CACHE/net"
  exec 9>"$CACHE/net/.lock"
  flock 9
  local k owner starter
  for ((k = 1; k < 200; k++)); do
    [ -f "$CACHE/net/$k" ] || { echo "$RUN $$" >"$CACHE/net/$k"; break; }
    read -r owner starter <"$CACHE/net/$k" || true
    [ "$owner" = "$RUN" ] && { echo "$RUN $$" >"$CACHE/net/$k"; break; }
    if ! claim_alive "$owner" "$starter"; then
      teardown_net "$k"
      echo "$RUN $$" >"$CACHE/net/$k"
      break
    fi
  done
  exec 9>&-
  [ "$k" -lt 200 ] || die "no free cluster network (see $CACHE/net)"
  echo "$k"
}

claim_alive() { # run-folder starter-pid
  local run=$1 starter=$2 name pid
  if [ -n "$starter" ] && [ -r "/proc/$starter/cmdline" ] &&
    tr '\0' ' ' <"/proc/$starter/cmdline" | grep -q "cluster.sh start"; then
    return 0
  fi
  for name in etcd apiserver controller-manager runner; do
    pid=$(cat "$run/$name.pid" 2>/dev/null) || continue
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && return 0
  done
  return 1
}

teardown_net() {
  local k=$1
  ip link del "weir$k" 2>/dev/null || true
  ip netns del "weir-$k" 2>/dev/null || true
  rm -f "$CACHE/net/$k"
}

setup_net() {
  local k=$1 ns=weir-$1 host=weir$1 peer=weir$1-n
  command -v ip >/dev/null || die "ip (iproute2) is needed"
  ip link del "$host" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip link add "$host" type veth peer name "$peer"
  ip link set "$peer" netns "$ns"
  ip addr add "10.244.$k.1/24" dev "$host"
  ip link set "$host" up
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$ns" ip addr add "10.244.$k.2/24" dev "$peer"
  ip netns exec "$ns" ip link set "$peer" up
  # Every Pod address is local in the namespace without one `ip addr` each; so is a range for
  # load-balancer addresses (a Gateway's, a LoadBalancer Service's) that pods may bind.
  ip netns exec "$ns" ip route add local "10.244.$k.128/25" dev lo
  ip route replace "10.244.$k.128/25" via "10.244.$k.2" dev "$host"
  ip netns exec "$ns" ip route add local "10.244.$k.64/26" dev lo
  ip route replace "10.244.$k.64/26" via "10.244.$k.2" dev "$host"
}

# --- certificates and kubeconfigs --------------------------------------------------------------

pki() {
  local ip=$1 d=$RUN/pki
  mkdir -p "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=weir-test-cluster-ca" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$d/ca.crt" 2>/dev/null
  issue apiserver "/CN=kube-apiserver" serverAuth \
    "subjectAltName=IP:$ip,IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  issue admin "/O=system:masters/CN=weir-test-admin" clientAuth
  issue controller-manager "/CN=system:kube-controller-manager" clientAuth
  issue scheduler "/CN=system:kube-scheduler" clientAuth
  issue node "/O=system:nodes/CN=system:node:$NODE" clientAuth
  # Service-account tokens: signed by the API server, verified by it; the controller-manager
  # signs the legacy ones.
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
  openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  for who in admin controller-manager scheduler node; do
    kubeconfig "$who" "https://$ip:6443" >"$RUN/$who.kubeconfig"
  done
}

issue() { # name subject usage [extension]
  local d=$RUN/pki name=$1 subj=$2 usage=$3 ext=${4:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
  {
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$ext" ] && echo "$ext"
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm -f "$d/$name.csr" "$d/$name.ext"
}

kubeconfig() { # who server
  local d=$RUN/pki
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-test
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(base64 -w0 "$d/$1.crt")
    client-key-data: $(base64 -w0 "$d/$1.key")
contexts:
- name: $1
  context: { cluster: weir-test, user: $1, namespace: default }
current-context: $1
EOF
}

# --- components --------------------------------------------------------------------------------

start_control_plane() {
  local bin ip; bin=$(cat "$RUN/bin"); ip=$(cat "$RUN/ip")
  mkdir -p "$RUN/etcd"
  launch etcd "$bin/etcd" --data-dir "$RUN/etcd" \
    --listen-client-url "http://$ip:2379" --listen-peer-url "http://$ip:2380"
  wait_for etcd curl -sf "http://$ip:2379/health"

  cat >"$RUN/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
# One line per request once answered, and one when a watch starts: who, what, and the
# authorizer's decision.
omitStages: [RequestReceived]
rules:
- level: Metadata
EOF
  local pki=$RUN/pki
  # shellcheck disable=SC2086
  launch apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://$ip:2379" \
    --bind-address="$ip" --advertise-address="$ip" --secure-port=6443 \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true --profiling=false \
    --audit-policy-file="$RUN/audit-policy.yaml" --audit-log-path="$RUN/audit.log" \
    --audit-log-format=json ${APISERVER_ARGS:-}
  wait_for "kube-apiserver" curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
    --key "$pki/admin.key" "https://$ip:6443/readyz"

  launch controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$RUN/controller-manager.kubeconfig" \
    --secure-port=0 --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --controllers=deployment-controller,replicaset-controller,endpointslice-controller,endpointslice-mirroring-controller,endpoints-controller,serviceaccount-controller,serviceaccount-token-controller,namespace-controller,garbage-collector-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller,disruption-controller,clusterrole-aggregation-controller
  # Ready once it has made the default namespace's ServiceAccount.
  wait_for "kube-controller-manager" default_service_account
}

default_service_account() {
  local ip; ip=$(cat "$RUN/ip")
  curl -sf --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key" \
    "https://$ip:6443/api/v1/namespaces/default/serviceaccounts/default" >/dev/null
}

pod_runner_binary() {
  if [ -n "${WEIR_POD_RUNNER:-}" ]; then echo "$WEIR_POD_RUNNER"; return; fi
  echo "${CARGO_TARGET_DIR:-$ROOT/target}/debug/weir-pod-runner"
}

start_runner() {
  local runner k ip; runner=$(pod_runner_binary); k=$(cat "$RUN/k"); ip=$(cat "$RUN/ip")
  [ "$runner" = none ] && { log "no pod runner (WEIR_POD_RUNNER=none)"; return; }
  [ -x "$runner" ] || die "no pod runner at $runner: cargo build -p weir-pod-runner (or set WEIR_POD_RUNNER)"
  local weir=${WEIR_BINARY:-$(dirname "$runner")/weir} images=() img
  IFS=, read -ra imgs <<<"${WEIR_IMAGES:-weir}"
  for img in "${imgs[@]}"; do images+=(--weir-image "$img"); done
  mkdir -p "$RUN/pods"
  launch runner "$runner" node \
    --kubeconfig "$RUN/node.kubeconfig" --scheduler-kubeconfig "$RUN/scheduler.kubeconfig" \
    --node-name "$NODE" --node-ip "10.244.$k.2" --netns "weir-$k" \
    --pod-ips "10.244.$k.128-10.244.$k.254" \
    --apiserver "https://$ip:6443" --ca-file "$RUN/pki/ca.crt" \
    --weir-binary "$weir" "${images[@]}" --state-dir "$RUN/pods"
  wait_for "the pod runner's Node" node_ready
}

node_ready() {
  local ip; ip=$(cat "$RUN/ip")
  curl -sf --cacert "$RUN/pki/ca.crt" --cert "$RUN/pki/admin.crt" --key "$RUN/pki/admin.key" \
    "https://$ip:6443/api/v1/nodes/$NODE" | grep -q '"type": *"Ready"'
}

write_env() {
  local k ip; k=$(cat "$RUN/k"); ip=$(cat "$RUN/ip")
  cat >"$RUN/env" <<EOF
export KUBECONFIG=$RUN/admin.kubeconfig
export WEIR_CLUSTER_RUN=$RUN
export WEIR_CLUSTER_APISERVER=https://$ip:6443
export WEIR_CLUSTER_HOST_IP=$ip
export WEIR_CLUSTER_NODE_IP=10.244.$k.2
export WEIR_CLUSTER_NETNS=weir-$k
export WEIR_CLUSTER_AUDIT_LOG=$RUN/audit.log
export WEIR_CLUSTER_LB_RANGE=10.244.$k.64-10.244.$k.127
EOF
}

start() {
  if alive apiserver; then log "already running"; echo "$RUN/admin.kubeconfig"; return; fi
  local t0=$SECONDS bin k
  bin=$(build)
  mkdir -p "$RUN"
  rm -rf "$RUN/etcd" "$RUN/pods" "$RUN"/*.log
  echo "$bin" >"$RUN/bin"
  k=$(claim_index)
  echo "$k" >"$RUN/k"
  echo "10.244.$k.1" >"$RUN/ip"
  # Whatever fails from here on leaves nothing running.
  trap 'log "start failed; stopping"; stop >/dev/null 2>&1' EXIT
  setup_net "$k"
  pki "10.244.$k.1"
  start_control_plane
  start_runner
  write_env
  trap - EXIT
  log "cluster $k up in $((SECONDS - t0)) s: API server https://10.244.$k.1:6443 (logs in $RUN)"
  echo "$RUN/admin.kubeconfig"
}

stop() {
  # The runner first: it stops the Pods' processes (TERM, then KILL) before it exits.
  halt runner 20
  halt controller-manager
  halt apiserver 5
  halt etcd
  local k; k=$(cat "$RUN/k" 2>/dev/null) || return 0
  release_index "$k"
  rm -f "$RUN/k"
}

# Tears down K's network if the claim is still ours: once our processes are gone, a `start`
# beside us may already have taken K back (and made its own namespace of that name).
release_index() {
  local k=$1 owner starter
  exec 9>"$CACHE/net/.lock"
  flock 9
  if [ -f "$CACHE/net/$k" ]; then
    read -r owner starter <"$CACHE/net/$k" || true
    [ "$owner" = "$RUN" ] && teardown_net "$k"
  fi
  exec 9>&-
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  env) cat "$RUN/env" ;;
  pause) halt controller-manager; halt apiserver 5; halt etcd ;;
  resume) start_control_plane ;;
  clean) rm -rf "$CACHE/bin" ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
