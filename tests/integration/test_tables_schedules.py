"""Scheduled refreshes as real Prefect deployments: sync creates, updates and deletes them from the
specs, and the serve entry point runs a refresh that builds the table."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from deltalake import DeltaTable

if TYPE_CHECKING:
    from tests.helpers.tables import TableWorld

pytestmark = pytest.mark.integration

SPEC = """
source: {{type: synthetic, rows: {rows}, seed: 1, columns: [{{name: n, kind: sequence}}]}}
schedule: "{cron}"
maintenance: {{schedule: "0 3 * * *"}}
"""


@pytest.fixture(scope="module")
def prefect_api():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _entries(world: TableWorld):
    from daemon.adapters.tables.adapter import TableAdapter
    from daemon.adapters.tables.schedules import entries_for

    graph, ctx = world.graph()
    return entries_for(graph.resources, TableAdapter(ctx))


def test_sync_creates_updates_deletes_and_serve_runs_a_refresh(world: TableWorld, prefect_api) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from flows.tables.schedules import async_sync_schedules, serve, sync_schedules

    world.write("specs/tables/ticks.yaml", SPEC.format(rows=5, cron="*/5 * * * *"))
    world.write("specs/tables/other.yaml", SPEC.format(rows=3, cron="0 * * * *"))
    report = sync_schedules(_entries(world))
    assert report["created"] == ["specd-table-maintain-other", "specd-table-maintain-ticks", "specd-table-other", "specd-table-ticks"]
    assert sync_schedules(_entries(world))["unchanged"] == report["created"]  # idempotent

    world.write("specs/tables/ticks.yaml", SPEC.format(rows=5, cron="*/10 * * * *"))
    (world.repo / "specs/tables/other.yaml").unlink()
    report = asyncio.run(async_sync_schedules(_entries(world)))
    assert report["updated"] == ["specd-table-ticks"]
    assert report["deleted"] == ["specd-table-maintain-other", "specd-table-other"]

    async def deployed():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("specd-table-refresh/specd-table-ticks")
            return [s.schedule.cron for s in deployment.schedules]

    assert asyncio.run(deployed()) == ["*/10 * * * *"]

    run = run_deployment("specd-table-refresh/specd-table-ticks", timeout=0)  # a refresh due now
    asyncio.run(serve(poll_s=1.0, stop_after_s=20))
    async def state():
        async with get_client() as client:
            return (await client.read_flow_run(run.id)).state.type.value

    assert asyncio.run(state()) == "COMPLETED"
    assert DeltaTable(world.uri("ticks")).to_pyarrow_table().num_rows == 5
