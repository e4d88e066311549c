"""Whether a model's release lags its table, and whether its `retrain:` policy retrains it now.

Pure and light (the plan calls it for every model): the inputs are what the release recorded about the
data it was trained on (`Release.data`: Delta version, data digest, rows, when) and what the table's log
says now. A fired policy becomes a drift reason (`Observed.drift`), so the plan shows an update and
apply trains through the normal candidate/promotion path; a policy that holds back leaves the model
*lagging*: `specd status` shows it OutOfSync with "data ahead by N rows", and the plan keeps it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.schema.retrain import RetrainSpec


@dataclass(frozen=True)
class DataState:
    """One state of the source table: its Delta version, content identity and row count (None: unknown)."""

    version: int | None
    identity: str | None
    rows: int | None = None
    at: float | None = None  # when the release was trained on it (trained side only)
    spec: str | None = None  # the table's fingerprint (what shaped the data)

    @classmethod
    def of_release(cls, data: dict[str, Any], created_at: float | None) -> DataState:
        identity = data.get("data_digest") or data.get("data_id")
        rows = data.get("rows")
        return cls(data.get("delta_version"), identity, rows if isinstance(rows, int) else None,
                   data.get("trained_at") or created_at, data.get("table_fingerprint"))


@dataclass(frozen=True)
class Decision:
    fire: bool  # retrain now (the plan shows an update)
    lagging: bool  # the data moved on but the policy holds back (status: OutOfSync)
    reason: str = ""
    new_rows: int | None = None


IN_SYNC = Decision(False, False)


def _rows_text(table: str, trained: DataState, live: DataState, new_rows: int | None) -> str:
    change = f"{new_rows:+d} rows" if new_rows is not None else "changed data"
    return f"{table} v{live.version} has {change} since v{trained.version}"


def decide(policy: RetrainSpec, table: str, trained: DataState, live: DataState, now: float,
           last_cron_fire: float | None = None) -> Decision:
    """The policy's verdict. `last_cron_fire` (on: schedule) is the latest fire time of its cron ≤ now."""
    if live.version is None:
        return IN_SYNC  # no table: the model's own check reports it
    if policy.on == "never" and policy.table_version is not None:
        if trained.version == policy.table_version:
            return IN_SYNC
        return Decision(True, False, f"pinned to {table} v{policy.table_version}, trained on v{trained.version}")
    if trained.identity is not None and trained.identity == live.identity:
        return IN_SYNC
    if trained.identity is None and trained.version == live.version:
        return IN_SYNC
    new_rows = live.rows - trained.rows if live.rows is not None and trained.rows is not None else None
    what = _rows_text(table, trained, live, new_rows)
    ahead = f"data ahead by {new_rows} rows" if new_rows is not None else "data changed"
    ahead += f" ({table} v{live.version}, trained on v{trained.version})"
    if policy.on in ("never", "drift"):  # drift: the monitoring check decides (ModelAdapter._with_drift)
        return Decision(False, True, f"{ahead}; policy {policy.on}", new_rows)
    if trained.spec and live.spec and trained.spec != live.spec:  # the table's definition changed, not just rows
        return Decision(True, False, f"{table} v{live.version} was rebuilt from a changed spec since v{trained.version} ({ahead.split(' (')[0]})", new_rows)
    since = now - trained.at if trained.at is not None else float("inf")
    if since < policy.interval_s:
        return Decision(False, True, f"{ahead}; policy waits {policy.interval_s - since:.0f}s more (min_interval {policy.min_interval})", new_rows)
    if policy.on == "schedule":
        if last_cron_fire is not None and trained.at is not None and last_cron_fire > trained.at:
            return Decision(True, False, f"{what} ({policy.describe()})", new_rows)
        return Decision(False, True, f"{ahead}; retrains at the next {policy.cron} fire", new_rows)
    # on: new_data — every threshold that is set must hold
    short = []
    if policy.min_new_rows and (new_rows is None or new_rows < policy.min_new_rows):
        short.append(f"needs ≥ {policy.min_new_rows} new rows")
    if policy.min_fraction:
        base = trained.rows or 0
        if new_rows is None or base == 0 or new_rows < policy.min_fraction * base:
            short.append(f"needs ≥ {policy.min_fraction:g} × {base} new rows")
    if short:
        return Decision(False, True, f"{ahead}; {policy.describe()} {', '.join(short)}", new_rows)
    return Decision(True, False, f"{what} ({policy.describe()})", new_rows)


def last_fire(cron: str, now: float) -> float:
    """The latest fire time of a cron expression at or before `now` (epoch seconds, UTC)."""
    import datetime as dt

    from croniter import croniter

    return float(croniter(cron, dt.datetime.fromtimestamp(now, dt.UTC)).get_prev(float))
