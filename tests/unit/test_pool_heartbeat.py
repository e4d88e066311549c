"""The daemon's side of a work-pool heartbeat (flows.pool_heartbeat.HeartbeatWatch), shared by training
candidates and table builds, over a fake client at its boundary (the variable read): a run that beat and
went silent is lost after the timeout; one that never beat gets PENDING_GRACE times that; time spent
queued (SCHEDULED) does not count. Against a real server: tests/integration/test_pool_heartbeat_tables.py."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest


@pytest.mark.parametrize("beats", [None, 1])
def test_watch_gives_a_run_that_never_beat_more_grace(beats) -> None:
    """HeartbeatWatch alone, over a fake client at its boundary (the variable read)."""
    from flows.pool_heartbeat import PENDING_GRACE, HeartbeatWatch

    value = None if beats is None else SimpleNamespace(value={"beats": beats, "worker": "w3"})
    client = SimpleNamespace(read_variable_by_name=lambda name: value)
    watch = HeartbeatWatch()
    assert watch.lost(client, "r", "RUNNING", 0.2) is None
    time.sleep(0.3)
    reason = watch.lost(client, "r", "RUNNING", 0.2)
    if beats is None:  # 0.3 s < PENDING_GRACE × 0.2 s: still starting
        assert reason is None and PENDING_GRACE * 0.2 > 0.3
        watch.lost(client, "r", "SCHEDULED", 0.2)  # queued for a slot: the clock restarts
        assert watch.lost(client, "r", "RUNNING", 0.2) is None
        time.sleep(0.65)
        assert watch.lost(client, "r", "RUNNING", 0.2) == f"its worker (never started) lost: no heartbeat for {0.65:.0f} s"
    else:
        assert reason == "worker w3 lost: no heartbeat for 0 s"


def test_every_beat_goes_to_the_server_of_the_thread_that_started_the_heartbeat(monkeypatch) -> None:
    """The flow's later beats run on a thread of their own; they must use the Prefect settings of the
    code that entered the Heartbeat (a flow run's, or temporary_settings), not the process's root
    settings, which prefect froze when it was first imported (by whichever module or test came first).
    Before: beat 1 went to the caller's server and beats 2+ to an ephemeral one, so the daemon saw one
    beat and declared a live worker lost (tests/integration/test_pool_heartbeat_tables.py failed after
    any earlier test had imported prefect)."""
    import prefect.client.orchestration as orchestration
    import prefect.context
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows import pool_heartbeat

    root = prefect.context.GLOBAL_SETTINGS_CONTEXT
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT",
                        root.model_copy(update={"settings": root.settings.copy_with_update(updates={PREFECT_API_URL: "http://127.0.0.1:9/root"})}))
    urls: list[str | None] = []

    class Client:
        def __enter__(self):
            urls.append(get_current_settings().api.url)
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def read_flow_run(self, run_id: str):
            return SimpleNamespace(state=SimpleNamespace(type=SimpleNamespace(value="RUNNING")))

        def read_variable_by_name(self, name: str):
            return None

        def create_variable(self, variable) -> None:
            pass

    monkeypatch.setattr(orchestration, "get_client", lambda sync_client=False: Client())
    monkeypatch.setenv("SPECD_HEARTBEAT_S", "0.05")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/caller"}):
        with pool_heartbeat.Heartbeat("r", lambda why: None) as beat:
            deadline = time.monotonic() + 10
            while beat.beats < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
    assert beat.beats >= 3 and len(urls) >= 3, urls
    assert set(urls) == {"http://127.0.0.1:9/caller"}, urls
