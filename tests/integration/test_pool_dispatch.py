"""The daemon's side of a work pool against a real Prefect server (the session's), with no worker polling:
a restarted daemon adopts the run already on the pool instead of submitting a second one, a run whose
heartbeat stops is marked Crashed with the reason and submitted again under the next idempotency key,
and a run that never gets a worker is given up with a clear message. Workers themselves:
tests/e2e/test_work_pools.py."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from daemon.adapters.models.pool import PoolRun, _submit, _Tracker, dispatch, ensure_pool
from daemon.schema.environment import TrainingSection


@pytest.fixture
def api(prefect_api: str):
    """The session's server even when prefect was imported before PREFECT_API_URL was set (its settings
    are read at import; a client would otherwise start a temporary server of its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


def _job(name: str) -> dict:
    fp = hashlib.sha256(name.encode()).hexdigest()
    return {"mode": "train", "model": "m", "candidate": "a", "tag": f"m:a-{fp[:16]}", "store_root": "/nonexistent",
            "data": {"uri": "/nonexistent", "storage_options": {}}, "lineage": {"candidate_fingerprint": fp}}


def _runs(client, tag: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))


def test_adopt_then_resubmit_a_run_whose_heartbeat_stopped(api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate
    from prefect.states import Running

    from flows.training.pool import fingerprint_tag, heartbeat_name

    pool = f"test-{uuid.uuid4().hex[:8]}"
    training = TrainingSection(work_pool=pool, heartbeat_timeout_s=1.0, run_attempts=2)
    job = _job(pool)
    tag = fingerprint_tag(job["lineage"]["candidate_fingerprint"])
    with get_client(sync_client=True) as client:
        assert str(client.api_url).rstrip("/") == api.rstrip("/")
        deployment = ensure_pool(client, training)
        assert client.read_work_pool(pool).type == "process"
        tracker = _Tracker(job, PoolRun(job))
        _submit(client, deployment, tracker, training, "0" * 40, "/repo", {}, lambda m: None)  # the daemon before its restart
        first = tracker.run_id
        # a worker took it and beat once, then died (no more beats)
        client.set_flow_run_state(first, Running(), force=True)
        client.create_variable(VariableCreate(name=heartbeat_name(first), value={"beats": 1, "worker": "w9", "pid": 1}))

    notes: list[str] = []
    started = time.monotonic()
    [run] = dispatch([job], training, git_sha="0" * 40, repo_url="/repo", progress=notes.append, poll_s=0.2, timeout_s=8)
    assert time.monotonic() - started < 30
    assert any("adopting run" in n for n in notes), notes  # not a second submission for the same candidate
    assert run.result is None and run.returncode == 1
    assert [a["state"] for a in run.attempts] == ["CRASHED", "CRASHED"], run.attempts
    assert run.attempts[0]["run"] == first and "worker w9 lost: no heartbeat" in run.attempts[0]["message"]
    assert "no result after 8 s" in run.message  # the second submission never found a worker
    with get_client(sync_client=True) as client:
        runs = _runs(client, tag)
        assert len(runs) == 2
        assert sorted(r.idempotency_key for r in runs) == [f"{job['lineage']['candidate_fingerprint']}:{n}" for n in (1, 2)]
        assert {r.state_type.value for r in runs} == {"CRASHED"}
        lost = client.read_flow_run(first).state
        assert "no heartbeat" in (lost.message or "")

    # the lost run's flow, were it still alive somewhere (a partitioned worker), stops its own training
    from flows.training.pool import Heartbeat

    stopped: list[str] = []
    beat = Heartbeat(first, stopped.append)
    beat._beat()
    assert beat.superseded and stopped and "crashed" in stopped[0]
