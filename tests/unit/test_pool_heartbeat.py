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
