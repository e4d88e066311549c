"""Scheduled table work as Prefect deployments: refreshes (`schedule:`) and maintenance (`maintenance.schedule`).

A table's planned action calls `sync_schedules(entries, tables=[name])` with its desired set (plain
`ScheduleEntry` values built by the table adapter); deployments named
`specd-table-<name>` (refresh) and `specd-table-maintain-<name>` are created, updated (cron or
parameters changed) or deleted to match, so the specs stay the only source of truth. A separate
long-lived process, `python -m flows.tables.schedules serve`, runs them: a Prefect Runner that picks up
specd deployments from the API as they appear (every `--poll` seconds), so the daemon never has to
restart it. Each flow run is a fresh process started by the Runner, so a crashing build cannot take
the runner down either. Parameters never hold secrets: storage options stay `secret:NAME` references
and are resolved inside the run.

Imports prefect: only the apply path and the serve process load this module, never `plan`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import flow

from flows.tables.deployments import (
    ENTRYPOINT_MODULE,
    MAINTAIN_FLOW,
    PREFIX,
    REFRESH_FLOW,
    TAGS,
    maintain_name,
    refresh_name,
)

__all__ = ["MAINTAIN_FLOW", "PREFIX", "REFRESH_FLOW", "ScheduleEntry", "maintain_table", "refresh_table", "serve", "sync_schedules"]


@dataclass(frozen=True)
class ScheduleEntry:
    deployment: str  # specd-table-<name> or specd-table-maintain-<name>
    flow: str  # REFRESH_FLOW or MAINTAIN_FLOW
    cron: str
    parameters: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- flows
def _resolve_options(options: dict[str, str], tls: dict[str, Any] | None = None) -> dict[str, str]:
    """The run's client options: references resolved, the environment's CA, `tls.required` enforced."""
    from daemon.shared.storage_uri import client_options

    return client_options(options, tls) or {}


@flow(name=REFRESH_FLOW, log_prints=True)
def refresh_table(job: dict[str, Any]) -> dict[str, Any]:
    from flows.tables.build import run_job

    job = {**job, "storage_options": _resolve_options(job.get("storage_options") or {}, job.get("tls"))}
    result = run_job(job)
    if not result.get("ok"):
        raise RuntimeError(result.get("error"))
    print(f"table {job['name']}: {result.get('message')}")
    return {k: result.get(k) for k in ("version", "rows", "committed")}


@flow(name=MAINTAIN_FLOW, log_prints=True)
def maintain_table(storage_root: str, table: str, compact: bool = True, target_file_mb: int = 128,
                   vacuum: bool = True, vacuum_hours: int = 168, storage_options: dict[str, str] | None = None,
                   tls: dict[str, Any] | None = None) -> dict[str, Any]:
    from flows.tables.maintenance import maintain

    report = maintain(storage_root, table, compact_files=compact, target_file_mb=target_file_mb,
                      vacuum_files=vacuum, vacuum_hours=vacuum_hours, options=_resolve_options(storage_options or {}, tls) or None)
    print(report)
    return report


async def _deployment(entry: ScheduleEntry) -> Any:
    from prefect.deployments.runner import EntrypointType

    target = refresh_table if entry.flow == REFRESH_FLOW else maintain_table
    deployment = await target.ato_deployment(
        name=entry.deployment, cron=entry.cron, parameters=entry.parameters,
        entrypoint_type=EntrypointType.MODULE_PATH, tags=list(TAGS),
    )
    attribute = "refresh_table" if entry.flow == REFRESH_FLOW else "maintain_table"
    deployment.entrypoint = f"{ENTRYPOINT_MODULE}.{attribute}"  # importable by the runner (not __main__)
    return deployment


# ---------------------------------------------------------------------------------------- sync
async def _specd_deployments(client: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    found = await client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=list(TAGS))))
    return [d for d in found if d.name.startswith(PREFIX)]


def _same(live: Any, entry: ScheduleEntry) -> bool:
    crons = sorted(getattr(s.schedule, "cron", "") for s in (live.schedules or []))
    import json

    return crons == [entry.cron] and (live.parameters or {}) == json.loads(json.dumps(entry.parameters))


async def async_sync_schedules(entries: Iterable[ScheduleEntry], tables: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Make specd's table deployments exactly `entries` (only those of `tables` when given: one table's
    planned action writes its own). Returns names created, updated, deleted."""
    from prefect.client.orchestration import get_client

    desired = {e.deployment: e for e in entries}
    report: dict[str, list[str]] = {"created": [], "updated": [], "deleted": [], "unchanged": []}
    owned = None if tables is None else {n for t in tables for n in (refresh_name(t), maintain_name(t))}
    async with get_client() as client:
        live = {d.name: d for d in await _specd_deployments(client) if owned is None or d.name in owned}
        for name, entry in sorted(desired.items()):
            if name in live and _same(live[name], entry):
                report["unchanged"].append(name)
                continue
            await (await _deployment(entry)).aapply()
            report["updated" if name in live else "created"].append(name)
        for name, deployment in sorted(live.items()):
            if name not in desired:
                await client.delete_deployment(deployment.id)
                report["deleted"].append(name)
    return report


def sync_schedules(entries: Iterable[ScheduleEntry], tables: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Synchronous wrapper for the daemon's worker threads."""
    return asyncio.run(async_sync_schedules(list(entries), None if tables is None else list(tables)))


# ---------------------------------------------------------------------------------------- serve
async def serve(poll_s: float = 10.0, stop_after_s: float | None = None) -> None:
    """Run specd's table deployments with a Prefect Runner, picking up new ones as the daemon adds them."""
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    runner = Runner(name="specd-tables", pause_on_shutdown=False, query_seconds=min(poll_s, 5.0))
    served: dict[str, Any] = {}

    async def pick_up() -> None:
        async with get_client() as client:
            for live in await _specd_deployments(client):
                key = (live.name, str(live.updated))
                if served.get(live.name) == key:
                    continue
                flow = REFRESH_FLOW if not live.name.startswith(f"{PREFIX}maintain-") else MAINTAIN_FLOW
                cron = next((getattr(s.schedule, "cron", None) for s in (live.schedules or [])), None)
                if cron is None:
                    continue
                await runner.aadd_deployment(await _deployment(ScheduleEntry(live.name, flow, cron, dict(live.parameters or {}))))
                served[live.name] = (live.name, str((await client.read_deployment(live.id)).updated))

    async def keep_picking_up() -> None:
        while True:
            await asyncio.sleep(poll_s)
            await pick_up()

    await pick_up()
    picker = asyncio.create_task(keep_picking_up())
    try:
        if stop_after_s is None:
            await runner.start(webserver=False)
        else:
            try:
                await asyncio.wait_for(runner.start(webserver=False), timeout=stop_after_s)
            except TimeoutError:
                pass
    finally:
        picker.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.tables.schedules")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run specd's scheduled table refreshes and maintenance")
    serve_cmd.add_argument("--poll", type=float, default=10.0, help="seconds between looks for new deployments")
    serve_cmd.add_argument("--stop-after", type=float, default=None, help="exit after this many seconds (tests)")
    args = parser.parse_args(argv)
    from daemon.shared import scrub
    from flows.tables import schedules as importable  # not __main__'s copy: the flows the entrypoints name

    scrub.install()  # scheduled runs log through Prefect: no secret value in those logs
    asyncio.run(importable.serve(args.poll, args.stop_after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
