#!/usr/bin/env bash
# End-to-end test on a throwaway kind cluster: builds both images, installs the operator
# with its Helm chart, creates the example SocialCluster, waits for Ready, checks the
# generated Secrets and internal ports, signs up and posts through the gateway's HTTP API
# (port-forward), runs a follow/post/timeline scenario across clusters with tsc, then
# day-two operations under writes, each with a loss check: losing the leading coordinator,
# deleting a master tsd, deleting the broker pod, draining the node of a master, a rolling
# update of every tinysns pod, and a helm upgrade of the operator. Checks that
# spec.clusters cannot change and the cluster secret was never regenerated, then deletes the
# cluster.
#
# Needs docker, kind, kubectl, helm (helm from scripts/k8s-checks.sh's .local/ works) and curl.
# Environment: KEEP_CLUSTER=1 keeps the cluster for debugging; KIND_CLUSTER names it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-tinysns-e2e}"
OPERATOR_NS="tinysns-system"
NS="tinysns"
SC="demo"
IMAGE="tinysns:latest"
OPERATOR_IMAGE_REPO="tinysns-operator"
OPERATOR_IMAGE_TAG="e2e"
# The three coordinators (spec.coordinator.replicas defaults to 3), each by its pod's name;
# tsc asks them in turn and the leading one answers.
COORDINATOR="$SC-coordinator-0.$SC-coordinator.$NS.svc.cluster.local"
COORDINATOR="$COORDINATOR,$SC-coordinator-1.$SC-coordinator.$NS.svc.cluster.local"
COORDINATOR="$COORDINATOR,$SC-coordinator-2.$SC-coordinator.$NS.svc.cluster.local"
CLIENT_POD="tsc-client"
CREATED_CLUSTER=0
# The gateway's Service is reached through a port-forward on this local port.
GATEWAY_LOCAL_PORT="${GATEWAY_LOCAL_PORT:-18080}"
PORT_FORWARD_PID=""

log() { printf '\n=== %s\n' "$*"; }
fail() { printf 'kind-e2e: FAILED: %s\n' "$*" >&2; exit 1; }

HELM="$(command -v helm || true)"
[ -n "$HELM" ] || HELM="$ROOT/.local/helm/helm"
for tool in docker kind kubectl curl; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done
[ -x "$HELM" ] || fail "helm is not installed (bash scripts/k8s-checks.sh puts one in .local/helm)"

KUBECTL=(kubectl --context "kind-$KIND_CLUSTER")

dump() {
  echo "--- diagnostics"
  "${KUBECTL[@]}" get socialclusters,statefulsets,deployments,pods,services,pdb -A -o wide || true
  # Names and types only: never print secret values.
  "${KUBECTL[@]}" get secrets -n "$NS" -l app.kubernetes.io/instance="$SC" || true
  "${KUBECTL[@]}" describe socialcluster -n "$NS" "$SC" || true
  "${KUBECTL[@]}" get events -n "$NS" --sort-by=.lastTimestamp || true
  "${KUBECTL[@]}" logs -n "$OPERATOR_NS" deploy/tinysns-operator --tail=200 || true
  local pod
  for pod in $("${KUBECTL[@]}" get pods -n "$NS" -o name 2>/dev/null); do
    echo "--- logs of $pod"
    "${KUBECTL[@]}" logs -n "$NS" "$pod" --tail=50 --all-containers || true
  done
}

cleanup() {
  local code=$?
  if [ -n "$PORT_FORWARD_PID" ]; then
    kill "$PORT_FORWARD_PID" 2>/dev/null || true
  fi
  if [ "$code" -ne 0 ] && [ "$CREATED_CLUSTER" -eq 1 ]; then
    dump
  fi
  if [ "${KEEP_CLUSTER:-0}" = "1" ]; then
    echo "keeping kind cluster $KIND_CLUSTER (kind delete cluster --name $KIND_CLUSTER)"
  elif [ "$CREATED_CLUSTER" -eq 1 ]; then
    kind delete cluster --name "$KIND_CLUSTER" || true
  fi
  exit "$code"
}
trap cleanup EXIT

# The password of the scenario's accounts (the SocialCluster runs in `auth: password` mode).
PASSWORD="kind-e2e-password"

