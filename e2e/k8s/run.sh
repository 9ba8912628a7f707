#!/usr/bin/env bash
# End-to-end on a real cluster: the steps of docs/kubernetes.md with examples/ unmodified
# except the zones, against whatever KUBECONFIG points at. Needs three nodes labelled with three
# different topology.kubernetes.io/zone values, the three images where the nodes can get them
# (scripts/build-images.sh, then a registry or `ctr -n k8s.io images import` on every node),
# kubectl, helm, aws (the CLI) and curl. Without a cluster it prints SKIPPED and exits 0.
#
#   KUBECONFIG=~/.kube/config e2e/k8s/run.sh
#
# Settings (environment):
#   CAIRN_E2E_IMAGE_REGISTRY  image registry (chart value image.registry; default the chart's)
#   CAIRN_E2E_IMAGE_TAG       image tag (image.tag; default the chart's appVersion)
#   CAIRN_E2E_PULL_POLICY     image.pullPolicy (default IfNotPresent; Never for imported images)
#   CAIRN_E2E_NAMESPACE       namespace of the fleet (default cairn-e2e; the operator goes to
#                             NAMESPACE-system); both are deleted at the end
#   CAIRN_E2E_SMALL=1         shrink volumes (2Gi) and resource requests for a small cluster
#   CAIRN_E2E_KEEP=1          leave everything in place (for a look after a failure)
#   CAIRN_E2E_TIMEOUT         seconds to wait for each Ready (default 600)
#
# Steps: helm install the chart; apply examples/objectstore.yaml with the cluster's zones and
# wait for Ready; apply examples/bucket.yaml, wait for Ready, and do an S3 round trip with the
# Bucket's Secret through a port-forward of the S3 Service; apply the lifecycle and replication
# examples and wait for both to be Ready; scale the gateways 1 -> 3 -> 1 (Ready each time, an S3
# round trip at 3) and check that no PodDisruptionBudget of the fleet forbids every disruption;
# delete everything, PVCs and namespaces included. Prints each step's time, then PASSED.
set -euo pipefail
cd "$(dirname "$0")/../.."

skip() {
  echo "SKIPPED: $*"
  exit 0
}
die() {
  echo "FAILED: $*" >&2
  exit 1
}

[ -n "${KUBECONFIG:-}" ] || skip "KUBECONFIG is not set (e2e/k8s/run.sh needs a cluster)"
for tool in kubectl helm aws curl; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
kubectl version --request-timeout=10s >/dev/null 2>&1 || skip "the cluster in KUBECONFIG does not answer"

ns=${CAIRN_E2E_NAMESPACE:-cairn-e2e}
sysns="$ns-system"
timeout=${CAIRN_E2E_TIMEOUT:-600}
store=cairn
work=$(mktemp -d)
pf_pid=""
t_all=$SECONDS

cleanup() {
  local rc=$?
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then
    echo "--- state after the failure"
    kubectl -n "$ns" get objectstores,buckets,lifecyclepolicies,replicationrules,pods,pdb,pvc -o wide 2>&1 || true
    kubectl -n "$ns" get objectstores,buckets,lifecyclepolicies,replicationrules -o yaml 2>&1 | grep -A8 "conditions:" || true
    kubectl -n "$sysns" logs deploy/cairn --tail=50 2>&1 || true
  fi
  if [ "${CAIRN_E2E_KEEP:-}" != 1 ] && [ "$rc" -ne 0 ]; then
    teardown || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo "==> $name"
  "$@"
  echo "<== $name: $((SECONDS - t0))s"
}

# Waits until `kubectl get KIND/NAME` has condition Ready=True, showing its status on timeout.
wait_ready() {
  local what=$1
  if ! kubectl -n "$ns" wait --for=condition=Ready "$what" --timeout="${timeout}s" >/dev/null; then
    kubectl -n "$ns" get "$what" -o jsonpath='{.status}' >&2 || true
    echo >&2
    die "$what not Ready within ${timeout}s"
  fi
}

