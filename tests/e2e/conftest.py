"""Fixtures for end-to-end tests: the real daemon (`specd run`) as a subprocess on a real git repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

# The container e2e takes minutes and needs buildah, podman and a debootstrapped base (README "Container
# images"): it is collected only when asked for, so the default suite neither runs nor skips it.
collect_ignore = [] if os.environ.get("SPECD_E2E_CONTAINERS") == "1" else ["test_container_image.py"]


class DaemonProcess:
    EMBEDDED = "embedded"  # prefect_api value: let the daemon start and own its Prefect server

    def __init__(self, repo: Path, home: Path, prefect_api: str | None, extra_env: dict[str, str] | None = None):
        self.repo = repo
        self.home = home
        self.port = free_port()
        self.online_port = free_port()  # the embedded online store's (redis-server), private to this daemon
        self.prefect_api = prefect_api
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = home.parent / f"daemon-{self.port}.log"

    def start(self) -> DaemonProcess:
        env = {**os.environ, "SPECD_HOME": str(self.home), "BENTOML_HOME": str(self.home / "bentoml"), "PYTHONUNBUFFERED": "1",
               "SPECD_ONLINE_PORT": str(self.online_port), **self.extra_env}
        env.pop("PREFECT_API_URL", None)
        if self.prefect_api and self.prefect_api != self.EMBEDDED:
            env["PREFECT_API_URL"] = self.prefect_api
        cmd = [sys.executable, "-m", "daemon.cli", "run", "--repo", str(self.repo), "--home", str(self.home), "--env", "dev", "--metrics-port", str(self.port)]
        if not self.prefect_api:
            cmd.append("--no-prefect")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def status(self) -> dict | None:
        try:
            with urllib.request.urlopen(self.url("/status"), timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url("/metrics"), timeout=2) as response:
            return response.read().decode()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 90.0, what: str = "condition") -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            last = self.status()
            if last is not None and predicate(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(last, indent=1)[:3000]}\nlog:\n{self.log_text()[-4000:]}")

    def wait_converged(self, sha: str, timeout: float = 90.0) -> dict:
        return self.wait_for(lambda s: s.get("revision") == sha and s.get("in_sync"), timeout, f"convergence on {sha[:12]}")

    def journal(self) -> list[dict]:
        path = self.home / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        from daemon.adapters.online import embedded

        embedded.stop(self.home)  # only does something if the daemon died before stopping it
        self.log.close()
        return self.proc.returncode if self.proc else 0


@pytest.fixture
def daemon_factory(home: Path, prefect_api: str) -> Iterator[Callable[..., DaemonProcess]]:
    started: list[DaemonProcess] = []

    def make(repo: Path, *, use_prefect: bool = True, extra_env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(repo, home, prefect_api if use_prefect else None, extra_env).start()
        started.append(daemon)
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
