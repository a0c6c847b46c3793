#!/usr/bin/env python3
"""convmsg's own deployment rules, checked on manifests rendered by the real kustomize.

    check.py RENDERED.yaml      (the output of `kubectl kustomize deploy/k8s/overlays/NAME`)

Prints each broken rule and exits 1 when there is one. The rules are the operational
contract the manifests must keep beyond what the Kubernetes schemas check: the grace
period outlasts the drain, no service links (they inject CONVMSG_* variables), a
hardened container, gRPC health probes, resources, and SQLite's single replica with the
Recreate strategy versus PostgreSQL's RollingUpdate with maxUnavailable 0. validate.sh
runs it on both overlays.
"""

import sys
import tomllib

import yaml


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


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
    if len(argv) != 2:
        sys.exit(__doc__)
    problems = check(argv[1])
    for p in problems:
        print(f"check: {argv[1]}: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
