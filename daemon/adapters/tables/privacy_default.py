"""Privacy by default at validate time: a column named like personal data needs a privacy declaration.

The columns of each table are what its spec tells (declared schema, clean/feature columns, a select),
what its upstream tables give (schema_check follows the stages), the header of a local CSV file source,
or the live Delta schema. A column whose name looks personal (flows.tables.pii_detect.name_kind) and
that is declared under `privacy.columns` neither here nor in an upstream table it is read from is a
warning, and an error in an environment with `privacy.require_declared: true`. Values are sampled at
build time (flows/tables/privacy_scan.py), where the data is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.adapters.tables.schema_check import _Columns
from flows.tables.pii_detect import name_kind

if TYPE_CHECKING:
    from daemon.core.graph import Resource

HINT = ("declare it under privacy.columns (drop, hash, mask, generalize or encrypt; see README "
        "'Privacy by default')")


def _csv_header(spec: Any, data_root: Path) -> list[str]:
    source = spec.source
    if getattr(source, "type", None) != "file" or source.format != "csv" or any(c in source.path for c in "*?["):
        return []
    try:
        with open(data_root / source.path, encoding="utf-8", errors="replace") as handle:
            line = handle.readline(65536)
    except OSError:
        return []
    delim = str(source.options.get("delim", source.options.get("sep", ",")))
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(delim) if c.strip()]


def spec_columns(spec: Any, name: str, tables: _Columns, data_root: Path) -> list[str]:
    """Every column name the table is known to write (order kept, duplicates removed)."""
    found: list[str] = list(tables.output(name) or [])
    found += [c.name for c in spec.schema_.columns]
    if spec.clean is not None:
        found += list(getattr(spec.clean, "columns", {}) or {})
    if spec.features is not None:
        found += [out for _, out, *_ in spec.features.derived_outputs()]
    found += _csv_header(spec, data_root)
    if spec.features is not None and spec.features.select is not None:
        keep = {c.lower() for c in spec.features.select}
        found = [c for c in found if c.lower() in keep]
    drop = {c.lower() for c in getattr(spec.features, "drop", []) or []}
    return [c for c in dict.fromkeys(found) if c.lower() not in drop]


def declared(name: str, specs: dict[str, Any], depth: int = 0) -> set[str]:
    """Columns declared under privacy.columns by a table or any table it reads (lower case)."""
    spec = specs.get(name)
    if spec is None or depth > 50:
        return set()
    out = {c.lower() for c in (spec.privacy.columns if spec.privacy else {})}
    source = spec.source
    if getattr(source, "type", None) == "table":
        for upstream in source.inputs:
            out |= declared(upstream, specs, depth + 1)
    return out


def undeclared_personal(resources: Sequence[Resource], storage_root: str, data_root: Path,
                        storage_options: dict[str, str] | None = None) -> dict[str, list[tuple[tuple, str]]]:
    """Per table: (field path, message) for each column that looks personal and is not declared."""
    tables = _Columns(resources, storage_root, storage_options)
    specs = {r.name: r.spec for r in resources}
    found: dict[str, list[tuple[tuple, str]]] = {}
    for resource in resources:
        spec = resource.spec
        covered = declared(resource.name, specs)
        problems = []
        for column in spec_columns(spec, resource.name, tables, data_root):
            kind = name_kind(column)
            if kind and column.lower() not in covered:
                field = ("privacy", "columns") if spec.privacy is not None else ("source",)
                problems.append((field, f"column {column!r} looks like personal data ({kind}) and has no privacy "
                                        f"declaration: {HINT}"))
        if problems:
            found[resource.name] = problems
    return found


def personal_issues(resources: Sequence[Resource], adapter: Any) -> list:
    """The findings as SpecIssues (`file:line: field: message`), for warnings or errors."""
    from daemon.core.safeyaml import read_text
    from daemon.core.yamlpos import line_for, parse_with_lines
    from daemon.shared.errors import SpecIssue

    by_name = {r.name: r for r in resources}
    issues = []
    options = adapter._options() if "://" in adapter.root else None
    for name, problems in undeclared_personal(resources, adapter.root, adapter.ctx.data_root, options).items():
        resource = by_name[name]
        try:
            _, lines = parse_with_lines(read_text(adapter.ctx.repo_dir / resource.path))
        except Exception:
            lines = {}
        for path, message in problems:
            issues.append(SpecIssue(resource.path, line_for(lines, path), ".".join(path), message))
    return issues
