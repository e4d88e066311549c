"""Data quality: row checks as one DuckDB column, table checks after the build, failure counts.

Row-level checks (not-null, unique, range, allowed set, regex, custom predicates) become a single
`_specd_quarantine_reason` column: NULL when the row passes, else the names of every failed check joined
by '; ' (`email.regex; amount.range`). The same names label `specd_table_quality_failures_total{check}`.
What a failure does is the table's `action`, applied by the pipeline:

- `fail`: any reason fails the build and nothing is written;
- `warn`: every row is written (reason column dropped), the failures are reported;
- `quarantine`: rows with a reason go to `<table>__quarantine` together with it.

Table-level checks (row-count bounds, freshness of a timestamp column) need the finished table, so the
pipeline runs `table_stats_sql` over it and hands the numbers to the pure `table_checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from daemon.schema.table_transforms import QualitySpec
from flows.tables.expressions import REASON_COLUMN, ident, literal

SEPARATOR = "; "


def _row_checks(spec: QualitySpec) -> list[str]:
    """One `CASE WHEN <failed> THEN '<check name>' END` per check, in `check_names()` order."""
    cases: list[str] = []

    def fails(condition: str, check: str) -> None:
        cases.append(f"CASE WHEN {condition} THEN {literal(check)} END")

    for column, checks in spec.columns.items():
        col = ident(column)
        if checks.not_null:
            fails(f"{col} IS NULL", f"{column}.not_null")
        if checks.unique:
            fails(f"{col} IS NOT NULL AND count(*) OVER (PARTITION BY {col}) > 1", f"{column}.unique")
        bounds = []
        if checks.min is not None:
            bounds.append(f"{col} < {literal(checks.min)}")
        if checks.max is not None:
            bounds.append(f"{col} > {literal(checks.max)}")
        if bounds:
            fails(f"coalesce({' OR '.join(bounds)}, FALSE)", f"{column}.range")
        if checks.allowed is not None:
            allowed = ", ".join(literal(v) for v in checks.allowed)
            fails(f"coalesce({col} NOT IN ({allowed}), FALSE)", f"{column}.allowed")
        if checks.regex is not None:
            fails(
                f"coalesce(NOT regexp_matches(CAST({col} AS VARCHAR), {literal(checks.regex)}), FALSE)",
                f"{column}.regex",
            )
    for name, predicate in spec.rules.items():
        fails(f"NOT coalesce(({predicate}), TRUE)", f"rule.{name}")
    return cases


def quality_sql(input_view: str, spec: QualitySpec, *, carries_reason: bool = False) -> str:
    """`input_view` plus `_specd_quarantine_reason` (NULL = passed).

    `carries_reason`: the input already has the column (cast failures from cleaning); reasons combine.
    """
    cases = _row_checks(spec)
    if carries_reason:
        cases.insert(0, ident(REASON_COLUMN))
    if not cases:
        reason = "CAST(NULL AS VARCHAR)"
    else:
        reason = f"NULLIF(concat_ws({literal(SEPARATOR)}, {', '.join(cases)}), '')"
    star = f"* EXCLUDE ({ident(REASON_COLUMN)})" if carries_reason else "*"
    return f"SELECT {star}, {reason} AS {ident(REASON_COLUMN)} FROM {input_view}"


def failure_counts(reasons) -> dict[str, int]:
    """{check name: failed rows} from a reason column (pyarrow Array/ChunkedArray), vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(reasons, pa.ChunkedArray):
        reasons = reasons.combine_chunks()
    failed = reasons.filter(pc.is_valid(reasons))
    if len(failed) == 0:
        return {}
    names = pc.list_flatten(pc.split_pattern(failed, SEPARATOR))
    counts = pc.value_counts(names)
    return {
        str(v): int(c)
        for v, c in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    }


def merge_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    for name, count in more.items():
        total[name] = total.get(name, 0) + count
    return total


# ---------------------------------------------------------------- table checks
@dataclass(frozen=True)
class TableCheckResult:
    check: str  # "table.row_count" or "table.freshness"
    passed: bool
    message: str


def table_stats_sql(table_view: str, spec: QualitySpec) -> str | None:
    """One row (row_count, newest) over the built table, or None when no table check is declared."""
    if spec.row_count is None and spec.freshness is None:
        return None
    newest = f"max({ident(spec.freshness.column)})" if spec.freshness else "NULL"
    return f"SELECT count(*) AS row_count, {newest} AS newest FROM {table_view}"


def _as_utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        # a date is fresh until its end: compare from the end of that day
        value = datetime(value.year, value.month, value.day, 23, 59, 59, 999999)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def evaluate_table_checks(
    spec: QualitySpec, *, row_count: int, newest: datetime | date | None = None, now: datetime | None = None
) -> list[TableCheckResult]:
    """Row-count bounds and freshness of the finished table (naive timestamps are taken as UTC)."""
    results: list[TableCheckResult] = []
    if spec.row_count is not None:
        low, high = spec.row_count.min, spec.row_count.max
        ok = (low is None or row_count >= low) and (high is None or row_count <= high)
        wanted = f"{'≥' + str(low) if low is not None else ''}{' and ' if low is not None and high is not None else ''}{'≤' + str(high) if high is not None else ''}"
        results.append(TableCheckResult("table.row_count", ok, f"{row_count} rows (expected {wanted})"))
    if spec.freshness is not None:
        column, limit = spec.freshness.column, spec.freshness.max_age_seconds
        if newest is None:
            results.append(TableCheckResult("table.freshness", False, f"no value in {column}: freshness unknown"))
        else:
            age = ((now or datetime.now(UTC)).astimezone(UTC) - _as_utc(newest)).total_seconds()
            ok = age <= limit
            results.append(
                TableCheckResult(
                    "table.freshness", ok, f"newest {column} is {age / 3600:.1f} h old (max {spec.freshness.max_age})"
                )
            )
    return results


def failed_checks(results: Sequence[TableCheckResult]) -> list[TableCheckResult]:
    return [r for r in results if not r.passed]


class TableStats:
    """Row count and newest freshness value accumulated over the batches being written (no rescan)."""

    def __init__(self, spec: QualitySpec):
        self.column = spec.freshness.column if spec.freshness else None
        self.row_count = 0
        self.newest: datetime | date | None = None

    def add(self, batch) -> None:
        import pyarrow.compute as pc

        self.row_count += batch.num_rows
        if self.column and batch.num_rows:
            top = pc.max(batch.column(self.column)).as_py()
            if top is not None and (self.newest is None or top > self.newest):
                self.newest = top


def table_checks(connection, view: str, spec: QualitySpec, now: datetime | None = None) -> list[tuple[str, str]]:
    """(check, message) for each failed table check, computed over `view` in `connection`.

    `view` must be scannable again (a table or file scan). A streaming pipeline can use `TableStats`
    over the written batches and `evaluate_table_checks` instead.
    """
    sql = table_stats_sql(view, spec)
    if sql is None:
        return []
    row_count, newest = connection.execute(sql).fetchone()
    results = evaluate_table_checks(spec, row_count=int(row_count), newest=newest, now=now)
    return [(r.check, r.message) for r in failed_checks(results)]
