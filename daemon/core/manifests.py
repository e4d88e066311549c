"""Kubernetes manifests of a service, as a pure function of the tree: derive, render, serialise.

Why pure: Argo CD and Flux apply whatever is in the directory they watch, so the manifests must be a
function of the Git tree alone — the same tree renders the same bytes (sorted keys, stable names), a
`git revert` renders the earlier manifests again, and a golden file can hold them. Nothing here reads
the model store or a cluster; no engine is imported (`specd validate` and `specd plan` call it).

`derive_manifests` (the `manifests` kind's derive hook) turns each service whose `deploy.target` (or the
environment's) is `kubernetes` into a `manifests/<service>` resource with every input of the rendering as
its data, so the plan's property diffs (`variants[challenger].weight: 100 → 200`) are the manifest
changes. `render` makes the objects: one Deployment, Service and (with autoscaling) HPA per variant, a
routing ConfigMap, and one Gateway API HTTPRoute whose backend weights are the variants' weights in per
mille. Every object carries the `specd.io/fingerprint` label and the `specd.io/git-sha` annotation.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from daemon.core.documents import Composed, SpecDoc

MANAGED_BY = "specd"
FINGERPRINT_LABEL = "specd.io/fingerprint"  # first 16 hex digits (label values are at most 63 characters)
FINGERPRINT_ANNOTATION = "specd.io/fingerprint-full"
SHA_ANNOTATION = "specd.io/git-sha"
VARIANT_LABEL = "specd.io/variant"
SECRET_NAME = "specd-secrets"  # the Kubernetes Secret whose keys are the ${secret:NAME} names
SECRETS_DIR = "/var/run/secrets/specd"  # mounted there: daemon.shared.secrets reads $SPECD_SECRETS_DIR/NAME
ROUTING_DIR = "/etc/specd"
GATEWAY_GROUP = "gateway.networking.k8s.io"
RENDER_VERSION = 1  # bump when the rendering of the same data changes (with the kind's code_version)


def k8s_name(name: str) -> str:
    """A spec name (lowercase, digits, `_`, `-`) as an RFC 1123 label: `_` becomes `-`."""
    return name.replace("_", "-").strip("-")


def per_mille(weights: Mapping[str, float]) -> dict[str, int]:
    """Relative weights as integers summing to 1000 (largest remainder, ties by name): HTTPRoute weights."""
    total = sum(weights.values())
    exact = {k: 1000 * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    rest = 1000 - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def service_version(data: Mapping[str, Any]) -> str:
    """The default image tag: a digest of what shapes the service's bento (its spec less the descriptive
    fields and the deploy block), so the tag moves exactly when the served thing changes."""
    shaping = {k: v for k, v in data.items() if k not in ("description", "owners", "deploy")}
    return "v" + hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:12]


def default_image(name: str, data: Mapping[str, Any], env: Any) -> str:
    """The image a service version's Deployments name from the tree alone: `deploy.image`, else
    `<deploy.registry>/<service>:<service_version>`. A built image recorded for it replaces it at
    apply (`daemon.shared.images.with_built_image`); a pinned `deploy.image.tag` is never replaced."""
    image = (data.get("deploy") or {}).get("image") or {}
    repository = image.get("repository") or f"{env.deploy.registry}/{k8s_name(name)}"
    return f"{repository}:{image.get('tag') or service_version(data)}"


def manifests_data(name: str, data: Mapping[str, Any], env: Any) -> dict[str, Any] | None:
    """The `manifests/<name>` data of one normalised service spec, or None when it deploys locally."""
    deploy = data.get("deploy") or {}
    section = env.deploy
    if (deploy.get("target") or section.target) != "kubernetes":
        return None
    total = sum(float(v["weight"]) for v in data["variants"])
    weights = per_mille({v["name"]: float(v["weight"]) / total for v in data["variants"]})
    gateway = deploy.get("gateway") or {}
    auth = data.get("auth") or {}
    secrets = sorted({ref.split(":", 1)[1] for ref in auth.get("api_keys", [])})
    settings = {
        "routing": data.get("routing"),
        "batching": data.get("batching"),
        "max_request_rows": data.get("max_request_rows"),
        "slo": data.get("slo"),
        "auth": {"required": auth.get("required", False), "header": auth.get("header"), "api_key_secrets": secrets},
        "workers": data.get("workers") or env.services.workers,
        "features_from": data.get("features_from"),
        "prediction_log": data.get("prediction_log"),
    }
    return {
        "service": name,
        "model": data["model"],
        "namespace": deploy.get("namespace") or section.namespace,
        "replicas": deploy.get("replicas", 1),
        "resources": deploy.get("resources") or {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": None, "memory": "1Gi"}},
        "autoscaling": deploy.get("autoscaling"),
        "image": default_image(name, data, env),
        "container_port": deploy.get("container_port", 3000),
        "gateway": {"name": gateway.get("name") or section.gateway, "namespace": gateway.get("namespace"),
                    "hostnames": list(gateway.get("hostnames") or [])},
        "variants": [{"name": v["name"], "role": v.get("role"), "candidate": v.get("candidate"), "version": v.get("version"),
                      "weight": weights[v["name"]]} for v in data["variants"]],
        "settings": settings,
        "secrets": secrets,
        "kubernetes_versions": list(section.kubernetes_versions),
        "prune": data.get("prune"),
    }


def derive_manifests(composed: Composed, memo: object = None) -> list[SpecDoc]:
    """One `manifests/<service>` per service that deploys to Kubernetes (pure and cheap: no memo)."""
    from pydantic import ValidationError

    from daemon.core.documents import SpecDoc
    from daemon.schema.deploy import ManifestsSpec
    from daemon.shared.errors import SpecErrors, SpecIssue

    docs: list[SpecDoc] = []
    issues: list[SpecIssue] = []
    names: dict[str, str] = {}
    for doc in composed.docs:
        if doc.kind != "service":
            continue
        data = manifests_data(doc.name, doc.data, composed.env)
        if data is None:
            continue
        base = k8s_name(doc.name)
        clash = names.setdefault(f"{data['namespace']}/{base}", doc.name)
        if clash != doc.name:
            issues.append(SpecIssue(doc.path, 0, "deploy", f"Kubernetes name {base!r} in namespace {data['namespace']!r} is also service {clash!r}'s; rename one"))
        for variant in data["variants"]:
            full = f"{base}-{k8s_name(variant['name'])}"
            if len(full) > 63 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", full):
                issues.append(SpecIssue(doc.path, 0, f"variants.{variant['name']}",
                                        f"Kubernetes object name {full!r} is not an RFC 1035 label of at most 63 characters; shorten the service or variant name"))
        try:
            docs.append(SpecDoc("manifests", doc.name, doc.path, ManifestsSpec.model_validate(data), data))
        except ValidationError as exc:
            for error in exc.errors():
                issues.append(SpecIssue(doc.path, 0, "deploy." + ".".join(map(str, error["loc"])), error["msg"]))
    if issues:
        raise SpecErrors(issues)
    return docs


# -- rendering ---------------------------------------------------------------------------------------
def _meta(name: str, data: Mapping[str, Any], fingerprint: str, revision: str, variant: str | None = None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": k8s_name(data["service"]), "app.kubernetes.io/managed-by": MANAGED_BY,
              "app.kubernetes.io/part-of": k8s_name(data["model"]), FINGERPRINT_LABEL: fingerprint[:16]}
    if variant is not None:
        labels[VARIANT_LABEL] = k8s_name(variant)
    return {"name": name, "namespace": data["namespace"], "labels": labels,
            "annotations": {FINGERPRINT_ANNOTATION: fingerprint, SHA_ANNOTATION: revision}}


def _quantities(amounts: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in sorted((amounts or {}).items()) if v is not None}


def routing_document(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the routing ConfigMap carries: the variants (roles, weights in per mille) and the settings."""
    return {"service": data["service"], "model": data["model"], "variants": data["variants"], "settings": data["settings"]}


