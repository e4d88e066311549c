"""Reconcile cycles through Prefect share one event loop and one open Prefect client
(`daemon.runtime.prefect_loop`, issue 14 item 2), against the session's real Prefect server."""

from __future__ import annotations

import asyncio

import pytest

from daemon.core.graph import Graph, Resource
from daemon.core.plan import make_plan
from daemon.core.state import ApplyOutcome, Observed
from daemon.runtime import prefect_loop
from daemon.runtime.prefect_runner import run_plan_in_prefect

pytestmark = [pytest.mark.integration]


def _plan(n: int):
    resource = Resource("table/t", "table", "t", "specs/tables/t.yaml", None, {}, (), f"fp{n}", 0)
    return make_plan(f"{n}" * 40, "dev", Graph((resource,)), {"table/t": Observed(False)})


def test_cycles_share_one_loop_and_one_prefect_client(prefect_api: str) -> None:
    from prefect.context import AsyncClientContext, FlowRunContext

    prefect_loop.close()
    seen: list[tuple] = []

    async def run_action(action):
        flow_run = FlowRunContext.get()
        seen.append((asyncio.get_running_loop(), AsyncClientContext.get().client, flow_run.client if flow_run else None))
        return ApplyOutcome("built")

    try:
        for n in (1, 2, 3):
            plan = _plan(n)
            (result,) = prefect_loop.run(lambda plan=plan: run_plan_in_prefect(plan, run_action, max_parallel=1, retries=0, backoff_s=0.1))
            assert result.status == "succeeded", result.message
        shared = prefect_loop._client.client
        assert len({id(loop) for loop, _, _ in seen}) == 1  # one loop for every cycle
        assert all(task_client is shared and flow_client is shared for _, task_client, flow_client in seen)

        async def broken():
            raise RuntimeError("the server went away")

        with pytest.raises(RuntimeError, match="went away"):
            prefect_loop.run(broken)
        assert prefect_loop._runner is None and prefect_loop._client is None  # thrown away: the next cycle starts afresh
        plan = _plan(4)
        (result,) = prefect_loop.run(lambda: run_plan_in_prefect(plan, run_action, max_parallel=1, retries=0, backoff_s=0.1))
        assert result.status == "succeeded"
        assert seen[-1][0] is not seen[0][0] and seen[-1][1] is prefect_loop._client.client is not shared
    finally:
        prefect_loop.close()
    assert prefect_loop._runner is None
