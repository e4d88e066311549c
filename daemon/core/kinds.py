"""The registry of resource kinds: where their specs live, how they validate, who builds them.

Everything is named by import path and loaded lazily, so `validate` and `plan` import only the pydantic
spec models and the light observers, never torch, bentoml or prefect.

`code_version` is part of every fingerprint of the kind: bump it when the builder's output for the same
spec changes (a new cleaning rule, a different training loop), and every resource of the kind rebuilds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Kind:
    name: str  # singular, used in plans: "table"
    directory: str  # config group under specs/: "tables"
    spec_model: str  # "module:Class" of the pydantic model
    adapter: str  # "module:Class" of the adapter (observe + apply)
    code_version: str
    order: int  # tie-breaker for display and waves: tables before models before services
    # Optional "module:function(composed) -> list[SpecDoc]": resources derived from other specs
    # (e.g. one generated dashboard per service). Must be pure and light.
    derive: str | None = None
    # Top-level spec fields that describe the resource without shaping what it builds (description,
    # owners, ...): left out of its fingerprint, so changing them updates metadata, never rebuilds.
    metadata_fields: tuple[str, ...] = ()
    # Kinds whose *data* (not spec) this kind consumes: their fingerprints stay out of this kind's, and
    # the adapter compares the data identity its build recorded with the upstream's (graph.py docstring).
    data_inputs: tuple[str, ...] = ()
    # Optional "module:function(home, *, prefect, keep_services) -> list of objects with tick() and close()":
    # the kind's long-lived helpers (a process supervisor, a worker pool). The daemon calls every hook's
    # tick() between cycles and close() on stop, so the loop never names a kind.
    lifecycle: str | None = None


KINDS: tuple[Kind, ...] = (
    Kind("table", "tables", "daemon.schema.table:TableSpec", "daemon.adapters.tables.adapter:TableAdapter", "table/1", 10,
         metadata_fields=("description", "owners", "tags", "schedule", "maintenance", "retention", "prune"), data_inputs=("table",),
         lifecycle="daemon.adapters.tables.runner:hooks"),
    Kind("online", "online", "daemon.schema.online:OnlineSpec", "daemon.adapters.online.adapter:OnlineAdapter", "online/1", 15, derive="flows.online.derive:derive_online"),
    Kind("model", "models", "daemon.schema.model:ModelSpec", "daemon.adapters.models.adapter:ModelAdapter", "model/2", 20,  # 2: canonical row order by a row key
         metadata_fields=("description", "owners", "tags", "retrain", "prune"), data_inputs=("table",)),
    Kind("service", "services", "daemon.schema.service:ServiceSpec", "daemon.adapters.services.adapter:ServiceAdapter", "service/1", 30,
         metadata_fields=("description", "owners", "deploy"), lifecycle="daemon.adapters.services.lifecycle:hooks"),
    Kind("manifests", "manifests", "daemon.schema.deploy:ManifestsSpec", "daemon.adapters.manifests:ManifestsAdapter", "manifests/1", 35,
         derive="daemon.core.manifests:derive_manifests"),
    Kind("dashboard", "dashboards", "daemon.schema.dashboard:DashboardSpec", "daemon.adapters.dashboards:DashboardAdapter", "dashboard/1", 40, derive="dashboards.derive:derive_all",
         metadata_fields=("owners",)),
)


def kind_by_name(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"unknown resource kind {name!r}")


@cache
def load_object(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