def render(data: Mapping[str, Any], fingerprint: str, revision: str) -> dict[str, dict[str, Any]]:
    """The manifests of one `manifests/<service>` resource: {file name: object}, in a stable order."""
    base = k8s_name(data["service"])
    port = int(data["container_port"])
    routing_json = json.dumps(routing_document(data), sort_keys=True, indent=1)
    config_digest = hashlib.sha256(routing_json.encode()).hexdigest()[:16]
    out: dict[str, dict[str, Any]] = {
        f"configmap-{base}-routing.yaml": {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{base}-routing", data, fingerprint, revision),
            "data": {"routing.json": routing_json},
        }
    }
    resources = {key: q for key in ("requests", "limits") if (q := _quantities((data["resources"] or {}).get(key)))}
    autoscaling = data.get("autoscaling")
    backends = []
    for variant in data["variants"]:
        name = f"{base}-{k8s_name(variant['name'])}"
        selector = {"app.kubernetes.io/name": base, VARIANT_LABEL: k8s_name(variant["name"])}
        env = [{"name": "SPECD_VARIANT", "value": variant["name"]},
               {"name": "SPECD_SERVICE_WORKERS", "value": str(data["settings"]["workers"])},
               {"name": "SPECD_ROUTING_SPEC", "value": f"{ROUTING_DIR}/routing.json"}]
        mounts = [{"name": "routing", "mountPath": ROUTING_DIR, "readOnly": True}]
        volumes: list[dict[str, Any]] = [{"name": "routing", "configMap": {"name": f"{base}-routing"}}]
        if data.get("secrets"):
            env.append({"name": "SPECD_SECRETS_DIR", "value": SECRETS_DIR})
            mounts.append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
            volumes.append({"name": "secrets", "secret": {"secretName": SECRET_NAME,
                                                         "items": [{"key": s, "path": s} for s in data["secrets"]]}})
        probe = {"periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
        container = {
            "name": "bentoml", "image": data["image"], "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": env, "volumeMounts": mounts,
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "initialDelaySeconds": 5, **probe},
            "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "initialDelaySeconds": 15, **probe},
            "startupProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 5, "failureThreshold": 60},
        }
        if resources:
            container["resources"] = resources
        spec: dict[str, Any] = {
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {**selector, "app.kubernetes.io/managed-by": MANAGED_BY},
                             "annotations": {"specd.io/routing-digest": config_digest}},
                "spec": {"containers": [container], "volumes": volumes},
            },
        }
        if autoscaling is None:
            spec["replicas"] = int(data["replicas"])  # with an HPA the replica count is the HPA's
        out[f"deployment-{name}.yaml"] = {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "metadata": _meta(name, data, fingerprint, revision, variant["name"]), "spec": spec}
        out[f"service-{name}.yaml"] = {
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(name, data, fingerprint, revision, variant["name"]),
            "spec": {"type": "ClusterIP", "selector": selector, "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]},
        }
        if autoscaling is not None:
            out[f"hpa-{name}.yaml"] = _hpa(name, data, fingerprint, revision, variant["name"], autoscaling)
        backends.append({"group": "", "kind": "Service", "name": name, "port": port, "weight": int(variant["weight"])})
    gateway = data["gateway"]
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway["name"]}
    if gateway.get("namespace"):
        parent["namespace"] = gateway["namespace"]
    route_spec: dict[str, Any] = {"parentRefs": [parent],
                                  "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}]}
    if gateway.get("hostnames"):
        route_spec["hostnames"] = list(gateway["hostnames"])
    out[f"httproute-{base}.yaml"] = {"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "HTTPRoute",
                                     "metadata": _meta(base, data, fingerprint, revision), "spec": route_spec}
    return dict(sorted(out.items()))


def _hpa(name: str, data: Mapping[str, Any], fingerprint: str, revision: str, variant: str, autoscaling: Mapping[str, Any]) -> dict[str, Any]:
    if autoscaling.get("target_cpu") is not None:
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": int(autoscaling["target_cpu"])}}}
    else:
        rps = autoscaling["target_rps"]
        value = f"{int(round(rps * 1000))}m"  # a quantity: 12.5 rps = 12500m
        metric = {"type": "Pods", "pods": {"metric": {"name": "specd_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": value}}}
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(name, data, fingerprint, revision, variant),
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": int(autoscaling["min"]), "maxReplicas": int(autoscaling["max"]), "metrics": [metric]},
    }


class _Dumper(yaml.SafeDumper):
    """No aliases; multi-line strings (the routing JSON) as literal blocks, readable in a PR diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(obj: Mapping[str, Any]) -> str:
    """One manifest as YAML: sorted keys, block style, no aliases — byte-stable for golden files and Git."""

    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=1000, allow_unicode=True)


def render_files(data: Mapping[str, Any], fingerprint: str, revision: str) -> dict[str, str]:
    """{file name: YAML text} of one resource: what lands in `<manifests_dir>/<namespace>/<service>/`."""
    return {name: to_yaml(obj) for name, obj in render(data, fingerprint, revision).items()}


def directory_of(data: Mapping[str, Any]) -> str:
    return f"{data['namespace']}/{k8s_name(data['service'])}"
