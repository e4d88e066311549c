"""Scheduled refreshes through the daemon: a `schedule:` in a table spec becomes a Prefect deployment
served by a runner the daemon starts; removing it deletes the deployment and stops the runner."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.shared.procs import PidRecord

pytestmark = [pytest.mark.e2e]

TABLE = "source: {type: file, path: data/x.csv, format: csv}\n"


def deployments(api_url: str) -> set[str]:
    from prefect.client.orchestration import PrefectClient

    async def names() -> set[str]:
        async with PrefectClient(api_url) as client:  # the session's server, whatever the environment says
            return {d.name for d in await client.read_deployments() if d.name.startswith("specd-table-")}

    return asyncio.run(names())


def test_schedules_follow_the_specs(spec_repo, home, daemon_factory, prefect_api):
    spec_repo.write("data/x.csv", "a\n1\n")
    spec_repo.write("specs/tables/hourly.yaml", TABLE + 'schedule: "0 * * * *"\n')
    sha = spec_repo.commit("hourly refresh")
    daemon = daemon_factory(spec_repo.path)
    daemon.wait_converged(sha)
    assert "specd-table-hourly" in deployments(prefect_api)
    deadline = time.monotonic() + 30  # the runner is the table kind's lifecycle hook: started on the next tick
    while (runner := PidRecord.read(home / "run" / "schedules-runner.json")) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runner is not None and runner.alive()

    spec_repo.write("specs/tables/hourly.yaml", TABLE)
    sha = spec_repo.commit("no schedule")
    daemon.wait_converged(sha)
    deadline = time.monotonic() + 20
    while "specd-table-hourly" in deployments(prefect_api) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "specd-table-hourly" not in deployments(prefect_api)
    deadline = time.monotonic() + 30
    while runner.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not runner.alive(), "the schedule runner kept running with no schedules"
