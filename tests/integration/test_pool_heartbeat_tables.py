"""Table builds on a work pool have the training pool's heartbeat (flows.pool_heartbeat), against a real
Prefect server (the session's): a restarted daemon adopts a build run whose worker died after one beat,
declares it lost after `tables.heartbeat_timeout_s` (not at `build_timeout_s`), marks it Crashed with
the reason and submits it again; the second run, picked up by a fake worker that beats with the real
`Heartbeat` for longer than the timeout, is *not* declared lost and its result comes back. The lost
run's flow, were it alive somewhere, sees its state and stops. Real workers: tests/e2e/test_work_pools.py."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from types import SimpleNamespace

from daemon.adapters.tables.pool import _dispatch, _ensure
from daemon.schema.environment import TablesSection
from tests.integration.test_pool_dispatch import api  # noqa: F401  (the session's server, pinned in settings)


def _fake_worker(api_url: str, tag: str, skip: str, stop: threading.Event, seen: list[str]) -> None:
    """Takes the first other SCHEDULED run with `tag`, beats for 2.5 s (the daemon's timeout is 1 s),
    then publishes a result and completes it, as flows.tables.pool.build_table does."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Running

    from flows.pool_heartbeat import Heartbeat
    from flows.tables.pool import RESULT_TYPE

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while not stop.is_set():
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
            todo = [r for r in runs if str(r.id) != skip and r.state_type is not None and r.state_type.value == "SCHEDULED"]
            if todo:
                run_id = str(todo[0].id)
                seen.append(run_id)
                client.set_flow_run_state(run_id, Running(), force=True)
                with Heartbeat(run_id, seen.append):
                    stop.wait(2.5)
                client.create_artifact(ArtifactCreate(type=RESULT_TYPE, flow_run_id=run_id,
                                                      data={"ok": True, "version": 7, "message": "built", "worker": "w1"}))
                client.set_flow_run_state(run_id, Completed(), force=True)
                return
            stop.wait(0.1)


def test_a_build_whose_worker_died_is_resubmitted_on_its_heartbeat_not_its_timeout(api: str, monkeypatch) -> None:  # noqa: F811
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate
    from prefect.states import Running

    from flows.pool_heartbeat import Heartbeat, heartbeat_name
    from flows.tables.pool import TAGS, table_tag

    monkeypatch.setenv("SPECD_HEARTBEAT_S", "0.3")
    pool = f"tables-{uuid.uuid4().hex[:8]}"
    name, sha = f"t_{pool[-8:]}", "a" * 40
    fp = hashlib.sha256(pool.encode()).hexdigest()
    job = {"name": name, "fingerprint": fp}
    tables = TablesSection(work_pool=pool, heartbeat_timeout_s=1.0, run_attempts=2, build_timeout_s=60)
    ctx = SimpleNamespace(env=SimpleNamespace(tables=tables))
    tags = [*TAGS, table_tag(name), f"specd-fp:{fp[:32]}", f"git:{sha[:12]}"]
    with get_client(sync_client=True) as client:
        deployment = _ensure(client, pool, None)
        first = client.create_flow_run_from_deployment(deployment, parameters={"job": job, "git_sha": sha, "repo_url": "/r"},
                                                       tags=tags, name=f"{name}-1")
        first_id = str(first.id)
        # a worker took it (the daemon before its restart submitted it), beat once and was killed -9
        client.set_flow_run_state(first_id, Running(), force=True)
        client.create_variable(VariableCreate(name=heartbeat_name(first_id), value={"beats": 1, "worker": "w9", "pid": 1}))

    stop, seen = threading.Event(), []
    worker = threading.Thread(target=_fake_worker, args=(api, table_tag(name), first_id, stop, seen), daemon=True)
    worker.start()
    notes: list[str] = []
    started = time.monotonic()
    try:
        result = _dispatch(ctx, job, sha, "/r", 0.2, notes.append)
    finally:
        stop.set()
        worker.join(timeout=10)
    took = time.monotonic() - started
    assert took < 20, took  # the heartbeat, not build_timeout_s (60 s), noticed the dead worker
    assert any("adopting build run" in n for n in notes), notes
    assert any("crashed (worker w9 lost: no heartbeat for" in n and "submitting again" in n for n in notes), notes
    assert result["ok"] and result["version"] == 7, result
    assert f"attempts: {name}-1, " in result["message"] and "built on w1" in result["message"], result
    assert len(seen) == 1, seen  # the second run beat for longer than the timeout and was not declared lost
    with get_client(sync_client=True) as client:
        lost = client.read_flow_run(first_id).state
        assert lost.type.value == "CRASHED" and "w9 lost: no heartbeat" in (lost.message or "")
        second = client.read_flow_run(seen[0]).state
        assert second.type.value == "COMPLETED"
        for run_id in (first_id, seen[0]):  # both heartbeat variables are gone
            assert client.read_variable_by_name(heartbeat_name(run_id)) is None

    stopped: list[str] = []  # the lost run's flow, were it still alive somewhere, stops its build
    beat = Heartbeat(first_id, stopped.append, TAGS)
    beat._beat()
    assert beat.superseded and stopped and "crashed" in stopped[0]
