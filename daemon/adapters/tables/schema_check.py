"""Columns named in a table's expressions must exist: a misspelt column is a validate error, not a build failure.

The stage inputs are known when the source is another table (`type: table` without its own SQL): the
upstream's output columns, from its spec where they can be derived (declared `schema.columns`, or its
`features.select`, or its own input columns carried through its stages), else from the live Delta log
(the latest `metaData.schemaString`, read as JSON — no deltalake import). The columns are followed
through the stages as the build runs them (joins bring the joined table's columns, derived columns and
windows add theirs, an aggregate keeps its keys and aggregates, then drop/select), and every column an
expression refers to is looked up at its stage. When a stage's input columns cannot be known, nothing is
reported for it (the build still fails with DuckDB's error).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.tables import is_local, local_path, table_uri

if TYPE_CHECKING:
    from daemon.core.graph import Resource

Problems = list[tuple[tuple, str]]


def live_columns(uri: str, storage_options: dict[str, str] | None = None) -> list[str] | None:
    """Column names of a Delta table's latest schema (local: read from the log; object store: deltalake), or None."""
    if not is_local(uri):
        try:
            from deltalake import DeltaTable

            return [f.name for f in DeltaTable(uri, storage_options=storage_options).schema().fields]
        except Exception:  # absent, unreachable: unknown columns, the check is skipped
            return None
    log_dir = Path(local_path(uri)) / "_delta_log"
    try:
        names = sorted((n for n in os.listdir(log_dir) if n.endswith(".json") and n[:20].isdigit()), reverse=True)
    except OSError:
        return None
    for name in names[:50]:
        try:
            text = (log_dir / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        for line in text.splitlines():
            if '"metaData"' not in line:
                continue
            try:
                meta = json.loads(line).get("metaData") or {}
                return [f["name"] for f in json.loads(meta["schemaString"]).get("fields", [])]
            except (ValueError, KeyError, TypeError):
                return None
    return None


def column_refs(expr: str, role: str) -> list[str] | None:
    """Unqualified column names an expression reads (lambda parameters excluded), or None if unparsable."""
    from flows.tables.expressions import _ROLE_TEMPLATES, parse_tree, walk

    template = _ROLE_TEMPLATES.get(role, _ROLE_TEMPLATES["scalar"])
    try:
        tree = parse_tree(template.format(expr=expr))
    except Exception:
        return None
    if tree.get("error"):
        return None
    nodes = list(walk(tree))
    params = set()
    for node in nodes:
        if node.get("class") == "LAMBDA":
            for inner in walk(node.get("lhs")):
                if inner.get("class") == "COLUMN_REF":
                    params.update(n.lower() for n in inner.get("column_names", []))
    names = []
    for node in nodes:
        if node.get("class") == "COLUMN_REF" and len(node.get("column_names", [])) == 1:
            name = node["column_names"][0]
            if name.lower() not in params and name not in names:
                names.append(name)
    return names


class _Columns:
    """Output columns of each table, from specs (in dependency order) or the live log."""

    def __init__(self, resources: Sequence[Resource], storage_root: str, storage_options: dict[str, str] | None = None):
        self.specs = {r.name: r.spec for r in resources}
        self.storage_root = storage_root
        self.storage_options = storage_options
        self.cache: dict[str, list[str] | None] = {}

    def output(self, name: str, depth: int = 0) -> list[str] | None:
        if name not in self.cache:
            self.cache[name] = None  # cycles: unknown
            spec = self.specs.get(name)
            columns = None
            if spec is not None and depth < 50:
                declared = [c.name for c in spec.schema_.columns]
                if declared and spec.schema_.policy == "enforce":
                    columns = declared
                else:
                    inputs = self.inputs(spec, depth)
                    columns = run_stages(spec, inputs, self, depth, None) if inputs is not None else None
                    if columns is None and spec.features is not None and spec.features.select:
                        columns = list(spec.features.select)
            if columns is None:
                columns = live_columns(table_uri(self.storage_root, name), self.storage_options)
            self.cache[name] = columns
        return self.cache[name]

    def inputs(self, spec: Any, depth: int) -> list[str] | None:
        source = spec.source
        if source.type == "table" and source.sql is None and len(source.inputs) == 1:
            return self.output(source.inputs[0], depth + 1)
        return None


def _suggest(name: str, columns: list[str]) -> str:
    import difflib  # here: only an unknown column needs it, and every `specd plan` would import it

    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def run_stages(spec: Any, columns: list[str], tables: _Columns, depth: int, problems: Problems | None) -> list[str] | None:
    """Follow `columns` through clean → features → quality; report unknown columns into `problems`."""
    source = spec.source
    where = f"table {source.inputs[0]!r}" if source.type == "table" and source.inputs else "the source"

    def check(path: tuple, expr: str, role: str, have: list[str]) -> None:
        if problems is None:
            return
        lowered = {c.lower() for c in have}
        for name in column_refs(expr, role) or []:
            if name.lower() not in lowered:
                problems.append((path, f"column {name!r} is not in the input here (from {where}: "
                                       f"{', '.join(have[:20])}{', ...' if len(have) > 20 else ''}){_suggest(name, have)}"))

    def need(path: tuple, name: str, have: list[str]) -> None:
        if problems is not None and name.lower() not in {c.lower() for c in have}:
            problems.append((path, f"column {name!r} is not in the input here{_suggest(name, have)}"))

    have = list(columns)
    if spec.clean is not None:
        if spec.clean.where:
            check(("clean", "where"), spec.clean.where, "predicate", have)
        for column in spec.clean.columns:
            need(("clean", "columns", column), column, have)
    features = spec.features
    if features is not None:
        for index, join in enumerate(features.joins):
            joined = tables.output(join.table, depth + 1)
            if joined is None:
                return None  # the joined table's columns are unknown: so is everything after
            for key in join.on:
                need(("features", "joins", index, "on"), key, have)
            brought = join.columns or [c for c in joined if c not in join.on]
            for column in join.columns:
                need(("features", "joins", index, "columns"), column, joined)
            have += [join.prefix + c for c in brought if join.prefix + c not in have]
        for name, expr in features.column_expressions().items():
            check(("features", "columns", name), expr, "scalar", have)
            if name not in have:
                have.append(name)
        for name, window in features.windows.items():
            check(("features", "windows", name, "expr"), window.expr, "window", have)
            for column in [*window.partition_by, *window.order_by]:
                need(("features", "windows", name), column, have)
            if name not in have:
                have.append(name)
        if features.aggregate is not None:
            for column in features.aggregate.by:
                need(("features", "aggregate", "by"), column, have)
            for name, expr in features.aggregate.aggregate_expressions().items():
                check(("features", "aggregate", "aggregates", name), expr, "aggregate", have)
            have = list(features.aggregate.by) + [n for n in features.aggregate.aggregates if n not in features.aggregate.by]
            if features.aggregate.having:
                check(("features", "aggregate", "having"), features.aggregate.having, "aggregate", have + columns)
        for column in features.drop:
            need(("features", "drop"), column, have)
        have = [c for c in have if c not in features.drop]
        if features.select is not None:
            for column in features.select:
                need(("features", "select"), column, have)
            have = list(features.select)
    quality = spec.quality
    if quality is not None:
        for name, expr in quality.rules.items():
            check(("quality", "rules", name), expr, "predicate", have)
        for column in quality.columns:
            need(("quality", "columns", column), column, have)
        if quality.freshness is not None:
            need(("quality", "freshness", "column"), quality.freshness.column, have)
    return have


def column_problems(resources: Sequence[Resource], adapter: Any) -> dict[str, Problems]:
    """Per table name: (field path, message) for every column an expression names that its input lacks."""
    tables = _Columns(resources, adapter.root, adapter._options() if not is_local(adapter.root) else None)
    found: dict[str, Problems] = {}
    for resource in resources:
        inputs = tables.inputs(resource.spec, 0)
        if inputs is None:
            continue
        problems: Problems = []
        run_stages(resource.spec, inputs, tables, 0, problems)
        if problems:
            found[resource.name] = list(dict.fromkeys(problems))
    return found
