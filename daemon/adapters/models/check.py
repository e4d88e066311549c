"""Model checks that need another resource: do the named columns exist in the source table?

Runs in `specd validate`/`plan` (no torch, bentoml or prefect). The table's columns come from the live
Delta log when the table exists (the latest `metaData.schemaString`, read as JSON — cheap), else from
the upstream table spec's declared schema; with neither, nothing can be said yet and nothing is
reported (the build-time check in the training process still applies).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.adapters.base import AdapterContext
from daemon.core.yamlpos import YamlSyntaxError, line_for, parse_with_lines
from daemon.shared.errors import SpecIssue
from flows.tables import is_local, local_path, table_uri
from flows.training.schema import schema_type

if TYPE_CHECKING:
    from daemon.core.graph import Graph, Resource


def source_table(ctx: AdapterContext, table: str) -> tuple[str, dict[str, str]]:
    """The Delta URI of a table and the storage options (secret references resolved: apply time only)."""
    from daemon.shared.storage_uri import client_options

    return table_uri(ctx.storage_root, table), client_options(ctx.env.storage.storage_options, ctx.env.tls, ctx.home) or {}


def live_columns(uri: str, storage_options: dict[str, str] | None = None) -> dict[str, str] | None:
    """{column: Delta type name} of the table's latest schema, or None when no table is there."""
    if not is_local(uri):
        try:
            from deltalake import DeltaTable

            return {f.name: str(f.type) for f in DeltaTable(uri, storage_options=storage_options or None).schema().fields}
        except Exception:
            return None
    log_dir = Path(local_path(uri)) / "_delta_log"
    try:
        names = sorted((n for n in os.listdir(log_dir) if n.endswith(".json") and n[:20].isdigit()), reverse=True)
    except OSError:
        return None
    for name in names:
        try:
            lines = (log_dir / name).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError):
            continue  # a torn commit file: the table's own status names it; look at older ones
        for line in lines:
            if '"metaData"' not in line:
                continue
            try:
                meta = json.loads(line).get("metaData")
                if meta and meta.get("schemaString"):
                    fields = json.loads(meta["schemaString"]).get("fields", [])
                    return {f["name"]: f["type"] if isinstance(f["type"], str) else json.dumps(f["type"]) for f in fields}
            except (ValueError, AttributeError, KeyError, TypeError):
                continue
    if names:  # older JSON cleaned up after a checkpoint: ask deltalake
        try:
            from deltalake import DeltaTable

            return {f.name: str(f.type) for f in DeltaTable(uri).schema().fields}
        except Exception:
            return None
    return None


def declared_columns(graph: Graph, table: str, by_key: dict[str, Resource] | None = None) -> dict[str, str] | None:
    resource = (graph.by_key() if by_key is None else by_key).get(f"table/{table}")
    schema = getattr(getattr(resource, "spec", None), "schema_", None)
    columns = getattr(schema, "columns", None)
    return {c.name: c.type for c in columns} if columns else None


def check_models(ctx: AdapterContext, resources: Sequence[Resource], graph: Graph) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    by_key = graph.by_key()  # once, not once per model
    for resource in resources:
        if resource.kind != "model":
            continue
        spec = resource.spec
        uri, options = source_table(ctx, spec.data.table)
        columns = live_columns(uri, options) or declared_columns(graph, spec.data.table, by_key)
        if columns is None:
            continue
        where = f"table {spec.data.table!r}"
        line_map: list[dict] = []  # the file's line map, parsed only when there is something to report

        def issue(key_path: tuple, message: str, resource: Resource = resource, line_map: list = line_map) -> None:
            if not line_map:
                line_map.append(_lines(ctx, resource))
            issues.append(SpecIssue(resource.path, line_for(line_map[0], key_path), ".".join(map(str, key_path)), message))

        if spec.data.target not in columns:
            issue(("data", "target"), f"unknown target column {spec.data.target!r} in {where} (columns: {', '.join(columns)})")
        for index, name in enumerate(spec.data.features):
            if name not in columns:
                issue(("data", "features", index), f"unknown feature column {name!r} in {where}")
            elif schema_type(columns[name]) is None:
                issue(("data", "features", index), f"feature {name!r} has unsupported type {columns[name]} (numeric or string only)")
        for index, name in enumerate(spec.data.exclude):
            if name not in columns:
                issue(("data", "exclude", index), f"unknown column {name!r} in {where}")
        for index, name in enumerate(spec.sensitive_attributes):
            if name not in columns:
                issue(("sensitive_attributes", index), f"unknown sensitive attribute column {name!r} in {where}")
        if spec.split.column and spec.split.column not in columns:
            issue(("split", "column"), f"unknown split column {spec.split.column!r} in {where}")
        if spec.task == "regression" and spec.data.target in columns and schema_type(columns[spec.data.target]) != "float64" \
                and schema_type(columns[spec.data.target]) != "int64":
            issue(("data", "target"), f"regression target {spec.data.target!r} must be numeric, is {columns[spec.data.target]}")
    return issues


def _lines(ctx: AdapterContext, resource: Resource) -> dict:
    try:
        _, lines = parse_with_lines((Path(ctx.repo_dir) / resource.path).read_text(encoding="utf-8"))
        return lines
    except (OSError, YamlSyntaxError):
        return {}
