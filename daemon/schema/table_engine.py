"""Which table features each build engine runs, so `validate` refuses what an engine cannot do.

The DuckDB engine (the default) runs every table feature in one stream on one machine. The Dask engine
(`engine: dask`, flows/tables/dask_engine.py) runs the row-local part of the pipeline once per input
partition on a Dask cluster, and a dedupe after a shuffle of the rows by key. Anything else that needs
the rows of several partitions together (statistics-based fills, windows, joins, aggregates,
uniqueness) or a single reader (a database, an HTTP API, a cursor) is not something it can do. Such a
spec is a validation error on its `engine:` line that names the feature — never a silent fallback to DuckDB, which would quietly not scale.
"""

from __future__ import annotations

from typing import Any

ENGINES = ("duckdb", "dask")
_DASK_FORMATS = ("parquet", "csv")
_WHOLE_TABLE_NULLS = ("mean", "median", "mode", "forward_fill")


def dask_unsupported(fields: dict[str, Any]) -> list[str]:
    """The features among a table spec's validated `fields` that the Dask engine does not run."""
    found: list[str] = []
    source = fields.get("source")
    kind = getattr(source, "type", None)
    if kind == "file":
        if source.format not in _DASK_FORMATS:
            found.append(f"source.format {source.format!r} (parquet and csv only)")
        if source.row_id:
            found.append("source.row_id (row numbers follow one reader's order)")
        if source.ingest != "all":
            found.append(f"source.ingest {source.ingest!r}")
        if "://" in source.path:
            found.append("source.path as a URI (files under the data root only)")
    elif kind == "table":
        if source.sql is not None or len(source.inputs) != 1:
            found.append("source.sql (a table source is read as its single input's Delta files)")
    elif kind is not None:
        found.append(f"source.type {kind!r} (file and table sources only)")
    clean = fields.get("clean")
    if clean is not None:
        if clean.dedupe is not None:  # shuffled by the raw key values: a key cleaning changes would split a group
            found += [f"clean.dedupe.keys {key!r} with clean.columns.{key} (dedupe keys are shuffled as read)"
                      for key in clean.dedupe.keys if key in clean.columns]
        for name, column in clean.columns.items():
            if column.nulls is not None and column.nulls.strategy in _WHOLE_TABLE_NULLS:
                found.append(f"clean.columns.{name}.nulls.strategy {column.nulls.strategy!r}")
            if column.clip is not None and (column.clip.lower_quantile is not None or column.clip.upper_quantile is not None):
                found.append(f"clean.columns.{name}.clip quantiles")
    features = fields.get("features")
    if features is not None:
        for label in ("joins", "windows", "aggregate"):
            if getattr(features, label):
                found.append(f"features.{label}")
    quality = fields.get("quality")
    if quality is not None:
        found += [f"quality.columns.{name}.unique" for name, checks in quality.columns.items() if checks.unique]
    write = fields.get("write")
    if write is not None and write.mode == "merge":
        found.append("write.mode 'merge'")
    incremental = fields.get("incremental")
    if incremental is not None or getattr(source, "cursor", None):
        found.append("incremental.cursor")
    return found
