"""One writer per state home: `specd apply` takes the daemon's lock, and is refused while another holds it.

Table-driven over who holds `<home>/daemon.lock`: a running daemon (a real `specd run --no-prefect`
process), another `specd apply` (the lock held in this process), nobody. Refusals name the holder's
pid and the lock file and leave everything as it was (no plan run, nothing written); the daemon keeps
answering `/healthz`.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from daemon.runtime.daemon import DaemonLock
from daemon.shared.paths import lock_path
from tests.conftest import ROOT
from tests.e2e.conftest import DaemonProcess

pytestmark = pytest.mark.security
TABLE = "source: {type: file, path: data/x.csv, format: csv}\n"


def _apply(repo, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "apply", "--no-prefect", "--repo", str(repo), "--home", str(home)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("holder", ["daemon", "another apply", "nobody"])
def test_apply_takes_the_state_home_lock(spec_repo, home, holder: str):
    spec_repo.write("data/x.csv", "a\n1\n")
    spec_repo.write("specs/tables/x.yaml", TABLE)
    sha = spec_repo.commit("x")
    daemon = lock = None
    try:
        if holder == "daemon":
            daemon = DaemonProcess(spec_repo.path, home, None).start()
            daemon.wait_converged(sha, timeout=120)
            pid = daemon.proc.pid
        elif holder == "another apply":
            lock = DaemonLock(lock_path(home))
            lock.acquire()
            import os

            pid = os.getpid()
        spec_repo.write("specs/tables/y.yaml", TABLE)
        result = _apply(spec_repo.path, home)
        if holder == "nobody":
            assert result.returncode == 0, result.stderr
            assert (home / "lake" / "tables" / "y" / "_delta_log").is_dir()
            return
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: specd apply refused: the daemon (pid {pid}) holds {home / 'daemon.lock'}; it applies every commit of "
            "the branch it follows, so commit the change there (`specd plan` previews it, `specd sync KIND/NAME` "
            "reconciles a resource now), or stop the daemon (SIGTERM) to apply by hand"
        )
        assert result.stdout == "" and not (home / "lake" / "tables" / "y").exists()
        if daemon:
            with urllib.request.urlopen(daemon.url("/healthz"), timeout=5) as response:
                assert response.status == 200
            assert daemon.proc.poll() is None
    finally:
        if daemon:
            daemon.stop()
        if lock:
            lock.release()