# Runs one tsc session for user $1 with the lines $2 on stdin, keeping stdin open $3 more
# seconds (so posts pushed to a TIMELINE session arrive before it ends); prints the output.
# Every session is bounded by a timeout: a TIMELINE session need not end by itself. Extra
# arguments ($4...) go to tsc (e.g. --register).
tsc_session() {
  local user="$1" input="$2" hold="${3:-0}"
  shift 3 || shift $#
  { printf '%s\n' "$input"; sleep "$hold"; } \
    | timeout "$((hold + 20))" "${KUBECTL[@]}" exec -i -n "$NS" "$CLIENT_POD" -- \
      env TINYSNS_PASSWORD="$PASSWORD" tsc -h "$COORDINATOR" -k 9000 -u "$user" "$@" 2>&1 || true
}

# Retries a session of user $1 with input $2 until its output contains $3, for up to $4
# seconds; TIMELINE sessions are held open for a few seconds each try.
expect_tsc() {
  local user="$1" input="$2" want="$3" deadline=$((SECONDS + ${4:-120})) out="" hold=0
  case "$input" in TIMELINE*) hold=5 ;; esac
  while [ "$SECONDS" -lt "$deadline" ]; do
    out="$(tsc_session "$user" "$input" "$hold")"
    if grep -qF -- "$want" <<<"$out"; then
      return 0
    fi
    sleep 3
  done
  printf '%s\n' "$out"
  fail "user $user never saw '$want'"
}

# Every coordinator's log, oldest line first (whichever led wrote the decisions).
coordinator_logs() {
  local i
  for i in 0 1 2; do
    "${KUBECTL[@]}" logs -n "$NS" "$SC-coordinator-$i" 2>/dev/null || true
  done | sed 's/\x1b\[[0-9;]*m//g' | sort
}

# The index of the coordinator that announced leadership last.
leading_coordinator() {
  local node
  for node in 0 1 2; do
    "${KUBECTL[@]}" logs -n "$NS" "$SC-coordinator-$node" 2>/dev/null \
      | sed 's/\x1b\[[0-9;]*m//g' | grep -E "leading the coordinators" | tail -n 1 \
      | awk -v n="$node" '{print $1, n}'
  done | sort | tail -n 1 | awk '{print $2}'
}

# The server id of the current master of cluster $1, from the coordinators'
# "new master kind=Server cluster=N master=ID" log lines (colour codes stripped); server 1
# if none is found.
master_of_cluster() {
  local id
  id="$(coordinator_logs \
    | grep -E "new master.*kind=Server.* cluster=$1 " \
    | grep -oE 'master=[0-9]+' | tail -n 1 | cut -d= -f2 || true)"
  if [ -z "$id" ]; then
    echo "no master announcement for cluster $1 in the coordinator log; assuming server 1" >&2
    id=1
  fi
  printf '%s\n' "$id"
}

# Posts as carol (cluster 2) once every 2 s while the command $1 reports work left (exit 0 =
# still going); records each acknowledged post in ACKED. Bounded by $2 seconds.
ACKED=()
post_while() {
  local still_going="$1" deadline=$((SECONDS + $2)) i=0 text out
  ACKED=()
  while "$still_going"; do
    i=$((i + 1))
    text="written during $still_going $i $(date +%s)"
    out="$(tsc_session carol "TIMELINE"$'\n'"$text" 2)"
    # Only posts the server acknowledged count (one refused with a retryable error during a
    # switchover is re-sent by tsc, or not acknowledged at all).
    grep -qF "Command completed successfully" <<<"$out" && ACKED+=("$text")
    [ "$SECONDS" -lt "$deadline" ] || fail "$still_going did not finish in $2 s"
    sleep 2
  done
  echo "${#ACKED[@]} posts acknowledged during $still_going"
  [ "${#ACKED[@]}" -gt 0 ] || fail "no post was acknowledged during $still_going"
}

