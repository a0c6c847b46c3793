#!/usr/bin/env bash
# Validates deploy/: lints the Dockerfile (hadolint), renders both kustomize overlays,
# checks convmsg's own deployment rules on them (deploy/render.py check), and validates
# every rendered manifest and the Secret example against the Kubernetes schemas
# (kubernetes-validate --strict, for the oldest and newest Kubernetes we support).
# Fails on the first error. The tools go into .venv-deploy (installed when
# deploy/requirements.txt changed). `kubectl kustomize` renders when kubectl is
# installed, and deploy/render.py (no kustomize needed) must then render the same.
set -euo pipefail

# Work from the repository root, wherever this is called from.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.venv-deploy
requirements=deploy/requirements.txt
stamp="$venv/.requirements-installed"
kubernetes_versions=(1.30.0 1.34.0)

if [[ ! -x "$venv/bin/python" ]]; then
    echo "deploy/validate.sh: creating $venv"
    python3 -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$requirements" -nt "$stamp" ]]; then
    echo "deploy/validate.sh: installing $requirements into $venv"
    "$venv/bin/pip" install -q -r "$requirements"
    touch "$stamp"
fi
python="$venv/bin/python"

echo "hadolint $("$venv/bin/hadolint" --version)"
"$venv/bin/hadolint" deploy/Dockerfile

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in single replicated; do
    dir=deploy/k8s/overlays/$overlay
    "$python" deploy/render.py render "$dir" >"$out/$overlay.yaml"
    if command -v kubectl >/dev/null; then
        kubectl kustomize "$dir" >"$out/$overlay.kustomize.yaml"
        "$python" deploy/render.py compare "$out/$overlay.yaml" "$out/$overlay.kustomize.yaml"
        echo "$overlay: kubectl kustomize and deploy/render.py agree"
    else
        echo "$overlay: kubectl not installed; rendered with deploy/render.py only"
    fi
    "$python" deploy/render.py check "$out/$overlay.yaml"
    echo "$overlay: deployment rules hold"
done

echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"
for version in "${kubernetes_versions[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" \
        "$out/single.yaml" "$out/replicated.yaml" deploy/k8s/secret.example.yaml
    echo "every manifest is valid for Kubernetes $version"
done
echo "deploy/validate.sh: ok"
