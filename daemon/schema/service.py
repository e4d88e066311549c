"""Service specs: a model published as an HTTP API that splits live traffic between its variants.

A variant is either a role of the model's current release (the champion, or a challenger — the first one,
or a named candidate) or an explicit model-store tag. Weights are relative (90/10 and 0.9/0.1 mean the
same). Everything a running worker can pick up without a restart (weights, variants, sticky key,
batching, logging, API keys) goes to the routing file; host, port and workers need a new process.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from daemon.schema.base import Ref, ResourceName, SecretRef, SpecModel
from daemon.schema.deploy import DeploySpec
from daemon.schema.image import ImageBuildSpec
from daemon.schema.service_promotion import ServicePromotionSpec

PORT_SPAN = 800  # default ports: env.services.port_base + a stable offset in [0, PORT_SPAN)


class VariantSpec(SpecModel):
    name: ResourceName
    role: Literal["champion", "challenger"] | None = None
    candidate: str | None = None  # with role challenger: which challenger (candidate name); default the first
    version: str | None = None  # explicit model-store tag "<model>:<version>" instead of a role
    weight: float = Field(ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> VariantSpec:
        if (self.role is None) == (self.version is None):
            raise ValueError("set exactly one of 'role' (champion/challenger) or 'version' (a model tag)")
        if self.candidate is not None and self.role != "challenger":
            raise ValueError("'candidate' selects a challenger; it needs role: challenger")
        return self


class RoutingSpec(SpecModel):
    """Sticky routing: requests with the same key always reach the same variant (deterministic hash)."""

    sticky_field: str | None = None  # a top-level field of the request body, e.g. user_id
    sticky_header: str | None = None  # or an HTTP header, e.g. X-User-Id (the field wins when both are set)


class BatchingSpec(SpecModel):
    enabled: bool = True
    max_batch_size: int = Field(default=64, ge=1, le=65536)  # rows per model call
    # How long a batch may wait for requests that are already arriving. Generous by default: a tight
    # bound buys nothing on CPU and (in BentoML's own dispatcher) turned into 503s.
    max_latency_ms: float = Field(default=50.0, ge=1.0, le=60000.0)


class SLOSpec(SpecModel):
    latency_p99_ms: float = Field(default=100.0, gt=0)
    error_rate: float = Field(default=0.01, ge=0, le=1)


class AuthSpec(SpecModel):
    required: bool = False
    api_keys: list[SecretRef] = Field(default_factory=list)  # ${secret:NAME}; read at apply time only
    header: str = "X-API-Key"

    @model_validator(mode="after")
    def _keys_when_required(self) -> AuthSpec:
        if self.required and not self.api_keys:
            raise ValueError("auth.required needs at least one api_keys entry (${secret:NAME})")
        return self


class PredictionLogSpec(SpecModel):
    enabled: bool = True
    queue_size: int = Field(default=10000, ge=1, le=10_000_000)  # bounded: when full, records are dropped and counted
    flush_interval_s: float = Field(default=1.0, gt=0, le=300)


class ArtifactSpec(SpecModel):
    build: bool = False  # `bentoml build` a versioned bento per service version (slow: opt-in)
    image: ImageBuildSpec | None = None  # and `bentoml containerize` it into an image tagged with the release

    @model_validator(mode="after")
    def _image_needs_build(self) -> ArtifactSpec:
        if self.image is not None and not self.build:
            raise ValueError("image: an image is built from the service's bento; set build: true")
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler):  # type: ignore[no-untyped-def]
        # Without an image the normalised data (so every fingerprint and manifest tag) is what it was.
        out = handler(self)
        if out.get("image") is None:
            out.pop("image", None)
        return out


class FeaturesFromSpec(SpecModel):
    """Look a request's features up in the online store by entity key (the table's `online:` block).

    A request may then carry only the key (plus any request-time features, which win over stored ones):
    one HMGET per row, one pipelined round trip per request; an unknown key is a 404 naming it, an
    unreachable store a 503 within `timeout_ms`.
    """

    table: ResourceName
    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # request field holding the entity key
    timeout_ms: float = Field(default=250.0, gt=0, le=10_000)  # the whole lookup, connect included


class ServiceSpec(SpecModel):
    description: str = ""
    owners: list[str] = Field(default_factory=list)  # metadata: people or teams (@org/team) whose approval a change needs
    model: ResourceName
    variants: list[VariantSpec] = Field(min_length=1)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    max_request_rows: int = Field(default=256, ge=1, le=1_000_000)  # larger requests get 413
    workers: int | None = Field(default=None, ge=1, le=64)  # None: env.services.workers
    host: str | None = None  # None: env.services.host (127.0.0.1)
    port: int | None = Field(default=None, ge=1024, le=65535)  # None: env.services.port_base + stable offset
    slo: SLOSpec = Field(default_factory=SLOSpec)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    prediction_log: PredictionLogSpec = Field(default_factory=PredictionLogSpec)
    artifact: ArtifactSpec = Field(default_factory=ArtifactSpec)
    features_from: FeaturesFromSpec | None = None  # serve by entity key from the online store
    promotion: ServicePromotionSpec = Field(default_factory=ServicePromotionSpec)  # online A/B verdicts become Git commits
    deploy: DeploySpec = Field(default_factory=DeploySpec)  # metadata for the local process; target kubernetes: manifests/<name>
    prune: bool | None = None

    @model_validator(mode="after")
    def _variants_consistent(self) -> ServiceSpec:
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
        if sum(v.weight for v in self.variants) <= 0:
            raise ValueError("variant weights must add up to more than 0")
        if sum(1 for v in self.variants if v.role == "champion") > 1:
            raise ValueError("at most one variant can have role: champion")
        for variant in self.variants:
            if variant.version is not None and not variant.version.startswith(f"{self.model}:"):
                raise ValueError(f"variant {variant.name}: version {variant.version!r} is not a tag of model {self.model!r}")
        online = self.promotion.online
        if online is not None and online.champion not in names:
            raise ValueError(f"promotion.online.champion: {online.champion!r} is not a variant (variants: {', '.join(names)})")
        return self

    def references(self) -> list[Ref]:
        refs = [Ref("model", self.model, ("model",))]
        if self.features_from is not None:
            refs.append(Ref("table", self.features_from.table, ("features_from", "table")))
        return refs

    def normalised_weights(self) -> dict[str, float]:
        total = sum(v.weight for v in self.variants)
        return {v.name: v.weight / total for v in self.variants}


def default_port(name: str, port_base: int) -> int:
    """A stable port per service name, so that a service keeps its port across daemon restarts."""
    offset = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % PORT_SPAN
    return port_base + offset