# bob (cluster 1) sees the last 15 posts of ACKED: they crossed the broker. A timeline shows
# the newest 20; the fault suite checks every acknowledged post, in the stored state.
expect_acked_delivered() {
  local first=$(( ${#ACKED[@]} > 15 ? ${#ACKED[@]} - 15 : 0 )) text
  for text in "${ACKED[@]:first}"; do
    expect_tsc bob TIMELINE ">> $text" 180
  done
}

# The uid of pod $1 (empty when it does not exist).
pod_uid() {
  "${KUBECTL[@]}" get pod -n "$NS" "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null || true
}

log "creating kind cluster $KIND_CLUSTER"
if kind get clusters | grep -qx "$KIND_CLUSTER"; then
  fail "a kind cluster named $KIND_CLUSTER already exists (delete it or set KIND_CLUSTER)"
fi
CREATED_CLUSTER=1
kind create cluster --name "$KIND_CLUSTER" --config "$ROOT/kind-config.yaml" --wait 180s

log "building images"
docker build -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
docker build -t "$OPERATOR_IMAGE_REPO:$OPERATOR_IMAGE_TAG" -f "$ROOT/operator/Dockerfile" "$ROOT"
kind load docker-image --name "$KIND_CLUSTER" "$IMAGE" "$OPERATOR_IMAGE_REPO:$OPERATOR_IMAGE_TAG"

log "installing the operator with Helm (watching namespace $NS: namespaced RBAC)"
"${KUBECTL[@]}" create namespace "$NS"
# Every pod the operator creates must pass the restricted profile.
"${KUBECTL[@]}" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted
"$HELM" install tinysns-operator "$ROOT/charts/tinysns-operator" \
  --kube-context "kind-$KIND_CLUSTER" \
  --namespace "$OPERATOR_NS" --create-namespace \
  --set image.repository="$OPERATOR_IMAGE_REPO" --set image.tag="$OPERATOR_IMAGE_TAG" \
  --set watchNamespace="$NS" \
  --set logLevel=debug \
  --wait --timeout 5m
"${KUBECTL[@]}" wait --for=condition=Established crd/socialclusters.tinysns.io --timeout=60s
if "${KUBECTL[@]}" get clusterrole tinysns-operator >/dev/null 2>&1; then
  fail "a namespaced install created a ClusterRole"
fi

log "creating SocialCluster $SC in namespace $NS (restricted Pod Security Standard enforced)"
"${KUBECTL[@]}" apply -n "$NS" -f "$ROOT/e2e/socialcluster.yaml"
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=10m
"${KUBECTL[@]}" get -n "$NS" socialclusters -o wide

log "checking children: owner references, PDBs, generated credentials, cluster secret, internal ports"
[ "$("${KUBECTL[@]}" get -n "$NS" statefulsets -l app.kubernetes.io/instance=$SC -o name | wc -l)" -eq 8 ] \
  || fail "expected 8 StatefulSets (coordinator + rabbitmq + 3 x tsd + 3 x sync)"
[ "$("${KUBECTL[@]}" get -n "$NS" pvc -l app.kubernetes.io/component=rabbitmq -o name | wc -l)" -eq 1 ] \
  || fail "the broker keeps no persistent volume"
[ "$("${KUBECTL[@]}" get -n "$NS" pdb -l app.kubernetes.io/instance=$SC -o name | wc -l)" -eq 9 ] \
  || fail "expected 9 PodDisruptionBudgets (the 8 StatefulSets' and the gateway's)"
password="$("${KUBECTL[@]}" get -n "$NS" secret "$SC-rabbitmq-credentials" -o jsonpath='{.data.password}' | base64 -d)"
if [ "${#password}" -lt 16 ] || [ "$password" = "guest" ]; then
  fail "weak or missing broker password"
fi
# The cluster secret: generated once (48 characters), immutable, owned by the SocialCluster.
cluster_secret() {
  "${KUBECTL[@]}" get -n "$NS" secret "$SC-cluster-secret" -o jsonpath='{.data.secret}' | base64 -d
}
secret_uid() {
  "${KUBECTL[@]}" get -n "$NS" secret "$SC-cluster-secret" -o jsonpath='{.metadata.uid}'
}
secret_value="$(cluster_secret)"
secret_uid_at_start="$(secret_uid)"
[ "${#secret_value}" -eq 48 ] || fail "the cluster secret is missing or not 48 characters"
[ "$("${KUBECTL[@]}" get -n "$NS" secret "$SC-cluster-secret" -o jsonpath='{.immutable}')" = "true" ] \
  || fail "the cluster secret is not immutable"
[ "$("${KUBECTL[@]}" get -n "$NS" secret "$SC-cluster-secret" -o jsonpath='{.metadata.ownerReferences[0].kind}')" = "SocialCluster" ] \
  || fail "the cluster secret is not owned by the SocialCluster"
# Members reach each other on the internal ports, through the Services.
service_port() {
  "${KUBECTL[@]}" get -n "$NS" service "$1" -o jsonpath="{.spec.ports[?(@.name==\"$2\")].port}"
}
[ "$(service_port "$SC-coordinator" grpc)" = "9000" ] || fail "coordinator Service: no client port 9000"
[ "$(service_port "$SC-coordinator" internal)" = "29000" ] || fail "coordinator Service: no internal port 29000"
[ "$(service_port "$SC-tsd-1" internal)" = "30000" ] || fail "tsd Service: no internal port 30000"
# Every member read the secret file (none fell back to a loopback-only internal port) and
# the same one (nobody refused a peer's internal call).
for pod in $("${KUBECTL[@]}" get pods -n "$NS" -l app.kubernetes.io/instance="$SC" -o name); do
  # The broker and the gateway are no members (the gateway holds no cluster secret).
  case "$pod" in *rabbitmq* | *gateway*) continue ;; esac
  if "${KUBECTL[@]}" logs -n "$NS" "$pod" | grep -E "no cluster secret|refused an internal call"; then
    fail "$pod runs without the cluster secret, or a peer presented another one"
  fi
done

log "gateway: the Deployment is available; health, sign-up, a post and a login over its JSON API"
"${KUBECTL[@]}" rollout status -n "$NS" "deployment/$SC-gateway" --timeout=180s
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Available "deployment/$SC-gateway" --timeout=180s
[ "$(service_port "$SC-gateway" http)" = "8080" ] || fail "gateway Service: no http port 8080"
[ "$("${KUBECTL[@]}" get -n "$NS" networkpolicy "$SC-gateway" -o jsonpath='{.spec.policyTypes}')" = '["Ingress","Egress"]' ] \
  || fail "the gateway's NetworkPolicy does not close its egress"
GATEWAY="http://127.0.0.1:$GATEWAY_LOCAL_PORT"
"${KUBECTL[@]}" port-forward -n "$NS" "service/$SC-gateway" "$GATEWAY_LOCAL_PORT:8080" >/dev/null 2>&1 &
PORT_FORWARD_PID=$!
deadline=$((SECONDS + 60))
until [ "$(curl -fsS --max-time 5 "$GATEWAY/healthz" 2>/dev/null)" = "ok" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the gateway's /healthz does not answer through the port-forward"
  sleep 2
done
[ "$(curl -fsS --max-time 5 "$GATEWAY/readyz")" = "ok" ] || fail "the gateway's /readyz is not ok"
curl -fsS --max-time 5 "$GATEWAY/" | grep -qi "<html" || fail "the gateway serves no web UI at /"
# Signs up (or, after a lost answer, logs in) $GATEWAY_USER; sets GATEWAY_COOKIE and
# GATEWAY_CSRF from the answer (the session cookie and the CSRF token of the session).
gateway_session() {
  local path="$1" headers body
  headers="$(mktemp)"
  body="$(curl -sS --max-time 20 -D "$headers" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$GATEWAY_USER\",\"password\":\"$PASSWORD\"}" "$GATEWAY$path" || true)"
  GATEWAY_COOKIE="$(grep -io 'set-cookie: tinysns_session=[^;]*' "$headers" | head -n 1 | cut -d' ' -f2 || true)"
  rm -f "$headers"
  GATEWAY_CSRF="$(grep -o '"csrf":"[0-9a-f]*"' <<<"$body" | cut -d'"' -f4 || true)"
  [ -n "$GATEWAY_COOKIE" ] && [ -n "$GATEWAY_CSRF" ]
}
GATEWAY_USER="gwdana"
deadline=$((SECONDS + 120))
until gateway_session /api/register || gateway_session /api/login; do
  [ "$SECONDS" -lt "$deadline" ] || fail "cannot sign up $GATEWAY_USER through the gateway"
  sleep 3
done
curl -fsS --max-time 20 -H "Cookie: $GATEWAY_COOKIE" "$GATEWAY/api/session" | grep -qF "\"username\":\"$GATEWAY_USER\"" \
  || fail "GET /api/session does not name $GATEWAY_USER"
# A state-changing call without the CSRF header is refused; with it, the post is stored.
code="$(curl -sS --max-time 20 -o /dev/null -w '%{http_code}' -H "Cookie: $GATEWAY_COOKIE" \
  -H 'Content-Type: application/json' -d '{"text":"no csrf"}' "$GATEWAY/api/posts")"
[ "$code" = "403" ] || fail "a post without X-CSRF-Token got $code, not 403"
curl -fsS --max-time 20 -H "Cookie: $GATEWAY_COOKIE" -H "X-CSRF-Token: $GATEWAY_CSRF" \
  -H 'Content-Type: application/json' -d '{"text":"hello from the kind e2e gateway"}' "$GATEWAY/api/posts" >/dev/null \
  || fail "POST /api/posts through the gateway failed"
curl -fsS --max-time 20 -H "Cookie: $GATEWAY_COOKIE" "$GATEWAY/api/users/$GATEWAY_USER/posts" \
  | grep -qF "hello from the kind e2e gateway" || fail "the gateway does not list the post it stored"
gateway_session /api/login || fail "cannot log in as $GATEWAY_USER through the gateway"
kill "$PORT_FORWARD_PID" 2>/dev/null || true
wait "$PORT_FORWARD_PID" 2>/dev/null || true
PORT_FORWARD_PID=""

log "operator leader election: two replicas, one Lease; deleting the leader hands over"
lease_holder() {
  "${KUBECTL[@]}" get lease -n "$OPERATOR_NS" tinysns-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true
}
leader_pod="$(lease_holder)"
[ -n "$leader_pod" ] || fail "no operator replica holds the lease"
[ "$("${KUBECTL[@]}" get pods -n "$OPERATOR_NS" -l app.kubernetes.io/name=tinysns-operator -o name | wc -l)" -eq 2 ] \
  || fail "expected two operator replicas"
"${KUBECTL[@]}" delete pod -n "$OPERATOR_NS" "$leader_pod" --wait=false
deadline=$((SECONDS + 90))
until holder="$(lease_holder)" && [ -n "$holder" ] && [ "$holder" != "$leader_pod" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "no standby took the lease after $leader_pod was deleted"
  sleep 2
done
echo "$holder leads now"
# The new leader reconciles: pausing and resuming the SocialCluster shows in its status.
"${KUBECTL[@]}" patch -n "$NS" "socialcluster/$SC" --type=merge -p '{"spec":{"paused":true}}'
"${KUBECTL[@]}" wait -n "$NS" --for=jsonpath='{.status.conditions[?(@.type=="Progressing")].reason}'=Paused "socialcluster/$SC" --timeout=120s
"${KUBECTL[@]}" patch -n "$NS" "socialcluster/$SC" --type=merge -p '{"spec":{"paused":false}}'
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m

log "starting a tsc client pod"
"${KUBECTL[@]}" apply -n "$NS" -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $CLIENT_POD
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    seccompProfile: {type: RuntimeDefault}
  containers:
    - name: tsc
      image: $IMAGE
      imagePullPolicy: IfNotPresent
      command: ["sleep", "infinity"]
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: ["ALL"]}
YAML
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "pod/$CLIENT_POD" --timeout=120s

# With 3 clusters the usernames bob, carol and alice are owned by clusters 1, 2 and 3
# (cluster_of_username in services/common/src/topology.rs).
log "scenario: accounts bob, carol, alice live on clusters 1, 2, 3; bob follows carol"
for user in bob carol alice; do
  deadline=$((SECONDS + 120))
  until tsc_session "$user" LIST 0 --register | grep -qF "Command completed successfully"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "cannot register $user"
    sleep 3
  done
done
# A wrong password is refused.
if "${KUBECTL[@]}" exec -i -n "$NS" "$CLIENT_POD" -- \
    env TINYSNS_PASSWORD=wrong-password-x tsc -h "$COORDINATOR" -k 9000 -u bob </dev/null 2>&1 \
    | grep -qF "Cmd> "; then
  fail "bob logged in with a wrong password"
fi
# carol is known to cluster 1 once the synchronizers have exchanged the new accounts.
expect_tsc bob 'FOLLOW carol' "Command completed successfully" 180

post="hello from cluster 2 at $(date +%s)"
log "carol posts; bob's timeline (another cluster) must show it"
tsc_session carol "TIMELINE"$'\n'"$post" 3 >/dev/null
expect_tsc bob TIMELINE ">> $post" 180
expect_tsc bob TIMELINE "carol (" 30

log "losing the leading coordinator is not an outage"
leader="$(leading_coordinator)"
[ -n "$leader" ] || fail "no coordinator announced leadership"
echo "coordinator $leader leads; deleting its pod"
"${KUBECTL[@]}" delete pod -n "$NS" "$SC-coordinator-$leader" --wait=false
post2="written while a coordinator was away $(date +%s)"
tsc_session carol "TIMELINE"$'\n'"$post2" 3 >/dev/null
expect_tsc bob TIMELINE ">> $post2" 120
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m

log "failover: deleting the master tsd of cluster 1"
master="$(master_of_cluster 1)"
master_pod="$SC-tsd-1-$((master - 1))"
old_uid="$("${KUBECTL[@]}" get pod -n "$NS" "$master_pod" -o jsonpath='{.metadata.uid}')"
echo "master of cluster 1 is server $master (pod $master_pod)"
"${KUBECTL[@]}" delete pod -n "$NS" "$master_pod" --wait=false
expect_tsc bob LIST "Command completed successfully" 120
# The account, the follow and the replicated timeline survived the master's loss.
expect_tsc bob 'FOLLOW carol' "Input username already exists" 60
expect_tsc bob TIMELINE ">> $post" 120

log "the replacement pod rejoins and the SocialCluster is Ready again"
deadline=$((SECONDS + 180))
until uid="$("${KUBECTL[@]}" get pod -n "$NS" "$master_pod" -o jsonpath='{.metadata.uid}' 2>/dev/null)" \
    && [ -n "$uid" ] && [ "$uid" != "$old_uid" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "$master_pod was not recreated"
  sleep 2
done
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "pod/$master_pod" --timeout=180s
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m

log "deleting the broker pod under writes: its queues are on its volume, nothing is lost"
broker_pod="$SC-rabbitmq-0"
broker_uid="$(pod_uid "$broker_pod")"
"${KUBECTL[@]}" delete pod -n "$NS" "$broker_pod" --wait=false
broker_back() {
  local uid ready
  uid="$(pod_uid "$broker_pod")"
  ready="$("${KUBECTL[@]}" get pod -n "$NS" "$broker_pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  [ -n "$uid" ] && [ "$uid" != "$broker_uid" ] && [ "$ready" = "True" ]
}
broker_away() { ! broker_back; }
post_while broker_away 300
expect_acked_delivered
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m

log "draining the node of cluster 1's master under writes"
master="$(master_of_cluster 1)"
master_pod="$SC-tsd-1-$((master - 1))"
node="$("${KUBECTL[@]}" get pod -n "$NS" "$master_pod" -o jsonpath='{.spec.nodeName}')"
master_uid="$(pod_uid "$master_pod")"
echo "master of cluster 1 is $master_pod on $node"
drain_log="$(mktemp)"
"${KUBECTL[@]}" drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=600s >"$drain_log" 2>&1 &
drain_pid=$!
# A one-node broker may not be evicted (its PodDisruptionBudget allows 0): when it runs on
# this node the drain waits, and, as docs/kubernetes.md says, the operator of the cluster
# deletes the broker pod by hand, which is what this does once the drain is seen waiting.
draining() {
  kill -0 "$drain_pid" 2>/dev/null || return 1
  if [ "$("${KUBECTL[@]}" get pod -n "$NS" "$broker_pod" -o jsonpath='{.spec.nodeName}')" = "$node" ] \
      && grep -q "Cannot evict pod as it would violate the pod's disruption budget" "$drain_log"; then
    echo "the drain waits for the broker's PodDisruptionBudget; deleting $broker_pod by hand"
    "${KUBECTL[@]}" delete pod -n "$NS" "$broker_pod" --wait=false
  fi
}
post_while draining 700
wait "$drain_pid" || { cat "$drain_log"; fail "kubectl drain $node failed"; }
"${KUBECTL[@]}" uncordon "$node"
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=10m
expect_acked_delivered
# The master was evicted (it handed over first: writes went on, see ACKED) and came back.
[ "$(pod_uid "$master_pod")" != "$master_uid" ] || fail "$master_pod was not evicted by the drain"

log "rolling update under writes: every tinysns pod replaced, slaves first, masters by switchover"
# pullPolicy Never changes every tinysns pod template and is harmless on kind (the images
# were loaded into the nodes). The StatefulSets are OnDelete: the operator replaces the pods.
"${KUBECTL[@]}" patch -n "$NS" "socialcluster/$SC" --type=merge -p '{"spec":{"image":{"pullPolicy":"Never"}}}'
statefulsets_updating() {
  local sts want have pending=0
  for sts in $("${KUBECTL[@]}" get statefulsets -n "$NS" -l "app.kubernetes.io/instance=$SC" -o name); do
    want="$("${KUBECTL[@]}" get -n "$NS" "$sts" -o jsonpath='{.spec.replicas}')"
    have="$("${KUBECTL[@]}" get -n "$NS" "$sts" -o jsonpath='{.status.updatedReplicas}')"
    [ "${have:-0}" = "$want" ] || pending=$((pending + 1))
  done
  [ "$pending" -gt 0 ]
}
post_while statefulsets_updating 900
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m
"${KUBECTL[@]}" get events -n "$NS" --field-selector "involvedObject.name=$SC" -o custom-columns=REASON:.reason,MESSAGE:.note --no-headers \
  | grep -q "^Switchover " || fail "no planned switchover was reported during the rolling update"
expect_acked_delivered

log "helm upgrade of the operator: it restarts, and no tinysns pod does"
uids_before="$("${KUBECTL[@]}" get pods -n "$NS" -l "app.kubernetes.io/instance=$SC" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}{"\n"}{end}' | sort)"
"$HELM" upgrade tinysns-operator "$ROOT/charts/tinysns-operator" \
  --kube-context "kind-$KIND_CLUSTER" --namespace "$OPERATOR_NS" --reuse-values \
  --set logLevel=info --wait --timeout 5m
"${KUBECTL[@]}" rollout status -n "$OPERATOR_NS" deploy/tinysns-operator --timeout=180s
sleep 20
"${KUBECTL[@]}" wait -n "$NS" --for=condition=Ready "socialcluster/$SC" --timeout=5m
uids_after="$("${KUBECTL[@]}" get pods -n "$NS" -l "app.kubernetes.io/instance=$SC" -o jsonpath='{range .items[*]}{.metadata.name}={.metadata.uid}{"\n"}{end}' | sort)"
[ "$uids_before" = "$uids_after" ] || fail "the operator upgrade replaced tinysns pods:
$(diff <(echo "$uids_before") <(echo "$uids_after") || true)"
expect_tsc bob TIMELINE ">> ${ACKED[-1]}" 60

log "changing the number of clusters is refused by the API server (users are homed by it)"
if out="$("${KUBECTL[@]}" patch -n "$NS" "socialcluster/$SC" --type=merge -p '{"spec":{"clusters":2}}' 2>&1)"; then
  fail "the API server accepted a change of spec.clusters"
fi
grep -qF "clusters is fixed at creation" <<<"$out" || fail "unexpected refusal: $out"
"${KUBECTL[@]}" get -n "$NS" statefulset "$SC-tsd-3" >/dev/null || fail "cluster 3's StatefulSet is gone"
log "a name that cannot prefix a Service, and a smaller volume, are refused by the API server"
if out="$(printf '%s\n' 'apiVersion: tinysns.io/v1alpha1' 'kind: SocialCluster' 'metadata: {name: 1demo}' 'spec: {}' \
    | "${KUBECTL[@]}" apply -n "$NS" -f - 2>&1)"; then
  fail "the API server accepted a SocialCluster named 1demo"
fi
grep -qF "DNS label" <<<"$out" || fail "unexpected refusal: $out"
if out="$("${KUBECTL[@]}" patch -n "$NS" "socialcluster/$SC" --type=merge -p '{"spec":{"storage":{"size":"512Mi"}}}' 2>&1)"; then
  fail "the API server accepted a smaller storage size"
fi
grep -qF "may only grow" <<<"$out" || fail "unexpected refusal: $out"

log "the cluster secret was never regenerated (failover, rolling update)"
[ "$(secret_uid)" = "$secret_uid_at_start" ] || fail "the cluster secret was recreated"
[ "$(cluster_secret)" = "$secret_value" ] || fail "the cluster secret changed"

log "kind e2e passed"
