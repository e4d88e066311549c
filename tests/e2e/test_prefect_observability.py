"""The Prefect flow run of a reconcile, read back through Prefect's API: task dependencies (task_inputs
edges), the adapters' progress lines as task logs, tags (env, revision, kind, op), the plan as a markdown
artifact, an action's report rows as a table artifact, and Prefect-native retries (AwaitingRetry)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.core.graph import Graph, Resource
from daemon.core.plan import make_plan
from daemon.core.state import ApplyOutcome, Observed
from daemon.runtime.prefect_runner import run_plan_in_prefect
from daemon.shared.errors import ApplyError
from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e]

FILE = "source: {type: file, path: data/x.csv, format: csv}\n"
CHILD = "source:\n  type: table\n  inputs: [x]\n  sql: select a from x\n"


def _eventually(read, timeout: float = 60.0):
    """Task runs and logs reach the Prefect database asynchronously (events): poll until they are there."""
    deadline = time.monotonic() + timeout
    while True:
        value = asyncio.run(read())
        if value or time.monotonic() > deadline:
            return value
        time.sleep(1.0)


async def _flow_run(revision: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["specd", f"revision:{revision[:12]}"])))
        return runs[0] if runs else None


async def _task_runs(flow_run_id, expected: int):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        done = [r for r in runs if r.state_type and r.state_type.value == "COMPLETED"]
        return {r.name.rsplit("-", 1)[0]: r for r in runs} if len(done) >= expected else None  # "<task name>-<n>"


def test_a_reconcile_is_observable_in_prefect(spec_repo, home: Path, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterTaskRunId

    spec_repo.write("data/x.csv", "a,b\n1,2\n3,4\n")
    spec_repo.write("specs/tables/x.yaml", FILE)
    spec_repo.write("specs/tables/child.yaml", CHILD)
    sha = spec_repo.commit("two tables")
    cmd = [sys.executable, "-m", "daemon.cli", "apply", "--repo", str(spec_repo.path), "--home", str(home)]
    applied = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    flow_run = _eventually(lambda: _flow_run(sha))
    assert flow_run is not None and {"specd", "env:dev", f"revision:{sha[:12]}"} <= set(flow_run.tags)
    tasks = _eventually(lambda: _task_runs(flow_run.id, 5))  # x, child, their dashboards, the platform dashboard
    assert tasks, "task runs never completed"
    x, child = tasks["create table/x"], tasks["create table/child"]
    assert {"kind:table", "op:create"} <= set(child.tags)
    assert [i.id for i in child.task_inputs["wait_for"]] == [x.id]  # the edge of the plan's dependency graph
    assert [i.id for i in tasks["create dashboard/table-child"].task_inputs["wait_for"]] == [child.id]

    async def logs_of(task_run_id):
        async with get_client() as client:
            found = await client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
            return [entry.message for entry in found]

    assert "table x: building" in _eventually(lambda: logs_of(x.id))

    async def artifacts():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))

    plan_artifact = next(a for a in _eventually(artifacts) if a.key == "specd-plan")
    assert "`table/child`" in plan_artifact.data and "specd plan for" in plan_artifact.data


def test_transient_failures_are_retried_by_prefect(prefect_api: str) -> None:
    from prefect.client.orchestration import get_client

    resource = Resource("table/flaky", "table", "flaky", "specs/tables/flaky.yaml", None, {}, (), "fp", 0)
    plan = make_plan("f" * 40, "dev", Graph((resource,)), {"table/flaky": Observed(False)})
    attempts = []

    async def run_action(action):
        attempts.append(action.key)
        if len(attempts) == 1:
            raise ApplyError("upstream answered 503", reason="SourceFailed", transient=True)
        return ApplyOutcome("built", {"report": [{"candidate": "a", "status": "trained", "roc_auc": 0.91}]})

    (result,) = asyncio.run(run_plan_in_prefect(plan, run_action, max_parallel=1, retries=2, backoff_s=0.1))
    assert result.status == "succeeded" and len(attempts) == 2
    flow_run = _eventually(lambda: _flow_run("f" * 40))

    async def states():
        tasks = await _task_runs(flow_run.id, 1)
        if not tasks:
            return None
        async with get_client() as client:
            return [s.name for s in await client.read_task_run_states(tasks["create table/flaky"].id)]

    assert "AwaitingRetry" in _eventually(states)

    async def table_artifact():
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
            return [a for a in found if a.type == "table"]

    (report,) = _eventually(table_artifact)  # an action's details["report"] rows (a model's candidates)
    assert report.key == "specd-table-flaky" and "roc_auc" in str(report.data)
