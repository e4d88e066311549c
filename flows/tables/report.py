"""What a build reports: its outcome, its failures classified, its rows accounted for, its lineage.

Kept apart from the orchestration in build.py: a failure's reason and whether retrying can help
(`classify_failure`), the row accounting every build must balance (`account_rows`), and which state of
the quarantine table goes with a table commit (`quarantine_lineage`, read back by restore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.tables import BATCH, QUARANTINE_BATCH, QUARANTINE_VERSION, quarantine_name, table_uri

NO_NEW_ROWS = "no new rows since the watermark"


class BuildFailed(Exception):
    """A build that failed as a whole (nothing committed): `reason` names the kind of failure in status
    and metrics, `transient` says whether the daemon should retry it."""

    def __init__(self, message: str, *, transient: bool = False, reason: str = "BuildFailed"):
        super().__init__(message)
        self.transient = transient
        self.reason = reason


@dataclass
class BuildReport:
    """A finished build: the version it committed (or the live one when nothing had to be), the row
    accounting, the quality verdict and the watermark."""

    name: str
    version: int | None = None
    committed: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    watermark: Any = None
    message: str = ""


def classify_failure(name: str, exc: BaseException, *, from_source: bool = False) -> BaseException:
    """The BuildFailed for an exception a build raised (its reason and whether a retry can help), or
    the exception itself when it is not one we understand (run_job reports it as a BuildError)."""
    import duckdb
    import pyarrow as pa

    from flows.tables.sources import SourceError
    from flows.tables.stages import StageError
    from flows.tables.write import ConcurrentCommit, SchemaMismatch

    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, StageError | SchemaMismatch):
        return BuildFailed(str(exc) if str(exc).startswith("table ") else f"table {name}: {exc}", reason="InvalidSpec")
    if isinstance(exc, SourceError):
        text = str(exc) if str(exc).startswith("table ") else f"table {name}: {exc}"
        return BuildFailed(text, transient=exc.transient, reason="SourceFailed")
    if isinstance(exc, ConcurrentCommit):
        return BuildFailed(str(exc), transient=True, reason="ConcurrentCommit")
    if from_source and not isinstance(exc, pa.ArrowInvalid):
        transient = isinstance(exc, ConnectionError | TimeoutError)
        return BuildFailed(f"table {name}: the source failed while streaming: {type(exc).__name__}: {first}",
                           transient=transient, reason="SourceFailed")
    if isinstance(exc, duckdb.Error):
        return BuildFailed(f"table {name}: {first}", reason="QueryFailed")
    if isinstance(exc, pa.ArrowInvalid):
        return BuildFailed(f"table {name}: {first}", reason="BadData")
    return exc


def account_rows(name: str, read: int, counts: dict[str, int], clean_counts: Any, aggregates: bool) -> dict[str, int]:
    """read = written + quarantined + deduplicated + filtered, each counted where it happens (rows
    deduplicated in the stream from the key-group sizes, or by the clean counters' second scan); a gap
    means rows went missing, which fails the build. Aggregating tables fold many rows into one: the
    folded rows are reported as filtered."""
    rows = {"read": read, "written": counts["written"], "quarantined": counts["quarantined"],
            "deduplicated": counts.get("deduplicated", 0), "filtered": 0}
    if clean_counts is not None:
        if int(clean_counts[0]) != read:
            raise BuildFailed(f"table {name}: staged {clean_counts[0]} rows but read {read}", reason="AccountingMismatch")
        rows["filtered"], rows["deduplicated"] = int(clean_counts[1]), int(clean_counts[2])
    gap = rows["read"] - rows["written"] - rows["quarantined"] - rows["deduplicated"] - rows["filtered"]
    if gap < 0 or (gap and clean_counts is not None and not aggregates):
        raise BuildFailed(f"table {name}: row accounting does not balance ({rows}, {gap} rows unaccounted)", reason="AccountingMismatch")
    rows["filtered"] += gap  # rows a filter (clean.where, nulls: drop, an inner join) or an aggregate took
    return rows


def quarantine_lineage(storage_root: str, name: str, committing: int | None, options: dict[str, str] | None) -> dict[str, str]:
    """Which state of `<name>__quarantine` goes with the table commit being made, so a restore of the
    table can bring its quarantine back to match: the build number (app transaction) that quarantine
    state was committed under, and its version. `committing`: this build's number when its quarantine
    spool is committed right after the table (the version is then the next one: quarantine commits
    happen under the table's build lock; restore re-checks it against the build number). -1 when there
    is no quarantine table yet."""
    from flows.tables.delta_log import read_table_log

    log = read_table_log(table_uri(storage_root, quarantine_name(name)), options)
    if committing is not None:
        return {QUARANTINE_BATCH: str(committing), QUARANTINE_VERSION: str(log.version + 1 if log else 0)}
    if log is None or log.latest is None:
        return {QUARANTINE_BATCH: "-1", QUARANTINE_VERSION: "-1"}
    return {QUARANTINE_BATCH: str(log.latest.metadata.get(BATCH, "")), QUARANTINE_VERSION: str(log.version)}