zones=()
find_zones() {
  mapfile -t zones < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}{end}' | sed '/^$/d' | sort -u)
  [ "${#zones[@]}" -ge 3 ] || die "needs nodes in 3 zones (label topology.kubernetes.io/zone); found: ${zones[*]:-none}"
  zones=("${zones[@]:0:3}")
  echo "zones: ${zones[*]}"
}

install_operator() {
  local args=(upgrade --install cairn charts/cairn --namespace "$sysns" --create-namespace --wait --timeout "${timeout}s")
  if [ -n "${CAIRN_E2E_IMAGE_REGISTRY:-}" ]; then args+=(--set "image.registry=$CAIRN_E2E_IMAGE_REGISTRY"); fi
  if [ -n "${CAIRN_E2E_IMAGE_TAG:-}" ]; then args+=(--set "image.tag=$CAIRN_E2E_IMAGE_TAG"); fi
  args+=(--set "image.pullPolicy=${CAIRN_E2E_PULL_POLICY:-IfNotPresent}")
  helm "${args[@]}"
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# examples/FILE with only the zones replaced (and, with CAIRN_E2E_SMALL=1, smaller volumes and
# requests).
example() {
  local z
  z=$(IFS=,; echo "${zones[*]}")
  sed -e "s/^  zones: \[.*\]/  zones: [${z//,/, }]/" "examples/$1" |
    if [ "${CAIRN_E2E_SMALL:-}" = 1 ]; then
      sed -e 's/volumeSize: [0-9]*Gi/volumeSize: 2Gi/' -e 's/indexVolumeSize: [0-9]*Gi/indexVolumeSize: 2Gi/' \
        -e 's/requests: {cpu: [^}]*}/requests: {cpu: 50m, memory: 128Mi}/'
    else
      cat
    fi
}

create_fleet() {
  example objectstore.yaml | kubectl -n "$ns" apply -f -
  wait_ready "objectstore/$store"
  kubectl -n "$ns" get objectstore "$store"
}

secret_value() {
  kubectl -n "$ns" get secret "$1" -o "jsonpath={.data.$2}" | base64 -d
}

start_port_forward() {
  if [ -n "$pf_pid" ]; then
    kill "$pf_pid" 2>/dev/null || true
    wait "$pf_pid" 2>/dev/null || true
  fi
  local port
  port=$((20000 + RANDOM % 20000))
  kubectl -n "$ns" port-forward "svc/$store" "$port:9000" >"$work/port-forward.log" 2>&1 &
  pf_pid=$!
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
  done
  endpoint="http://127.0.0.1:$port"
}

# An object written and read back with the Bucket's Secret, with a profile of our own (the
# user's ~/.aws is left alone).
s3_round_trip() {
  local bucket key
  bucket=$(secret_value photos BUCKET_NAME)
  start_port_forward
  cat >"$work/aws-config" <<EOF
[profile cairn-e2e]
region = $(secret_value photos AWS_REGION)
s3 =
  addressing_style = path
EOF
  head -c 3000000 /dev/urandom >"$work/object"
  key="e2e/$(date +%s%N)"
  AWS_CONFIG_FILE="$work/aws-config" AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PROFILE=cairn-e2e \
    AWS_ACCESS_KEY_ID=$(secret_value photos AWS_ACCESS_KEY_ID) \
    AWS_SECRET_ACCESS_KEY=$(secret_value photos AWS_SECRET_ACCESS_KEY) \
    sh -c "aws --endpoint-url '$endpoint' s3 cp '$work/object' 's3://$bucket/$key' --only-show-errors &&
           aws --endpoint-url '$endpoint' s3 cp 's3://$bucket/$key' '$work/back' --only-show-errors"
  cmp "$work/object" "$work/back" || die "the object read back differs"
  echo "round trip of 3000000 bytes through s3://$bucket/$key: identical"
}

create_bucket() {
  example bucket.yaml | kubectl -n "$ns" apply -f -
  wait_ready bucket/photos
  kubectl -n "$ns" get bucket photos
}

create_policies() {
  example lifecyclepolicy.yaml | kubectl -n "$ns" apply -f -
  example replicationrule.yaml | kubectl -n "$ns" apply -f -
  wait_ready lifecyclepolicy/photos-lifecycle
  wait_ready replicationrule/photos-dr
  kubectl -n "$ns" get lifecyclepolicies,replicationrules
}

scale_gateways() {
  local n=$1
  kubectl -n "$ns" patch objectstore "$store" --type merge -p "{\"spec\":{\"gateway\":{\"replicas\":$n}}}"
  local deadline=$((SECONDS + timeout))
  until [ "$(kubectl -n "$ns" get statefulset "$store-gateway" -o jsonpath='{.spec.replicas}')" = "$n" ] &&
    [ "$(kubectl -n "$ns" get objectstore "$store" -o jsonpath='{.status.readyGateways}')" = "$n" ] &&
    [ "$(kubectl -n "$ns" get objectstore "$store" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; do
    [ $SECONDS -lt $deadline ] || die "gateways not $n and Ready within ${timeout}s"
    sleep 5
  done
  kubectl -n "$ns" get objectstore "$store"
}

# Every PodDisruptionBudget of the fleet allows at least one disruption (all pods are up), and
# none has minAvailable at or above the pods it covers.
check_budgets() {
  local bad
  kubectl -n "$ns" get pdb -l "app.kubernetes.io/instance=$store" \
    -o custom-columns=NAME:.metadata.name,MIN:.spec.minAvailable,MAX:.spec.maxUnavailable,ALLOWED:.status.disruptionsAllowed,PODS:.status.expectedPods
  # The disruption controller updates the budgets' status shortly after a scale.
  for _ in $(seq 30); do
    bad=$(kubectl -n "$ns" get pdb -l "app.kubernetes.io/instance=$store" \
      -o jsonpath='{range .items[?(@.status.disruptionsAllowed==0)]}{.metadata.name}{" "}{end}')
    [ -z "$bad" ] && return 0
    sleep 2
  done
  die "PodDisruptionBudget(s) forbidding every disruption: $bad"
}

teardown() {
  kubectl -n "$ns" delete replicationrules,lifecyclepolicies --all --wait --timeout=120s || true
  kubectl -n "$ns" delete buckets --all --wait --timeout=120s || true
  kubectl -n "$ns" delete objectstores --all --wait --timeout=300s || true
  # What the ObjectStore leaves on purpose (docs/kubernetes.md, "Deleting a fleet"): its volumes.
  kubectl -n "$ns" delete pvc -l "app.kubernetes.io/instance=$store" --wait --timeout=300s || true
  kubectl -n "$ns" delete secret photos-dr-credentials --ignore-not-found || true
  helm uninstall cairn --namespace "$sysns" --wait || true
  kubectl delete namespace "$ns" "$sysns" --wait --timeout=300s --ignore-not-found || true
}

check_gone() {
  local left
  left=$(kubectl -n "$ns" get statefulsets,services,pdb,pvc -l "app.kubernetes.io/instance=$store" -o name 2>/dev/null || true)
  [ -z "$left" ] || die "left behind: $left"
}

step "zones" find_zones
step "install the operator (helm)" install_operator
step "ObjectStore Ready" create_fleet
step "Bucket Ready" create_bucket
step "S3 round trip with the Bucket's Secret" s3_round_trip
step "LifecyclePolicy and ReplicationRule Ready" create_policies
step "gateways 1 -> 3" scale_gateways 3
step "budgets at 3 gateways" check_budgets
step "S3 round trip at 3 gateways" s3_round_trip
step "gateways 3 -> 1" scale_gateways 1
step "budgets at 1 gateway" check_budgets
if [ "${CAIRN_E2E_KEEP:-}" = 1 ]; then
  echo "kept everything (CAIRN_E2E_KEEP=1) in namespaces $ns and $sysns"
else
  step "delete everything" teardown
  step "nothing left" check_gone
fi
echo "PASSED: e2e/k8s in $((SECONDS - t_all))s"
