#!/usr/bin/env bash
# Validates deploy/: lints the Dockerfile (hadolint), renders both overlays with the real
# kustomize (`kubectl kustomize`, the one `kubectl apply -k` uses), checks convmsg's own
# deployment rules on that rendering (deploy/check.py), and validates every rendered
# manifest and the Secret example against the Kubernetes schemas (kubernetes-validate
# --strict, for the oldest and newest Kubernetes we support). Fails on the first error.
# The Python tools go into .venv-deploy (installed when deploy/requirements.txt changed);
# kubectl must be installed (it is on the CI machines).
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

if ! command -v kubectl >/dev/null; then
    echo "deploy/validate.sh: kubectl is needed to render the overlays (kubectl kustomize); install it" \
        "(https://kubernetes.io/docs/tasks/tools/, or Debian/Ubuntu's kubectl package)" >&2
    exit 1
fi
echo "kubectl kustomize: $(kubectl version --client 2>/dev/null | grep -i kustomize || echo "kubectl $(kubectl version --client)")"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for overlay in single replicated; do
    kubectl kustomize "deploy/k8s/overlays/$overlay" >"$out/$overlay.yaml"
    "$python" deploy/check.py "$out/$overlay.yaml"
    echo "$overlay: rendered by kubectl kustomize; deployment rules hold"
done

echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"
for version in "${kubernetes_versions[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" \
        "$out/single.yaml" "$out/replicated.yaml" deploy/k8s/secret.example.yaml
    echo "every manifest is valid for Kubernetes $version"
done
echo "deploy/validate.sh: ok"
