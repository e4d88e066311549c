"""Fault test: one table's Delta log corrupted under a running daemon on the example specs.

The example stack (tables, the penguin model, the A/B service, dashboards; training shrunk as in the
journeys) converges under a real daemon with a real Prefect server. Then the latest commit file of
`gold_order_daily` (a table nothing else reads) is cut mid-line, as a full disk or a crash of some other
writer leaves it. Required, and checked while a client keeps calling `/predict`:

- that table turns Degraded with a message naming the file; every other resource stays Synced;
- the daemon keeps reconciling: a commit adding a table converges meanwhile;
- after a daemon restart (the case that used to leave the service down for good) the service answers
  again and the picture is the same;
- once the file is repaired, everything is in sync again.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from daemon.adapters.services.supervisor import Supervisor
from tests.e2e.conftest import DaemonProcess
from tests.helpers.journeys import PENGUIN, free_service_port, make_stack_repo

pytestmark = [pytest.mark.e2e]
TABLE = "gold_order_daily"


def _resources(status: dict) -> dict[str, dict]:
    return {f"{r['kind']}/{r['name']}": r for r in status.get("resources", [])}


def _predict(port: int, user: str) -> int:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/predict", json={"features": PENGUIN, "user_id": user}, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def _degraded_naming(path: Path):
    def check(status: dict) -> bool:
        table = _resources(status).get(f"table/{TABLE}")
        return bool(table) and table["health"] == "Degraded" and str(path) in table["message"]

    return check


def _others_synced(status: dict, also_skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    return {k: (r["sync"], r["health"], r["message"]) for k, r in _resources(status).items()
            if k != f"table/{TABLE}" and k not in also_skip and r["sync"] != "Synced"}


def test_a_corrupt_delta_log_degrades_one_table_and_nothing_else(tmp_path: Path, prefect_api: str):
    repo = make_stack_repo(tmp_path / "repo")
    home = tmp_path / "home"
    base, port = free_service_port()
    extra = {"SPECD_SERVICE_PORT_BASE": str(base)}
    daemon = DaemonProcess(repo.path, home, prefect_api, extra).start()
    try:
        daemon.wait_converged(repo.head(), timeout=420)
        assert _predict(port, "before") == 200

        log_dir = home / "lake" / "tables" / TABLE / "_delta_log"
        latest = sorted(log_dir.glob("*.json"))[-1]
        original = latest.read_bytes()
        latest.write_bytes(original[: len(original) // 2])  # truncated mid-line

        status = daemon.wait_for(_degraded_naming(latest), timeout=60, what=f"table/{TABLE} Degraded naming {latest.name}")
        assert not _others_synced(status), _others_synced(status)
        answers = [_predict(port, f"during-{i}") for i in range(20)]
        assert answers == [200] * 20, answers

        # the daemon keeps reconciling everything else: a new table converges meanwhile
        repo.write("specs/tables/extra_events.yaml", "source: {type: synthetic, rows: 20, seed: 3, columns: [{name: id, kind: sequence}]}\n")
        sha = repo.commit("an unrelated table")
        status = daemon.wait_for(lambda s: _resources(s).get("table/extra_events", {}).get("sync") == "Synced", timeout=120,
                                 what="the new table to converge")
        assert _degraded_naming(latest)(status) and not _others_synced(status, ("dashboard/table-extra_events",))
        assert status["desired_revision"] == sha and status["rejected"] is None

        # a restart used to leave every resource failing and the service down for good
        assert daemon.stop() == 0
        daemon = DaemonProcess(repo.path, home, prefect_api, extra).start()
        status = daemon.wait_for(lambda s: _resources(s).get("service/penguin_api", {}).get("health") == "Healthy" and _degraded_naming(latest)(s),
                                 timeout=180, what="the service back after a restart, the table still Degraded")
        assert not _others_synced(status), _others_synced(status)
        assert _predict(port, "after-restart") == 200
        journal_types = {e["type"] for e in daemon.journal()}
        assert "ReconcileFailed" not in journal_types, "a broken table must not fail the whole reconcile"

        latest.write_bytes(original)  # repaired by hand
        daemon.wait_converged(sha, timeout=120)
    finally:
        daemon.stop()
        Supervisor(home).stop_all()
