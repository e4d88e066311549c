"""The daemon's lifecycle: embedded Prefect server started and owned, one daemon per state home,
graceful stop on SIGTERM with no orphans, adoption of its Prefect server after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from daemon.shared.procs import PidRecord
from tests.conftest import ROOT, free_port
from tests.e2e.conftest import DaemonProcess

pytestmark = [pytest.mark.e2e]

TABLE = "source: {type: file, path: data/x.csv, format: csv}\n"


def test_one_daemon_per_home(spec_repo, home, daemon_factory):
    spec_repo.write("data/x.csv", "a\n1\n")
    spec_repo.write("specs/tables/x.yaml", TABLE)
    sha = spec_repo.commit("x")
    daemon_factory(spec_repo.path).wait_converged(sha)
    second = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run", "--repo", str(spec_repo.path), "--home", str(home), "--metrics-port", "0", "--no-prefect"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 1
    assert "another specd daemon (pid " in second.stderr and f"already owns {home}" in second.stderr


def test_embedded_prefect_server_is_owned_adopted_and_stopped(spec_repo, home):
    spec_repo.write("data/x.csv", "a\n1\n2\n")
    spec_repo.write("specs/tables/x.yaml", TABLE)
    sha = spec_repo.commit("x")
    extra = {"SPECD_PREFECT_PORT": str(free_port())}
    daemon = DaemonProcess(spec_repo.path, home, DaemonProcess.EMBEDDED, extra).start()
    record = None
    try:
        daemon.wait_converged(sha, timeout=150)
        record = PidRecord.read(home / "run" / "prefect-server.json")
        assert record is not None and record.alive() and record.meta["port"] == int(extra["SPECD_PREFECT_PORT"])
        assert "ActionSucceeded" in [e["type"] for e in daemon.journal()]

        daemon.kill9()  # the server survives its daemon ...
        assert record.alive()
        again = DaemonProcess(spec_repo.path, home, DaemonProcess.EMBEDDED, extra).start()
        again.wait_converged(sha, timeout=60)
        assert PidRecord.read(home / "run" / "prefect-server.json") == record  # ... and is adopted, not duplicated

        assert again.stop() == 0  # SIGTERM: graceful
        deadline = time.monotonic() + 10
        while record.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not record.alive(), "the Prefect server outlived a graceful stop"
        assert json.loads((home / "events.jsonl").read_text().splitlines()[-1])["type"] == "DaemonStopped"
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.proc.kill()
        if record and record.alive():
            os.killpg(record.pid, signal.SIGKILL)
