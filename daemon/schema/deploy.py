"""Deploy targets: where a service runs beyond `bentoml serve` beside the daemon, and who approves what.

Platform teams already run Argo CD or Flux: specd does not operate their clusters, it hands them
ordinary manifests. A service's `deploy:` block (defaults from the environment's `deploy:` section)
with `target: kubernetes` becomes a derived `manifests/<service>` resource: one Deployment per variant,
Services, HorizontalPodAutoscalers, a Gateway API HTTPRoute with the variants' weights, and ConfigMaps —
rendered by the pure `daemon.core.manifests` and written to a directory that Argo CD or Flux watches.
`ManifestsSpec` is that resource's validated data: everything the rendering depends on, so its
fingerprint and property diffs say exactly what the manifests will change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from daemon.schema.base import ResourceName, SpecModel

QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$"  # a Kubernetes resource quantity: 250m, 1, 512Mi
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # RFC 1123 label: namespaces, object names
IMAGE_REF = r"^[a-z0-9]+([._/:-][a-z0-9]+)*$"  # registry/path (lowercase; ports allowed)
IMAGE_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
VERSION = r"^1\.[0-9]{1,2}$"  # a Kubernetes minor version: 1.29


class Amounts(SpecModel):
    cpu: str | None = Field(default=None, pattern=QUANTITY)
    memory: str | None = Field(default=None, pattern=QUANTITY)


class ResourcesSpec(SpecModel):
    requests: Amounts = Field(default_factory=lambda: Amounts(cpu="250m", memory="512Mi"))
    limits: Amounts = Field(default_factory=lambda: Amounts(memory="1Gi"))


class AutoscalingSpec(SpecModel):
    """A HorizontalPodAutoscaler per variant: on CPU utilisation, or on requests per second per pod
    (a Pods metric `specd_requests_per_second`, which needs a metrics adapter such as prometheus-adapter)."""

    min: int = Field(default=1, ge=1, le=1000)
    max: int = Field(ge=1, le=1000)
    target_cpu: int | None = Field(default=None, ge=1, le=100)  # average CPU utilisation, percent of requests
    target_rps: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> AutoscalingSpec:
        if (self.target_cpu is None) == (self.target_rps is None):
            raise ValueError("set exactly one of target_cpu (percent) or target_rps (requests per second per pod)")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class ImageSpec(SpecModel):
    repository: str | None = Field(default=None, pattern=IMAGE_REF)  # None: <env deploy.registry>/<service>
    tag: str | None = Field(default=None, pattern=IMAGE_TAG)  # None: the service version (a digest of its spec)


class GatewayRef(SpecModel):
    name: str | None = Field(default=None, pattern=DNS_LABEL)  # None: env deploy.gateway
    namespace: str | None = Field(default=None, pattern=DNS_LABEL)  # None: the Gateway in the service's namespace
    hostnames: list[str] = Field(default_factory=list)


class DeploySpec(SpecModel):
    """A service's `deploy:` block. Unset fields take the environment's `deploy:` section."""

    target: Literal["local", "kubernetes"] | None = None  # None: env deploy.target (local: bentoml serve here)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL)
    replicas: int = Field(default=1, ge=0, le=1000)  # per variant, without autoscaling
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    autoscaling: AutoscalingSpec | None = None
    image: ImageSpec = Field(default_factory=ImageSpec)
    gateway: GatewayRef = Field(default_factory=GatewayRef)
    container_port: int = Field(default=3000, ge=1, le=65535)  # BentoML's default port inside the image


class DeploySection(SpecModel):
    """The environment's `deploy:` section: defaults of every service's `deploy:` block and where the
    rendered manifests go."""

    target: Literal["local", "kubernetes"] = "local"
    namespace: str = Field(default="specd", pattern=DNS_LABEL)
    registry: str = Field(default="localhost/specd", pattern=IMAGE_REF)  # image repository prefix
    base_image: str | None = None  # the base image containerized bentos start from (None: BentoML's)
    gateway: str = Field(default="specd", pattern=DNS_LABEL)  # the Gateway the HTTPRoutes attach to
    manifests_dir: str = "manifests"  # relative: under the state home; the directory Argo CD / Flux watch
    kubernetes_versions: list[str] = Field(default_factory=lambda: ["1.29", "1.31"], min_length=1)  # validated against each

    @model_validator(mode="after")
    def _versions(self) -> DeploySection:
        import re

        bad = [v for v in self.kubernetes_versions if not re.fullmatch(VERSION, v)]
        if bad:
            raise ValueError(f"kubernetes_versions: {bad} are not minor versions like 1.29")
        parts = self.manifests_dir.replace("\\", "/").split("/")
        if not self.manifests_dir or (not self.manifests_dir.startswith("/") and ".." in parts) or any(ord(c) < 32 for c in self.manifests_dir):
            raise ValueError(f"manifests_dir: {self.manifests_dir!r} must be an absolute path or a relative one inside the state home")
        return self


class ApprovalsSection(SpecModel):
    """Which changes need a reviewed merge by the owners of the specs they touch (`specd plan` names them).

    train: a model trains (create, or a change that retrains); traffic: a service's traffic split, its
    variants or its deployment shift; any: every other change."""

    train: Literal["none", "reviewed"] = "none"
    traffic: Literal["none", "reviewed"] = "none"
    any: Literal["none", "reviewed"] = "none"


class ManifestVariant(SpecModel):
    name: ResourceName
    role: Literal["champion", "challenger"] | None = None
    candidate: str | None = None
    version: str | None = None
    weight: int = Field(ge=0, le=1000)  # HTTPRoute backend weight: per mille of the service's traffic


class ManifestsSpec(SpecModel):
    """The derived `manifests/<service>` resource: every input of the rendered manifests."""

    service: ResourceName
    model: ResourceName
    namespace: str = Field(pattern=DNS_LABEL)
    replicas: int = Field(ge=0)
    resources: ResourcesSpec
    autoscaling: AutoscalingSpec | None = None
    image: str
    container_port: int
    gateway: dict[str, object]
    variants: list[ManifestVariant] = Field(min_length=1)
    settings: dict[str, object]  # what the routing ConfigMap carries (no secret values: secret names only)
    secrets: list[str] = Field(default_factory=list)  # secret names the pods read from the specd-secrets Secret
    kubernetes_versions: list[str]
    prune: bool | None = None
