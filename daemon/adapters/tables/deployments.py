"""A table's schedules (`schedule:` refresh, `maintenance.schedule`) as part of its observed and desired state.

The Prefect deployments are written by the table's own planned action, never beside the plan: observe
compares the deployments the spec asks for with the ones the Prefect server holds and reports each
difference as a drift reason ("schedule created: refresh every 15 min"), so `specd plan` shows it and
`specd apply` (or the daemon) writes it. A deployment's identity is its cron plus the table fingerprint
(refresh) or its parameters (maintenance); the git sha in the job does not count, so a commit that does
not touch a table does not rewrite its deployment.

The outcome of scheduled runs is observed the same way: a failed or late refresh makes the table
Degraded (never green) until a later run succeeds.

Light: reads Prefect over REST (`flows.tables.deployments`); falls back to the record of what apply
last wrote (`run/schedules.json`) when the server is down (plan without a running daemon).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.shared.fsio import atomic_write_json, read_json
from daemon.shared.paths import runtime_dir
from flows.tables.deployments import FAILED_STATES, LiveDeployment, maintain_name, read_live, refresh_name, table_of

if TYPE_CHECKING:
    from daemon.adapters.base import AdapterContext
    from daemon.core.graph import Resource

SCHEDULE = "schedule"  # every drift reason of this module starts with it: a schedule-only update rebuilds nothing
_record_lock = threading.Lock()


@dataclass(frozen=True)
class Wanted:
    deployment: str
    what: str  # "refresh" or "maintenance"
    cron: str
    signature: str


def record_path(home: Path) -> Path:
    return runtime_dir(home) / "schedules.json"


def wanted(resource: Resource, enabled: bool) -> dict[str, Wanted]:
    spec = resource.spec
    if not enabled:
        return {}
    out = {}
    if spec.schedule:
        out[refresh_name(resource.name)] = Wanted(refresh_name(resource.name), "refresh", spec.schedule, resource.fingerprint)
    if spec.maintenance.schedule:
        out[maintain_name(resource.name)] = Wanted(maintain_name(resource.name), "maintenance", spec.maintenance.schedule,
                                                   _digest(maintenance_parameters(resource)))
    return out


def maintenance_parameters(resource: Resource, storage_root: str = "") -> dict[str, Any]:
    spec = resource.spec
    params = {"table": resource.name, "compact": spec.maintenance.compact, "target_file_mb": spec.maintenance.target_file_mb,
              "vacuum": spec.maintenance.vacuum, "vacuum_hours": spec.retention.vacuum_hours}
    return {"storage_root": storage_root, **params} if storage_root else params


def signature_of(live: LiveDeployment) -> str:
    params = dict(live.parameters)
    if "job" in params:
        return str((params["job"] or {}).get("fingerprint"))
    params.pop("storage_root", None)
    params.pop("storage_options", None)  # where the lake is, not the policy (references only)
    return _digest(params)


def _digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ScheduleObserver:
    """One read of the Prefect server per observe; every desired table's schedule drift and run health."""

    def __init__(self, ctx: AdapterContext):
        self.ctx = ctx
        self.live: dict[str, LiveDeployment] | None = read_live(ctx.prefect_api) if ctx.prefect_api else None
        self.recorded = read_json(record_path(ctx.home)) or {}

    def tables(self) -> set[str]:
        """Tables that have a deployment (live when the server answers, else as recorded)."""
        names = self.live.keys() if self.live is not None else self.recorded.keys()
        return {table_of(n) for n in names}

    def _live_signature(self, deployment: str) -> tuple[str | None, str] | None:
        if self.live is not None:
            found = self.live.get(deployment)
            return (found.cron, signature_of(found)) if found else None
        item = self.recorded.get(deployment)
        return (item.get("cron"), str(item.get("signature"))) if isinstance(item, dict) else None

    def drift(self, resource: Resource) -> list[str]:
        if not self.ctx.prefect_api:
            return []  # no Prefect in this run (--no-prefect): schedules are not managed
        reasons = []
        want = wanted(resource, self.ctx.env.schedules_enabled)
        for deployment, item in want.items():
            live = self._live_signature(deployment)
            if live is None:
                reasons.append(f"{SCHEDULE} created: {item.what} {human_cron(item.cron)}")
            elif live[0] != item.cron:
                reasons.append(f"{SCHEDULE} changed: {item.what} {human_cron(item.cron)} (was {human_cron(live[0] or '?')})")
            elif live[1] != item.signature:
                reasons.append(f"{SCHEDULE} changed: {item.what} {human_cron(item.cron)} runs the new spec")
        for deployment in (refresh_name(resource.name), maintain_name(resource.name)):
            if deployment not in want and self._live_signature(deployment) is not None:
                reasons.append(f"{SCHEDULE} removed: {'refresh' if deployment == refresh_name(resource.name) else 'maintenance'}")
        return reasons

    def run_problem(self, resource: Resource) -> str | None:
        """A failed or late scheduled run of this table, as the status message; None when fine or unknown."""
        if self.live is None:
            return None
        for deployment in (refresh_name(resource.name), maintain_name(resource.name)):
            found = self.live.get(deployment)
            if found is None:
                continue
            if found.late is not None:
                return f"scheduled {table_of_kind(deployment)} is late (expected at {found.late.expected_start})"
            final = found.last_final
            if final is not None and final.state_type in FAILED_STATES:
                detail = f": {final.message}" if final.message else ""
                return f"scheduled {table_of_kind(deployment)} {final.state_name.lower()} (run {final.id[:8]}, {final.expected_start}){detail}"
        return None


def table_of_kind(deployment: str) -> str:
    return ("maintenance" if deployment.startswith(maintain_name("")) else "refresh") + f" of {table_of(deployment)}"


def remember(home: Path, table: str, written: dict[str, Wanted]) -> None:
    """Record what apply wrote to the Prefect server (the plan's fallback when the server is down)."""
    with _record_lock:
        record = read_json(record_path(home)) or {}
        for deployment in (refresh_name(table), maintain_name(table)):
            record.pop(deployment, None)
        for deployment, item in written.items():
            record[deployment] = {"table": table, "cron": item.cron, "signature": item.signature}
        atomic_write_json(record_path(home), record)


def any_recorded(home: Path) -> bool:
    return bool(read_json(record_path(home)))


def only_schedule_drift(drift: Sequence[str]) -> bool:
    return bool(drift) and all(reason.startswith(SCHEDULE) for reason in drift)


def human_cron(cron: str) -> str:
    """'*/15 * * * *' → 'every 15 min'; common shapes only, else the cron itself."""
    parts = cron.split()
    if len(parts) != 5:
        return f"on {cron!r}"
    minute, hour, day, month, weekday = parts
    rest_any = day == month == weekday == "*"
    if rest_any and hour == "*" and minute == "*":
        return "every minute"
    if rest_any and hour == "*" and minute.startswith("*/") and minute[2:].isdigit():
        return f"every {minute[2:]} min"
    if rest_any and hour == "*" and minute.isdigit():
        return "hourly" + (f" at :{int(minute):02d}" if minute != "0" else "")
    if rest_any and hour.isdigit() and minute.isdigit():
        return f"daily at {int(hour):02d}:{int(minute):02d}"
    return f"on cron {cron!r}"
