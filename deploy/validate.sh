#!/usr/bin/env bash
# Validates the Kubernetes manifests of deploy/ against Kubernetes' own
# OpenAPI schemas, offline, with kubernetes-validate (PyPI; it bundles the
# schemas of every Kubernetes release). kubeconform, the usual tool, is not
# in the registries this project can reach (Debian's, PyPI, npm).
#
# Strict: an unknown field (a typo) fails. Version 1.30: the sidecar
# manifest uses native sidecars (restartPolicy: Always on an init
# container), Kubernetes 1.29 or later.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/deploy-validate
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'kubernetes-validate==1.37.0'
fi
out=$("$VENV/bin/kubernetes-validate" --strict -k 1.30 deploy/kubernetes/*/*.yaml 2>&1)
echo "$out"
if grep -q '^ERROR' <<<"$out"; then
  echo "deploy/validate.sh: a manifest does not validate" >&2
  exit 1
fi
