#!/usr/bin/env bash
# Renders manifests/install.yaml from the Helm chart with its default values, for kubectl-only
# installs. Run it after any change under charts/weir (tests/packaging.rs fails when the file is
# stale):
#
#   bash manifests/generate.sh            # writes manifests/install.yaml
#   bash manifests/generate.sh --print    # prints it instead
#
# helm comes from $HELM, else PATH (`bash ../shared/k8s/clients.sh` prints a folder holding it).
#
# What differs from `helm install` with defaults: a Namespace object comes first, and the
# affinity key Secret is not in the file (a key rendered here would be one random value, the
# same for every user of this file, and it would change at each render). The Deployment mounts
# the Secret `weir-affinity-key`, which you create once after applying:
#
#   kubectl -n weir-system create secret generic weir-affinity-key \
#     --from-literal=key="$(openssl rand -base64 48)"
set -euo pipefail
cd "$(dirname "$0")/.."
HELM=${HELM:-helm}

render() {
  cat <<'HEADER'
# weir: the Helm chart charts/weir rendered for kubectl-only installs. Generated: do not edit.
# Regenerate with `bash manifests/generate.sh`, which runs
#   helm template weir charts/weir --namespace weir-system --include-crds \
#     --set affinityKey.create=false --set affinityKey.existingSecret=weir-affinity-key
#
# Install:
#   kubectl apply -f manifests/install.yaml
#   kubectl -n weir-system create secret generic weir-affinity-key \
#     --from-literal=key="$(openssl rand -base64 48)"
# The pods start once that Secret exists (the session-affinity cookie key, shared by every replica).
---
apiVersion: v1
kind: Namespace
metadata:
  name: weir-system
  labels:
    app.kubernetes.io/part-of: weir
    # weir's pods meet the "restricted" Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
HEADER
  "$HELM" template weir charts/weir --namespace weir-system --include-crds \
    --set affinityKey.create=false --set affinityKey.existingSecret=weir-affinity-key
}

if [ "${1:-}" = "--print" ]; then
  render
else
  render > manifests/install.yaml.tmp
  mv manifests/install.yaml.tmp manifests/install.yaml
  echo "wrote manifests/install.yaml" >&2
fi
