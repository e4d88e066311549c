"""A table's `schedule:` is part of its planned state, on a real Prefect server: `specd plan` lists it,
`specd apply` writes the deployment (an entrypoint the runner can import, not `__main__`), the runner
started by the table kind's lifecycle hook runs it on its cron and a new Delta version appears, and a
failing scheduled run makes the table Degraded (never green); a removed spec's deployment is deleted by
the plan although the table itself is kept (prune off)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from daemon.adapters.tables.runner import ScheduleRunner
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e]

TABLE = """source: {type: file, path: data/x.csv, format: csv}
quality: {action: fail, columns: {a: {max: 100}}}
schedule: "* * * * *"
"""


def specd(*args: str, repo: Path, home: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "daemon.cli", *args, "--repo", str(repo), "--home", str(home)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def deployment(name: str):
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_deployment_by_name(f"specd-table-refresh/{name}")

    return asyncio.run(read())


def version(uri: Path) -> int:
    return DeltaTable(str(uri)).version()


def test_plan_lists_apply_writes_and_the_runner_runs_the_schedule(spec_repo, home: Path, prefect_api: str) -> None:
    spec_repo.write("data/x.csv", "a,b\n1,2\n3,4\n")
    spec_repo.write("specs/tables/ticks.yaml", TABLE)
    spec_repo.commit("a table refreshed every minute")

    planned = specd("plan", repo=spec_repo.path, home=home)
    assert planned.returncode == 0, planned.stderr
    assert "+ table ticks" in planned.stdout and "then refresh every minute" in planned.stdout, planned.stdout

    applied = specd("apply", repo=spec_repo.path, home=home)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "schedules created specd-table-ticks (refresh every minute)" in applied.stderr
    live = deployment("specd-table-ticks")
    assert [s.schedule.cron for s in live.schedules] == ["* * * * *"]
    assert live.entrypoint == "flows.tables.schedules.refresh_table"  # importable by `python -m ... serve`
    again = specd("plan", "--detailed-exitcode", repo=spec_repo.path, home=home)
    assert again.returncode == 0, again.stdout

    # Only the deployment differs (deleted behind specd's back): the plan says so and apply rebuilds nothing.
    from prefect.client.orchestration import get_client

    async def delete() -> None:
        async with get_client() as client:
            await client.delete_deployment(live.id)

    asyncio.run(delete())
    drifted = specd("plan", repo=spec_repo.path, home=home)
    assert "~ table ticks" in drifted.stdout and "schedule created: refresh every minute" in drifted.stdout, drifted.stdout
    assert "write the Prefect deployment (no rebuild)" in drifted.stdout
    uri = home / "lake" / "tables" / "ticks"
    before = version(uri)
    live_fingerprint = DeltaTable(str(uri)).history(1)[0]["specd.fingerprint"]
    rewritten = specd("apply", repo=spec_repo.path, home=home)
    assert rewritten.returncode == 0, rewritten.stdout + rewritten.stderr
    assert version(uri) == before  # no rebuild for a schedule-only change
    assert deployment("specd-table-ticks").entrypoint == "flows.tables.schedules.refresh_table"

    runner = ScheduleRunner(home)  # the table kind's lifecycle hook, as the daemon ticks it
    try:
        runner.tick()
        deadline = time.monotonic() + 180
        while version(uri) == before and time.monotonic() < deadline:
            time.sleep(2)
        assert version(uri) > before, (home / "logs" / "schedules-runner.log").read_text()[-3000:]
        meta = DeltaTable(str(uri)).history(1)[0]
        assert meta["specd.operation"] == "build" and meta["specd.fingerprint"] == live_fingerprint

        # A scheduled run that fails (the CSV now breaks the quality rule) turns the table Degraded.
        (spec_repo.path / "data" / "x.csv").write_text("a,b\n1,2\n300,4\n")
        from prefect.deployments import run_deployment

        run = run_deployment("specd-table-refresh/specd-table-ticks", timeout=0)
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            from prefect.client.orchestration import get_client

            async def read_state():
                async with get_client() as client:
                    return (await client.read_flow_run(run.id)).state.type.value

            state = asyncio.run(read_state())
            if state in ("FAILED", "CRASHED", "COMPLETED"):
                break
            time.sleep(2)
        assert state == "FAILED", state
        status = specd("status", "--json", repo=spec_repo.path, home=home)

        table = next(r for r in json.loads(status.stdout)["resources"] if r["name"] == "ticks" and r["kind"] == "table")
        assert table["health"] == "Degraded" and "scheduled refresh of ticks failed" in table["message"], table
    finally:
        runner.close()

    # The spec is removed and prune is off: the table is kept, its schedule goes, through the plan.
    spec_repo.remove("specs/tables/ticks.yaml")
    spec_repo.commit("ticks removed")
    removed = specd("plan", repo=spec_repo.path, home=home)
    assert "~ table ticks" in removed.stdout and "schedule removed: the spec is gone" in removed.stdout, removed.stdout
    assert specd("apply", repo=spec_repo.path, home=home).returncode == 0
    from prefect.exceptions import ObjectNotFound

    with pytest.raises(ObjectNotFound):
        deployment("specd-table-ticks")
    assert "! table ticks" in specd("plan", repo=spec_repo.path, home=home).stdout  # now a plain orphan
