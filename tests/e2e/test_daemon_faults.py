"""Faults of what the daemon depends on: a concurrent `specd apply`, and its Prefect server dying.

- `specd apply` on the state home of a running daemon is refused with a message naming the daemon's pid
  and lock file — it used to adopt the daemon's Prefect server and stop it on the way out;
- the embedded Prefect server killed with SIGKILL is restarted by the daemon (journaled), and a commit
  made while it was down converges.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from daemon.runtime.prefect_server import healthy
from daemon.shared.procs import PidRecord
from tests.conftest import ROOT, free_port
from tests.e2e.conftest import DaemonProcess

pytestmark = [pytest.mark.e2e]


def test_apply_is_refused_beside_the_daemon_and_a_killed_prefect_server_comes_back(spec_repo, home):
    spec_repo.write("data/x.csv", "a\n1\n2\n")
    spec_repo.write("specs/tables/x.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
    sha = spec_repo.commit("x")
    prefect_port = free_port()
    extra = {"SPECD_PREFECT_PORT": str(prefect_port)}
    daemon = DaemonProcess(spec_repo.path, home, DaemonProcess.EMBEDDED, extra).start()
    records = []
    try:
        daemon.wait_converged(sha, timeout=180)
        record = PidRecord.read(home / "run" / "prefect-server.json")
        assert record is not None and record.alive()
        records.append(record)
        api = f"http://127.0.0.1:{prefect_port}/api"

        # 1. a one-off apply on the daemon's home is refused, and leaves the daemon's server alone
        spec_repo.write("specs/tables/y.yaml", "source: {type: file, path: data/x.csv, format: csv}\n")
        applied = subprocess.run([sys.executable, "-m", "daemon.cli", "apply", "--repo", str(spec_repo.path), "--home", str(home)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **extra})
        assert applied.returncode == 1, applied.stdout + applied.stderr
        assert f"specd apply refused: the daemon (pid {daemon.proc.pid}) holds {home / 'daemon.lock'}" in applied.stderr
        assert "stop the daemon" in applied.stderr and "Plan:" not in applied.stdout  # stopped before doing anything
        assert record.alive() and healthy(api), "specd apply must not touch the daemon's Prefect server"
        assert not (home / "lake" / "tables" / "y").exists()

        # 2. the Prefect server dies hard; a commit arrives while it is down
        os.kill(record.pid, signal.SIGKILL)
        killed = time.monotonic()
        sha2 = spec_repo.commit("y, committed while the Prefect server is down")
        status = daemon.wait_converged(sha2, timeout=240)
        elapsed = time.monotonic() - killed
        assert {r["name"] for r in status["resources"] if r["kind"] == "table"} == {"x", "y"}
        again = PidRecord.read(home / "run" / "prefect-server.json")
        assert again is not None and again != record and again.alive() and healthy(api)
        records.append(again)
        assert "PrefectServerRestarted" in [e["type"] for e in daemon.journal()]
        print(f"\nPrefect server SIGKILLed → restarted and the commit made meanwhile converged in {elapsed:.1f} s")
    finally:
        daemon.stop()
        for record in records:
            if record.alive():
                os.killpg(record.pid, signal.SIGKILL)
