"""Offline validation of rendered manifests: pinned Kubernetes schemas, and a strict HTTPRoute model.

Why offline: `specd validate` runs in CI and on laptops without a cluster, and a manifest Argo CD would
reject must fail the pull request, not the sync. Core kinds (Deployment, Service, HPA, ConfigMap) are
checked with `kubernetes-validate`, which bundles the OpenAPI-derived JSON schemas of each Kubernetes
minor version, in strict mode (unknown fields are errors), for every version the environment names.

The Gateway API `HTTPRoute` is a CRD, so it is in no core schema: it is checked by `HTTPRouteV1`, a
strict pydantic model of the parts of `gateway.networking.k8s.io/v1` HTTPRoute that specd renders,
with the CRD's own bounds (at most 32 parentRefs, 16 hostnames, 16 rules, 16 backendRefs per rule,
weights 0..1000000, ports 1..65535, RFC 1123 names, hostname pattern). Anything else in an HTTPRoute is
an error, so a renderer change that emits a field this model does not know fails the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_NAME = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
_LABEL = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
_HOSTNAME = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _ObjectMeta(_Strict):
    name: _NAME
    namespace: _LABEL | None = None
    labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class _ParentRef(_Strict):
    group: Literal["gateway.networking.k8s.io"] = "gateway.networking.k8s.io"
    kind: Literal["Gateway"] = "Gateway"
    name: _NAME
    namespace: _LABEL | None = None
    sectionName: _LABEL | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class _PathMatch(_Strict):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = Field(default="/", min_length=1, max_length=1024, pattern=r"^/")


class _Match(_Strict):
    path: _PathMatch = _PathMatch()


class _BackendRef(_Strict):
    group: Literal[""] = ""
    kind: Literal["Service"] = "Service"
    name: _NAME
    namespace: _LABEL | None = None
    port: int = Field(ge=1, le=65535)  # required for a Service backend
    weight: int = Field(default=1, ge=0, le=1_000_000)


class _Rule(_Strict):
    matches: list[_Match] = Field(default_factory=list, max_length=64)
    backendRefs: list[_BackendRef] = Field(default_factory=list, max_length=16)


class _RouteSpec(_Strict):
    parentRefs: list[_ParentRef] = Field(min_length=1, max_length=32)
    hostnames: list[_HOSTNAME] = Field(default_factory=list, max_length=16)
    rules: list[_Rule] = Field(min_length=1, max_length=16)


class HTTPRouteV1(_Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: _ObjectMeta
    spec: _RouteSpec


def validate_manifest(obj: Mapping[str, Any], versions: Iterable[str]) -> list[str]:
    """Problems of one manifest for each Kubernetes version (empty: valid everywhere)."""
    if obj.get("kind") == "HTTPRoute":
        try:
            HTTPRouteV1.model_validate(obj)
        except ValidationError as exc:
            return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return []
    import kubernetes_validate

    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(dict(obj), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(root)"
            problems.append(f"Kubernetes {version}: {path}: {exc.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as exc:
            problems.append(f"Kubernetes {version}: {exc.message}")
    return problems


def validate_files(objects: Mapping[str, Mapping[str, Any]], versions: Iterable[str]) -> list[tuple[str, str]]:
    """(file name, problem) for every rendered object that a version's schema rejects."""
    versions = list(versions)
    return [(name, problem) for name, obj in objects.items() for problem in validate_manifest(obj, versions)]
