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

import re
from collections.abc import Iterable, Mapping
from functools import cache
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


@cache
def _validator(version: str, kind: str, api_version: str) -> Any:
    """kubernetes-validate's strict schema of (version, kind, apiVersion) as a reusable validator.

    The library's `validate()` re-reads the version's multi-megabyte `_definitions.json` on every call
    (about 9 ms per manifest and version); this is the same lookup — the bundled `vX.Y.0-local-strict`
    schema of the newest bundled version not newer than `version`, resolved against its definitions —
    built once per process."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    wanted = utils.major_minor(version)
    candidates = [v for v in utils.all_versions() if tuple(map(int, utils.major_minor(v).split("."))) <= tuple(map(int, wanted.split(".")))]
    if not candidates or tuple(map(int, wanted.split("."))) > tuple(map(int, utils.major_minor(utils.latest_version()).split("."))):
        raise utils.VersionNotSupportedError(version=wanted)
    folder = f"kubernetes-json-schema/v{candidates[-1]}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise utils.SchemaNotFoundError(version=wanted, kind=kind, api_version=api_version) from None
    registry = Resource.from_contents(utils.schema_contents(f"{folder}/_definitions.json", version)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_manifest(obj: Mapping[str, Any], versions: Iterable[str]) -> list[str]:
    """Problems of one manifest for each Kubernetes version (empty: valid everywhere)."""
    if obj.get("kind") == "HTTPRoute":
        try:
            HTTPRouteV1.model_validate(obj)
        except ValidationError as exc:
            return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return []
    import jsonschema
    import kubernetes_validate

    problems = []
    for version in versions:
        try:
            error = jsonschema.exceptions.best_match(_validator(version, str(obj.get("kind")), str(obj.get("apiVersion"))).iter_errors(dict(obj)))
            if error is not None:
                path = ".".join(str(p) for p in error.absolute_path) or "(root)"
                problems.append(f"Kubernetes {version}: {path}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as exc:
            problems.append(f"Kubernetes {version}: {exc.message}")
        except Exception as exc:  # a schema that cannot be resolved must reject, not crash, the revision
            problems.append(f"Kubernetes {version}: cannot validate {obj.get('kind')}: {type(exc).__name__}: {exc}")
    return problems


def validate_files(objects: Mapping[str, Mapping[str, Any]], versions: Iterable[str]) -> list[tuple[str, str]]:
    """(file name, problem) for every rendered object that a version's schema rejects."""
    versions = list(versions)
    return [(name, problem) for name, obj in objects.items() for problem in validate_manifest(obj, versions)]
