#!/usr/bin/env python3
"""Renders a kustomize overlay of deploy/k8s without kustomize, and checks the result.

Only the subset of kustomize these manifests use: `resources` (files and directories),
`patches` with `path` (strategic merge, target named by the patch's kind and name) and
`images` (newName / newTag / digest). Any other kustomization field is an error, so a
manifest change that needs more fails here instead of rendering wrong. validate.sh also
renders with `kubectl kustomize` when it is installed and compares the two.

  render.py render OVERLAY_DIR          multi-document YAML on stdout
  render.py check RENDERED.yaml         convmsg's deployment rules (see check())
  render.py compare A.yaml B.yaml       same objects, ignoring order
"""

import copy
import pathlib
import sys
import tomllib

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}

# Strategic-merge keys of the lists these manifests patch (from the Kubernetes API's
# patchMergeKey); any other list is replaced by the patch's.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "topologySpreadConstraints": "topologyKey",
}


def key_of(obj):
    meta = obj.get("metadata", {})
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def merge(base, patch, field=None):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and MERGE_KEYS.get(field):
        mk = MERGE_KEYS[field]
        out = [copy.deepcopy(b) for b in base]
        for p in patch:
            i = next((i for i, b in enumerate(out) if b.get(mk) == p.get(mk)), None)
            if i is None:
                out.append(copy.deepcopy(p))
            else:
                out[i] = merge(out[i], p)
        return out
    return copy.deepcopy(patch)


def image_name(ref):
    """`registry:5000/app:tag@sha256:...` -> `registry:5000/app`."""
    ref = ref.split("@")[0]
    return ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref


def set_images(obj, images):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for img in images:
            name = image_name(c["image"])
            if name != img["name"]:
                continue
            new = img.get("newName", name)
            if "digest" in img:
                c["image"] = f"{new}@{img['digest']}"
            elif "newTag" in img:
                c["image"] = f"{new}:{img['newTag']}"
            else:
                c["image"] = new


def render(directory):
    directory = pathlib.Path(directory)
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(k) - SUPPORTED
    if unsupported:
        sys.exit(f"{directory}/kustomization.yaml: fields this renderer does not support: {sorted(unsupported)}")
    objects = {}
    for res in k.get("resources", []):
        path = directory / res
        docs = render(path) if path.is_dir() else load_docs(path)
        for d in docs:
            if key_of(d) in objects:
                sys.exit(f"{path}: {key_of(d)} is defined twice")
            objects[key_of(d)] = d
    for p in k.get("patches", []):
        if set(p) != {"path"}:
            sys.exit(f"{directory}: only patches with a path are supported: {p}")
        for patch in load_docs(directory / p["path"]):
            target = key_of(patch)
            if target not in objects:
                sys.exit(f"{directory}/{p['path']}: no {target} to patch")
            objects[target] = merge(objects[target], patch)
    for obj in objects.values():
        set_images(obj, k.get("images", []))
    return list(objects.values())


def normalize(value, field=None):
    """Order-free form for comparing: dicts by key, merge-keyed lists by their key."""
    if isinstance(value, dict):
        return {k: normalize(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalize(v) for v in value]
        if MERGE_KEYS.get(field):
            items.sort(key=lambda v: str(v.get(MERGE_KEYS[field])))
        return items
    return value


def compare(a_path, b_path):
    a = {key_of(d): normalize(d) for d in load_docs(a_path)}
    b = {key_of(d): normalize(d) for d in load_docs(b_path)}
    problems = [f"only in {a_path}: {k}" for k in a.keys() - b.keys()]
    problems += [f"only in {b_path}: {k}" for k in b.keys() - a.keys()]
    problems += [f"differs: {k}" for k in a.keys() & b.keys() if a[k] != b[k]]
    return problems


def check(path):
    """The rules a convmsg deployment must keep; returns the broken ones."""
    docs = load_docs(path)
    kinds = {d["kind"] for d in docs}
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "convmsg.toml" in d.get("data", {}))
    toml = tomllib.loads(config["data"]["convmsg.toml"])
    drain_ms = toml.get("dispatch", {}).get("drain_period_ms", 20_000)
    stop_accepting_ms = toml.get("shutdown", {}).get("stop_accepting_after_ms", 0)
    problems = []
    for d in (d for d in docs if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]["spec"]
        grace_ms = pod.get("terminationGracePeriodSeconds", 30) * 1000
        if grace_ms < drain_ms + 5_000:
            problems.append(f"terminationGracePeriodSeconds ({grace_ms} ms) must outlast drain_period_ms ({drain_ms}) by 5 s")
        if stop_accepting_ms >= drain_ms:
            problems.append("shutdown.stop_accepting_after_ms must be below dispatch.drain_period_ms")
        if pod.get("enableServiceLinks") is not False:
            problems.append("enableServiceLinks must be false (service links inject CONVMSG_* variables)")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")):
                problems.append(f"{c['name']}: runAsNonRoot")
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{c['name']}: readOnlyRootFilesystem true, allowPrivilegeEscalation false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{c['name']}: capabilities must drop ALL")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "grpc" not in c.get(probe, {}):
                    problems.append(f"{c['name']}: {probe} must be a grpc.health.v1 probe")
            if "resources" not in c:
                problems.append(f"{c['name']}: resources")
            db = next((e.get("value", "") for e in c.get("env", []) if e["name"] == "CONVMSG_DATABASE_URL"), "")
            if db.startswith("sqlite:"):
                if d["spec"].get("replicas", 1) != 1 or d["spec"].get("strategy", {}).get("type") != "Recreate":
                    problems.append("SQLite: exactly one replica and the Recreate strategy")
                if kinds & {"HorizontalPodAutoscaler", "PodDisruptionBudget"}:
                    problems.append("SQLite: no HorizontalPodAutoscaler or PodDisruptionBudget (one replica)")
            elif d["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
                problems.append("replicated: RollingUpdate with maxUnavailable 0")
    return problems


def main(argv):
    if len(argv) == 3 and argv[1] == "render":
        yaml.safe_dump_all(render(argv[2]), sys.stdout, sort_keys=True)
        return 0
    if len(argv) == 3 and argv[1] == "check":
        problems = check(argv[2])
    elif len(argv) == 4 and argv[1] == "compare":
        problems = compare(argv[2], argv[3])
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"{argv[1]}: {argv[-1]}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
