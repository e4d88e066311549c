"""The pipeline's seams to the transform stages: one small function per stage.

The stages themselves (flows/tables/{clean,features,quality,privacy}.py) are pure SQL generators and a
per-batch privacy function; here we only run them against the build's DuckDB connection, each stage
becoming one view over the previous one. Keeping every call behind one function means a change in a
stage's signature is a one-place edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

REASON_COLUMN = "_specd_quarantine_reason"


class StageError(Exception):
    """A transform stage does not fit its input; the message names the spec field."""


@dataclass(frozen=True)
class StageResult:
    view: str
    carries_reason: bool  # the view has the _specd_quarantine_reason column
    counts_sql: str | None = None  # clean: one row (rows_read, rows_filtered, rows_deduplicated)
    group_rows_column: str | None = None  # clean with dedupe: each row's key-group size (see clean.py)


def columns_of(connection: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    return {row[0]: row[1] for row in connection.execute(f'DESCRIBE SELECT * FROM "{view}"').fetchall()}


def clean(connection: duckdb.DuckDBPyConnection, view: str, spec: Any, *, group_rows: bool = False) -> StageResult:
    from flows.tables.clean import CleanError, clean_sql

    try:
        result = clean_sql(view, spec, columns_of(connection, view), group_rows=group_rows)
    except CleanError as exc:
        raise StageError(str(exc)) from None
    connection.execute(f"CREATE VIEW _specd_cleaned AS {result.sql}")
    return StageResult("_specd_cleaned", result.adds_reason, result.counts_sql, result.group_rows_column)


def features(connection: duckdb.DuckDBPyConnection, view: str, spec: Any, inputs: Mapping[str, str], carries_reason: bool,
             carried: tuple[str, ...] = ()) -> StageResult:
    from flows.tables.features import FeaturesError, features_sql

    try:
        sql = features_sql(view, spec, inputs, carries_reason=carries_reason, carried=carried)
    except FeaturesError as exc:
        raise StageError(str(exc)) from None
    connection.execute(f"CREATE VIEW _specd_features AS {sql}")
    return StageResult("_specd_features", carries_reason)


def quality(connection: duckdb.DuckDBPyConnection, view: str, spec: Any, carries_reason: bool) -> StageResult:
    from flows.tables import quality as quality_module

    try:
        sql = quality_module.quality_sql(view, spec, carries_reason=carries_reason)
    except ValueError as exc:
        raise StageError(str(exc)) from None
    connection.execute(f"CREATE VIEW _specd_quality AS {sql}")
    return StageResult("_specd_quality", REASON_COLUMN in columns_of(connection, "_specd_quality"))


class TableChecks:
    """Table-level checks (row count, freshness) over the rows this build writes, accumulated per batch."""

    def __init__(self, spec: Any):
        from flows.tables.quality import TableStats

        self.spec = spec
        self.stats = TableStats(spec) if spec is not None else None

    def add(self, batch: pa.RecordBatch) -> None:
        if self.stats is not None:
            self.stats.add(batch)

    def failures(self) -> list[tuple[str, str]]:
        if self.stats is None:
            return []
        from flows.tables.quality import evaluate_table_checks, failed_checks

        results = evaluate_table_checks(self.spec, row_count=self.stats.row_count, newest=self.stats.newest)
        return [(r.check, r.message) for r in failed_checks(results)]


def protector(spec: Any, resolve_secret: Any) -> tuple[Any, Any]:
    """(per-batch function applying the privacy rules, schema function); keys resolved once per build."""
    if spec is None:
        return None, None
    from flows.tables.privacy import PrivacyError, protect_batch, protected_schema, resolve_keys

    keys = resolve_keys(spec, resolve_secret)

    def protect(batch: pa.RecordBatch) -> pa.RecordBatch:
        try:
            return protect_batch(batch, spec, keys)
        except PrivacyError as exc:
            raise StageError(str(exc)) from None

    def schema(schema: pa.Schema) -> pa.Schema:
        try:
            return protected_schema(schema, spec)
        except PrivacyError as exc:
            raise StageError(str(exc)) from None

    return protect, schema


def failure_counts(reasons: Any) -> dict[str, int]:
    from flows.tables.quality import failure_counts as count

    return count(reasons)
