"""Hostile commits under a running daemon: each is rejected, the service keeps answering, and the next
valid commit converges.

One daemon follows a temp repo holding the example penguin stack (three tables, the model trained for
two epochs, the A/B service; no custom dashboards), then receives, one after another: a commit adding a
symlink to /etc/passwd as a table spec, a YAML alias bomb, and a table whose SQL reads /etc/passwd.
Throughout, a client keeps calling `/predict` and the daemon's `/healthz`; every answer must be 200.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from daemon.adapters.services.supervisor import Supervisor
from tests.e2e.conftest import DaemonProcess
from tests.helpers.journeys import PENGUIN, PENGUIN_ONLY, free_service_port, make_stack_repo

pytestmark = [pytest.mark.e2e]

BOMB = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
) + "\ndescription: *a8\n"
LEAK = ("source:\n  type: table\n  inputs: [silver_penguins]\n"
        "  sql: SELECT * FROM read_csv('/etc/passwd', header = false)\n")


class Prober(threading.Thread):
    """Calls the service's /predict and the daemon's /healthz in a loop; records every failure."""

    def __init__(self, service_port: int, daemon: DaemonProcess):
        super().__init__(daemon=True)
        self.service_port, self.daemon = service_port, daemon
        self.stop_event = threading.Event()
        self.answers = 0
        self.failures: list[str] = []
        self.slowest = (0.0, "")

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                try:
                    started = time.monotonic()
                    answer = client.post(f"http://127.0.0.1:{self.service_port}/predict", json={"features": PENGUIN, "user_id": "u1"})
                    predicted = time.monotonic()
                    if answer.status_code != 200:
                        self.failures.append(f"/predict {answer.status_code}: {answer.text[:200]}")
                    with urllib.request.urlopen(self.daemon.url("/healthz"), timeout=5) as health:
                        if health.status != 200:
                            self.failures.append(f"/healthz {health.status}")
                    done = time.monotonic()
                    if done - started > self.slowest[0]:
                        self.slowest = (done - started, f"/predict {predicted - started:.2f}s, /healthz {done - predicted:.2f}s")
                    self.answers += 1
                except Exception as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.2)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, prefect_api: str):
    root = tmp_path_factory.mktemp("hostile")
    repo = make_stack_repo(root / "repo", epochs=2, tables=PENGUIN_ONLY, dashboards=False)
    home = root / "home"
    base, port = free_service_port()
    daemon = DaemonProcess(repo.path, home, prefect_api, {"SPECD_SERVICE_PORT_BASE": str(base)})
    daemon.extra_env["SPECD_METRICS_PORT"] = str(daemon.port)
    daemon.start()
    try:
        daemon.wait_converged(repo.head(), timeout=300)
        yield repo, home, daemon, port
    finally:
        daemon.stop()
        Supervisor(home).stop_all()


def _rejected(daemon: DaemonProcess, sha: str) -> list[str]:
    status = daemon.wait_for(lambda s: (s.get("rejected") or {}).get("revision") == sha, 60, f"rejection of {sha[:12]}")
    return status["rejected"]["errors"]


def test_hostile_commits_are_rejected_while_the_service_keeps_answering(running):
    repo, home, daemon, port = running
    converged = repo.head()
    prober = Prober(port, daemon)
    prober.start()
    try:
        os.symlink("/etc/passwd", repo.path / "specs/tables/evil.yaml")
        errors = _rejected(daemon, repo.commit("a table spec that is a symlink to /etc/passwd"))
        assert any(e.startswith("specs/tables/evil.yaml: symlink to '/etc/passwd' not allowed") for e in errors), errors

        (repo.path / "specs/tables/evil.yaml").unlink()
        repo.write("specs/tables/evil.yaml", BOMB)
        errors = _rejected(daemon, repo.commit("an alias bomb"))
        assert any(e.startswith("specs/tables/evil.yaml:") and "more than 50,000 nodes (aliases expanded)" in e for e in errors), errors

        repo.remove("specs/tables/evil.yaml")
        repo.write("specs/tables/leak.yaml", LEAK)
        errors = _rejected(daemon, repo.commit("a table whose SQL reads /etc/passwd"))
        assert errors == ["specs/tables/leak.yaml:4: source.sql: table function read_csv() is not allowed: it reads files, "
                          "settings or the catalog (allowed: generate_series, json_each, json_tree, range, repeat, unnest)"], errors

        status = daemon.status()
        assert status is not None and status["revision"] == converged, status  # the last valid revision is kept

        repo.remove("specs/tables/leak.yaml")
        repo.write("specs/tables/tiny.yaml", "source:\n  type: synthetic\n  rows: 5\n  columns: [{name: id, kind: sequence}]\n")
        valid = repo.commit("a valid commit after the hostile ones")
        daemon.wait_converged(valid, timeout=180)
    finally:
        prober.stop_event.set()
        prober.join(timeout=20)
    assert prober.answers >= 3 and prober.failures == [], prober.failures[:5]  # every probe answered (slow under load: a few)
    assert prober.slowest[0] < 5.0, prober.slowest  # answering, not just eventually answering
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert not any(Path(home).rglob("passwd")), "nothing read from /etc/passwd landed in the state home"
